"""Handing calls from the server's request threads to the main thread.

Under ``sise app`` the explanations run on the main thread: glibc gives other threads heaps that
map large blocks afresh every time, so there an explanation pays the page faults
:mod:`sise.runtime.allocator` saves (SISE on the demo model at 224 px, the coffee photo, as the
page times it: 2.7-2.9 s in a request's thread against 1.9-2.1 s on the main one).
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sise.errors import SiseError

T = TypeVar("T")


class Cancelled(BaseException):
    """An explanation stopped because nobody waits for it any more (the page was closed).

    A :class:`BaseException`, as :class:`KeyboardInterrupt` is, so that no ``except Exception``
    on the way (a compiler's fall-back to eager code, say) takes it for a failure and runs the
    work again; the methods' ``finally`` blocks still remove their hooks.
    """


class MainThreadCalls:
    """Runs functions that other threads hand over on the thread that runs :meth:`run`."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future] | None] = queue.Queue()

    def call(self, function: Callable[[], T]) -> T:
        """``function()``, run on the thread in :meth:`run`; waits for it, raises what it raised."""
        done: Future = Future()
        self._jobs.put((function, done))
        return done.result()

    def stop(self) -> None:
        """Make :meth:`run` return once the calls handed over before are done."""
        self._jobs.put(None)

    def run(self) -> None:
        """Run the handed-over calls until :meth:`stop` (or Ctrl+C, which propagates)."""
        while True:
            try:
                job = self._jobs.get(timeout=0.5)  # a timeout, so that Ctrl+C gets through
            except queue.Empty:
                continue
            if job is None:
                return
            function, done = job
            try:
                done.set_result(function())
            except (Exception, Cancelled) as error:
                done.set_exception(error)
            except BaseException:
                done.set_exception(SiseError("the app was stopped during this explanation"))
                raise
