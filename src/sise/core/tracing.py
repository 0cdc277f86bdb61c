"""One traced forward pass, module call by module call: what layer discovery and layouts read.

:func:`traced_calls` records, for every module call of the model on an example (and on the
example at twice its size, when the model takes it), the shapes and identities of the call's
input and output tensors, and the :mod:`sise.core.feature_layout` of its output: whether it is
a spatial feature map, in which layout, and at what resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sise.core.feature_layout import (
    FeatureLayout,
    candidate_layouts,
    is_channels_first,
    model_prefix_tokens,
)


@dataclass
class Call:
    """One module call of a traced forward pass."""

    order: int
    name: str
    in_id: int | None
    out_id: int | None
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None
    # It handed back its input untouched (nn.Identity, a zero "same" padding): it returned the
    # tensor but did not make it. An in-place ReLU returns its input too, but changed.
    passes_through: bool = False
    channels_first: bool = False  # the module makes (N, C, h, w) outputs by construction
    in_area: int | None = None  # h·w of a spatial input, None if the input is not spatial
    out_area: int | None = None  # h·w of a spatial output, 0 for another tensor, None for none
    # the output's layouts (:func:`candidate_layouts`): [] not a map, several: ambiguous
    out_layouts: tuple[FeatureLayout, ...] = ()
    # a map of the same size at both input sizes: an adaptive pooling to a fixed grid
    out_fixed: bool = False


def first_tensor(args: object) -> Tensor | None:
    """The first tensor of a call's positional arguments (or the argument itself)."""
    if isinstance(args, Tensor):
        return args
    if isinstance(args, tuple | list):
        for arg in args:
            if isinstance(arg, Tensor):
                return arg
    return None


def _trace_calls(model: nn.Module, example: Tensor) -> tuple[list[Call], list[Tensor]]:
    """Every module call of one forward pass, in the order the calls finish."""
    calls: list[Call] = []
    keep_alive: list[Tensor] = []  # ids are only unique while the tensors live
    handles = []
    entry_versions: dict[str, list[int | None]] = {}  # a stack per module: calls can nest

    def pre_hook_for(name: str):
        def pre_hook(module: nn.Module, args: object) -> None:
            x = first_tensor(args)
            entry_versions.setdefault(name, []).append(x._version if x is not None else None)

        return pre_hook

    def hook_for(name: str):
        def hook(module: nn.Module, args: object, output: object) -> None:
            x = first_tensor(args)
            y = output if isinstance(output, Tensor) else None
            keep_alive.extend(t for t in (x, y) if t is not None)
            stack = entry_versions.get(name)
            version = stack.pop() if stack else None
            untouched = y is not None and y is x and version is not None and y._version == version
            calls.append(
                Call(
                    order=len(calls),
                    name=name,
                    in_id=id(x) if x is not None else None,
                    out_id=id(y) if y is not None else None,
                    in_shape=tuple(x.shape) if x is not None else None,
                    out_shape=tuple(y.shape) if y is not None else None,
                    passes_through=untouched,
                    channels_first=is_channels_first(module),
                )
            )

        return hook

    try:
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(pre_hook_for(name)))
            handles.append(module.register_forward_hook(hook_for(name)))
        # Outside inference mode: its tensors keep no version counter.
        with torch.inference_mode(False), torch.no_grad():
            model(example.clone() if example.is_inference() else example)
    finally:
        for handle in handles:
            handle.remove()
    return calls, keep_alive


def _area(layouts: list[FeatureLayout]) -> int | None:
    return layouts[0].area if layouts else None


def traced_calls(model: nn.Module, example: Tensor) -> tuple[list[Call], list[Call], list[Tensor]]:
    """The calls on ``example`` and, when the model takes it, on ``example`` at twice the size.

    The second list is empty for a model that only takes its own input size (a ViT built for
    one size, a flatten into a Linear). Both lists get their layouts and spatial areas
    (:func:`sise.core.feature_layout.candidate_layouts`, each trace compared with the other).
    """
    calls, keep_alive = _trace_calls(model, example)
    larger = torch.nn.functional.interpolate(example, scale_factor=2.0, mode="nearest")
    try:
        other_calls, other_alive = _trace_calls(model, larger)
    except (RuntimeError, ValueError, AssertionError):
        # What a model that takes one input size raises for another: torch's shape mismatch
        # (a flatten into a Linear) or the model's own size check. Any other error is a fault
        # of the model and propagates. Without a second trace the layouts are read from the
        # shapes and the input size alone.
        other_calls, other_alive = [], []
    if [c.name for c in other_calls] != [c.name for c in calls]:
        other_calls = []
    prefix = model_prefix_tokens(model)
    batch = example.shape[0]
    sizes = (tuple(example.shape[-2:]), tuple(larger.shape[-2:]))

    def layouts(
        shape: tuple[int, ...] | None,
        other_shape: tuple[int, ...] | None,
        size: tuple[int, ...],
        other_size: tuple[int, ...],
        channels_first: bool,
    ) -> list[FeatureLayout]:
        if shape is None:
            return []
        return candidate_layouts(
            shape,
            (size[0], size[1]),
            batch=batch,
            other_shape=other_shape,
            other_input_size=(other_size[0], other_size[1]) if other_shape is not None else None,
            prefix=prefix,
            channels_first=channels_first,
        )

    for mine, theirs, (size, other_size) in (
        (calls, other_calls, sizes),
        (other_calls, calls, sizes[::-1]),
    ):
        settled: dict[int, FeatureLayout] = {}  # tensor id -> the one layout of its maker
        for index, call in enumerate(mine):
            other = theirs[index] if theirs else None
            found_in = layouts(
                call.in_shape, other.in_shape if other else None, size, other_size, False
            )
            found_out = layouts(
                call.out_shape,
                other.out_shape if other else None,
                size,
                other_size,
                call.channels_first,
            )
            inherited = settled.get(call.in_id) if call.in_id is not None else None
            made_inside = settled.get(call.out_id) if call.out_id is not None else None
            if len(found_out) > 1 and made_inside is not None:
                # A container returns what its last child made: that child's layout.
                found_out = [made_inside]
            elif len(found_out) > 1 and inherited is not None and call.in_shape == call.out_shape:
                # A shape-keeping module (an activation after a convolution) keeps its input's
                # layout where the shape alone cannot tell (C equals a side).
                found_out = [inherited]
            if len(found_out) == 1 and call.out_id is not None:
                settled[call.out_id] = found_out[0]
            call.in_area = _area(found_in)
            call.out_layouts = tuple(found_out)
            call.out_area = _area(found_out) if call.out_shape is not None else None
            if call.out_shape is not None and call.out_area is None:
                call.out_area = 0
            call.out_fixed = (
                other is not None
                and bool(found_out)
                and call.out_shape == other.out_shape
                and call.in_shape != other.in_shape
            )
    return calls, other_calls, keep_alive + other_alive
