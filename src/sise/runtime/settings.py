"""The one door to speed: :class:`Runtime`, every setting that changes how fast an explanation
runs and nothing that changes what it explains.

A method takes its algorithm's options; how its model evaluations run (batch size, precision,
memory format, compilation, progress bars, device) comes from one ``Runtime``::

    from sise import SISE, Runtime

    explainer = SISE(model, runtime=Runtime(batch_size=64, precision="fp16"))

The command line, the page and the benchmark each build one ``Runtime`` from their flags.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch

from sise.errors import SiseError, check_flag, check_integer
from sise.runtime.device import Compile, Precision, autocast_dtype_for, compile_setting


def default_device() -> str:
    """Where a front end puts the model when nobody says: ``"cuda"`` when a GPU is visible, else
    ``"cpu"`` (the one place this choice is made)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class Runtime:
    """How an explanation runs: batch size, precision, memory format, compilation, progress.

    None of these changes the algorithm: a method gives the same maps under any ``Runtime``, up to
    floating-point rounding (``precision`` trades a little of it for speed; SISE's feature-map
    selection always runs in exact fp32).

    Attributes:
        batch_size: masked or interpolated inputs per forward pass: an integer, ``"auto"`` (on a
            GPU as many as fit in free memory, probed once; 32 on a CPU), or ``None``: each
            method's own default (``"auto"`` for SISE, Score-CAM and RISE; all path points at
            once for Integrated Gradients on a GPU, 16 at a time on a CPU).
        precision: ``"fp32"`` (default, the reference maps), ``"fp16"`` or ``"bf16"``: the masked
            forwards under autocast. fp32 is the default because SISE's fused map is sensitive:
            its binary Otsu gates flip where a layer map sits near its threshold. On the real
            EfficientNet-Lite0 and the two packaged photos (H100, fused maps against fp32):
            ``"fp16"`` r ≥ 0.991 (fixed) and ≥ 0.998 (adaptive), with channels-last 1.6x the
            fp32 speed (fixed; ResNet-50: 1.7x); ``"bf16"`` only r = 0.965 (fixed) and 0.986
            (adaptive), as bf16's 8-bit mantissa perturbs the masked scores by a median 5% there
            (fp16: 0.1%). On CUDA use ``"fp16"`` with ``channels_last=True`` (and ``compile``
            for many explanations); fp16 scores that overflow are scored again in fp32. On a
            CPU only bf16 is fast (fp16 is emulated), with the fidelity above.
        channels_last: ``True``: run the masked forwards in channels-last memory format; the
            model's 4-D weights are held channels-last only while they run and get their
            original tensors back afterwards (:func:`sise.runtime.device.channels_last_weights`).
            ``None`` (default): channels-last masked inputs on a CPU only, weights untouched;
            ``False``: NCHW (see :func:`sise.runtime.engine.score_masked`).
        compile: ``True``: run the masked forwards through ``torch.compile`` (compiled once, on
            the first call, for each input shape; a model that does not compile runs eagerly
            with a warning, and the first calls are checked against the eager pass);
            ``"cudagraphs"``: compiled and replayed as CUDA graphs. On CUDA SISE's gradient pass
            is compiled too (:class:`sise.runtime.compiled_gradients.CompiledGradientPass`;
            there it is bound by kernel launches, on a CPU compiling it does not pay). Compiling
            costs seconds to a minute (ResNet-50 on an H100: 23 s, then 0.114 s per SISE
            explanation in fp16 + channels-last against 0.176 s eager), so it pays over many
            explanations, not one. CUDA graphs gained nothing there.
        progress: draw a progress bar over each method's long loops.
        device: where the front ends (``sise explain``, ``sise app``, ``sise benchmark``) put
            the model; ``None``: :func:`default_device`. A method itself always runs on its
            model's device.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from sise import RISE, Runtime
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
        ... ).eval()
        >>> runtime = Runtime(batch_size=50)  # 200 masks in 4 forward passes
        >>> explanation = RISE(model, n_masks=200, runtime=runtime)(torch.randn(1, 3, 16, 16))
        >>> explanation.maps.shape, runtime.replace(precision="fp16").autocast_dtype
        (torch.Size([1, 16, 16]), torch.float16)
    """

    batch_size: int | Literal["auto"] | None = None
    precision: Precision = "fp32"
    channels_last: bool | None = None
    compile: Compile = False
    progress: bool = False
    device: str | None = None

    def __post_init__(self) -> None:
        if self.batch_size is not None and not (
            isinstance(self.batch_size, str) and self.batch_size == "auto"
        ):
            check_integer("batch_size (or 'auto')", self.batch_size, low=1)
        if not isinstance(self.precision, str):
            raise SiseError(f"precision must be 'fp32', 'fp16' or 'bf16', got {self.precision!r}")
        autocast_dtype_for(self.precision)  # raises on an unknown name
        if self.channels_last is not None:
            check_flag("channels_last", self.channels_last)
        compile_setting(self.compile)
        check_flag("progress", self.progress)
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as error:
                raise SiseError(
                    f"unknown device {self.device!r}: use 'cpu', 'cuda', 'cuda:1', 'mps', ..."
                ) from error

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype of :attr:`precision` (``None`` for fp32)."""
        return autocast_dtype_for(self.precision)

    @property
    def model_device(self) -> str:
        """The device the front ends put the model on: :attr:`device` or the default one."""
        return self.device if self.device is not None else default_device()

    def replace(self, **changes: object) -> Runtime:
        """A copy with some settings changed (checked like the constructor's)."""
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise SiseError(
                f"unknown runtime setting(s) {', '.join(unknown)}: use {', '.join(FIELDS)}"
            )
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


#: The settings a ``Runtime`` has, in order: the speed keys of ``--option``.
FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Runtime))
