"""SISE on a model small enough to compute every number by hand (see HandModel in conftest)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.filters import threshold_otsu

from sise import SISE
from sise.core.hooks import gradient_pass
from sise.core.layers import discover_layers, resolve_layers
from sise.methods.feature_selection import select_feature_maps
from sise.runtime import Runtime

X = np.array(
    [[2, -1, 0, 1], [1, 3, -2, 0], [-1, 0, 1, 2], [0, -3, 2, 1]],
    dtype=np.float64,
)


def minmax(a: np.ndarray) -> np.ndarray:
    return (a - a.min()) / (a.max() - a.min())


def up_2_to_4(p: np.ndarray) -> np.ndarray:
    """Bilinear 2x2 -> 4x4 with align_corners=False, written out: sample points -0.25 (clamped
    to 0), 0.25, 0.75, 1.25 (clamped to 1) give the weights below on each axis."""
    w = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    return w @ p @ w.T


def masked_logit(mask: np.ndarray) -> float:
    # z0(x ⊙ m) = 0.5 mean(relu(-x ⊙ m)) + 1, and relu(-x ⊙ m) = m relu(-x) because m >= 0.
    return 0.5 * float(np.mean(mask * np.maximum(-X, 0))) + 1.0


def layer_map(masks: list[np.ndarray]) -> np.ndarray:
    total = sum(masked_logit(m) * m / m.sum() for m in masks)
    return minmax(total)


def expected_sise() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    relu_pos, relu_neg = np.maximum(X, 0), np.maximum(-X, 0)
    # Layer 1 (ReLU output, 4x4): channels x and -x have α = 1 and 0.5 (kept); channel 3 (α = -1)
    # is rejected; channel 4 is the constant 1 (α = 1 but constant: skipped).
    v1 = layer_map([minmax(relu_pos), minmax(relu_neg)])
    pool = lambda a: a.reshape(2, 2, 2, 2).mean(axis=(1, 3))  # noqa: E731
    v2 = layer_map([minmax(up_2_to_4(pool(relu_pos))), minmax(up_2_to_4(pool(relu_neg)))])
    fused = minmax((v1 + v2) * (v2 > threshold_otsu(v2)))
    return v1, v2, fused


@pytest.fixture
def x() -> torch.Tensor:
    return torch.tensor(X, dtype=torch.float32).view(1, 1, 4, 4)


def test_layers_discovered(hand_model):
    assert discover_layers(hand_model, torch.zeros(1, 1, 4, 4)) == ["relu", "pool"]


def test_gradient_scores_and_selection(hand_model, x):
    layers = resolve_layers(hand_model, ["relu", "pool"])
    grad = gradient_pass(hand_model, layers, x, 0, "logit")
    for gradient in grad.gradients:
        alpha = gradient.sum(dim=(2, 3))[0]
        torch.testing.assert_close(alpha, torch.tensor([1.0, 0.5, -1.0, 1.0]))
    kept = select_feature_maps(grad.gradients[0], mu=0.0)[0].tolist()
    assert kept == [True, True, False, True]
    # μ = 0.6: α > 0.6 · β = 0.6 drops the channel with α = 0.5.
    assert select_feature_maps(grad.gradients[0], mu=0.6)[0].tolist() == [True, False, False, True]
    # z0(x) = 0.5 mean relu(-x) + 1 = 0.5 * 7/16 + 1
    assert grad.scores.item() == pytest.approx(0.5 * 7 / 16 + 1)


def test_sise_matches_hand_computation(hand_model, x):
    v1, v2, fused = expected_sise()
    explanation = SISE(hand_model, score="logit")(x, 0)
    layer_maps = explanation.layer_maps
    np.testing.assert_allclose(layer_maps[0, 0].numpy(), v1, atol=1e-6)
    np.testing.assert_allclose(layer_maps[0, 1].numpy(), v2, atol=1e-6)
    np.testing.assert_allclose(explanation.maps[0].numpy(), fused, atol=1e-6)
    # Two non-constant positive-gradient maps per layer: 1 gradient pass + 4 masked forwards.
    assert explanation.kept_maps.tolist() == [[2, 2]]
    assert explanation.forward_passes.tolist() == [5]
    assert explanation.targets.tolist() == [0]


def test_soft_gate_uses_sigmoid(hand_model, x):
    v1, v2, _ = expected_sise()
    gate = 1 / (1 + np.exp(-100 * (v2 - threshold_otsu(v2))))
    explanation = SISE(hand_model, score="logit", gate="soft")(x, 0)
    np.testing.assert_allclose(explanation.maps[0].numpy(), minmax((v1 + v2) * gate), atol=1e-5)


def test_batch_size_does_not_change_result(hand_model, x):
    a = SISE(hand_model, score="logit", runtime=Runtime(batch_size=1))(x, 0).maps
    b = SISE(hand_model, score="logit", runtime=Runtime(batch_size=64))(x, 0).maps
    torch.testing.assert_close(a, b)


def test_result_is_typed(hand_model, x):
    from sise.methods.sise import SISEExplanation

    explanation = SISE(hand_model, score="logit")(x, 0)
    assert isinstance(explanation, SISEExplanation)
    assert explanation.layer_names == ["relu", "pool"]
    assert explanation.layer_maps.shape == (1, 2, 4, 4)
    assert explanation.extras == {}  # its results are attributes, not extras keys


def test_maps_that_give_equal_masks_are_scored_once(hand_model, x):
    # Channel 2 becomes 2x: relu(2x) = 2 relu(x) gives channel 0's mask, and with class-0 weight
    # 0.25 (α = 0.25 > 0) it is kept. SISE sums three masks per layer but scores two.
    with torch.no_grad():
        hand_model.conv.weight[2] = 2.0
        hand_model.fc.weight[0] = torch.tensor([1.0, 0.5, 0.25, 1.0])
    relu_pos, relu_neg = np.maximum(X, 0), np.maximum(-X, 0)

    def score(mask: np.ndarray) -> float:  # z0 = 1.5 mean relu(x) + 0.5 mean relu(-x) + 1
        return 1.5 * float(np.mean(mask * relu_pos)) + 0.5 * float(np.mean(mask * relu_neg)) + 1

    def layer(masks: list[np.ndarray]) -> np.ndarray:
        return minmax(sum(score(m) * m / m.sum() for m in masks))

    pool = lambda a: a.reshape(2, 2, 2, 2).mean(axis=(1, 3))  # noqa: E731
    maps = (relu_pos, relu_neg, 2 * relu_pos)
    v1 = layer([minmax(a) for a in maps])
    v2 = layer([minmax(up_2_to_4(pool(a))) for a in maps])
    explanation = SISE(hand_model, score="logit")(x, 0)
    assert explanation.kept_maps.tolist() == [[3, 3]]
    assert explanation.forward_passes.tolist() == [5]  # 1 gradient pass + 2 masks per layer
    np.testing.assert_allclose(explanation.layer_maps[0, 0].numpy(), v1, atol=1e-6)
    np.testing.assert_allclose(explanation.layer_maps[0, 1].numpy(), v2, atol=1e-6)


def test_a_layer_that_keeps_no_map_is_named_at_the_callers_line():
    """A layer whose every channel has a negative average gradient keeps no map: SISE says so,
    and the warning points at the line that called SISE, not inside the package."""
    import warnings

    from torch import nn

    class Opposed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pooled = self.relu(self.conv(x)).mean(dim=(2, 3)).sum(dim=1, keepdim=True)
            return torch.cat([-pooled, pooled], dim=1)  # class 0 falls as the layer rises

    model = Opposed().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SISE(model, layers=["relu"], score="logit")(torch.rand(1, 3, 16, 16), targets=0)
    named = [w for w in caught if "kept no feature map" in str(w.message)]
    assert len(named) == 1 and "'relu'" in str(named[0].message)
    assert named[0].filename == __file__
