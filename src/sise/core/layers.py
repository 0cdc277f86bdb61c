"""Which layers to explain: resolving the user's choice, or finding SISE's layers automatically.

SISE visualises the feature map that *enters* each down-sampling stage (pooling or stride-2
block), shallow to deep, plus the last 4-D feature map before global pooling. Rather than keep a
table per architecture, :func:`discover_layers` finds them from one traced forward pass:

1. Record every module call: its input and output resolution, and which tensor object it returned.
2. Walk the module tree from the root. A module called once whose calls (its own and its
   descendants') see exactly two resolutions, the larger one at its input, is a *down-sampling
   stage* (maps larger than its input, from "same"-padding modules, do not count); any other module is split into its children, whether it ran or not, so blocks held
   in an ``nn.ModuleList`` or ``nn.ModuleDict`` (iterated by the parent's ``forward``, never
   called themselves) are found like those of an ``nn.Sequential``. A module spanning a single
   resolution is skipped. Global pooling (a 4-D map in, a 1×1 or flat output) counts as a stage.
3. Each stage's input tensor is named by the outermost module that returned that very tensor
   object (the last to finish), so ResNet's stage input is ``layer1``, not ``layer1.2.relu``.
   When that module runs several times per forward pass (one activation module shared by the
   whole network), the name says which call: ``"_swish@16"`` (see :func:`split_call`).
4. When the model pools functionally (``x.mean((2, 3))`` in ``forward``), the last 4-D map is
   added if the first flat layer consumes exactly its channels.

Resolutions are read in every layout (:mod:`sise.core.feature_layout`): a (N, C, h, w) map, a
channels-last (N, h, w, C) grid (Swin) or a token sequence (N, P + h·w, C) (ViT, PVT), so Swin's,
ConvNeXt's, PVT's and MaxViT's stages are found like a CNN's, each layer with the layout its
maps are read in (:func:`discover_with_layouts`). An adaptive pooling to a fixed grid larger
than 1×1 (VGG16's 7×7 pool, on a non-square input) is not a stage: it resizes the map for a
classifier that reads its pixels. A model with no down-sampling stage but a run of identical
blocks (a plain ViT: every block at the patch grid's resolution) gets evenly spaced blocks
(:func:`plain_block_indices`).

This gives ``features.3, 8, 15, 22, 29`` for torchvision VGG16 and ``relu, layer1..layer4`` for
ResNet-50 (the tests check both), and works for timm and user CNNs.

A model in which no down-sampling stage is found (all pooling done functionally, say) is
refused rather than explained with the last feature map alone, and inputs so small that a
feature map shrinks to 1×1 get a warning: the stages after it have no spatial map to show.
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from sise.core.feature_layout import FeatureLayout, Reshape, custom_layout, settled_layout
from sise.core.tracing import Call, traced_calls
from sise.errors import SiseError

LayerSpec = str | nn.Module


def split_call(name: str) -> tuple[str, int | None]:
    """``"blocks.3@2"`` → ``("blocks.3", 2)``; a name without ``@k`` → ``(name, None)``.

    A module that runs several times in one forward pass (a shared activation module, a block
    applied in a loop) has one output per call. ``"name@k"`` selects the ``k``-th call, counted
    from 0 in the order the calls finish; ``@-1`` is the last. A plain name means the last call,
    and the capture warns when such a layer ran more than once.
    """
    module_name, at, index = name.rpartition("@")
    if at and module_name and index.lstrip("-").isdigit():
        return module_name, int(index)
    return name, None


def resolve_layers(model: nn.Module, layers: Sequence[LayerSpec]) -> list[tuple[str, nn.Module]]:
    """Turn names or modules into ``(name, module)`` pairs of ``model``, with clear errors.

    A name may select one call of a module that runs several times: ``"name@k"``
    (:func:`split_call`).
    """
    if isinstance(layers, str | nn.Module):
        layers = [layers]
    if not isinstance(layers, Iterable):
        raise SiseError(
            f"layers must be a list of layer names or modules, e.g. ['layer1', 'layer2'], got "
            f"{layers!r} ({type(layers).__name__})"
        )
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
            module_name = split_call(layer)[0]
            if module_name not in named:
                close = difflib.get_close_matches(module_name, [n for n in named if n], n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise SiseError(
                    f"the model has no layer named {module_name!r}{hint} "
                    "(list them with dict(model.named_modules()).keys())"
                )
            resolved.append((layer, named[module_name]))
        else:
            raise SiseError(f"a layer is a name or an nn.Module, got {type(layer).__name__}")
    if not resolved:
        raise SiseError("no layers given: pass at least one layer name or module")
    return resolved


def _is_spatial_map(call: Call) -> bool:
    """Whether a call outputs a feature map of the network's path: more than 1x1, and not a
    padded copy of its input (TF-style "same" padding modules enlarge the map a little)."""
    if call.out_area is None or call.out_area <= 1:
        return False
    return call.in_area is None or call.out_area <= call.in_area


def _channels(call: Call) -> int | None:
    """How many channels a call's output map has, in its own layout."""
    if not call.out_shape or not call.out_layouts:
        return None
    return call.out_shape[1] if call.out_layouts[0].kind == "nchw" else call.out_shape[-1]


@dataclass
class _Found:
    call: Call
    name: str  # "module" or "module@k" for one call of a module that runs several times
    enters_stage: bool  # it enters a down-sampling stage that keeps a spatial map (not GAP)


def _find_layers(model: nn.Module, calls: list[Call]) -> list[_Found]:
    """Steps 2-4 of the module docstring on one trace."""
    call_counts: dict[str, int] = {}
    call_number: dict[int, int] = {}  # call order -> which call of its module it is
    for call in calls:
        call_number[call.order] = call_counts.get(call.name, 0)
        call_counts[call.name] = call_number[call.order] + 1
    names = [name for name, _ in model.named_modules()]
    children: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        if name:
            parent = name.rsplit(".", 1)[0] if "." in name else ""
            children.setdefault(parent, []).append(name)
    by_module: dict[str, list[Call]] = {}
    for call in calls:
        by_module.setdefault(call.name, []).append(call)

    def subtree_calls(name: str) -> list[Call]:
        prefix = name + "."
        return [c for c in calls if c.name == name or not name or c.name.startswith(prefix)]

    stage_inputs: list[Call] = []  # the stage calls whose input we want

    def visit(name: str) -> None:
        own = by_module.get(name, [])
        if len(own) == 1 and own[0].in_area is not None:
            in_area, out_area = own[0].in_area, own[0].out_area
            # 1x1 maps inside a block are squeeze-excitation gates, and maps larger than the
            # block's input are "same" padding (TF-style padding modules): neither is a
            # resolution of the path.
            areas = {in_area, out_area} | {
                c.out_area
                for c in subtree_calls(name)
                if c.out_area is not None and 1 < c.out_area <= in_area
            }
            areas.discard(None)
            if len(areas) <= 1:
                return
            if own[0].out_fixed and (out_area or 0) > 1:
                # An adaptive pooling to a fixed grid (VGG's 7x7 avgpool on a non-square input)
                # resizes the map for a classifier that reads its pixels: not a stage.
                return
            if len(areas) == 2 and out_area is not None and out_area < in_area:
                # Pooling to 1x1 mid-network is squeeze-excitation, not the final global pooling.
                if out_area > 1 or not any(
                    c.order > own[0].order and _is_spatial_map(c) for c in calls
                ):
                    stage_inputs.append(own[0])
                return
        # Split into children, also when this module never ran itself: an nn.ModuleList or
        # nn.ModuleDict is iterated by its parent's forward, and only its children are called.
        for child in children.get(name, []):
            visit(child)

    visit("")

    # The module that returned a tensor object: the last to finish with it, i.e. the outermost.
    producer: dict[int, Call] = {}
    for call in calls:
        if call.out_id is not None and call.name and not call.passes_through:
            producer[call.out_id] = call

    def layer_name(call: Call) -> str:
        if call_counts[call.name] == 1:
            return call.name
        return f"{call.name}@{call_number[call.order]}"

    selected: dict[int, _Found] = {}  # by call order
    for stage in sorted(stage_inputs, key=lambda c: c.order):
        made_by = producer.get(stage.in_id) if stage.in_id is not None else None
        if made_by is None or made_by.out_area in (None, 0, 1):
            continue  # the model's own input, or not a spatial map
        enters = stage.out_area is not None and stage.out_area > 1
        found = selected.setdefault(made_by.order, _Found(made_by, layer_name(made_by), False))
        found.enters_stage |= enters

    if not any(found.enters_stage for found in selected.values()):
        blocks = _plain_blocks(model, children, by_module)
        if blocks:
            return [_Found(call, layer_name(call), True) for call in blocks]

    # A model that pools functionally: add the last 4-D map if the first flat layer reads
    # exactly its channels (global pooling) rather than its flattened pixels (VGG's classifier).
    spatial = [c for c in calls if _is_spatial_map(c) and c.name]
    if spatial:
        last = max(spatial, key=lambda c: c.order)
        last_id = last.out_id
        last_producer = producer.get(last_id) if last_id is not None else None
        if last_producer is not None and all(
            last_producer.out_id != s.call.out_id for s in selected.values()
        ):
            channels = _channels(last_producer)
            flat_after = [
                c for c in calls if c.order > last.order and c.in_area is None and c.in_shape
            ]
            if flat_after and flat_after[0].in_shape and flat_after[0].in_shape[-1] == channels:
                selected[last_producer.order] = _Found(
                    last_producer, layer_name(last_producer), False
                )
    return [selected[order] for order in sorted(selected)]


#: How many blocks SISE visualises in a transformer without down-sampling stages (a plain ViT).
PLAIN_BLOCKS = 4


def plain_block_indices(count: int) -> list[int]:
    """The blocks of a plain ViT that SISE visualises: the ends of the first three quarters of
    the ``count`` blocks and the input of the last block (``count`` = 12: 2, 5, 8, 10).

    The last block's *output* is left out: in a class-token ViT the head reads the class token
    only, which the last block's attention computes from its input, so the patch tokens of the
    last output reach nothing and their gradient is zero (the reason pytorch-grad-cam's
    tutorial explains ``blocks[-1].norm1``).
    """
    if count < 2:
        return []
    last = count - 2
    quarters = {min(math.ceil(j * count / PLAIN_BLOCKS) - 1, last) for j in range(1, PLAIN_BLOCKS)}
    return sorted(quarters | {last})


def _plain_blocks(
    model: nn.Module, children: dict[str, list[str]], by_module: dict[str, list[Call]]
) -> list[Call]:
    """The chosen blocks (:func:`plain_block_indices`) of the longest run of sibling blocks
    (modules with children, of one class, each called once, in order, keeping one map shape):
    a plain ViT's ``blocks``; ``[]`` if there is none."""
    kinds = {name: type(module) for name, module in model.named_modules()}

    def block_call(name: str) -> Call | None:
        own = by_module.get(name, [])
        if len(own) != 1 or not children.get(name):
            return None
        call = own[0]
        keeps_shape = call.in_shape == call.out_shape and (call.out_area or 0) > 1
        return call if keeps_shape else None

    best: list[Call] = []
    for kids in children.values():
        run: list[Call] = []
        for kid in kids:
            call = block_call(kid)
            continues = (
                call is not None
                and bool(run)
                and kinds[kid] is kinds[run[-1].name]
                and call.out_shape == run[-1].out_shape
                and call.order > run[-1].order
            )
            if not continues:
                run = []
            if call is not None:
                run.append(call)
            if len(run) > len(best):
                best = list(run)
    return [best[i] for i in plain_block_indices(len(best))] if len(best) >= 2 else []


def discover_layers(model: nn.Module, example: Tensor, *, require_stage: bool = True) -> list[str]:
    """Names of SISE's layers for ``model``, shallow to deep, found by tracing ``example``.

    The names of :func:`discover_with_layouts`; see there.
    """
    return [found.name for found in _discover(model, example, require_stage)]


def discover_with_layouts(
    model: nn.Module, example: Tensor, *, require_stage: bool = True
) -> list[tuple[str, FeatureLayout]]:
    """SISE's layers for ``model``, shallow to deep, found by tracing ``example``, each with
    the layout of its feature maps (:mod:`sise.core.feature_layout`).

    Args:
        model: the CNN (run in whatever mode it is in; callers use eval mode).
        example: one model-ready input, (1, C, H, W).
        require_stage: refuse a model in which no feature map enters a down-sampling stage
            (only the last map before global pooling is found). SISE fuses one map per stage,
            so it needs at least one; the one-layer methods (Grad-CAM) pass ``False``.

    Returns:
        ``(name, layout)`` pairs; a module that runs several times per forward pass is named
        with the call that produced the map, ``"name@k"`` (:func:`split_call`).

    Raises:
        SiseError: if the model produces no spatial feature map that enters a down-sampling
            stage, or a found layer's layout is ambiguous (pass ``layers=`` and ``reshape=``).

    Warns:
        UserWarning: if a feature map shrinks to 1×1 at this input size but not at twice the
            size: the input is too small for the model's deepest stages, which SISE then leaves
            out.
    """
    return [
        (f.name, settled_layout(f.name, f.call.out_shape or (), list(f.call.out_layouts)))
        for f in _discover(model, example, require_stage)
    ]


def _discover(model: nn.Module, example: Tensor, require_stage: bool) -> list[_Found]:
    """The layers of :func:`discover_with_layouts`, their layouts not yet settled."""
    calls, larger, _keep_alive = traced_calls(model, example)
    found = _find_layers(model, calls)
    if not found:
        raise SiseError(
            "found no convolutional feature map that enters a down-sampling stage: SISE needs a "
            "CNN with spatial (N, C, h, w) feature maps. Pass layers=[...] explicitly if the model "
            "has them."
        )
    if require_stage and not any(f.enters_stage for f in found):
        raise SiseError(
            f"found no down-sampling stage in the model, only its last feature map "
            f"{found[-1].name!r}; SISE fuses the maps that enter each stage and one map alone is "
            "not SISE. If the model down-samples with functions in its forward (F.max_pool2d, "
            "strided slicing), pass the maps that enter those steps as layers=[...]"
        )
    collapsed = [
        call.name
        for call, bigger in zip(calls, larger, strict=False)
        if call.name and call.out_area == 1 and (bigger.out_area or 0) > 1
    ]
    if collapsed:
        height, width = example.shape[-2:]
        warnings.warn(
            f"inputs of {height}x{width} px are too small for this model: its feature map "
            f"{collapsed[0]!r} shrinks to 1x1, so the stages after it have no spatial map and "
            f"SISE uses only {[f.name for f in found]}. Use larger inputs (the size the model "
            "was trained at).",
            stacklevel=2,
        )
    return found


def layer_layouts(
    model: nn.Module,
    layers: Sequence[tuple[str, nn.Module]],
    example: Tensor,
    reshape: Reshape | None = None,
) -> list[FeatureLayout]:
    """The layout of each of ``layers`` (names from :func:`resolve_layers`) on inputs like
    ``example``: the user's ``reshape`` for every layer if given, else read from a traced
    forward pass (:func:`sise.core.feature_layout.candidate_layouts`).

    Raises:
        SiseError: a layer the forward pass does not run, a call ``@k`` it does not make, an
            output that is not a feature map, or one whose layout is ambiguous.
    """
    if reshape is not None:
        return [custom_layout(reshape)] * len(layers)
    calls, _, _keep_alive = traced_calls(model, example)
    layouts = []
    for name, _ in layers:
        module_name, index = split_call(name)
        own = [call for call in calls if call.name == module_name]
        if not own:
            raise SiseError(f"layer {name!r} was not run by the model's forward pass")
        call_index = len(own) - 1 if index is None else index
        if not -len(own) <= call_index < len(own):
            raise SiseError(
                f"layer {name!r} selects call {index}, but {module_name!r} ran {len(own)} "
                f"time(s) in the forward pass: use {module_name}@0..{module_name}@{len(own) - 1}"
            )
        call = own[call_index]
        layouts.append(settled_layout(name, call.out_shape or (), list(call.out_layouts)))
    return layouts


def check_feature_map(name: str, activation: Tensor) -> None:
    """Raise a clear error unless a layer's output is a (N, C, h, w) feature map."""
    if activation.ndim != 4:
        raise SiseError(
            f"layer {name!r} outputs shape {tuple(activation.shape)}, not a (N, C, h, w) feature "
            "map: choose a convolutional layer"
        )


def type_path(module: nn.Module) -> str:
    """The module's class as ``"package.module.Class"`` (tells timm's layers apart without
    importing timm)."""
    return f"{type(module).__module__}.{type(module).__qualname__}"


#: timm's normalisation layers that apply their ``drop`` and ``act`` modules after normalising.
_TIMM_NORM_ACT = ("timm.layers.norm_act.BatchNormAct2d", "timm.layers.norm_act.SyncBatchNormAct")


def norm_act_parts(norm: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """``(drop, act)`` of a timm batch norm that applies them itself (``BatchNormAct2d``,
    ``SyncBatchNormAct``: normalise, then ``drop``, then ``act``), else ``None``.

    Such a layer's output is after its activation: what it normalised is ``drop``'s output.
    """
    if type_path(norm) not in _TIMM_NORM_ACT:
        return None
    drop, act = getattr(norm, "drop", None), getattr(norm, "act", None)
    if isinstance(drop, nn.Module) and isinstance(act, nn.Module):
        return drop, act
    return None
