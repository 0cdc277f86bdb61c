"""What the page's server does as a careful local server, besides its routes: the response
headers, the ``Origin`` check, seeing that a page has gone, and draining a refused upload.

- Headers on every answer: ``X-Content-Type-Options: nosniff`` (a browser takes each answer as
  its declared type), a Content-Security-Policy that runs only the page's own inline script and
  style (by their SHA-256, :func:`sise.web.page.inline_hashes`) and lets no other site frame it
  (``frame-ancestors 'none'``), ``Cross-Origin-Resource-Policy: same-origin`` (another site
  cannot embed the results' images) and ``Referrer-Policy: no-referrer``.
- ``Origin``: a browser names the site whose script sends a POST; only the page itself may.
- :func:`client_gone`: a page that was closed shows as end-of-file on its connection.
- :func:`drain`: a server that closes a connection with unread bytes makes the kernel reset it,
  and a browser still uploading then shows "no answer" instead of the 413 it was sent.
"""

from __future__ import annotations

import io
import select
import socket
import time

from sise.web.page import inline_hashes


def security_headers() -> list[tuple[str, str]]:
    """The headers every answer carries (see the module docstring)."""
    script, style = inline_hashes()
    policy = (
        "default-src 'none'; "
        f"script-src '{script}'; style-src '{style}'; "
        "img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return [
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", policy),
        ("Cross-Origin-Resource-Policy", "same-origin"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
    ]


def origin_allowed(origin: str | None, port: int) -> bool:
    """Whether a request's ``Origin`` header is the page's own (or absent: not from a browser's
    cross-site script, e.g. ``curl`` or Python)."""
    if origin is None:
        return True
    return origin.rstrip("/") in (f"http://127.0.0.1:{port}", f"http://localhost:{port}")


def client_gone(connection: socket.socket) -> bool:
    """Whether the other end of ``connection`` has closed it (end of file or an error waiting),
    without blocking or consuming what it sent."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(connection, select.POLLIN | select.POLLHUP | select.POLLERR)
            events = poller.poll(0)
            if not events:
                return False
            if events[0][1] & (select.POLLHUP | select.POLLERR):
                return True
        elif not select.select([connection], [], [], 0)[0]:
            return False
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except (OSError, ValueError):  # reset, or already closed on this side
        return True


def drain(stream: io.BufferedIOBase, length: int, limit: int, seconds: float) -> int:
    """Read and discard up to ``min(length, limit)`` bytes of a refused request body within
    ``seconds``, so that closing the connection afterwards sends a clean end of file, not a reset.

    Returns:
        The number of bytes discarded (less than asked if the peer stopped, closed, or was slow).
    """
    deadline = time.monotonic() + seconds
    left, discarded = min(length, limit), 0
    try:
        while left > 0 and time.monotonic() < deadline:
            chunk = stream.read1(min(left, 1 << 16))  # what has arrived, up to 64 KiB
            if not chunk:
                break
            left -= len(chunk)
            discarded += len(chunk)
    except OSError:  # a timeout or a reset: the peer is not sending the rest
        pass
    return discarded
