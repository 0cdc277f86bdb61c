"""Integrated Gradients: the score's gradient integrated along the path from a baseline to the input."""

from __future__ import annotations

import contextlib
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from sise.core.hooks import forward_scores
from sise.core.masks import BaselineSpec, make_baseline
from sise.core.postprocess import minmax_normalize
from sise.core.scores import ScoreKind
from sise.errors import check_choice, check_integer
from sise.extras import require
from sise.methods.base import Explainer, Explanation, Targets, check_baseline
from sise.runtime import Runtime, check_fits
from sise.targets import checked_scores

IGMethod = Literal[
    "gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"
]
#: Path points per forward+backward pass on a CPU when the runtime gives no batch size. Measured
#: on the real EfficientNet-Lite0 at 224 px, one thread (2-core development VM): 50 points at once
#: 13.8 s, 16 per pass 6.9 s, 8 per pass 6.1 s; the attributions agree with the one-pass ones
#: within fp32's own error (4e-4 relative; either is 4e-3 from a float64 run).
CPU_PATH_POINTS = 16


class IntegratedGradients(Explainer):
    """Integrated Gradients (Sundararajan, Taly and Yan, "Axiomatic Attribution for Deep
    Networks", ICML 2017), computed by Captum's ``IntegratedGradients``.

    For the baseline x' (zeros of the model's input space by default)::

        IG_i(x) = (x_i − x'_i) · ∫_0^1 ∂Ψ_c(x' + t (x − x')) / ∂x_i dt

    approximated with ``n_steps`` points of ``method`` (Captum's default Gauss-Legendre rule).
    Completeness: ``Σ_i IG_i ≈ Ψ_c(x) − Ψ_c(x')``; the gap is ``extras["delta"]``. The map is
    ``Σ_channels |IG|``, min-max normalised; the raw attributions are ``extras["attributions"]``.

    Captum differentiates with ``torch.autograd.grad`` with respect to copies of the inputs, so no
    parameter ``.grad`` is populated and no ``requires_grad`` flag is changed.

    Cost per image: ``n_steps`` forward+backward passes and two forward passes (Ψ_c(x) and
    Ψ_c(x')).

    Args:
        model: a classifier returning (N, K) class scores.
        n_steps: points of the path integral.
        method: Captum's integration rule.
        baseline: x': ``"zero"`` (the model's input-space zero), ``"blur"`` or a tensor.
        score: explained score ``"softmax"``, ``"sigmoid"`` or ``"logit"``; default: the logit
            (the model's output, which Captum attributes).
        runtime: its ``batch_size`` is Captum's ``internal_batch_size`` (path points per
            forward); ``None`` (default): all ``n_steps × N`` at once on a GPU, and
            :data:`CPU_PATH_POINTS` per pass on a CPU (at least N), where one pass over all 50
            points of a 224 px image was measured twice as slow; ``"auto"``: sized from free
            memory with a third of the masked forwards' share (a forward *and backward* pass
            holds about three times the memory of a forward pass), 32 on a CPU.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        ...     nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        ...     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
        ... ).eval()
        >>> x = torch.randn(2, 3, 32, 32)  # two model-ready images
        >>> from sise import IntegratedGradients
        >>> explanation = IntegratedGradients(model, n_steps=32)(x, targets=[1, 3])
        >>> explanation.extras["attributions"].shape  # per pixel and channel
        torch.Size([2, 3, 32, 32])
        >>> bool(explanation.extras["delta"].abs().max() < 1e-2)  # completeness holds
        True
    """

    name = "ig"
    default_score = "logit"

    runtime_settings = frozenset({"batch_size", "progress"})

    def __init__(
        self,
        model: nn.Module,
        *,
        n_steps: int = 50,
        method: IGMethod = "gausslegendre",
        baseline: BaselineSpec = "zero",
        score: ScoreKind | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(model, score=score, runtime=runtime)
        require("captum.attr", "Integrated Gradients")  # at once, not after the model has run
        self.n_steps = check_integer("n_steps", n_steps, low=1)
        check_choice("integration method", method, get_args(IGMethod))
        self.method: IGMethod = method
        self.baseline = check_baseline(baseline)

    def _explain(self, inputs: Tensor, targets: Targets) -> Explanation:
        CaptumIG = require("captum.attr", "Integrated Gradients").IntegratedGradients

        n = inputs.shape[0]
        target, resolved, scores = forward_scores(self.model, inputs, targets, self.score)
        baseline = make_baseline(inputs, self.baseline)
        if baseline is None:
            baseline = torch.zeros_like(inputs)

        # a bar over the path points (closed below; on an error, when it is collected)
        bar = contextlib.ExitStack()
        advance = bar.enter_context(
            self.model_runtime.progress_bar(self.n_steps * n, "Integrated Gradients")
        )

        def forward(x: Tensor, owners: Tensor) -> Tensor:
            # Captum repeats ``owners`` along with the inputs, so each path point's row knows
            # its image, whatever Captum's internal batching.
            advance(x.shape[0])
            return checked_scores(target.rows(owners), self.model(x), x.shape[0])

        # Captum needs room for at least one path point of every image (``batch_size`` never
        # returns fewer than the images).
        on_cpu = inputs.device.type == "cpu"
        batch = self.model_runtime.batch_size(
            inputs, default=max(n, CPU_PATH_POINTS) if on_cpu else None, memory_fraction=0.2
        )
        # Captum's integration rule first: Gauss-Legendre nodes come from numpy's eigenvalues of
        # an n_steps x n_steps float64 matrix; the Riemann rules are two Python lists of floats.
        rule_bytes = 8 * self.n_steps**2 if self.method == "gausslegendre" else 64 * self.n_steps
        check_fits(
            rule_bytes,
            "cpu",
            f"Integrated Gradients' {self.n_steps:,} path points (their {self.method} rule)",
            "lower n_steps (50 is Captum's default)",
        )
        # Before Captum expands them: its path points (all n_steps x N of them at once without a
        # batch size), their gradients and the scaled gradients, each the size of the inputs.
        rows = min(batch or n * self.n_steps, n * self.n_steps)
        check_fits(
            3 * rows * inputs[0].numel() * inputs.element_size(),
            inputs.device,
            f"Integrated Gradients' {rows:,} path points per pass",
            "lower n_steps (50 is Captum's default) or give a batch size (sise.Runtime("
            "batch_size=...); command line: --option ig.batch_size=...)",
        )
        attributions = CaptumIG(forward).attribute(
            inputs.detach(),
            baselines=baseline.detach(),
            additional_forward_args=(torch.arange(n, device=inputs.device),),
            n_steps=self.n_steps,
            method=self.method,
            internal_batch_size=batch,
        )
        attributions = attributions.detach()
        bar.close()
        with torch.no_grad():
            baseline_scores = checked_scores(target, self.model(baseline), n)
        delta = attributions.flatten(1).sum(dim=1).float() - (scores - baseline_scores)
        return Explanation(
            maps=minmax_normalize(attributions.abs().sum(dim=1).float()),
            targets=resolved,
            scores=scores,
            forward_passes=torch.full((n,), self.n_steps + 2, device=inputs.device),
            method=self.name,
            extras={
                "attributions": attributions,
                "baseline_scores": baseline_scores,
                "delta": delta,
            },
        )
