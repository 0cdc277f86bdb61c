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


def check_logits(output: object, kind: ScoreKind) -> Tensor:
    """The model's output if it is a (batch, classes) tensor whose ``kind`` score can vary.

    This is the one check of a model's output; every path to Ψ_c goes through it. A model with a
    single output explained with ``"softmax"`` is refused: the softmax of one logit is always 1,
    so every method would explain a constant and return a blank map.
    """
    if not isinstance(output, Tensor) or output.ndim != 2:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise SiseError(
            f"the model must return (batch, classes) scores, got {shape}: wrap it so that its "
            "forward returns one row of class scores per input"
        )
    if kind == "softmax" and output.shape[1] == 1:
        raise SiseError(
            "the model has a single output, whose softmax is always 1: explain it with "
            "score='sigmoid' (a binary classifier's probability) or score='logit'"
        )
    return output


def class_scores(logits: Tensor, targets: Tensor, kind: ScoreKind) -> Tensor:
    """Ψ_c for each row: ``softmax(z)_c``, ``sigmoid(z_c)`` or ``z_c``.

    Args:
        logits: (B, K) model outputs.
        targets: (B,) class index per row.
        kind: which score.

    Returns:
        (B,) scores, in the dtype of ``logits`` promoted to at least float32.
    """
    logits = check_logits(logits, kind).float()
    picked = logits.gather(1, targets.view(-1, 1)).squeeze(1)
    if kind == "logit":
        return picked
    if kind == "sigmoid":
        return torch.sigmoid(picked)
    # log-sum-exp form: the exact softmax entry without materialising the (B, K) softmax
    return torch.exp(picked - torch.logsumexp(logits, dim=1))
