"""A progress bar that costs nothing when it is off."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(
    total: int, description: str, enabled: bool, unit: str = "fwd"
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a tqdm bar on stderr when ``enabled``.

    The bar is cleared when it closes (``leave=False``): a command prints its own line for each
    finished step, and bars nested under an outer one (many images) do not pile up.

    Args:
        total: the steps to count (nothing is drawn for 0).
        description: the bar's label.
        enabled: draw it at all.
        unit: what one step is (``"fwd"``: a forward pass of one input, ``"it"``: an iteration).
    """
    if not enabled or total == 0:
        yield lambda n: None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=description, unit=unit, leave=False) as bar:
        yield bar.update
