"""The ``sise`` command line: explain a photo, compare methods, run benchmarks."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from sise import __version__
from sise.errors import SiseError
from sise.images import load_image, sample_image_path
from sise.methods.registry import DISPLAY_NAMES, METHODS, canonical_name, make_explainer
from sise.models.loading import DEMO_MODEL, LoadedModel, load_model
from sise.options import method_key, parse_option

#: ``--size`` bounds: below, no CNN keeps a feature map; above, one image fills gigabytes.
MIN_SIZE, MAX_SIZE = 8, 4096
#: ``--batch-size`` when it is not given: sized from the free memory (as the Python API).
DEFAULT_BATCH_SIZE = "auto"


def _image_size(text: str) -> int:
    """argparse type of ``--size``: an integer number of pixels in [MIN_SIZE, MAX_SIZE]."""
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of pixels") from None
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise argparse.ArgumentTypeError(
            f"{size} px is out of range: use {MIN_SIZE} to {MAX_SIZE} (224 for ImageNet models)"
        )
    return size


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _batch_size(text: str) -> int | str:
    """argparse type of ``--batch-size``: ``auto`` or a whole number >= 1."""
    if text.strip().lower() == "auto":
        return "auto"
    return _positive_int(text)


def _mu(text: str) -> float:
    """argparse type of ``--mu``: SISE's selection threshold, a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is out of range: use 0 <= mu < 1")
    return value


def _device(text: str) -> str:
    """argparse type of ``--device``: a device torch knows and this machine has."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}: use cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"{text!r}: this machine has no CUDA GPU that torch can use; use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available; use --device cpu")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"unsupported device {text!r}: use cpu, cuda or mps")
    return text


def _add_model_arguments(parser: argparse.ArgumentParser, many: bool = False) -> None:
    if many:
        parser.add_argument(
            "images",
            nargs="*",
            metavar="IMAGE",
            help="image files, folders or glob patterns ('photos/*.jpg'); default: the cat photo "
            "shipped with sise",
        )
    else:
        parser.add_argument(
            "image",
            nargs="?",
            help="photo to explain (default: the cat photo shipped with sise)",
        )
    parser.add_argument(
        "--model",
        default=None,
        help=f"{DEMO_MODEL} (default, offline ImageNet weights), a torchvision name "
        "(resnet50, vgg16, ...) or timm:NAME",
    )
    parser.add_argument(
        "--checkpoint", help="state-dict file to load instead of pretrained weights"
    )
    parser.add_argument("--num-classes", type=int, help="output size of the checkpoint's head")
    parser.add_argument("--classes", help="text file with one class name per line")
    parser.add_argument("--target", help="class to explain, as an index or a name (default: top-1)")
    parser.add_argument(
        "--device", type=_device, default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument(
        "--size", type=_image_size, default=224, help="input size in pixels (square)"
    )
    parser.add_argument(
        "--batch-size",
        type=_batch_size,
        default=None,
        help="masked inputs per forward pass of SISE, Score-CAM and RISE: a number or 'auto' "
        "(default: as many as fit in the free GPU memory, 32 on a CPU)",
    )
    parser.add_argument("--score", default="softmax", choices=["softmax", "sigmoid", "logit"])
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--option",
        action="append",
        metavar="METHOD.KEY=VALUE",
        help="a method option, e.g. rise.n_masks=2000 or extremal.iterations=300 (repeatable)",
    )


def _image_path(args: argparse.Namespace) -> Path:
    image = getattr(args, "image", None)
    if image is None and getattr(args, "images", None):
        image = args.images[0]
    return Path(image) if image else sample_image_path("chelsea")


def _read_class_names(path: Path) -> list[str]:
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise SiseError(
            f"--classes {str(path)!r} {what}: give a text file with one class name per line"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SiseError(f"could not read --classes {str(path)!r}: {error}") from error
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise SiseError(f"--classes {str(path)!r} holds no class names: write one per line")
    return names


def _load(args: argparse.Namespace) -> tuple[LoadedModel, str, torch.Tensor, np.ndarray]:
    """The model, and the one photo of ``sise compare`` (read first: a bad photo fails fast)."""
    image_path = _image_path(args)
    rgb = load_image(image_path)
    loaded = _load_model(args)
    return loaded, str(image_path), loaded.preprocess(rgb), rgb


def _load_model(args: argparse.Namespace) -> LoadedModel:
    names = _read_class_names(Path(args.classes)) if args.classes else None
    if args.checkpoint and not args.model:
        raise SiseError("--checkpoint needs --model to say which architecture the weights fit")
    name = args.model or DEMO_MODEL
    try:
        loaded = load_model(
            name,
            args.checkpoint,
            num_classes=args.num_classes,
            class_names=names,
            device=args.device,
            input_size=(args.size, args.size),
        )
    except OSError as error:  # urllib's URLError, Hugging Face's hub errors: no download
        raise SiseError(
            f"could not get the pretrained weights of {name!r} ({error}). Without internet, pass "
            f"--checkpoint FILE with the weights, or use the offline demo model {DEMO_MODEL!r}"
        ) from error
    return loaded


def _print_predictions(loaded: LoadedModel, inputs: torch.Tensor, score: str) -> None:
    with torch.no_grad():
        logits = loaded.model(inputs)[0]
    probs = logits.sigmoid() if score == "sigmoid" else logits.softmax(dim=0)
    top = probs.topk(min(5, probs.numel()))
    print("top-5 predictions:")
    for rank, (p, i) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True), 1):
        print(f"  {rank}. {loaded.class_names[i]:<30} {p:.3f}  (class {i})")


def _parse_option(text: str) -> tuple[str, str, object]:
    """``METHOD.KEY=VALUE`` as a checked triple (the grammar: :mod:`sise.options`)."""
    return parse_option(text)


def _method_options(args: argparse.Namespace, method: str) -> dict[str, object]:
    options: dict[str, object] = {"score": args.score}
    if method in ("sise", "scorecam", "rise"):
        options["batch_size"] = args.batch_size
    if method == "sise":
        options.update(
            mu=args.mu,
            selection="adaptive" if args.adaptive else "fixed",
            baseline=args.baseline,
            gate=args.gate,
            progress=not args.no_progress,
        )
    # every --option is checked, also those for methods this command does not run
    for text in args.option or []:
        target, key, value = _parse_option(text)
        if target == method_key(method):
            options[key] = value
    return options


#: The method flags of ``sise explain``: attribute -> (flag, constructor parameter, default).
#: A flag given for a method whose constructor lacks the parameter is refused, never dropped.
METHOD_FLAGS: dict[str, tuple[str, str, object]] = {
    "mu": ("--mu", "mu", 0.0),
    "adaptive": ("--adaptive", "selection", False),
    "baseline": ("--baseline", "baseline", "zero"),
    "gate": ("--gate", "gate", "binary"),
    "batch_size": ("--batch-size", "batch_size", DEFAULT_BATCH_SIZE),
}


def _given_flags(args: argparse.Namespace) -> dict[str, tuple[str, object]]:
    """The method flags given on the command line, as ``parameter: (flag, value)``.

    They default to ``None`` in the parser, so that a flag given is told from one left out;
    their defaults are put back into ``args`` here.
    """
    given: dict[str, tuple[str, object]] = {}
    for attribute, (flag, parameter, default) in METHOD_FLAGS.items():
        value = getattr(args, attribute, None)
        if value is None:
            setattr(args, attribute, default)
            continue
        if attribute == "adaptive":
            value = "adaptive" if value else "fixed"
        given[parameter] = (flag, value)
    return given


def _takes(method: str, parameter: str) -> bool:
    """Whether the method's constructor has a parameter of that name."""
    parameters = inspect.signature(METHODS[method]).parameters
    return parameter in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _apply_flags(
    methods: Sequence[str],
    options: dict[str, dict[str, object]],
    given: dict[str, tuple[str, object]],
) -> None:
    """Put each given flag into the options of the methods that take it; refuse a flag that
    none of them takes (``sise explain --method rise --gate soft``)."""
    for parameter, (flag, value) in given.items():
        takers = [m for m in methods if _takes(m, parameter)]
        if not takers:
            names = ", ".join(DISPLAY_NAMES.get(m, m) for m in methods)
            users = ", ".join(DISPLAY_NAMES.get(m, m) for m in METHODS if _takes(m, parameter))
            raise SiseError(f"{flag} does not apply to {names}: it is an option of {users}")
        for method in takers:
            options[method][parameter] = value


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _check_outputs(
    outputs: Sequence[Path],
    args: argparse.Namespace,
    images: Sequence[Path] | None = None,
    suffixes: Sequence[str] | None = None,
) -> None:
    """Refuse, before any work, an output that cannot be written or that is one of the inputs
    (by name, or another name of the same file: a link)."""
    from sise.viz import IMAGE_SUFFIXES, check_output_path

    inputs = list(images) if images is not None else [_image_path(args)]
    inputs += [Path(p) for p in (args.classes, args.checkpoint) if p]
    names = {path.resolve() for path in inputs}
    files = {(s.st_dev, s.st_ino) for s in (_stat(path) for path in inputs) if s is not None}
    for out in outputs:
        check_output_path(out, suffixes or IMAGE_SUFFIXES)
        status = _stat(out)
        if out.resolve() in names or (
            status is not None and (status.st_dev, status.st_ino) in files
        ):
            flag = "--out" if args.out is not None else "--out-dir"
            raise SiseError(
                f"{str(out)!r} is an input of this command: it would be overwritten; "
                f"give another {flag}"
            )


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def _explain_settings(
    args: argparse.Namespace, method: str, options: dict[str, object], loaded_name: str
) -> dict[str, object]:
    """What makes two runs give the same results (for resuming): not the batch size."""
    return {
        "model": loaded_name,
        "checkpoint": str(Path(args.checkpoint).resolve()) if args.checkpoint else None,
        "classes": str(Path(args.classes).resolve()) if args.classes else None,
        "method": method,
        "options": {k: v for k, v in options.items() if k not in ("progress", "batch_size")},
        "target": args.target,
        "size": args.size,
        "score": args.score,
    }


def _write_pictures(loaded: LoadedModel, method: str):
    """The writer of one image's overlay (and SISE's layer panel)."""
    from sise.methods.sise import SISEExplanation
    from sise.viz import save_layer_panel, save_overlay

    def write(image: Path, rgb: np.ndarray, explanation, index: int, plan) -> None:
        save_overlay(plan.overlay, rgb, explanation.maps[index])
        if plan.panel is not None and isinstance(explanation, SISEExplanation):
            cls = int(explanation.targets[index])
            save_layer_panel(
                plan.panel,
                rgb,
                explanation.layer_maps[index],
                explanation.layer_names,
                explanation.kept_maps[index].tolist(),
                explanation.maps[index],
                title=f"{loaded.class_names[cls]} — {loaded.name}",
            )

    return write


def command_explain(args: argparse.Namespace) -> int:
    from sise.cli.many_images import (
        RESULTS_FILE,
        ImageOutputs,
        ResultsLog,
        expand_inputs,
        explain_images,
        names_many,
        plan_outputs,
    )

    method = canonical_name(args.method)
    specs = list(args.images) or [str(sample_image_path("chelsea"))]
    many = names_many(specs) or args.out_dir is not None or args.save_maps
    out_dir = Path(args.out_dir) if args.out_dir is not None else Path(".")
    if args.out is not None and many:
        raise SiseError(
            "--out names the picture of one image: for several images, a folder or --save-maps "
            "give the output folder with --out-dir"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise SiseError(f"--out-dir {str(out_dir)!r} is a file: give a folder")
    images = expand_inputs(specs, out_dir if many else None, METHODS)
    if many:
        plans = plan_outputs(
            images, out_dir, method, panel=method == "sise", save_maps=args.save_maps
        )
        outputs = [path for plan in plans for path in plan.paths()] + [out_dir / RESULTS_FILE]
        suffixes: tuple[str, ...] | None = (".png", ".npz", ".jsonl")
    else:
        out = Path(args.out or f"{images[0].stem}_{method}.png")
        panel = out.with_name(out.stem + "_layers" + out.suffix)
        plans = [ImageOutputs(out, panel if method == "sise" else None)]
        outputs, suffixes = plans[0].paths(), None
    _check_outputs(outputs, args, images, suffixes)
    given = _given_flags(args)
    options = {method: _method_options(args, method)}
    _apply_flags([method], options, given)
    if many and "progress" in options[method]:
        options[method]["progress"] = False  # one bar for the whole run, over the images
    loaded = _load_model(args)
    target = loaded.class_index(args.target) if args.target is not None else None
    try:
        explainer = make_explainer(method, loaded.model, **options[method])
    except TypeError as error:
        raise SiseError(f"bad --option for {method}: {error}") from error
    write = _write_pictures(loaded, method)
    if many:
        # several images per call fill a GPU; a CPU gains little and holds them all in memory
        default_pack = 8 if loaded.device.type == "cuda" else 1
        pack = args.pack if args.pack is not None else default_pack
        summary = explain_images(
            explainer,
            loaded,
            images,
            plans,
            target=target,
            log=ResultsLog(out_dir / RESULTS_FILE),
            settings=_explain_settings(args, method, options[method], loaded.name),
            pack=pack,
            progress=not args.no_progress,
            write_pictures=write,
        )
        print(
            f"{len(images)} image(s): {summary.explained} explained, {summary.skipped} already "
            f"done, {summary.failed} failed; results in {out_dir / RESULTS_FILE}"
        )
        return 1 if summary.failed else 0

    rgb = load_image(images[0])
    inputs = loaded.preprocess(rgb)
    _print_predictions(loaded, inputs, args.score)
    start = time.perf_counter()
    explanation = explainer(inputs, target)
    seconds = time.perf_counter() - start
    cls = int(explanation.targets[0])
    print(
        f"explained class: {loaded.class_names[cls]} (class {cls}, "
        f"{args.score} {float(explanation.scores[0]):.3f})"
    )
    print(
        f"{DISPLAY_NAMES.get(method, method)}: {seconds:.1f} s, "
        f"{int(explanation.forward_passes[0])} forward passes"
    )
    write(images[0], rgb, explanation, 0, plans[0])
    for path in plans[0].paths():
        if path.exists():
            print(f"wrote {path}")
    return 0


def command_compare(args: argparse.Namespace) -> int:
    if args.methods is None:
        methods = list(DISPLAY_NAMES)
    else:
        methods = [canonical_name(m.strip()) for m in args.methods.split(",") if m.strip()]
        if not methods:
            raise SiseError(
                f"--methods {args.methods!r} names no method: give a comma-separated list of "
                f"{', '.join(METHODS)}"
            )
    image_path = _image_path(args)
    out = Path(args.out or f"{image_path.stem}_compare.png")
    _check_outputs([out], args)
    given = _given_flags(args)
    options = {method: _method_options(args, method) for method in methods}
    _apply_flags(methods, options, given)
    loaded, _, inputs, rgb = _load(args)
    _print_predictions(loaded, inputs, args.score)
    target = loaded.class_index(args.target) if args.target is not None else None
    results = []
    for method in methods:
        try:
            explainer = make_explainer(method, loaded.model, **options[method])
        except TypeError as error:
            raise SiseError(f"bad --option for {method}: {error}") from error
        start = time.perf_counter()
        explanation = explainer(inputs, target)
        seconds = time.perf_counter() - start
        print(f"  {DISPLAY_NAMES.get(method, method):<24} {seconds:7.2f} s")
        results.append((DISPLAY_NAMES.get(method, method), explanation.maps[0], seconds))
    from sise.viz import save_comparison

    cls = int(explanation.targets[0])
    save_comparison(out, rgb, results, title=f"{loaded.class_names[cls]} — {loaded.name}")
    print(f"wrote {out}")
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like the package's own."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sise",
        description="Explain CNN image classifiers with SISE (AAAI-21) and the methods it is "
        "compared against.",
    )
    parser.add_argument("--version", action="version", version=f"sise {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    explain = commands.add_parser(
        "explain",
        help="explain photos with one method",
        description="Explain one photo, or many: files, folders and glob patterns. With several "
        "images, a folder, a pattern, --out-dir or --save-maps, each image's results go to the "
        "output folder (its overlay, SISE's layer panel, with --save-maps its maps as .npz) with "
        "one JSON line in results.jsonl; images already done are skipped. A file that fails is "
        "reported and the run goes on; the exit status is then 1.",
    )
    _add_model_arguments(explain, many=True)
    explain.add_argument("--method", default="sise", help=f"one of: {', '.join(DISPLAY_NAMES)}")
    explain.add_argument(
        "--out",
        help="one image: the heat-map overlay to write (.png, .jpg, ...; never one of the "
        "inputs); the SISE layer panel goes beside it as *_layers.png",
    )
    explain.add_argument(
        "--out-dir",
        help="folder for the results of many images (default: the current folder)",
    )
    explain.add_argument(
        "--save-maps",
        action="store_true",
        help="also save each image's raw maps as <stem>_<method>.npz (map, and SISE's "
        "layer_maps, kept_maps, layer_names)",
    )
    explain.add_argument(
        "--pack",
        type=_positive_int,
        help="images per method call (default: 8 on a GPU, 1 on a CPU)",
    )
    # Method flags default to None so that one given can be told from one left out: a flag the
    # method does not take is refused (see METHOD_FLAGS).
    explain.add_argument("--mu", type=_mu, help="SISE: keep maps with α > μ·β (default 0)")
    explain.add_argument(
        "--adaptive", action="store_true", default=None, help="SISE: Ada-SISE map selection"
    )
    explain.add_argument(
        "--baseline",
        choices=["zero", "blur"],
        help="what masked-out pixels become (SISE, Score-CAM, RISE, Integrated Gradients; "
        "default zero)",
    )
    explain.add_argument(
        "--gate", choices=["binary", "soft"], help="SISE's fusion gate (default binary)"
    )
    explain.set_defaults(handler=command_explain)

    compare = commands.add_parser("compare", help="all methods on one photo, side by side")
    _add_model_arguments(compare)
    compare.add_argument("--methods", help="comma-separated subset (default: all eight)")
    compare.add_argument("--out", help="figure to write (.png, .jpg, ...)")
    compare.set_defaults(handler=command_compare)
    _add_benchmark_command(commands)
    from sise.web.app import add_app_command

    add_app_command(commands)
    return parser


def _add_benchmark_command(commands: argparse._SubParsersAction) -> None:
    from sise.eval.benchmark.scoring import ALL_METRICS, MetricSettings

    bench = commands.add_parser(
        "benchmark",
        help="the paper's benchmark: every (image, class) pair, every method, every metric",
        description="Explain every ground-truth class of every image with each method, score "
        "the maps with the paper's metrics, store the per-pair results in SQLite (resumable) and "
        "print the paper's table. Scale out with torchrun --nproc_per_node=K -m sise.cli "
        "benchmark ... or --nproc K.",
    )
    bench.add_argument(
        "--dataset",
        required=True,
        help="voc2007:PATH, coco2014:PATH, synthetic[:PATH] or photos[:PATH]",
    )
    bench.add_argument(
        "--model",
        default=DEMO_MODEL,
        help=f"{DEMO_MODEL} (default: the offline demo model), synthetic-vgg, synthetic-resnet, "
        "torchray-vgg16:CKPT, torchray-resnet50:CKPT, a torchvision name or timm:NAME (with "
        "--checkpoint)",
    )
    bench.add_argument("--checkpoint", help="weights for a torchvision / timm model")
    bench.add_argument("--methods", help="comma-separated (default: all registered methods)")
    bench.add_argument(
        "--metrics", default=",".join(ALL_METRICS), help="comma-separated (default: all)"
    )
    bench.add_argument("--limit", type=int, help="first N images of the split")
    bench.add_argument("--split", help="dataset split (default test; val2014 for COCO)")
    bench.add_argument("--db", default="results.sqlite", help="SQLite results file")
    bench.add_argument("--out", help="folder for the Markdown/CSV tables and the figure")
    bench.add_argument("--name", help="file-name stem of the outputs")
    bench.add_argument("--size", type=int, help="input size (default: the model's own)")
    bench.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    bench.add_argument(
        "--score",
        choices=["softmax", "sigmoid", "logit"],
        help="explained score (default: softmax for the single-label photos set, sigmoid for "
        "the multi-label VOC, COCO and synthetic data)",
    )
    for setting in dataclasses.fields(MetricSettings):  # the metric settings, each once
        bench.add_argument(
            f"--{setting.name.replace('_', '-')}",
            type=_setting_type(setting.name),
            default=setting.default,
            choices=setting.metadata.get("choices"),
            help=str(setting.metadata.get("help", "")).replace("%", "%%"),  # argparse formats
        )
    bench.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="a method option, e.g. extremal.iterations=300 or extremal.areas=0.05,0.1 "
        "(repeatable)",
    )
    bench.add_argument(
        "--no-scale-pixel-options",
        action="store_true",
        help="keep Extremal Perturbation's pixel-sized defaults (meant for 224 px) as they are",
    )
    bench.add_argument(
        "--batch-size",
        type=_batch_size,
        default="auto",
        help="masked inputs per forward pass, or 'auto' (default: sized from the free GPU "
        "memory, 32 on a CPU)",
    )
    bench.add_argument(
        "--pack", type=int, help="pairs explained per method call (default: 8 on a GPU, 1 on a CPU)"
    )
    bench.add_argument(
        "--workers",
        type=int,
        help="processes reading the next images ahead (default: 4 on a GPU, 0 on a CPU)",
    )
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--figure-pairs", type=int, default=4, help="pairs in the example figure")
    bench.add_argument("--no-progress", action="store_true")
    bench.add_argument(
        "--distributed", action="store_true", help="require a torchrun (torch.distributed) launch"
    )
    bench.add_argument("--nproc", type=int, help="run in K local processes (no torchrun needed)")
    bench.add_argument(
        "--report-only", action="store_true", help="only print the table from the database"
    )
    bench.add_argument(
        "--all-pairs",
        action="store_true",
        help="aggregate each method over the pairs it completed (default: only the pairs every "
        "method completed)",
    )
    bench.add_argument("--throttle", type=float, default=0.0, help=argparse.SUPPRESS)
    bench.set_defaults(handler=command_benchmark)


def _setting_type(name: str) -> type:
    """The argparse type of a :class:`~sise.eval.benchmark.scoring.MetricSettings` field (its annotation,
    without ``| None``)."""
    import typing

    from sise.eval.benchmark.scoring import MetricSettings

    hint = typing.get_type_hints(MetricSettings)[name]
    types = [t for t in typing.get_args(hint) or (hint,) if t is not type(None)]
    return types[0] if isinstance(types[0], type) else str


def _default_benchmark_score(dataset: str) -> str:
    """Softmax for ImageNet classifiers on the photos set; sigmoid for multi-label data."""
    return "softmax" if dataset.partition(":")[0].strip().lower() == "photos" else "sigmoid"


def command_benchmark(args: argparse.Namespace) -> int:
    from sise.eval.benchmark.run import BenchmarkConfig, run_benchmark, run_benchmark_local
    from sise.eval.benchmark.scoring import MetricSettings
    from sise.options import parse_method_options

    methods = (
        [m.strip() for m in args.methods.split(",") if m.strip()]
        if args.methods is not None
        else [m for m in DISPLAY_NAMES if m in METHODS]
    )
    if args.nproc is not None and args.nproc < 1:
        raise SiseError(f"--nproc must be at least 1, got {args.nproc}")
    config = BenchmarkConfig(
        dataset=args.dataset,
        model=args.model,
        methods=methods,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
        db=args.db,
        out=args.out,
        limit=args.limit,
        split=args.split,
        checkpoint=args.checkpoint,
        input_size=args.size,
        device=args.device,
        score=args.score or _default_benchmark_score(args.dataset),
        metric_settings=MetricSettings(
            **{f.name: getattr(args, f.name) for f in dataclasses.fields(MetricSettings)}
        ),
        method_options=parse_method_options(args.option),
        scale_pixel_options=not args.no_scale_pixel_options,
        batch_size=args.batch_size,
        pack=args.pack,
        workers=args.workers,
        seed=args.seed,
        figure_pairs=args.figure_pairs,
        name=args.name,
        progress=not args.no_progress,
        throttle=args.throttle,
        report_only=args.report_only,
        common_only=not args.all_pairs,
    )
    config.validate()  # before any process starts or anything is computed
    if args.nproc is not None and args.nproc > 1:
        run_benchmark_local(config, args.nproc)
        return 0
    result = run_benchmark(config, distributed=args.distributed)
    if result is not None:
        print(result.markdown)
        for path in result.files:
            print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad input is one line on stderr and exit status 2, Ctrl-C 130."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except SiseError as error:
        print(f"sise: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sise: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report it


if __name__ == "__main__":
    raise SystemExit(main())
