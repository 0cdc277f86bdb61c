"""The gradient pass through torch.compile (sise.runtime.compiled_gradients.CompiledGradientPass).

torch.compile builds C++ kernels on a CPU: the first compilation of a session takes seconds.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from conftest import HandModel
from tiny_models import SmallCNN
from torch import nn

from sise import SISE, SiseError
from sise.core.hooks import GradientPass, gradient_pass
from sise.core.layers import resolve_layers
from sise.runtime import Runtime
from sise.runtime.compiled_gradients import CompiledGradientPass
from sise.runtime.device import fidelity

pytestmark = pytest.mark.slow

LAYERS = ["features.2", "features.5", "features.8"]


def _model() -> SmallCNN:
    torch.manual_seed(0)
    model = SmallCNN(classes=6).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        model.features[1].running_mean.uniform_(-0.2, 0.2)
        model.features[1].running_var.uniform_(0.5, 2.0)
    return model


def _inputs(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _assert_same_pass(compiled: GradientPass, eager: GradientPass) -> None:
    assert len(compiled.gradients) == len(eager.gradients)
    for got, want in zip(compiled.gradients, eager.gradients, strict=True):
        assert bool(want.abs().amax() > 0)  # a layer with no gradient would prove nothing
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    for got, want in zip(compiled.activations, eager.activations, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled.logits, eager.logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled.scores, eager.scores, rtol=1e-4, atol=1e-6)
    assert compiled.targets.tolist() == eager.targets.tolist()


def _unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def test_hand_model_gradients_are_the_hand_computed_ones():
    # HandModel (conftest): dz0/dA_k sums to the class-0 weights (1, 0.5, -1, 1) at both layers.
    model = HandModel().eval()
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4) - 7.5
    passes = CompiledGradientPass(model)
    layers = resolve_layers(model, ["relu", "pool"])
    grad = passes(layers, x, 0, "logit")
    assert passes.failure is None and passes.compile_seconds > 0
    for gradient in grad.gradients:
        torch.testing.assert_close(gradient.sum(dim=(2, 3))[0], torch.tensor([1.0, 0.5, -1.0, 1.0]))
    # z0(x) = 0.5 mean relu(-x) + 1 = 0.5 * (0.5 + 1.5 + ... + 7.5) / 16 + 1
    assert grad.scores.item() == pytest.approx(0.5 * 32 / 16 + 1)


def test_compiled_pass_equals_the_eager_pass_and_compiles_once_for_every_batch_size():
    model = _model()
    layers = resolve_layers(model, LAYERS)
    passes = CompiledGradientPass(model)
    for n, targets in ((1, None), (2, [0, 3]), (3, lambda out: out[:, 2]), (2, None)):
        x = _inputs(n, seed=n)
        if n == 3:  # batch sizes after the second compile reuse it (the batch is dynamic)
            graphs = _unique_graphs()
        compiled = passes(layers, x, targets, "softmax")
        _assert_same_pass(compiled, gradient_pass(model, layers, x, targets, "softmax"))
    assert _unique_graphs() == graphs
    assert passes.failure is None


def test_model_left_as_it_was_and_no_weight_gradient():
    model = _model()
    model.features[0].weight.requires_grad_(False)  # a partly frozen model
    flags = [p.requires_grad for p in model.parameters()]
    layers = resolve_layers(model, LAYERS)
    x = _inputs(2)
    grad = CompiledGradientPass(model)(layers, x, [1, 2], "logit")
    _assert_same_pass(grad, gradient_pass(model, layers, x, [1, 2], "logit"))
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    hooks = [m._forward_hooks for m in model.modules()] + [
        m._forward_pre_hooks for m in model.modules()
    ]
    assert not any(hooks)
    assert not model.training


class SharedActivation(nn.Module):
    """One ReLU module after two convolutions: it runs twice per forward pass."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv2(self.act(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


def test_repeated_module_runs_eagerly_without_warning():
    model = SharedActivation().eval()
    x = torch.randn(2, 3, 16, 16)
    layers = resolve_layers(model, ["act@0", "act@1"])
    passes = CompiledGradientPass(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grad = passes(layers, x, 0, "logit")
    _assert_same_pass(grad, gradient_pass(model, layers, x, 0, "logit"))
    assert passes.failure is None and passes.compile_seconds == 0


def test_user_errors_are_the_eager_errors_and_do_not_disable_compiling():
    model = _model()
    layers = resolve_layers(model, LAYERS)
    passes = CompiledGradientPass(model)
    with pytest.raises(SiseError, match="class index 9"):
        passes(layers, _inputs(1), 9, "softmax")
    assert passes.failure is None
    passes(layers, _inputs(1), 1, "softmax")
    assert passes.failure is None and passes.compile_seconds > 0


def test_a_failure_warns_once_and_falls_back_to_the_eager_pass(monkeypatch):
    model = _model()
    layers = resolve_layers(model, LAYERS)
    passes = CompiledGradientPass(model)
    x = _inputs(2)
    passes(layers, x, None, "softmax")
    entry = next(iter(passes._entries.values()))
    assert entry is not None

    def broken(*args: object) -> None:
        raise RuntimeError("simulated compiler failure")

    monkeypatch.setattr(entry, "function", broken)
    with pytest.warns(UserWarning, match="simulated compiler failure"):
        grad = passes(layers, x, None, "softmax")
    _assert_same_pass(grad, gradient_pass(model, layers, x, None, "softmax"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        passes(layers, x, None, "softmax")  # eager from now on, without another warning
    assert not any(m._forward_hooks for m in model.modules())


def test_sise_compiles_the_gradient_pass_on_cuda_only():
    model = _model()
    explainer = SISE(model, LAYERS, runtime=Runtime(compile=True))
    assert isinstance(explainer.model_runtime._compiled_gradients, CompiledGradientPass)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        explainer(_inputs(1), [0])
    assert explainer.model_runtime._compiled_gradients._entries == {}  # a CPU input: the eager pass
    assert SISE(model, LAYERS).model_runtime._compiled_gradients is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile_mode", [True, "cudagraphs"])
def test_cuda_sise_with_the_compiled_gradient_pass_keeps_the_eager_maps(compile_mode):
    model = _model().cuda()
    x = _inputs(3).cuda()
    eager = SISE(model, LAYERS)(x, [0, 3, 5])
    explainer = SISE(model, LAYERS, runtime=Runtime(compile=compile_mode))
    for _ in range(3):  # warm-up, recording, replay of the recorded CUDA graphs
        fast = explainer(x, [0, 3, 5])
        assert explainer.model_runtime._compiled_gradients is not None
        assert explainer.model_runtime._compiled_gradients.failure is None
        assert any(
            entry is not None
            for entry in explainer.model_runtime._compiled_gradients._entries.values()
        )
        # compiled masked forwards round differently (TF32 either way): a fused-map gate pixel
        # may flip, the layer maps stay close
        assert bool((fidelity(fast.maps, eager.maps) >= 0.999).all())
        torch.testing.assert_close(fast.layer_maps, eager.layer_maps, rtol=0, atol=2e-3)
        assert fast.kept_maps.tolist() == eager.kept_maps.tolist()


def test_a_module_without_floating_output_is_not_compiled():
    class IndexOut(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.argmax(dim=1, keepdim=True)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.index = IndexOut()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.conv(x)
            self.index(features)
            return self.fc(features.mean(dim=(2, 3)))

    model = Net().eval()
    passes = CompiledGradientPass(model)
    layers = resolve_layers(model, ["index"])
    entry = passes._entry(layers, torch.randn(1, 3, 8, 8))
    assert entry is None


def test_many_models_stay_compiled_past_torch_default_recompile_limit():
    # Every model shares one compiled function's cache; past torch's limit (8 by default, 1
    # here) the later ones would run uncompiled, silently.
    import torch._dynamo.config as config

    from sise.runtime.device import CompiledForward

    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    x = _inputs(2)
    with config.patch(**{name: 1}):
        for depth in (1, 2, 3):  # another structure: another graph
            torch.manual_seed(depth)
            convs: list[nn.Module] = []
            for i in range(depth):
                convs += [nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1), nn.ReLU()]
            head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)]
            model = nn.Sequential(*convs, *head).eval()
            layers = resolve_layers(model, [str(2 * depth - 1)])
            graphs = _unique_graphs()
            CompiledGradientPass(model)(layers, x, None, "logit")
            assert _unique_graphs() == graphs + 1
            with torch.no_grad():
                CompiledForward(model)(x, None, False)
            assert _unique_graphs() == graphs + 2
        assert getattr(config, name) == 1


def test_a_compiled_pass_that_disagrees_with_the_eager_one_is_dropped(monkeypatch):
    from sise.runtime import compiled_gradients

    def blind_hook(self, index):  # the zeros are added with no effect: no gradient reaches them
        state = self.state

        def hook(module, args, output):
            state.activations[index] = output
            return output + 0 * state.eps[index]

        return hook

    monkeypatch.setattr(compiled_gradients._Entry, "_hook", blind_hook)
    model = _model()
    layers = resolve_layers(model, LAYERS)
    passes = CompiledGradientPass(model)
    x = _inputs(2, seed=7)  # another shape key than the other tests' calls: compiled afresh
    with pytest.warns(UserWarning, match="gradients at layer 'features.2' differ"):
        grad = passes(layers, x, None, "softmax")
    _assert_same_pass(grad, gradient_pass(model, layers, x, None, "softmax"))
    assert passes.failure is not None and "relative L2" in passes.failure


def test_disagreement_measures_relative_l2():
    from sise.runtime.compiled_gradients import TOLERANCE, disagreement

    model = _model()
    layers = resolve_layers(model, LAYERS)
    names = [name for name, _ in layers]
    eager = gradient_pass(model, layers, _inputs(2), None, "softmax")
    assert disagreement(eager, eager, names) is None
    near = dataclasses.replace(eager, gradients=[g * (1 + TOLERANCE / 2) for g in eager.gradients])
    assert disagreement(near, eager, names) is None
    far = dataclasses.replace(eager, gradients=[g * (1 + 2 * TOLERANCE) for g in eager.gradients])
    assert "features.2" in str(disagreement(far, eager, names))
    nan = dataclasses.replace(eager, activations=[a * float("nan") for a in eager.activations])
    assert "activations" in str(disagreement(nan, eager, names))
    other = dataclasses.replace(eager, targets=eager.targets + 1)
    assert "other classes" in str(disagreement(other, eager, names))


def test_with_cuda_graphs_the_first_three_calls_per_batch_size_are_checked(monkeypatch):
    # CUDA graphs warm up, record, then replay: a replay reading stale memory would only show
    # on the third call. Simulated on the CPU: an entry that wants three checks, whose third
    # call returns another call's gradients.
    from sise.runtime import compiled_gradients

    make_entry = compiled_gradients.CompiledGradientPass._make_entry

    def three_checks(self, layers, inputs):
        entry = make_entry(self, layers, inputs)
        entry.checks_wanted = 3
        return entry

    monkeypatch.setattr(compiled_gradients.CompiledGradientPass, "_make_entry", three_checks)
    eager_calls = []

    def counted(*args, **kwargs):
        eager_calls.append(1)
        return gradient_pass(*args, **kwargs)

    monkeypatch.setattr(compiled_gradients, "gradient_pass", counted)
    model = _model()
    layers = resolve_layers(model, LAYERS)
    passes = CompiledGradientPass(model)
    x = _inputs(2, seed=11)
    for call in range(1, 5):
        _assert_same_pass(
            passes(layers, x, [1, 4], "logit"), gradient_pass(model, layers, x, [1, 4], "logit")
        )
        assert len(eager_calls) == min(call, 3)
    assert passes.failure is None

    run = compiled_gradients.CompiledGradientPass._run
    stale = run(passes, passes._entry(layers, x), _inputs(2, seed=12), [1, 4], "logit")
    calls = []

    def stale_on_third_call(self, entry, inputs, targets, score):
        calls.append(1)
        return stale if len(calls) == 3 else run(self, entry, inputs, targets, score)

    monkeypatch.setattr(compiled_gradients.CompiledGradientPass, "_run", stale_on_third_call)
    passes = CompiledGradientPass(model)
    for _ in range(2):
        passes(layers, x, [1, 4], "logit")
    assert passes.failure is None
    with pytest.warns(UserWarning, match="differ from the eager pass"):
        grad = passes(layers, x, [1, 4], "logit")
    _assert_same_pass(grad, gradient_pass(model, layers, x, [1, 4], "logit"))
    assert passes.failure is not None
