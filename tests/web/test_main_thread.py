"""Calls handed to the main thread."""

from __future__ import annotations

import threading

from sise import SiseError
from sise.web.main_thread import MainThreadCalls


def test_main_thread_calls_run_on_the_thread_that_runs_them():
    calls = MainThreadCalls()
    got: dict[str, object] = {}

    def client() -> None:
        got["thread"] = calls.call(threading.get_ident)
        try:
            calls.call(lambda: (_ for _ in ()).throw(SiseError("no such class")))
        except SiseError as error:
            got["error"] = str(error)
        calls.stop()

    thread = threading.Thread(target=client)
    thread.start()
    calls.run()  # returns at stop()
    thread.join()
    assert got == {"thread": threading.get_ident(), "error": "no such class"}
