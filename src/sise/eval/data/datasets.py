"""What the benchmark needs of a dataset (:class:`Dataset`), and the ``--dataset KIND[:PATH]``
argument that names one (:func:`load_dataset`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sise.errors import SiseError
from sise.eval.data.coco import COCODetection2014
from sise.eval.data.pairs import EvalImage, EvalPair
from sise.eval.data.synthetic import synthetic_dataset
from sise.eval.data.voc import VOCDetection2007
from sise.eval.digest import digest

if TYPE_CHECKING:
    from sise.models.loading import LoadedModel

__all__ = [
    "DATASET_KINDS",
    "NEEDS_MODEL",
    "Dataset",
    "dataset_kind",
    "load_dataset",
    "select_pairs",
]


class Dataset(Protocol):
    """What the benchmark needs of a dataset: its evaluation pairs, in a fixed order, and its
    images. :class:`~sise.eval.data.voc.VOCDetection2007` and
    :class:`~sise.eval.data.coco.COCODetection2014` are such datasets.

    Attributes:
        class_names: the class of each model output, in index order.
    """

    @property
    def class_names(self) -> Sequence[str]: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> EvalPair: ...

    def __iter__(self) -> Iterator[EvalPair]: ...

    def images(self) -> list[EvalImage]:
        """Every image, in order, with the classes of its pairs."""
        ...


#: The dataset kinds of ``--dataset KIND[:PATH]``, with the names each kind also answers to.
DATASET_KINDS: dict[str, tuple[str, ...]] = {
    "voc": ("voc", "voc2007"),
    "coco": ("coco", "coco2014"),
    "synthetic": ("synthetic",),
    "photos": ("photos",),
}

#: Kinds whose pairs depend on the model (its classes, its predictions): load the model first.
NEEDS_MODEL: frozenset[str] = frozenset({"photos"})


def dataset_kind(spec: str) -> str:
    """The kind (``voc``, ``coco``, ``synthetic`` or ``photos``) a ``--dataset`` names."""
    name = spec.partition(":")[0].strip().lower()
    for kind, names in DATASET_KINDS.items():
        if name in names:
            return kind
    raise SiseError(
        f"unknown dataset {spec!r}: use voc2007:PATH, coco2014:PATH, synthetic[:PATH] or "
        "photos[:PATH]"
    )


def load_dataset(
    spec: str, split: str | None = None, *, loaded: LoadedModel | None = None
) -> tuple[str, Dataset, dict[str, str]]:
    """A ``--dataset`` argument as ``(kind, dataset, identity)``.

    * ``voc2007:PATH``: :class:`VOCDetection2007` (split ``test`` by default);
    * ``coco2014:PATH``: :class:`COCODetection2014` (split ``val2014``, without masks);
    * ``synthetic[:PATH]``: the synthetic shapes in the VOC layout; without a path, or with a
      path that holds no dataset yet, the held-out split of the data the shipped synthetic models
      were trained on is generated (:func:`sise.eval.data.synthetic.synthetic_dataset`);
    * ``photos[:PATH]``: photos labelled for an ImageNet model
      (:func:`sise.eval.data.photos.photo_dataset`); needs ``loaded``, the model.

    ``identity`` describes the data in the run configuration, so a benchmark resumes only on the
    same data: the folder and split, or for the generated synthetic data their content.
    """
    kind = dataset_kind(spec)
    path = spec.partition(":")[2]
    if kind == "voc":
        if not path:
            raise SiseError("--dataset voc2007 needs the folder: voc2007:PATH/TO/VOCdevkit")
        voc = VOCDetection2007(path, split or "test")
        return "voc", voc, {"kind": "voc2007", "root": str(voc.root.resolve()), "split": voc.split}
    if kind == "coco":
        if not path:
            raise SiseError("--dataset coco2014 needs the folder: coco2014:PATH/TO/COCO")
        if not Path(path).is_dir():
            raise SiseError(f"no COCO dataset folder at {path}: check the path")
        split = split or "val2014"
        coco = COCODetection2014(path, split, with_masks=False)
        return "coco", coco, {"kind": "coco2014", "root": str(Path(path).resolve()), "split": split}
    if kind == "photos":
        if loaded is None:
            raise SiseError("--dataset photos needs the model: pass loaded= to load_dataset")
        from sise.eval.data.photos import photo_dataset  # only this kind needs it

        photos, identity = photo_dataset(path or None, loaded)
        return "photos", photos, identity
    root = Path(path) if path else None
    has_data = root is not None and (
        (root / "Annotations").is_dir() or (root / "VOC2007" / "Annotations").is_dir()
    )
    if root is None or not has_data:
        root = synthetic_dataset(root)
    synthetic = VOCDetection2007(root, split or "test")
    return (
        "synthetic",
        synthetic,
        {"kind": "synthetic", "content": _content_digest(synthetic), "split": synthetic.split},
    )


def _content_digest(dataset: VOCDetection2007) -> str:
    """CRC-32s of the class list, the split file and the first image: generated data are the
    same wherever they are written, so they are identified by content, not by path."""
    classes = dataset.root / "classes.txt"
    split_file = dataset.root / "ImageSets" / "Main" / f"{dataset.split}.txt"
    files = (
        classes.read_bytes() if classes.is_file() else b"",
        split_file.read_bytes(),
        dataset[0].image_path.read_bytes(),
    )
    return "".join(digest([content], "crc32") for content in files)


def select_pairs(dataset: Dataset, limit: int | None) -> list[EvalPair]:
    """The pairs of the first ``limit`` images of the split (all their classes), in order."""
    if limit is not None and limit < 1:
        raise SiseError(f"--limit must be >= 1, got {limit}")
    images = dataset.images()
    keep = {image.image_id for image in (images if limit is None else images[:limit])}
    pairs = [pair for pair in dataset if pair.image_id in keep]
    if not pairs:
        raise SiseError("the selected images have no ground-truth class to explain")
    return pairs
