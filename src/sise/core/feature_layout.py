"""Where a layer's feature maps lie in its output, and the one conversion to (N, C, h, w).

A CNN layer outputs (N, C, h, w) maps. A transformer's layers do not:

* a token sequence (N, P + h·w, C): ViT and DeiT blocks, P prefix tokens first (the class
  token; DeiT's distillation token; register tokens), then the patches row by row; PVT's blocks
  (P = 0);
* a channels-last grid (N, h, w, C): Swin's stages, the channels-last MLPs of timm's ConvNeXt
  blocks, MaxViT's attention blocks.

Every method reads a layer through a :class:`FeatureLayout`, found once per input size by
:func:`candidate_layouts` from the output's shape and the input's size (H, W), and converts the
layer's activations *and* gradients with :meth:`FeatureLayout.to_maps` (the hooks capture both
in the layer's own layout; the conversion is a permutation and a slice, so the gradient of the
converted map is the converted gradient). A user's ``reshape=`` callable (pytorch-grad-cam's
``reshape_transform``) replaces the discovery for the cases it cannot settle.

How the layout is read. The feature map of a network is the input down-sampled by one stride s
on both sides, so its (h, w) is (⌊H/s⌋ or ⌈H/s⌉, ⌊W/s⌋ or ⌈W/s⌉) for an integer s
(:func:`grid_fit`). A 4-D output is (N, C, h, w) when its last two sides fit that and
(N, h, w, C) when its middle two do; when neither does it is
read as PyTorch's (N, C, h, w) (neither), or is ambiguous (both: a module that keeps the shape
of a settled input takes its layout, see :mod:`sise.core.tracing`). A trace at a second input size settles it outright: the sides
that change with the input are the spatial ones. A 3-D output (N, T, C) is a token grid when
``T − P = h·w`` for a grid that fits, with P the model's ``num_prefix_tokens`` (timm's models
say it) or, without it, the P in 0..8 whose grid fits best (an exact stride beats a rounded
one); two P that fit equally well are ambiguous, and a method asked to explain such a layer
refuses with an error that asks for ``reshape=``. With a second trace at twice the size, T
becomes ``P + 4·h·w``, which gives P exactly. A 3-D output whose first side is not the batch
(Swin's windows, (N·windows, tokens, C); a sequence-first (T, N, C) layout) is not a map.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from sise.errors import SiseError

#: A user's conversion of a layer's output to (N, C, h, w) maps, e.g. ``lambda t: t[:, 1:]
#: .reshape(t.shape[0], 14, 14, -1).permute(0, 3, 1, 2)`` for a ViT-B/16 at 224 px.
Reshape = Callable[[Tensor], Tensor]
LayoutKind = Literal["nchw", "nhwc", "tokens", "custom"]

#: The most prefix tokens tried when the model does not say how many it has (class,
#: distillation and up to 4 register tokens fit, with room to spare).
MAX_PREFIX = 8


@dataclass(frozen=True)
class FeatureLayout:
    """How (N, C, h, w) feature maps lie in one layer's output.

    Attributes:
        kind: ``"nchw"`` (as is), ``"nhwc"`` (channels last), ``"tokens"`` ((N, P + h·w, C),
            row-major patches after P prefix tokens) or ``"custom"`` (the user's ``reshape``).
        height, width: the map's (h, w) (0 when unknown: ``"custom"``).
        prefix: P, the prefix tokens left out of the map (``"tokens"`` only).
        reshape: the user's callable (``"custom"`` only).
    """

    kind: LayoutKind
    height: int = 0
    width: int = 0
    prefix: int = 0
    reshape: Reshape | None = None

    @property
    def area(self) -> int:
        """h·w, the map's number of positions."""
        return self.height * self.width

    def to_maps(self, tensor: Tensor, name: str = "layer") -> Tensor:
        """The layer's output (or its gradient, of the same shape) as (N, C, h, w) maps."""
        if self.kind == "nchw":
            return tensor
        if self.kind == "nhwc":
            return tensor.permute(0, 3, 1, 2).contiguous()
        if self.kind == "tokens":
            n, _, channels = tensor.shape
            grid = tensor[:, self.prefix :].reshape(n, self.height, self.width, channels)
            return grid.permute(0, 3, 1, 2).contiguous()
        assert self.reshape is not None
        maps = self.reshape(tensor)
        if not isinstance(maps, Tensor) or maps.ndim != 4:
            got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
            raise SiseError(
                f"reshape= turned layer {name!r}'s output {tuple(tensor.shape)} into {got}, not "
                "(N, C, h, w) feature maps"
            )
        return maps

    def describe(self) -> str:
        """A short description, for messages: ``"tokens: 1 prefix + 14x14"``."""
        if self.kind == "tokens":
            return f"tokens: {self.prefix} prefix + {self.height}x{self.width}"
        if self.kind == "custom":
            return "the reshape= callable"
        return f"{self.kind}: {self.height}x{self.width}"


def custom_layout(reshape: Reshape) -> FeatureLayout:
    """The layout of a user's ``reshape=`` callable, checked to be callable."""
    if not callable(reshape):
        raise SiseError(
            f"reshape= must be a function from a layer's output to (N, C, h, w) maps, got "
            f"{type(reshape).__name__}"
        )
    return FeatureLayout("custom", reshape=reshape)


def _side_fits(side: int, full: int, stride: int) -> bool:
    return side in (full // stride, -(-full // stride))


def grid_fit(height: int, width: int, input_size: tuple[int, int]) -> int:
    """How well an (h, w) grid fits an (H, W) input down-sampled by one integer stride s.

    2: exactly (``H = s·h`` and ``W = s·w``); 1: up to rounding (h is ⌊H/s⌋ or ⌈H/s⌉, w
    likewise, for one s); 0: not at all (a side larger than the input's, or no common s).
    """
    full_h, full_w = input_size
    if not (1 <= height <= full_h and 1 <= width <= full_w):
        return 0
    if full_h % height == 0 and full_w % width == 0 and full_h // height == full_w // width:
        return 2
    # h = ⌊H/s⌋ or ⌈H/s⌉ only for s between H/(h+1) and H/(h-1)
    low = max(1, full_h // (height + 1))
    high = full_h // max(height - 1, 1) + 1
    for stride in range(low, high + 1):
        if _side_fits(height, full_h, stride) and _side_fits(width, full_w, stride):
            return 1
    return 0


def _token_grids(count: int, input_size: tuple[int, int]) -> tuple[int, list[tuple[int, int]]]:
    """The best fit of ``count`` tokens as an (h, w) grid of more than one position, and the
    grids that reach it."""
    if count < 2:
        return 0, []
    best, grids = 0, []
    for height in range(1, count + 1):
        if count % height:
            continue
        fit = grid_fit(height, count // height, input_size)
        if fit > best:
            best, grids = fit, [(height, count // height)]
        elif fit == best and fit:
            grids.append((height, count // height))
    return best, grids


def is_channels_first(module: nn.Module | None) -> bool:
    """Whether a module's output is (N, C, h, w) by construction: PyTorch's convolutions,
    batch norms and poolings."""
    return isinstance(
        module,
        nn.modules.conv._ConvNd
        | nn.modules.batchnorm._BatchNorm
        | nn.modules.pooling._MaxPoolNd
        | nn.modules.pooling._AvgPoolNd
        | nn.modules.pooling._AdaptiveAvgPoolNd
        | nn.modules.pooling._AdaptiveMaxPoolNd,
    )


def candidate_layouts(
    shape: tuple[int, ...],
    input_size: tuple[int, int],
    *,
    batch: int,
    other_shape: tuple[int, ...] | None = None,
    other_input_size: tuple[int, int] | None = None,
    prefix: int | None = None,
    channels_first: bool = False,
) -> list[FeatureLayout]:
    """The layouts an output of ``shape`` can have, best first (see the module docstring).

    Args:
        shape: the output's shape on an input of ``input_size`` (H, W) and ``batch`` images.
        other_shape, other_input_size: the same output on a second input size, if the model
            takes one.
        prefix: the model's number of prefix tokens, when it says.
        channels_first: the module makes (N, C, h, w) outputs (:func:`is_channels_first`).

    Returns:
        ``[]``: not a spatial map (flat, a batch that is not the images', no grid that fits);
        one layout: settled; several: ambiguous (token counts only).
    """
    if len(shape) not in (3, 4) or shape[0] != batch:
        return []
    other = other_shape if other_shape is not None and len(other_shape) == len(shape) else None
    if other == shape:
        other = None
    if len(shape) == 4:
        _, a, b, c = shape
        first = FeatureLayout("nchw", b, c)
        if other is not None:
            changed = {dim for dim in (1, 2, 3) if shape[dim] != other[dim]}
            if changed <= {2, 3} or not changed <= {1, 2}:
                return [first]
            return [FeatureLayout("nhwc", a, b)]
        if channels_first:
            return [first]
        last_fit, first_fit = grid_fit(a, b, input_size), grid_fit(b, c, input_size)
        if last_fit > first_fit:
            return [FeatureLayout("nhwc", a, b)]
        if last_fit == first_fit > 0:  # C equals a side: either reading fits
            return [first, FeatureLayout("nhwc", a, b)]
        return [first]
    _, tokens, channels = shape
    if other is not None and other_input_size is not None and other[2] == channels:
        ratio = (other_input_size[0] * other_input_size[1]) / (input_size[0] * input_size[1])
        solved = (ratio * tokens - other[1]) / (ratio - 1) if ratio != 1 else -1.0
        if solved == int(solved) and 0 <= solved < tokens and prefix in (None, int(solved)):
            _, grids = _token_grids(tokens - int(solved), input_size)
            return [FeatureLayout("tokens", h, w, int(solved)) for h, w in grids[:1]]
        return []
    choices = [prefix] if prefix is not None else range(min(MAX_PREFIX, tokens - 2) + 1)
    best = 0
    layouts: list[FeatureLayout] = []
    for count in choices:
        fit, grids = _token_grids(tokens - count, input_size)
        found = [FeatureLayout("tokens", h, w, count) for h, w in grids]
        if fit > best:
            best, layouts = fit, found
        elif fit == best and fit:
            layouts.extend(found)
    return layouts


def model_prefix_tokens(model: nn.Module) -> int | None:
    """The model's own count of prefix tokens (timm's ``num_prefix_tokens``), if it says."""
    count = getattr(model, "num_prefix_tokens", None)
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def settled_layout(
    name: str, shape: tuple[int, ...], candidates: list[FeatureLayout]
) -> FeatureLayout:
    """The one layout of layer ``name``, or a :class:`SiseError` that says what to pass."""
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise SiseError(
            f"layer {name!r} outputs shape {shape}, not a (N, C, h, w) feature map, a token "
            "sequence (N, tokens, C) or a channels-last grid (N, h, w, C) of this input: choose "
            "a convolutional or transformer-block layer, or pass reshape= (a function from the "
            "layer's output to (N, C, h, w) maps)"
        )
    readings = "; ".join(layout.describe() for layout in candidates)
    raise SiseError(
        f"cannot tell how layer {name!r}'s output {shape} holds its feature maps ({readings}): "
        "pass reshape= (a function from the layer's output to (N, C, h, w) maps, as "
        "pytorch-grad-cam's reshape_transform)"
    )
