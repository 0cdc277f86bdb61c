"""The ready-made targets: a class's score, the margin between two classes, and a class's score
over a region of a segmentation output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from sise.core.scores import ScoreKind, check_logits, check_score_kind, class_scores
from sise.errors import SiseError
from sise.targets.target import Target, class_indices

_T = TypeVar("_T", bound=Target)


def _per_image(values: Tensor, owners: Tensor) -> Tensor:
    """Per-image values for the rows of a batch (a single value serves every image)."""
    if values.shape[0] == 1:
        return values
    return values.to(owners.device).index_select(0, owners)


def _with_values(target: _T, values: Tensor) -> _T:
    """A shallow copy of ``target`` with other per-image class values."""
    twin = object.__new__(type(target))
    twin.__dict__.update(target.__dict__)
    twin.values = values  # type: ignore[attr-defined]
    return twin


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
        self.values = class_indices(classes, "classes")
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
        self.values = class_indices(classes, "classes")
        self.other = None if other is None else class_indices(other, "other classes")
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
        self.values = class_indices(classes, "classes")
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
