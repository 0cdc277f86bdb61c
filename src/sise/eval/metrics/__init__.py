"""The paper's evaluation metrics (SPEC section 3), batched on torch tensors, on any device.

Notation used throughout: ``E`` is an explanation map (N, H, W), non-negative and normalised to
[0, 1]; ``G`` is the ground-truth region of the explained class, a (N, H, W) bool mask (the union
of the class's boxes, see :func:`sise.eval.data.pairs.gt_mask`); ``Ψ_c`` is the explained score
(softmax, sigmoid or logit, see :mod:`sise.core.scores`).

Ground-truth metrics (no model needed):

* :func:`energy_pointing_game` (EBPG, Wang et al. 2020, Score-CAM),
* :func:`bbox_score` (Schulz et al. 2020, IBA),
* :func:`miou` (IoU of the binarised map with G),
* :func:`distractor_energy` (the share of the map's energy on other classes' objects),
* :func:`pointing_game_hits` / :func:`pointing_game_accuracy` (Zhang et al. 2016, TorchRay),
  and :func:`pointing_game_hits_original`, TorchRay's protocol to the letter on the original
  image.

Model-truth metrics (all masked forward passes go through :func:`sise.runtime.engine.score_masked`):

* :func:`drop_and_increase` (Chattopadhay et al. 2018, Grad-CAM++),
* :func:`insertion_deletion_auc` (Petsiuk et al. 2018, RISE),
* :func:`road_curves` / :func:`road` / :func:`road_combined` (Rong et al. 2022, ROAD: removal
  with noisy linear imputation, as pytorch-grad-cam computes it;
  :mod:`~sise.eval.metrics.remove_and_debias`),
* :func:`adcc` with :func:`coherency` and :func:`complexity` (Poppi et al. 2021;
  :mod:`~sise.eval.metrics.coherency_complexity`),
* :func:`sanity_check` (Adebayo et al. 2018, cascading model-parameter randomisation), its last
  step per sample (:func:`randomised_model`, :func:`model_randomisation`).

How far a table's number may be from the one more pairs would give: :func:`standard_error`.

The modules: :mod:`~sise.eval.metrics.ground_truth`, :mod:`~sise.eval.metrics.model_truth`,
:mod:`~sise.eval.metrics.remove_and_debias`,
:mod:`~sise.eval.metrics.coherency_complexity`,
:mod:`~sise.eval.metrics.sanity`, :mod:`~sise.eval.metrics.statistics`, and the input checks
they share (:mod:`~sise.eval.metrics.checks`).

Every percentage is returned in [0, 100].
"""

from sise.eval.metrics.coherency_complexity import adcc, coherency, complexity, pearson
from sise.eval.metrics.ground_truth import (
    bbox_score,
    distractor_energy,
    energy_pointing_game,
    miou,
    pointing_game_accuracy,
    pointing_game_hits,
    pointing_game_hits_original,
    scaled_tolerance,
    top_k_membership,
)
from sise.eval.metrics.model_truth import (
    Substrate,
    average_drop,
    blur,
    causal_curve,
    curve_auc,
    drop_and_increase,
    increase_in_confidence,
    insertion_deletion_auc,
)
from sise.eval.metrics.remove_and_debias import (
    ROAD_NOISE,
    ROAD_PERCENTILES,
    RoadCurves,
    noisy_linear_imputation,
    road,
    road_combined,
    road_curves,
)
from sise.eval.metrics.sanity import model_randomisation, randomised_model, sanity_check
from sise.eval.metrics.statistics import rank_average, spearman, standard_error

__all__ = [
    "ROAD_NOISE",
    "ROAD_PERCENTILES",
    "RoadCurves",
    "Substrate",
    "adcc",
    "average_drop",
    "bbox_score",
    "blur",
    "causal_curve",
    "coherency",
    "complexity",
    "curve_auc",
    "distractor_energy",
    "drop_and_increase",
    "energy_pointing_game",
    "increase_in_confidence",
    "insertion_deletion_auc",
    "miou",
    "model_randomisation",
    "noisy_linear_imputation",
    "pearson",
    "pointing_game_accuracy",
    "pointing_game_hits",
    "pointing_game_hits_original",
    "randomised_model",
    "rank_average",
    "road",
    "road_combined",
    "road_curves",
    "sanity_check",
    "scaled_tolerance",
    "spearman",
    "standard_error",
    "top_k_membership",
]
