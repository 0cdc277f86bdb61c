"""The base of every target, what a target must return, and what the ready-made ones share.

A target turns the model's output for a batch into one score per row (the contract is in
:mod:`sise.targets`); :func:`checked_scores` and :func:`target_scores` hold it to that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from sise.core.scores import ScoreKind
from sise.errors import SiseError


class Target:
    """Base of the ready-made targets: a callable ``output -> (B,)`` that may hold one value per
    image (a class, a mask) and knows how to follow the images into batches of masked copies.

    Subclasses implement :meth:`__call__` and, when they hold per-image values, :meth:`rows`.
    """

    #: Whether the score is a probability ``exp(log Ψ)`` (Grad-CAM++'s exponential trick).
    exponential: bool = False

    def __call__(self, output: Tensor) -> Tensor:
        """(B,) scores of a batch of outputs whose row ``i`` belongs to image ``i``."""
        raise NotImplementedError

    def rows(self, owners: Tensor) -> Target:
        """The target for a batch whose row ``j`` is (a masked copy of) image ``owners[j]``."""
        return self

    def with_score(self, kind: ScoreKind) -> Target:
        """The same target with another score kind (a target that has none returns itself)."""
        return self

    def classes(self, n: int, device: torch.device) -> Tensor:
        """(n,) the class each image explains; ``-1`` where the target is not one class."""
        return torch.full((n,), -1, dtype=torch.long, device=device)

    def check(self, output: object, n: int) -> None:
        """Refuse, on the clean output of ``n`` inputs, a target that does not fit it."""


def refuse_names(targets: object, what: str = "targets") -> None:
    """Class names and booleans are not class indices: say how to get an index."""
    items = targets if isinstance(targets, list | tuple) else [targets]
    for item in items:
        if isinstance(item, str):
            raise SiseError(
                f"{what} are class indices, got the name {item!r}: give the name as the "
                "method's target (explainer(x, 'tabby'), looked up in the model's class list), or "
                "its index (loaded.class_index('tabby'))"
            )
        if isinstance(item, bool | np.bool_):
            raise SiseError(
                f"{what} are class indices, got the boolean {item!r}: give the class index "
                "(0, 1, ...) instead"
            )


def class_indices(classes: int | Sequence[int] | Tensor, what: str) -> Tensor:
    """Class indices as a 1-D long tensor, refusing names, booleans and floats."""
    refuse_names(classes, what)
    try:
        tensor = torch.as_tensor(classes)
    except (TypeError, ValueError, RuntimeError) as error:
        raise SiseError(
            f"{what} must be class indices (an int, a list of ints or an integer tensor), got "
            f"{type(classes).__name__}: {error}"
        ) from error
    if tensor.dtype == torch.bool:
        raise SiseError(f"{what} are class indices, got a boolean tensor: give the indices")
    if tensor.is_floating_point() or tensor.is_complex():
        raise SiseError(f"{what} must be integer class indices, got dtype {tensor.dtype}")
    return tensor.long().reshape(-1)


def first_rows(output: object, count: int) -> object:
    """The first ``count`` rows of an output (a tensor, or a dict / tuple of tensors): a padded
    batch's real rows."""
    if isinstance(output, Tensor):
        return output if output.shape[0] == count else output[:count]
    if isinstance(output, dict):
        return {k: first_rows(v, count) for k, v in output.items()}
    if isinstance(output, tuple | list):
        return type(output)(first_rows(v, count) for v in output)
    return output


def checked_scores(target: Target | Callable[[Tensor], Tensor], output: object, n: int) -> Tensor:
    """``target(output)``, refused unless it is a (n,) floating tensor on the output's side.

    Only shapes are checked here (no copy to the host, so a GPU loop never waits on it); the
    values are checked once, on the clean inputs, by :func:`target_scores`.
    """
    scores = target(output)  # type: ignore[arg-type]
    if not isinstance(scores, Tensor):
        raise SiseError(
            f"a target must return a (N,) tensor of scores, got {type(scores).__name__}: "
            "compute it with torch operations on the output (no .item(), no NumPy)"
        )
    if scores.shape != (n,):
        raise SiseError(
            f"a target must return one score per input, shape ({n},), got "
            f"{tuple(scores.shape)}: reduce each row to one number (e.g. .sum(dim=1))"
        )
    if not scores.is_floating_point():
        raise SiseError(f"a target must return floating-point scores, got {scores.dtype}")
    return scores.float()


def target_scores(target: Target, output: object, n: int) -> Tensor:
    """The (n,) scores of the clean inputs, checked to be finite."""
    scores = checked_scores(target, output, n)
    if not bool(torch.isfinite(scores.detach()).all()):
        raise SiseError(
            "the target's score is NaN or infinite on these inputs: check the target function "
            "(a log of 0? a division by 0?) and the inputs"
        )
    return scores
