"""The CPU fast path of the masked forwards on the real EfficientNet-Lite0 and both packaged photos.

Runs SISE, Ada-SISE, Score-CAM and RISE (1,000 masks) twice in one process: as they run by default
on a CPU (channels-last inputs, prepacked convolution weights, folded batch norms) and with NCHW
inputs (``Runtime(channels_last=False)``: folded, not prepacked). Prints the seconds
of each, the largest difference between their maps, the lowest Pearson r over the two photos and
the forward passes.

    OMP_NUM_THREADS=2 python benchmarks/cpu_fast_path_real.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from sise import RISE, SISE, Explainer, Runtime, ScoreCAM
from sise.images import load_image, sample_image_path
from sise.models.loading import load_model

#: The default CPU path (channels-last inputs: prepacked, folded) and NCHW inputs (folded only).
RUNTIMES = {"default": Runtime(), "nchw": Runtime(channels_last=False)}


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


def main() -> None:
    demo = load_model("demo")
    photos = ("coffee", "chelsea")
    x = torch.cat([demo.preprocess(load_image(sample_image_path(p))) for p in photos])
    methods: dict[str, Callable[[Runtime], Explainer]] = {
        "SISE": lambda runtime: SISE(demo.model, runtime=runtime),
        "Ada-SISE": lambda runtime: SISE(demo.model, selection="adaptive", runtime=runtime),
        "Score-CAM": lambda runtime: ScoreCAM(demo.model, runtime=runtime),
        "RISE 1000": lambda runtime: RISE(demo.model, n_masks=1000, runtime=runtime),
    }
    print(f"real EfficientNet-Lite0, photos {photos}, {torch.get_num_threads()} threads")
    print("method     | default s | NCHW s | max |diff| | min r     | forwards")
    for name, make in methods.items():
        runs = {}
        for mode, runtime in RUNTIMES.items():
            start = time.perf_counter()
            runs[mode] = (make(runtime)(x), time.perf_counter() - start)
        (fast, fast_s), (plain, plain_s) = runs["default"], runs["nchw"]
        diff = float((fast.maps - plain.maps).abs().max())
        r = min(pearson(fast.maps[i], plain.maps[i]) for i in range(len(photos)))
        forwards = fast.forward_passes.tolist()
        same = "same" if forwards == plain.forward_passes.tolist() else "DIFFERENT"
        print(
            f"{name:<10} | {fast_s:9.2f} | {plain_s:6.2f} | {diff:10.1e} | {r:.6f} | "
            f"{forwards} ({same})",
            flush=True,
        )


if __name__ == "__main__":
    main()
