"""Evaluation: the paper's metrics (:mod:`sise.eval.metrics`), dataset readers and a synthetic
VOC-format dataset (:mod:`sise.eval.data`), and the benchmark (:mod:`sise.eval.benchmark`).

The names are imported on first use (:mod:`sise.lazy_exports`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sise.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from sise.eval.data import (
        VOC_CLASSES,
        COCODetection2014,
        Dataset,
        EvalImage,
        EvalPair,
        VOCDetection2007,
        boxes_mask,
        distractor_mask,
        gt_mask,
        load_dataset,
        pointing_region,
    )
    from sise.eval.data.synthetic import SYNTHETIC_CLASSES, make_synthetic_voc
    from sise.eval.metrics import (
        average_drop,
        bbox_score,
        blur,
        causal_curve,
        curve_auc,
        distractor_energy,
        drop_and_increase,
        energy_pointing_game,
        increase_in_confidence,
        insertion_deletion_auc,
        miou,
        pointing_game_accuracy,
        pointing_game_hits,
        pointing_game_hits_original,
        rank_average,
        sanity_check,
        scaled_tolerance,
        spearman,
        top_k_membership,
    )

#: Public name -> the module it comes from.
_EXPORTS: dict[str, str] = {
    "SYNTHETIC_CLASSES": "sise.eval.data.synthetic",
    "VOC_CLASSES": "sise.eval.data",
    "COCODetection2014": "sise.eval.data",
    "Dataset": "sise.eval.data",
    "EvalImage": "sise.eval.data",
    "EvalPair": "sise.eval.data",
    "VOCDetection2007": "sise.eval.data",
    "average_drop": "sise.eval.metrics",
    "bbox_score": "sise.eval.metrics",
    "blur": "sise.eval.metrics",
    "boxes_mask": "sise.eval.data",
    "causal_curve": "sise.eval.metrics",
    "curve_auc": "sise.eval.metrics",
    "distractor_energy": "sise.eval.metrics",
    "distractor_mask": "sise.eval.data",
    "drop_and_increase": "sise.eval.metrics",
    "energy_pointing_game": "sise.eval.metrics",
    "gt_mask": "sise.eval.data",
    "increase_in_confidence": "sise.eval.metrics",
    "insertion_deletion_auc": "sise.eval.metrics",
    "load_dataset": "sise.eval.data",
    "make_synthetic_voc": "sise.eval.data.synthetic",
    "miou": "sise.eval.metrics",
    "pointing_game_accuracy": "sise.eval.metrics",
    "pointing_game_hits": "sise.eval.metrics",
    "pointing_game_hits_original": "sise.eval.metrics",
    "pointing_region": "sise.eval.data",
    "rank_average": "sise.eval.metrics",
    "sanity_check": "sise.eval.metrics",
    "scaled_tolerance": "sise.eval.metrics",
    "spearman": "sise.eval.metrics",
    "top_k_membership": "sise.eval.metrics",
}

__all__ = [
    "SYNTHETIC_CLASSES",
    "VOC_CLASSES",
    "COCODetection2014",
    "Dataset",
    "EvalImage",
    "EvalPair",
    "VOCDetection2007",
    "average_drop",
    "bbox_score",
    "blur",
    "boxes_mask",
    "causal_curve",
    "curve_auc",
    "distractor_energy",
    "distractor_mask",
    "drop_and_increase",
    "energy_pointing_game",
    "gt_mask",
    "increase_in_confidence",
    "insertion_deletion_auc",
    "load_dataset",
    "make_synthetic_voc",
    "miou",
    "pointing_game_accuracy",
    "pointing_game_hits",
    "pointing_game_hits_original",
    "pointing_region",
    "rank_average",
    "sanity_check",
    "scaled_tolerance",
    "spearman",
    "top_k_membership",
]  # the keys of _EXPORTS, written out for type checkers and linters

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
