"""``sise compare``: every method (or a chosen few) on one photo, side by side, timed."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sise.cli.arguments import add_model_arguments
from sise.cli.inputs import image_path, load_photo_and_model, print_predictions
from sise.cli.method_options import apply_flags, build_explainer, given_flags, method_options
from sise.cli.outputs import check_outputs
from sise.errors import SiseError
from sise.methods.registry import DISPLAY_NAMES, METHODS, canonical_name


def add_compare_command(commands: argparse._SubParsersAction) -> None:
    """Add ``sise compare`` to the command line's sub-commands."""
    compare = commands.add_parser("compare", help="all methods on one photo, side by side")
    add_model_arguments(compare)
    compare.add_argument("--methods", help="comma-separated subset (default: all eight)")
    compare.add_argument("--out", help="figure to write (.png, .jpg, ...)")
    compare.set_defaults(handler=command_compare)


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
    photo = image_path(args)
    out = Path(args.out or f"{photo.stem}_compare.png")
    check_outputs([out], args)
    given = given_flags(args)
    options = {method: method_options(args, method) for method in methods}
    apply_flags(methods, options, given)
    loaded, _, inputs, rgb = load_photo_and_model(args)
    print_predictions(loaded, inputs, args.score)
    target = loaded.class_index(args.target) if args.target is not None else None
    results = []
    for method in methods:
        explainer = build_explainer(method, loaded.model, options[method])
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
