"""Settle SISE's two kinds of faithfulness on benchmark databases: choose a SISE setting on half of
one model's pairs, confirm it on the other half and on every other model.

Reads ``sise benchmark`` SQLite databases (any number; runs of SISE with ``--option
sise.smoothing=s`` may share a database with the default run, each is its own configuration)
with the metrics ``ebpg``, ``distractor``, ``road`` (ROAD combined) and ``adcc``. Each
(dataset, model) in them is one *model*; each configuration one *setting*: SISE by its
``smoothing`` (0, the paper's fusion, when not given), the other methods by name. The *rivals*
are RISE, Score-CAM, Grad-CAM and Extremal Perturbation (``--rivals``: others), those that were
run.

A SISE setting **passes** on a set of pairs when, on the pairs every setting compared has:

* **EBPG first**: its mean EBPG is above every rival's;
* **distractor first**: its mean distractor energy is below every rival's (over the pairs whose
  image holds another class);
* **ROAD near best** and **ADCC near best**: it is the best, or the best rival's mean is ahead
  of it by at most 2 paired standard errors (the benchmark's italics, ``NEAR_BEST``).

The choice: on the pairs of half 0 of the choosing model (images split by a hash of their id,
so a pair never changes halves), the passing setting with the smallest σ (the paper's fusion
first). It is then checked on half 1 of that model and on all pairs and both halves of every
other model. Where no setting passes on half 0, the table shows every setting's criteria, so
the numbers say what wins where.

Usage::

    python benchmarks/faithfulness_confirm.py lite0.sqlite lite2.sqlite --out confirm.md
    python benchmarks/faithfulness_confirm.py all.sqlite --choose efficientnet_lite2
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import zlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from sise.eval.benchmark.aggregation import NEAR_BEST
from sise.eval.metrics import standard_error
from sise.methods.registry import DISPLAY_NAMES

#: The methods SISE is ranked against (the issue's), those of them a database holds.
RIVALS = ("RISE", "Score-CAM", "Grad-CAM", "Extremal Perturbation")
#: metric → (row name, higher is better): the rows the rank table shows
RANKED = {
    "ebpg": ("EBPG", True),
    "distractor": ("distractor", False),
    "road_morf": ("ROAD MoRF", False),
    "road_lerf": ("ROAD LeRF", True),
    "road": ("ROAD combined", True),
    "adcc": ("ADCC", True),
}
#: metric → higher is better: the rows a setting must pass
CRITERIA = {m: RANKED[m][1] for m in ("ebpg", "distractor", "road", "adcc")}
Pair = tuple[str, int]
# model → setting → pair → metric → value
Data = dict[str, dict[str, dict[Pair, dict[str, float]]]]


def _setting(method: str, options: dict[str, object]) -> tuple[str, float | None]:
    """A configuration's label and, for SISE, its σ."""
    if method == "sise":
        sigma = float(options.get("smoothing", 0.0) or 0.0)  # type: ignore[arg-type]
        rest = {k: v for k, v in options.items() if k != "smoothing"}
        label = "SISE" if sigma == 0 else f"SISE smoothing={sigma:g}"
        return label + (f" {rest}" if rest else ""), sigma
    return DISPLAY_NAMES.get(method, method), None


def load(paths: list[Path]) -> tuple[Data, dict[str, dict[str, float]]]:
    """The values of every database, and each model's SISE settings (label → σ)."""
    data: Data = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    sigmas: dict[str, dict[str, float]] = defaultdict(dict)
    labels: dict[tuple[str, str], str] = {}
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"no database {path}")
        with sqlite3.connect(path) as conn:
            rows = conn.execute(
                "SELECT config_id, config, image_id, class_index, metric, value "
                "FROM results_with_config"
            ).fetchall()
        for cid, text, image_id, class_index, metric, value in rows:
            config = json.loads(text)
            model = f"{config['model']['spec']} on {config['dataset'].get('kind', 'data')}"
            label, sigma = _setting(config["method"], config.get("options", {}))
            owner = labels.setdefault((model, label), cid)
            if owner != cid:  # a second configuration of the same method: tell them apart
                label = f"{label} [{cid[:6]}]"
            if sigma is not None:
                sigmas[model][label] = sigma
            data[model][label][(image_id, int(class_index))][metric] = float(value)
    return data, sigmas


def half(pair: Pair) -> int:
    return zlib.crc32(pair[0].encode()) % 2


@dataclass
class Check:
    passed: bool
    text: str


def _paired(
    rows: dict[str, dict[Pair, dict[str, float]]], a: str, b: str, metric: str, pairs: list[Pair]
) -> tuple[float, float, int]:
    """Mean and standard error of ``a − b`` over the pairs both have the metric on."""
    diffs = [
        rows[a][p][metric] - rows[b][p][metric]
        for p in pairs
        if metric in rows[a].get(p, {}) and metric in rows[b].get(p, {})
    ]
    if not diffs:
        return math.nan, math.nan, 0
    terms = torch.tensor(diffs, dtype=torch.float64)
    return float(terms.mean()), standard_error(terms), len(diffs)


def checks(
    rows: dict[str, dict[Pair, dict[str, float]]],
    setting: str,
    rivals: list[str],
    pairs: list[Pair],
) -> dict[str, Check]:
    """Each criterion of the module docstring for ``setting`` against ``rivals`` on ``pairs``."""
    out: dict[str, Check] = {}
    for metric, higher in CRITERIA.items():
        sign = 1.0 if higher else -1.0
        # setting − rival, signed so that positive means the setting is ahead
        margins = []
        for rival in rivals:
            mean, se, n = _paired(rows, setting, rival, metric, pairs)
            if n:
                margins.append((sign * mean, se, rival))
        if not margins:
            out[metric] = Check(False, "no pairs")
            continue
        worst = min(margins, key=lambda m: m[0])
        shown = f"{worst[0]:+.2f} ± {worst[1]:.2f} vs {worst[2]}"
        if metric in ("ebpg", "distractor"):
            out[metric] = Check(all(m > 0 for m, _, _ in margins), shown)
        else:
            out[metric] = Check(all(m >= 0 or -m <= NEAR_BEST * se for m, se, _ in margins), shown)
    return out


def rank(
    rows: dict[str, dict[Pair, dict[str, float]]],
    setting: str,
    rivals: list[str],
    metric: str,
) -> tuple[float, int, str, float, int] | None:
    """``setting``'s mean on ``metric`` over the pairs it and every rival have, its rank among
    them (1 = best), the best rival and its mean, and the number of pairs; None without pairs."""
    higher = RANKED[metric][1]
    named = [setting, *rivals]
    pairs = [p for p in rows[setting] if all(metric in rows[name].get(p, {}) for name in named)]
    if not pairs:
        return None
    means = {name: sum(rows[name][p][metric] for p in pairs) / len(pairs) for name in named}
    sign = 1.0 if higher else -1.0
    ahead = sum(sign * means[r] > sign * means[setting] for r in rivals)
    best = max(rivals, key=lambda r: sign * means[r])
    return means[setting], 1 + ahead, best, means[best], len(pairs)


def rank_table(
    data: Data, sigmas: dict[str, dict[str, float]], wanted: tuple[str, ...]
) -> list[str]:
    """Per model, each SISE setting's mean and rank among itself and the rivals, all pairs."""
    lines: list[str] = []
    for model, rows in data.items():
        rivals = _rivals(rows, sigmas[model], wanted)
        if not rivals:
            continue
        settings = _by_sigma(sigmas[model])
        lines += [
            "",
            f"## {model}: each SISE setting's rank among itself and {len(rivals)} rivals",
            "",
            "| setting | pairs | "
            + " | ".join(f"{name} {'↑' if higher else '↓'}" for name, higher in RANKED.values())
            + " |",
            "|---|---|" + "---|" * len(RANKED),
        ]
        for setting in settings:
            cells, counts = [], set()
            for metric in RANKED:
                found = rank(rows, setting, rivals, metric)
                if found is None:
                    cells.append("–")
                    continue
                mean, place, best, best_mean, n = found
                counts.add(n)
                cells.append(f"{mean:.2f}, {place} of {len(rivals) + 1} ({best} {best_mean:.2f})")
            used = "/".join(str(n) for n in sorted(counts)) or "0"
            lines.append(f"| {setting} | {used} | " + " | ".join(cells) + " |")
    if lines:
        lines += [
            "",
            "Each cell: the setting's mean over the pairs it and every rival have, its place "
            "(1 = best), and the best rival's mean on the same pairs. Pairs: the numbers of "
            "pairs the rows use (the distractor row has only the images with another class).",
        ]
    return lines


def subsets(rows: dict[str, dict[Pair, dict[str, float]]]) -> dict[str, list[Pair]]:
    pairs = sorted(set().union(*(set(r) for r in rows.values())))
    return {
        "all": pairs,
        "half 0": [p for p in pairs if half(p) == 0],
        "half 1": [p for p in pairs if half(p) == 1],
    }


def _by_sigma(settings: dict[str, float]) -> list[str]:
    """SISE's settings, the paper's fusion (σ = 0) first."""
    return sorted(settings, key=lambda s: settings[s])


def _rivals(
    rows: Mapping[str, object], sise: dict[str, float], wanted: tuple[str, ...]
) -> list[str]:
    return [s for s in rows if s not in sise and s in wanted]


def report(
    data: Data,
    sigmas: dict[str, dict[str, float]],
    choosing: str,
    wanted: tuple[str, ...] = RIVALS,
) -> str:
    if choosing not in data:
        raise SystemExit(f"no model {choosing!r} in the databases: {', '.join(data)}")
    rows = data[choosing]
    settings = _by_sigma(sigmas[choosing])
    if not settings:
        raise SystemExit(f"no SISE run for {choosing}")
    rivals = _rivals(rows, sigmas[choosing], wanted)
    if not rivals:
        raise SystemExit(f"none of the rivals {', '.join(wanted)} was run for {choosing}")
    choose_on = subsets(rows)["half 0"]
    chosen = next(
        (s for s in settings if all(c.passed for c in checks(rows, s, rivals, choose_on).values())),
        None,
    )
    names = ", ".join(rivals)
    lines = [f"# SISE's faithfulness: chosen on {choosing} (half 0), confirmed elsewhere", ""]
    lines.append(f"Rivals: {names}. Criteria: {', '.join(CRITERIA)} (see the script).")
    lines.append("")
    if chosen is None:
        lines.append(
            f"No SISE setting passes every criterion on half 0 of {choosing} "
            f"({len(choose_on)} pairs); every setting's criteria:"
        )
        shown = settings
    else:
        lines.append(
            f"Chosen on half 0 of {choosing} ({len(choose_on)} pairs): **{chosen}** "
            f"(σ = {sigmas[choosing][chosen]:g})"
        )
        shown = [chosen]
    lines += [
        "",
        "| setting | model | pairs | pairs used | EBPG first | distractor first | "
        "ROAD near best | ADCC near best |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for setting in shown:
        for model, model_rows in data.items():
            if setting not in model_rows:
                lines.append(f"| {setting} | {model} | – | – | not run | | | |")
                continue
            model_rivals = _rivals(model_rows, sigmas[model], wanted)
            for label, pairs in subsets(model_rows).items():
                if model == choosing and label == "all":
                    continue
                result = checks(model_rows, setting, model_rivals, pairs)
                used = len([p for p in pairs if p in model_rows[setting]])
                cells = [f"{'yes' if c.passed else 'NO'} ({c.text})" for c in result.values()]
                lines.append(
                    f"| {setting} | {model} {label} | {len(pairs)} | {used} | "
                    + " | ".join(cells)
                    + " |"
                )
    lines += [
        "",
        "Each cell: the weakest paired margin (setting − rival, mean ± standard error, signed so "
        "that + means the setting is ahead). EBPG / distractor: first means ahead of every "
        f"rival; ROAD / ADCC: near best means behind no rival by more than {NEAR_BEST:g} SE.",
    ]
    lines += rank_table(data, sigmas, wanted)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db", type=Path, nargs="+", help="benchmark databases")
    parser.add_argument(
        "--choose", default=None, help="the model to choose on (default: the first one found)"
    )
    parser.add_argument(
        "--rivals",
        default=",".join(RIVALS),
        help="comma-separated methods, as the tables name them (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    data, sigmas = load(args.db)
    if not data:
        raise SystemExit("the databases hold no results")
    choosing = args.choose or next(iter(data))
    if args.choose and " on " not in choosing:
        found = [m for m in data if m.startswith(f"{choosing} on ")]
        choosing = found[0] if found else choosing
    wanted = tuple(r.strip() for r in args.rivals.split(",") if r.strip())
    text = report(data, sigmas, choosing, wanted)
    print(text)
    if args.out:
        args.out.write_text(text)
    return text


if __name__ == "__main__":
    main()
