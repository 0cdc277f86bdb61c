"""ROAD: the imputation's weights by hand, the removal rule and a linear model by hand, and equality
with pytorch-grad-cam's implementation on the real EfficientNet-Lite0 and the bundled photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sise.errors import SiseError
from sise.eval.metrics import noisy_linear_imputation, road, road_combined, road_curves
from sise.eval.metrics.remove_and_debias import road_kept_pixels

# A 4×4 one-channel image: 12 at (1, 0), (2, 3) and (3, 2), 0 elsewhere.
IMAGE = torch.zeros(1, 4, 4)
IMAGE[0, 1, 0] = IMAGE[0, 2, 3] = IMAGE[0, 3, 2] = 12.0
# The pixels to remove: the corner (0, 0), its neighbour (0, 1) and the far corner (3, 3).
REMOVED = [(0, 0), (0, 1), (3, 3)]


def _kept(removed: list[tuple[int, int]]) -> np.ndarray:
    kept = np.ones((4, 4), dtype=bool)
    for y, x in removed:
        kept[y, x] = False
    return kept


def test_imputation_solves_the_neighbour_equations_by_hand():
    # Each removed pixel is the weighted mean of its neighbours inside the image (1/6 direct,
    # 1/12 diagonal). (3, 3): (12/6 + 12/6 + 0/12) / (1/6 + 1/6 + 1/12) = 4 / (5/12) = 9.6.
    # (0, 0) = u and (0, 1) = v are coupled:
    #   (5/12) u = v/6 + 12/6 + 0/12                    -> 5u = 2v + 24
    #   (2/3) v = u/6 + 0/6 + 12/12 + 0/6 + 0/12       -> 8v = 2u + 12
    # so u = 6, v = 3.
    filled = noisy_linear_imputation(IMAGE, _kept(REMOVED), noise=0.0)
    expected = IMAGE.clone()
    expected[0, 0, 0], expected[0, 0, 1], expected[0, 3, 3] = 6.0, 3.0, 9.6
    torch.testing.assert_close(filled, expected, rtol=0, atol=1e-5)


def test_imputation_without_any_kept_pixel_is_the_input_space_zero():
    filled = noisy_linear_imputation(IMAGE, np.zeros((4, 4), dtype=bool), noise=0.0)
    assert torch.equal(filled, torch.zeros_like(IMAGE))


def test_noise_is_drawn_from_the_given_generator_on_the_removed_pixels_only():
    kept = _kept(REMOVED)
    a = noisy_linear_imputation(IMAGE, kept, generator=torch.Generator().manual_seed(1))
    b = noisy_linear_imputation(IMAGE, kept, generator=torch.Generator().manual_seed(1))
    c = noisy_linear_imputation(IMAGE, kept, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[0][torch.from_numpy(kept)], IMAGE[0][torch.from_numpy(kept)])
    clean = noisy_linear_imputation(IMAGE, kept, noise=0.0)
    assert 0 < float((a - clean).abs().max()) < 0.1


# The map: the three removed pixels are the most relevant, the three 12-valued ones the least.
MAP = torch.tensor(
    [
        [1.00, 0.95, 0.40, 0.41],
        [0.01, 0.42, 0.43, 0.44],
        [0.45, 0.46, 0.47, 0.02],
        [0.48, 0.49, 0.03, 0.90],
    ]
)


def test_kept_pixels_follow_pytorch_grad_cams_percentile_rule():
    # p = 85: the threshold lies between the 13th and 14th smallest of 16 values, so MoRF keeps
    # the 13 smallest and LeRF (on 1 - map) the 13 largest.
    morf = road_kept_pixels(MAP.numpy(), 85, "morf")
    assert np.array_equal(morf, _kept(REMOVED))
    lerf = road_kept_pixels(MAP.numpy(), 85, "lerf")
    assert np.array_equal(lerf, _kept([(1, 0), (2, 3), (3, 2)]))


class _Linear(nn.Module):
    """Logits (sum of the pixels, 10): class 0 while the pixels sum above 10."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.flatten(1).sum(dim=1)
        return torch.stack([total, torch.full_like(total, 10.0)], dim=1)


def test_road_on_a_linear_model_by_hand():
    # MoRF at 85: the three most relevant pixels (all 0) become 6, 3 and 9.6: Δ = +18.6.
    # LeRF at 85: the three 12s are removed; every neighbour is 0, and (2, 3), (3, 2) are coupled
    # with zero on the right-hand side, so they become 0: Δ = -36. The top-1 class (0, logit 36
    # against 10) is kept by MoRF (54.6) and lost by LeRF (0).
    x, targets, maps = IMAGE[None], torch.tensor([0]), MAP[None]
    morf, lerf = road(_Linear(), x, targets, maps, percentiles=(85,), noise=0.0, score="logit")
    assert float(morf.clean[0]) == pytest.approx(36.0)
    assert float(morf.mean_difference[0]) == pytest.approx(18.6, abs=1e-4)
    assert float(lerf.mean_difference[0]) == pytest.approx(-36.0, abs=1e-4)
    assert float(road_combined(morf, lerf)[0]) == pytest.approx((-36 - 18.6) / 2, abs=1e-4)
    assert morf.kept.tolist() == [[True]] and lerf.kept.tolist() == [[False]]
    assert morf.accuracy.tolist() == [100.0] and lerf.accuracy.tolist() == [0.0]


def test_road_averages_the_percentiles_and_removes_everything_of_a_flat_map():
    # A constant map: at every percentile nothing lies below the threshold, so every pixel is
    # removed and imputed from nothing: the zero image, Δ = -36 at each percentile.
    x, targets = IMAGE[None], torch.tensor([0])
    curves = road_curves(
        _Linear(), x, targets, torch.full((1, 4, 4), 0.5), order="morf", noise=0.0, score="logit"
    )
    assert curves.differences.shape == (1, 9)
    torch.testing.assert_close(curves.mean_difference, torch.tensor([-36.0], dtype=torch.float64))


def test_each_image_has_its_own_noise_whatever_its_batch():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 4, 4)
    maps = torch.rand(2, 4, 4)
    targets = torch.tensor([0, 0])
    both = road_curves(
        _Linear(),
        x,
        targets,
        maps,
        order="morf",
        score="logit",
        generators=[torch.Generator().manual_seed(s) for s in (5, 6)],
    )
    alone = road_curves(
        _Linear(),
        x[1:],
        targets[1:],
        maps[1:],
        order="morf",
        score="logit",
        generators=[torch.Generator().manual_seed(6)],
    )
    torch.testing.assert_close(both.scores[1:], alone.scores)


def test_bad_arguments_are_refused():
    with pytest.raises(SiseError, match="order"):
        road_curves(_Linear(), IMAGE[None], torch.tensor([0]), MAP[None], order="up")  # type: ignore[arg-type]
    with pytest.raises(SiseError, match="percentiles"):
        road_curves(
            _Linear(), IMAGE[None], torch.tensor([0]), MAP[None], order="morf", percentiles=(120,)
        )
    with pytest.raises(SiseError, match="maps must be"):
        road_curves(_Linear(), IMAGE[None], torch.tensor([0]), MAP[None, :2], order="morf")


@pytest.fixture(scope="module")
def photos_and_maps(demo):
    from sise.images import load_image, sample_image_path
    from sise.methods.registry import make_explainer

    x = torch.cat(
        [demo.preprocess(load_image(sample_image_path(n))) for n in ("chelsea", "coffee")]
    )
    with torch.no_grad():
        targets = demo.model(x).argmax(dim=1)
    maps = make_explainer("gradcam", demo.model)(x, targets).maps.detach().float()
    return x, targets, maps


@pytest.mark.slow
def test_equal_to_pytorch_grad_cam_on_the_real_lite0(demo, photos_and_maps):
    grad_cam_road = pytest.importorskip("pytorch_grad_cam.metrics.road")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    x, targets, maps = photos_and_maps
    cams = maps.numpy()
    wanted = [ClassifierOutputSoftmaxTarget(int(c)) for c in targets]
    # three of the nine percentiles keep the test short; the same global seed gives the same
    # noise, drawn in the same order
    percentiles = [10, 50, 90]
    torch.manual_seed(7)
    theirs_morf = grad_cam_road.ROADMostRelevantFirstAverage(percentiles)(
        x, cams, wanted, demo.model
    )
    torch.manual_seed(8)
    theirs_lerf = grad_cam_road.ROADLeastRelevantFirstAverage(percentiles)(
        x, cams, wanted, demo.model
    )
    torch.manual_seed(7)
    morf = road_curves(demo.model, x, targets, maps, order="morf", percentiles=percentiles)
    torch.manual_seed(8)
    lerf = road_curves(demo.model, x, targets, maps, order="lerf", percentiles=percentiles)
    np.testing.assert_allclose(morf.mean_difference.numpy(), theirs_morf, rtol=0, atol=1e-4)
    np.testing.assert_allclose(lerf.mean_difference.numpy(), theirs_lerf, rtol=0, atol=1e-4)
    theirs = (theirs_lerf - theirs_morf) / 2  # ROADCombined
    np.testing.assert_allclose(road_combined(morf, lerf).numpy(), theirs, rtol=0, atol=1e-4)
    # the cat and the cup lose their class when most of the relevant pixels go
    assert float(morf.mean_difference.max()) < -0.2
    assert bool((lerf.mean_difference > morf.mean_difference).all())


def test_without_scipy_the_extra_is_named(monkeypatch):
    import sys

    for name in [n for n in sys.modules if n.split(".")[0] == "scipy"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "scipy", None)
    with pytest.raises(SiseError, match=r'ROAD.*pip install "sise\[bench\]"'):
        noisy_linear_imputation(IMAGE, _kept(REMOVED))
