"""How long a method will take, said before it starts: its passes through the model (from its
options and the explained layers' channels) times the seconds one pass of this model takes at
this input size, measured once per command."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sise.core.masks import TensorMasks
from sise.methods.base import Explainer
from sise.runtime import score_masked

#: Inputs per timed pass: enough for the per-input time of a batched pass (the masked methods
#: batch their inputs), few enough to cost well under a second on a CPU for a mobile network.
TIMING_BATCH = 8


def passes_text(count: int, kind: str = "forward pass") -> str:
    """``"1 forward pass"``, ``"1,093 forward passes"``."""
    return f"{count:,} {kind}" + ("" if count == 1 else "es")


def duration_text(seconds: float) -> str:
    """``"under a second"``, ``"about 12 s"``, ``"about 3.5 min"``."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    return f"about {seconds / 60:.1f} min"


@dataclass(frozen=True)
class PassCost:
    """Seconds per input of one pass through the model, measured at the explained input size.

    Attributes:
        forward: a forward pass without gradients (a masked input).
        gradient: a forward and a backward pass to the input (an optimisation step, a path point).
    """

    forward: float
    gradient: float

    @classmethod
    def measure(cls, model: nn.Module, inputs: Tensor, batch: int = TIMING_BATCH) -> PassCost:
        """Time the two kinds of pass on copies of the first input, each after a warm-up.

        The forward pass is timed as the masked methods run it, through the runtime's engine
        (:func:`sise.runtime.score_masked`: on a CPU with batch norms folded and convolutions
        prepacked, two to four times faster than a plain forward there): the second of two
        batches of ``2 · batch`` masks. The forward+backward pass is timed on a plain batch of
        ``batch // 2`` (Extremal Perturbation's areas, Integrated Gradients' path points); the
        backward pass differentiates the input only (``torch.autograd.grad``), so the model's
        parameters get no ``.grad``.
        """
        x = inputs[:1].detach()
        rows = 2 * batch
        finished: list[float] = []
        masks = TensorMasks(torch.ones(2 * rows, *x.shape[-2:], device=x.device))
        score_masked(
            model,
            x,
            torch.zeros(1, dtype=torch.long, device=x.device),
            masks,
            batch_size=rows,
            on_batch=lambda count: finished.append(_now(x)),
        )
        forward = (finished[1] - finished[0]) / rows
        half = max(1, batch // 2)
        step = x.expand(half, *x.shape[1:]).contiguous().requires_grad_(True)
        for _ in range(2):  # the first allocates and picks kernels
            start = _now(x)
            output = model(step)
            first = output if isinstance(output, Tensor) else next(iter(_tensors(output)))
            torch.autograd.grad(first.float().sum(), [step])
            gradient = (_now(x) - start) / half
        return cls(forward, gradient)

    def describe(self) -> str:
        """``"8.1 ms per forward pass, 24 ms per forward+backward (per input)"``."""
        return (
            f"{self.forward * 1e3:.3g} ms per forward pass, {self.gradient * 1e3:.3g} ms per "
            "forward+backward pass (per input)"
        )


def _now(x: Tensor) -> float:
    """The time, once the device has finished its work on ``x``."""
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    return time.perf_counter()


def _tensors(output: object) -> list[Tensor]:
    values = output.values() if isinstance(output, dict) else output
    return [v for v in values if isinstance(v, Tensor)]  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Estimate:
    """A method's passes through the model for one input, and the time they take.

    Attributes:
        forwards: forward passes without gradients.
        gradients: forward+backward passes.
        seconds: the time they take at the measured :class:`PassCost`.
        at_most: the count is an upper bound (SISE scores only the feature maps it keeps).
    """

    forwards: int
    gradients: int
    seconds: float
    at_most: bool = False

    def describe(self) -> str:
        """``"1,001 forward passes, about 12 s"``, ``"1 forward+backward pass, under a second"``."""
        parts = []
        if self.forwards:
            parts.append(passes_text(self.forwards))
        if self.gradients:
            parts.append(passes_text(self.gradients, "forward+backward pass"))
        bound = "at most " if self.at_most else ""
        duration = duration_text(self.seconds)
        if self.at_most:  # SISE scores only the maps it keeps: often a tenth of the bound
            duration = duration.replace("about ", "up to ", 1)
        return f"{bound}{' and '.join(parts)}, {duration}"


def _channels(model: nn.Module, modules: list[nn.Module], inputs: Tensor) -> list[int]:
    """The channels of each module's output for one input: (N, C, H, W) gives C, a token
    sequence (N, T, C) or a channels-last grid its last dimension."""
    found: dict[int, int] = {}

    def record(index: int):
        def hook(module: nn.Module, args: object, output: object) -> None:
            if isinstance(output, Tensor) and output.ndim >= 3:
                found[index] = int(output.shape[1] if output.ndim == 4 else output.shape[-1])

        return hook

    handles = [m.register_forward_hook(record(i)) for i, m in enumerate(modules)]
    try:
        with torch.no_grad():
            model(inputs[:1].detach())
    finally:  # never leave a hook on the user's model
        for handle in handles:
            handle.remove()
    return [found.get(i, 0) for i in range(len(modules))]


def passes(explainer: Explainer, inputs: Tensor) -> tuple[int, int, bool]:
    """``(forwards, gradients, at_most)``: the passes ``explainer`` makes for one input, from
    its options (the costs its docstring states)."""
    name = explainer.name
    if name in ("gradcam", "gradcampp", "fullgrad"):
        return 0, 1, False
    if name == "ig":
        return 2, int(explainer.n_steps), False  # type: ignore[attr-defined]
    if name == "rise":
        return 1 + int(explainer.n_masks), 0, False  # type: ignore[attr-defined]
    if name == "extremal":
        areas = len(explainer.areas)  # type: ignore[attr-defined]
        return 1 + areas, int(explainer.iterations) * areas, False  # type: ignore[attr-defined]
    if name == "scorecam":
        _, module = explainer.layer_for(inputs)  # type: ignore[attr-defined]
        # at most: a constant map costs no pass, a baseline other than zero one more
        return 1 + sum(_channels(explainer.model, [module], inputs)), 0, True
    if name == "sise":
        layers = explainer.layers_for(inputs)  # type: ignore[attr-defined]
        modules = [module for _, module in layers]
        return sum(_channels(explainer.model, modules, inputs)), 1, True
    return 0, 1, True


#: Fewer passes than this are not worth an estimate: timing the model (about 40 passes) would
#: cost more than the explanation (Grad-CAM, Grad-CAM++ and FullGrad make one).
WORTH_AN_ESTIMATE = 50


def worth_estimating(explainer: Explainer, inputs: Tensor) -> bool:
    """Whether ``explainer`` makes enough passes on ``inputs`` for an estimate to help."""
    forwards, gradients, _ = passes(explainer, inputs)
    return forwards + gradients > WORTH_AN_ESTIMATE


def estimate(explainer: Explainer, inputs: Tensor, cost: PassCost) -> Estimate:
    """How long ``explainer`` will take on ``inputs`` (all of them) at ``cost``."""
    forwards, gradients, at_most = passes(explainer, inputs)
    n = inputs.shape[0]
    seconds = n * (forwards * cost.forward + gradients * cost.gradient)
    return Estimate(forwards, gradients, seconds, at_most)
