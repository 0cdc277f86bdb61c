"""The peers SISE is timed against: torch-cam's and pytorch-grad-cam's Score-CAM.

Both are optional imports: a missing one gives ``None`` and a note. Each explains the same layer
(the last spatial feature map, SISE's deepest layer) at the same batch size as this package's
methods. Part of ``benchmarks/speed.py``.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from speed_measure import cudnn_benchmark
from torch import Tensor, nn

from sise.core.layers import resolve_layers
from sise.runtime.allocator import retained_freed_memory

Runner = Callable[[], tuple[Tensor, None, None]]

LABELS = {
    "torchcam": "torch-cam ScoreCAM",
    "torchcam-tune": "torch-cam ScoreCAM, cudnn.benchmark",
    "torchcam-retain": "torch-cam ScoreCAM, freed memory retained",
    "gradcam": "pytorch-grad-cam ScoreCAM",
}


def torchcam_runner(
    model: nn.Module, x: Tensor, targets: Tensor, layer: str, batch: int
) -> Runner | str:
    """torch-cam's ``ScoreCAM(batch_size=batch)``, built and removed inside each run."""
    try:
        from torchcam.methods import ScoreCAM
    except ImportError as error:
        return f"torch-cam skipped (pip install torchcam): {error}"

    def run() -> tuple[Tensor, None, None]:
        extractor = ScoreCAM(model, layer, input_shape=tuple(x.shape[1:]), batch_size=batch)
        try:
            with torch.no_grad():
                model(x)
            cams = extractor(targets.tolist())[0]
        finally:
            extractor.remove_hooks()
        maps = F.interpolate(
            cams[:, None].float(), size=x.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0]
        return maps, None, None

    return run


def gradcam_runner(
    model: nn.Module, x: Tensor, targets: Tensor, layer: str, batch: int
) -> Runner | str:
    """pytorch-grad-cam's ``ScoreCAM`` with ``cam.batch_size = batch`` (its default is 16)."""
    try:
        import pytorch_grad_cam.score_cam as score_cam_module
        from pytorch_grad_cam import ScoreCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError as error:
        return f"pytorch-grad-cam skipped (pip install grad-cam): {error}"
    # Silence its per-image tqdm bars (display only; the loop is unchanged). Only that module's
    # own reference is replaced: patching tqdm.tqdm itself would break every other library that
    # imports tqdm afterwards (huggingface_hub, via timm).
    score_cam_module.tqdm = types.SimpleNamespace(  # type: ignore[assignment]
        tqdm=lambda iterable, *a, **k: iterable
    )
    module = resolve_layers(model, [layer])[0][1]

    def run() -> tuple[Tensor, None, None]:
        with ScoreCAM(model=model, target_layers=[module]) as cam:
            cam.batch_size = batch
            grayscale = cam(
                input_tensor=x,
                targets=[ClassifierOutputTarget(int(t)) for t in targets.tolist()],
            )
        return torch.from_numpy(np.asarray(grayscale)).float(), None, None

    return run


def _torchcam_inside(
    context: Callable[[], contextlib.AbstractContextManager],
) -> Callable[[nn.Module, Tensor, Tensor, str, int], Runner | str]:
    """torch-cam's Score-CAM, each run inside ``context()``."""

    def runner(
        model: nn.Module, x: Tensor, targets: Tensor, layer: str, batch: int
    ) -> Runner | str:
        plain = torchcam_runner(model, x, targets, layer, batch)
        if isinstance(plain, str):
            return plain

        def run() -> tuple[Tensor, None, None]:
            with context():
                return plain()

        return run

    return runner


#: with ``torch.backends.cudnn.benchmark = True``, as a user may set
tuned_torchcam_runner = _torchcam_inside(cudnn_benchmark)
#: inside the malloc settings this package's methods run with on a CPU
#: (:func:`sise.runtime.allocator.retained_freed_memory`): how much of SISE's lead they make
retained_torchcam_runner = _torchcam_inside(retained_freed_memory)


PEERS = {
    "torchcam": torchcam_runner,
    "torchcam-tune": tuned_torchcam_runner,
    "torchcam-retain": retained_torchcam_runner,
    "gradcam": gradcam_runner,
}
