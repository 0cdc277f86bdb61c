"""Hooks and gradients, in one place, and always cleaned up.

Everything that touches a user's model goes through :func:`explaining`: it switches to eval mode for
the duration (BatchNorm statistics and dropout would otherwise make explanations noisy and
non-deterministic) and puts every module's own ``training`` flag back afterwards, and
:class:`LayerCapture`, whose hooks are removed however the block is left.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from sise.errors import SiseError
from sise.layers import split_call
from sise.scores import ScoreKind, check_logits, class_scores


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
    """Record the outputs of named layers during one forward pass.

    Use as a context manager, around one forward pass; the hooks exist only inside the ``with``
    block. With ``detach_downstream=True`` each hooked output is handed on as a clone, so that
    in-place operations later in the network (``ReLU(inplace=True)``, ``out += identity``) cannot
    change the recorded activation or break the gradient taken with respect to it.

    A module can run several times in one forward pass (a shared activation module, a block
    applied in a loop). A name ``"layer@k"`` records its ``k``-th call (from 0; ``@-1`` is the
    last); a plain name records its last call, and a warning says so when the block ends if the
    module ran more than once (see :func:`sise.layers.split_call`).
    """

    def __init__(
        self,
        layers: Sequence[tuple[str, nn.Module]],
        detach_downstream: bool = True,
        *,
        warn_repeated: bool = True,
    ):
        self.layers = list(layers)
        self._clone = detach_downstream
        self._warn = warn_repeated
        self._handles: list[RemovableHandle] = []
        self._calls: dict[str, int] = {}  # how many times each layer's module ran
        self._kept: dict[str, dict[int, Tensor]] = {}  # the outputs that can still be selected

    def __enter__(self) -> LayerCapture:
        self._calls = {name: 0 for name, _ in self.layers}
        self._kept = {name: {} for name, _ in self.layers}
        for name, module in dict(self.layers).items():  # one hook per name, or calls count twice
            self._handles.append(module.register_forward_hook(self._hook_for(name)))
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if exc_type is None and self._warn:
            for name in self._calls:
                count = self._calls[name]
                if split_call(name)[1] is None and count > 1:
                    warnings.warn(
                        f"layer {name!r} ran {count} times in one forward pass; its last call is "
                        f"used. Select a call with '{name}@k', k = 0..{count - 1}",
                        stacklevel=2,
                    )

    @property
    def calls(self) -> dict[str, int]:
        """How many times each layer's module ran."""
        return dict(self._calls)

    @property
    def outputs(self) -> dict[str, Tensor]:
        """Each layer's recorded output (its selected call), for the layers that ran."""
        selected: dict[str, Tensor] = {}
        for name, _ in self.layers:
            count = self._calls.get(name, 0)
            if count == 0:
                continue
            module_name, index = split_call(name)
            call = count - 1 if index is None else index if index >= 0 else count + index
            if not 0 <= call < count:
                raise SiseError(
                    f"layer {name!r} selects call {index}, but {module_name!r} ran {count} "
                    f"time(s) in the forward pass: use {module_name}@0..{module_name}@{count - 1}"
                )
            selected[name] = self._kept[name][call]
        return selected

    def _hook_for(self, name: str):
        index = split_call(name)[1]
        kept = self._kept[name]

        def hook(module: nn.Module, args: object, output: object) -> object:
            if not isinstance(output, Tensor):
                raise SiseError(
                    f"layer {name!r} returns {type(output).__name__}, not a tensor: "
                    "choose a layer whose output is a (N, C, h, w) feature map"
                )
            call = self._calls[name]
            self._calls[name] = call + 1
            if index is None:
                kept.clear()  # a plain name keeps the last call: only hold one output
            elif index >= 0 and call != index:
                return None
            kept[call] = output
            return output.clone() if self._clone else None

        return hook


def check_finite_logits(logits: Tensor) -> Tensor:
    """The logits, unless the model returned NaN or Inf (an explanation of them means nothing)."""
    if not bool(torch.isfinite(logits.detach()).all()):
        raise SiseError(
            "the model returned NaN or Inf scores for these inputs: check the inputs' values and "
            "the model's weights"
        )
    return logits


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


def _refuse_names(targets: object) -> None:
    """Class names and booleans are not class indices: say how to get an index."""
    items = targets if isinstance(targets, list | tuple) else [targets]
    for item in items:
        if isinstance(item, str):
            raise SiseError(
                f"targets are class indices, got the name {item!r}: turn a name into its index "
                "with sise.models.LoadedModel.class_index (e.g. loaded.class_index('tabby'))"
            )
        if isinstance(item, bool | np.bool_):
            raise SiseError(
                f"targets are class indices, got the boolean {item!r}: give the class index "
                "(0, 1, ...) instead"
            )


def resolve_targets(logits: Tensor, targets: int | Sequence[int] | Tensor | None) -> Tensor:
    """Targets as an (N,) long tensor on the logits' device; ``None`` means the predicted class.

    Raises:
        SiseError: for a class name (use :meth:`sise.models.LoadedModel.class_index`), a boolean,
            a float, an index out of range, or a number of targets that is neither 1 nor N.
    """
    n, num_classes = logits.shape
    if targets is None:
        return logits.argmax(dim=1)
    _refuse_names(targets)
    if isinstance(targets, Integral):
        resolved = torch.full((n,), int(targets), dtype=torch.long, device=logits.device)
    else:
        try:
            resolved = torch.as_tensor(targets, device=logits.device)
        except (TypeError, ValueError, RuntimeError) as error:
            raise SiseError(
                f"targets must be class indices (an int, a list of ints or an integer tensor), "
                f"got {type(targets).__name__}: {error}"
            ) from error
        if resolved.dtype == torch.bool:
            raise SiseError("targets are class indices, got a boolean tensor: give the indices")
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
        logits = check_finite_logits(check_logits(model(leaf), score))
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
    logits = check_finite_logits(check_logits(model(inputs), score))
    resolved = resolve_targets(logits, targets)
    return resolved, class_scores(logits, resolved, score)
