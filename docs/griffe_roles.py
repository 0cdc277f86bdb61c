"""A griffe extension for the API reference: the Sphinx roles of the docstrings become links.

The docstrings cross-reference in reStructuredText (``:func:`sise.core.layers.discover_layers```,
``:class:`Target```), which Markdown would print as it is. Each role becomes an optional
cross-reference: a link where the object has a page in the reference, plain code where it has
none (an internal module), so an object left out of the reference never breaks the strict build.
A relative name (``:meth:`Target.rows```) is resolved in the scope of the docstring's object.
A paragraph that ends in ``::`` (reStructuredText's literal block after it, which Markdown reads
as indented code already) ends in ``:``, as Sphinx prints it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

LITERAL_BLOCK = re.compile(r"(?<=\S)::$", flags=re.MULTILINE)
ROLE = re.compile(r":(?:func|class|mod|data|meth|attr|exc|obj):`(~?)([\w.]+)(?:\(\))?`")


def full_path(obj: griffe.Object | griffe.Alias, name: str) -> str:
    """The full path of ``name`` as written in ``obj``'s docstring, or ``name`` itself."""
    if name.startswith("sise."):
        return name
    head, _, rest = name.partition(".")
    scope: griffe.Object | griffe.Alias | None = obj
    while scope is not None:
        try:
            resolved = scope.resolve(head)
        except (griffe.NameResolutionError, griffe.AliasResolutionError, KeyError):
            scope = scope.parent
            continue
        return f"{resolved}.{rest}" if rest else resolved
    return name


def link_roles(obj: griffe.Object | griffe.Alias, text: str) -> str:
    """``text`` with every Sphinx role replaced by an optional autorefs cross-reference."""

    def replace(match: re.Match[str]) -> str:
        short, name = match.groups()
        title = name.rsplit(".", 1)[-1] if short else name
        return f'<autoref identifier="{full_path(obj, name)}" optional>`{title}`</autoref>'

    return ROLE.sub(replace, LITERAL_BLOCK.sub(":", text))


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        pending: list[griffe.Object] = [pkg]
        while pending:
            obj = pending.pop()
            if obj.docstring is not None:
                obj.docstring.value = link_roles(obj, obj.docstring.value)
            pending.extend(member for member in obj.members.values() if not member.is_alias)
