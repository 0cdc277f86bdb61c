"""SISE's fusion swept on cached layer maps: ground-truth against model-truth faithfulness.

SISE's layer visualisation maps do not depend on the fusion, so SISE runs once per (image, class)
pair and its layer maps are cached; every fusion setting (the paper's binary Otsu gate, the
``smoothing=`` option, the soft gate, no gate) is then a cheap function of the cache. RISE and
Score-CAM (the best baselines on Drop% / Increase%) are run once per pair and cached too.

Metrics per pair (``sise.eval.metrics``):

* ground truth: EBPG (share of the map's energy in the class's boxes), Bbox score, and the
  *distractor energy*: the share of the map's energy in the boxes of the image's objects of
  other classes (outside the class's own boxes), on the pairs that have such an object;
* model truth: Drop% and Increase% (the map multiplies the model-ready input), with masked-out
  pixels at the model-space zero (the package's default) and at black.

The table prints each mean with its standard error (sample std / √n), then each setting's paired
difference to the best baseline, then the same on the two halves of the data (images split by a
hash of their id). Everything is cached under ``--cache`` and the script resumes where it stopped.

``--sanity N`` runs the cascading model-parameter randomisation test (Adebayo et al. 2018,
:func:`sise.eval.metrics.sanity_check`) on the first N pairs for the paper's fusion and for each
``--sanity-smoothing`` value; the fused maps of every setting come from the same SISE run at
each step (the callback records them), so the settings are compared on the same randomisations.

Usage (CPU; one thread is enough and leaves the machine to others)::

    OMP_NUM_THREADS=1 python benchmarks/fusion_sweep.py --model efficientnet_lite0 \\
        --data photos:~/.cache/sise/photos --limit 100
    OMP_NUM_THREADS=1 python benchmarks/fusion_sweep.py --model efficientnet_lite0 \\
        --data photos:~/.cache/sise/photos --sanity 4 --sanity-smoothing 0.05
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sise.core.postprocess import minmax_normalize
from sise.errors import SiseError
from sise.eval.data import EvalPair, boxes_mask, gt_mask
from sise.eval.metrics import (
    bbox_score,
    drop_and_increase,
    energy_pointing_game,
    sanity_check,
    spearman,
    standard_error,
)
from sise.eval.metrics.sanity import _layers_in_call_order
from sise.images import load_image
from sise.methods.fusion import fuse
from sise.methods.rise import RISE
from sise.methods.score_cam import ScoreCAM
from sise.methods.sise import SISE
from sise.models.loading import LoadedModel, load_model
from sise.runtime import Runtime

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SMOOTHING = (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.12)
#: σ of the centred-Gaussian reference map, as a fraction of the image size: a pure centre prior
#: that knows nothing about the image (what a map scores on EBPG by photographers' habit alone).
CENTRE_SIGMA = 0.25
BASELINES = ("RISE", "Score-CAM")
METRIC_COLUMNS = (
    ("ebpg", "EBPG ↑"),
    ("bbox", "Bbox ↑"),
    ("distractor", "distractor ↓"),
    ("drop_zero", "Drop% ↓ (zero)"),
    ("increase_zero", "Incr% ↑ (zero)"),
    ("drop_black", "Drop% ↓ (black)"),
    ("increase_black", "Incr% ↑ (black)"),
)
LOWER_IS_BETTER = {"distractor", "drop_zero", "drop_black"}


# --------------------------------------------------------------------------------------------
# data


@dataclass
class Pair:
    """One (image, class) pair with the other classes' boxes of the same image."""

    pair: EvalPair
    other_boxes: list[tuple[float, float, float, float]]

    @property
    def key(self) -> str:
        return f"{self.pair.image_id}__{self.pair.class_index}"

    @property
    def half(self) -> int:
        """0 or 1 by a hash of the image id, so that both classes of an image stay together."""
        return zlib.crc32(self.pair.image_id.encode()) % 2


def _xml_other_boxes(
    dataset: Any, pair: EvalPair
) -> list[tuple[float, float, float, float]] | None:
    """Boxes of every object of another class in the pair's VOC annotation, or None if unread.

    Classes are compared by index (``classes.txt`` of the set, else the dataset's class names),
    since a dataset may report other display names than its XML files hold."""
    root = getattr(dataset, "root", None)
    if root is None:
        return None
    xml_path = Path(root) / "Annotations" / f"{pair.image_id}.xml"
    if not xml_path.is_file():
        return None
    class_file = Path(root) / "classes.txt"
    names = (
        [line.strip() for line in class_file.read_text().splitlines() if line.strip()]
        if class_file.is_file()
        else list(getattr(dataset, "class_names", []))
    )
    index = {name: i for i, name in enumerate(names)}
    boxes = []
    for obj in ET.parse(xml_path).getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if box is None or index.get(name, -1) == pair.class_index:
            continue
        xmin, ymin, xmax, ymax = (
            float(box.findtext(t) or 0) for t in ("xmin", "ymin", "xmax", "ymax")
        )
        boxes.append((xmin - 1.0, ymin - 1.0, xmax, ymax))  # VOC's 1-based inclusive pixels
    return boxes


def with_other_boxes(dataset: Any, pairs: Sequence[EvalPair]) -> list[Pair]:
    """Attach the other classes' boxes: from the VOC XML when it can be read (it also lists
    objects whose pair the dataset filtered out), else from the dataset's other pairs."""
    by_image: dict[str, list[EvalPair]] = {}
    for pair in dataset:
        by_image.setdefault(pair.image_id, []).append(pair)
    out = []
    for pair in pairs:
        others = _xml_other_boxes(dataset, pair)
        if others is None:
            others = [
                box
                for other in by_image.get(pair.image_id, [])
                if other.class_index != pair.class_index
                for box in other.boxes
            ]
        out.append(Pair(pair, others))
    return out


def bundled_pairs(loaded: LoadedModel) -> tuple[list[Pair], dict[str, Any]]:
    """The two bundled photos with hand-measured boxes (a smoke test, not a benchmark)."""
    from sise.images import sample_image_path

    entries = [
        # (photo, ImageNet class, box read off the photo)
        ("coffee", "espresso", (170.0, 15.0, 420.0, 300.0)),
        ("chelsea", "tabby", (60.0, 10.0, 400.0, 300.0)),
    ]
    pairs = []
    for name, cls, box in entries:
        path = sample_image_path(name)
        rgb = load_image(path)
        index = loaded.class_index(cls)
        pair = EvalPair(name, path, index, cls, [box], rgb.shape[1], rgb.shape[0])
        pairs.append(Pair(pair, []))
    return pairs, {"kind": "bundled", "photos": [e[0] for e in entries]}


def load_pairs(
    spec: str, loaded: LoadedModel, limit: int | None, pairs_file: Path | None = None
) -> tuple[list[Pair], dict[str, Any]]:
    """``--data`` as pairs: ``photos:ROOT`` (the real-photo set), ``voc:ROOT`` or ``bundled``."""
    kind, _, path = spec.partition(":")
    if kind == "bundled":
        pairs, identity = bundled_pairs(loaded)
    elif kind == "photos":
        from sise.eval.data.photos import photo_dataset  # type: ignore[import-not-found]

        dataset, identity = photo_dataset(Path(path).expanduser(), loaded)
        pairs = with_other_boxes(dataset, list(dataset))
    elif kind == "voc":
        from sise.eval.data import VOCDetection2007

        dataset = VOCDetection2007(Path(path).expanduser(), "test")
        identity = {"kind": "voc", "root": dataset.root.name}
        pairs = with_other_boxes(dataset, list(dataset))
    else:
        raise SiseError(f"unknown --data {spec!r}: use photos:ROOT, voc:ROOT or bundled")
    identity = dict(identity)
    if pairs_file is not None:
        # "image_id class_index" per line: a subset chosen elsewhere (e.g. the photo set's
        # per-model filter, exported with the images to a machine that cannot rebuild the set).
        lines = pairs_file.read_text().splitlines()
        wanted = [(a, b) for a, b, *_ in (line.split() for line in lines if line.strip())]
        by_key = {(p.pair.image_id, str(p.pair.class_index)): p for p in pairs}
        missing = [w for w in wanted if w not in by_key]
        if missing:
            raise SiseError(f"{pairs_file} lists pairs the data do not hold, e.g. {missing[0]}")
        pairs = [by_key[w] for w in wanted]
        identity["pairs_file"] = pairs_file.name
    if limit is not None:
        pairs = pairs[:limit]
    return pairs, identity


# --------------------------------------------------------------------------------------------
# cache of the expensive part: SISE's layer maps and the baselines' maps


def model_inputs(loaded: LoadedModel, pair: Pair) -> Tensor:
    return loaded.preprocess(load_image(pair.pair.image_path))


def black_baseline(loaded: LoadedModel, inputs: Tensor) -> Tensor:
    """Black pixels in model space, ``(0 - mean) / std`` per channel."""
    mean = torch.tensor(loaded.mean, device=inputs.device).view(1, -1, 1, 1)
    std = torch.tensor(loaded.std, device=inputs.device).view(1, -1, 1, 1)
    return ((0.0 - mean) / std).expand_as(inputs).to(inputs.dtype).contiguous()


def _load_or_make(path: Path, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    entry = make()
    temporary = path.with_suffix(".tmp")
    torch.save(entry, temporary)
    os.replace(temporary, path)  # atomic: an interrupted run never leaves half a file
    return entry


def cache_sise(loaded: LoadedModel, pair: Pair, folder: Path, batch_size: int) -> dict[str, Any]:
    """SISE's layer maps of one pair (paper settings), computed once and saved."""

    def make() -> dict[str, Any]:
        inputs = model_inputs(loaded, pair)
        target = torch.tensor([pair.pair.class_index], device=inputs.device)
        sise = SISE(loaded.model, runtime=Runtime(batch_size=batch_size))(inputs, target)
        entry = {
            "layer_maps": sise.layer_maps[0].cpu(),
            "present": (sise.kept_maps[0] > 0).cpu(),
            "score": float(sise.scores[0]),
            "sise_map": sise.maps[0].cpu(),
        }
        # The sweep's premise: the fusion of the cached layer maps *is* SISE's map.
        if not torch.equal(
            fuse(entry["layer_maps"][None], entry["present"][None])[0], entry["sise_map"]
        ):
            raise SiseError(f"the cached layer maps of {pair.key} do not reproduce SISE's map")
        return entry

    return _load_or_make(folder / f"{pair.key}.sise.pt", make)


def cache_baselines(
    loaded: LoadedModel, pair: Pair, folder: Path, rise_masks: int, batch_size: int
) -> dict[str, Any]:
    """RISE's and Score-CAM's maps of one pair (package defaults but RISE's mask count)."""

    def make() -> dict[str, Any]:
        inputs = model_inputs(loaded, pair)
        target = torch.tensor([pair.pair.class_index], device=inputs.device)
        rise = RISE(
            loaded.model, n_masks=rise_masks, seed=0, runtime=Runtime(batch_size=batch_size)
        )
        scorecam = ScoreCAM(loaded.model, runtime=Runtime(batch_size=batch_size))
        return {
            "RISE": rise(inputs, target).maps[0].float().cpu(),
            "Score-CAM": scorecam(inputs, target).maps[0].float().cpu(),
        }

    return _load_or_make(folder / f"{pair.key}.baselines.pt", make)


# --------------------------------------------------------------------------------------------
# fusion settings


@dataclass(frozen=True)
class Setting:
    name: str
    build: Callable[[dict[str, Any], tuple[int, int]], Tensor]
    sise: bool = True


def sise_setting(smoothing: float = 0.0, gate: str = "binary") -> Setting:
    def build(entry: dict[str, Any], _: tuple[int, int]) -> Tensor:
        maps = entry["layer_maps"][None]
        present = entry["present"][None]
        return fuse(maps, present, gate, 100.0, smoothing)[0]  # type: ignore[arg-type]

    label = "SISE (paper, binary gate)" if smoothing == 0 and gate == "binary" else "SISE"
    if gate != "binary":
        label += f" {gate} gate"
    if smoothing:
        label += f" smoothing={smoothing:g}"
    return Setting(label, build)


def no_gate(entry: dict[str, Any], _: tuple[int, int]) -> Tensor:
    present = entry["present"].view(-1, 1, 1).float()
    return minmax_normalize((entry["layer_maps"] * present).sum(dim=0)[None])[0]


def centre_gaussian(_: dict[str, Any], size: tuple[int, int]) -> Tensor:
    height, width = size
    y = (torch.arange(height) + 0.5) / height - 0.5
    x = (torch.arange(width) + 0.5) / width - 0.5
    r2 = y[:, None] ** 2 + x[None, :] ** 2
    return minmax_normalize(torch.exp(-r2 / (2 * CENTRE_SIGMA**2))[None])[0]


def cached_map(name: str) -> Callable[[dict[str, Any], tuple[int, int]], Tensor]:
    return lambda entry, _: entry[name]


def all_settings(smoothings: Sequence[float]) -> list[Setting]:
    settings = [sise_setting()]
    settings += [sise_setting(s) for s in smoothings]
    settings += [
        sise_setting(gate="soft"),
        Setting("SISE no gate (sum of layer maps)", no_gate),
        Setting("RISE", cached_map("RISE"), sise=False),
        Setting("Score-CAM", cached_map("Score-CAM"), sise=False),
        Setting(f"centred Gaussian σ={CENTRE_SIGMA:g}", centre_gaussian, sise=False),
    ]
    return settings


# --------------------------------------------------------------------------------------------
# metrics


def score_pair(
    loaded: LoadedModel,
    pair: Pair,
    entry: dict[str, Any],
    settings: Sequence[Setting],
    batch_size: int,
) -> list[dict[str, Any]]:
    """Every metric of every given setting's map of one pair (all masked forwards batched)."""
    inputs = model_inputs(loaded, pair)
    height, width = inputs.shape[-2:]
    maps = torch.stack([s.build(entry, (height, width)).float() for s in settings]).clamp(0, 1)
    maps = maps.to(inputs.device)
    n = len(settings)
    truth = gt_mask(pair.pair, height, width)[None].expand(n, -1, -1).to(inputs.device)
    ebpg = energy_pointing_game(maps, truth)
    bbox = bbox_score(maps, truth)
    distractor: Tensor | None = None
    if pair.other_boxes:
        others = boxes_mask(pair.other_boxes, (pair.pair.height, pair.pair.width), height, width)
        others = others.to(inputs.device) & ~truth[0]
        if bool(others.any()):
            flat = maps.flatten(1).double()
            total = flat.sum(dim=1).clamp_min(1e-300)
            distractor = 100.0 * (flat * others.flatten()).sum(dim=1) / total
    batch = inputs.expand(n, -1, -1, -1)
    targets = torch.full((n,), pair.pair.class_index, device=inputs.device)
    drop_zero, inc_zero = drop_and_increase(
        loaded.model, batch, targets, maps, batch_size=batch_size
    )
    drop_black, inc_black = drop_and_increase(
        loaded.model,
        batch,
        targets,
        maps,
        baseline=black_baseline(loaded, batch),
        batch_size=batch_size,
    )
    rows = []
    for i, setting in enumerate(settings):
        rows.append(
            {
                "pair": pair.key,
                "setting": setting.name,
                "half": pair.half,
                "ebpg": float(ebpg[i]),
                "bbox": float(bbox[i]),
                "distractor": None if distractor is None else float(distractor[i]),
                "drop_zero": float(drop_zero[i]),
                "increase_zero": 100.0 * float(inc_zero[i]),
                "drop_black": float(drop_black[i]),
                "increase_black": 100.0 * float(inc_black[i]),
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# tables


def mean_se(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, standard error (:func:`sise.eval.metrics.standard_error`) and count."""
    if not values:
        return math.nan, math.nan, 0
    terms = torch.tensor(values, dtype=torch.float64)
    return float(terms.mean()), standard_error(terms), len(values)


def _column(
    rows: dict[tuple[str, str], dict[str, Any]], setting: str, keys: Sequence[str], metric: str
) -> list[float]:
    values = []
    for key in keys:
        value = rows.get((key, setting), {}).get(metric)
        if value is not None:
            values.append(float(value))
    return values


def trade_off_table(
    rows: dict[tuple[str, str], dict[str, Any]], settings: Sequence[str], keys: Sequence[str]
) -> str:
    header = "| setting | " + " | ".join(label for _, label in METRIC_COLUMNS) + " |"
    lines = [header, "|---" * (len(METRIC_COLUMNS) + 1) + "|"]
    for setting in settings:
        cells = []
        for metric, _ in METRIC_COLUMNS:
            mean, se, _ = mean_se(_column(rows, setting, keys, metric))
            cells.append(f"{mean:.1f} ± {se:.1f}")
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_baseline(
    rows: dict[tuple[str, str], dict[str, Any]], keys: Sequence[str], metric: str
) -> str:
    means = {b: mean_se(_column(rows, b, keys, metric))[0] for b in BASELINES}
    pick = min if metric in LOWER_IS_BETTER else max
    return pick(means, key=lambda b: means[b])


def paired(
    rows: dict[tuple[str, str], dict[str, Any]], a: str, b: str, keys: Sequence[str], metric: str
) -> tuple[float, float, int]:
    """Mean ± SE of the per-pair difference ``a − b`` over the pairs where both have a value."""
    diffs = []
    for key in keys:
        va = rows.get((key, a), {}).get(metric)
        vb = rows.get((key, b), {}).get(metric)
        if va is not None and vb is not None:
            diffs.append(float(va) - float(vb))
    return mean_se(diffs)


def paired_table(
    rows: dict[tuple[str, str], dict[str, Any]], settings: Sequence[str], keys: Sequence[str]
) -> str:
    """Each SISE setting against the best baseline of each metric (paired over pairs)."""
    metrics = [m for m, _ in METRIC_COLUMNS]
    best = {m: best_baseline(rows, keys, m) for m in metrics}
    header = (
        "| setting − best baseline | "
        + " | ".join(f"{label} vs {best[m]}" for m, label in METRIC_COLUMNS)
        + " |"
    )
    lines = [header, "|---" * (len(metrics) + 1) + "|"]
    for setting in settings:
        cells = []
        for metric in metrics:
            mean, se, _ = paired(rows, setting, best[metric], keys, metric)
            cells.append(f"{mean:+.1f} ± {se:.1f}")
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(
    rows: dict[tuple[str, str], dict[str, Any]],
    setting: str,
    others: Sequence[str],
    keys: Sequence[str],
) -> str:
    """Does ``setting`` beat every method of ``others`` on EBPG and distractor energy (means;
    the paired difference to the best of them is printed), and tie or beat the best baseline on
    Drop% and Increase% ("tie": the paired difference is within one standard error)?"""
    parts = []
    for metric in ("ebpg", "distractor"):
        mine = mean_se(_column(rows, setting, keys, metric))[0]
        if math.isnan(mine):
            parts.append(f"{metric}: n/a")
            continue
        rivals = {o: mean_se(_column(rows, o, keys, metric))[0] for o in others if o != setting}
        lower = metric in LOWER_IS_BETTER
        best = (min if lower else max)(rivals, key=lambda o: rivals[o])
        first = mine <= rivals[best] if lower else mine >= rivals[best]
        diff, se, _ = paired(rows, setting, best, keys, metric)
        parts.append(
            f"{metric}: {'first' if first else 'NOT first'} ({diff:+.1f} ± {se:.1f} vs {best})"
        )
    for metric in ("drop_zero", "increase_zero", "drop_black", "increase_black"):
        base = best_baseline(rows, keys, metric)
        diff, se, _ = paired(rows, setting, base, keys, metric)
        better = -diff if metric in LOWER_IS_BETTER else diff
        state = "better" if better > se else ("tie" if better >= -se else "WORSE")
        parts.append(f"{metric}: {state} vs {base} ({diff:+.1f} ± {se:.1f})")
    return "; ".join(parts)


def choose_smoothing(
    rows: dict[tuple[str, str], dict[str, Any]], keys: Sequence[str], smoothings: Sequence[float]
) -> float | None:
    """The rule that picks ``smoothing`` on one model (fixed before the other model was run):
    the smallest σ whose mean Drop% and mean Increase% (model-space zero masking, the package's
    default) are both at least as good as the best baseline's. Smallest, because EBPG and the
    distractor energy only get worse as σ grows."""
    drop = mean_se(_column(rows, best_baseline(rows, keys, "drop_zero"), keys, "drop_zero"))[0]
    increase_base = best_baseline(rows, keys, "increase_zero")
    increase = mean_se(_column(rows, increase_base, keys, "increase_zero"))[0]
    for s in sorted(smoothings):
        name = sise_setting(s).name
        if (
            mean_se(_column(rows, name, keys, "drop_zero"))[0] <= drop
            and mean_se(_column(rows, name, keys, "increase_zero"))[0] >= increase
        ):
            return s
    return None


# --------------------------------------------------------------------------------------------
# sanity check


def stage_of(name: str) -> str:
    """The stage a module belongs to: ``blocks.5.3.conv_pwl`` → ``blocks.5``; the head's
    ``bn2`` and ``conv_head`` → ``head``; ``conv_stem`` and ``bn1`` → ``stem``; others: itself."""
    if name.startswith("blocks."):
        return ".".join(name.split(".")[:2])
    return {"bn2": "head", "conv_head": "head", "bn1": "stem", "conv_stem": "stem"}.get(name, name)


def run_sanity(
    loaded: LoadedModel,
    pairs: Sequence[Pair],
    smoothings: Sequence[float],
    folder: Path,
    batch_size: int,
    every_step: bool = False,
    time_budget: float | None = None,
) -> str:
    """Cascading randomisation (Adebayo et al.) for the paper's fusion and each smoothing.

    :func:`sise.eval.metrics.sanity_check` randomises every module with parameters, top layer
    first, cumulatively. SISE is recomputed at the end of each stage (when the whole stage is
    random: the classifier, the head, each ``blocks.i``, the stem), or after every module with
    ``every_step``; in between, the callback hands back the last maps, and those steps are not
    reported (on a shared CPU one SISE run per module, 99 for EfficientNet-Lite0, is too slow).
    The callback keeps the layer maps, from which every setting's fused map follows, so all
    settings are compared on the same randomisations. Each evaluated step is cached, so an
    interrupted run resumes (the randomisation is seeded, hence replayed exactly).
    """
    folder.mkdir(parents=True, exist_ok=True)
    inputs = torch.cat([model_inputs(loaded, p) for p in pairs])
    targets = torch.tensor([p.pair.class_index for p in pairs], device=inputs.device)
    order = list(reversed(_layers_in_call_order(loaded.model, inputs[:1])))
    evaluate = [
        every_step or k + 1 == len(order) or stage_of(order[k]) != stage_of(order[k + 1])
        for k in range(len(order))
    ]
    recorded: dict[int, tuple[Tensor, Tensor]] = {}
    calls = [0]
    last: list[Tensor] = []
    deadline = None if time_budget is None else time.perf_counter() + time_budget

    def explain(model: torch.nn.Module, x: Tensor, t: Tensor) -> Tensor:
        step = calls[0]  # 0: the trained model; k: after randomising order[k - 1]
        calls[0] += 1
        if step > 0 and not evaluate[step - 1]:
            return last[0]
        path = folder / f"step{step:03d}.pt"
        if path.is_file():
            cached = torch.load(path, map_location="cpu", weights_only=True)
            layer_maps, present = cached["layer_maps"], cached["present"]
        else:
            if deadline is not None and time.perf_counter() > deadline:
                raise _OutOfTime
            result = SISE(model, runtime=Runtime(batch_size=batch_size))(x, t)
            layer_maps = result.layer_maps.cpu()
            present = (result.kept_maps > 0).cpu()
            torch.save({"layer_maps": layer_maps, "present": present}, path.with_suffix(".tmp"))
            os.replace(path.with_suffix(".tmp"), path)
            print(f"  sanity step {step} done", file=sys.stderr, flush=True)
        recorded[step] = (layer_maps, present)
        last[:] = [fuse(layer_maps, present).to(x.device)]
        return last[0]

    steps: list[tuple[str, float]] | None
    try:
        steps = sanity_check(explain, loaded.model, inputs, targets, layers=order, seed=0)
    except _OutOfTime:
        steps = None
        print(f"time budget spent after {len(recorded) - 1} evaluations", file=sys.stderr)
    done = sorted(k for k in recorded if k > 0)
    # Per image ρ; the table gives the mean ρ (what sanity_check returns) and the mean |ρ|
    # (Adebayo et al. show both: a strongly negative ρ is a map that still follows the image).
    values: dict[float, dict[int, Tensor]] = {}
    for s in (0.0, *smoothings):
        original = fuse(*recorded[0], smoothing=s)
        values[s] = {k: spearman(original, fuse(*recorded[k], smoothing=s)) for k in done}
    if steps is not None:  # the same numbers as the library's own computation
        assert all(abs(float(values[0.0][k].mean()) - steps[k - 1][1]) < 1e-5 for k in done)
    labels = ["SISE paper" if s == 0 else f"smoothing={s:g}" for s in values]
    lines = [
        "| randomised (cumulative, top down) | step | "
        + " | ".join(f"{label}: ρ (abs)" for label in labels)
        + " |"
    ]
    lines.append("|---" * (len(values) + 2) + "|")
    for k in done:
        cells = " | ".join(
            f"{float(values[s][k].mean()):.2f} ({float(values[s][k].abs().mean()):.2f})"
            for s in values
        )
        name = order[k - 1] if every_step else f"{stage_of(order[k - 1])} (to {order[k - 1]})"
        lines.append(f"| {name} | {k}/{len(order)} | {cells} |")
    return "\n".join(lines)


class _OutOfTime(Exception):
    """The sanity check's time budget is spent."""


# --------------------------------------------------------------------------------------------
# main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--data", default="bundled", help="photos:ROOT, voc:ROOT or bundled")
    parser.add_argument("--limit", type=int, default=None, help="first N pairs")
    parser.add_argument("--pairs", type=Path, default=None, help="file of 'image_id class'")
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/sise/fusion_sweep"))
    parser.add_argument("--smoothing", type=float, nargs="*", default=list(DEFAULT_SMOOTHING))
    parser.add_argument("--rise-masks", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sanity", type=int, default=0, help="run the sanity check on N pairs")
    parser.add_argument("--sanity-smoothing", type=float, nargs="*", default=[0.05])
    parser.add_argument(
        "--sanity-every-step", action="store_true", help="evaluate after every module, not stage"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the tables here (.md)")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds: stop explaining new pairs after this and tabulate the pairs done",
    )
    args = parser.parse_args(argv)

    if args.device.startswith("cuda"):
        # Full float32 in convolutions and matrix products, as on a CPU (no TF32).
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    loaded = load_model(args.model, device=args.device)
    pairs, identity = load_pairs(args.data, loaded, args.limit, args.pairs)
    identity = {**identity, "model": args.model, "input_size": list(loaded.input_size)}
    tag = f"{args.model}_{identity['kind']}_rise{args.rise_masks}"
    folder = args.cache.expanduser() / tag
    folder.mkdir(parents=True, exist_ok=True)
    identity_file = folder / "identity.json"
    if identity_file.is_file():
        stored = json.loads(identity_file.read_text())
        if stored != json.loads(json.dumps(identity)):
            raise SiseError(
                f"the cache {folder} holds results of another dataset or model ({stored}); "
                "pass another --cache"
            )
    else:
        identity_file.write_text(json.dumps(identity, indent=1))

    if args.sanity:
        table = run_sanity(
            loaded,
            pairs[: args.sanity],
            args.sanity_smoothing,
            folder / f"sanity{args.sanity}",
            args.batch_size,
            args.sanity_every_step,
            args.time_budget,
        )
        text = (
            f"# Cascading randomisation, {args.model}, {args.sanity} pairs of {args.data}\n\n"
            "Mean Spearman ρ between each setting's maps of the trained and of the randomised "
            "model (1 = unchanged; a faithful map falls towards 0). Every module with "
            "parameters is randomised, top layer first, cumulatively (sise.eval.metrics."
            "sanity_check); the maps are recomputed at the end of each stage.\n\n" + table + "\n"
        )
        print(text)
        if args.out:
            args.out.write_text(text)
        return

    settings = all_settings(args.smoothing)
    metrics_file = folder / "metrics.jsonl"
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    if metrics_file.is_file():
        for line in metrics_file.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interrupted run
                continue
            rows[(row["pair"], row["setting"])] = row
    print(f"{len(pairs)} pairs; cache {folder}", file=sys.stderr)
    start = time.perf_counter()
    # Pair by pair, SISE's run then the baselines', so that a run cut short by --time-budget
    # leaves complete pairs (the paired comparisons need both).
    phases = [
        ([s for s in settings if s.name not in BASELINES], cache_sise),
        ([s for s in settings if s.name in BASELINES], cache_baselines),
    ]
    for index, pair in enumerate(pairs):
        todo = [
            (phase_settings, cache)
            for phase_settings, cache in phases
            if any((pair.key, s.name) not in rows for s in phase_settings)
        ]
        if not todo:
            continue
        if args.time_budget is not None and time.perf_counter() - start > args.time_budget:
            print(f"time budget spent at pair {index + 1} of {len(pairs)}", file=sys.stderr)
            break
        for phase_settings, cache in todo:
            missing = [s for s in phase_settings if (pair.key, s.name) not in rows]
            if cache is cache_baselines:
                entry = cache_baselines(loaded, pair, folder, args.rise_masks, args.batch_size)
            else:
                entry = cache_sise(loaded, pair, folder, args.batch_size)
            fresh = score_pair(loaded, pair, entry, missing, args.batch_size)
            with metrics_file.open("a") as handle:
                for row in fresh:
                    handle.write(json.dumps(row) + "\n")
                    rows[(row["pair"], row["setting"])] = row
        print(
            f"[{index + 1}/{len(pairs)}] {pair.key} ({time.perf_counter() - start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    complete = [p for p in pairs if all((p.key, s.name) in rows for s in settings)]
    if complete:
        pairs = complete
    else:  # no baseline yet: tabulate the fusion settings alone
        settings = [s for s in settings if s.name not in BASELINES]
        pairs = [p for p in pairs if all((p.key, s.name) in rows for s in settings)]
    if not pairs:
        raise SiseError("no pair is complete yet: run again with a larger --time-budget")

    keys = [p.key for p in pairs]
    names = [s.name for s in settings]
    sise_names = [s.name for s in settings if s.sise]
    n_distractor = sum(1 for p in pairs if p.other_boxes)
    scorecam_layer = ScoreCAM(loaded.model).layer_for(model_inputs(loaded, pairs[0]))[0]
    parts = [
        f"# SISE fusion sweep: {args.model} on {args.data} ({len(pairs)} pairs, "
        f"{n_distractor} with an object of another class)",
        "",
        f"Data identity: `{json.dumps(identity, sort_keys=True)}`; device {args.device}.",
        "",
        f"Baselines: RISE ({args.rise_masks} masks, 7×7 grid, p=0.5, seed 0); Score-CAM "
        f"(weights={ScoreCAM(loaded.model).weights!r}, layer {scorecam_layer!r}). Score: softmax. "
        "Drop%/Increase%: masked-out pixels at the model-space zero (zero) or black. Mean ± "
        "standard error over pairs; distractor energy over the pairs with an object of "
        "another class.",
        "",
        "## All pairs",
        "",
        trade_off_table(rows, names, keys),
        "",
        paired_table(rows, sise_names, keys),
    ]
    for half in (0, 1):
        half_keys = [p.key for p in pairs if p.half == half]
        parts += [
            "",
            f"## Half {half} ({len(half_keys)} pairs, images with crc32(id) % 2 == {half})",
            "",
            trade_off_table(rows, names, half_keys),
        ]
    parts += [
        "",
        "## Verdicts: first on EBPG / distractor against the baselines and the centre prior; "
        "Drop% / Increase% against the best baseline (tie = within 1 SE, paired)",
        "",
    ]
    rivals = [s.name for s in settings if not s.sise]
    for name in sise_names:
        for label, subset in (
            ("all", keys),
            ("half 0", [p.key for p in pairs if p.half == 0]),
            ("half 1", [p.key for p in pairs if p.half == 1]),
        ):
            parts.append(f"- {name} [{label}]: {verdict(rows, name, rivals, subset)}")
    chosen = choose_smoothing(rows, keys, args.smoothing)
    parts += [
        "",
        f"Rule (smallest σ at least as good as the best baseline on mean Drop% and Increase%, "
        f"zero masking) picks on this model and data: smoothing = {chosen}",
    ]
    text = "\n".join(parts) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        with args.out.with_suffix(".csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(next(iter(rows.values()))))
            writer.writeheader()
            for key in keys:
                for name in names:
                    if (key, name) in rows:
                        writer.writerow(rows[(key, name)])


if __name__ == "__main__":
    main()
