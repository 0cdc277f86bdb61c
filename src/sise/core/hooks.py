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

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from sise.core.layers import split_call
from sise.core.scores import ScoreKind
from sise.errors import SiseError
from sise.targets import Target, TargetSpec, checked_scores, resolve_target, target_scores


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
    module ran more than once (see :func:`sise.core.layers.split_call`).
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


def _all_finite(output: object) -> Tensor | None:
    """One device flag: every floating tensor of the output (dict, tuple or tensor) is finite;
    ``None`` if the output holds no floating tensor."""
    parts = list(output.values()) if isinstance(output, dict) else output
    flags = [
        torch.isfinite(t.detach()).all()
        for t in (parts if isinstance(parts, tuple | list) else [parts])
        if isinstance(t, Tensor) and t.is_floating_point()
    ]
    if not flags:
        return None
    return torch.stack([f.to(flags[0].device) for f in flags]).all()


def check_finite_logits(logits: object) -> object:
    """The output, unless the model returned NaN or Inf (an explanation of them means nothing).

    Tensors in a dict or tuple output (a segmentation model's) are checked too, in one wait on
    the device.
    """
    finite = _all_finite(logits)
    if finite is not None and not bool(finite):
        raise SiseError(
            "the model returned NaN or Inf scores for these inputs: check the inputs' values "
            "and the model's weights"
        )
    return logits


@dataclass
class GradientPass:
    """One forward and backward pass of the explained score with respect to some layers.

    Attributes:
        logits: the model's output on the clean inputs (no graph attached): (N, K) for a
            classifier, whatever the model returns otherwise.
        targets: (N,) explained class per sample (-1 for a target that is not a class).
        scores: (N,) explained score Ψ(x) on the clean inputs.
        activations: per layer, (N, C, h, w) outputs ``A`` (detached).
        gradients: per layer, ``∂Ψ/∂A`` with the same shape.
        target: the resolved target (:func:`sise.targets.resolve_target`), for the masked passes.
    """

    logits: object
    targets: Tensor
    scores: Tensor
    activations: list[Tensor]
    gradients: list[Tensor]
    target: Target
    input_gradient: Tensor | None = None


def _detached(output: object) -> object:
    if isinstance(output, Tensor):
        return output.detach()
    if isinstance(output, dict):
        return {k: _detached(v) for k, v in output.items()}
    if isinstance(output, tuple | list):
        return type(output)(_detached(v) for v in output)
    return output


def gradient_pass(
    model: nn.Module,
    layers: Sequence[tuple[str, nn.Module]],
    inputs: Tensor,
    targets: TargetSpec,
    score: ScoreKind,
    *,
    with_input_gradient: bool = False,
) -> GradientPass:
    """Forward ``inputs``, then differentiate the target's score Ψ with respect to the layers'
    outputs (and, with ``with_input_gradient``, the input).

    ``targets`` is anything a method takes (class indices, ``None``, a callable: see
    :mod:`sise.targets`); it is resolved here, once, against the clean output.

    Gradients are taken with ``torch.autograd.grad`` with respect to the activations only, so no
    parameter's ``.grad`` is touched and no ``requires_grad`` flag is changed: the input is made a
    leaf that requires grad, which builds the graph even through a frozen model. Summing the
    per-sample scores is exact because in eval mode a sample's score depends only on itself
    (the row-by-row contract of a target).
    """
    leaf = inputs.detach().requires_grad_(True)
    with torch.enable_grad(), LayerCapture(layers) as capture:
        output = model(leaf)
        missing = [name for name, _ in layers if name not in capture.outputs]
        if missing:
            raise SiseError(f"layers {missing} were not run by the model's forward pass")
        activations = [capture.outputs[name] for name, _ in layers]
        return differentiate(
            output,
            activations,
            activations,
            targets,
            score,
            inputs,
            input_leaf=leaf if with_input_gradient else None,
        )


def differentiate(
    output: object,
    activations: Sequence[Tensor],
    wrt: Sequence[Tensor],
    targets: TargetSpec,
    score: ScoreKind,
    inputs: Tensor,
    *,
    input_leaf: Tensor | None = None,
) -> GradientPass:
    """The second half of a gradient pass: resolve the target on ``output``, score it, and take
    ``∂Ψ/∂wrt``, one tensor of ``wrt`` per layer (the activations themselves, or zeros added to
    them: :mod:`sise.runtime.compiled_gradients`), and ``∂Ψ/∂input_leaf`` if given.

    Call it with grad mode on, while ``output`` still holds its graph. A layer the score does not
    depend on gets zero gradients. ``inputs`` are the model's inputs (how many samples, and the
    device the resolved classes go to).
    """
    n = inputs.shape[0]
    target, scores = _resolved_and_scored(output, targets, score, n)
    if not scores.requires_grad:
        raise SiseError(
            "the target's score has no gradient with respect to the model's output: compute "
            "it with differentiable torch operations on the output (no .item(), NumPy, "
            "argmax or .detach())"
        )
    sources = [*wrt, input_leaf] if input_leaf is not None else list(wrt)
    gradients = torch.autograd.grad(scores.sum(), sources, allow_unused=True)
    input_gradient = None
    if input_leaf is not None:
        found = gradients[-1]
        input_gradient = torch.zeros_like(input_leaf) if found is None else found.detach()
    return GradientPass(
        logits=_detached(output),
        targets=target.classes(n, inputs.device),
        scores=scores.detach(),
        activations=[a.detach() for a in activations],
        gradients=[
            torch.zeros_like(a) if g is None else g.detach()
            for a, g in zip(activations, gradients[: len(activations)], strict=True)
        ],
        input_gradient=input_gradient,
        target=target,
    )


@torch.no_grad()
def forward_scores(
    model: nn.Module,
    inputs: Tensor,
    targets: TargetSpec,
    score: ScoreKind,
) -> tuple[Target, Tensor, Tensor]:
    """One plain forward pass: the resolved target, the (N,) explained classes (-1: not a class)
    and the (N,) explained scores Ψ(x)."""
    return score_output(model(inputs), targets, score, inputs.shape[0])


def score_output(
    output: object, targets: TargetSpec, score: ScoreKind, n: int
) -> tuple[Target, Tensor, Tensor]:
    """The target resolved on a clean output of ``n`` inputs, their classes and their scores."""
    target, scores = _resolved_and_scored(output, targets, score, n)
    return target, target.classes(n, scores.device), scores


def _resolved_and_scored(
    output: object, targets: TargetSpec, score: ScoreKind, n: int
) -> tuple[Target, Tensor]:
    """The target resolved on a clean output and its (n,) scores, both checked to be finite.

    The output's and the scores' finiteness are read in one wait on the device (not one each);
    the error then says which of the two is at fault.
    """
    target = resolve_target(output, targets, score, n)
    scores = checked_scores(target, output, n)
    finite = torch.isfinite(scores.detach()).all()
    output_finite = _all_finite(output)
    if output_finite is not None:
        finite = finite & output_finite.to(finite.device)
    if not bool(finite):
        check_finite_logits(output)  # raises if the model's output is at fault
        target_scores(target, output, n)  # else the target's score is: this raises
    return target, scores
