"""The methods' options on the command line: the method flags of ``sise explain`` and ``sise
compare`` (``--mu``, ``--adaptive``, ``--baseline``, ``--gate``, ``--batch-size``) and
``--option METHOD.KEY=VALUE`` (its grammar: :mod:`sise.options`), put together per method."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Sequence

import torch
from torch import nn

from sise.cli.arguments import DEFAULT_BATCH_SIZE
from sise.errors import SiseError
from sise.methods.base import Explainer
from sise.methods.registry import (
    BUDGETS,
    DISPLAY_NAMES,
    METHODS,
    Budget,
    budget_options,
    device_budget,
    display_name,
    make_explainer,
)
from sise.options import method_key, parse_option

#: The method flags of ``sise explain``: attribute -> (flag, constructor parameter, default).
#: A flag given for a method whose constructor lacks the parameter is refused, never dropped.
METHOD_FLAGS: dict[str, tuple[str, str, object]] = {
    "mu": ("--mu", "mu", 0.0),
    "adaptive": ("--adaptive", "selection", False),
    "baseline": ("--baseline", "baseline", "zero"),
    "gate": ("--gate", "gate", "binary"),
    "batch_size": ("--batch-size", "batch_size", DEFAULT_BATCH_SIZE),
}


def method_options(args: argparse.Namespace, method: str) -> dict[str, object]:
    """The constructor options of ``method``: the explained score, SISE's settings and the
    ``--option`` items for it."""
    # each method explains its own default score unless --score says otherwise
    options: dict[str, object] = {} if args.score is None else {"score": args.score}
    if method in ("sise", "scorecam", "rise"):
        options["batch_size"] = args.batch_size
    if "progress" in METHODS[method].runtime_settings:
        # a bar over each method's masks or iterations, not only SISE's
        options["progress"] = not args.no_progress
    if method == "sise":
        options.update(
            mu=args.mu,
            selection="adaptive" if args.adaptive else "fixed",
            baseline=args.baseline,
            gate=args.gate,
        )
    # every --option is checked, also those for methods this command does not run
    for text in args.option or []:
        target, key, value = parse_option(text)
        if target == method_key(method):
            options[key] = value
    return options


def given_flags(args: argparse.Namespace) -> dict[str, tuple[str, object]]:
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
    """Whether the method's constructor has a parameter of that name, or the method uses the
    runtime setting of that name (``batch_size``)."""
    factory = METHODS[method]
    parameters = inspect.signature(factory).parameters
    return (
        parameter in parameters
        or parameter in factory.runtime_settings
        or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    )


def apply_flags(
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


def file_name(method: str, options: dict[str, object]) -> str:
    """The method's part of an output file name (``cat_sise.png``, ``cat_ada-sise.png``)."""
    return "ada-sise" if display_name(method, options) == "Ada-SISE" else method


def choose_budget(budget: str | None, device: torch.device) -> Budget:
    """``--budget``, or where it is not given :func:`~sise.methods.registry.device_budget`."""
    if budget is not None:
        if budget not in BUDGETS:
            raise SiseError(f"unknown --budget {budget!r}: use {' or '.join(BUDGETS)}")
        return budget  # type: ignore[return-value]
    return device_budget(device)


def _value_text(value: object) -> str:
    if isinstance(value, tuple | list):
        return ",".join(_value_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def apply_budget(
    methods: Sequence[str],
    options: dict[str, dict[str, object]],
    budget: Budget,
    model: nn.Module,
) -> list[str]:
    """Put the budget's options under each method's own (an ``--option`` wins); return, for a
    reduced budget, one line per method saying what it changed and the published value."""
    reduced = []
    for method in methods:
        chosen = budget_options(method, budget, model)
        published = budget_options(method, "paper", model)
        changes = [
            f"{key}={_value_text(value)} (paper: {_value_text(published[key])})"
            for key, value in chosen.items()
            if key not in options[method] and value != published[key]
        ]
        options[method] = {**chosen, **options[method]}
        if changes:
            reduced.append(f"{display_name(method, options[method])} {', '.join(changes)}")
    return reduced


def print_budget_note(budget: Budget, chosen: str | None, reduced: Sequence[str]) -> None:
    """Say what the quick budget reduced, and how to get the paper's settings."""
    if not reduced:
        return
    why = "" if chosen is not None else " (the default without a CUDA GPU)"
    print(f"budget {budget}{why}: " + "; ".join(reduced))
    print(
        "  for the paper's settings: --budget paper (minutes per method on a CPU); to change "
        "one: --option METHOD.KEY=VALUE"
    )


def build_explainer(method: str, model: nn.Module, options: dict[str, object]) -> Explainer:
    """The method with its options; an option its constructor refuses is a one-line error."""
    try:
        return make_explainer(method, model, **options)
    except TypeError as error:
        raise SiseError(f"bad --option for {method}: {error}") from error
