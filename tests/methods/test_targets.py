"""Targets (:mod:`sise.targets`): their values by hand, their checks, a segmentation region."""

from __future__ import annotations

import pytest
import torch
from tiny_models import SmallCNN, TinySegNet

from sise import SISE, GradCAM, SiseError
from sise.core.hooks import score_output
from sise.targets import ClassScore, Margin, PerImage, SegmentationRegion, resolve_target

LOGITS = torch.tensor([[3.0, 1.0, 2.0], [0.0, 4.0, -1.0]])


def test_class_score_by_hand():
    torch.testing.assert_close(ClassScore([0, 2], "logit")(LOGITS), torch.tensor([3.0, -1.0]))
    softmax = LOGITS.softmax(dim=1)
    torch.testing.assert_close(ClassScore(1)(LOGITS), softmax[:, 1])
    torch.testing.assert_close(ClassScore(1, "sigmoid")(LOGITS), LOGITS[:, 1].sigmoid())


def test_margin_by_hand():
    torch.testing.assert_close(Margin([0, 1])(LOGITS), torch.tensor([1.0, 4.0]))
    torch.testing.assert_close(Margin(0, other=2)(LOGITS), torch.tensor([1.0, 1.0]))
    p = LOGITS.softmax(dim=1)
    torch.testing.assert_close(Margin(2, score="softmax")(LOGITS), p[:, 2] - p[:, :2].amax(1))


def test_rows_follow_the_images():
    owners = torch.tensor([1, 1, 0])
    rows = ClassScore([0, 2], "logit").rows(owners)
    torch.testing.assert_close(rows(LOGITS[[1, 1, 0]]), torch.tensor([-1.0, -1.0, 3.0]))
    per_image = PerImage([lambda o: o[:, 0], lambda o: o[:, 1]]).rows(owners)
    torch.testing.assert_close(per_image(LOGITS[[1, 1, 0]]), torch.tensor([4.0, 4.0, 3.0]))


def test_segmentation_region_by_hand():
    output = torch.arange(2 * 2 * 3 * 3, dtype=torch.float32).view(2, 2, 3, 3)
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[0, :2] = True
    # class 1 of image 0: 9, 10; of image 1: 27, 28
    torch.testing.assert_close(SegmentationRegion(1, mask)(output), torch.tensor([19.0, 55.0]))
    per_image_masks = torch.stack([mask, mask.flip(0)])  # image 1: bottom-left two pixels
    torch.testing.assert_close(
        SegmentationRegion([0, 1], per_image_masks)(output), torch.tensor([1.0, 33.0 + 34.0])
    )
    softmax = SegmentationRegion(1, mask, score="softmax")(output)
    torch.testing.assert_close(softmax, output.softmax(dim=1)[:, 1][:, mask].sum(dim=1))
    as_dict = SegmentationRegion(1, mask, key="out")({"out": output})
    torch.testing.assert_close(as_dict, torch.tensor([19.0, 55.0]))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (lambda out: out, r"one score per input, shape \(2,\)"),
        (lambda out: out[:, 0].tolist(), "must return a \\(N,\\) tensor"),
        (lambda out: out[:, 0].long(), "floating-point"),
        (lambda out: out[:, 0] / 0 * 0, "NaN or infinite"),
        (ClassScore(7), "out of range"),
        ([lambda out: out[:, 0]], "1 targets for 2 inputs"),
        ([0, lambda out: out[:, 0]], "mix callables and class indices"),
        (Margin(1, other=1), "the same"),
    ],
)
def test_bad_targets_are_refused(target, message):
    with pytest.raises(SiseError, match=message):
        score_output(LOGITS, target, "softmax", 2)


def test_a_score_without_gradient_is_refused(small_cnn):
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(SiseError, match="no gradient"):
        SISE(small_cnn)(x, lambda out: out[:, 0].detach())


def test_region_mask_must_fit_the_output():
    target = SegmentationRegion(1, torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(SiseError, match="output's resolution"):
        resolve_target(torch.zeros(1, 2, 3, 3), target, "softmax", 1)
    with pytest.raises(SiseError, match=r"needs a \(N, C, H, W\) output"):
        resolve_target(LOGITS, target, "softmax", 2)


def _two_blobs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A red blob top-left, a green blob bottom-right, and a region around each."""
    x = torch.zeros(1, 2, 32, 32)
    x[0, 0, 4:12, 4:12] = 1.0
    x[0, 1, 20:28, 20:28] = 1.0
    red = torch.zeros(32, 32, dtype=torch.bool)
    red[2:14, 2:14] = True
    green = torch.zeros(32, 32, dtype=torch.bool)
    green[18:30, 18:30] = True
    return x, red, green


def test_sise_explains_a_segmentation_region():
    net = TinySegNet().eval()
    x, red, green = _two_blobs()
    sise = SISE(net, layers=["stage1.1", "stage2.1"])
    on_red = sise(x, SegmentationRegion(1, red))
    on_green = sise(x, SegmentationRegion(1, green))
    with torch.no_grad():
        expected = net(x)[0, 1][red].sum()
    torch.testing.assert_close(on_red.scores, expected.view(1))
    assert on_red.targets.tolist() == [1]
    # each region's map lights up its own blob
    for result, own, other in ((on_red, red, green), (on_green, green, red)):
        fused = result.maps[0]
        assert float(fused[own].mean()) > 2 * float(fused[other].mean())


def test_gradcam_explains_a_segmentation_region():
    net = TinySegNet().eval()
    x, red, _ = _two_blobs()
    explanation = GradCAM(net, layer="stage2")(x, SegmentationRegion(1, red))
    assert explanation.maps.shape == (1, 32, 32)
    # Grad-CAM by hand: channel weights = mean gradient of the region score at stage2's output
    features = net.stage2(net.stage1(x)).detach().requires_grad_(True)
    score = net.head(net.up(features))[0, 1][red].sum()
    (gradient,) = torch.autograd.grad(score, features)
    cam = torch.relu((gradient.mean(dim=(2, 3))[:, :, None, None] * features).sum(dim=1))
    torch.testing.assert_close(explanation.extras["cam"], cam.detach())
    assert float(explanation.maps.max()) == 1.0


def test_a_classifier_with_a_segmentation_target_gets_a_clear_error():
    torch.manual_seed(0)
    with pytest.raises(SiseError, match=r"\(N, C, H, W\) output"):
        SISE(SmallCNN().eval())(torch.randn(1, 3, 32, 32), SegmentationRegion(0, torch.ones(2, 2)))


class DictOutput(torch.nn.Module):
    """A segmentation network that answers a dict, as torchvision's do."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinySegNet()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x)
        return {"out": out, "aux": out[:, :1] * 2}


def test_a_dict_output_with_a_key():
    model = DictOutput().eval()
    x, red, _ = _two_blobs()
    region = SegmentationRegion(1, red, key="out")
    by_key = SISE(model, layers=["net.stage1.1", "net.stage2.1"])(x, region)
    plain = SISE(model.net, layers=["stage1.1", "stage2.1"])(x, SegmentationRegion(1, red))
    torch.testing.assert_close(by_key.maps, plain.maps)
    gradcam = GradCAM(model, layer="net.stage2")(x, region)
    torch.testing.assert_close(
        gradcam.maps, GradCAM(model.net, layer="stage2")(x, SegmentationRegion(1, red)).maps
    )
