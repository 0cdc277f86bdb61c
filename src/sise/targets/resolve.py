"""What a user passes as ``targets``, made into a :class:`~sise.targets.target.Target`: class
indices, a callable, or one callable per input; and the suggestions for a misspelt class name."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from numbers import Integral

import numpy as np
import torch
from torch import Tensor

from sise.core.scores import ScoreKind, check_logits
from sise.errors import SiseError
from sise.targets.ready_made import ClassScore
from sise.targets.target import Target, checked_scores, class_indices

#: What every method's ``targets`` argument accepts.
TargetSpec = int | Sequence[int] | Tensor | Callable[[Tensor], Tensor] | Sequence[Callable] | None


class FunctionTarget(Target):
    """A user's callable, the same for every image (see the module's contract)."""

    def __init__(self, function: Callable[[Tensor], Tensor]) -> None:
        self.function = function

    def __call__(self, output: Tensor) -> Tensor:
        return self.function(output)

    def __repr__(self) -> str:
        return f"FunctionTarget({self.function!r})"


class PerImage(Target):
    """One callable per image (a sequence of targets, as pytorch-grad-cam takes them).

    Each image's callable is evaluated on the whole batch and each row keeps the score of its
    own image's callable: that costs one call per image per batch, but no copy to the host.
    """

    def __init__(
        self, targets: Sequence[Callable[[Tensor], Tensor]], owners: Tensor | None = None
    ) -> None:
        self.targets = [t if isinstance(t, Target) else FunctionTarget(t) for t in targets]
        self.owners = owners

    def __call__(self, output: Tensor) -> Tensor:
        scores = [checked_scores(target, output, len(_rows_of(output))) for target in self.targets]
        stacked = torch.stack(scores)  # (T, B)
        n = stacked.shape[1]
        owners = (
            self.owners.to(stacked.device)
            if self.owners is not None
            else torch.arange(n, device=stacked.device)
        )
        return stacked.gather(0, owners.view(1, -1)).squeeze(0)

    def rows(self, owners: Tensor) -> PerImage:
        current = owners if self.owners is None else self.owners.to(owners.device)[owners]
        return PerImage(self.targets, current)

    def classes(self, n: int, device: torch.device) -> Tensor:
        return torch.stack([t.classes(1, device)[0] for t in self.targets])

    def check(self, output: object, n: int) -> None:
        if len(self.targets) != n:
            raise SiseError(
                f"got {len(self.targets)} targets for {n} inputs: give one callable per input, "
                "or a single callable for all"
            )
        for i, target in enumerate(self.targets):
            target.check(_row(output, i), 1)


def _rows_of(output: object) -> Tensor:
    """The first tensor of an output (its rows are the batch)."""
    if isinstance(output, Tensor):
        return output
    values = output.values() if isinstance(output, dict) else output
    if isinstance(values, Iterable):
        for value in values:
            if isinstance(value, Tensor):
                return value
    raise SiseError(f"the model's output ({type(output).__name__}) holds no tensor")


def _row(output: object, i: int) -> object:
    """Row ``i`` of an output (a tensor, or a dict / tuple of tensors), batch dimension kept."""
    if isinstance(output, Tensor):
        return output[i : i + 1]
    if isinstance(output, dict):
        return {k: _row(v, i) for k, v in output.items()}
    if isinstance(output, tuple | list):
        return type(output)(_row(v, i) for v in output)
    return output


def resolve_targets(logits: Tensor, targets: int | Sequence[int] | Tensor | None) -> Tensor:
    """Class-index targets as an (N,) long tensor on the logits' device; ``None`` means the
    predicted class.

    Raises:
        SiseError: for a class name (use :meth:`sise.models.loading.LoadedModel.class_index`), a boolean,
            a float, an index out of range, or a number of targets that is neither 1 nor N.
    """
    n, num_classes = logits.shape
    if targets is None:
        return logits.argmax(dim=1)
    if isinstance(targets, Integral) and not isinstance(targets, bool | np.bool_):
        resolved = torch.full((n,), int(targets), dtype=torch.long, device=logits.device)
    else:
        resolved = class_indices(targets, "targets").to(logits.device)
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


def _is_callable_target(targets: object) -> bool:
    return callable(targets) and not isinstance(targets, Tensor | type)


def resolve_target(output: object, targets: TargetSpec, score: ScoreKind, n: int) -> Target:
    """The one place where what a user passes as ``targets`` becomes a :class:`Target`.

    Class indices (and ``None``: the predicted class) become :class:`ClassScore` with ``score``;
    a callable is used as it is; a sequence of callables gives one per input. The target is
    checked against the clean output of the ``n`` inputs.

    Args:
        output: the model's output on the clean inputs.
        targets: what the user passed (see the module docstring).
        score: the method's ``score=``, for class indices.
        n: the number of inputs.
    """
    if _is_callable_target(targets):
        target = targets if isinstance(targets, Target) else FunctionTarget(targets)  # type: ignore[arg-type]
    elif (
        isinstance(targets, list | tuple)
        and len(targets) > 0
        and any(_is_callable_target(t) for t in targets)
    ):
        if not all(_is_callable_target(t) for t in targets):
            raise SiseError(
                "targets mix callables and class indices: give all classes, or all callables"
            )
        target = PerImage(targets)
    else:
        logits = check_logits(output, score)
        classes = resolve_targets(logits.detach(), targets)  # type: ignore[arg-type]
        return ClassScore(classes, score)
    target.check(output, n)
    return target


def close_class_names(
    wanted: str, names: Sequence[str], n: int = 5, cutoff: float = 0.6
) -> list[str]:
    """The class names closest to a misspelt one, best first: the one suggester behind every
    "no class named ..." message (the command line's, the page's and the Python API's).

    A name scores the best :class:`difflib.SequenceMatcher` ratio, ``2·M / (|a| + |b|)`` with
    ``M`` the matched characters, between the wanted text (lower case) and either the whole
    name (also with its spaces and hyphens removed) or any one of its words. Comparing words finds
    ``"catt"`` in ``'tiger cat'`` and ``'Persian cat'`` (ratio 6/7 with ``cat``), where the whole
    names alone prefer ``'crate'`` and ``'cassette'`` (2/3). Ties go to the closer whole name, then
    to the class order. Names scoring below ``cutoff`` are left out.

    Args:
        wanted: the name the user typed.
        names: the model's class names, in class order.
        n: at most this many suggestions.
        cutoff: the lowest score suggested, in [0, 1].
    """
    text = wanted.strip().lower()
    if not text:
        return []
    matcher = difflib.SequenceMatcher(b=text)

    def ratio(candidate: str) -> float:
        matcher.set_seq1(candidate)
        return matcher.ratio()

    scored = []
    for index, name in enumerate(names):
        lowered = name.lower()
        whole = max(ratio(lowered), ratio(re.sub(r"[\s_-]+", "", lowered)))
        # words of three letters or more: "go" and "tie" would match any short typo
        words = [word for word in re.split(r"[^0-9a-z]+", lowered) if len(word) >= 3]
        best = max([whole, *(ratio(word) for word in words)])
        if best >= cutoff:
            scored.append((-best, -whole, index, name))
    return [name for *_, name in sorted(scored)[:n]]
