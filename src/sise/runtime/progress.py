"""A progress bar that costs nothing when it is off."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a tqdm bar on stderr when ``enabled``."""
    if not enabled or total == 0:
        yield lambda n: None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=description, unit="fwd", leave=False) as bar:
        yield bar.update
