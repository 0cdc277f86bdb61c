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
