"""``sise app``'s server: its HTTP API without a browser, then the page end to end in a real
Chromium.

The browser test needs Selenium (``pip install -e '.[browser]'``) and Debian's ``chromium`` and
``chromium-driver`` packages; without them it skips and says which is missing. Set
``SISE_APP_SCREENSHOT=path.png`` to keep a screenshot of the page with its results.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from PIL import Image

from sise.images import sample_image_path
from sise.methods.registry import METHODS
from sise.web import AppServer, make_server


@pytest.fixture(scope="module")
def server() -> Iterator[AppServer]:
    app = make_server(0, "cpu", quiet=True)
    thread = threading.Thread(target=app.serve_forever, daemon=True)
    thread.start()
    yield app
    app.shutdown()
    app.server_close()


def call(
    app: AppServer,
    path: str,
    payload: object = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
):
    """(status, parsed JSON or bytes, content type) of a GET, or of a JSON POST with a body."""
    body = raw if raw is not None else (None if payload is None else json.dumps(payload).encode())
    headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(app.url.rstrip("/") + path, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            status, data, kind = response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        status, data, kind = error.code, error.read(), error.headers["Content-Type"]
    return status, (json.loads(data) if kind == "application/json" else data), kind


def photo_b64(name: str) -> str:
    return base64.b64encode(sample_image_path(name).read_bytes()).decode()


def test_page_and_options(server):
    status, page, kind = call(server, "/")
    assert status == 200 and kind.startswith("text/html")
    assert b'id="explain"' in page and b'type="file"' in page
    status, options, _ = call(server, "/api/options")
    assert status == 200
    assert {m["key"] for m in options["methods"]} == set(METHODS)
    assert options["defaults"]["model"] == "efficientnet_lite0"
    status, jpeg, kind = call(server, "/api/sample/coffee.jpg")
    assert status == 200 and kind == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg)).size == Image.open(sample_image_path("coffee")).size


def test_corrupt_image_gets_a_clear_error_not_a_traceback(server):
    truncated = sample_image_path("coffee").read_bytes()[:3000]
    status, answer, kind = call(
        server, "/api/explain", {"image": base64.b64encode(truncated).decode()}
    )
    assert status == 400 and kind == "application/json"
    assert answer["error"].startswith("the uploaded image is corrupt or truncated")
    status, answer, _ = call(
        server, "/api/explain", {"image": base64.b64encode(b"not a photo at all").decode()}
    )
    assert status == 400
    assert "not an image PIL can read" in answer["error"]
    assert "Traceback" not in answer["error"]
    # The server carries on.
    assert call(server, "/api/status")[1]["busy"] is False


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"sample": "coffee", "image": "AAAA"}', "exactly one of 'image'"),
        (b"{}", "exactly one of 'image'"),
        (b'{"sample": "dog"}', "no sample photo 'dog'"),
        (b'{"sample": "coffee", "method": "lime"}', "unknown method 'lime'"),
        (b'{"sample": "coffee", "size": 5000}', "out of range"),
        (b'{"sample": "coffee", "selection": "best"}', "unknown selection"),
        (b'{"sample": "coffee", "colour": "red"}', "unknown request fields ['colour']"),
        (b'{"image": "@@@"}', "not valid base64"),
        (b'{"sample": "coffee", "model": "no_such_net"}', "unknown model 'no_such_net'"),
    ],
)
def test_bad_requests_are_explained(server, body, message):
    status, answer, kind = call(server, "/api/explain", raw=body)
    assert (status, kind) == (400, "application/json")
    assert message in answer["error"]


def test_only_json_from_this_computer(server):
    status, answer, _ = call(
        server, "/api/explain", {"sample": "coffee"}, headers={"Content-Type": "text/plain"}
    )
    assert status == 415 and "application/json" in answer["error"]
    status, answer, _ = call(server, "/api/options", headers={"Host": "evil.example:8765"})
    assert status == 403 and "127.0.0.1" in answer["error"]
    assert call(server, "/api/options", headers={"Host": "localhost"})[0] == 200


def test_unknown_paths_are_json_404(server):
    for path in ("/nothing", "/api/image/x/overlay.png", "/api/sample/dog.jpg"):
        status, answer, kind = call(server, path)
        assert (status, kind) == (404, "application/json") and answer["error"]


@pytest.mark.slow
def test_explain_on_real_weights_keeps_the_model_loaded(server):
    status, gradcam, _ = call(
        server, "/api/explain", {"sample": "coffee", "method": "gradcam", "size": 160}
    )
    assert status == 200, gradcam
    assert gradcam["top5"][0]["name"] == "espresso" and gradcam["target"]["name"] == "espresso"
    assert gradcam["layers"] is None and gradcam["forward_passes"] == 1
    probabilities = [p["probability"] for p in gradcam["top5"]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1
    status, png, kind = call(server, gradcam["images"]["overlay"])
    assert status == 200 and kind == "image/png"
    # The page shows the photo at its own aspect, the longer side capped (coffee.jpg: 600 x 400).
    assert Image.open(sample_image_path("coffee")).size == (600, 400)
    assert Image.open(io.BytesIO(png)).size == (480, 320)

    status, sise, _ = call(
        server,
        "/api/explain",
        {"image": photo_b64("chelsea"), "method": "sise", "selection": "adaptive", "size": 128},
    )
    assert status == 200, sise
    assert sise["target"]["name"] == "Egyptian cat" and sise["photo"] == "uploaded photo"
    layers = sise["layers"]
    assert next(layer["role"] for layer in layers) == "start" and len(layers) == 5
    assert sise["forward_passes"] == 1 + sum(layer["kept"] for layer in layers)
    for layer in layers:
        assert 0 < layer["gate_share"] < 1 and 0 < layer["threshold"] < 1
        for key in ("map", "gate"):
            picture = Image.open(io.BytesIO(call(server, layer[key])[1]))
            assert picture.size == (256, 170)  # chelsea: 451 x 300
    # Another class by name; the model is loaded once per input size.
    status, cup, _ = call(
        server,
        "/api/explain",
        {"sample": "coffee", "method": "gradcam", "size": 160, "target": "cup"},
    )
    assert status == 200 and cup["target"]["name"] == "cup"
    assert server.explorer.models_loaded == 2
    status, answer, _ = call(
        server,
        "/api/explain",
        {"sample": "coffee", "method": "gradcam", "size": 160, "target": "catdog"},
    )
    assert status == 400 and "no class named 'catdog'" in answer["error"]
    # The progress counter's hook is gone from the model.
    for entry in server.explorer._models.values():
        assert not any(m._forward_pre_hooks for m in entry.loaded.model.modules())


def _chromium():
    """A headless Chromium driven by Selenium, or a skip that says what is missing."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
    except ImportError:
        pytest.skip("Selenium is not installed: pip install -e '.[browser]'")
    browser = next(
        (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
    )
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "no Chromium browser or chromedriver on PATH: "
            "apt-get install chromium chromium-driver (Debian)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace sandbox
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
    ):
        options.add_argument(argument)
    try:
        return webdriver.Chrome(service=webdriver.ChromeService(driver), options=options)
    except WebDriverException as error:
        pytest.skip(f"Chromium is installed but did not start: {error.msg}")


def test_the_browser_test_skips_with_its_reason_when_a_piece_is_missing(monkeypatch):
    """Debian's chromium without Selenium (the README's test command on such a machine), or
    Selenium without a browser: a skip that says what to install, never an error."""
    import sys
    import types

    monkeypatch.setitem(sys.modules, "selenium", None)  # import selenium raises ImportError
    with pytest.raises(pytest.skip.Exception, match="Selenium is not installed"):
        _chromium()
    selenium = types.ModuleType("selenium")
    common = types.ModuleType("selenium.common")
    exceptions = types.ModuleType("selenium.common.exceptions")
    exceptions.WebDriverException = Exception  # type: ignore[attr-defined]
    selenium.webdriver = types.ModuleType("selenium.webdriver")  # type: ignore[attr-defined]
    for module in (selenium, common, exceptions, selenium.webdriver):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="no Chromium browser or chromedriver"):
        _chromium()


@pytest.mark.slow
def test_page_in_a_real_browser(server):
    # a skip that says why, before the imports below fail (Chromium may be there without Selenium)
    pytest.importorskip("selenium", reason="Selenium is not installed: pip install -e '.[browser]'")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser = _chromium()
    try:
        browser.get(server.url)
        WebDriverWait(browser, 30).until(
            lambda b: len(Select(b.find_element(By.ID, "method")).options) == len(METHODS)
        )
        # Pick the bundled coffee photo, then upload the cat instead: the answer ("Egyptian
        # cat") proves that the uploaded file was explained.
        browser.find_element(By.CSS_SELECTOR, "button[data-sample=coffee]").click()
        assert "coffee" in browser.find_element(By.ID, "photo-name").text
        browser.find_element(By.ID, "photo-file").send_keys(str(sample_image_path("chelsea")))
        WebDriverWait(browser, 10).until(
            lambda b: "uploaded: chelsea.jpg" in b.find_element(By.ID, "photo-name").text
        )
        Select(browser.find_element(By.ID, "method")).select_by_value("sise")
        Select(browser.find_element(By.ID, "selection")).select_by_value("adaptive")
        Select(browser.find_element(By.ID, "size")).select_by_value("128")
        browser.find_element(By.ID, "explain").click()
        assert browser.find_element(By.ID, "explain").get_attribute("disabled") is not None

        def finished(b):
            return b.find_element(By.ID, "result").get_attribute("data-state") in ("done", "error")

        WebDriverWait(browser, 240).until(finished)
        assert browser.find_element(By.ID, "result").get_attribute("data-state") == "done", (
            browser.find_element(By.ID, "error").text
        )
        images = browser.find_elements(By.CSS_SELECTOR, "#result img")
        assert len(images) == 2 + 2 * 5  # photo, fused map, and each layer's map and gate
        WebDriverWait(browser, 30).until(
            lambda b: b.execute_script(
                "return [...document.querySelectorAll('#result img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
        )
        predictions = browser.find_elements(By.CSS_SELECTOR, "#prediction li")
        assert len(predictions) == 5 and predictions[0].text.startswith("Egyptian cat")
        assert (
            browser.find_element(By.ID, "map-title").text == "Ada-SISE: Egyptian cat"
        )  # adaptive chosen above
        notes = [p.text for p in browser.find_elements(By.CSS_SELECTOR, ".layer p")]
        assert len(notes) == 5
        assert all(re.match(r"\d+ feature maps? kept · ", note) for note in notes), notes
        assert "starts the fusion" in notes[0] and "Otsu t = " in notes[-1]
        assert "forward passes" in browser.find_element(By.ID, "status").text
        if os.environ.get("SISE_APP_SCREENSHOT"):  # the whole page, for the README
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(1280, height + 140)
            browser.save_screenshot(os.environ["SISE_APP_SCREENSHOT"])

        # A model that cannot be loaded: the page says why.
        field = browser.find_element(By.ID, "model")
        field.clear()
        field.send_keys("no_such_net")
        browser.find_element(By.ID, "explain").click()
        WebDriverWait(browser, 60).until(
            lambda b: b.find_element(By.ID, "result").get_attribute("data-state") == "error"
        )
        assert "unknown model 'no_such_net'" in browser.find_element(By.ID, "error").text
        # the cat's result is not left on show as if it answered this request
        assert not browser.find_element(By.ID, "result").is_displayed()
        # the page ran under its Content-Security-Policy without a violation, and has its icon
        console = [entry["message"] for entry in browser.get_log("browser")]
        assert not [line for line in console if "Content Security Policy" in line], console
        assert not [line for line in console if "favicon" in line], console
    finally:
        browser.quit()


def test_sise_app_explains_on_its_main_thread_and_stops_on_ctrl_c(tmp_path):
    """`sise app` end to end in its own process: serve on a free port, answer an explanation
    (run on the main thread: a request thread's explanation would show in the recorded thread
    names), stop cleanly on SIGINT."""
    import signal
    import subprocess
    import sys

    script = (
        # a shell that started the tests in the background ignores SIGINT for its children:
        # take it as a terminal would
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import threading, sise.web as app\n"
        "explain = app.Explorer._explain\n"
        "def recorded(self, request, *rest):\n"
        "    print('explained on', threading.current_thread().name, flush=True)\n"
        "    return explain(self, request, *rest)\n"
        "app.Explorer._explain = recorded\n"
        "app.serve(0)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"open (http://127\.0\.0\.1:\d+/)", first)
        assert match, first
        request = urllib.request.Request(
            match.group(1) + "api/explain",
            data=json.dumps({"sample": "coffee", "method": "gradcam", "size": 128}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        assert answer["method"] == "gradcam" and len(answer["top5"]) == 5
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert "explained on MainThread" in out
    assert "sise app: stopped" in out
    assert process.returncode == 0, err
