"""What ``sise explain`` and ``sise compare`` read: the photo, the class names and the model
(by any name :func:`sise.models.loading.load_model` takes), and the top-5 they print."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from sise.errors import SiseError
from sise.images import load_image, sample_image_path
from sise.models.loading import DEMO_MODEL, LoadedModel, load_model


def image_path(args: argparse.Namespace) -> Path:
    """The (first) photo the command names, or the bundled cat photo."""
    image = getattr(args, "image", None)
    if image is None and getattr(args, "images", None):
        image = args.images[0]
    return Path(image) if image else sample_image_path("chelsea")


def read_class_names(path: Path) -> list[str]:
    """``--classes``: one class name per line, blank lines left out."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise SiseError(
            f"--classes {str(path)!r} {what}: give a text file with one class name per line"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SiseError(f"could not read --classes {str(path)!r}: {error}") from error
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise SiseError(f"--classes {str(path)!r} holds no class names: write one per line")
    return names


def load_model_from_args(args: argparse.Namespace) -> LoadedModel:
    """The model ``--model``, ``--checkpoint``, ``--num-classes``, ``--classes``, ``--device``
    and ``--size`` ask for."""
    names = read_class_names(Path(args.classes)) if args.classes else None
    if args.checkpoint and not args.model:
        raise SiseError("--checkpoint needs --model to say which architecture the weights fit")
    name = args.model or DEMO_MODEL
    try:
        loaded = load_model(
            name,
            args.checkpoint,
            num_classes=args.num_classes,
            class_names=names,
            device=args.device,
            input_size=(args.size, args.size),
        )
    except OSError as error:  # urllib's URLError, Hugging Face's hub errors: no download
        raise SiseError(
            f"could not get the pretrained weights of {name!r} ({error}). Without internet, pass "
            f"--checkpoint FILE with the weights, or use the offline demo model {DEMO_MODEL!r}"
        ) from error
    return loaded


def load_photo_and_model(
    args: argparse.Namespace,
) -> tuple[LoadedModel, str, torch.Tensor, np.ndarray]:
    """The model, and the one photo of ``sise compare`` (read first: a bad photo fails fast)."""
    path = image_path(args)
    rgb = load_image(path)
    loaded = load_model_from_args(args)
    return loaded, str(path), loaded.preprocess(rgb), rgb


def print_predictions(loaded: LoadedModel, inputs: torch.Tensor, score: str | None) -> None:
    """The model's top-5 classes for the photo, with their sigmoid or softmax scores."""
    with torch.no_grad():
        logits = loaded.model(inputs)[0]
    probs = logits.sigmoid() if score == "sigmoid" else logits.softmax(dim=0)
    top = probs.topk(min(5, probs.numel()))
    print("top-5 predictions:")
    for rank, (p, i) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True), 1):
        print(f"  {rank}. {loaded.class_names[i]:<30} {p:.3f}  (class {i})")
