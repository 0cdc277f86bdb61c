"""Several images in one SISE call give what one call per image gives.

On a CPU the kept maps and forward counts are identical and the maps equal to float rounding:
bitwise equality is not possible, because oneDNN's convolution of a batch of 3 already differs
from that of a batch of 1 by ~3e-7 (the batch shape picks the kernel). On CUDA, TF32 convolutions
(on by default for cuDNN) round far more, differently per batch shape; SISE's gradient pass runs
in exact fp32 (:func:`sise.runtime.device.exact_fp32`) so that the selection does not flip.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from tiny_models import SmallCNN

from sise import SISE
from sise.runtime import Runtime
from sise.runtime.device import exact_fp32, fidelity

LAYERS = ["features.2", "features.5", "features.8"]


def _compare(explainer: SISE, inputs: torch.Tensor, atol: float | None, min_r: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        together = explainer(inputs)
        alone = [explainer(inputs[i : i + 1]) for i in range(inputs.shape[0])]
    singles = torch.cat([a.maps for a in alone])
    assert together.kept_maps.tolist() == [a.kept_maps[0].tolist() for a in alone]
    assert together.forward_passes.tolist() == [int(a.forward_passes[0]) for a in alone]
    if atol is not None:
        torch.testing.assert_close(together.maps, singles, rtol=0, atol=atol)
    r = fidelity(together.maps, singles)
    assert bool((r >= min_r).all()), r


@pytest.mark.parametrize("selection", ["fixed", "adaptive"])
def test_packed_equals_single_calls_on_cpu(selection):
    torch.manual_seed(0)
    model = SmallCNN(classes=6).eval()
    inputs = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    explainer = SISE(model, LAYERS, selection=selection, runtime=Runtime(batch_size=16))
    _compare(explainer, inputs, atol=1e-5, min_r=0.99999)


def test_exact_fp32_turns_tf32_off_and_restores_it():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = matmul.allow_tf32 = True
    try:
        with exact_fp32():
            assert not cudnn.allow_tf32 and not matmul.allow_tf32
        assert cudnn.allow_tf32 and matmul.allow_tf32
        with pytest.raises(RuntimeError), exact_fp32():
            raise RuntimeError("restored on errors too")
        assert cudnn.allow_tf32 and matmul.allow_tf32
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("selection", ["fixed", "adaptive"])
def test_cuda_packed_equals_single_calls(selection):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).cuda().eval()
    inputs = torch.randn(6, 3, 96, 96, generator=torch.Generator().manual_seed(1)).cuda()
    explainer = SISE(model, selection=selection, runtime=Runtime(batch_size=64))
    _compare(explainer, inputs, atol=None, min_r=0.999)
