"""The statistics of the tables and the sanity check: a number's standard error over pairs, and
Spearman's rank correlation with its average ranks."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sise.errors import SiseError

__all__ = ["rank_average", "spearman", "standard_error"]


def standard_error(terms: Tensor, class_ids: Tensor | None = None) -> float:
    """The standard error of a table's number, from the per-pair terms it averages.

    Without ``class_ids`` the number is the mean of the terms over pairs (EBPG, Drop%, insertion
    AUC, ...; Increase% averages ``100 · 1[O > Y]``), and its standard error is ``s / √n``, ``s``
    the sample standard deviation (divisor ``n − 1``). With ``class_ids`` the number is the mean
    over the K classes of each class's mean (the pointing game's accuracy, terms ``100 · hit``),
    and its standard error is ``√(Σ_c s_c² / n_c) / K``. Pairs are taken as independent draws,
    classes as fixed.

    Applied to the per-pair *differences* of two methods on the same pairs, it gives the paired
    standard error of the difference of their numbers, which is much smaller than either
    method's own when some pairs are hard for every method.

    Args:
        terms: (P,) per-pair terms.
        class_ids: (P,) class of each pair, or ``None``.

    Returns:
        The standard error; NaN when it cannot be estimated (fewer than two pairs, or with
        ``class_ids`` a class with fewer than two).
    """
    if terms.ndim != 1 or (class_ids is not None and class_ids.shape != terms.shape):
        raise SiseError(
            f"terms must be 1-D and class_ids (if given) of the same shape, got "
            f"{tuple(terms.shape)} and {None if class_ids is None else tuple(class_ids.shape)}"
        )
    terms = terms.double()
    if class_ids is None:
        n = terms.numel()
        return float(terms.std() / math.sqrt(n)) if n >= 2 else math.nan
    classes, inverse = torch.unique(class_ids.to(terms.device), return_inverse=True)
    variance_of_mean = 0.0
    for c in range(len(classes)):
        members = terms[inverse == c]
        if members.numel() < 2:
            return math.nan
        variance_of_mean += float(members.var()) / members.numel()
    return math.sqrt(variance_of_mean) / len(classes)


def rank_average(values: Tensor) -> Tensor:
    """Ranks 1..P of each row of a (N, P) tensor, tied values getting their average rank.

    This is the ranking of Spearman's correlation (``scipy.stats.rankdata(method="average")``).

    Returns:
        (N, P) float64 ranks.
    """
    if values.ndim != 2:
        raise SiseError(f"rank_average takes a (N, P) tensor, got shape {tuple(values.shape)}")
    n, p = values.shape
    ordered, order = values.sort(dim=1, stable=True)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = starts.long().cumsum(dim=1) - 1
    # Make group ids unique across rows so one scatter handles the whole batch.
    group = group + torch.arange(n, device=values.device)[:, None] * p
    position = torch.arange(1, p + 1, device=values.device, dtype=torch.float64).expand(n, p)
    first = torch.full((n * p,), float(p + 1), dtype=torch.float64, device=values.device)
    last = torch.zeros(n * p, dtype=torch.float64, device=values.device)
    first.scatter_reduce_(0, group.flatten(), position.flatten(), reduce="amin")
    last.scatter_reduce_(0, group.flatten(), position.flatten(), reduce="amax")
    mean_rank = ((first + last) / 2).gather(0, group.flatten()).view(n, p)
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation between matching rows of two (N, ...) tensors.

    ``ρ = Pearson(rank(a), rank(b))`` over the flattened trailing dimensions, with average
    ranks for ties. Where either row is constant ρ is undefined (scipy returns NaN); here it
    is 0, "no rank agreement to measure", so that averages stay finite.

    Returns:
        (N,) float64 correlations in [-1, 1].
    """
    if a.shape != b.shape or a.ndim < 2:
        raise SiseError(
            f"spearman needs two (N, ...) tensors of one shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    ra = rank_average(a.flatten(1))
    rb = rank_average(b.flatten(1))
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    norm = (ra.square().sum(dim=1) * rb.square().sum(dim=1)).sqrt()
    dot = (ra * rb).sum(dim=1)
    return torch.where(norm > 0, dot / norm.clamp_min(1e-300), torch.zeros_like(dot))
