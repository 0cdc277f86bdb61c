"""Classes by name: ``explainer(x, "tabby")`` and :class:`ClassName`, resolved through the
model's class list.

A model loaded by :func:`sise.models.loading.load_model` (any :class:`~sise.models.loading.
LoadedModel`) has its class names recorded here, so every method takes a name where it takes a
class index. Another model gets its names with :func:`set_class_names`. A misspelt name is an
error with the close names (:func:`sise.targets.resolve.close_class_names`, the suggester of
the command line and the page).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from sise.errors import SiseError
from sise.targets.resolve import close_class_names


@dataclass(frozen=True)
class _ClassList:
    names: tuple[str, ...]
    owner: str  # the model's name, for messages


#: Each model's class list, dropped with the model (no reference keeps a model alive).
_CLASS_LISTS: weakref.WeakKeyDictionary[nn.Module, _ClassList] = weakref.WeakKeyDictionary()


def set_class_names(model: nn.Module, names: Sequence[str], owner: str | None = None) -> None:
    """Give ``model`` its class names (one per output, in output order), so that its
    explanations take names: ``explainer(x, "tabby")``. :func:`sise.models.loading.load_model`
    does it for the models it loads.

    Args:
        model: the classifier.
        names: its class names.
        owner: the model's name in messages (default: its class name).
    """
    if isinstance(names, str) or not all(isinstance(name, str) for name in names):
        raise SiseError("class names must be a sequence of strings, one per output")
    _CLASS_LISTS[model] = _ClassList(tuple(names), owner or type(model).__name__)


def class_names_of(model: nn.Module) -> tuple[str, ...] | None:
    """The class names given to ``model`` (:func:`set_class_names`), or ``None``."""
    found = _CLASS_LISTS.get(model)
    return found.names if found is not None else None


def class_index(name: str, names: Sequence[str], owner: str) -> int:
    """The index of a class given by name (any case) or as digits (``"281"``).

    Raises:
        SiseError: no class has that name; the message gives the close names.
    """
    text = name.strip()
    if text.isdigit():
        index = int(text)
        if not 0 <= index < len(names):
            raise SiseError(
                f"class index {index} is out of range: {owner} has {len(names)} classes "
                f"(0..{len(names) - 1})"
            )
        return index
    lowered = [candidate.lower() for candidate in names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    close = close_class_names(text, names)
    hint = f"; close names: {', '.join(repr(c) for c in close)}" if close else ""
    raise SiseError(f"{owner} has no class named {name!r}{hint}")


class ClassName:
    """A class given by its name, one for every image or one per image: ``ClassName("tabby")``.

    Every method takes it (and a plain string) as its target; it is looked up in the model's
    class list (:func:`set_class_names`; models from :func:`sise.models.loading.load_model` have
    theirs) and then explained as that class index, with the method's ``score=``.

    Args:
        names: a class name, or one per image; digits (``"281"``) are an index.

    Example:
        >>> from sise.targets import ClassName
        >>> ClassName("Tabby").indices(["tiger cat", "tabby", "Persian cat"], "my model")
        [1]
        >>> ClassName("catt").indices(["tiger cat", "tabby", "Persian cat"], "my model")
        Traceback (most recent call last):
        ...
        sise.errors.SiseError: my model has no class named 'catt'; close names: 'tiger cat', 'Persian cat'
    """

    def __init__(self, names: str | Sequence[str]) -> None:
        items = [names] if isinstance(names, str) else list(names)
        if not items or not all(isinstance(item, str) for item in items):
            raise SiseError(f"ClassName takes a class name or a list of them, got {names!r}")
        self.names = items

    def indices(self, class_names: Sequence[str], owner: str) -> list[int]:
        """The class index of each name in ``class_names`` (a model's class list)."""
        return [class_index(name, class_names, owner) for name in self.names]

    def __repr__(self) -> str:
        shown = self.names[0] if len(self.names) == 1 else self.names
        return f"ClassName({shown!r})"


def names_to_indices(model: nn.Module, targets: object) -> object:
    """``targets`` with class names (strings, :class:`ClassName`) turned into indices through
    ``model``'s class list; anything else is returned as it is.

    Raises:
        SiseError: a name for a model without a class list, or a name it does not have.
    """
    named = isinstance(targets, str | ClassName) or (
        isinstance(targets, list | tuple)
        and any(isinstance(t, str | ClassName) for t in targets)
        and all(isinstance(t, str | ClassName | int) for t in targets)
    )
    if not named:
        return targets
    found = _CLASS_LISTS.get(model)
    if found is None:
        first = next(
            t if isinstance(t, str) else t.names[0]
            for t in (targets if isinstance(targets, list | tuple) else [targets])
            if isinstance(t, str | ClassName)
        )
        raise SiseError(
            f"targets are class indices, got the name {first!r}, and this "
            f"{type(model).__name__} has no class names to find it in: give the model its names "
            "with sise.targets.set_class_names(model, names) (sise.models.load_model does), or "
            "pass the index (sise.models.loading.LoadedModel.class_index gives it)"
        )
    if isinstance(targets, ClassName):
        resolved = targets.indices(found.names, found.owner)
        return resolved[0] if len(resolved) == 1 else resolved
    if isinstance(targets, str):
        return class_index(targets, found.names, found.owner)
    indices: list[int] = []
    for target in targets:  # type: ignore[attr-defined]
        if isinstance(target, ClassName):
            indices += target.indices(found.names, found.owner)
        elif isinstance(target, str):
            indices.append(class_index(target, found.names, found.owner))
        else:
            indices.append(target)
    return indices
