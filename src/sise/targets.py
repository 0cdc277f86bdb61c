"""What an explanation explains: targets, from a class index to any score of the model's output.

Every method takes its target through the same ``targets`` argument. It can be

* ``None``: the predicted class of each input (the arg-max of a (N, K) output);
* class indices: an ``int`` (the same class for every input), a sequence of ints or an integer
  tensor (one class per input), explained with the method's ``score=`` (``"softmax"``,
  ``"sigmoid"`` or ``"logit"``);
* a **callable** ``target(output) -> (N,)``: any score of the model's output (a
  :class:`Target` below, or your own function);
* a sequence of callables, one per input (as pytorch-grad-cam's lists of target objects).

The contract of a callable target
---------------------------------
``target(output)`` receives the model's output for a batch of B inputs, exactly as the model
returned it (a (B, K) tensor for a classifier, (B, C, H, W) for a segmentation network, or
whatever the model returns), and returns a (B,) floating tensor: one score per row.

* **Row by row.** Score ``i`` must depend on row ``i`` of the output only (no normalisation over
  the batch such as ``output.softmax(dim=0)``): the methods pack masked copies of several
  images into one batch, and sum the scores of a batch before differentiating them.
* **The same function for every row**, unless you give one callable per input: a plain
  callable is applied to the outputs of all images alike. The ready-made targets below hold one
  class (or mask) per image and know which rows belong to which image (:meth:`Target.rows`).
* **Differentiable** for the methods that take gradients: SISE (its feature-map selection uses
  ``∂target/∂A``), Grad-CAM, Grad-CAM++, FullGrad, Integrated Gradients and Extremal
  Perturbation (which optimises its masks for the target). Use torch operations on ``output``;
  ``.item()``, NumPy or ``argmax`` give no gradient, and these methods then raise an error.
* **Plain scores** are all that the masked forward passes use: SISE's and Score-CAM's masked
  inputs, RISE's random masks and Extremal Perturbation's final mask scores call the target
  under ``torch.no_grad()`` on the outputs of the masked inputs.
* **Finite**: a NaN or infinite score on the clean inputs is refused.

How targets and ``score=`` interact
-----------------------------------
``score=`` (a method's constructor argument) only says how *class indices* become a score: an
index ``c`` is :class:`ClassScore` ``(c, score)``. A callable carries its own score and ``score=``
does not change it. Two methods treat class targets specially: Grad-CAM++ uses its exponential
trick (``Y = Ψ``) for a probability (:attr:`Target.exponential`) and ``Y = exp(S)`` for anything
else, and Extremal Perturbation optimises a class target in its ``reward`` form (the logit by
default, see :class:`sise.methods.ExtremalPerturbation`) while it optimises a custom callable as
it is. The explanation's ``targets`` field holds each input's class for class targets and ``-1``
for a callable that explains no single class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from numbers import Integral
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from sise.core.scores import ScoreKind, check_logits, check_score_kind, class_scores
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


_T = TypeVar("_T", bound=Target)


def _per_image(values: Tensor, owners: Tensor) -> Tensor:
    """Per-image values for the rows of a batch (a single value serves every image)."""
    if values.shape[0] == 1:
        return values
    return values.to(owners.device).index_select(0, owners)


def _class_tensor(classes: int | Sequence[int] | Tensor, what: str) -> Tensor:
    """Class indices as a 1-D long tensor, refusing names, booleans and floats."""
    _refuse_names(classes, what)
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


def _check_classes(classes: Tensor, output: object, n: int, kind: ScoreKind, what: str) -> None:
    """Count and range of per-image classes against a (n, K) output."""
    logits = check_logits(output, kind)
    if classes.numel() not in (1, n):
        raise SiseError(f"got {classes.numel()} {what} for {n} inputs: give one class per input")
    num_classes = logits.shape[1]
    bad = (classes < 0) | (classes >= num_classes)
    if bool(bad.any()):
        raise SiseError(
            f"class index {int(classes[bad][0])} is out of range: the model has {num_classes} "
            f"classes, so use 0..{num_classes - 1}"
        )


class ClassScore(Target):
    """The score of one class per image: ``softmax(z)_c``, ``sigmoid(z_c)`` or the logit ``z_c``.

    This is what a class index means everywhere in the package (pytorch-grad-cam's
    ``ClassifierOutputTarget`` / ``ClassifierOutputSoftmaxTarget``).

    Args:
        classes: one class for every image (an int) or one per image.
        score: ``"softmax"`` (single-label classifiers), ``"sigmoid"`` (multi-label) or
            ``"logit"`` (the raw output).

    Example:
        >>> import torch
        >>> from sise.targets import ClassScore
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> ClassScore([0, 1], score="logit")(logits)
        tensor([2., 1.])
        >>> ClassScore(0)(logits).round(decimals=3)
        tensor([0.8810, 0.2690])
    """

    def __init__(self, classes: int | Sequence[int] | Tensor, score: ScoreKind = "softmax") -> None:
        self.values = _class_tensor(classes, "classes")
        self.score: ScoreKind = check_score_kind(score)
        self.exponential = self.score != "logit"

    def __call__(self, output: Tensor) -> Tensor:
        logits = check_logits(output, self.score)
        classes = self.values.to(logits.device).expand(logits.shape[0])
        return class_scores(logits, classes, self.score)

    def rows(self, owners: Tensor) -> ClassScore:
        return _with_values(self, _per_image(self.values, owners))

    def with_score(self, kind: ScoreKind) -> ClassScore:
        return ClassScore(self.values, kind)

    def classes(self, n: int, device: torch.device) -> Tensor:
        return self.values.to(device).expand(n).clone()

    def check(self, output: object, n: int) -> None:
        _check_classes(self.values, output, n, self.score, "classes")

    def __repr__(self) -> str:
        return f"ClassScore({self.values.tolist()}, score={self.score!r})"


class Margin(Target):
    """How much one class beats another: ``Ψ_c − Ψ_d``.

    With ``other=None``, ``d`` is the strongest other class of each row, ``Ψ_c − max_{d≠c} Ψ_d``
    (the classification margin: positive exactly when ``c`` wins). An explanation of it shows
    what tells ``c`` apart from its rival, rather than what supports ``c`` at all.

    Args:
        classes: the class ``c``, one for every image or one per image.
        other: the class ``d`` to beat (one or one per image); ``None``: the runner-up.
        score: ``"logit"`` (default: a difference of logits is a log-odds ratio), ``"softmax"``
            or ``"sigmoid"``.

    Example:
        >>> import torch
        >>> from sise.targets import Margin
        >>> logits = torch.tensor([[3.0, 1.0, 2.0]])
        >>> Margin(0)(logits)  # z_0 - max(z_1, z_2)
        tensor([1.])
        >>> Margin(0, other=1)(logits)
        tensor([2.])
    """

    def __init__(
        self,
        classes: int | Sequence[int] | Tensor,
        other: int | Sequence[int] | Tensor | None = None,
        *,
        score: ScoreKind = "logit",
    ) -> None:
        self.values = _class_tensor(classes, "classes")
        self.other = None if other is None else _class_tensor(other, "other classes")
        self.score: ScoreKind = check_score_kind(score)

    def __call__(self, output: Tensor) -> Tensor:
        logits = check_logits(output, self.score)
        n = logits.shape[0]
        if self.score == "softmax":
            all_scores = torch.softmax(logits.float(), dim=1)
        elif self.score == "sigmoid":
            all_scores = torch.sigmoid(logits.float())
        else:
            all_scores = logits.float()
        classes = self.values.to(logits.device).expand(n)
        own = all_scores.gather(1, classes.view(-1, 1)).squeeze(1)
        if self.other is not None:
            other = self.other.to(logits.device).expand(n)
            rival = all_scores.gather(1, other.view(-1, 1)).squeeze(1)
        else:
            rest = all_scores.scatter(1, classes.view(-1, 1), float("-inf"))
            rival = rest.amax(dim=1)
        return own - rival

    def rows(self, owners: Tensor) -> Margin:
        twin = _with_values(self, _per_image(self.values, owners))
        if self.other is not None:
            twin.other = _per_image(self.other, owners)
        return twin

    def with_score(self, kind: ScoreKind) -> Margin:
        twin = _with_values(self, self.values)
        twin.score = check_score_kind(kind)
        return twin

    def classes(self, n: int, device: torch.device) -> Tensor:
        return self.values.to(device).expand(n).clone()

    def check(self, output: object, n: int) -> None:
        _check_classes(self.values, output, n, self.score, "classes")
        if self.other is not None:
            _check_classes(self.other, output, n, self.score, "other classes")
            if bool((self.other.expand(n) == self.values.expand(n)).any()):
                raise SiseError("Margin: a class and the class it is compared with are the same")
        elif check_logits(output, self.score).shape[1] < 2:
            raise SiseError("Margin needs a model with at least two classes")

    def __repr__(self) -> str:
        other = None if self.other is None else self.other.tolist()
        return f"Margin({self.values.tolist()}, other={other}, score={self.score!r})"


class SegmentationRegion(Target):
    """A class's score summed over a region of a segmentation output (N, C, H, W).

    ``Σ_{λ ∈ R} Ψ_c(λ)`` with ``Ψ_c(λ)`` the per-pixel logit, softmax over the C classes or
    sigmoid, and ``R`` the region (pytorch-grad-cam's ``SemanticSegmentationTarget``). A
    torchvision segmentation model returns a dict: pass ``key="out"``.

    Args:
        classes: the class ``c``, one for every image or one per image.
        mask: the region, (H, W) for every image or (N, H, W) one per image, at the output's
            resolution; booleans, or weights in [0, 1].
        score: ``"logit"`` (default), ``"softmax"`` or ``"sigmoid"``, per pixel.
        key: the entry of a dict (or tuple index) output that holds the (N, C, H, W) map.

    Example:
        >>> import torch
        >>> from sise.targets import SegmentationRegion
        >>> output = torch.zeros(1, 2, 4, 4)
        >>> output[0, 1, :2, :2] = 1.0
        >>> mask = torch.zeros(4, 4, dtype=torch.bool)
        >>> mask[:2] = True  # the top half
        >>> SegmentationRegion(1, mask)(output)
        tensor([4.])
    """

    def __init__(
        self,
        classes: int | Sequence[int] | Tensor,
        mask: Tensor | np.ndarray,
        *,
        score: ScoreKind = "logit",
        key: str | int | None = None,
    ) -> None:
        self.values = _class_tensor(classes, "classes")
        region = torch.as_tensor(mask)
        if region.ndim not in (2, 3):
            raise SiseError(
                f"the region mask must be (H, W) or (N, H, W), got shape {tuple(region.shape)}"
            )
        self.mask = (region if region.ndim == 3 else region[None]).float()
        if not bool(torch.isfinite(self.mask).all()):
            raise SiseError("the region mask holds NaN or Inf values")
        self.score: ScoreKind = check_score_kind(score)
        self.key = key

    def _map(self, output: object) -> Tensor:
        if self.key is not None:
            try:
                output = output[self.key]  # type: ignore[index]
            except (KeyError, IndexError, TypeError) as error:
                raise SiseError(
                    f"the model's output has no entry {self.key!r}: check SegmentationRegion's key"
                ) from error
        if not isinstance(output, Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise SiseError(
                f"SegmentationRegion needs a (N, C, H, W) output, got {shape}; for a dict output "
                "give key='out' (torchvision's segmentation models)"
            )
        return output

    def __call__(self, output: Tensor) -> Tensor:
        maps = self._map(output).float()
        n = maps.shape[0]
        if self.score == "softmax":
            maps = torch.softmax(maps, dim=1)
        elif self.score == "sigmoid":
            maps = torch.sigmoid(maps)
        classes = self.values.to(maps.device).expand(n)
        picked = maps[torch.arange(n, device=maps.device), classes]  # (n, H, W)
        mask = self.mask.to(maps.device)
        return (picked * mask).flatten(1).sum(dim=1)

    def rows(self, owners: Tensor) -> SegmentationRegion:
        twin = _with_values(self, _per_image(self.values, owners))
        twin.mask = _per_image(self.mask, owners)
        return twin

    def with_score(self, kind: ScoreKind) -> SegmentationRegion:
        twin = _with_values(self, self.values)
        twin.score = check_score_kind(kind)
        return twin

    def classes(self, n: int, device: torch.device) -> Tensor:
        return self.values.to(device).expand(n).clone()

    def check(self, output: object, n: int) -> None:
        maps = self._map(output)
        if self.values.numel() not in (1, n) or self.mask.shape[0] not in (1, n):
            raise SiseError(
                f"SegmentationRegion has {self.values.numel()} classes and "
                f"{self.mask.shape[0]} masks for {n} inputs: give one or one per input"
            )
        if tuple(self.mask.shape[1:]) != tuple(maps.shape[2:]):
            raise SiseError(
                f"the region mask is {tuple(self.mask.shape[1:])} but the model's output map is "
                f"{tuple(maps.shape[2:])}: give the mask at the output's resolution"
            )
        bad = (self.values < 0) | (self.values >= maps.shape[1])
        if bool(bad.any()):
            raise SiseError(
                f"class index {int(self.values[bad][0])} is out of range: the output has "
                f"{maps.shape[1]} classes"
            )
        if not bool((self.mask != 0).any()):
            raise SiseError("the region mask is empty: it selects no pixel")


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


def _row(output: object, i: int) -> object:
    """Row ``i`` of an output (a tensor, or a dict / tuple of tensors), batch dimension kept."""
    if isinstance(output, Tensor):
        return output[i : i + 1]
    if isinstance(output, dict):
        return {k: _row(v, i) for k, v in output.items()}
    if isinstance(output, tuple | list):
        return type(output)(_row(v, i) for v in output)
    return output


def _with_values(target: _T, values: Tensor) -> _T:
    """A shallow copy of ``target`` with other per-image class values."""
    twin = object.__new__(type(target))
    twin.__dict__.update(target.__dict__)
    twin.values = values  # type: ignore[attr-defined]
    return twin


#: What every method's ``targets`` argument accepts.
TargetSpec = int | Sequence[int] | Tensor | Callable[[Tensor], Tensor] | Sequence[Callable] | None


def _refuse_names(targets: object, what: str = "targets") -> None:
    """Class names and booleans are not class indices: say how to get an index."""
    items = targets if isinstance(targets, list | tuple) else [targets]
    for item in items:
        if isinstance(item, str):
            raise SiseError(
                f"{what} are class indices, got the name {item!r}: turn a name into its index "
                "with sise.models.loading.LoadedModel.class_index (e.g. loaded.class_index('tabby'))"
            )
        if isinstance(item, bool | np.bool_):
            raise SiseError(
                f"{what} are class indices, got the boolean {item!r}: give the class index "
                "(0, 1, ...) instead"
            )


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
        resolved = _class_tensor(targets, "targets").to(logits.device)
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


__all__ = [
    "ClassScore",
    "FunctionTarget",
    "Margin",
    "PerImage",
    "SegmentationRegion",
    "Target",
    "TargetSpec",
    "checked_scores",
    "first_rows",
    "resolve_target",
    "resolve_targets",
    "target_scores",
]
