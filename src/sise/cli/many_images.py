"""Explaining many image files in one run: inputs, outputs, resume and ``results.jsonl``.

``sise explain`` takes files, folders and glob patterns. Each image gets, in the output folder,
its overlay ``<stem>_<method>.png`` (and SISE's layer panel ``<stem>_<method>_layers.png``),
with ``--save-maps`` its raw maps ``<stem>_<method>.npz``, and one JSON line in
``results.jsonl``::

    {"image": "/abs/photos/cat.jpg", "model": "efficientnet_lite0", "method": "sise",
     "class_index": 285, "class_name": "Egyptian cat", "score": 0.82, "score_kind": "softmax",
     "forward_passes": 1093, "seconds": 4.1, "overlay": "cat_sise.png", ...,
     "settings": {...}, "finished": "2026-01-01T12:00:00+00:00"}

A line is appended only after the image's files are written, and an image is skipped when a
line with the same image and settings exists and its files are all there: a run that stops (a
crash, Ctrl-C, ``kill -9``) continues where it stopped. Every file is written atomically
(:func:`sise.viz.write_atomically`), and no output may be one of the inputs.

Images of one call are batched (``pack`` per method call): every image is resized to the model's
input size, so they always stack. ``seconds`` is the call's time divided by its images.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sise.errors import SiseError
from sise.images import load_image
from sise.methods.base import Explainer, Explanation
from sise.models.loading import LoadedModel

#: An image ready to explain: its file, its outputs, its pixels and its model input.
_Ready = tuple[Path, "ImageOutputs", np.ndarray, torch.Tensor]

#: File types a folder is scanned for.
INPUT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm")
#: The metadata file in the output folder.
RESULTS_FILE = "results.jsonl"
_GLOB_CHARACTERS = set("*?[")


def is_pattern(spec: str) -> bool:
    """Whether an input names several files: a glob pattern that is not itself a file."""
    return bool(_GLOB_CHARACTERS & set(spec)) and not Path(spec).exists()


def names_many(specs: Sequence[str]) -> bool:
    """Whether the inputs are a run over many images: several, a folder or a pattern."""
    return len(specs) > 1 or any(Path(s).is_dir() or is_pattern(s) for s in specs)


def _is_own_output(path: Path, methods: Iterable[str]) -> bool:
    """A picture or map this command writes (``x_sise.png``, ``x_sise_layers.png``)."""
    stem = path.stem.removesuffix("_layers")
    return any(stem.endswith(f"_{method}") for method in methods)


def expand_inputs(
    specs: Sequence[str], out_dir: Path | None = None, methods: Iterable[str] = ()
) -> list[Path]:
    """The image files that files, folders and glob patterns name, in order, without repeats.

    A folder gives its image files (:data:`INPUT_SUFFIXES`, not recursive, sorted by name); in
    the output folder itself, the pictures this command wrote (``*_<method>.png``) are left
    out, so a rerun does not explain its own outputs. A pattern (``photos/*.jpg``,
    ``**/*.png``) gives the files it matches, sorted.

    Raises:
        SiseError: an input does not exist, a pattern matches no file, or a folder holds no
            image file.
    """
    found: list[Path] = []
    methods = list(methods)
    out = out_dir.resolve() if out_dir is not None else None
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            own_outputs = out is not None and path.resolve() == out
            files = sorted(
                p
                for p in path.iterdir()
                if p.is_file()
                and p.suffix.lower() in INPUT_SUFFIXES
                and not p.name.startswith(".")
                and not (own_outputs and _is_own_output(p, methods))
            )
            if not files:
                raise SiseError(
                    f"the folder {spec!r} holds no image file ({', '.join(INPUT_SUFFIXES)})"
                )
            found.extend(files)
        elif path.exists():
            found.append(path)
        elif is_pattern(spec):
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True))
            files = [p for p in matches if p.is_file()]
            if not files:
                raise SiseError(f"the pattern {spec!r} matches no file")
            found.extend(files)
        else:
            raise SiseError(f"image file {spec!r} does not exist: check the path")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


@dataclass(frozen=True)
class ImageOutputs:
    """Where one image's results go."""

    overlay: Path
    panel: Path | None = None
    maps: Path | None = None

    def paths(self) -> list[Path]:
        return [p for p in (self.overlay, self.panel, self.maps) if p is not None]


def plan_outputs(
    images: Sequence[Path], out_dir: Path, method: str, *, panel: bool, save_maps: bool
) -> list[ImageOutputs]:
    """One :class:`ImageOutputs` per image in ``out_dir``, named after the image's file.

    Two images with the same file name in different folders (``a/x.jpg``, ``b/x.jpg``) get
    their folder's name in front (``a_x_sise.png``), and a number if that is not enough.
    """
    stems = [image.stem for image in images]
    if len(set(stems)) < len(stems):
        stems = [
            f"{image.parent.name}_{image.stem}" if stems.count(image.stem) > 1 else image.stem
            for image in images
        ]
    seen: dict[str, int] = {}
    plans = []
    for stem in stems:
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        name = f"{stem}-{count + 1}" if count else stem
        base = out_dir / f"{name}_{method}"
        plans.append(
            ImageOutputs(
                overlay=base.with_name(base.name + ".png"),
                panel=base.with_name(base.name + "_layers.png") if panel else None,
                maps=base.with_name(base.name + ".npz") if save_maps else None,
            )
        )
    return plans


def _jsonable(value: object) -> object:
    """``value`` as JSON sees it (so that settings compare equal after a round trip)."""
    return json.loads(json.dumps(value, default=str))


class ResultsLog:
    """``results.jsonl``: one JSON object per explained image, appended as images finish.

    One run at a time writes into a folder: :meth:`locked` holds an exclusive lock on
    ``.results.jsonl.lock`` beside it for the whole run (the system frees it when the run ends,
    even by ``kill -9``, so a killed run never blocks the next).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict] = []
        self._read()

    def _read(self) -> None:
        self.records = []
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: that image is done again
                if isinstance(record, dict):
                    self.records.append(record)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock (or refuse at once: another run holds it), mend a last line
        cut short by a killed run and read the records again (another run may have added some
        before the lock was taken)."""
        from sise.cli.folder_lock import folder_lock

        with folder_lock(self.path.with_name(f".{self.path.name}.lock"), self.path.parent):
            self._mend_tail()
            self._read()
            yield

    def _mend_tail(self) -> None:
        """A last line without its newline (a run killed while writing it) would swallow the
        next record appended to it: cut it off, or end it where it is whole JSON."""
        try:
            with self.path.open("rb+") as handle:
                data = handle.read()
                if not data or data.endswith(b"\n"):
                    return
                cut = data.rfind(b"\n") + 1
                try:
                    whole = isinstance(json.loads(data[cut:]), dict)
                except ValueError:
                    whole = False
                if whole:
                    handle.write(b"\n")
                else:
                    handle.truncate(cut)
                    print(
                        f"sise: {self.path}: removed its last line, cut short by a run that was "
                        "stopped while writing it; that image is explained again",
                        file=sys.stderr,
                    )
                handle.flush()
                os.fsync(handle.fileno())
        except FileNotFoundError:
            return
        except OSError as error:
            raise SiseError(f"could not repair {str(self.path)!r}: {error}") from error

    def is_done(self, image: Path, settings: object, outputs: ImageOutputs) -> bool:
        """Whether ``image`` was explained with these settings and its files are all there."""
        key = str(image.resolve())
        settings = _jsonable(settings)
        wanted = {"overlay": outputs.overlay, "panel": outputs.panel, "maps": outputs.maps}
        for record in self.records:
            if record.get("image") != key or record.get("settings") != settings:
                continue
            written = [record.get(field) for field, path in wanted.items() if path is not None]
            if all(
                isinstance(name, str) and (self.path.parent / name).is_file() for name in written
            ):
                return True
        return False

    def append(self, record: dict) -> None:
        """Add one line (one ``write`` of a whole line, flushed to the disk)."""
        line = json.dumps(_jsonable(record), ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise SiseError(f"could not write {str(self.path)!r}: {error}") from error
        self.records.append(json.loads(line))


def save_maps(path: Path, explanation: Explanation, index: int) -> Path:
    """The raw maps of image ``index`` as a ``.npz`` file, written atomically.

    Arrays: ``map`` (H, W) float32 in [0, 1] at the model's input size; ``class_index``;
    ``score``; for SISE also ``layer_maps`` (L, H, W), ``kept_maps`` (L,) and ``layer_names``.
    """
    from sise.methods.sise import SISEExplanation
    from sise.viz import write_atomically

    arrays: dict[str, Any] = {
        "map": explanation.maps[index].detach().float().cpu().numpy(),
        "class_index": np.asarray(int(explanation.targets[index])),
        "score": np.asarray(float(explanation.scores[index])),
    }
    if isinstance(explanation, SISEExplanation):
        arrays["layer_maps"] = explanation.layer_maps[index].detach().float().cpu().numpy()
        arrays["kept_maps"] = explanation.kept_maps[index].cpu().numpy()
        arrays["layer_names"] = np.asarray(explanation.layer_names)
    return write_atomically(
        path, lambda temporary: np.savez_compressed(temporary, **arrays), (".npz",)
    )


@dataclass
class RunSummary:
    """How a run over many images went."""

    explained: int = 0
    skipped: int = 0
    failed: int = 0


def _report_failure(image: Path, error: Exception) -> None:
    from tqdm.auto import tqdm

    message = str(error)
    where = "" if str(image) in message else f"{image}: "
    tqdm.write(f"sise: error: {where}{message}", file=sys.stderr)


def explain_images(
    explainer: Explainer,
    loaded: LoadedModel,
    images: Sequence[Path],
    plans: Sequence[ImageOutputs],
    *,
    target: int | None,
    log: ResultsLog,
    settings: dict[str, object],
    pack: int = 1,
    progress: bool = True,
    write_pictures: Callable[[Path, np.ndarray, Explanation, int, ImageOutputs], None],
) -> RunSummary:
    """Explain every image that is not done yet, ``pack`` images per method call. Call it holding
    the output folder's lock (``with log.locked():``, :meth:`ResultsLog.locked`), so a second run
    into the same folder at the same time is refused, not left to explain every image again.

    A file that cannot be read, an explanation that fails with a :class:`SiseError` and an
    output that cannot be written are reported on stderr, one line each, and the run goes on.

    Args:
        explainer: the method, built for ``loaded.model``.
        loaded: the model and its preprocessing.
        images: the image files.
        plans: where each image's results go.
        target: the class to explain in every image; ``None``: each image's top class.
        log: ``results.jsonl``: what is done, and where each finished image is recorded.
        settings: what makes two runs the same (model, method, options, target, ...).
        pack: images per method call.
        progress: draw one progress bar over the images.
        write_pictures: writes an image's pictures (overlay, panel).
    """
    from tqdm.auto import tqdm

    summary = RunSummary()
    todo = [
        (image, plan)
        for image, plan in zip(images, plans, strict=True)
        if not log.is_done(image, settings, plan)
    ]
    summary.skipped = len(images) - len(todo)
    if not todo:  # one line, and no empty bar
        print(
            f"{len(images)} image(s): 0 explained, {len(images)} already done: all are in "
            f"{log.path}, nothing to explain"
        )
        return summary
    if summary.skipped:
        print(f"{summary.skipped} image(s) already done in {log.path}: skipped")
    with tqdm(total=len(todo), unit="image", desc="sise explain", disable=not progress) as bar:
        for start in range(0, len(todo), pack):
            loaded_images = []
            for image, plan in todo[start : start + pack]:
                try:
                    rgb = load_image(image)
                    loaded_images.append((image, plan, rgb, loaded.preprocess(rgb)))
                except SiseError as error:
                    _report_failure(image, error)
                    summary.failed += 1
                    bar.update(1)
            for ready in _runs_of_one_size(loaded_images):
                inputs = torch.cat([x for *_, x in ready])
                began = time.perf_counter()
                try:
                    explanation = explainer(inputs, target)
                    if inputs.is_cuda:
                        torch.cuda.synchronize(inputs.device)
                except SiseError as error:
                    for image, *_ in ready:
                        _report_failure(image, error)
                    summary.failed += len(ready)
                    bar.update(len(ready))
                    continue
                seconds = (time.perf_counter() - began) / len(ready)
                for index, (image, plan, rgb, _) in enumerate(ready):
                    try:
                        write_pictures(image, rgb, explanation, index, plan)
                        if plan.maps is not None:
                            save_maps(plan.maps, explanation, index)
                        cls = int(explanation.targets[index])
                        log.append(
                            {
                                "image": str(image.resolve()),
                                "model": loaded.name,
                                "method": explanation.method,
                                "class_index": cls,
                                "class_name": loaded.class_names[cls] if cls >= 0 else None,
                                "score": round(float(explanation.scores[index]), 6),
                                "score_kind": settings.get("score"),
                                "forward_passes": int(explanation.forward_passes[index]),
                                "seconds": round(seconds, 4),
                                "overlay": _relative(plan.overlay, log.path.parent),
                                "panel": _relative(plan.panel, log.path.parent),
                                "maps": _relative(plan.maps, log.path.parent),
                                "settings": settings,
                                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                            }
                        )
                        summary.explained += 1
                        tqdm.write(
                            f"{image}: {loaded.class_names[cls] if cls >= 0 else 'target'} "
                            f"({float(explanation.scores[index]):.3f}) -> {plan.overlay}"
                        )
                    except SiseError as error:
                        _report_failure(image, error)
                        summary.failed += 1
                    bar.update(1)
    return summary


def _runs_of_one_size(ready: list[_Ready]) -> Iterator[list[_Ready]]:
    """The loaded images in runs whose inputs share one size: a model that keeps each photo's
    aspect ratio (TorchRay's, shorter side resized) gives photos of other shapes inputs of other
    sizes, which cannot share a batch."""
    run: list[_Ready] = []
    for item in ready:
        if run and item[-1].shape != run[-1][-1].shape:
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def _relative(path: Path | None, folder: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())
