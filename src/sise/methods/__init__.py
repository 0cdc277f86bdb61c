"""Explanation methods, one file per family, all sharing :class:`~sise.methods.base.Explainer`."""

from sise.methods.base import Explainer, Explanation
from sise.methods.cam import GradCAM, GradCAMPlusPlus, ScoreCAM
from sise.methods.gradient import FullGrad, IntegratedGradients
from sise.methods.perturbation import RISE, ExtremalPerturbation
from sise.methods.sise import SISE, SISEExplanation, fuse, select_feature_maps

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
