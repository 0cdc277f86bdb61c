"""The page's explanations: every method, one at a time."""

from __future__ import annotations

import io
import threading
import time

from PIL import Image
from torch import nn

from sise.images import load_image, sample_image_path
from sise.methods.registry import METHODS, make_explainer
from sise.models.loading import LoadedModel
from sise.web.explorer import Explorer, _ModelEntry
from sise.web.request import ExplainRequest


def test_every_method_through_the_page(monkeypatch, small_cnn):
    """Each of the eight methods answers with a prediction and its pictures (a tiny model, so
    that this stays quick; the real weights are tested above)."""
    names = ["ant", "bee", "cat", "dog", "eel"]

    def tiny_model(name, checkpoint=None, *, device="cpu", input_size=(224, 224), **_):
        return LoadedModel(small_cnn, names, input_size, (0.5,) * 3, (0.5,) * 3, name)

    # RISE's 4,000 masks and Extremal Perturbation's 4 x 800 steps take minutes even here.
    budgets = {"rise": {"n_masks": 100}, "extremal": {"iterations": 20, "areas": (0.1,)}}

    def small_budget(method, model, **options):
        return make_explainer(method, model, **options, **budgets.get(method, {}))

    monkeypatch.setattr("sise.web.explorer.load_model", tiny_model)
    monkeypatch.setattr("sise.web.explorer.make_explainer", small_budget)
    explorer = Explorer("cpu")
    rgb = load_image(sample_image_path("chelsea"))
    for method in METHODS:
        answer = explorer.explain(
            ExplainRequest(rgb, "chelsea", "tiny", method, 32, "fixed", "dog")
        )
        assert answer["target"] == {"index": 3, "name": "dog", "score": answer["target"]["score"]}
        assert [p["name"] for p in answer["top5"]] != [] and answer["forward_passes"] >= 1
        overlay = explorer.image(answer["id"], "overlay")
        assert overlay is not None and Image.open(io.BytesIO(overlay)).size == (451, 300)
        assert (answer["layers"] is not None) == (method == "sise"), method
    assert explorer.models_loaded == 1
    assert not any(m._forward_pre_hooks for m in small_cnn.modules())


def test_one_explanation_at_a_time(monkeypatch):
    explorer = Explorer("cpu")
    running, most, seen_waiting = [0], [0], []

    def slow_explain(request: ExplainRequest, check=None) -> dict[str, object]:
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.2)
        seen_waiting.append(explorer.status()["waiting"])
        running[0] -= 1
        return {}

    monkeypatch.setattr(explorer, "_explain", slow_explain)
    request = ExplainRequest(load_image(sample_image_path("coffee")), "coffee")
    threads = [threading.Thread(target=explorer.explain, args=(request,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    assert explorer.status()["busy"] is True
    for thread in threads:
        thread.join()
    assert most[0] == 1 and max(seen_waiting) >= 1
    assert explorer.status() == {
        "busy": False,
        "stage": "idle",
        "method": "",
        "seconds": 0.0,
        "images_scored": 0,
        "waiting": 0,
    }


def test_the_page_runs_the_quick_budget_on_a_cpu_and_the_papers_on_a_gpu(monkeypatch):
    """As ``sise explain`` chooses: the published RISE (4,000 masks) takes minutes on a CPU."""
    seen: dict[str, dict[str, object]] = {}

    def record(method, model, **options):
        seen[method] = options
        return make_explainer(method, model, **options)

    monkeypatch.setattr("sise.web.explorer.make_explainer", record)
    names = ["ant", "bee", "cat", "dog", "eel"]
    loaded = LoadedModel(
        nn.Sequential(nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        names,
        (32, 32),
        (0.5,) * 3,
        (0.5,) * 3,
        "tiny",
    )
    explorer = Explorer("cpu")
    rise = explorer._explainer(_ModelEntry(loaded), "rise", "fixed")
    assert seen["rise"]["budget"] == "quick" and rise.n_masks == 1000  # type: ignore[attr-defined]
    assert Explorer("cuda").budget == "paper"  # no GPU needed: only the choice is made
