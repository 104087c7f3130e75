"""Benchmarks (``make bench``). Each ``bench_*.py`` has ``run() -> list[dict]`` returning rows
``{"benchmark", "value", "unit", "baseline", "note"}``; :mod:`tests.perf.run_all` gathers them."""
