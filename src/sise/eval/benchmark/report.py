"""The benchmark's outputs: the paper's table (Markdown and CSV), its settings, the example figure.

The table has the paper's layout: methods as columns in the paper's order, metrics as rows in
:data:`sise.eval.benchmark.scoring.METRICS` order, the best value of each row in bold. Its title
block lists every setting a number depends on (SPEC section 3: the masking baseline, the mIoU
binarisation, ... change the numbers a lot, so they are printed with them). A run in one of the
paper's four settings has the paper's published values under its rows, with the differences
(:mod:`sise.eval.benchmark.paper`).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sise.eval.benchmark.aggregation import NEAR_BEST
from sise.eval.benchmark.metric_settings import MetricSettings
from sise.eval.benchmark.paper import PaperComparison
from sise.eval.benchmark.scoring import METRICS
from sise.eval.data.pairs import EvalPair
from sise.images import load_image
from sise.methods.registry import DISPLAY_NAMES

__all__ = [
    "RunDescription",
    "default_name",
    "format_table",
    "header",
    "save_examples",
    "save_outputs",
]


@dataclass(frozen=True)
class _Row:
    label: str
    higher_is_better: bool


_SECONDS = _Row("Seconds / pair ↓", False)


def _paper_order(methods: Sequence[str]) -> list[str]:
    order = list(DISPLAY_NAMES)
    return sorted(methods, key=lambda m: order.index(m) if m in order else len(order))


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _pairs_note(metric_counts: Mapping[str, int], counts: Mapping[str, int]) -> str:
    """`` (over k pairs)`` when a metric was aggregated over fewer pairs than its columns."""
    if all(metric_counts.get(m, 0) == counts.get(m, 0) for m in counts):
        return ""
    spread = sorted({metric_counts.get(m, 0) for m in counts})
    over = str(spread[0]) if len(spread) == 1 else f"{spread[0]}–{spread[-1]}"
    return f" (over {over} pair{'' if spread == [1] else 's'})"


def format_table(
    values: dict[str, dict[str, float | None]],
    methods: Sequence[str],
    metrics: Sequence[str],
    counts: dict[str, int] | None = None,
    header: str = "",
    metric_counts: dict[str, dict[str, int]] | None = None,
    errors: dict[str, dict[str, float | None]] | None = None,
    near_best: dict[str, set[str]] | None = None,
    paper: Mapping[str, Mapping[str, PaperComparison]] | None = None,
) -> tuple[str, str]:
    """The paper's layout: methods as columns (paper order), metrics as rows, the best value of
    each row in bold (lowest for Drop%, deletion AUC, distractor energy and time; ties at the
    printed precision all bold). A metric aggregated over fewer pairs than the ``Pairs`` row
    (one that does not apply to every pair) says over how many.

    With ``errors`` (metric → method → standard error) each value is printed ``value ± error``
    and the CSV has a ``<label> SE`` row under the metric's row; the methods in ``near_best``
    (metric → methods within :data:`sise.eval.benchmark.aggregation.NEAR_BEST` paired standard errors of the
    best) are in italics, and a note under the table says so.

    With ``paper`` (method → metric → :class:`~sise.eval.benchmark.paper.PaperComparison`) a
    metric row with published values is followed by a ``↳ paper`` row: the published value, the
    difference ``measured − paper`` and ✓ where it is within two standard errors (✗ where not);
    the CSV gets ``<label> paper``, ``<label> difference`` and ``<label> within 2 SE`` rows.
    Returns ``(markdown, csv)``."""
    methods = _paper_order(methods)
    names = [DISPLAY_NAMES.get(m, m) for m in methods]
    ordered = [m for m in METRICS if m in metrics] + [m for m in metrics if m not in METRICS]
    lines = ["| Metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(methods)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["metric", *names])
    rows: list[tuple[str, _Row]] = []
    for name in ordered:
        metric = METRICS.get(name)
        label = metric.label if metric is not None else name
        if counts is not None and metric_counts is not None and name in metric_counts:
            label += _pairs_note(metric_counts[name], {m: counts.get(m, 0) for m in methods})
        rows.append((name, _Row(label, metric.higher_is_better if metric is not None else True)))
    if "seconds" in values:
        rows.append(("seconds", _SECONDS))
    for key, row_info in rows:
        digits = 3 if key == "seconds" else 2
        cells = [values.get(key, {}).get(m) for m in methods]
        shown = [_fmt(v, digits) for v in cells]
        present = [float(s) for s in shown if s != "–"]
        best = None
        if len(present) > 1:
            best = max(present) if row_info.higher_is_better else min(present)
        spread = (errors or {}).get(key)
        near = (near_best or {}).get(key, set())
        row = []
        for method, text in zip(methods, shown, strict=True):
            error = None if spread is None or text == "–" else spread.get(method)
            cell = text if error is None or math.isnan(error) else f"{text} ± {error:.{digits}f}"
            if best is not None and text != "–" and float(text) == best:
                cell = f"**{cell}**"
            elif method in near:
                cell = f"*{cell}*"
            row.append(cell)
        lines.append(f"| {row_info.label} | " + " | ".join(row) + " |")
        writer.writerow([row_info.label, *[("" if v is None else repr(float(v))) for v in cells]])
        if spread is not None:
            writer.writerow(
                [
                    f"{row_info.label} SE",
                    *[("" if spread.get(m) is None else repr(spread[m])) for m in methods],
                ]
            )
        published = [(paper or {}).get(m, {}).get(key) for m in methods]
        if any(c is not None for c in published):
            lines.append("| ↳ paper | " + " | ".join(map(_paper_cell, published)) + " |")
            for suffix, part in (
                ("paper", lambda c: repr(c.paper)),
                ("difference", lambda c: repr(c.difference)),
                ("within 2 SE", lambda c: str(c.within)),
            ):
                writer.writerow(
                    [
                        f"{row_info.label} {suffix}",
                        *["" if c is None else part(c) for c in published],
                    ]
                )
    if counts is not None:
        lines.append("| Pairs | " + " | ".join(str(counts.get(m, 0)) for m in methods) + " |")
        writer.writerow(["pairs", *[counts.get(m, 0) for m in methods]])
    if errors is not None:
        lines += [
            "",
            "± one standard error over pairs (pointing game: over the pairs of each class). "
            f"*In italics*: not clearly behind the row's best; the paired difference from the "
            f"best, on the same pairs, is within {NEAR_BEST:g} standard errors.",
        ]
    if paper:
        lines += [
            "",
            "↳ paper: the value the paper publishes (Sattarzadeh et al., AAAI 2021), then this "
            "run's difference from it (measured − paper): ✓ within two standard errors of this "
            "run's value, ✗ not.",
        ]
    markdown = (header + "\n\n" if header else "") + "\n".join(lines) + "\n"
    return markdown, buffer.getvalue()


def _paper_cell(comparison: PaperComparison | None) -> str:
    if comparison is None:
        return ""
    mark = "✓" if comparison.within else "✗"
    return f"{comparison.paper:.2f} ({comparison.difference:+.2f} {mark})"


@dataclass(frozen=True)
class RunDescription:
    """What the table's title block states about a run.

    Attributes:
        title: the heading (the output files' name stem).
        dataset: the ``--dataset`` argument; ``kind`` and ``split`` what it resolved to.
        images, pairs: how many images and (image, class) pairs were selected.
        limit: the ``--limit`` given, if any.
        model: the ``--model`` argument; ``model_name`` the loaded model's name.
        input_hw: the model's input size.
        score: the explained score.
        metrics: the metrics shown; ``settings`` their settings.
        aggregated: pairs every method has completed; ``common_only`` whether only those count.
        options: each method's result-affecting options.
        resize: the model's resize (``"stretch"`` or ``"shorter-side"``).
        paper_setting: the paper's setting the run is in, ``(dataset, architecture)``, if any.
        paper_methods: the run's methods the paper publishes values of in that setting.
    """

    title: str
    dataset: str
    kind: str
    split: str
    images: int
    pairs: int
    limit: int | None
    model: str
    model_name: str
    input_hw: tuple[int, int]
    score: str
    metrics: Sequence[str]
    settings: MetricSettings
    aggregated: int
    common_only: bool
    options: Mapping[str, Mapping[str, object]]
    resize: str = "stretch"
    paper_setting: tuple[str, str] | None = None
    paper_methods: Sequence[str] = ()


def header(run: RunDescription) -> str:
    """The title block: the heading and one line per setting the numbers depend on."""
    h, w = run.input_hw
    lines = [
        f"- dataset: `{run.dataset}` ({run.kind}, split `{run.split}`), {run.images} images, "
        f"{run.pairs} (image, class) pairs" + (f" (`--limit {run.limit}`)" if run.limit else ""),
        f"- model: `{run.model}` ({run.model_name}), "
        + (
            f"input: shorter side {h} px, aspect ratio kept (Caffe's resize)"
            if run.resize == "shorter-side"
            else f"input {h}×{w}"
        )
        + f", explained score `{run.score}`",
    ]
    described = [
        METRICS[m].describe(run.settings, run.input_hw)  # type: ignore[misc]
        for m in METRICS
        if m in run.metrics and METRICS[m].describe is not None
    ]
    lines += [f"- {line}" for line in dict.fromkeys(described)]
    lines.append(
        f"- aggregated over the {run.aggregated} of {run.pairs} pairs that every method has "
        "completed"
        if run.common_only
        else "- each method aggregated over the pairs it has completed (row Pairs)"
    )
    if run.paper_setting is not None:
        dataset, arch = run.paper_setting
        where = {"voc": "PASCAL VOC 2007 test", "coco": "MS COCO 2014 val"}.get(dataset, dataset)
        model = {"vgg16": "VGG16", "resnet50": "ResNet-50"}.get(arch, arch)
        names = ", ".join(DISPLAY_NAMES.get(m, m) for m in _paper_order(run.paper_methods))
        lines.append(
            f"- the paper's setting ({where}, TorchRay's {model}): "
            + (
                f"the published values of {names} are under their rows (↳ paper)"
                if names
                else "the paper publishes no value of these methods here"
            )
        )
    for method, opts in run.options.items():
        if opts:
            lines.append(
                f"- {DISPLAY_NAMES.get(method, method)} options: "
                + ", ".join(f"{k}={v}" for k, v in opts.items())
            )
    return (
        f"### {run.title}\n\n"
        + "\n".join(lines)
        + "\n\nBest per row in **bold** (↑ higher is better, ↓ lower is better)."
    )


def default_name(model: str, kind: str) -> str:
    """The outputs' file-name stem: ``<dataset kind>_<model>``."""
    model = model.partition(":")[0]
    if kind == "synthetic":
        model = model.removeprefix("synthetic-")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{kind}_{model}")


def save_outputs(
    out: Path | None,
    name: str,
    markdown: str,
    table_csv: str,
    examples: Callable[[Path], Path | None],
) -> list[Path]:
    """Write ``<name>.md``, ``<name>.csv`` and the example figure (``examples(path)``, which may
    draw nothing) into ``out``; the files written (none without ``out``)."""
    if out is None:
        return []
    files = [out / f"{name}.md", out / f"{name}.csv"]
    files[0].write_text(markdown)
    files[1].write_text(table_csv)
    figure = examples(out / f"{name}_examples.png")
    return files + ([figure] if figure is not None else [])


def save_examples(
    path: Path,
    pairs: Sequence[EvalPair],
    methods: Sequence[str],
    stored: dict[tuple[str, int, str], tuple[np.ndarray, float]],
    title: str,
) -> Path | None:
    """A grid: one row per example pair (the photo, then each method's map over it)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from sise.viz import overlay

    rows = [p for p in pairs if any((p.image_id, p.class_index, m) in stored for m in methods)]
    if not rows:
        return None
    methods = _paper_order(methods)
    cols = len(methods) + 1
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(1.9 * cols, 2.0 * len(rows) + 0.4), squeeze=False
    )
    for r, pair in enumerate(rows):
        rgb = load_image(pair.image_path)
        axes[r, 0].imshow(rgb)
        axes[r, 0].set_ylabel(f"{pair.image_id}\n{pair.class_name}", fontsize=8)
        for x0, y0, x1, y1 in pair.boxes:
            axes[r, 0].add_patch(
                plt.Rectangle(
                    (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="lime", lw=1
                )
            )
        for c, method in enumerate(methods, start=1):
            entry = stored.get((pair.image_id, pair.class_index, method))
            if entry is not None:
                axes[r, c].imshow(overlay(rgb, torch.from_numpy(entry[0])))
                axes[r, c].set_xlabel(f"{entry[1]:.2f} s", fontsize=7)
            if r == 0:
                axes[r, c].set_title(DISPLAY_NAMES.get(method, method), fontsize=8)
        if r == 0:
            axes[r, 0].set_title("input + GT boxes", fontsize=8)
        for axis in axes[r]:
            axis.set_xticks([])
            axis.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    # A 256-colour palette keeps the file small enough to commit (noisy photos compress badly).
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    plt.close(fig)
    buffer.seek(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(buffer).convert("RGB").quantize(colors=256).save(path, optimize=True)
    return path
