"""The explained score Ψ_c: what number of the model's output an explanation explains.

The same score drives the gradients of the gradient-based methods and the masked scoring of the
perturbation-based ones, so that every method explains the same quantity.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from sise.errors import SiseError

ScoreKind = Literal["softmax", "sigmoid", "logit"]
SCORE_KINDS: tuple[str, ...] = get_args(ScoreKind)


def check_score_kind(kind: str) -> ScoreKind:
    """Return ``kind`` if it names an explained score, else raise a clear error."""
    if kind not in SCORE_KINDS:
        raise SiseError(
            f"unknown score {kind!r}: use 'softmax' (single-label classifiers), "
            "'sigmoid' (multi-label classifiers) or 'logit' (the raw output)"
        )
    return kind  # type: ignore[return-value]


def class_scores(logits: Tensor, targets: Tensor, kind: ScoreKind) -> Tensor:
    """Ψ_c for each row: ``softmax(z)_c``, ``sigmoid(z_c)`` or ``z_c``.

    Args:
        logits: (B, K) model outputs.
        targets: (B,) class index per row.
        kind: which score.

    Returns:
        (B,) scores, in the dtype of ``logits`` promoted to at least float32.
    """
    if logits.ndim != 2:
        raise SiseError(
            f"the model must return (batch, classes) scores, it returned shape {tuple(logits.shape)}"
        )
    logits = logits.float()
    picked = logits.gather(1, targets.view(-1, 1)).squeeze(1)
    if kind == "logit":
        return picked
    if kind == "sigmoid":
        return torch.sigmoid(picked)
    # log-sum-exp form: the exact softmax entry without materialising the (B, K) softmax
    return torch.exp(picked - torch.logsumexp(logits, dim=1))
