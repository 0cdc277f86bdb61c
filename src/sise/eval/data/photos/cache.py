"""The generated photo set's folder in the cache: made once, atomically, and checked against the
digest of its files on every use."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from sise.errors import SiseError
from sise.eval.data.photos.render import PHOTO_SET, PhotoSetSpec, make_photo_voc
from sise.eval.data.synthetic import default_cache_dir
from sise.eval.digest import digest

__all__ = ["photo_set", "set_digest"]


#: The modules whose code decides the generated files (with the spec and the package versions).
_GENERATOR_FILES = ("objects.py", "render.py")


def _generator_key(spec: PhotoSetSpec) -> str:
    """Changes whenever the generated files could: the generator's code, the spec, the sources."""
    code = [Path(__file__).with_name(name).read_bytes() for name in _GENERATOR_FILES]
    versions = []
    for package in ("scikit-image", "scikit-learn", "pillow", "numpy"):
        try:
            versions.append(f"{package}={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            versions.append(f"{package}=?".encode())
    settings = json.dumps(dataclasses.asdict(spec), sort_keys=True).encode()
    return digest([*code, settings, *versions])


def _content_digest(base: Path) -> str:
    """SHA-256 over every file of the set (relative path and bytes), in path order."""
    files = sorted(p for p in base.rglob("*") if p.is_file())
    return digest(
        chunk
        for path in files
        for chunk in (str(path.relative_to(base)).encode() + b"\0", path.read_bytes())
    )


_MANIFEST = "photoset.json"


def _default_root() -> Path:
    return default_cache_dir() / "photos"


def photo_set(
    root: str | Path | None = None, spec: PhotoSetSpec = PHOTO_SET, progress: bool = True
) -> Path:
    """The folder of the generated photo set (it holds ``VOC2007/``), generated if absent.

    The set lives in ``root/photos-<key>`` where ``key`` digests the generator's code, ``spec`` and
    the versions of the packages that provide the photos and encode the files, so a changed
    generator writes a new folder instead of reusing a stale one. Generation goes to a
    temporary folder that is renamed when complete, so concurrent processes (``torchrun``
    ranks) and interrupted runs never see half a set. A folder whose files no longer match the
    digest recorded at generation time is regenerated.

    ``root`` may also be one set's own folder (it holds ``photoset.json``), such as a copy made
    on another machine: it is used as it is, after its files are checked against its recorded
    digest, whatever package versions made it. That is how two machines whose Pillow or NumPy
    differ (and so would encode other bytes) benchmark the same images and share one results
    file.

    Args:
        root: where to keep sets (default: ``$SISE_CACHE/photos`` or ``~/.cache/sise/photos``),
            or one set's folder.
        spec: the generator's settings.
        progress: when the set is generated, say so on stderr and draw a bar over its images
            (about a minute on a CPU, once).

    Raises:
        SiseError: a set's own folder was given whose files no longer match its digest, or that
            was made with other settings than ``spec``.
    """
    if root is not None and (Path(root) / _MANIFEST).is_file():
        return _given_set(Path(root), spec)
    parent = Path(root) if root is not None else _default_root()
    key = _generator_key(spec)
    folder = parent / f"photos-{key[:16]}"
    manifest = folder / _MANIFEST
    if manifest.is_file():
        recorded = json.loads(manifest.read_text())
        if recorded.get("content") == _content_digest(folder / "VOC2007"):
            return folder
        shutil.rmtree(folder)  # our own folder (it has our manifest), with damaged files
    elif folder.exists():
        raise SiseError(
            f"{folder} exists but holds no finished photo set ({_MANIFEST} is missing): "
            "delete it and run again"
        )
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=parent))
    try:
        if progress:
            print(
                f"generating the photo set ({spec.n_images} images), once: it is kept in {folder}",
                file=sys.stderr,
                flush=True,
            )
        make_photo_voc(staging, spec, progress=progress)
        content = _content_digest(staging / "VOC2007")
        (staging / _MANIFEST).write_text(
            json.dumps({"key": key, "content": content, "spec": dataclasses.asdict(spec)}) + "\n"
        )
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / _MANIFEST).is_file():  # not another process that got there first
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def _given_set(folder: Path, spec: PhotoSetSpec) -> Path:
    """A set folder named directly: checked, never regenerated (it may not be ours to rewrite)."""
    recorded = json.loads((folder / _MANIFEST).read_text())
    if recorded.get("spec") != dataclasses.asdict(spec):
        raise SiseError(
            f"the photo set in {folder} was made with other settings ({recorded.get('spec')}) "
            f"than asked for ({dataclasses.asdict(spec)}): point photos: at its parent folder "
            "to generate the set asked for"
        )
    if recorded.get("content") != _content_digest(folder / "VOC2007"):
        raise SiseError(
            f"the files of the photo set in {folder} no longer match the digest recorded when it "
            "was made: copy it again, or point photos: at its parent folder to regenerate it"
        )
    return folder


def set_digest(folder: Path) -> str:
    """The content digest recorded when the set in ``folder`` was generated."""
    return str(json.loads((folder / _MANIFEST).read_text())["content"])
