"""Explanation methods, one file per method, on family bases: the class activation maps
(:mod:`sise.methods.cam`) and the methods that score masked inputs (:mod:`sise.methods.masked`),
all sharing :class:`~sise.methods.base.Explainer`."""

from sise.methods.base import Explainer, Explanation
from sise.methods.extremal_perturbation import ExtremalPerturbation
from sise.methods.feature_selection import select_feature_maps
from sise.methods.fullgrad import FullGrad
from sise.methods.fusion import fuse
from sise.methods.grad_cam import GradCAM
from sise.methods.grad_cam_plus_plus import GradCAMPlusPlus
from sise.methods.integrated_gradients import IntegratedGradients
from sise.methods.rise import RISE
from sise.methods.score_cam import ScoreCAM
from sise.methods.sise import SISE, SISEExplanation

__all__ = [
    "RISE",
    "SISE",
    "Explainer",
    "Explanation",
    "ExtremalPerturbation",
    "FullGrad",
    "GradCAM",
    "GradCAMPlusPlus",
    "IntegratedGradients",
    "SISEExplanation",
    "ScoreCAM",
    "fuse",
    "select_feature_maps",
]
