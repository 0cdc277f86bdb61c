"""Named budgets (``make_explainer(..., budget="quick")``) and a progress bar in every slow
method."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sise import Runtime, SiseError
from sise.methods.registry import budget_options, make_explainer


def test_the_budgets_hold_the_published_and_the_quick_settings(small_cnn):
    assert budget_options("RISE", "paper") == {"n_masks": 4000}
    assert budget_options("extremal", "paper") == {
        "iterations": 800,
        "areas": (0.025, 0.05, 0.1, 0.2),
        "area_weight_growth": 1.0035,
    }
    assert budget_options("ig", "paper") == {"n_steps": 50}
    for method in ("sise", "gradcam", "gradcampp", "scorecam", "fullgrad"):
        assert budget_options(method, "paper") == budget_options(method, "quick") == {}
    quick = budget_options("extremal", "quick")
    assert quick["iterations"] == 300 and quick["areas"] == (0.1,)
    # the area weight ends where the paper's 800 iterations end: 300 · 1.0035^800
    assert 300 * quick["area_weight_growth"] ** 300 == pytest.approx(300 * 1.0035**800)
    with pytest.raises(SiseError, match="unknown budget 'slow': use quick or paper"):
        budget_options("rise", "slow")  # type: ignore[arg-type]


def test_the_paper_budget_gives_vgg_8000_masks():
    class VGG(nn.Module):  # RISE's paper: 4,000 masks for ResNet-50, 8,000 for VGG16
        pass

    assert budget_options("rise", "paper", VGG()) == {"n_masks": 8000}
    assert budget_options("rise", "paper", nn.Linear(2, 2)) == {"n_masks": 4000}


def test_make_explainer_takes_a_budget_and_an_option_wins(small_cnn):
    assert make_explainer("rise", small_cnn, budget="quick").n_masks == 1000
    assert make_explainer("rise", small_cnn, budget="paper").n_masks == 4000
    assert make_explainer("rise", small_cnn, budget="quick", n_masks=7).n_masks == 7
    explainer = make_explainer("extremal", small_cnn, budget="quick", iterations=5)
    assert explainer.iterations == 5 and explainer.areas == [0.1]
    assert make_explainer("ig", small_cnn, budget="quick").n_steps == 20


def test_integrated_gradients_shows_its_path_points(small_cnn, capsys):
    import contextlib

    explainer = make_explainer("ig", small_cnn, n_steps=6, runtime=Runtime(progress=True))
    explainer(torch.randn(2, 3, 32, 32))
    assert "Integrated Gradients" in capsys.readouterr().err
    counted: list[tuple[int, str, int]] = []
    drawn = explainer.model_runtime.progress_bar

    @contextlib.contextmanager
    def counting(total, label, unit="fwd"):
        steps = []
        with drawn(total, label, unit) as advance:

            def both(n):
                steps.append(n)
                advance(n)

            yield both
        counted.append((total, label, sum(steps)))

    explainer.model_runtime.progress_bar = counting  # type: ignore[method-assign]
    explainer(torch.randn(2, 3, 32, 32))
    assert counted == [(12, "Integrated Gradients", 12)]  # 6 path points of 2 images
    capsys.readouterr()
    make_explainer("ig", small_cnn, n_steps=6)(torch.randn(2, 3, 32, 32))
    assert capsys.readouterr().err == ""  # no bar unless the runtime asks for one
