"""Choose SISE's ``smoothing`` on one model's sweep and confirm it on another's and on data halves.

Reads the per-pair CSV files that ``fusion_sweep.py --out NAME.md`` writes beside its tables
(one per model) and, for each baseline (RISE, Score-CAM):

1. on the first file (the *choosing* model), picks the smallest σ that ties or beats the baseline
   on the model-truth metrics — paired mean difference on Drop% at most +1 standard error and on
   Increase% at least −1 SE, masked-out pixels at the model-space zero — while SISE stays first
   on the ground-truth ones (EBPG above every baseline and the centre prior, distractor energy
   below every baseline, both by more than 1 SE);
2. checks that σ on every other file and on the two halves of every file (images split by a hash
   of their id, as in the sweep).

Usage::

    python benchmarks/fusion_confirm.py lite0.csv lite2.csv --out confirm.md
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

import torch

from sise.eval.metrics import standard_error

BASELINES = ("RISE", "Score-CAM")
CENTRE = "centred Gaussian σ=0.25"
PAPER = "SISE (paper, binary gate)"


def load(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    """``rows[setting][pair][metric]``, with ``half`` kept as a metric."""
    rows: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            values = {
                k: float(v) if v not in ("", None) else math.nan
                for k, v in row.items()
                if k not in ("pair", "setting")
            }
            rows[row["setting"]][row["pair"]] = values
    return rows


def paired(rows, a: str, b: str, metric: str, pairs: list[str]) -> tuple[float, float, int]:
    """Mean and standard error of ``a − b`` over the pairs where both have the metric."""
    diffs = [
        rows[a][p][metric] - rows[b][p][metric]
        for p in pairs
        if p in rows[a]
        and p in rows[b]
        and not math.isnan(rows[a][p][metric])
        and not math.isnan(rows[b][p][metric])
    ]
    if not diffs:
        return math.nan, math.nan, 0
    terms = torch.tensor(diffs, dtype=torch.float64)
    return float(terms.mean()), standard_error(terms), len(diffs)


def smoothing_settings(rows) -> list[tuple[float, str]]:
    found = [(0.0, PAPER)]
    for name in rows:
        if name.startswith("SISE smoothing="):
            found.append((float(name.split("=")[1]), name))
    return sorted(found)


def checks(rows, setting: str, baseline: str, pairs: list[str]) -> dict[str, tuple[bool, str]]:
    """Each criterion: passed, and the paired difference that decided it."""
    out: dict[str, tuple[bool, str]] = {}
    rivals = [b for b in BASELINES if b in rows] + ([CENTRE] if CENTRE in rows else [])
    ebpg = [paired(rows, setting, r, "ebpg", pairs) for r in rivals]
    worst = min(ebpg, key=lambda t: t[0] - t[1])
    out["EBPG first"] = (all(m - se > 0 for m, se, _ in ebpg), f"{worst[0]:+.1f} ± {worst[1]:.1f}")
    distractor = [paired(rows, setting, b, "distractor", pairs) for b in BASELINES if b in rows]
    worst = max(distractor, key=lambda t: t[0] + t[1])
    out["distractor first"] = (
        all(m + se < 0 for m, se, _ in distractor),
        f"{worst[0]:+.1f} ± {worst[1]:.1f}",
    )
    m, se, _ = paired(rows, setting, baseline, "drop_zero", pairs)
    out["Drop% ties"] = (m <= se, f"{m:+.1f} ± {se:.1f}")
    m, se, _ = paired(rows, setting, baseline, "increase_zero", pairs)
    out["Increase% ties"] = (m >= -se, f"{m:+.1f} ± {se:.1f}")
    return out


def halves(rows) -> dict[str, list[str]]:
    pairs = sorted(rows[PAPER])
    return {
        "all": pairs,
        "half 0": [p for p in pairs if rows[PAPER][p]["half"] == 0],
        "half 1": [p for p in pairs if rows[PAPER][p]["half"] == 1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, nargs="+", help="choosing model first")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    data = {path.stem: load(path) for path in args.csv}
    choosing = args.csv[0].stem
    lines = [f"# Choosing `smoothing` on {choosing}, confirming on the rest", ""]
    for baseline in BASELINES:
        rows = data[choosing]
        pairs = halves(rows)["all"]
        chosen = None
        for sigma, name in smoothing_settings(rows):
            if all(ok for ok, _ in checks(rows, name, baseline, pairs).values()):
                chosen = (sigma, name)
                break
        lines.append(f"## Against {baseline}")
        lines.append("")
        if chosen is None:
            lines.append(
                f"No σ of the sweep ties {baseline} on Drop% and Increase% while staying first "
                f"on EBPG and distractor energy on {choosing} ({len(pairs)} pairs). Closest:"
            )
            lines.append("")
            candidates = smoothing_settings(rows)
        else:
            lines.append(f"Chosen on {choosing} ({len(pairs)} pairs): smoothing = {chosen[0]:g}")
            lines.append("")
            candidates = [chosen]
        header = (
            "| σ | data | pairs | EBPG first | distractor first | Drop% ties | Increase% ties |"
        )
        lines += [header, "|---|---|---|---|---|---|---|"]
        for sigma, name in candidates if chosen else candidates[-3:]:
            for model, rows_m in data.items():
                for label, subset in halves(rows_m).items():
                    result = checks(rows_m, name, baseline, subset)
                    cells = [f"{'yes' if ok else 'NO'} ({text})" for ok, text in result.values()]
                    lines.append(
                        f"| {sigma:g} | {model} {label} | {len(subset)} | "
                        + " | ".join(cells)
                        + " |"
                    )
        lines.append("")
    lines.append(
        "Differences are paired means ± standard error (setting − rival; EBPG: the weakest "
        "margin over RISE, Score-CAM and the centre prior; distractor: the weakest over RISE "
        "and Score-CAM). Drop%/Increase%: masked-out pixels at the model-space zero."
    )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
