"""ROAD, ADCC and the randomisation row in the benchmark: opt-in, scored from the batch's
callables, stored, aggregated and printed like every other row."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from sise.errors import SiseError
from sise.eval.benchmark import BenchmarkConfig, run_benchmark
from sise.eval.benchmark.field_metrics import FIELD_METRICS, in_randomisation_subset
from sise.eval.benchmark.scoring import (
    DEFAULT_METRICS,
    METRICS,
    MetricSettings,
    ScoringBatch,
    check_metrics,
    score_batch,
)
from sise.eval.data import EvalPair
from sise.eval.metrics import road_combined, road_curves

NEW = [m.name for m in FIELD_METRICS]


def _pair(image_id: str, class_index: int = 0) -> EvalPair:
    return EvalPair(image_id, Path("x.jpg"), class_index, "c", [(0, 0, 2, 2)], 4, 4)


class _Constant(nn.Module):
    """The same logits whatever the input: no mask changes the score (Drop% 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[2.0, 0.0]]).expand(x.shape[0], 2) + 0 * x.sum()


def _batch(pairs, maps, **changes) -> ScoringBatch:
    n = len(pairs)
    values = dict(
        model=_Constant(),
        pairs=pairs,
        inputs=torch.ones(n, 3, 4, 4),
        targets=torch.zeros(n, dtype=torch.long),
        maps=maps,
        ground_truth=torch.ones(n, 4, 4, dtype=torch.bool),
        settings=MetricSettings(),
        score="softmax",
        batch_size=8,
    )
    values.update(changes)
    return ScoringBatch(**values)  # type: ignore[arg-type]


def test_new_rows_are_opt_in_with_their_directions() -> None:
    assert not set(NEW) & set(DEFAULT_METRICS)
    assert list(METRICS)[-len(NEW) :] == NEW
    lower = {m for m in NEW if not METRICS[m].higher_is_better}
    assert lower == {"road_morf", "road_morf_kept", "adcc_complexity", "adcc_drop", "randomisation"}
    with pytest.raises(SiseError, match=r"adcc.* need a positive score"):
        check_metrics(["adcc", "road"], "logit")
    assert check_metrics(["road", "ebpg"], "logit") == ["ebpg", "road"]


def test_road_noise_stays_out_of_the_identity_at_its_default() -> None:
    # the runs stored before the setting existed keep their configuration ids
    assert "road_noise" not in MetricSettings().identity((4, 4))
    assert MetricSettings(road_noise=0.0).identity((4, 4))["road_noise"] == 0.0
    with pytest.raises(SiseError, match="--road-noise"):
        MetricSettings(road_noise=-1.0).validate()


def test_adcc_from_the_batch_by_hand() -> None:
    # The score never changes (drop 0) and the method explains x ⊙ E as it explained x
    # (coherency 1); complexity = the map's mean, 0.25 and 0.5:
    # ADCC = 3 / (1 + 1/(1 - c) + 1) = 3 / (2 + 4/3) = 0.9 and 3 / (2 + 2) = 0.75.
    maps = torch.zeros(2, 4, 4)
    maps[0, :2, :2] = 1.0
    maps[1, :2] = 1.0
    seen = []

    def explain(x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return maps.clone()

    batch = _batch([_pair("a"), _pair("b")], maps, explain=explain)
    values = score_batch(batch, ["adcc", "adcc_coherency", "adcc_complexity", "adcc_drop"])
    assert values["adcc"].tolist() == pytest.approx([90.0, 75.0])
    assert values["adcc_coherency"].tolist() == pytest.approx([100.0, 100.0])
    assert values["adcc_complexity"].tolist() == pytest.approx([25.0, 50.0])
    assert values["adcc_drop"].tolist() == pytest.approx([0.0, 0.0])
    # the second explanation is of the explanation map x ⊙ E, made once for all four rows
    assert len(seen) == 1 and torch.equal(seen[0], maps[:, None].expand(2, 3, 4, 4))
    with pytest.raises(SiseError, match="explains the explanation map"):
        score_batch(_batch([_pair("a")], maps[:1]), ["adcc"])


def test_randomisation_row_covers_its_subset_only() -> None:
    pairs = [_pair(f"{i:04d}") for i in range(16)]
    chosen = [in_randomisation_subset(p) for p in pairs]
    assert 0 < sum(chosen) < len(pairs)  # about one in four
    maps = torch.rand(16, 4, 4, generator=torch.Generator().manual_seed(0))
    asked = []

    def same(x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        asked.append(x.shape[0])
        return maps[torch.tensor(chosen)]

    values = score_batch(_batch(pairs, maps, explain_randomised=same), ["randomisation"])
    assert asked == [sum(chosen)]  # only the chosen pairs are explained again
    for flag, value in zip(chosen, values["randomisation"].tolist(), strict=True):
        assert value == pytest.approx(1.0) if flag else math.isnan(value)
    flipped = score_batch(
        _batch(pairs, maps, explain_randomised=lambda x, t: 1 - maps[torch.tensor(chosen)]),
        ["randomisation"],
    )
    assert flipped["randomisation"][torch.tensor(chosen)].tolist() == pytest.approx(
        [-1.0] * sum(chosen)
    )


class _Sum(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.flatten(1).sum(dim=1)
        return torch.stack([total, -total], dim=1)


def test_road_rows_are_the_metrics_values_and_each_pair_has_its_own_noise() -> None:
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(2))
    pairs = [_pair("a"), _pair("b")]
    rows = ["road_morf", "road_lerf", "road", "road_morf_kept", "road_lerf_kept", "road_kept"]
    both = score_batch(_batch(pairs, maps, model=_Sum(), inputs=x, score="logit"), rows)
    alone = score_batch(
        _batch(pairs[1:], maps[1:], model=_Sum(), inputs=x[1:], score="logit"), rows
    )
    for name in rows:
        assert float(both[name][1]) == pytest.approx(float(alone[name][0]), abs=1e-5)
    # without noise the rows are road_curves' numbers
    quiet = MetricSettings(road_noise=0.0)
    values = score_batch(
        _batch(pairs, maps, model=_Sum(), inputs=x, score="logit", settings=quiet), rows
    )
    targets = torch.zeros(2, dtype=torch.long)
    morf = road_curves(_Sum(), x, targets, maps, order="morf", noise=0.0, score="logit")
    lerf = road_curves(_Sum(), x, targets, maps, order="lerf", noise=0.0, score="logit")
    assert values["road_morf"].tolist() == pytest.approx((100 * morf.mean_difference).tolist())
    assert values["road"].tolist() == pytest.approx((100 * road_combined(morf, lerf)).tolist())
    assert values["road_kept"].tolist() == pytest.approx(
        ((lerf.accuracy - morf.accuracy) / 2).tolist()
    )


def test_a_run_stores_and_prints_the_new_rows(tiny_data: Path, tmp_path: Path) -> None:
    config = BenchmarkConfig(
        dataset=f"synthetic:{tiny_data}",
        model="synthetic-vgg",
        methods=["gradcam"],
        metrics=["ebpg", "road", "adcc", "randomisation"],
        db=tmp_path / "r.sqlite",
        metric_settings=MetricSettings(steps=8),
        progress=False,
    )
    result = run_benchmark(config)
    assert result is not None
    assert "| ROAD combined (%) ↑ |" in result.markdown
    assert "| ADCC (%) ↑ |" in result.markdown
    assert "Randomisation ρ ↓" in result.markdown
    counted = result.metric_counts["randomisation"]["gradcam"]
    assert 0 < counted < result.counts["gradcam"]
    rho = result.values["randomisation"]["gradcam"]
    assert rho is not None and -1 <= rho < 0.9  # Grad-CAM's maps depend on the weights
    assert 0 < (result.values["adcc"]["gradcam"] or 0) <= 100


def test_the_randomised_explainer_works_on_a_copy_made_once(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from sise.eval.benchmark.explaining import _randomised_explainer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    model = nn.Sequential(model, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loaded = SimpleNamespace(model=model, input_size=(16, 16))
    config = BenchmarkConfig(dataset="synthetic", model="m", db=tmp_path / "r.sqlite", seed=5)
    x = torch.randn(2, 3, 16, 16)
    first = _randomised_explainer(loaded, "gradcam", config, x)  # type: ignore[arg-type]
    again = _randomised_explainer(loaded, "gradcam", config, x)  # type: ignore[arg-type]
    assert first is again
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert first.model is not model and not model.training
    changed = [k for k, v in first.model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == len(before)  # every layer's weights and biases were redrawn
