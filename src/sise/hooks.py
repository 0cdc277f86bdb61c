"""Hooks and gradients, in one place, and always cleaned up.

Everything that touches a user's model goes through :func:`explaining`: it switches to eval mode for
the duration (BatchNorm statistics and dropout would otherwise make explanations noisy and
non-deterministic) and puts every module's own ``training`` flag back afterwards, and
:class:`LayerCapture`, whose hooks are removed however the block is left.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from sise.errors import SiseError
from sise.scores import ScoreKind, class_scores


@contextlib.contextmanager
def explaining(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode inside the block; restore each module's training flag after."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


class LayerCapture:
    """Record the outputs of named layers during forward passes.

    Use as a context manager; the hooks exist only inside the ``with`` block. With
    ``detach_downstream=True`` each hooked output is handed on as a clone, so that in-place
    operations later in the network (``ReLU(inplace=True)``, ``out += identity``) cannot change
    the recorded activation or break the gradient taken with respect to it.
    """

    def __init__(self, layers: Sequence[tuple[str, nn.Module]], detach_downstream: bool = True):
        self.layers = list(layers)
        self.outputs: dict[str, Tensor] = {}
        self._clone = detach_downstream
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> LayerCapture:
        for name, module in self.layers:
            self._handles.append(module.register_forward_hook(self._hook_for(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook_for(self, name: str):  # noqa: ANN202 - a torch hook
        def hook(module: nn.Module, args: object, output: object) -> object:
            if not isinstance(output, Tensor):
                raise SiseError(
                    f"layer {name!r} returns {type(output).__name__}, not a tensor: "
                    "choose a layer whose output is a (N, C, h, w) feature map"
                )
            self.outputs[name] = output
            return output.clone() if self._clone else None

        return hook


@dataclass
class GradientPass:
    """One forward and backward pass of the explained score with respect to some layers.

    Attributes:
        logits: (N, K) model outputs on the clean inputs (no graph attached).
        targets: (N,) explained class per sample.
        scores: (N,) explained score Ψ_c(x) on the clean inputs.
        activations: per layer, (N, C, h, w) outputs ``A`` (detached).
        gradients: per layer, ``∂Ψ_c/∂A`` with the same shape.
    """

    logits: Tensor
    targets: Tensor
    scores: Tensor
    activations: list[Tensor]
    gradients: list[Tensor]
    input_gradient: Tensor | None = None


def resolve_targets(logits: Tensor, targets: int | Sequence[int] | Tensor | None) -> Tensor:
    """Targets as an (N,) long tensor on the logits' device; ``None`` means the predicted class."""
    n, num_classes = logits.shape
    if targets is None:
        return logits.argmax(dim=1)
    if isinstance(targets, int):
        resolved = torch.full((n,), targets, dtype=torch.long, device=logits.device)
    else:
        resolved = torch.as_tensor(targets, device=logits.device)
        if resolved.is_floating_point() or resolved.is_complex():
            raise SiseError(f"targets must be integer class indices, got dtype {resolved.dtype}")
        resolved = resolved.long().reshape(-1)
        if resolved.numel() == 1 and n > 1:
            resolved = resolved.expand(n)
    if resolved.numel() != n:
        raise SiseError(f"got {resolved.numel()} targets for {n} inputs: give one class per input")
    bad = (resolved < 0) | (resolved >= num_classes)
    if bool(bad.any()):
        raise SiseError(
            f"class index {int(resolved[bad][0])} is out of range: the model has {num_classes} "
            f"classes, so use 0..{num_classes - 1}"
        )
    return resolved


def gradient_pass(
    model: nn.Module,
    layers: Sequence[tuple[str, nn.Module]],
    inputs: Tensor,
    targets: int | Sequence[int] | Tensor | None,
    score: ScoreKind,
    *,
    with_input_gradient: bool = False,
) -> GradientPass:
    """Forward ``inputs``, then differentiate Ψ_c with respect to the layers' outputs
    (and, with ``with_input_gradient``, the input).

    Gradients are taken with ``torch.autograd.grad`` with respect to the activations only, so no
    parameter's ``.grad`` is touched and no ``requires_grad`` flag is changed: the input is made a
    leaf that requires grad, which builds the graph even through a frozen model. Summing the
    per-sample scores is exact because in eval mode a sample's score depends only on itself.
    """
    leaf = inputs.detach().requires_grad_(True)
    with torch.enable_grad(), LayerCapture(layers) as capture:
        logits = model(leaf)
        if not isinstance(logits, Tensor) or logits.ndim != 2:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise SiseError(f"the model must return (batch, classes) scores, got {shape}")
        resolved = resolve_targets(logits.detach(), targets)
        scores = class_scores(logits, resolved, score)
        missing = [name for name, _ in layers if name not in capture.outputs]
        if missing:
            raise SiseError(f"layers {missing} were not run by the model's forward pass")
        activations = [capture.outputs[name] for name, _ in layers]
        wrt = [*activations, leaf] if with_input_gradient else activations
        gradients = torch.autograd.grad(scores.sum(), wrt, allow_unused=True)
    input_gradient = gradients[-1].detach() if with_input_gradient else None
    gradients = gradients[: len(activations)]
    return GradientPass(
        logits=logits.detach(),
        targets=resolved,
        scores=scores.detach(),
        activations=[a.detach() for a in activations],
        gradients=[
            torch.zeros_like(a) if g is None else g.detach()
            for a, g in zip(activations, gradients, strict=True)
        ],
        input_gradient=input_gradient,
    )


@torch.no_grad()
def forward_scores(
    model: nn.Module,
    inputs: Tensor,
    targets: int | Sequence[int] | Tensor | None,
    score: ScoreKind,
) -> tuple[Tensor, Tensor]:
    """One plain forward pass: the resolved (N,) targets and the (N,) explained scores Ψ_c(x)."""
    logits = model(inputs)
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise SiseError(f"the model must return (batch, classes) scores, got {shape}")
    resolved = resolve_targets(logits, targets)
    return resolved, class_scores(logits, resolved, score)
