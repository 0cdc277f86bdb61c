"""The benchmark's configuration: its checks, and what enters a run's identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from sise.errors import SiseError
from sise.eval.benchmark.config import BenchmarkConfig, configuration
from sise.eval.benchmark.models import load_benchmark_model
from sise.eval.benchmark.scoring import MetricSettings
from sise.eval.data import load_dataset
from sise.eval.data.synthetic import SYNTHETIC_CLASSES


def _config(data: Path, db: Path) -> BenchmarkConfig:
    """The configuration of the runner's tests (test_run.py), whose identity is checked here."""
    return BenchmarkConfig(
        dataset=f"synthetic:{data}",
        model="synthetic-vgg",
        methods=["gradcam", "sise"],
        db=db,
        metric_settings=MetricSettings(steps=8),
        progress=False,
    )


def test_precision_stays_in_the_identity(tiny_data: Path, tmp_path: Path) -> None:
    config = _config(tiny_data, tmp_path / "x.sqlite")
    _, _, identity = load_dataset(config.dataset)
    loaded = load_benchmark_model(
        "synthetic-vgg", dataset="synthetic", class_names=SYNTHETIC_CLASSES
    )
    options = {"batch_size": 8, "progress": False, "channels_last": True}

    def cid(**more: object) -> str:
        from sise.eval.benchmark.store import config_id

        return config_id(configuration(config, identity, loaded, "sise", more))

    assert cid(**options) == cid() == cid(batch_size=512)
    assert cid(precision="bf16") != cid()
    assert cid(precision="fp16") not in (cid(), cid(precision="bf16"))
    assert cid(mu=0.5) != cid()


def test_a_fixed_method_does_not_resume_onto_old_results(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sise.eval.benchmark.store import config_id
    from sise.methods.grad_cam import GradCAM

    config = _config(tiny_data, tmp_path / "x.sqlite")
    _, _, identity = load_dataset(config.dataset)
    loaded = load_benchmark_model(
        "synthetic-vgg", dataset="synthetic", class_names=SYNTHETIC_CLASSES
    )

    def cid(method: str) -> str:
        return config_id(configuration(config, identity, loaded, method, {}))

    # revision 1 is left out, so results made before revisions existed still resume
    assert "revision" not in configuration(config, identity, loaded, "gradcam", {})
    assert configuration(config, identity, loaded, "fullgrad", {})["revision"] == 2
    before = cid("gradcam")
    monkeypatch.setattr(GradCAM, "revision", 2)
    assert cid("gradcam") != before


def test_batch_size_auto_or_a_positive_integer() -> None:
    from sise.eval.benchmark.run import BenchmarkConfig

    assert BenchmarkConfig(dataset="synthetic", model="synthetic-vgg").batch_size == "auto"
    BenchmarkConfig(dataset="synthetic", model="synthetic-vgg", batch_size=8).validate()
    with pytest.raises(SiseError, match="--batch-size must be an integer >= 1"):
        BenchmarkConfig(dataset="synthetic", model="synthetic-vgg", batch_size=0).validate()
