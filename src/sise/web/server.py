"""The page's HTTP server on 127.0.0.1: the routes, and :func:`serve` for ``sise app``.

Why this stack: a standard-library :class:`http.server.ThreadingHTTPServer`, one HTML page with
plain JavaScript, a JSON API and PNG images. A threaded server lets the page poll
``/api/status`` (stage, seconds, masked images scored so far) while another thread runs the
explanation.

The server listens on 127.0.0.1 only: the page can load any model name and run long computations,
which is for the person at this computer, not for the network. For the same reason it answers
only requests addressed to ``127.0.0.1`` or ``localhost`` (not another site renamed to this
address), takes only ``application/json`` posts (which a browser lets another site's script
send only after asking, and this server never says yes) and refuses a POST whose ``Origin`` is
another site.

As a careful local server it also bounds what a careless or hostile client can hold
(:mod:`sise.web.guard` has the helpers): a listen backlog of :data:`LISTEN_BACKLOG` (the default
5 reset connections when 20 arrived at once), at most :data:`MAX_CONNECTIONS` connections served
at once (another gets 503 "busy" with ``Retry-After``), a socket timeout
(:data:`SOCKET_TIMEOUT_SECONDS`) so that a stalled upload frees its thread, a 413 for an
over-limit upload sent before its body is drained (up to a bound), security headers on every
answer, and a ``Server`` header without the Python version.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sise.errors import SiseError
from sise.images import SAMPLE_IMAGES, sample_image_path
from sise.web.explorer import Busy, Explorer
from sise.web.guard import client_gone, drain, origin_allowed, security_headers
from sise.web.main_thread import Cancelled, MainThreadCalls
from sise.web.page import favicon_svg, options, page_html
from sise.web.request import ExplainRequest, parse_request

DEFAULT_PORT = 8765
#: Largest request body (an uploaded photo, base64-encoded) the server reads.
MAX_BODY_BYTES = 40 * 1024 * 1024
#: Connections the kernel queues before the server accepts them.
LISTEN_BACKLOG = 128
#: Connections served at once (one thread each); another is answered 503 at once.
MAX_CONNECTIONS = 32
#: Seconds a connection may stay silent (mid-request or mid-upload) before it is closed.
SOCKET_TIMEOUT_SECONDS = 30.0
#: An over-limit upload's bytes read and discarded after its 413, at most (and for how long).
DRAIN_BYTES = 4 * MAX_BODY_BYTES
DRAIN_SECONDS = 10.0
#: Seconds a request body may take to arrive in all (40 MiB over a slow Wi-Fi takes under 60 s).
BODY_SECONDS = 120.0

_BUSY_ANSWER = json.dumps(
    {"error": f"the page is busy: {MAX_CONNECTIONS} connections are open; try again shortly"}
).encode()


class AppServer(ThreadingHTTPServer):
    """The page's HTTP server; ``explorer`` runs the explanations.

    ``socket_timeout`` and ``max_connections`` default to :data:`SOCKET_TIMEOUT_SECONDS` and
    :data:`MAX_CONNECTIONS`.
    """

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, port: int, explorer: Explorer, quiet: bool = False) -> None:
        self.explorer = explorer
        self.quiet = quiet
        self.socket_timeout = SOCKET_TIMEOUT_SECONDS
        self.max_connections = MAX_CONNECTIONS
        self._open = 0
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on its own thread, or answer 503 at once if
        :attr:`max_connections` are being served."""
        with self._open_lock:
            refuse = self._open >= self.max_connections
            if not refuse:
                self._open += 1
        if refuse:
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._closed()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed()

    def _closed(self) -> None:
        with self._open_lock:
            self._open -= 1


def _refuse_busy(connection: socket.socket) -> None:
    """A 503 written straight to a connection the server has no thread for (best effort)."""
    head = (
        "HTTP/1.0 503 Service Unavailable\r\nServer: sise-app\r\n"
        "Content-Type: application/json\r\nRetry-After: 5\r\nConnection: close\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in security_headers())
        + f"Content-Length: {len(_BUSY_ANSWER)}\r\n\r\n"
    )
    try:
        connection.settimeout(1.0)
        connection.sendall(head.encode() + _BUSY_ANSWER)
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    server: AppServer
    server_version = "sise-app"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.socket_timeout)  # rfile and wfile read it

    def version_string(self) -> str:
        """The ``Server`` header: the program, not the Python version behind it."""
        return self.server_version

    def end_headers(self) -> None:
        for name, value in security_headers():
            self.send_header(name, value)
        super().end_headers()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own refusals (a bad request line, an unknown method, headers
        too long) as JSON, as the page's other errors are."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._json({"error": message or HTTPStatus(code).phrase}, code)

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _from_this_computer(self) -> bool:
        """Whether the request names this server as the page does.

        Another web site open in the same browser can send requests to 127.0.0.1 too; one that
        renames itself to this address (DNS rebinding) shows in the ``Host`` header.
        """
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        return host in ("127.0.0.1", "localhost")

    def _answer(self, route: Callable[[], None]) -> None:
        """Run a route; turn every failure into a JSON error the page can show."""
        try:
            if not self._from_this_computer():
                self._json({"error": "this page answers only at 127.0.0.1"}, 403)
                return
            route()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away; nobody is left to answer
        except Cancelled:
            self.log_message("the page went away: its explanation was stopped")
        except TimeoutError:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._json(
                    {"error": "the request stopped arriving: sent too slowly or not in full"},
                    HTTPStatus.REQUEST_TIMEOUT,
                )
        except Busy as error:
            self._json(
                {"error": str(error)},
                HTTPStatus.SERVICE_UNAVAILABLE,
                {"Retry-After": str(error.retry_after)},
            )
        except SiseError as error:
            self._json({"error": str(error)}, HTTPStatus.BAD_REQUEST)
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            self._json(
                {"error": f"internal error ({type(error).__name__}: {error}); see the server log"},
                HTTPStatus.INTERNAL_SERVER_ERROR,
            )

    def _get(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(page_html(), "text/html; charset=utf-8")
        elif path in ("/favicon.svg", "/favicon.ico"):
            self._send(favicon_svg(), "image/svg+xml")
        elif path == "/api/options":
            self._json(options())
        elif path == "/api/status":
            self._json(self.server.explorer.status())
        elif path.startswith("/api/sample/"):
            name = path.removeprefix("/api/sample/").removesuffix(".jpg")
            if name not in SAMPLE_IMAGES:
                self._json({"error": f"no sample photo {name!r}"}, HTTPStatus.NOT_FOUND)
                return
            self._send(sample_image_path(name).read_bytes(), "image/jpeg")
        elif path.startswith("/api/image/") and path.endswith(".png"):
            result_id, _, name = (
                path.removeprefix("/api/image/").removesuffix(".png").partition("/")
            )
            data = self.server.explorer.image(result_id, name)
            if data is None:
                self._json(
                    {"error": "no such image: results older than the last few are dropped"},
                    HTTPStatus.NOT_FOUND,
                )
                return
            self._send(data, "image/png")
        else:
            self._json({"error": f"no page {path!r}"}, HTTPStatus.NOT_FOUND)

    def _post(self) -> None:
        if self.path.split("?", 1)[0] != "/api/explain":
            self._json({"error": f"no API {self.path!r}: POST to /api/explain"}, 404)
            return
        if not origin_allowed(self.headers.get("Origin"), self.server.server_address[1]):
            self._json({"error": "this page takes requests only from itself, not other sites"}, 403)
            return
        # A JSON content type makes a browser ask before another web site's script may post.
        if self.headers.get_content_type() != "application/json":
            self._json({"error": "send the request as application/json"}, 415)
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._json({"error": "send the request with a Content-Length"}, 411)
            return
        if int(length) > MAX_BODY_BYTES:
            message = f"the photo is too large: at most {MAX_BODY_BYTES // 2**20} MiB"
            self._refuse_unread(int(length), {"error": message}, 413)
            return
        try:
            # before the body is read: an upload the queue has no room for is not held
            self.server.explorer.check_room()
        except Busy as error:
            headers = {"Retry-After": str(error.retry_after)}
            self._refuse_unread(int(length), {"error": str(error)}, 503, headers)
            return
        request = _parsed(self._body(int(length)))  # the body and its JSON freed once parsed
        self._json(self.server.explorer.explain(request, lambda: client_gone(self.connection)))

    def _refuse_unread(
        self, length: int, answer: object, status: int, headers: dict[str, str] | None = None
    ) -> None:
        """Answer a request without reading its body, then read what the browser is still
        sending, so that closing does not reset the connection and lose the answer."""
        self.close_connection = True
        self._json(answer, status, headers)
        self.wfile.flush()
        drain(self.rfile, length, DRAIN_BYTES, DRAIN_SECONDS)

    def _body(self, length: int) -> bytes:
        """The request body, read within :data:`BODY_SECONDS` in all (the socket timeout bounds
        each wait, this the whole: a client sending a byte now and then cannot hold a thread).

        Raises:
            TimeoutError: the body did not arrive in full in time, or the client stopped.
        """
        deadline = time.monotonic() + BODY_SECONDS
        parts, left = [], length
        while left > 0:
            if time.monotonic() > deadline:
                raise TimeoutError("the body took too long")
            chunk = self.rfile.read1(min(left, 1 << 20))
            if not chunk:
                raise TimeoutError("the body ended early")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def _json(
        self,
        payload: object,
        status: int = HTTPStatus.OK,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send(json.dumps(payload).encode(), "application/json", status, headers)

    def _send(
        self,
        body: bytes,
        content_type: str,
        status: int = HTTPStatus.OK,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _parsed(body: bytes) -> ExplainRequest:
    """The checked request in a JSON body.

    Raises:
        SiseError: the body is not JSON, is nested too deeply, or is not a valid request.
    """
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SiseError(f"the request body is not valid JSON: {error}") from error
    except RecursionError as error:
        raise SiseError("the request body is nested too deeply: send a flat JSON object") from error
    return parse_request(payload)


def make_server(port: int = DEFAULT_PORT, device: str = "cpu", quiet: bool = False) -> AppServer:
    """The page's server on 127.0.0.1:``port`` (0: a free port), not yet serving.

    Raises:
        SiseError: the port is taken or not allowed.
    """
    try:
        return AppServer(port, Explorer(device), quiet=quiet)
    except OSError as error:
        raise SiseError(
            f"cannot listen on 127.0.0.1:{port} ({error.strerror or error}): pick another port "
            "with --port (0 picks a free one)"
        ) from error


def serve(port: int = DEFAULT_PORT, device: str = "cpu", open_browser: bool = False) -> None:
    """Serve the page until Ctrl+C; prints its address."""
    server = make_server(port, device)
    # the requests' threads hand their explanations to this (the main) thread: see
    # sise.web.main_thread for why
    calls = MainThreadCalls()
    server.explorer.calls = calls
    threading.Thread(target=server.serve_forever, name="sise-app-server", daemon=True).start()
    print(f"sise app: open {server.url}  (Ctrl+C to stop)", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        calls.run()
    except KeyboardInterrupt:
        print("sise app: stopped", flush=True)
    finally:
        server.shutdown()
        server.server_close()
