"""The CPU fast path of the masked forwards on the architecture families users bring.

``score_masked`` folds batch norms (:mod:`sise.runtime.folding`), prepacks convolutions
(:mod:`sise.runtime.prepacking`) and feeds channels-last inputs on a CPU. Each rewrite is checked once per
model, but only on ResNets and EfficientNet-Lite0 elsewhere; here every family with a structure
of its own (grouped, depthwise and dilated convolutions, concatenations, channel shuffles,
squeeze-and-excitation, pre-activation batch norms, LayerNorm with permutes, convolutions with
biases and no batch norm) must give the scores of the model's own NCHW forward, leave the model
as it was, and really run the rewrites (packed convolutions counted with the profiler).

Random-init batch norms hold mean 0, variance 1, weight 1 and bias 0, which a wrong fold (mean
and variance swapped, the shift dropped) would pass; the statistics are randomised first.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torchvision
from model_state import assert_unchanged, randomise_batch_norms, snapshot
from torch import nn
from torch.profiler import profile

from sise.core.masks import TensorMasks
from sise.runtime import folding, prepacking
from sise.runtime.engine import FOLD_MIN_MASKS, score_masked

models = torchvision.models

#: name: (constructor, whether it has convolution + batch norm pairs to fold)
ARCHITECTURES: dict[str, tuple[Callable[[], nn.Module], bool]] = {
    "resnext50_32x4d (grouped)": (lambda: models.resnext50_32x4d(num_classes=10), True),
    "resnet50 dilated (DeepLab-style)": (
        lambda: models.resnet50(num_classes=10, replace_stride_with_dilation=[False, True, True]),
        True,
    ),
    "densenet121 (concatenations, pre-activation)": (
        lambda: models.densenet121(num_classes=10),
        True,
    ),
    "mobilenet_v3_small (depthwise, squeeze-excitation)": (
        lambda: models.mobilenet_v3_small(num_classes=10),
        True,
    ),
    "shufflenet_v2_x0_5 (channel shuffle)": (
        lambda: models.shufflenet_v2_x0_5(num_classes=10),
        True,
    ),
    "regnet_y_400mf (grouped, squeeze-excitation)": (
        lambda: models.regnet_y_400mf(num_classes=10),
        True,
    ),
    "googlenet (branches)": (
        lambda: models.googlenet(num_classes=10, aux_logits=False, init_weights=True),
        True,
    ),
    "squeezenet1_1 (biases, no batch norm)": (
        lambda: models.squeezenet1_1(num_classes=10),
        False,
    ),
    "convnext_tiny (LayerNorm, permutes)": (lambda: models.convnext_tiny(num_classes=10), False),
}


def _packed_calls(run: Callable[[], object]) -> int:
    with profile() as recorded:
        run()
    return sum(
        e.count for e in recorded.key_averages() if e.key == "mkldnn::_convolution_pointwise"
    )


@pytest.mark.skipif(not prepacking._available(), reason="PyTorch without oneDNN")
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_fast_path_scores_equal_the_models_own_forward(name):
    build, folds = ARCHITECTURES[name]
    torch.manual_seed(0)
    model = build().eval()
    randomise_batch_norms(model)
    inputs = torch.randn(1, 3, 64, 64)
    masks = TensorMasks(torch.rand(FOLD_MIN_MASKS + 4, 64, 64))
    target = torch.tensor([3])
    with torch.no_grad():
        expected = model(inputs * masks.masks(0, len(masks))[:, None])[:, 3]
    assert (len(folding.conv_bn_pairs(model)) > 0) == folds
    before = snapshot(model)

    def run():
        return score_masked(model, inputs, target, masks, score="logit", batch_size=8)

    first = run()  # the first use checks each rewrite once on this model
    packed = _packed_calls(run)
    got = run()

    # both rewrites were checked on this model and taken, not refused
    assert folding._CHECKED.get(model) is (True if folds else None)
    assert prepacking._CHECKED.get(model) is True
    assert packed > 0
    assert packed % 3 == 0  # three batches, each convolution packed in each
    scale = float(expected.abs().max())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * scale)
    assert torch.equal(first, got)
    assert_unchanged(model, before)
