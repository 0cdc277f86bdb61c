"""The page: index.html with its style and script, served as one file."""

from __future__ import annotations

from importlib import resources

from sise.web.page import page_html


def test_the_page_inlines_its_style_and_script() -> None:
    page = page_html().decode("utf-8")
    static = resources.files("sise.web") / "static"
    assert 'href="style.css"' not in page and 'src="app.js"' not in page
    assert page.count("<style>") == 1 and page.count("<script>") == 1
    assert static.joinpath("app.js").read_text(encoding="utf-8") in page
    for line in static.joinpath("style.css").read_text(encoding="utf-8").splitlines():
        assert "  " + line in page
    assert page.startswith("<!doctype html>") and page.endswith("</html>\n")


def test_the_page_says_one_forward_pass() -> None:
    """The status line's count, run through Node when it is installed."""
    import re
    import shutil
    import subprocess
    from pathlib import Path

    import pytest

    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    script = (Path(__file__).parents[2] / "src/sise/web/static/app.js").read_text()
    function = re.search(r"^function passesText\(.*?^}\n", script, re.S | re.M)
    assert function is not None and "passesText(answer.forward_passes)" in script
    done = subprocess.run(
        [node, "-e", function.group(0) + "console.log([1, 2, 1093].map(passesText).join('|'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "1 forward pass|2 forward passes|1,093 forward passes"
