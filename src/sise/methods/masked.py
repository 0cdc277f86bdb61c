"""The masked-scoring family: Score-CAM, RISE and SISE explain by scoring masked copies of the inputs.

Each makes its masks ``m`` its own way (Score-CAM: one per feature map of a layer; RISE: random
grids; SISE: the selected feature maps of several layers) and turns the scores into a map its own
way, but all three score them alike: the explained score Ψ_c of ``x_b + (x − x_b) ⊙ m`` for a
baseline ``x_b``, computed in full batches on the model's device by the one engine,
:func:`sise.runtime.engine.score_masked`. What they share lives here: the options of that scoring
(baseline, batch size, autocast, progress bar), checked where they enter, and the call into the
engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from sise.core.scores import ScoreKind
from sise.errors import SiseError, check_flag
from sise.methods.base import check_baseline, check_batch_size
from sise.runtime.device import BatchSize, CompiledForward
from sise.runtime.engine import BaselineSpec, MaskSource, MaskSums, make_baseline, score_masked
from sise.targets import Target

#: The dtypes the masked forwards can run under autocast in.
AUTOCAST_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def check_autocast_dtype(autocast_dtype: object) -> torch.dtype | None:
    """An ``autocast_dtype`` option: ``None`` (no autocast) or one of :data:`AUTOCAST_DTYPES`."""
    if autocast_dtype is None or (
        isinstance(autocast_dtype, torch.dtype) and autocast_dtype in AUTOCAST_DTYPES
    ):
        return autocast_dtype
    raise SiseError(
        "autocast_dtype must be None, torch.bfloat16, torch.float16 or torch.float32, got "
        f"{autocast_dtype!r}"
    )


class MaskedScoring:
    """Mixin of the explainers that score masked inputs (Score-CAM, RISE, SISE), next to
    :class:`~sise.methods.base.Explainer` (whose ``model`` and ``score`` it uses).

    Attributes (set by :meth:`set_masking_options`):
        baseline: what masked-out pixels become: ``"zero"`` (the model's input-space zero),
            ``"blur"``, ``None`` (zero) or a tensor (:func:`sise.runtime.engine.make_baseline`).
        batch_size: masked inputs per forward pass, or ``"auto"``.
        autocast_dtype: the dtype of the masked forwards under autocast; ``None``: none.
        progress: whether a progress bar, labelled :attr:`progress_label`, shows the forwards.
    """

    #: The label of the progress bar over the masked forwards.
    progress_label: ClassVar[str] = "masked forwards"

    model: nn.Module
    score: ScoreKind
    baseline: BaselineSpec
    batch_size: BatchSize
    autocast_dtype: torch.dtype | None
    progress: bool

    def set_masking_options(
        self,
        *,
        baseline: BaselineSpec,
        batch_size: BatchSize,
        autocast_dtype: torch.dtype | None,
        progress: bool,
    ) -> None:
        """Check the masked scoring's options and keep them as attributes."""
        self.baseline = check_baseline(baseline)
        self.batch_size = check_batch_size(batch_size)
        self.autocast_dtype = check_autocast_dtype(autocast_dtype)
        self.progress = check_flag("progress", progress)

    def score_masks(
        self,
        inputs: Tensor,
        target: Tensor | Target | Callable[[Tensor], Tensor],
        source: MaskSource,
        *,
        sums: MaskSums | None = None,
        channels_last: bool | None = None,
        compiled: CompiledForward | None = None,
    ) -> Tensor:
        """The explained score of every masked input of ``source``, with this method's options
        (:func:`sise.runtime.engine.score_masked`, whose arguments these are)."""
        return score_masked(
            self.model,
            inputs,
            target,
            source,
            score=self.score,
            baseline=make_baseline(inputs, self.baseline),
            batch_size=self.batch_size,
            autocast_dtype=self.autocast_dtype,
            channels_last=channels_last,
            compiled=compiled,
            sums=sums,
            progress=self.progress_label if self.progress else None,
        )
