"""Classes by name in the Python API: ``explainer(x, "tabby")`` and ``ClassName``."""

from __future__ import annotations

import gc

import pytest
import torch

from sise import ClassName, GradCAM, SiseError
from sise.methods.registry import make_explainer
from sise.models.loading import LoadedModel
from sise.targets import class_names_of, set_class_names

NAMES = ["tiger cat", "tabby", "Persian cat", "crate", "cassette"]


@pytest.fixture
def named(small_cnn):
    return LoadedModel(small_cnn, NAMES, (32, 32), (0.5,) * 3, (0.5,) * 3, "tiny")


@pytest.mark.parametrize("method", ["gradcam", "rise"])
def test_a_name_is_its_index(named, method):
    x = torch.randn(2, 3, 32, 32)
    options = {"n_masks": 16} if method == "rise" else {}
    explainer = make_explainer(method, named.model, **options)
    by_index = explainer(x, 1)
    for target in ("tabby", "Tabby ", "1", ClassName("tabby"), ["tabby", "tabby"]):
        explained = explainer(x, target)
        assert explained.targets.tolist() == [1, 1]
        torch.testing.assert_close(explained.maps, by_index.maps)
    # one per image, names and indices mixed
    assert explainer(x, ["crate", 2]).targets.tolist() == [3, 2]
    assert explainer(x, ClassName(["cassette", "tiger cat"])).targets.tolist() == [4, 0]


def test_a_misspelt_name_gets_the_command_line_s_suggestions(named):
    with pytest.raises(SiseError) as from_api:
        GradCAM(named.model)(torch.randn(1, 3, 32, 32), "catt")
    with pytest.raises(SiseError) as from_cli:
        named.class_index("catt")  # what `sise explain --target catt` says
    assert str(from_api.value) == str(from_cli.value)
    assert "tiny has no class named 'catt'; close names: 'tiger cat', 'Persian cat'" in str(
        from_api.value
    )
    with pytest.raises(SiseError, match="class index 9 is out of range: tiny has 5 classes"):
        GradCAM(named.model)(torch.randn(1, 3, 32, 32), ClassName("9"))


def test_a_model_without_names_says_how_to_give_them(small_cnn):
    with pytest.raises(SiseError, match=r"set_class_names\(model, names\)"):
        GradCAM(small_cnn)(torch.randn(1, 3, 32, 32), "tabby")
    set_class_names(small_cnn, NAMES, "mine")
    assert GradCAM(small_cnn)(torch.randn(1, 3, 32, 32), "crate").targets.tolist() == [3]
    with pytest.raises(SiseError, match="class names must be a sequence of strings"):
        set_class_names(small_cnn, "tabby")
    with pytest.raises(SiseError, match="ClassName takes a class name"):
        ClassName([3])  # type: ignore[list-item]


def test_the_class_list_does_not_keep_the_model_alive(small_cnn):
    import weakref

    from tiny_models import SmallCNN

    model = SmallCNN()
    set_class_names(model, NAMES)
    assert class_names_of(model) == tuple(NAMES)
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None


def test_the_real_model_takes_imagenet_names(demo):
    from sise.images import load_image, sample_image_path

    x = demo.preprocess(load_image(sample_image_path("chelsea")))
    explained = GradCAM(demo.model)(x, "tabby")
    assert explained.targets.tolist() == [demo.class_index("tabby")] == [281]
    with pytest.raises(SiseError, match="close names"):
        GradCAM(demo.model)(x, "tabbby")
