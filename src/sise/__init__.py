"""sise: SISE explanations for PyTorch CNNs, the methods it is compared against, and their metrics.

The names below are imported on first use (PEP 562), so that ``import sise`` (and ``sise
--help``, which imports the command line through it) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sise.lazy_exports import lazy_exports

if TYPE_CHECKING:
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
    from sise.targets import ClassName, ClassScore, Margin, SegmentationRegion

__version__ = "0.1.0"

#: Public name -> the module it comes from.
_EXPORTS: dict[str, str] = {
    "RISE": "sise.methods",
    "SISE": "sise.methods",
    "ClassName": "sise.targets",
    "ClassScore": "sise.targets",
    "Explainer": "sise.methods",
    "Explanation": "sise.methods",
    "ExtremalPerturbation": "sise.methods",
    "FullGrad": "sise.methods",
    "GradCAM": "sise.methods",
    "GradCAMPlusPlus": "sise.methods",
    "IntegratedGradients": "sise.methods",
    "Margin": "sise.targets",
    "Runtime": "sise.runtime",
    "SISEExplanation": "sise.methods",
    "ScoreCAM": "sise.methods",
    "SegmentationRegion": "sise.targets",
    "SiseError": "sise.errors",
    "discover_layers": "sise.core.layers",
    "resolve_layers": "sise.core.layers",
}

__all__ = [
    "RISE",
    "SISE",
    "ClassName",
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
]  # the keys of _EXPORTS, written out for type checkers and linters


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
