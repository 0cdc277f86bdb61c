"""A :class:`~sise.runtime.settings.Runtime` bound to one model: what a method calls to run its
model evaluations, so that no method needs to know how they are made fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

from torch import Tensor, nn

from sise.core.hooks import GradientPass, gradient_pass
from sise.core.masks import MaskSource, MaskSums
from sise.core.scores import ScoreKind
from sise.runtime.allocator import retained_freed_memory
from sise.runtime.compiled_gradients import CompiledGradientPass
from sise.runtime.device import CompiledForward, auto_batch_size, exact_fp32
from sise.runtime.engine import score_masked
from sise.runtime.progress import progress_bar
from sise.runtime.settings import Runtime
from sise.targets import Target, TargetSpec


class ModelRuntime:
    """The model evaluations of one explainer, run as its :class:`Runtime` says.

    Holds what must live as long as the explainer: the compiled forward and gradient pass
    (compiled once per model and input shape, so they are built here, not per call).

    Args:
        model: the explainer's model.
        runtime: the settings.
    """

    def __init__(self, model: nn.Module, runtime: Runtime) -> None:
        self.model = model
        self.settings = runtime
        cudagraphs = runtime.compile == "cudagraphs"
        self._compiled = CompiledForward(model, cudagraphs=cudagraphs) if runtime.compile else None
        self._compiled_gradients = (
            CompiledGradientPass(model, cudagraphs=cudagraphs) if runtime.compile else None
        )

    @contextlib.contextmanager
    def call(self, inputs: Tensor) -> Iterator[None]:
        """Around one explanation: on a CPU, freed memory is kept for reuse
        (:func:`sise.runtime.allocator.retained_freed_memory`) instead of being faulted in again."""
        with retained_freed_memory() if inputs.device.type == "cpu" else contextlib.nullcontext():
            yield

    def score_masked(
        self,
        inputs: Tensor,
        targets: Tensor | Target | Callable[[Tensor], Tensor],
        source: MaskSource,
        *,
        score: ScoreKind,
        baseline: Tensor | None,
        label: str,
        sums: MaskSums | None = None,
    ) -> Tensor:
        """Score every masked input ``b + (x - b) ⊙ m`` (:func:`sise.runtime.engine.score_masked`)
        with this runtime's batch size, precision, memory format and compiled forward.

        ``label`` names the progress bar, drawn when the runtime asks for one.
        """
        settings = self.settings
        return score_masked(
            self.model,
            inputs,
            targets,
            source,
            score=score,
            baseline=baseline,
            batch_size="auto" if settings.batch_size is None else settings.batch_size,
            autocast_dtype=settings.autocast_dtype,
            channels_last=settings.channels_last,
            compiled=self._compiled,
            sums=sums,
            progress=label if settings.progress else None,
        )

    def gradient_pass(
        self,
        layers: Sequence[tuple[str, nn.Module]],
        inputs: Tensor,
        targets: TargetSpec,
        score: ScoreKind,
    ) -> GradientPass:
        """The layers' activations and gradients of the explained score, in exact fp32
        (:func:`sise.runtime.device.exact_fp32`), compiled on CUDA when the runtime compiles."""
        with exact_fp32():
            # Compiled on CUDA only: there one image's pass is bound by kernel launches; on a CPU
            # the compiled pass was slower (real Lite0, two photos at 224 px, 2 cores: 69 against
            # 39 ms).
            if self._compiled_gradients is not None and inputs.device.type == "cuda":
                return self._compiled_gradients(layers, inputs, targets, score)
            return gradient_pass(self.model, layers, inputs, targets, score)

    def batch_size(
        self, inputs: Tensor, *, default: int | Literal["auto"] | None, memory_fraction: float
    ) -> int | None:
        """Inputs per forward pass for a method that batches by itself (Integrated Gradients):
        the runtime's ``batch_size``, or ``default`` where it says ``None``; ``"auto"`` probes
        free memory (:func:`sise.runtime.device.auto_batch_size`) with ``memory_fraction`` of it,
        and never goes below the number of images."""
        wanted = default if self.settings.batch_size is None else self.settings.batch_size
        if wanted is None or isinstance(wanted, int):
            return wanted
        return max(
            inputs.shape[0], auto_batch_size(self.model, inputs, memory_fraction=memory_fraction)
        )

    def progress_bar(
        self, total: int, label: str, unit: str = "fwd"
    ) -> contextlib.AbstractContextManager:
        """``advance(n)`` over ``total`` steps of ``unit``, drawn when the runtime asks for
        progress (:func:`sise.runtime.progress.progress_bar`)."""
        return progress_bar(total, label, self.settings.progress, unit)

    @property
    def compile_seconds(self) -> float:
        """Seconds spent compiling so far (0 without ``compile``)."""
        return sum(
            part.compile_seconds
            for part in (self._compiled, self._compiled_gradients)
            if part is not None
        )
