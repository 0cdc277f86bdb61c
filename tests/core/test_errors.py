"""Bad input gets an error that says what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sise import SISE, SiseError
from sise.images import load_image


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


def test_class_index_out_of_range(small_cnn):
    with pytest.raises(SiseError, match="out of range: the model has 5 classes"):
        SISE(small_cnn)(torch.zeros(1, 3, 16, 16), 7)


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
    with pytest.raises(SiseError, match="no class named 'egyptian kat'.*Egyptian cat"):
        demo.class_index("egyptian kat")
    with pytest.raises(SiseError, match="out of range"):
        demo.class_index(1000)


def test_unknown_model_name():
    from sise.models import load_model

    with pytest.raises(SiseError, match="unknown model 'resnet5'.*resnet50"):
        load_model("resnet5")


def test_checkpoint_errors(tmp_path):
    from sise.models import load_model

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
