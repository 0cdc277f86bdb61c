"""benchmarks/compare_results.py: the largest difference per method and metric between two
results files, on the rows they share."""

from __future__ import annotations

from pathlib import Path

import pytest

from sise.eval.benchmark.store import ResultRow, ResultStore


@pytest.fixture(scope="module")
def compare(benchmark_script):
    return benchmark_script("compare_results")


def _store(path: Path, values: dict[tuple[str, str, str], float]) -> Path:
    config = {"dataset": {"kind": "photos"}, "model": {"spec": "m"}, "method": "x"}
    with ResultStore(path) as store:
        cid = store.register_config(config)
        rows = [
            ResultRow(cid, image, 1, "cat", method, metric, value, 1.0)
            for (image, method, metric), value in values.items()
        ]
        store.write_pair(rows)
    return path


def test_largest_difference_on_shared_rows_only(compare, tmp_path: Path) -> None:
    first = _store(
        tmp_path / "a.sqlite",
        {
            ("i1", "sise", "ebpg"): 90.0,
            ("i2", "sise", "ebpg"): 80.0,
            ("i1", "rise", "ebpg"): 50.0,
            ("i3", "sise", "ebpg"): 10.0,  # only here: not compared
        },
    )
    second = _store(
        tmp_path / "b.sqlite",
        {
            ("i1", "sise", "ebpg"): 90.5,
            ("i2", "sise", "ebpg"): 78.0,
            ("i1", "rise", "ebpg"): 50.0,
            ("i1", "sise", "road"): 3.0,  # only here: not compared
        },
    )
    worst, n_rows, n_pairs = compare.differences(first, second)
    assert worst == {("sise", "ebpg"): 2.0, ("rise", "ebpg"): 0.0}
    assert (n_rows, n_pairs) == (3, 3)
