"""Explanation methods, one file per family, all sharing :class:`~sise.methods.base.Explainer`."""

from sise.methods.base import Explainer, Explanation
from sise.methods.sise import SISE, fuse, select_feature_maps

__all__ = ["SISE", "Explainer", "Explanation", "fuse", "select_feature_maps"]
