"""The compiled masked-forward path (sise.runtime.device.CompiledForward through sise.runtime.engine.score_masked).

torch.compile on a CPU builds C++ kernels: the first test of a session takes tens of seconds on a
busy machine (a few seconds once inductor's cache is warm).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from tiny_models import SmallCNN
from torch import Tensor

from sise import SISE
from sise.core.masks import UpsampledMaps
from sise.errors import SiseError
from sise.runtime import Runtime
from sise.runtime.device import CompiledForward, compile_setting, fidelity
from sise.runtime.engine import _balanced_batches, _padded, _row_quantum, score_masked

LAYERS = ["features.2", "features.5", "features.8"]

pytestmark = pytest.mark.slow


def _model(seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    model = SmallCNN(classes=6).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        model.features[1].running_mean.uniform_(-0.2, 0.2)
        model.features[1].running_var.uniform_(0.5, 2.0)
    return model


def _inputs(n: int, size: int = 32, seed: int = 1) -> Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _explain(explainer: SISE, inputs: Tensor, targets: list[int]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return explainer(inputs, targets)


def test_compiled_sise_gives_the_eager_maps():
    model = _model()
    inputs = _inputs(2)
    eager = _explain(SISE(model, LAYERS, runtime=Runtime(batch_size=16)), inputs, [0, 3])
    explainer = SISE(model, LAYERS, runtime=Runtime(batch_size=16, compile=True))
    compiled = _explain(explainer, inputs, [0, 3])
    assert (
        explainer.model_runtime._compiled is not None
        and explainer.model_runtime._compiled.failure is None
    )
    assert explainer.model_runtime._compiled.compile_seconds > 0
    assert bool((fidelity(compiled.maps, eager.maps) >= 0.999).all())
    torch.testing.assert_close(compiled.maps, eager.maps, rtol=0, atol=1e-4)
    torch.testing.assert_close(compiled.layer_maps, eager.layer_maps)
    assert compiled.forward_passes.tolist() == eager.forward_passes.tolist()
    # a second call reuses the compiled model (other batch shapes included)
    again = _explain(explainer, inputs[1:], [3])
    torch.testing.assert_close(again.maps[0], compiled.maps[1], rtol=0, atol=1e-4)


def test_compiled_bf16_channels_last_correlates_with_eager_and_leaves_the_model_alone():
    model = _model()
    before = {name: (p, p.data_ptr(), p.stride(), p.dtype) for name, p in model.named_parameters()}
    inputs = _inputs(2)
    eager = _explain(SISE(model, LAYERS, score="logit"), inputs, [0, 3])
    fast = _explain(
        SISE(
            model,
            LAYERS,
            score="logit",
            runtime=Runtime(precision="bf16", channels_last=True, compile=True),
        ),
        inputs,
        [0, 3],
    )
    layer_corr = fidelity(fast.layer_maps, eager.layer_maps)
    assert bool((layer_corr > 0.99).all()), layer_corr
    after = {name: (p, p.data_ptr(), p.stride(), p.dtype) for name, p in model.named_parameters()}
    assert after == before
    assert all(p.requires_grad for p in model.parameters())


def test_compiled_scores_equal_eager_scores_and_follow_weight_updates():
    model = _model()
    inputs = _inputs(2)
    targets = torch.tensor([1, 2])
    generator = torch.Generator().manual_seed(2)
    source = UpsampledMaps(
        torch.rand(37, 4, 4, generator=generator),
        torch.randint(0, 2, (37,), generator=generator),
        (32, 32),
    )
    compiled = CompiledForward(model)
    with torch.no_grad():
        eager = score_masked(model, inputs, targets, source, batch_size=16)
        got = score_masked(model, inputs, targets, source, batch_size=16, compiled=compiled)
        torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-6)
        model.head.weight.mul_(-1)  # an in-place update: the compiled path must see it
        eager = score_masked(model, inputs, targets, source, batch_size=16)
        got = score_masked(model, inputs, targets, source, batch_size=16, compiled=compiled)
    torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-6)


def test_a_model_that_does_not_compile_runs_eagerly_with_a_warning(monkeypatch):
    def failing_compile(function, **options):
        def compiled(*args):
            raise RuntimeError("inductor: unsupported operator (simulated)")

        return compiled

    monkeypatch.setattr(torch, "compile", failing_compile)
    model = _model()
    inputs = _inputs(1)
    eager = _explain(SISE(model, LAYERS), inputs, [2])
    explainer = SISE(model, LAYERS, runtime=Runtime(compile=True))
    with pytest.warns(UserWarning, match="run eagerly"):
        got = explainer(inputs, [2])
    assert explainer.model_runtime._compiled is not None and "simulated" in str(
        explainer.model_runtime._compiled.failure
    )
    torch.testing.assert_close(got.maps, eager.maps)
    again = _explain(explainer, inputs, [2])  # stays eager, without trying again
    torch.testing.assert_close(again.maps, eager.maps)


def test_balanced_batches_pad_to_multiples_of_8():
    for total in range(1, 2000, 7):
        step, rows = _balanced_batches(total, 512)
        assert step <= rows <= 512 and rows % 8 == 0 and rows - step < 8
        assert -(-total // step) == -(-total // 512)  # as few batches as the batch size allows
    assert _balanced_batches(1875, 512) == (469, 472)  # SISE on ResNet-50 at 224 px
    assert _balanced_batches(672, 512) == (336, 336)  # Ada-SISE


def test_cuda_graph_batches_use_few_shapes():
    quantum = _row_quantum(512, cudagraphs=True)
    assert quantum == 64 and _row_quantum(512, cudagraphs=False) == 8
    shapes = set()
    for total in range(1, 2000, 7):
        step, rows = _balanced_batches(total, 512, quantum)
        assert step <= rows <= 512
        batches = -(-total // step)
        assert batches == -(-total // 512)  # as few batches as the batch size allows
        last = total - (batches - 1) * step
        shapes |= {rows, _padded(last, 512, quantum)}
        assert rows - step < 64  # padding: less than an eighth of the batch
    assert shapes <= {64 * i for i in range(1, 9)}, shapes


def test_compile_option_is_checked():
    assert compile_setting("cudagraphs") == "cudagraphs"
    for bad in ("yes", 1, None):
        with pytest.raises(SiseError, match="compile"):
            compile_setting(bad)
    with pytest.raises(SiseError, match="compile"):
        SISE(_model(), LAYERS, runtime=Runtime(compile="max"))  # type: ignore[arg-type]
