"""Method options given as text: the one grammar of ``--option METHOD.KEY=VALUE``.

``sise explain``, ``sise compare`` and ``sise benchmark`` take a method's constructor options as
``--option METHOD.KEY=VALUE`` (e.g. ``rise.n_masks=2000``, ``extremal.areas=0.05,0.1``,
``sise.selection=adaptive``). This module reads them, once, for all three:

* ``METHOD`` is a registered method (:data:`sise.methods.registry.METHODS`; ``grad-cam`` and
  ``Grad_CAM`` name ``gradcam``), ``KEY`` one of its constructor's keyword arguments;
* ``VALUE`` is read as a Python literal when it is one (``2000``, ``0.5``, ``'blur'``,
  ``True``, ``None``, ``(1.0, 1000.0)``, ``[0.05, 0.1]``); ``true`` / ``false`` / ``null`` /
  ``none`` in any case are the booleans and None (so JSON values read the same); values
  separated by commas form a tuple (``0.05,0.1``, ``layer2,layer3``); anything else is a string
  (``blur``);
* the value is then checked against the type the constructor declares (its annotation): an
  integer option refuses ``2.5`` and ``abc``, a number refuses NaN and infinity, a choice
  (``Literal``) refuses what it does not list, a ``torch.dtype`` takes ``bfloat16`` / ``float16``
  / ``float32``. An ``int`` is accepted where a number is expected and becomes a float.

Every mistake is a one-line :class:`~sise.errors.SiseError` that names the option and says what
it takes. Options that only change speed, never the maps, are listed in
:data:`RUNTIME_OPTIONS`: the benchmark leaves them out of a run's configuration, so changing them
does not start a run over.
"""

from __future__ import annotations

import ast
import inspect
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Union, get_args, get_origin

import torch

from sise.errors import SiseError
from sise.methods.registry import METHODS, canonical_name
from sise.runtime import Runtime

__all__ = [
    "RUNTIME_OPTIONS",
    "OptionValue",
    "check_method_options",
    "check_option",
    "method_key",
    "parse_method_options",
    "parse_option",
    "parse_value",
    "result_options",
]

OptionValue = object
"""What an option value can be once read: a number, bool, None, string, tuple, or torch dtype."""

#: Options that change how fast a method runs (batching, memory layout, progress display), never
#: its maps. ``precision`` and ``autocast_dtype`` are not here: reduced precision changes the maps.
RUNTIME_OPTIONS: frozenset[str] = frozenset({"batch_size", "progress", "channels_last"})

#: Constructor arguments that cannot be given as text (a Runtime comes as its settings).
_NOT_OPTIONS = frozenset({"self", "model", "runtime"})

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float64": torch.float64,
}

_EXAMPLE = "e.g. rise.n_masks=2000 or extremal.areas=0.05,0.1"


def method_key(name: str) -> str:
    """A method name as the registry spells it (``Grad-CAM`` → ``gradcam``, ``grad-cam++`` →
    ``gradcampp``), or a :class:`SiseError` naming the known methods."""
    return canonical_name(name)


def _word(text: str) -> OptionValue:
    """One value without commas: a Python literal, a JSON-style keyword, or a string."""
    text = text.strip()
    keywords: dict[str, OptionValue] = {"true": True, "false": False, "null": None, "none": None}
    if text.lower() in keywords:
        return keywords[text.lower()]
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, (set, dict, bytes, complex)):
        return text  # not an option type: keep the text, the type check will name the problem
    return value


def parse_value(raw: str) -> OptionValue:
    """The value of ``METHOD.KEY=VALUE`` (see the module docstring for the grammar)."""
    raw = raw.strip()
    if raw == "":
        raise SiseError("the value is empty")
    value = _word(raw)
    if isinstance(value, str) and "," in raw:
        # not one literal: comma-separated values form a tuple
        return tuple(_word(part) for part in raw.split(",") if part.strip())
    return value


def parse_option(text: str) -> tuple[str, str, OptionValue]:
    """``METHOD.KEY=VALUE`` as ``(method, key, value)``, the value checked against the method.

    Raises:
        SiseError: for a malformed item, an unknown method or key, or a value of the wrong type.
    """
    target, sep, raw = text.partition("=")
    method, dot, key = target.strip().partition(".")
    if not sep or not dot or not method.strip() or not key.strip():
        raise SiseError(f"--option {text!r}: write METHOD.KEY=VALUE, {_EXAMPLE}")
    try:
        method = method_key(method)
        key = key.strip()
        value = check_option(method, key, parse_value(raw))
    except SiseError as error:
        raise SiseError(f"--option {text!r}: {error}") from None
    return method, key, value


def parse_method_options(items: Iterable[str]) -> dict[str, dict[str, OptionValue]]:
    """``["extremal.iterations=300", "rise.baseline=blur"]`` as
    ``{"extremal": {"iterations": 300}, "rise": {"baseline": "blur"}}``, every value checked."""
    parsed: dict[str, dict[str, OptionValue]] = {}
    for item in items:
        method, key, value = parse_option(item)
        parsed.setdefault(method, {})[key] = value
    return parsed


def check_method_options(
    options: Mapping[str, Mapping[str, OptionValue]],
) -> dict[str, dict[str, OptionValue]]:
    """Check (and normalise) options given in Python, ``{method: {key: value}}``."""
    checked: dict[str, dict[str, OptionValue]] = {}
    for method, values in options.items():
        key = method_key(method)
        for option, value in values.items():
            try:
                checked.setdefault(key, {})[option] = check_option(key, option, value)
            except SiseError as error:
                raise SiseError(f"option {key}.{option}={value!r}: {error}") from None
    return checked


def result_options(options: Mapping[str, OptionValue]) -> dict[str, OptionValue]:
    """The options that change a method's maps (those not in :data:`RUNTIME_OPTIONS`)."""
    return {key: value for key, value in options.items() if key not in RUNTIME_OPTIONS}


# --------------------------------------------------------------------------------------------
# checking a value against the constructor's annotation


def _option_types(method: str) -> dict[str, object]:
    """Keyword → annotation of the method's constructor options (``object``: not annotated)."""
    factory = METHODS[method_key(method)]
    parameters = inspect.signature(factory).parameters
    init: object = factory
    if isinstance(factory, type):  # the annotations are on the (possibly inherited) __init__
        init = next(vars(c)["__init__"] for c in factory.__mro__ if "__init__" in vars(c))
    try:
        hints = typing.get_type_hints(init)
    except (NameError, TypeError):  # an annotation that does not resolve: let the method check
        hints = {}
    options = {
        name: hints.get(name, object)
        for name, parameter in parameters.items()
        if name not in _NOT_OPTIONS
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    }
    # The runtime settings the method uses are options too (``sise.batch_size=64``): they go
    # into that method's Runtime (:func:`sise.methods.registry.make_explainer`).
    runtime_hints = typing.get_type_hints(Runtime)
    options.update({key: runtime_hints[key] for key in sorted(factory.runtime_settings)})
    return options


def check_option(method: str, key: str, value: OptionValue) -> OptionValue:
    """``value`` as option ``key`` of ``method`` takes it, or a :class:`SiseError` saying what
    the option takes."""
    types_ = _option_types(method)
    if key not in types_:
        raise SiseError(
            f"method {method!r} has no option {key!r}; its options: {', '.join(types_)}"
        )
    hint = types_[key]
    try:
        return _coerce(value, hint)
    except _Mismatch:
        raise SiseError(f"{method}.{key} takes {_describe(hint)}, got {_show(value)}") from None


class _Mismatch(Exception):
    """The value does not fit the annotation (internal: becomes a SiseError with context)."""


def _show(value: OptionValue) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(value)


def _is_union(hint: object) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _coerce(value: OptionValue, hint: object) -> OptionValue:
    if hint is object or hint is typing.Any:
        return value
    if _is_union(hint):
        for member in get_args(hint):
            try:
                return _coerce(value, member)
            except _Mismatch:
                continue
        raise _Mismatch
    origin = get_origin(hint)
    if origin is Literal:
        for choice in get_args(hint):
            # equal and of the same kind: 1 is not True, "1" is not 1
            if type(choice) is type(value) and choice == value:
                return value
        raise _Mismatch
    if hint is type(None):
        if value is None:
            return None
        raise _Mismatch
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise _Mismatch
            return float(value)
        raise _Mismatch
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if hint is torch.dtype:
        if isinstance(value, torch.dtype):
            return value
        if isinstance(value, str) and value.lower().removeprefix("torch.") in _DTYPES:
            return _DTYPES[value.lower().removeprefix("torch.")]
        raise _Mismatch
    if origin is tuple:
        items = _as_items(value)
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0]) for item in items)
        if len(items) != len(args):
            raise _Mismatch
        return tuple(_coerce(item, arg) for item, arg in zip(items, args, strict=True))
    if origin in (list, Sequence, typing.Sequence) or (
        isinstance(origin, type) and issubclass(origin, Sequence) and origin is not str
    ):
        (item_hint,) = get_args(hint) or (object,)
        return tuple(_coerce(item, item_hint) for item in _as_items(value))
    if isinstance(hint, type) and isinstance(value, hint) and not isinstance(value, str):
        return value  # e.g. a Tensor or a module given from Python
    raise _Mismatch  # a tensor, a module, a callable...: not something text can give


def _as_items(value: OptionValue) -> tuple[OptionValue, ...]:
    """A tuple or list as its items; a single value as a one-item tuple."""
    if isinstance(value, (tuple, list)):
        return tuple(value)
    if isinstance(value, str) and not value:
        raise _Mismatch
    return (value,)


def _describe(hint: object) -> str:
    """A type annotation in words, for error messages."""
    if hint is object or hint is typing.Any:
        return "any value"
    if _is_union(hint):
        return " or ".join(dict.fromkeys(_describe(member) for member in get_args(hint)))
    origin = get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in get_args(hint))
    if hint is type(None):
        return "None"
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a finite number"
    if hint is str:
        return "a string"
    if hint is torch.dtype:
        return "a dtype (bfloat16, float16 or float32)"
    args = get_args(hint)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"comma-separated values, each {_describe(args[0])}"
        return f"{len(args)} comma-separated values ({', '.join(_describe(a) for a in args)})"
    if origin is not None and args:
        return f"comma-separated values, each {_describe(args[0])}"
    name = getattr(hint, "__name__", str(hint))
    return f"a {name} (only from Python, not as text)"
