"""sise: SISE explanations for PyTorch CNNs, the methods it is compared against, and their metrics."""

from sise.errors import SiseError
from sise.layers import discover_layers, resolve_layers
from sise.methods import SISE, Explainer, Explanation

__version__ = "0.1.0"

__all__ = ["SISE", "Explainer", "Explanation", "SiseError", "discover_layers", "resolve_layers"]
