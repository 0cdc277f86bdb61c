"""The sanity check: does the explanation depend on the model at all? The cascading
randomisation (:func:`sanity_check`), the fully randomised copy of a model
(:func:`randomised_model`) and the benchmark's per-pair row (:func:`model_randomisation`)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from sise.errors import SiseError
from sise.eval.metrics.checks import check_maps, check_model_inputs
from sise.eval.metrics.statistics import spearman

__all__ = ["model_randomisation", "randomised_model", "sanity_check"]


def _layers_in_call_order(model: nn.Module, inputs: Tensor) -> list[str]:
    """Names of the modules that own parameters, in the order a forward pass enters them."""
    owners = {
        name: module
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    }
    entered: list[str] = []
    handles = []
    for name, module in owners.items():

        def record(_module: nn.Module, _args: object, name: str = name) -> None:
            if name not in entered:
                entered.append(name)

        handles.append(module.register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return entered


@torch.no_grad()
def _randomise(module: nn.Module, generator: torch.Generator) -> None:
    """Redraw the module's own parameters from a truncated normal of the trained scale.

    Each tensor gets ``N(0, σ²)`` truncated to ±2σ (Adebayo et al. re-initialise from a
    truncated normal), with σ the trained entries' standard deviation so that activations keep
    their magnitude; a constant tensor (a fresh bias, a BatchNorm scale) uses its magnitude,
    at least 0.01.
    """
    for param in module.parameters(recurse=False):
        trained = param.detach().double()
        sigma = float(trained.std()) if trained.numel() > 1 else 0.0
        if not sigma > 0:
            sigma = max(float(trained.abs().mean()), 1e-2)
        fresh = torch.empty(param.shape, dtype=torch.float32)
        nn.init.trunc_normal_(fresh, std=sigma, a=-2 * sigma, b=2 * sigma, generator=generator)
        param.copy_(fresh.to(param))


def _randomisation_order(
    work: nn.Module, inputs: Tensor, layers: Sequence[str] | None
) -> list[str]:
    """The layers to randomise, top first (see :func:`sanity_check`'s ``layers``)."""
    modules = dict(work.named_modules())
    if layers is None:
        order = list(reversed(_layers_in_call_order(work, inputs)))
    else:
        unknown = [name for name in layers if name not in modules]
        if unknown:
            raise SiseError(
                f"unknown layer name(s) {unknown}: use names from model.named_modules()"
            )
        order = list(layers)
    if not order:
        raise SiseError("the model has no layer with parameters to randomise")
    return order


def randomised_model(
    model: nn.Module, example: Tensor, *, layers: Sequence[str] | None = None, seed: int = 0
) -> nn.Module:
    """A deep copy of ``model`` with every layer randomised: the model of :func:`sanity_check`'s
    last step (the same layers, order and seed give the same weights). ``model`` is untouched.

    Args:
        model: the trained classifier.
        example: (N, C, H, W) model-ready inputs (one forward pass finds the layers' order).
        layers: as for :func:`sanity_check`.
        seed: the re-initialisation's seed.
    """
    work = copy.deepcopy(model)
    modules = dict(work.named_modules())
    generator = torch.Generator().manual_seed(seed)
    for name in _randomisation_order(work, example, layers):
        _randomise(modules[name], generator)
    return work


def model_randomisation(maps: Tensor, randomised_maps: Tensor) -> Tensor:
    """(N,) the Spearman ρ between each trained model's map and the fully randomised model's
    map of the same input and class (the last step of :func:`sanity_check`, per sample; lower is
    better: a map that does not change when the weights are destroyed does not explain the
    model). Quantus's MPRT reports the same kind of similarity per layer."""
    check_maps(maps)
    check_maps(randomised_maps, "randomised_maps")
    return spearman(maps, randomised_maps)


def sanity_check(
    explain: Callable[[nn.Module, Tensor, Tensor], Tensor],
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    layers: Sequence[str] | None = None,
    seed: int = 0,
) -> list[tuple[str, float]]:
    """Cascading model-parameter randomisation test (Adebayo et al., "Sanity Checks for
    Saliency Maps", NeurIPS 2018).

    A faithful explanation depends on the model: as the layers are randomised one after the
    other, from the output layer towards the input, the maps must drift away from the maps of
    the trained model. After randomising each layer (cumulatively) the maps are recomputed and
    compared with the originals by Spearman rank correlation (:func:`spearman`), averaged over
    the samples.

    The user's model is never modified: the test works on a deep copy. Re-initialisation is
    seeded (``seed``), drawn on the CPU and copied to the parameters' device, so the result
    does not depend on the device.

    Args:
        explain: ``explain(model, inputs, targets) -> (N, H, W) maps``.
        model: the trained classifier.
        inputs: (N, C, H, W) model-ready images.
        targets: (N,) explained class per image.
        layers: names (as in ``named_modules``) of the layers to randomise, in the order to
            randomise them. Default: every module owning parameters, in reverse order of
            execution in a forward pass (top layer first).
        seed: seed of the re-initialisation.

    Returns:
        ``[(layer name, mean Spearman ρ with the original maps), ...]`` after each cumulative
        randomisation step.
    """
    check_model_inputs(inputs, targets)
    work = copy.deepcopy(model)
    modules = dict(work.named_modules())
    order = _randomisation_order(work, inputs, layers)
    original = explain(work, inputs, targets).detach()
    check_maps(original, "the maps returned by explain")
    generator = torch.Generator().manual_seed(seed)
    results: list[tuple[str, float]] = []
    for name in order:
        _randomise(modules[name], generator)
        maps = explain(work, inputs, targets).detach()
        if maps.shape != original.shape:
            raise SiseError(
                f"explain returned maps of shape {tuple(maps.shape)} after randomising {name!r}, "
                f"but {tuple(original.shape)} before"
            )
        results.append((name, float(spearman(original, maps).mean())))
    return results
