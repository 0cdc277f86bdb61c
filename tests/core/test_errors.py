"""Bad input gets an error that says what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sise import SISE, SiseError
from sise.images import load_image
from sise.methods.registry import make_explainer


def test_missing_file(tmp_path):
    with pytest.raises(SiseError, match="does not exist"):
        load_image(tmp_path / "nope.jpg")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(SiseError, match="is a folder"):
        load_image(tmp_path)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is text, not a photo")
    with pytest.raises(SiseError, match="not an image"):
        load_image(path)


def test_truncated_jpeg(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SiseError, match="corrupt or truncated"):
        load_image(path)


def test_grayscale_and_rgba_are_converted(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(gray)
    rgb = load_image(gray)
    assert rgb.shape == (8, 8, 3) and (rgb[..., 0] == np.arange(64).reshape(8, 8)).all()
    rgba = tmp_path / "rgba.png"
    pixels = np.zeros((4, 4, 4), np.uint8)
    pixels[..., 0] = 200
    pixels[0, 0, 3] = 255  # one opaque red pixel; the rest transparent, shown as white
    Image.fromarray(pixels, "RGBA").save(rgba)
    out = load_image(rgba)
    assert out[0, 0].tolist() == [200, 0, 0] and out[1, 1].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (np.zeros((1, 3, 16, 16), np.float32), "must be a torch.Tensor"),
        (torch.zeros(3, 16, 16), "add the batch dimension"),
        (torch.zeros(1, 1, 3, 16, 16), "must have shape"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), "floating point"),
        (torch.zeros(0, 3, 16, 16), "no image"),
    ],
)
def test_bad_tensors(small_cnn, inputs, message):
    with pytest.raises(SiseError, match=message):
        SISE(small_cnn)(inputs)


def test_wrong_number_of_targets(small_cnn):
    with pytest.raises(SiseError, match="3 targets for 2 inputs"):
        SISE(small_cnn)(torch.zeros(2, 3, 16, 16), [0, 1, 2])


def test_unknown_options(small_cnn):
    with pytest.raises(SiseError, match="unknown score"):
        SISE(small_cnn, score="probability")  # type: ignore[arg-type]
    with pytest.raises(SiseError, match="unknown gate"):
        SISE(small_cnn, gate="hard")  # type: ignore[arg-type]
    with pytest.raises(SiseError, match="unknown baseline"):
        SISE(small_cnn, baseline="noise")(torch.zeros(1, 3, 16, 16))


def test_class_names(demo):
    assert demo.class_index("Egyptian cat") == 285
    assert demo.class_index("281") == 281
    with pytest.raises(SiseError, match=r"no class named 'egyptian kat'.*Egyptian cat"):
        demo.class_index("egyptian kat")
    with pytest.raises(SiseError, match="out of range"):
        demo.class_index(1000)


def test_unknown_model_name():
    from sise.models.loading import load_model

    with pytest.raises(SiseError, match=r"unknown model 'resnet5'.*resnet50"):
        load_model("resnet5")


def test_checkpoint_errors(tmp_path):
    from sise.models.loading import load_model

    with pytest.raises(SiseError, match="does not exist"):
        load_model("resnet18", tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SiseError, match="could not read checkpoint"):
        load_model("resnet18", bad)
    wrong = tmp_path / "wrong.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(SiseError, match="does not fit the architecture"):
        load_model("resnet18", wrong)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mu": float("nan")}, "mu must be a finite number"),
        ({"mu": 1.0}, "mu must be < 1.0"),
        ({"mu": -0.1}, "mu must be >= 0.0"),
        ({"mu": "0.5"}, "mu must be a number"),
        ({"soft_gate_sharpness": float("nan")}, "soft_gate_sharpness must be a finite"),
        ({"soft_gate_sharpness": 0.0}, "soft_gate_sharpness must be > 0.0"),
        ({"baseline": torch.full((1, 3, 1, 1), float("nan"))}, "baseline tensor holds NaN"),
        ({"batch_size": 0}, r"batch_size \(or 'auto'\) must be >= 1"),
        ({"batch_size": 2.5}, r"batch_size \(or 'auto'\) must be an integer"),
        ({"batch_size": True}, r"batch_size \(or 'auto'\) must be an integer"),
        ({"batch_size": "max"}, r"batch_size \(or 'auto'\) must be an integer"),
        ({"progress": "yes"}, "progress must be True or False"),
        ({"channels_last": 1}, "channels_last must be True or False"),
    ],
)
def test_sise_options_are_checked_where_they_enter(small_cnn, options, message):
    # make_explainer: the speed settings (batch_size, progress, channels_last) go to the Runtime
    with pytest.raises(SiseError, match=message):
        make_explainer("sise", small_cnn, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "bogus"}, "unknown integration method 'bogus': use 'gausslegendre'"),
        ({"n_steps": 2.5}, "n_steps must be an integer"),
        ({"n_steps": True}, "n_steps must be an integer"),
        ({"n_steps": 0}, "n_steps must be >= 1"),
        ({"batch_size": 0}, r"batch_size \(or 'auto'\) must be >= 1"),
        ({"baseline": torch.tensor(float("inf"))}, "baseline tensor holds NaN or Inf"),
        ({"baseline": "noise"}, "unknown baseline 'noise'"),
    ],
)
def test_integrated_gradients_options_are_checked(small_cnn, options, message):
    from sise import IntegratedGradients

    with pytest.raises(SiseError, match=message):
        make_explainer(IntegratedGradients.name, small_cnn, **options)


def test_fullgrad_normalization_is_checked(small_cnn):
    from sise import FullGrad

    with pytest.raises(SiseError, match="unknown normalization 'pixel'"):
        FullGrad(small_cnn, normalization="pixel")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tabby", "got the name 'tabby'.*LoadedModel.class_index"),
        (["tabby"], "got the name 'tabby'"),
        (True, "got the boolean True"),
        ([True], "got the boolean True"),
        (torch.tensor([True]), "boolean tensor"),
        (object(), "targets must be class indices"),
    ],
)
def test_targets_are_class_indices(small_cnn, target, message):
    with pytest.raises(SiseError, match=message):
        SISE(small_cnn)(torch.zeros(1, 3, 16, 16), target)


def test_numpy_integer_target_is_an_index(small_cnn):
    x = torch.randn(1, 3, 16, 16)
    assert SISE(small_cnn)(x, np.int64(3)).targets.tolist() == [3]


def test_model_returning_nan_is_refused():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 2)
    ).eval()
    with torch.no_grad():
        model[3].bias.fill_(float("nan"))
    with pytest.raises(SiseError, match="model returned NaN or Inf scores"):
        SISE(model)(torch.randn(1, 3, 8, 8))


def test_float_tiff_in_unit_range_is_not_black(tmp_path):
    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    path = tmp_path / "unit.tiff"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "F"
    rgb = load_image(path)
    assert rgb.shape == (8, 8, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.round(values * 255).astype(np.uint8))
    bytes_range = tmp_path / "bytes.tiff"
    Image.fromarray(values * 200).save(bytes_range)
    np.testing.assert_array_equal(load_image(bytes_range)[..., 1], np.round(values * 200))


@pytest.mark.parametrize(
    ("value", "message"), [(float("nan"), "NaN or Inf pixels"), (-3.0, "values in \\[-3, 1\\]")]
)
def test_bad_float_tiff(tmp_path, value, message):
    values = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    values[0, 0] = value
    path = tmp_path / "bad.tiff"
    Image.fromarray(values).save(path)
    with pytest.raises(SiseError, match=message):
        load_image(path)


def test_decompression_bomb_is_a_message(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(path)
    # PIL refuses images of more than twice MAX_IMAGE_PIXELS; lower it instead of writing GBs.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(SiseError, match=r"too large to open safely.*MAX_IMAGE_PIXELS"):
        load_image(path)
