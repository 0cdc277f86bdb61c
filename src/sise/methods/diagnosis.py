"""What went wrong, in the package's words: torch's errors for inputs a model cannot take, and
the reason of a blank map.

Both are found after the fact, by :meth:`sise.methods.base.Explainer.__call__`: the model itself
says which inputs it cannot take (its first convolution names the channels it expects; a pooling
layer says its output would be empty), and a map that is all zero is seen once it is made.
"""

from __future__ import annotations

import math
import re
import warnings

import torch
from torch import Tensor, nn

#: torch's convolution refusing the number of channels: ``expected input[1, 1, 64, 64] to have
#: 3 channels, but got 1 channels instead``.
_CHANNELS = re.compile(
    r"expected input\[(?P<shape>[\d, ]+)\] to have (?P<expected>\d+) channels, "
    r"but got (?P<got>\d+) channels"
)
#: torch's layers refusing a spatial size that leaves nothing: pooling (``Output size is too
#: small``) and a convolution kernel larger than its (padded) input.
_TOO_SMALL = (
    "Output size is too small",
    "Kernel size can't be greater than actual input size",
)
#: The largest square side tried when looking for the smallest input a model takes.
_LARGEST_TRIED = 1024
#: How close to 0 or 1 a probability is saturated: float32 resolves 1 − p only down to ~6e-8.
_SATURATED = 1e-6


def input_shape_problem(model: nn.Module, inputs: Tensor, error: RuntimeError) -> str | None:
    """The message for a model error caused by the inputs' shape, or ``None`` for any other error
    (an error inside the model that is not about the inputs is the model's own, and is left as
    it is).

    A channel error counts only when the tensor torch names has the inputs' channels and at
    least their size (a masked batch of them, or them padded): a mismatch deeper in the model,
    on a smaller map or another number of channels, is a bug of the model.
    """
    text = str(error)
    found = _CHANNELS.search(text)
    if found:
        shape = tuple(int(part) for part in found["shape"].split(","))
        expected, got = int(found["expected"]), int(found["got"])
        # the inputs, or the inputs padded ("same" padding: timm's EfficientNets)
        if (
            len(shape) != 4
            or got != inputs.shape[1]
            or any(a < b for a, b in zip(shape[2:], inputs.shape[2:], strict=True))
        ):
            return None
        if got == 1 and expected == 3:
            advice = (
                "repeat a grayscale image's channel with inputs.expand(-1, 3, -1, -1), or read "
                "photos with sise.images.load_image (always RGB)"
            )
        elif got == 4 and expected == 3:
            advice = (
                "drop the alpha channel with inputs[:, :3], or read photos with "
                "sise.images.load_image (alpha composited onto white)"
            )
        else:
            advice = f"give it {expected}-channel images"
        return (
            f"the model takes {expected}-channel images but the inputs have {got} channel"
            f"{'s' if got != 1 else ''} (shape {tuple(inputs.shape)}): {advice}"
        )
    if any(fragment in text for fragment in _TOO_SMALL):
        height, width = inputs.shape[-2:]
        smallest = smallest_square_input(model, inputs)
        hint = (
            f"this model needs at least {smallest}x{smallest} px"
            if smallest is not None
            else "give larger images"
        )
        detail = text.strip().splitlines()[0]
        return (
            f"inputs of {height}x{width} px are too small for this model: one of its layers "
            f"would have an empty output ({detail}); {hint} (best: the size it was trained at)"
        )
    return None


def smallest_square_input(model: nn.Module, inputs: Tensor) -> int | None:
    """The smallest square side the model runs on, above the inputs' size (``None``: none up to
    :data:`_LARGEST_TRIED`, or the model fails for another reason): sides doubled until a
    forward pass works, then bisected.

    Runs the model without gradients on zero images of one sample; the caller holds it in eval
    mode (:func:`sise.core.hooks.explaining`), so no batch-norm statistic changes.
    """

    class Unknown(Exception):
        """The model fails at a size for another reason (e.g. it takes one size only)."""

    def runs(side: int) -> bool:
        try:
            with torch.no_grad():
                model(inputs.new_zeros((1, inputs.shape[1], side, side)))
        except RuntimeError as error:
            if any(fragment in str(error) for fragment in _TOO_SMALL):
                return False
            raise Unknown from error
        return True

    failing = max(int(inputs.shape[-2]), int(inputs.shape[-1]))
    working = None
    try:
        side = failing
        while side < _LARGEST_TRIED:
            side = min(2 * side, _LARGEST_TRIED)
            if runs(side):
                working = side
                break
            failing = side
        if working is None:
            return None
        while working - failing > 1:
            middle = (working + failing) // 2
            if runs(middle):
                working = middle
            else:
                failing = middle
    except Unknown:
        return None
    return working


def warn_blank_maps(
    method: str, maps: Tensor, scores: Tensor, targets: Tensor, score: str, stacklevel: int
) -> None:
    """Warn, with the likely reason, when a map is all zero: it shows nothing.

    The reason named first is a saturated probability (the explained class's softmax or sigmoid
    rounds to 1 or 0 in floating point): its gradient then vanishes, and so do its changes under
    masking, so a gradient or masking method has nothing to show. The raw logit does not
    saturate. This costs one wait on the device per call (to learn whether a map is blank).
    """
    blank = maps.flatten(1).amax(dim=1) <= 0
    if not bool(blank.any()):
        return
    rows = blank.nonzero().flatten().tolist()
    which = f"input {rows[0]}" if len(rows) == 1 else f"inputs {rows}"
    saturated = [
        float(scores[row])
        for row in rows
        if score in ("softmax", "sigmoid")
        and int(targets[row]) >= 0  # a class target: its score is this kind
        and not _SATURATED < float(scores[row]) < 1 - _SATURATED
    ]
    if saturated:
        reason = (
            f"the {score} of the explained class is saturated ({saturated[0]:.9g}), so its "
            "gradient and its change under masking vanish in floating point; explain the raw "
            "class score with score='logit' (command line: --score logit)"
        )
    else:
        reason = (
            "the explained score did not respond to the input (zero gradients, or the same "
            "score for every masked input) or every contribution was negative and clipped; "
            "check that the model's output depends on the input, or try score='logit', "
            "another layer or another method"
        )
    warnings.warn(
        f"{method}: the map of {which} is all zero and shows nothing: {reason}",
        stacklevel=stacklevel + 1,
    )


def warn_small_for_masks(
    height: int, width: int, sigma: float, areas: list[float], stacklevel: int
) -> None:
    """Warn when Extremal Perturbation's masks cannot be as small as the areas asked for.

    A mask's smallest plateau is a disc of diameter σ (its flat-top kernel is flat out to σ/2),
    about π(σ/2)² px. When that is more than the largest area asked for, no mask can meet its
    area: the regulariser drives the masks down and the map shows little or nothing (all zero
    on 24-px images with the defaults, which are sized for 224 px).
    """
    plateau, largest = math.pi * (sigma / 2) ** 2, max(areas) * height * width
    if plateau <= largest:
        return
    scale = min(height, width) / 224
    warnings.warn(
        f"ExtremalPerturbation: {height}x{width} px images are too small for sigma={sigma:g} "
        f"px: a mask's smallest plateau covers about {plateau:.0f} px, more than the largest "
        f"area asked for ({max(areas):g} of the image = {largest:.0f} px), so the masks cannot "
        "meet their areas and the map shows little or nothing. Scale the pixel sizes to the "
        f"image (here about step={max(1, round(7 * scale))}, sigma={21 * scale:.3g}, "
        f"blur_sigma={20 * scale:.3g}: the defaults x size/224; command line: --option "
        "extremal.sigma=...) or explain larger images",
        stacklevel=stacklevel + 1,
    )
