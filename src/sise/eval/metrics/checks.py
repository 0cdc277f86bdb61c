"""The input checks every metric shares: one clear :class:`~sise.errors.SiseError` for a stack of
maps, a ground truth or a batch of inputs of the wrong shape, dtype or range."""

from __future__ import annotations

import torch
from torch import Tensor

from sise.errors import SiseError

__all__ = [
    "check_ground_truth",
    "check_maps",
    "check_maps_fit_inputs",
    "check_model_inputs",
    "check_unit_maps",
]


def check_maps(maps: Tensor, name: str = "maps") -> None:
    if maps.ndim != 3:
        raise SiseError(
            f"{name} must be a (N, H, W) stack of maps, got shape {tuple(maps.shape)}; "
            "add a batch dimension with maps[None] for a single map"
        )
    if not maps.is_floating_point():
        raise SiseError(f"{name} must be a floating-point tensor, got {maps.dtype}")
    if not bool(torch.isfinite(maps).all()):
        raise SiseError(f"{name} contain NaN or infinite values; fix the explanation method")


def check_ground_truth(maps: Tensor, gt_mask: Tensor) -> None:
    check_maps(maps)
    if gt_mask.shape != maps.shape:
        raise SiseError(
            f"gt_mask shape {tuple(gt_mask.shape)} differs from maps shape {tuple(maps.shape)}: "
            "rasterise the ground truth at the maps' resolution (sise.eval.gt_mask)"
        )
    if gt_mask.dtype != torch.bool:
        raise SiseError(f"gt_mask must be a bool tensor, got {gt_mask.dtype}")
    empty = ~gt_mask.flatten(1).any(dim=1)
    if bool(empty.any()):
        rows = empty.nonzero().flatten().tolist()
        raise SiseError(
            f"the ground-truth mask of sample(s) {rows} is empty: every evaluated class needs "
            "at least one ground-truth pixel; drop those samples"
        )


def check_maps_fit_inputs(maps: Tensor, inputs: Tensor) -> None:
    """Maps are finite (N, H, W) tensors, one per (N, C, H, W) input, at the input's size."""
    n, _c, height, width = inputs.shape
    _check_map_shape(maps, n, height, width)


def _check_map_shape(maps: Tensor, n: int, height: int, width: int) -> None:
    check_maps(maps)
    if maps.shape != (n, height, width):
        raise SiseError(
            f"maps must be (N, H, W) = {(n, height, width)} to match the inputs, got "
            f"{tuple(maps.shape)}; up-sample them to the input size first"
        )


def check_unit_maps(maps: Tensor, height: int, width: int, n: int) -> None:
    _check_map_shape(maps, n, height, width)
    if bool((maps < 0).any()) or bool((maps > 1).any()):
        raise SiseError(
            "model-truth metrics multiply the input by the map, so maps must lie in [0, 1]; "
            "normalise them with sise.core.postprocess.minmax_normalize"
        )


def check_model_inputs(inputs: Tensor, targets: Tensor) -> None:
    if inputs.ndim != 4:
        raise SiseError(f"inputs must be (N, C, H, W), got shape {tuple(inputs.shape)}")
    if targets.shape != (inputs.shape[0],):
        raise SiseError(
            f"targets must hold one class index per input, shape ({inputs.shape[0]},), got "
            f"{tuple(targets.shape)}"
        )
