"""How far apart two benchmark results files are on the rows they share.

Two runs of the same configuration (same resume identity) on other hardware, another torch, or
another batching give the same (configuration, image, class, method, metric) keys; this prints,
for each method and metric, the largest absolute difference between them, as a Markdown table
(values in the tables' own units: points for percentages).

    python benchmarks/compare_results.py gpu_check.sqlite lite0.sqlite [--metrics ebpg,road,...]
"""

from __future__ import annotations

import argparse
import sqlite3
from collections import defaultdict
from pathlib import Path


def differences(first: Path, second: Path) -> tuple[dict[tuple[str, str], float], int, int]:
    """Max |difference| per (method, metric), the rows compared, and the (pair, method)s."""
    with sqlite3.connect(f"file:{first}?mode=ro", uri=True) as conn:
        conn.execute("ATTACH DATABASE ? AS other", (f"file:{second}?mode=ro",))
        rows = conn.execute(
            "SELECT a.image_id, a.class_index, a.method, a.metric, a.value, b.value "
            "FROM results a JOIN other.results b "
            "USING (config_id, image_id, class_index, method, metric)"
        ).fetchall()
    worst: dict[tuple[str, str], float] = defaultdict(float)
    for _, _, method, metric, x, y in rows:
        worst[(method, metric)] = max(worst[(method, metric)], abs(x - y))
    return worst, len(rows), len({(r[0], r[1], r[2]) for r in rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--metrics", help="comma-separated (default: every shared metric)")
    args = parser.parse_args()
    for path in (args.first, args.second):
        if not path.is_file():
            parser.error(f"no results file {path}")
    worst, n_rows, n_pairs = differences(args.first, args.second)
    if not worst:
        raise SystemExit("the two files share no rows (another configuration, or other pairs)")
    methods = sorted({m for m, _ in worst})
    shared = sorted({k for _, k in worst})
    metrics = args.metrics.split(",") if args.metrics else shared
    print(f"{n_rows} rows of {n_pairs} (pair, method)s compared; max |difference|:\n")
    print("| metric | " + " | ".join(methods) + " |")
    print("|---|" + "---:|" * len(methods))
    for metric in metrics:
        cells = [f"{worst[(m, metric)]:.3g}" if (m, metric) in worst else "–" for m in methods]
        print(f"| {metric} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
