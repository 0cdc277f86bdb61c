"""``sise compare``: every method (or a chosen few) on one photo, side by side, timed."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sise.cli.arguments import METHOD_NAMES, add_model_arguments, resolve_device
from sise.errors import SiseError

# torch and the methods are imported by the command itself: ``sise --help`` builds this parser.


def add_compare_command(commands: argparse._SubParsersAction) -> None:
    """Add ``sise compare`` to the command line's sub-commands."""
    compare = commands.add_parser(
        "compare",
        help="all methods on one photo, side by side",
        description="Run every method (or --methods) on one photo and write one figure with "
        "their maps and times. Before each method starts it says how many passes through the "
        "model it makes and about how long that takes (measured on this model at this size). "
        "A method whose optional package is missing is skipped with a note.",
    )
    add_model_arguments(compare)
    compare.add_argument(
        "--methods", help=f"comma-separated subset of {','.join(METHOD_NAMES)} (default: all)"
    )
    compare.add_argument("--out", help="figure to write (.png, .jpg, ...)")
    compare.set_defaults(handler=command_compare)


def command_compare(args: argparse.Namespace) -> int:
    from sise.cli.estimate import PassCost, estimate
    from sise.cli.inputs import image_path, load_photo_and_model, print_predictions
    from sise.cli.method_options import (
        apply_budget,
        apply_flags,
        build_explainer,
        choose_budget,
        display_name,
        given_flags,
        method_options,
        print_budget_note,
    )
    from sise.cli.outputs import check_outputs
    from sise.extras import MissingExtra
    from sise.methods.registry import DISPLAY_NAMES, METHODS, canonical_name

    resolve_device(args)
    if args.methods is None:
        methods = list(DISPLAY_NAMES)
    else:
        methods = [canonical_name(m.strip()) for m in args.methods.split(",") if m.strip()]
        if not methods:
            raise SiseError(
                f"--methods {args.methods!r} names no method: give a comma-separated list of "
                f"{', '.join(METHODS)}"
            )
    photo = image_path(args)
    out = Path(args.out or f"{photo.stem}_compare.png")
    check_outputs([out], args)
    given = given_flags(args)
    options = {method: method_options(args, method) for method in methods}
    apply_flags(methods, options, given)
    loaded, _, inputs, rgb = load_photo_and_model(args)
    budget = choose_budget(args.budget, loaded.device)
    print_budget_note(budget, args.budget, apply_budget(methods, options, budget, loaded.model))
    print_predictions(loaded, inputs, args.score)
    target = loaded.class_index(args.target) if args.target is not None else None

    # Every method is built before any runs: a missing optional package (Captum for Integrated
    # Gradients) is found now, not after minutes of the others, and the figure still gets written.
    explainers = {}
    for method in methods:
        try:
            explainers[method] = build_explainer(method, loaded.model, options[method])
        except MissingExtra as error:
            print(f"skipping {display_name(method, options[method])}: {error}")
    if not explainers:
        raise SiseError("none of the methods can run here: install what the notes above say")

    cost = PassCost.measure(loaded.model, inputs) if not args.no_progress else None
    if cost is not None:
        print(f"{loaded.name} at {inputs.shape[-2]}x{inputs.shape[-1]} px: {cost.describe()}")
    results = []
    explanation = None
    for step, (method, explainer) in enumerate(explainers.items(), 1):
        label = display_name(method, options[method])
        if cost is not None:
            expected = estimate(explainer, inputs, cost)
            print(f"[{step}/{len(explainers)}] {label}: {expected.describe()}", flush=True)
        start = time.perf_counter()
        try:
            explanation = explainer(inputs, target)
        except MissingExtra as error:  # a package a method imports only when it runs
            print(f"skipping {label}: {error}")
            continue
        seconds = time.perf_counter() - start
        print(f"  {label:<24} {seconds:7.2f} s", flush=True)
        results.append((label, explanation.maps[0], seconds))
    if explanation is None:
        raise SiseError("none of the methods could run here: install what the notes above say")
    from sise.viz import save_comparison

    cls = int(explanation.targets[0])
    save_comparison(out, rgb, results, title=f"{loaded.class_names[cls]} — {loaded.name}")
    print(f"wrote {out}")
    return 0
