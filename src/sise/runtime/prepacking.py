"""Convolution weights reordered once for oneDNN, for the masked forwards on a CPU.

An eager ``nn.Conv2d`` on a CPU gives oneDNN its weight in PyTorch's layout, and oneDNN reorders
it into its own blocked layout at every call: ResNet-18's 45 MB of weights are read and written
again for every batch of masked inputs. Inside :func:`prepacked_convolutions`, each plain
convolution reorders its weight once per input size (any batch size then takes it;
``torch.ops.mkldnn._reorder_convolution_weight``) and convolves with the reordered copy
(``torch.ops.mkldnn._convolution_pointwise``): what ``torch.compile``'s CPU freezing pass does,
without compiling. On these 2 CPU cores, batch 32, folded batch norms, channels-last inputs, ms
per image, plain against prepacked (``benchmarks/cpu_layouts.py``,
``benchmarks/results/20261126-2208_cpu_layouts.txt``): at 64 px ResNet-18 1.29 → 0.82, ResNet-50
2.34 → 2.00, DenseNet-121 1.64 → 1.52, EfficientNet-Lite0 0.46 → 0.39; at 160-224 px the gain is
within this machine's noise (ResNet-18 at 224 px 10.9 → 8.8, but DenseNet-121 27.7 → 32.0 in one
run and 38.0 → 32.1 in the next). The outputs are those of the plain convolution, to float
rounding (the same oneDNN arithmetic; bit for bit on ResNet-18).

Where a convolution's batch norm is folded into it (:func:`sise.runtime.folding.folded_norms`) and that
batch norm is timm's ``BatchNormAct2d`` with a plain activation (ReLU, ReLU6, SiLU, Hardswish,
GELU, ...: :data:`_POST_OPS`; no dropout, no hooks), oneDNN applies the activation as it writes
the convolution's output, and the batch norm's forward is the identity meanwhile: one pass over
the activations less. SISE on the real EfficientNet-Lite0 (ReLU6) at 224 px: 1.83 → 1.68 s a call,
the same maps; timm's MobileNetV3-Large (Hardswish, ReLU, random init) 1.49 → 1.45 s; nothing
at 64 px.

Only exact ``nn.Conv2d`` modules with zero padding given as numbers and no hooks are prepacked;
the packed path runs only for 4-D float32 channels-last CPU inputs without autocast or gradient
(oneDNN's output is channels-last, as the plain convolution's is for such inputs), otherwise (and
where oneDNN refuses a shape) the module's own forward runs. Like :mod:`sise.runtime.folding` (whose
folded weights this packs when both are active, folding outside), the first use on a model
compares its output with the plain model's on one input and never prepacks a model where they
disagree, and on exit each convolution is exactly as it was: nothing is stored on the user's
modules but an instance ``forward`` for the duration of the block. Not thread-safe.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from sise.runtime.folding import activation_after, folded_norms, identity, rewrite_allowed

#: Per model: whether prepacking gave the plain outputs on the first example it was tried on.
_CHECKED: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def _available() -> bool:
    mkldnn = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(mkldnn, "_reorder_convolution_weight")
        and hasattr(mkldnn, "_convolution_pointwise")
    )


def _packable(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and conv.padding_mode == "zeros"
        and isinstance(conv.padding, tuple)
        and "forward" not in vars(conv)
        and not conv._forward_hooks
        and not conv._forward_pre_hooks
    )


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled()


def _takes_packed(conv: nn.Conv2d, x: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        # oneDNN's output is channels-last whatever the input: take only inputs whose plain
        # convolution's output is channels-last too, so later layers see what they would see
        and x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()
        and x.dtype == torch.float32
        and conv.weight.dtype == torch.float32
        and not _cpu_autocast()
        and not (torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad))
    )


#: oneDNN's post-op for an activation module: ``(attr, scalars, algorithm)`` of
#: ``_convolution_pointwise`` (exact types: a subclass may compute something else).
_POST_OPS: dict[type[nn.Module], Callable[[Any], tuple[str, list[float], str]]] = {
    nn.ReLU: lambda act: ("relu", [], ""),
    nn.ReLU6: lambda act: ("hardtanh", [0.0, 6.0], ""),
    nn.Hardtanh: lambda act: ("hardtanh", [float(act.min_val), float(act.max_val)], ""),
    nn.LeakyReLU: lambda act: ("leaky_relu", [float(act.negative_slope)], ""),
    nn.SiLU: lambda act: ("swish", [], ""),
    nn.Hardswish: lambda act: ("hardswish", [], ""),
    nn.Sigmoid: lambda act: ("sigmoid", [], ""),
    nn.Tanh: lambda act: ("tanh", [], ""),
    nn.Hardsigmoid: lambda act: ("hardsigmoid", [], ""),
    nn.GELU: lambda act: ("gelu", [], act.approximate),
}


def _packed_forward(conv: nn.Conv2d, act: nn.Module | None = None) -> Callable[[Tensor], Tensor]:
    """``conv``'s forward with a prepacked weight, followed by ``act`` (an activation in
    :data:`_POST_OPS`, applied by oneDNN as the convolution writes its output)."""
    conv_forward = nn.Conv2d.forward.__get__(conv)
    plain = conv_forward if act is None else lambda x: act(conv_forward(x))
    attr, scalars, algorithm = ("none", [], "") if act is None else _POST_OPS[type(act)](act)
    padding, stride = list(conv.padding), list(conv.stride)
    dilation, groups = list(conv.dilation), conv.groups
    # one reordered weight per input size (any batch size takes it); None where oneDNN refused
    packed: dict[torch.Size, Tensor | None] = {}

    def forward(x: Tensor) -> Tensor:
        if not _takes_packed(conv, x):
            return plain(x)
        size = x.shape[1:]
        if size not in packed:
            try:
                packed[size] = torch.ops.mkldnn._reorder_convolution_weight(
                    conv.weight.detach(), padding, stride, dilation, groups, list(x.shape)
                )
            except RuntimeError:
                packed[size] = None
        weight = packed[size]
        if weight is None:
            return plain(x)
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, conv.bias, padding, stride, dilation, groups, attr, scalars, algorithm
        )

    return forward


@contextlib.contextmanager
def prepacked_convolutions(model: nn.Module, example: Tensor | None = None) -> Iterator[nn.Module]:
    """Inside the block, ``model``'s plain convolutions run with oneDNN-prepacked weights on a CPU.

    With ``example`` (one model-ready input), the first use on a model checks the packed output
    against the plain one (:func:`sise.runtime.folding.rewrite_allowed`); a model that fails is never
    prepacked. The weights are packed at each convolution's first call
    in the block, so a weight swapped in before that (a folded batch norm) is the one packed.
    Re-entrant: a convolution already patched is left alone.
    """
    if not _available():
        yield model
        return
    # the packed path takes channels-last inputs only: check it on one
    if example is not None:
        example = example.contiguous(memory_format=torch.channels_last)
    if not rewrite_allowed(_CHECKED, model, example, lambda: _patched(model)):
        yield model
        return
    with _patched(model):
        yield model


@contextlib.contextmanager
def _patched(model: nn.Module) -> Iterator[None]:
    patched: list[nn.Module] = []
    # batch norms whose activation moved into their convolution, with the forward they had
    moved: list[tuple[nn.Module, Callable | None]] = []
    norms = folded_norms(model)
    try:
        for module in model.modules():
            if not _packable(module):
                continue
            assert isinstance(module, nn.Conv2d)
            norm = norms.get(module)
            act = None if norm is None else activation_after(norm)
            if act is not None and type(act) in _POST_OPS:
                assert norm is not None
                moved.append((norm, vars(norm).get("forward")))
                norm.forward = identity
            else:
                act = None
            module.forward = _packed_forward(module, act)  # type: ignore[method-assign,assignment]
            patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward
        for norm, forward in moved:
            if forward is None:
                del norm.forward
            else:
                norm.forward = forward
