"""``make bench``: run every ``tests/perf/bench_*.py`` and print one table, each figure next to
its baseline from the same run. Writes ``tests/perf/results.md`` (with the machine it ran on)
and refreshes the README's ``## Benchmarks`` section between its markers.

``python -m tests.perf.run_all [NAME ...]`` runs only the named benchmarks (e.g. ``chat``).
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PERF_DIR = Path(__file__).resolve().parent
ROOT = PERF_DIR.parents[1]
RESULTS = PERF_DIR / "results.md"
README = ROOT / "README.md"
START_MARK = "<!-- bench:start -->"
END_MARK = "<!-- bench:end -->"
COLUMNS = ("benchmark", "value", "baseline", "unit", "note")


def discover() -> list[str]:
    return sorted(p.stem for p in PERF_DIR.glob("bench_*.py"))


def run_one(name: str) -> tuple[list[dict[str, Any]], float]:
    """Rows of one benchmark; a failure becomes one error row instead of stopping the run."""
    started = time.perf_counter()
    try:
        module = importlib.import_module(f"tests.perf.{name}")
        rows = list(module.run())
    except Exception as exc:  # one broken benchmark must not hide the others
        traceback.print_exc()
        rows = [
            {
                "benchmark": name.removeprefix("bench_"),
                "value": "error",
                "unit": "",
                "baseline": "",
                "note": f"{type(exc).__name__}: {exc}"[:200],
            }
        ]
    return rows, time.perf_counter() - started


def fmt(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| Benchmark | Value | Baseline (same run) | Unit | Note |",
        "|---|---:|---:|---|---|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gb() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GB"
    except OSError:
        pass
    return "unknown"


def machine() -> str:
    try:
        load = f"; load average {os.getloadavg()[0]:.1f} when done"
    except OSError:
        load = ""
    return (
        f"{os.cpu_count()} CPU(s) ({cpu_model()}), {memory_gb()} RAM, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}{load}"
    )


def render(rows: list[dict[str, Any]], timings: dict[str, float]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    took = ", ".join(f"{k.removeprefix('bench_')} {v:.0f}s" for k, v in timings.items())
    return (
        f"{table(rows)}\n\n"
        f"Measured {when} on {machine()}. Run time: {took}.\n"
        "Client, servers and fakes share this machine, so absolute figures are modest; "
        "compare each value with its baseline from the same run.\n"
    )


def write_results(body: str) -> None:
    RESULTS.write_text(
        f"# Benchmark results\n\nProduced by `make bench` (`python -m tests.perf.run_all`).\n\n{body}"
    )


def update_readme(body: str) -> bool:
    """Replace the README's figures between the bench markers, if the markers are there."""
    if not README.exists():
        return False
    text = README.read_text()
    if START_MARK not in text or END_MARK not in text:
        return False
    head, _, rest = text.partition(START_MARK)
    _, _, tail = rest.partition(END_MARK)
    README.write_text(f"{head}{START_MARK}\n{body}{END_MARK}{tail}")
    return True


def main(argv: list[str] | None = None) -> int:
    wanted = argv if argv is not None else sys.argv[1:]
    names = [
        n for n in discover() if not wanted or n.removeprefix("bench_") in wanted or n in wanted
    ]
    rows: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    for name in names:
        print(f"== {name}", flush=True)
        got, took = run_one(name)
        rows.extend(got)
        timings[name] = took
        print(table(got), flush=True)
    body = render(rows, timings)
    print("\n" + body)
    if not wanted:  # a partial run never overwrites the full results
        write_results(body)
        print(
            f"wrote {RESULTS.relative_to(ROOT)}" + (" and README.md" if update_readme(body) else "")
        )
    return 1 if any(r.get("value") == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
