"""Which layers to explain: resolving the user's choice, or finding SISE's layers automatically.

SISE visualises the feature map that *enters* each down-sampling stage (pooling or stride-2
block), shallow to deep, plus the last 4-D feature map before global pooling. Rather than keep a
table per architecture, :func:`discover_layers` finds them from one traced forward pass:

1. Record every module call: its input and output resolution, and which tensor object it returned.
2. Walk the module tree from the root. A module whose calls (its own and its descendants') see
   exactly two resolutions, the larger one at its input, is a *down-sampling stage*; a module
   spanning more resolutions is split into its children; one spanning a single resolution is
   skipped. Global pooling (a 4-D map in, a 1×1 or flat output) counts as a stage.
3. Each stage's input tensor is named by the outermost module that returned that very tensor
   object (the last to finish), so ResNet's stage input is ``layer1``, not ``layer1.2.relu``.
4. When the model pools functionally (``x.mean((2, 3))`` in ``forward``), the last 4-D map is
   added if the first flat layer consumes exactly its channels.

This gives ``features.3, 8, 15, 22, 29`` for torchvision VGG16 and ``relu, layer1..layer4`` for
ResNet-50 (the tests check both), and works for timm and user CNNs.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sise.errors import SiseError

LayerSpec = str | nn.Module


def resolve_layers(model: nn.Module, layers: Sequence[LayerSpec]) -> list[tuple[str, nn.Module]]:
    """Turn names or modules into ``(name, module)`` pairs of ``model``, with clear errors."""
    if isinstance(layers, str | nn.Module):
        layers = [layers]
    named = dict(model.named_modules())
    by_identity = {id(module): name for name, module in named.items()}
    resolved: list[tuple[str, nn.Module]] = []
    for layer in layers:
        if isinstance(layer, nn.Module):
            name = by_identity.get(id(layer))
            if name is None:
                raise SiseError(
                    f"the module {type(layer).__name__} passed as a layer is not part of the model"
                )
            resolved.append((name, layer))
        elif isinstance(layer, str):
            if layer not in named:
                close = difflib.get_close_matches(layer, [n for n in named if n], n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise SiseError(
                    f"the model has no layer named {layer!r}{hint} "
                    "(list them with dict(model.named_modules()).keys())"
                )
            resolved.append((layer, named[layer]))
        else:
            raise SiseError(f"a layer is a name or an nn.Module, got {type(layer).__name__}")
    if not resolved:
        raise SiseError("no layers given: pass at least one layer name or module")
    return resolved


@dataclass
class _Call:
    order: int
    name: str
    in_area: int | None  # spatial area of a 4-D input, None if the input is not spatial
    out_area: int | None  # spatial area of a 4-D output, 0 for a flat one, None for no tensor
    in_id: int | None
    out_id: int | None
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None


def _first_tensor(args: object) -> Tensor | None:
    if isinstance(args, Tensor):
        return args
    if isinstance(args, tuple | list):
        for arg in args:
            if isinstance(arg, Tensor):
                return arg
    return None


def _trace_calls(model: nn.Module, example: Tensor) -> tuple[list[_Call], list[Tensor]]:
    """Every module call of one forward pass, in the order the calls finish."""
    calls: list[_Call] = []
    keep_alive: list[Tensor] = []  # ids are only unique while the tensors live
    handles = []

    def hook_for(name: str):  # noqa: ANN202 - a torch hook
        def hook(module: nn.Module, args: object, output: object) -> None:
            x = _first_tensor(args)
            y = output if isinstance(output, Tensor) else None
            keep_alive.extend(t for t in (x, y) if t is not None)
            calls.append(
                _Call(
                    order=len(calls),
                    name=name,
                    in_area=None,
                    out_area=None,
                    in_id=id(x) if x is not None else None,
                    out_id=id(y) if y is not None else None,
                    in_shape=tuple(x.shape) if x is not None else None,
                    out_shape=tuple(y.shape) if y is not None else None,
                )
            )

        return hook

    try:
        for name, module in model.named_modules():
            handles.append(module.register_forward_hook(hook_for(name)))
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return calls, keep_alive


def _spatial_area(shape: tuple[int, ...] | None, other: tuple[int, ...] | None) -> int | None:
    """Area of a 4-D shape's spatial dims: those that change when the input size changes.

    Comparing two traces at different input sizes tells NCHW from NHWC (ConvNeXt's blocks, say)
    without guessing. With no second trace, the layout is taken to be NCHW.
    """
    if shape is None:
        return None
    if len(shape) != 4:
        return 0
    if other is None or len(other) != 4 or other == shape:
        return shape[2] * shape[3]
    area = 1
    for dim in range(1, 4):
        if shape[dim] != other[dim]:
            area *= shape[dim]
    return area


def _traced_calls(model: nn.Module, example: Tensor) -> tuple[list[_Call], list[Tensor]]:
    calls, keep_alive = _trace_calls(model, example)
    larger = torch.nn.functional.interpolate(example, scale_factor=2.0, mode="nearest")
    try:
        other_calls, _ = _trace_calls(model, larger)
    except Exception:  # a fixed-size model (flatten into a Linear): assume NCHW
        other_calls = []
    if [c.name for c in other_calls] != [c.name for c in calls]:
        other_calls = []
    for index, call in enumerate(calls):
        other = other_calls[index] if other_calls else None
        call.in_area = _spatial_area(call.in_shape, other.in_shape if other else None)
        if call.in_area == 0:
            call.in_area = None
        call.out_area = _spatial_area(call.out_shape, other.out_shape if other else None)
    return calls, keep_alive


def discover_layers(model: nn.Module, example: Tensor) -> list[str]:
    """Names of SISE's layers for ``model``, shallow to deep, found by tracing ``example``.

    Args:
        model: the CNN (run in whatever mode it is in; callers use eval mode).
        example: one model-ready input, (1, C, H, W).

    Raises:
        SiseError: if the model produces no spatial feature map that enters a down-sampling stage.
    """
    calls, _keep_alive = _traced_calls(model, example)
    call_counts: dict[str, int] = {}
    for call in calls:
        call_counts[call.name] = call_counts.get(call.name, 0) + 1
    names = [name for name, _ in model.named_modules()]
    children: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        if name:
            parent = name.rsplit(".", 1)[0] if "." in name else ""
            children.setdefault(parent, []).append(name)
    by_module: dict[str, list[_Call]] = {}
    for call in calls:
        by_module.setdefault(call.name, []).append(call)

    def subtree_calls(name: str) -> list[_Call]:
        prefix = name + "."
        return [c for c in calls if c.name == name or not name or c.name.startswith(prefix)]

    stage_inputs: list[_Call] = []  # the stage calls whose input we want

    def visit(name: str) -> None:
        own = by_module.get(name, [])
        if not own:
            return
        if len(own) == 1 and own[0].in_area is not None:
            out_area = own[0].out_area
            # 1x1 maps inside a block are squeeze-excitation gates, not a resolution of the path
            areas = {own[0].in_area, out_area} | {
                c.out_area for c in subtree_calls(name) if c.out_area is not None and c.out_area > 1
            }
            areas.discard(None)
            if len(areas) <= 1:
                return
            if len(areas) == 2 and out_area is not None and out_area < own[0].in_area:
                # Pooling to 1x1 mid-network is squeeze-excitation, not the final global pooling.
                if out_area > 1 or not any(
                    c.order > own[0].order and (c.out_area or 0) > 1 for c in calls
                ):
                    stage_inputs.append(own[0])
                return
        for child in children.get(name, []):
            visit(child)

    visit("")

    # The module that returned a tensor object: the last single-call module to finish with it.
    producer: dict[int, _Call] = {}
    for call in calls:
        if call.out_id is not None and call_counts[call.name] == 1 and call.name:
            producer[call.out_id] = call

    selected: list[_Call] = []
    for stage in sorted(stage_inputs, key=lambda c: c.order):
        made_by = producer.get(stage.in_id) if stage.in_id is not None else None
        if made_by is None or made_by.out_area in (None, 0, 1):
            continue  # the model's own input, or not a spatial map
        if all(made_by.name != s.name for s in selected):
            selected.append(made_by)

    # A model that pools functionally: add the last 4-D map if the first flat layer reads
    # exactly its channels (global pooling) rather than its flattened pixels (VGG's classifier).
    spatial = [
        c for c in calls if c.out_area not in (None, 0, 1) and c.name and call_counts[c.name] == 1
    ]
    if spatial:
        last = max(spatial, key=lambda c: c.order)
        last_id = last.out_id
        last_producer = producer.get(last_id) if last_id is not None else None
        if last_producer is not None and all(last_producer.out_id != s.out_id for s in selected):
            channels = last_producer.out_shape[1] if last_producer.out_shape else None
            flat_after = [
                c for c in calls if c.order > last.order and c.in_area is None and c.in_shape
            ]
            if flat_after and flat_after[0].in_shape and flat_after[0].in_shape[-1] == channels:
                selected.append(last_producer)

    if not selected:
        raise SiseError(
            "found no convolutional feature map that enters a down-sampling stage: SISE needs a "
            "CNN with spatial (N, C, h, w) feature maps. Pass layers=[...] explicitly if the model "
            "has them."
        )
    return [c.name for c in sorted(selected, key=lambda c: c.order)]


def check_feature_map(name: str, activation: Tensor) -> None:
    """Raise a clear error unless a layer's output is a (N, C, h, w) feature map."""
    if activation.ndim != 4:
        raise SiseError(
            f"layer {name!r} outputs shape {tuple(activation.shape)}, not a (N, C, h, w) feature "
            "map: choose a convolutional layer"
        )
