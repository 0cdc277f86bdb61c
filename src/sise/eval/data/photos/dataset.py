"""The photo set read as one model's dataset: the (image, class) pairs that the model is confident
about, the filter's probabilities cached per model."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from sise.errors import SiseError
from sise.eval.data.pairs import EvalImage, EvalPair, PairList
from sise.eval.data.photos.cache import photo_set, set_digest
from sise.eval.data.photos.render import PHOTO_SET, PhotoSetSpec
from sise.eval.data.voc import VOCDetection2007
from sise.eval.digest import digest, tensor_bytes
from sise.models.loading import LoadedModel, imagenet_class_names

__all__ = ["MIN_PROBABILITY", "PhotoDataset", "class_probabilities", "photo_dataset"]

MIN_PROBABILITY = 0.25
"""A pair is kept when the model's softmax probability of its class is at least this."""


def _weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the state dict's names and values, in its order."""
    return digest(
        chunk
        for name, tensor in model.state_dict().items()
        for chunk in (name.encode(), tensor_bytes(tensor))
    )


def class_probabilities(
    loaded: LoadedModel, pairs: Sequence[EvalPair], *, batch_size: int = 32
) -> np.ndarray:
    """The softmax probability of each pair's class on its whole image, as the benchmark feeds it.

    Args:
        loaded: the model (left in the mode it is in; no gradients are taken).
        pairs: the (image, class) pairs.
        batch_size: images per forward pass.

    Returns:
        (len(pairs),) float64 array.
    """
    from sise.images import load_image

    by_image: dict[Path, list[int]] = {}
    for k, pair in enumerate(pairs):
        by_image.setdefault(pair.image_path, []).append(k)
    paths = list(by_image)
    out = np.zeros(len(pairs))
    with torch.no_grad():
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            inputs = torch.cat([loaded.preprocess(load_image(p)) for p in chunk])
            probabilities = loaded.model(inputs).float().softmax(dim=1).cpu().numpy()
            for row, path in enumerate(chunk):
                for k in by_image[path]:
                    out[k] = probabilities[row, pairs[k].class_index]
    return out


class PhotoDataset(PairList):
    """The photo set's (image, class) pairs that one model is confident about.

    Same protocol as :class:`~sise.eval.data.voc.VOCDetection2007` (``len``, indexing,
    iteration, ``class_names``, ``images()``, ``root``, ``split``). Its ``class_names`` are the
    1,000 ImageNet names (torchvision's, as :func:`sise.models.loading.imagenet_class_names`), so a class
    index is an ImageNet index.

    Attributes:
        probabilities: the model's softmax probability of each kept pair's class.
        total_pairs: how many pairs the set has before filtering.
    """

    def __init__(
        self,
        voc: VOCDetection2007,
        keep: Sequence[int],
        probabilities: Sequence[float],
    ) -> None:
        names = imagenet_class_names()
        self.root = voc.root
        self.split = voc.split
        self.class_names: list[str] = names
        self.total_pairs = len(voc)
        self._pairs = [
            dataclasses.replace(voc[k], class_name=names[voc[k].class_index]) for k in keep
        ]
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        kept_by_image: dict[str, list[int]] = {}
        for pair in self._pairs:
            kept_by_image.setdefault(pair.image_id, []).append(pair.class_index)
        self._images = [
            EvalImage(image.image_id, image.image_path, tuple(kept_by_image[image.image_id]))
            for image in voc.images()
            if image.image_id in kept_by_image
        ]


def photo_dataset(
    root: str | Path | None,
    loaded: LoadedModel,
    *,
    min_probability: float = MIN_PROBABILITY,
    spec: PhotoSetSpec = PHOTO_SET,
) -> tuple[PhotoDataset, dict[str, str]]:
    """The photo set, filtered for ``loaded``, and its identity for the benchmark's resume hash.

    The set is generated on first use (:func:`photo_set`); the filter (:func:`class_probabilities`
    ≥ ``min_probability``) runs once per model and is cached next to the set, under a key made of
    the model's name, input size, normalisation and a digest of its weights.

    Args:
        root: where to keep sets (default: the cache, see :func:`photo_set`).
        loaded: an ImageNet classifier (1,000 outputs).
        min_probability: the least softmax probability of a kept pair's class.
        spec: the generator's settings (default: :data:`PHOTO_SET`, the benchmark's set).

    Returns:
        ``(dataset, identity)``: identity holds ``kind`` (``"photos"``), ``content`` (the set's
        content digest), ``split``, ``model``, ``weights``, ``input_size``, ``filter`` and
        ``pairs`` (kept / total), all strings.

    Raises:
        SiseError: the model does not have 1,000 outputs, or it is confident about no pair.
    """
    if len(loaded.class_names) != 1000:
        raise SiseError(
            f"the photo set's classes are ImageNet's, but {loaded.name} has "
            f"{len(loaded.class_names)} outputs: use an ImageNet model such as efficientnet_lite0"
        )
    if not 0.0 < min_probability < 1.0:
        raise SiseError(f"min_probability must lie in (0, 1), got {min_probability}")
    folder = photo_set(root, spec)
    content = set_digest(folder)
    voc = VOCDetection2007(folder, "test")
    weights = _weights_digest(loaded.model)
    model = [loaded.name, list(loaded.input_size), list(loaded.mean), list(loaded.std), weights]
    model_key = digest([json.dumps(model).encode()])[:16]
    cache = folder / "filters" / f"{model_key}.json"
    probabilities: list[float] | None = None
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("content") == content and len(cached.get("probabilities", [])) == len(voc):
            probabilities = [float(p) for p in cached["probabilities"]]
    if probabilities is None:
        probabilities = class_probabilities(loaded, list(voc)).tolist()
        cache.parent.mkdir(exist_ok=True)
        staging = cache.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(
            json.dumps({"content": content, "model": loaded.name, "probabilities": probabilities})
        )
        os.replace(staging, cache)
    keep = [k for k, p in enumerate(probabilities) if p >= min_probability]
    if not keep:
        raise SiseError(
            f"{loaded.name} gives no pair of the photo set a probability of at least "
            f"{min_probability}: it does not recognise these ImageNet classes"
        )
    dataset = PhotoDataset(voc, keep, [probabilities[k] for k in keep])
    identity = {
        "kind": "photos",
        "content": content[:16],
        "split": dataset.split,
        "model": loaded.name,
        "weights": weights[:16],
        "input_size": "x".join(map(str, loaded.input_size)),
        "filter": f"softmax>={min_probability:g}",
        "pairs": f"{len(dataset)}/{dataset.total_pairs}",
    }
    return dataset, identity
