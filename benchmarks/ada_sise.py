"""Ada-SISE against SISE: masked forwards saved, and what it costs in EBPG and Drop%.

Runs both selections on the same (image, class) pairs of the synthetic benchmark (the held-out
split the shipped models never saw) and prints, per model, the mean forward passes, seconds,
EBPG and Drop% of each, and the change. Usage::

    python benchmarks/ada_sise.py --limit 25          # both small models, first 25 images
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import UTC, datetime

import numpy as np
import torch

from sise import SISE
from sise.eval.benchmark.models import load_benchmark_model
from sise.eval.data import gt_mask, load_dataset, select_pairs
from sise.eval.metrics import drop_and_increase, energy_pointing_game
from sise.images import load_image


def measure(model_name: str, limit: int) -> dict[str, dict[str, float]]:
    kind, dataset, _ = load_dataset("synthetic")
    loaded = load_benchmark_model(model_name, dataset=kind, class_names=dataset.class_names)
    pairs = select_pairs(dataset, limit)
    results: dict[str, dict[str, list[float]]] = {}
    for selection in ("fixed", "adaptive"):
        explainer = SISE(loaded.model, selection=selection, score="sigmoid")
        rows = results.setdefault(
            selection, {"forwards": [], "seconds": [], "ebpg": [], "drop": []}
        )
        for pair in pairs:
            x = loaded.preprocess(load_image(pair.image_path))
            target = torch.tensor([pair.class_index])
            start = time.perf_counter()
            explanation = explainer(x, target)
            rows["seconds"].append(time.perf_counter() - start)
            rows["forwards"].append(float(explanation.forward_passes[0]))
            gt = gt_mask(pair, *x.shape[-2:])[None]
            rows["ebpg"].append(float(energy_pointing_game(explanation.maps, gt)[0]))
            drop, _ = drop_and_increase(loaded.model, x, target, explanation.maps, score="sigmoid")
            rows["drop"].append(float(drop[0]))
    return {s: {k: float(np.mean(v)) for k, v in r.items()} for s, r in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=25, help="first N test images")
    parser.add_argument("--models", default="synthetic-vgg,synthetic-resnet")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(
        f"Ada-SISE vs SISE, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, CPU"
    )
    print("model             | selection | forwards/pair | s/pair | EBPG ↑ | Drop% ↓")
    print("------------------+-----------+---------------+--------+--------+--------")
    for model_name in args.models.split(","):
        stats = measure(model_name, args.limit)
        for selection, row in stats.items():
            print(
                f"{model_name:<17} | {selection:<9} | {row['forwards']:13.1f} | {row['seconds']:6.3f} "
                f"| {row['ebpg']:6.2f} | {row['drop']:6.2f}"
            )
        fixed, ada = stats["fixed"], stats["adaptive"]
        saved = 100 * (1 - ada["forwards"] / fixed["forwards"])
        print(
            f"{'':<17} | change    | {saved:12.1f}% fewer | {100 * (1 - ada['seconds'] / fixed['seconds']):5.1f}% less "
            f"| {ada['ebpg'] - fixed['ebpg']:+6.2f} | {ada['drop'] - fixed['drop']:+6.2f}"
        )


if __name__ == "__main__":
    main()
