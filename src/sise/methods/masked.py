"""The masked-scoring family: Score-CAM, RISE and SISE explain by scoring masked copies of the inputs.

Each makes its masks ``m`` its own way (Score-CAM: one per feature map of a layer; RISE: random
grids; SISE: the selected feature maps of several layers) and turns the scores into a map its own
way, but all three score them alike: the explained score Ψ_c of ``x_b + (x − x_b) ⊙ m`` for a
baseline ``x_b``, computed in full batches on the model's device by the one engine,
:func:`sise.runtime.engine.score_masked`. What they share lives here: the options of that scoring
(baseline), checked where it enters, and the call into the
engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from torch import Tensor, nn

from sise.core.masks import BaselineSpec, MaskSource, MaskSums, make_baseline
from sise.core.scores import ScoreKind
from sise.methods.base import check_baseline
from sise.runtime import ModelRuntime
from sise.targets import Target


class MaskedScoring:
    """Mixin of the explainers that score masked inputs (Score-CAM, RISE, SISE), next to
    :class:`~sise.methods.base.Explainer` (whose ``model``, ``score`` and ``model_runtime`` it
    uses).

    Attributes (set by :meth:`set_masking_options`):
        baseline: what masked-out pixels become: ``"zero"`` (the model's input-space zero),
            ``"blur"``, ``None`` (zero) or a tensor (:func:`sise.core.masks.make_baseline`).
    """

    #: The label of the progress bar over the masked forwards.
    progress_label: ClassVar[str] = "masked forwards"
    #: Everything :meth:`sise.runtime.ModelRuntime.score_masked` takes from the runtime.
    runtime_settings: ClassVar[frozenset[str]] = frozenset(
        {"batch_size", "precision", "channels_last", "compile", "progress"}
    )

    model: nn.Module
    score: ScoreKind
    model_runtime: ModelRuntime
    baseline: BaselineSpec

    def set_masking_options(self, *, baseline: BaselineSpec) -> None:
        """Check the masked scoring's options and keep them as attributes."""
        self.baseline = check_baseline(baseline)

    def score_masks(
        self,
        inputs: Tensor,
        target: Tensor | Target | Callable[[Tensor], Tensor],
        source: MaskSource,
        *,
        sums: MaskSums | None = None,
    ) -> Tensor:
        """The explained score of every masked input of ``source``
        (:meth:`sise.runtime.ModelRuntime.score_masked`: batched as the runtime says)."""
        return self.model_runtime.score_masked(
            inputs,
            target,
            source,
            score=self.score,
            baseline=make_baseline(inputs, self.baseline),
            label=self.progress_label,
            sums=sums,
        )
