"""A package's public names imported on first use (PEP 562).

``import sise`` and the command line's ``--help`` must not wait seconds for torch: the packages
whose names need torch (:mod:`sise`, :mod:`sise.eval`, :mod:`sise.eval.benchmark`) list their
names with the module each comes from, and import that module when a name is first used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose names are imported on first use.

    Args:
        package: the package's ``__name__``.
        exports: public name → the module it comes from.

    Returns:
        ``(__getattr__, __dir__)``, to assign at the package's module level. A name, once
        imported, is kept in the package's namespace, so it is looked up only once.
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *exports])

    return __getattr__, __dir__
