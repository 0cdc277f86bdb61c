"""Train the small multi-label CNNs shipped as ``sise/data/synthetic_{vgg,resnet}.pt``.

Data: the synthetic shapes dataset of :data:`sise.eval.benchmark.models.SYNTHETIC_DATA` (generated on the fly,
seeded), ``train`` split for training, the held-out ``test`` split for the reported numbers.
Loss: binary cross-entropy with logits (one sigmoid per class, multi-label). CPU, seeded.

    python benchmarks/train_synthetic.py                 # both models, writes src/sise/data/
    python benchmarks/train_synthetic.py --arch vgg --epochs 4 --out /tmp/weights

Reports per model: test mAP (mean over classes of the average precision), per-label accuracy and
exact-match accuracy at a 0.5 sigmoid threshold, the training time and the weights' size.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from sise.eval.benchmark.models import (
    SYNTHETIC_ARCHS,
    SYNTHETIC_DATA,
    build_synthetic_model,
    synthetic_dataset,
)
from sise.eval.data import VOCDetection2007
from sise.models.loading import IMAGENET_MEAN, IMAGENET_STD

DATA_DIR = Path(__file__).resolve().parents[1] / "src" / "sise" / "data"


def load_split(root: Path, split: str) -> tuple[Tensor, Tensor, list[str]]:
    """Images as a (N, 3, H, W) uint8 tensor and labels as a (N, K) float multi-hot tensor."""
    dataset = VOCDetection2007(root, split)
    images = dataset.images()
    pixels = np.stack([np.asarray(Image.open(image.image_path).convert("RGB")) for image in images])
    labels = torch.zeros(len(images), len(dataset.class_names))
    for row, image in enumerate(images):
        labels[row, list(image.class_indices)] = 1.0
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), labels, dataset.class_names


def normalise(batch: Tensor) -> Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch.float() / 255 - mean) / std


def average_precision(scores: Tensor, labels: Tensor) -> float:
    """Non-interpolated AP: the mean precision at the rank of each positive."""
    order = scores.argsort(descending=True)
    hits = labels[order]
    if hits.sum() == 0:
        return float("nan")
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


@torch.no_grad()
def evaluate(model: nn.Module, images: Tensor, labels: Tensor) -> dict[str, float]:
    model.eval()
    logits = torch.cat([model(normalise(images[i : i + 256])) for i in range(0, len(images), 256)])
    probs = logits.sigmoid()
    aps = [average_precision(probs[:, k], labels[:, k]) for k in range(labels.shape[1])]
    predicted = probs > 0.5
    return {
        "mAP": float(np.nanmean(aps)),
        "label_accuracy": float((predicted == labels.bool()).float().mean()),
        "exact_match": float((predicted == labels.bool()).all(dim=1).float().mean()),
        "per_class_AP": aps,  # type: ignore[dict-item]
    }


def train(
    arch: str,
    train_set: tuple[Tensor, Tensor],
    test_set: tuple[Tensor, Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> tuple[nn.Module, dict[str, float]]:
    torch.manual_seed(seed)
    images, labels = train_set
    model = build_synthetic_model(arch, labels.shape[1])
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for step in range(len(images) // batch_size):
            index = order[step * batch_size : (step + 1) * batch_size]
            batch = normalise(images[index])
            loss = F.binary_cross_entropy_with_logits(model(batch), labels[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach())
        metrics = evaluate(model, *test_set)
        print(
            f"  {arch} epoch {epoch + 1}/{epochs}: train loss {total / (step + 1):.4f}, "
            f"test mAP {metrics['mAP']:.4f}, exact match {metrics['exact_match']:.3f} "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    metrics = evaluate(model, *test_set)
    metrics["train_seconds"] = time.perf_counter() - start
    return model.eval(), metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=[*SYNTHETIC_ARCHS, "all"], default="all")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", help="dataset folder (default: the cache; generated if absent)")
    parser.add_argument("--out", default=str(DATA_DIR), help="folder for synthetic_<arch>.pt")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    root = synthetic_dataset(args.data)
    print(f"data: {root} ({SYNTHETIC_DATA})")
    train_images, train_labels, classes = load_split(root, "train")
    test_images, test_labels, _ = load_split(root, "test")
    print(f"train {len(train_images)} images, test {len(test_images)} images, classes {classes}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    for arch in SYNTHETIC_ARCHS if args.arch == "all" else [args.arch]:
        model, metrics = train(
            arch,
            (train_images, train_labels),
            (test_images, test_labels),
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
        )
        path = out / f"synthetic_{arch}.pt"
        torch.save(model.state_dict(), path)
        metrics["bytes"] = path.stat().st_size
        report[arch] = metrics
        print(
            f"{arch}: test mAP {metrics['mAP']:.4f}, label accuracy "
            f"{metrics['label_accuracy']:.4f}, exact match {metrics['exact_match']:.4f}, "
            f"{metrics['train_seconds']:.0f} s, {path} ({metrics['bytes'] / 1e6:.2f} MB)"
        )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
