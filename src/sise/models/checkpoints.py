"""Checkpoint files: the package's one unwrapper (:func:`read_checkpoint`) and a strict load
whose error names what does not match (:func:`load_state_dict_checked`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from sise.errors import SiseError

__all__ = [
    "CHECKPOINT_PREFIXES",
    "CHECKPOINT_WRAPPERS",
    "load_state_dict_checked",
    "read_checkpoint",
]

#: Entries that training scripts wrap a state dict in, unwrapped in this order, repeatedly.
CHECKPOINT_WRAPPERS = ("state_dict", "model_state_dict", "model")
#: Key prefixes added by wrappers of the model: DataParallel/DDP and ``torch.compile``.
CHECKPOINT_PREFIXES = ("module.", "_orig_mod.")


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """A checkpoint file as a flat ``{name: tensor}`` state dict: the package's one unwrapper.

    Loads with ``weights_only=True`` (no code in the file runs), then unwraps, as long as one
    is there, the first of the ``"state_dict"`` / ``"model_state_dict"`` / ``"model"`` entries
    that holds a dict; drops entries that are not tensors (an epoch count, a config); strips the
    ``module.`` (DataParallel) and ``_orig_mod.`` (``torch.compile``) key prefixes.

    Raises:
        SiseError: the file is missing or unreadable, or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise SiseError(f"checkpoint {str(path)!r} does not exist: check the path")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise SiseError(
            f"could not read checkpoint {str(path)!r} as a PyTorch state dict (a truncated or "
            f"interrupted download reads like this: fetch the file again): {error}"
        ) from error
    while isinstance(loaded, dict):
        inner = next(
            (loaded[k] for k in CHECKPOINT_WRAPPERS if isinstance(loaded.get(k), dict)), None
        )
        if inner is None:
            break
        loaded = inner
    if not isinstance(loaded, dict):
        raise SiseError(
            f"checkpoint {str(path)!r} holds a {type(loaded).__name__}, not a state dict"
        )
    state: dict[str, Tensor] = {}
    for key, value in loaded.items():
        if isinstance(value, Tensor):
            name = str(key)
            for prefix in CHECKPOINT_PREFIXES:
                name = name.removeprefix(prefix)
            state[name] = value
    if not state:
        raise SiseError(f"checkpoint {str(path)!r} holds no tensors")
    return state


def load_state_dict_checked(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names what does not match."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            parts.append(
                "shape mismatch "
                + ", ".join(
                    f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:3]
                )
            )
        raise SiseError(
            f"{source} does not fit the architecture ({'; '.join(parts)}); check the model name "
            "and --num-classes"
        )
    model.load_state_dict(state)
