"""Reading the pairs ahead of the model: a :class:`torch.utils.data.DataLoader` that reads and
preprocesses the next pairs while the model runs, and hands them over in packs.

Throughput: the loader reads in ``workers`` processes (0 reads in the main process), and up to
``pack`` pairs are explained by one method call (every method takes a batch of images with one
target each; SISE then shares its masked-forward batches between the images) and scored
together. The time of a packed call is shared equally between its pairs. On a CPU the values
equal one-pair-at-a-time runs to float rounding (batched matrix products round differently;
metrics that rank pixels can turn that into a few thousandths of a point). On a GPU they do not,
yet: another batch composition changes TF32 rounding enough to flip some of SISE's feature-map
and gate decisions (measured on an H100, ResNet-50: up to 2.6 points on one pair's mIoU; see
``benchmarks/results/20261126_benchmark_throughput_h100.txt``), so compare runs made with the
same ``pack``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from sise.eval.benchmark.config import BenchmarkConfig
from sise.eval.data.pairs import EvalPair, gt_mask
from sise.images import load_image
from sise.models.loading import LoadedModel

__all__ = ["CUDA_PACK", "CUDA_WORKERS", "Pack", "model_ready", "pair_loader", "resolve_pack"]

#: Pairs per method call on a GPU when ``pack`` is not given (on a CPU: 1, packing does not pay).
CUDA_PACK = 8
#: DataLoader workers on a GPU when ``workers`` is not given (on a CPU: 0, they compete with the
#: model for the cores).
CUDA_WORKERS = 4


@dataclass(frozen=True)
class _Preprocessing:
    """What :meth:`LoadedModel.preprocess` does to a photo, without the model."""

    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def model_ready(rgb: np.ndarray, loaded: LoadedModel | _Preprocessing) -> Tensor:
    """``loaded.preprocess(rgb)`` kept on the CPU (DataLoader workers must not touch the model's
    GPU): the whole photo resized (no crop) and normalised, (1, 3, h, w). A test holds it equal
    to :meth:`LoadedModel.preprocess`."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div_(255)
    x = F.interpolate(x, size=loaded.input_size, mode="bilinear", antialias=True)
    mean = torch.tensor(loaded.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std).view(1, 3, 1, 1)
    return (x - mean) / std


@dataclass
class Pack:
    """Pairs read and made model-ready, on the CPU: what the DataLoader hands over."""

    indices: list[int]
    inputs: Tensor  # (n, C, H, W)
    ground_truth: Tensor  # (n, H, W) bool

    def pin_memory(self) -> Pack:
        return Pack(self.indices, self.inputs.pin_memory(), self.ground_truth.pin_memory())


class _PairReader(TorchDataset):
    """The pairs still to compute, each read from disk and made model-ready on the CPU."""

    def __init__(self, pairs: Sequence[EvalPair], loaded: LoadedModel) -> None:
        self.pairs = list(pairs)
        # not the model: workers get a copy of this object
        self.preprocessing = _Preprocessing(loaded.input_size, loaded.mean, loaded.std)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[int, Tensor, Tensor]:
        pair = self.pairs[index]
        inputs = model_ready(load_image(pair.image_path), self.preprocessing)[0]
        height, width = self.preprocessing.input_size
        return index, inputs, gt_mask(pair, height, width)


def _collate(items: list[tuple[int, Tensor, Tensor]]) -> Pack:
    return Pack(
        [index for index, _, _ in items],
        torch.stack([inputs for _, inputs, _ in items]),
        torch.stack([truth for _, _, truth in items]),
    )


def pair_loader(
    pairs: Sequence[EvalPair], loaded: LoadedModel, pack: int, workers: int
) -> DataLoader:
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
