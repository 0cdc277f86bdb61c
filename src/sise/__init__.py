"""sise: SISE explanations for PyTorch CNNs, the methods it is compared against, and their metrics."""

from sise.core.layers import discover_layers, resolve_layers
from sise.errors import SiseError
from sise.methods import (
    RISE,
    SISE,
    Explainer,
    Explanation,
    ExtremalPerturbation,
    FullGrad,
    GradCAM,
    GradCAMPlusPlus,
    IntegratedGradients,
    ScoreCAM,
    SISEExplanation,
)
from sise.runtime import Runtime
from sise.targets import ClassScore, Margin, SegmentationRegion

__version__ = "0.1.0"

__all__ = [
    "RISE",
    "SISE",
    "ClassScore",
    "Explainer",
    "Explanation",
    "ExtremalPerturbation",
    "FullGrad",
    "GradCAM",
    "GradCAMPlusPlus",
    "IntegratedGradients",
    "Margin",
    "Runtime",
    "SISEExplanation",
    "ScoreCAM",
    "SegmentationRegion",
    "SiseError",
    "discover_layers",
    "resolve_layers",
]
