"""Checkpoint files: the package's one unwrapper (:func:`read_checkpoint`) and a strict load
whose error names what does not match (:func:`load_state_dict_checked`)."""

from __future__ import annotations

import re
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
        raise SiseError(_unreadable(path, error)) from error
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


#: The first bytes of files often given by mistake, and what they are.
_NOT_CHECKPOINTS = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a WebP image or other RIFF file"),
    (b"BM", "a BMP image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"<", "an HTML or XML page (a download link that gave a web page?)"),
    (b"{", "a JSON file"),
    (b"\x93NUMPY", "a NumPy array"),
    (b"\x89HDF", "an HDF5 file (Keras?)"),
)


def _unreadable(path: Path, error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in the package's words.

    torch's own text advises ``weights_only=False``, which runs any code the file holds: the
    message never relays that advice (sise loads checkpoints as data only).
    """
    name = repr(str(path))
    try:
        with path.open("rb") as file:
            head = file.read(8)
    except OSError as os_error:  # unreadable (permissions, a vanished file): say that
        return f"cannot read checkpoint {name}: {os_error.strerror or os_error}"
    if not head:
        return f"checkpoint {name} is empty: fetch the file again"
    for magic, kind in _NOT_CHECKPOINTS:
        if head.startswith(magic):
            return (
                f"{name} is not a PyTorch checkpoint: it is {kind}. A checkpoint is a state dict "
                "saved with torch.save(model.state_dict(), 'weights.pt')"
            )
    text = str(error)
    if "Unsupported global" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" (such as {found.group(1)})" if found else ""
        return (
            f"checkpoint {name} is not a safe checkpoint: besides tensors it holds Python "
            f"objects{what}, and loading those could run code from the file. sise loads only "
            "tensors: save the weights alone with torch.save(model.state_dict(), 'weights.pt')"
        )
    unpickler = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    if unpickler or "weights_only" in text:
        reason = f": {unpickler.group(1).strip()}" if unpickler else ""
        return (
            f"could not read checkpoint {name}: it is not a PyTorch checkpoint (torch cannot read "
            f"it as saved tensors{reason}). A checkpoint is a state dict saved with "
            "torch.save(model.state_dict(), 'weights.pt'); a truncated or interrupted download "
            "reads like this too: fetch the file again"
        )
    lines = text.strip().splitlines()
    return (
        f"could not read checkpoint {name} as a PyTorch state dict (a truncated or interrupted "
        f"download reads like this: fetch the file again): {lines[0] if lines else type(error).__name__}"
    )


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
