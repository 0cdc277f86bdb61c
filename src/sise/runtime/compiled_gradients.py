"""The gradient pass through ``torch.compile``: one compiled forward and backward.

On a GPU, the gradient pass of a few images is bound by launching kernels, not by running them:
ResNet-50's forward and backward at batch 1 issue hundreds of small kernels, each dispatched by
the eager interpreter and the autograd engine (H100, exact fp32: 15.8 ms for the pass, the
forward alone 3.6 ms; SISE's 1,889 masked forwards take 89 ms compiled). Compiled, the pass runs
fused kernels from generated code, and with CUDA graphs (``mode="reduce-overhead"``) both halves
are replayed as recorded.

A compiled function cannot be asked for gradients with respect to its intermediate values (they
are not nodes of the autograd graph outside it). So a forward hook adds a zero tensor ``ε_l``, an
input of the compiled function that requires grad, to each layer's output:
``A_l + ε_l = A_l`` and ``∂Ψ/∂ε_l = ∂Ψ/∂A_l``. The weights go in detached
(:class:`sise.runtime.device.CompiledWeights`), so the compiled backward computes only those gradients,
from the output down to the shallowest layer, and the model's ``requires_grad`` flags are never
read or changed. The hooks exist only during the call, as :class:`sise.core.hooks.LayerCapture`'s do.

Targets and scores stay eager (:func:`sise.core.hooks.differentiate`, the same code as the eager
pass), so every kind of target works and the errors are the same.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from sise.core.hooks import GradientPass, LayerCapture, differentiate, gradient_pass
from sise.core.layers import split_call
from sise.core.scores import ScoreKind
from sise.errors import SiseError
from sise.runtime.device import CompiledWeights, room_to_recompile
from sise.targets import TargetSpec

__all__ = ["CompiledGradientPass"]


class _HookState:
    """What the hooks of one compiled pass read (the ε) and write (the activations)."""

    def __init__(self, count: int) -> None:
        self.eps: list[Tensor] = []
        self.activations: list[Tensor | None] = [None] * count

    def clear(self) -> None:
        """Let go of the last call's tensors."""
        self.eps = []
        self.activations = [None] * len(self.activations)


class _Entry:
    """The compiled pass for one device and one list of layers."""

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[tuple[str, nn.Module]],
        shapes: list[tuple[tuple[int, ...], torch.dtype]],
        cudagraphs: bool,
    ) -> None:
        self.layers = list(layers)
        self.shapes = shapes  # each layer's output per sample: (C, h, w) and dtype
        self.cudagraphs = cudagraphs
        # Checks against the eager pass that each input shape has passed. With CUDA graphs a
        # shape's first call warms up, the second records and the third replays: all three are
        # checked, so that a replay that reads stale memory cannot pass unseen.
        self.checks_passed: dict[tuple, int] = {}
        self.checks_wanted = 3 if cudagraphs else 1
        self.weights = CompiledWeights(None, channels_last=False, static=cudagraphs)
        state = self.state = _HookState(len(layers))
        # made once, so that the traced hooks are the same functions at every call
        self.hooks = [self._hook(index) for index in range(len(layers))]

        def forward(
            weights: dict[str, Tensor], x: Tensor, eps: list[Tensor]
        ) -> tuple[object, list[Tensor | None]]:
            state.eps = eps
            output = torch.func.functional_call(model, weights, (x,))
            return output, list(state.activations)

        self.function = torch.compile(forward, mode="reduce-overhead" if cudagraphs else None)

    def _hook(self, index: int):
        state = self.state

        def hook(module: nn.Module, args: object, output: Tensor) -> Tensor:
            state.activations[index] = output
            return output + state.eps[index]

        return hook


class CompiledGradientPass:
    """:func:`sise.core.hooks.gradient_pass`, compiled once per input shape and reused.

    Each call returns what the eager pass returns (the same target resolution and checks; maps
    equal up to float rounding). The first call per input shape (with CUDA graphs: the first
    three per batch size, up to the first replay of the recorded graphs) also runs the eager pass
    and compares the two (:func:`disagreement`). It falls back to the eager pass, for good, with one
    warning, if compiling or running the compiled pass fails or it disagrees with the eager one;
    and, without a warning, for layers it cannot express: a module that runs more than once per forward pass (``"name@k"``, or a repeated
    plain name), or an output that is not a floating-point tensor.

    Cost: the first call per input shape and list of layers runs one extra plain forward (to
    learn the layers' shapes), compiles the forward and backward (ResNet-18 at 224 px on two
    CPU cores: about 25 s) and runs the eager pass for the check; :attr:`compile_seconds` sums
    those first calls.

    Args:
        model: the classifier, in the mode the gradient pass runs in (eval).
        cudagraphs: on CUDA, ``mode="reduce-overhead"``: the compiled forward and backward are
            replayed as CUDA graphs, and the results are copied out of the graphs' memory.
    """

    def __init__(self, model: nn.Module, cudagraphs: bool = False) -> None:
        self.model = model
        self.cudagraphs = cudagraphs
        self.failure: str | None = None
        self.compile_seconds = 0.0
        self._entries: dict[tuple, _Entry | None] = {}

    def __call__(
        self,
        layers: Sequence[tuple[str, nn.Module]],
        inputs: Tensor,
        targets: TargetSpec,
        score: ScoreKind,
    ) -> GradientPass:
        """The gradient pass of ``score`` for ``targets`` with respect to ``layers``' outputs."""
        if self.failure is None:
            start = time.perf_counter()
            entry = self._entry(layers, inputs)
            if entry is not None:
                # a batch of one compiles apart from larger ones (torch specialises size 1);
                # CUDA graphs are recorded for each batch size
                n = inputs.shape[0]
                key = (tuple(inputs.shape[1:]), inputs.dtype, n if entry.cudagraphs else n > 1)
                try:
                    result = self._run(entry, inputs, targets, score)
                except SiseError:
                    raise  # the user's target or model is at fault, not the compiler
                except Exception as error:
                    self._fail(f"{type(error).__name__}: {str(error).strip().splitlines()[0]}")
                else:
                    passed = entry.checks_passed.get(key, 0)
                    if passed >= entry.checks_wanted:
                        return result
                    self.compile_seconds += time.perf_counter() - start
                    # first use for this shape: check the compiled pass against the eager one
                    eager = gradient_pass(self.model, layers, inputs, targets, score)
                    problem = disagreement(result, eager, [name for name, _ in layers])
                    if problem is None:
                        entry.checks_passed[key] = passed + 1
                        return result
                    self._fail(problem)
                    return eager
        return gradient_pass(self.model, layers, inputs, targets, score)

    def _entry(self, layers: Sequence[tuple[str, nn.Module]], inputs: Tensor) -> _Entry | None:
        """The compiled pass for these layers and inputs, or ``None`` if they cannot have one."""
        import torch._dynamo  # noqa: F401 - slow to import; only the compiled path needs it

        names = tuple(name for name, _ in layers)
        key = (str(inputs.device), names, tuple(inputs.shape[1:]), inputs.dtype)
        if key not in self._entries:
            self._entries[key] = self._make_entry(layers, inputs)
        return self._entries[key]

    def _make_entry(self, layers: Sequence[tuple[str, nn.Module]], inputs: Tensor) -> _Entry | None:
        if any(split_call(name)[1] not in (None, 0, -1) for name, _ in layers):
            return None
        # One plain forward tells whether each layer's module runs once and gives a tensor.
        with torch.no_grad(), LayerCapture(layers, False, warn_repeated=False) as capture:
            self.model(inputs[:1])
        outputs = capture.outputs
        if any(count != 1 for count in capture.calls.values()) or len(outputs) != len(layers):
            return None
        if not all(out.is_floating_point() for out in outputs.values()):
            return None
        shapes = [(tuple(outputs[name].shape[1:]), outputs[name].dtype) for name, _ in layers]
        cudagraphs = self.cudagraphs and inputs.device.type == "cuda"
        return _Entry(self.model, layers, shapes, cudagraphs)

    def _run(
        self, entry: _Entry, inputs: Tensor, targets: TargetSpec, score: ScoreKind
    ) -> GradientPass:
        n = inputs.shape[0]
        x = inputs.detach()
        eps = [
            torch.zeros((n, *shape), dtype=dtype, device=inputs.device, requires_grad=True)
            for shape, dtype in entry.shapes
        ]
        if n > 1:
            torch._dynamo.maybe_mark_dynamic(x, 0)
            for tensor in eps:
                torch._dynamo.maybe_mark_dynamic(tensor, 0)
        weights = entry.weights.refresh(self.model)
        handles = [
            module.register_forward_hook(hook)
            for (_, module), hook in zip(entry.layers, entry.hooks, strict=True)
        ]
        try:
            with torch.enable_grad():
                if entry.cudagraphs:
                    torch.compiler.cudagraph_mark_step_begin()
                with room_to_recompile():
                    output, activations = entry.function(weights, x, eps)
                if any(a is None for a in activations):
                    raise RuntimeError("a layer's hook did not run in the compiled forward")
                result = differentiate(
                    output,
                    cast(list[Tensor], activations),  # all set: checked above
                    eps,
                    targets,
                    score,
                    inputs,
                )
        finally:
            for handle in handles:
                handle.remove()
            entry.state.clear()
        if entry.cudagraphs:  # the graphs' memory is overwritten by their next replay
            if isinstance(result.logits, Tensor):
                result.logits = result.logits.clone()
            result.activations = [a.clone() for a in result.activations]
            result.gradients = [g.clone() for g in result.gradients]
        return result

    def _fail(self, reason: str) -> None:
        self.failure = reason[:300]
        warnings.warn(
            f"torch.compile could not run this model's gradient pass ({self.failure}); it runs "
            "eagerly instead",
            stacklevel=4,
        )


#: Largest relative L2 difference ``‖g − g_eager‖ / ‖g_eager‖`` between a layer's compiled and
#: eager gradients that :func:`disagreement` accepts. Fused kernels round differently, and a
#: pre-activation that lands on the other side of a ReLU's kink moves a gradient downstream of it:
#: measured at most 4.2e-3 (ResNet-50 with random batch-norm statistics, two photos at 160 px; the
#: real EfficientNet-Lite0 5.6e-4). A broken pass (zeros, or another layer's gradient) is near 1.
TOLERANCE = 0.05


def disagreement(compiled: GradientPass, eager: GradientPass, names: Sequence[str]) -> str | None:
    """Why a compiled gradient pass cannot stand for the eager one, or ``None`` if it can: the same
    targets, and every layer's activations and gradients within :data:`TOLERANCE` (relative L2)."""
    if compiled.targets.tolist() != eager.targets.tolist():
        return "the compiled pass explained other classes than the eager one"
    pairs = [
        *(
            ("activations", name, c, e)
            for name, c, e in zip(names, compiled.activations, eager.activations, strict=True)
        ),
        *(
            ("gradients", name, c, e)
            for name, c, e in zip(names, compiled.gradients, eager.gradients, strict=True)
        ),
    ]
    for kind, name, got, want in pairs:
        if got.shape != want.shape:
            return f"the compiled pass gave {kind} of shape {tuple(got.shape)} at layer {name!r}"
        difference = float((got.float() - want.float()).norm())
        scale = float(want.float().norm())
        if not difference <= TOLERANCE * scale:  # NaN disagrees too
            relative = difference / scale if scale > 0 else float("inf")
            return (
                f"the compiled pass's {kind} at layer {name!r} differ from the eager pass's by "
                f"{relative:.2g} (relative L2; at most {TOLERANCE} is accepted)"
            )
    return None
