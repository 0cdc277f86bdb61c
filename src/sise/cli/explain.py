"""``sise explain``: one method on one photo, or on many (files, folders, glob patterns)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sise.cli.arguments import (
    METHOD_NAMES,
    add_model_arguments,
    positive_int,
    resolve_device,
    selection_threshold,
)
from sise.errors import SiseError

# torch and the methods are imported by the command itself, not here: ``sise --help`` builds
# this command's parser and should not wait for them.
if TYPE_CHECKING:
    import numpy as np

    from sise.models.loading import LoadedModel


def add_explain_command(commands: argparse._SubParsersAction) -> None:
    """Add ``sise explain`` to the command line's sub-commands."""
    explain = commands.add_parser(
        "explain",
        help="explain photos with one method",
        description="Explain one photo, or many: files, folders and glob patterns. With several "
        "images, a folder, a pattern, --out-dir or --save-maps, each image's results go to the "
        "output folder (its overlay, SISE's layer panel, with --save-maps its maps as .npz) with "
        "one JSON line in results.jsonl; images already done are skipped. A file that fails is "
        "reported and the run goes on; the exit status is then 1.",
    )
    add_model_arguments(explain, many=True)
    explain.add_argument("--method", default="sise", help=f"one of: {', '.join(METHOD_NAMES)}")
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
        type=positive_int,
        help="images per method call (default: 8 on a GPU, 1 on a CPU)",
    )
    # Method flags default to None so that one given can be told from one left out: a flag the
    # method does not take is refused (see sise.cli.method_options.METHOD_FLAGS).
    explain.add_argument(
        "--mu", type=selection_threshold, help="SISE: keep maps with α > μ·β (default 0)"
    )
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


def _explain_settings(
    args: argparse.Namespace, method: str, options: dict[str, object], loaded_name: str, score: str
) -> dict[str, object]:
    """What makes two runs give the same results (for resuming): not the batch size. ``score``
    is the explainer's (its own default where ``--score`` is not given)."""
    options = {**options, "score": score}
    return {
        "model": loaded_name,
        "checkpoint": str(Path(args.checkpoint).resolve()) if args.checkpoint else None,
        "classes": str(Path(args.classes).resolve()) if args.classes else None,
        "method": method,
        "options": {k: v for k, v in options.items() if k not in ("progress", "batch_size")},
        "target": args.target,
        "size": args.size,
        "score": score,
    }


def _write_pictures(loaded: LoadedModel):
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
    from sise.cli.estimate import PassCost, estimate, passes_text, worth_estimating
    from sise.cli.inputs import load_model_from_args, print_predictions
    from sise.cli.many_images import (
        RESULTS_FILE,
        ImageOutputs,
        ResultsLog,
        expand_inputs,
        explain_images,
        names_many,
        plan_outputs,
    )
    from sise.cli.method_options import (
        apply_budget,
        apply_flags,
        build_explainer,
        choose_budget,
        display_name,
        file_name,
        given_flags,
        method_options,
        print_budget_note,
    )
    from sise.cli.outputs import check_out_dir, check_outputs, picture_file
    from sise.images import load_image, sample_image_path
    from sise.methods.registry import METHODS, canonical_name

    resolve_device(args)
    method = canonical_name(args.method)
    given = given_flags(args)
    options = {method: method_options(args, method)}
    apply_flags([method], options, given)
    name = file_name(method, options[method])  # "sise", or "ada-sise": not plain SISE's files
    specs = list(args.images) or [str(sample_image_path("chelsea"))]
    many = names_many(specs) or args.out_dir is not None or args.save_maps
    out_dir = Path(args.out_dir) if args.out_dir is not None else Path(".")
    if args.out is not None and many:
        raise SiseError(
            "--out names the picture of one image: for several images, a folder or --save-maps "
            "give the output folder with --out-dir"
        )
    check_out_dir(out_dir)
    images = expand_inputs(specs, out_dir if many else None, [*METHODS, "ada-sise"])
    if many:
        plans = plan_outputs(
            images, out_dir, name, panel=method == "sise", save_maps=args.save_maps
        )
        outputs = [path for plan in plans for path in plan.paths()] + [out_dir / RESULTS_FILE]
        suffixes: tuple[str, ...] | None = (".png", ".npz", ".jsonl")
    else:
        out = picture_file(args.out) if args.out else Path(f"{images[0].stem}_{name}.png")
        panel = out.with_name(out.stem + "_layers" + out.suffix)
        plans = [ImageOutputs(out, panel if method == "sise" else None)]
        outputs, suffixes = plans[0].paths(), None
    check_outputs(outputs, args, images, suffixes)
    loaded = load_model_from_args(args)
    budget = choose_budget(args.budget, loaded.device)
    print_budget_note(budget, args.budget, apply_budget([method], options, budget, loaded.model))
    target = loaded.class_index(args.target) if args.target is not None else None
    explainer = build_explainer(method, loaded.model, options[method])
    label = display_name(method, options[method])
    write = _write_pictures(loaded)
    if many:
        # several images per call fill a GPU; a CPU gains little and holds them all in memory
        default_pack = 8 if loaded.device.type == "cuda" else 1
        pack = args.pack if args.pack is not None else default_pack
        log = ResultsLog(out_dir / RESULTS_FILE)
        with log.locked():  # one run per output folder at a time
            summary = explain_images(
                explainer,
                loaded,
                images,
                plans,
                target=target,
                log=log,
                settings=_explain_settings(
                    args, method, options[method], loaded.name, explainer.score
                ),
                pack=pack,
                # the method's own bars (masks, iterations) show under the bar over the images
                progress=not args.no_progress,
                write_pictures=write,
            )
        if summary.skipped == len(images):
            return 0  # explain_images said, in one line, that every image was already done
        print(
            f"{len(images)} image(s): {summary.explained} explained, {summary.skipped} already "
            f"done, {summary.failed} failed; results in {out_dir / RESULTS_FILE}"
        )
        return 1 if summary.failed else 0

    rgb = load_image(images[0])
    inputs = loaded.preprocess(rgb)
    print_predictions(loaded, inputs, args.score)
    if not args.no_progress and worth_estimating(explainer, inputs):
        expected = estimate(explainer, inputs, PassCost.measure(loaded.model, inputs))
        print(f"{label}: {expected.describe()}", flush=True)
    start = time.perf_counter()
    explanation = explainer(inputs, target)
    seconds = time.perf_counter() - start
    cls = int(explanation.targets[0])
    print(
        f"explained class: {loaded.class_names[cls]} (class {cls}, "
        f"{explainer.score} {float(explanation.scores[0]):.3f})"
    )
    print(f"{label}: {seconds:.1f} s, {passes_text(int(explanation.forward_passes[0]))}")
    write(images[0], rgb, explanation, 0, plans[0])
    for path in plans[0].paths():
        if path.exists():
            print(f"wrote {path}")
    return 0
