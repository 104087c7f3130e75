"""Benchmark: import a generated 10,000-row CSV with options (parse + validation + one
transaction of bulk inserts into SQLite), then load it back as a menu. Reports wall time and
peak memory. Baseline: plain ``csv.DictReader`` over the same bytes in the same run.
Target on a 2-core machine: under 1 s and under 200 MB.

``python -m tests.perf.bench_catalog`` prints the rows.
"""

from __future__ import annotations

import csv
import gc
import io
import resource
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server import models
from server.catalog import service
from server.catalog.fields import parse_options
from server.catalog.parse import parse_catalog
from server.db import Database
from server.migrate import upgrade
from server.shops.service import create_shop

ROWS = 10_000
REPEAT = 3


def make_csv(rows: int = ROWS) -> bytes:
    """A realistic catalog: categories, descriptions, tags, two or three option groups per
    product drawn from 1,000 distinct option sets."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["id", "name", "category", "price", "description", "options", "tags", "available"]
    )
    for i in range(rows):
        # 1,000 distinct option sets: shared sets are realistic, one set for everything is not.
        v = i % 1000
        options = (
            f"Size: Small | Medium +0.{v % 90 + 10} | Large +1.{v % 100:02d}; "
            f"Milk: Whole | Skim | Oat +0.60 | Soy +0.{v // 10:02d}"
        )
        if i % 3 == 0:
            options += (
                "; Extras[0-3]: Extra shot +0.75 | Vanilla +0.50 | Caramel +0.50 | Cream +0.40"
            )
        writer.writerow(
            [
                f"item-{i}",
                f"Item number {i}",
                f"Category {i % 25}",
                f"{2 + i % 40}.{i % 100:02d}",
                f"A tasty thing, number {i}, made fresh every day.",
                options,
                "vegan, gluten-free" if i % 4 == 0 else "vegetarian",
                "yes" if i % 17 else "sold out",
            ]
        )
    return out.getvalue().encode()


CPU: list[float] = []  # process CPU seconds of each timed run (other load on the machine aside)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    parse_options.cache_clear()  # every run starts cold, like the first upload of a catalog
    gc.collect()
    cpu, start = time.process_time(), time.perf_counter()
    value = fn()
    CPU.append(time.process_time() - cpu)
    return time.perf_counter() - start, value


def _best(fn: Callable[[], Any]) -> float:
    return min(_timed(fn)[0] for _ in range(REPEAT))


def _baseline(data: bytes) -> int:
    return sum(1 for _ in csv.DictReader(io.StringIO(data.decode("utf-8"))))


class _Store:
    """A migrated SQLite database with one shop; each import adds a version."""

    def __init__(self, directory: Path) -> None:
        url = f"sqlite:///{directory}/bench.db"
        upgrade(url)
        self.db = Database(url)
        with self.db.write() as s:
            self.shop_id = create_shop(s, name="Bench Shop").id

    def import_(self, data: bytes) -> int:
        parsed = service.check_catalog(data, "bench.csv", "usd")
        with self.db.write() as s:
            shop = s.get(models.Shop, self.shop_id)
            return service.import_catalog(s, shop, data, "bench.csv", parsed=parsed).products  # type: ignore[arg-type]

    def load(self) -> int:
        service._cache.clear()  # a cold load: what the first chat turn after an upload pays
        with self.db.read() as s:
            menu = service.load_menu(s, self.shop_id)
            return len(menu.products) if menu else 0


def run() -> list[dict[str, Any]]:
    data = make_csv()
    baseline = _best(lambda: _baseline(data))
    parse_times = [
        _timed(lambda: parse_catalog(data, "bench.csv", "usd"))[0] for _ in range(REPEAT)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        store = _Store(Path(tmp))
        import_times = []
        CPU.clear()
        for _ in range(REPEAT):
            seconds, count = _timed(lambda: store.import_(data))
            assert count == ROWS
            import_times.append(seconds)
        import_cpu = min(CPU)
        load = _best(store.load)
        parse_options.cache_clear()
        tracemalloc.start()
        store.import_(data)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        store.db.dispose()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size_mb = len(data) / 1e6
    return [
        {
            "benchmark": "catalog import 10k rows (parse + DB write)",
            "value": round(min(import_times), 3),
            "unit": "s",
            "baseline": round(baseline, 3),
            "note": f"{size_mb:.1f} MB CSV with options; median {statistics.median(import_times):.3f} s; "
            f"CPU {import_cpu:.3f} s; "
            "baseline: csv.DictReader over the same bytes; target < 1 s",
        },
        {
            "benchmark": "catalog parse 10k rows",
            "value": round(min(parse_times), 3),
            "unit": "s",
            "baseline": round(baseline, 3),
            "note": "decode, header synonyms, prices, options grammar, ids, duplicates",
        },
        {
            "benchmark": "catalog import 10k rows peak memory",
            "value": round(peak / 2**20, 1),
            "unit": "MB",
            "baseline": None,
            "note": f"tracemalloc peak of one import; process max RSS {rss_mb:.0f} MB; target < 200 MB",
        },
        {
            "benchmark": "menu load 10k products (cold cache)",
            "value": round(load, 3),
            "unit": "s",
            "baseline": None,
            "note": "cached afterwards per (shop, version, availability revision)",
        },
    ]


def main() -> None:
    for row in run():
        baseline = "" if row["baseline"] is None else f" (baseline {row['baseline']} {row['unit']})"
        print(f"{row['benchmark']}: {row['value']} {row['unit']}{baseline} — {row['note']}")


if __name__ == "__main__":
    main()
