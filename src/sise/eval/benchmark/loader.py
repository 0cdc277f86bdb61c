"""Reading the pairs ahead of the model: a :class:`torch.utils.data.DataLoader` that reads and
preprocesses the next pairs while the model runs, and hands them over in packs.

Preprocessing: each pair's photo goes through the model's own transform
(:attr:`sise.models.loading.LoadedModel.transform`, which holds no model, so the workers carry
it): the whole photo stretched to the input size for the ImageNet and synthetic models, Caffe's
shorter-side resize for TorchRay's (:mod:`sise.models.preprocessing`). The pair's ground truth is
rasterised at its own input's size.

Throughput: the loader reads in ``workers`` processes (0 reads in the main process), and up to
``pack`` pairs are explained by one method call (every method takes a batch of images with one
target each; SISE then shares its masked-forward batches between the images) and scored
together. A method call takes inputs of one shape, so the ``pack`` pairs read together are split
by input shape (:class:`Pack`, one per shape, in reading order): with the stretch resize every
input has the model's input size and a pack is full; with the shorter-side resize a landscape
and a portrait photo (VOC's 500 × 375 and 375 × 500 become 224 × 298 and 298 × 224) go to
separate calls, and the run hands the pairs over in the order of their input's shape (from the
annotated photo sizes) so that packs stay full. The time of a packed call is shared equally between its pairs. On a CPU the
values equal one-pair-at-a-time runs to float rounding (batched matrix products round
differently; metrics that rank pixels can turn that into a few thousandths of a point). On a GPU
they do not, yet: another batch composition changes TF32 rounding enough to flip some of SISE's
feature-map and gate decisions (measured on an H100, ResNet-50: up to 2.6 points on one pair's
mIoU; see ``benchmarks/results/20261126_benchmark_throughput_h100.txt``), so compare runs made
with the same ``pack``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from sise.eval.benchmark.config import BenchmarkConfig
from sise.eval.data.pairs import EvalPair, gt_mask
from sise.images import load_image
from sise.models.loading import LoadedModel

__all__ = ["CUDA_PACK", "CUDA_WORKERS", "Pack", "pair_loader", "resolve_pack"]

#: Pairs per method call on a GPU when ``pack`` is not given (on a CPU: 1, packing does not pay).
CUDA_PACK = 8
#: DataLoader workers on a GPU when ``workers`` is not given (on a CPU: 0, they compete with the
#: model for the cores).
CUDA_WORKERS = 4


@dataclass
class Pack:
    """Pairs whose inputs have one shape, read and made model-ready, on the CPU: the DataLoader
    hands over a list of them per ``pack`` pairs read (one per input shape)."""

    indices: list[int]
    inputs: Tensor  # (n, C, H, W)
    ground_truth: Tensor  # (n, H, W) bool

    def pin_memory(self) -> Pack:
        return Pack(self.indices, self.inputs.pin_memory(), self.ground_truth.pin_memory())


class _PairReader(TorchDataset):
    """The pairs still to compute, each read from disk and made model-ready on the CPU."""

    def __init__(self, pairs: Sequence[EvalPair], loaded: LoadedModel) -> None:
        self.pairs = list(pairs)
        self.transform = loaded.transform  # not the model: workers get a copy of this object

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[int, Tensor, Tensor]:
        pair = self.pairs[index]
        inputs = self.transform(load_image(pair.image_path))[0]
        height, width = inputs.shape[-2:]
        return index, inputs, gt_mask(pair, height, width)


def _collate(items: list[tuple[int, Tensor, Tensor]]) -> list[Pack]:
    """One :class:`Pack` per input shape, in the order the shapes first come."""
    by_shape: dict[tuple[int, ...], list[tuple[int, Tensor, Tensor]]] = {}
    for item in items:
        by_shape.setdefault(tuple(item[1].shape), []).append(item)
    return [
        Pack(
            [index for index, _, _ in group],
            torch.stack([inputs for _, inputs, _ in group]),
            torch.stack([truth for _, _, truth in group]),
        )
        for group in by_shape.values()
    ]


def pair_loader(
    pairs: Sequence[EvalPair], loaded: LoadedModel, pack: int, workers: int
) -> DataLoader:
    """The pairs, read ``pack`` at a time by ``workers`` processes; each item is a list of
    :class:`Pack` (one per input shape)."""
    return DataLoader(
        _PairReader(pairs, loaded),
        batch_size=pack,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=loaded.device.type == "cuda",
        prefetch_factor=2 if workers > 0 else None,
    )


def resolve_pack(config: BenchmarkConfig, device: torch.device) -> tuple[int, int]:
    on_gpu = device.type == "cuda"
    pack = config.pack if config.pack is not None else (CUDA_PACK if on_gpu else 1)
    if config.workers is not None:
        workers = config.workers
    else:
        workers = min(CUDA_WORKERS, max(0, (os.cpu_count() or 1) // 2)) if on_gpu else 0
    return pack, workers
