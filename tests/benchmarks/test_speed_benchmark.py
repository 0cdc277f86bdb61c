"""benchmarks/speed.py: a smoke run, and the protocol it promises (warm-up, report lines)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def speed(request):
    sys.path.insert(0, str(BENCHMARKS))
    request.addfinalizer(lambda: sys.path.remove(str(BENCHMARKS)))
    return importlib.import_module("speed")


def _counting_method(speed_measure, calls: list[int]):
    def run():
        calls.append(1)
        return torch.zeros(1, 4, 4), None, None

    return speed_measure.Method("m", "m", run)


@pytest.mark.parametrize("warmup", [0, 1, 2])
def test_warmup_runs_exactly_as_asked(speed, warmup):
    import speed_measure

    calls: list[int] = []
    method = _counting_method(speed_measure, calls)
    model = torch.nn.Identity()
    counter = speed_measure.ForwardCounter(model)
    try:
        speed_measure.time_methods([method], torch.device("cpu"), counter, warmup, repeats=3)
    finally:
        counter.remove()
    assert len(calls) == warmup + 3
    assert len(method.times) == 3
    assert method.memory >= 0  # measured in the first run, warm-up or not


def test_sise_variant_keys(speed):
    options, label = speed.sise_options("sise-adaptive@bf16+cl+compile")
    assert options == {
        "selection": "adaptive",
        "precision": "bf16",
        "channels_last": True,
        "compile": True,
    }
    assert label == "SISE adaptive (bf16+channels_last+compiled)"
    assert speed.sise_options("sise")[0] == {
        "selection": "fixed",
        "precision": "fp32",
        "channels_last": None,
    }
    with pytest.raises(SystemExit, match="unknown option"):
        speed.sise_options("sise@turbo")


@pytest.mark.slow
def test_speed_benchmark_quick_run(speed, tmp_path):
    out = tmp_path / "quick.txt"
    report = speed.main(["--quick", "--warmup", "0", "--multi-images", "2", "--out", str(out)])
    assert out.read_text().strip() == report.strip()
    for label in ("SISE fixed", "SISE adaptive", "bf16+channels_last", "torch-cam", "fidelity"):
        assert label in report
    # the packing lines come after the fidelity lines instead of replacing them
    assert report.count("packing, SISE") == 2 and report.count("fidelity SISE") == 2
    assert "FAIL" not in report and "DIFFER" not in report and "BELOW" not in report
