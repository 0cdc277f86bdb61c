"""The page as a careful local server: what a careless or hostile client sends, and the answer it
gets (issue 22's page cases, issue 24's page rough edges).

A real server on 127.0.0.1 with a tiny model under ImageNet's class names (so the class-name
suggestions are the real ones); the table cases each name a request and the status and message
fragment expected. The connection cases (backlog, stalled and over-limit uploads, busy answers,
a page that goes away) speak HTTP over raw sockets, as a browser or an attacker would.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny_models import SmallCNN

from sise.models.loading import LoadedModel, imagenet_class_names
from sise.web import AppServer, make_server, options, page_html
from sise.web.request import parse_request


class SlowCNN(SmallCNN):
    """SmallCNN, each forward pass taking at least 50 ms (RISE's 4,000 masks: over 6 s)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.05)
        return super().forward(x)


def tiny_model(name, checkpoint=None, *, device="cpu", input_size=(224, 224), **_):
    torch.manual_seed(0)
    network = (SlowCNN if name == "slow" else SmallCNN)(1000).eval()
    return LoadedModel(network, imagenet_class_names(), input_size, (0.5,) * 3, (0.5,) * 3, name)


def start(monkeypatch: pytest.MonkeyPatch) -> AppServer:
    monkeypatch.setattr("sise.web.explorer.load_model", tiny_model)
    app = make_server(0, "cpu", quiet=True)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    return app


def stop(app: AppServer) -> None:
    app.shutdown()
    app.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[AppServer]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        app = start(monkeypatch)
        yield app
        stop(app)


@pytest.fixture
def fresh(monkeypatch) -> Iterator[AppServer]:
    """A server of its own, for a case that changes its limits."""
    app = start(monkeypatch)
    yield app
    stop(app)


def ask(app: AppServer, method: str, path: str, body: bytes | None = None, headers=None):
    """(status, headers, parsed JSON or bytes) of one request."""
    connection = http.client.HTTPConnection("127.0.0.1", app.server_address[1], timeout=60)
    sent = {"Content-Type": "application/json", **(headers or {})}
    connection.request(method, path, body=body, headers=sent)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    kind = response.headers.get("Content-Type", "")
    return (
        response.status,
        response.headers,
        json.loads(data) if kind == "application/json" else data,
    )


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# A PNG whose header says 12000 x 10000 (120 Mpx: above PIL's warning, below its error) and whose
# pixels are cut off: measured from the header, it is refused before any decoding.
BIG_HEADER = png(12000, 10000)[:2000]

TABLE = [
    # (case, method, path, body, headers, status, message fragment)
    (
        "deeply nested JSON",
        "POST",
        "/api/explain",
        b"[" * 100_000 + b"]" * 100_000,
        {},
        400,
        "nested too deeply",
    ),
    (
        "a list as the sample",
        "POST",
        "/api/explain",
        b'{"sample": ["coffee"]}',
        {},
        400,
        "no sample photo a JSON array",
    ),
    (
        "an object as the model",
        "POST",
        "/api/explain",
        b'{"sample": "coffee", "model": {"a": 1}}',
        {},
        400,
        "'model' must be a string",
    ),
    (
        "a foreign Origin",
        "POST",
        "/api/explain",
        b'{"sample": "dog"}',
        {"Origin": "http://evil.example"},
        403,
        "only from itself",
    ),
    (
        "the page's own Origin",
        "POST",
        "/api/explain",
        b'{"sample": "dog"}',
        {"Origin": "http://127.0.0.1:{port}"},
        400,
        "no sample photo 'dog'",
    ),
    (
        "a misspelt class",
        "POST",
        "/api/explain",
        b'{"sample": "coffee", "size": 32, "target": "catt"}',
        {},
        400,
        "close names: 'tiger cat', 'Persian cat', 'Siamese cat', 'Egyptian cat', 'Madagascar cat'",
    ),
    (
        "120 Mpx by its header",
        "POST",
        "/api/explain",
        json.dumps({"image": b64(BIG_HEADER), "size": 32}).encode(),
        {},
        400,
        "12000 x 10000 = 120 Mpx, more than the page decodes (50 Mpx)",
    ),
    ("an unknown HTTP method", "PUT", "/api/explain", b"{}", {}, 501, "Unsupported method"),
    (
        "an upload that fits",
        "POST",
        "/api/explain",
        json.dumps({"image": b64(png(60, 40)), "method": "gradcam", "size": 32}).encode(),
        {},
        200,
        "",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "message"),
    [case[1:] for case in TABLE],
    ids=[case[0] for case in TABLE],
)
def test_answers(server, method, path, body, headers, status, message):
    port = str(server.server_address[1])
    headers = {key: value.replace("{port}", port) for key, value in headers.items()}
    got, _, answer = ask(server, method, path, body, headers)
    assert got == status, answer
    if message:
        assert message in answer["error"]


def test_the_pixel_budget_is_read_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("SISE_MAX_PIXELS", "2000")
    status, _, answer = ask(
        server, "POST", "/api/explain", json.dumps({"image": b64(png(60, 40))}).encode()
    )
    assert (
        status == 400
        and "60 x 40 = 0 Mpx, more than the page decodes (0.002 Mpx)" in (answer["error"])
        and "SISE_MAX_PIXELS" in answer["error"]
    )


def test_an_upload_is_decoded_in_the_work_section_not_on_arrival(monkeypatch):
    decoded = []
    monkeypatch.setattr("sise.web.request.decode_image", lambda data: decoded.append(data))
    request = parse_request({"image": b64(png(60, 40))})
    assert decoded == []  # on arrival it is only measured; the explorer decodes it in turn
    request.decoded()
    assert len(decoded) == 1


@pytest.mark.parametrize("path", ["/", "/api/options", "/nothing", "/favicon.ico"])
def test_every_answer_has_the_security_headers(server, path):
    status, headers, _ = ask(server, "GET", path)
    assert status == (404 if path == "/nothing" else 200)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert headers["Server"] == "sise-app"  # not "BaseHTTP/0.6 Python/3.11.7"


def test_the_favicon_is_served_and_linked(server):
    status, headers, icon = ask(server, "GET", "/favicon.ico")
    assert status == 200 and headers["Content-Type"] == "image/svg+xml"
    assert icon.startswith(b"<svg") and b'rel="icon" href="/favicon.svg"' in page_html()
    assert ask(server, "GET", "/favicon.svg")[2] == icon


def raw_request(port: int, length: int, body: bytes) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(
        b"POST /api/explain HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
        + body
    )
    return connection


def read_answer(connection: socket.socket) -> tuple[int, str]:
    """(status, error message) of the answer on a raw connection, read to its Content-Length
    (the server may keep the connection open a while after it, draining an unread body)."""
    data = b""
    while True:
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"Content-Length: (\d+)", head) if _ else None
        if length is not None and len(body) >= int(length.group(1)):
            break
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    connection.close()
    return int(head.split()[1]), json.loads(body).get("error", "")


def test_twenty_connections_at_once_are_all_queued(fresh):
    """The default listen backlog (5) drops connections beyond it while the server is busy
    accepting; a browser sees them reset. Here the server accepts none until all 20 are in."""
    fresh.shutdown()  # not accepting: every connection waits in the kernel's queue
    port = fresh.server_address[1]
    connections = []
    try:
        for _ in range(20):
            connections.append(socket.create_connection(("127.0.0.1", port), timeout=0.5))
    finally:
        for connection in connections:
            connection.close()
    assert len(connections) == 20


def test_an_over_limit_upload_gets_its_413_not_a_reset(server, monkeypatch):
    monkeypatch.setattr("sise.web.server.MAX_BODY_BYTES", 65536)
    size = 4 * 2**20
    connection = raw_request(server.server_address[1], size, b"")
    connection.sendall(b"x" * size)  # a browser sends the whole body before it reads
    status, message = read_answer(connection)
    assert status == 413 and "the photo is too large: at most 0 MiB" in message


def test_a_stalled_upload_frees_its_connection(fresh):
    fresh.socket_timeout = 0.5
    connection = raw_request(fresh.server_address[1], 1000, b'{"sample": ')
    connection.settimeout(5)
    status, message = read_answer(connection)  # today: no answer, ever
    assert status == 408 and "stopped arriving" in message


def test_a_trickled_upload_is_cut_off_at_its_deadline(fresh, monkeypatch):
    """A byte every 0.2 s keeps each wait under the socket timeout; the whole body has its own."""
    fresh.socket_timeout = 1.0
    monkeypatch.setattr("sise.web.server.BODY_SECONDS", 0.6)
    connection = raw_request(fresh.server_address[1], 1000, b"")
    connection.settimeout(5)
    for _ in range(10):  # until the answer comes (sending on would meet a closed socket)
        if select.select([connection], [], [], 0.2)[0]:
            break
        connection.send(b" ")
    status, message = read_answer(connection)
    assert status == 408 and "stopped arriving" in message


def test_too_many_connections_get_a_busy_answer(fresh):
    fresh.max_connections = 2
    idle = [socket.create_connection(("127.0.0.1", fresh.server_address[1])) for _ in range(2)]
    try:
        time.sleep(0.3)  # both accepted and their threads waiting for a request
        status, headers, answer = ask(fresh, "GET", "/api/options")
    finally:
        for connection in idle:
            connection.close()
    assert status == 503 and "busy" in answer["error"] and headers["Retry-After"] == "5"


def test_many_explanations_at_once_all_get_an_answer(fresh, monkeypatch):
    """20 at once: one runs, ``max_waiting`` wait, the others hear 503 busy with Retry-After."""
    fresh.explorer.max_waiting = 3

    def slow(request, check=None):
        time.sleep(0.3)
        return {"done": True}

    monkeypatch.setattr(fresh.explorer, "_explain", slow)
    answers: list[tuple[int, str | None]] = []

    def one() -> None:
        try:
            status, headers, _ = ask(fresh, "POST", "/api/explain", b'{"sample": "coffee"}')
            answers.append((status, headers.get("Retry-After")))
        except OSError as error:  # a reset: no HTTP answer at all
            answers.append((0, repr(error)))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(status for status, _ in answers)
    assert set(statuses) == {200, 503}, answers
    assert 1 + 3 <= statuses.count(200) < 20
    assert all(after == "10" for status, after in answers if status == 503)


def test_a_full_queue_answers_before_the_upload_is_read(fresh, monkeypatch):
    """With no room to wait, an upload is refused from its headers: the server holds no body."""
    fresh.explorer.max_waiting = 0
    fresh.socket_timeout = 3.0
    connection = raw_request(fresh.server_address[1], 2**20, b"")  # headers only, no body yet
    connection.settimeout(2)
    status, message = read_answer(connection)  # late check: no answer until the body comes
    assert status == 503 and "busy" in message


def test_queued_work_for_a_closed_page_is_dropped(fresh, monkeypatch):
    runs = []

    def slow(request, check=None):
        runs.append(request.photo)
        time.sleep(0.6)
        return {"done": True}

    monkeypatch.setattr(fresh.explorer, "_explain", slow)
    port = fresh.server_address[1]
    first = raw_request(port, 20, b'{"sample": "coffee"}')
    time.sleep(0.2)  # the first is running
    body = b'{"sample": "chelsea"}'
    raw_request(port, len(body), body).close()  # queued, then its page closes
    assert read_answer(first)[0] == 200
    time.sleep(0.3)
    assert runs == ["coffee"] and fresh.explorer.cancelled == 1


def test_a_running_explanation_stops_when_its_page_closes(fresh):
    """RISE's 4,000 masks on a model that takes 50 ms a batch (over 6 s): the page closes after
    0.5 s, and the explanation stops at its next forward pass."""
    body = json.dumps({"sample": "coffee", "model": "slow", "method": "rise", "size": 32}).encode()
    connection = raw_request(fresh.server_address[1], len(body), body)
    time.sleep(0.5)
    connection.close()
    deadline = time.monotonic() + 3
    while fresh.explorer.status()["busy"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fresh.explorer.status()["busy"] is False and fresh.explorer.cancelled == 1
    model = next(iter(fresh.explorer._models.values())).loaded.model
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())


# --- the page's script, in a real (headless) Chromium; no Selenium needed ---------------------


def chromium_dom(url: str, budget_ms: int = 5000) -> str:
    """The page's DOM after its scripts ran for ``budget_ms`` of virtual time."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no Chromium on PATH: apt-get install chromium (Debian)")
    done = subprocess.run(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if not done.stdout.strip():
        pytest.skip(f"Chromium did not start: {done.stderr.strip()[-300:]}")
    return done.stdout


def test_the_page_runs_under_its_content_security_policy(server):
    """The policy runs only the page's own inline script and style (by hash): the script fills
    the method list from /api/options."""
    dom = chromium_dom(server.url)
    assert '<option value="sise">SISE</option>' in dom


ANSWER = {
    "id": "x-1",
    "model": "m",
    "method": "gradcam",
    "method_name": "Grad-CAM",
    "size": 32,
    "photo": "coffee",
    "device": "cpu",
    "top5": [{"index": 1, "name": "a", "probability": 0.5}],
    "target": {"index": 1, "name": "a", "score": 0.5},
    "seconds": 0.1,
    "forward_passes": 1,
    "images": {"photo": "data:,", "overlay": "data:,"},
    "layers": None,
}


def test_a_failed_request_hides_the_previous_result(tmp_path: Path):
    """Explain once (a result), then again with an error (an offline model's name): the old
    result must not stay on show under the error as if it answered the new request."""
    stub = f"""<script>
    const answers = [[200, {json.dumps(ANSWER)}], [400, {{"error": "unknown model 'x'"}}]];
    window.fetch = async (url) => {{
      const [status, body] = url === "/api/options" ? [200, {json.dumps(options())}] :
        url === "/api/status" ? [200, {{"busy": false}}] : answers.shift();
      return {{ok: status === 200, status: status, json: async () => body}};
    }};
    setTimeout(() => document.getElementById("explain").click(), 200);
    setTimeout(() => document.getElementById("explain").click(), 1500);
    </script>"""
    page = page_html().decode().replace("<head>", "<head>" + stub, 1)
    (tmp_path / "page.html").write_text(page)
    dom = chromium_dom((tmp_path / "page.html").as_uri())
    tag = re.search(r'<div id="result"[^>]*>', dom)
    assert tag is not None and 'data-state="error"' in tag.group(0), tag
    assert "unknown model 'x'" in dom
    assert "display: none" in tag.group(0), tag.group(0)
