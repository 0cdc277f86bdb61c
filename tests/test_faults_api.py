"""Issue 22's fault cases on the Python API, as a table: each bad input gets a :class:`SiseError`
or a warning whose message says what went wrong and what to do (case -> message fragment), and
the cases with a right answer (an upright phone photo, a JPEG decoded at the size needed) give it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sise import SiseError
from sise.images import decode_image, load_image, sample_image_path

#: EXIF tag of the orientation; 6: the stored picture must turn 90° clockwise to be upright.
ORIENTATION = 0x0112


def _sideways_photo(path: Path) -> np.ndarray:
    """Save the cat photo as a phone stores a portrait shot (pixels on their side, EXIF
    orientation 6) and return the upright photo."""
    upright = load_image(sample_image_path("chelsea"))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    # orientation 6 = the viewer rotates the stored pixels 90° clockwise; so store them 90° CCW
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    return upright


def _huge_png(path: Path) -> Path:
    """A 12000 x 12000 black PNG: about 140 kB on disk, 432 MB as RGB."""
    Image.new("L", (12000, 12000)).save(path)
    return path


# ------------------------------------------------------------------------------ the cases


def huge_png_file(tmp: Path, model: nn.Module) -> object:
    return load_image(_huge_png(tmp / "huge.png"))


def huge_png_never_decoded(tmp: Path, model: nn.Module) -> object:
    from PIL import ImageFile

    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the pixels were decoded")

    path = _huge_png(tmp / "huge.png")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ImageFile.ImageFile, "load", refuse)
        return load_image(path)


def huge_png_upload(tmp: Path, model: nn.Module) -> object:
    return decode_image(_huge_png(tmp / "huge.png").read_bytes())


def over_a_lowered_budget(tmp: Path, model: nn.Module) -> object:
    path = tmp / "small.png"
    Image.new("RGB", (100, 100)).save(path)
    return load_image(path, max_pixels=9999)


def bad_budget_variable(tmp: Path, model: nn.Module) -> object:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SISE_MAX_PIXELS", "lots")
        return load_image(sample_image_path("chelsea"))


def photo_as_checkpoint(tmp: Path, model: nn.Module) -> object:
    from sise.models.checkpoints import read_checkpoint

    return read_checkpoint(sample_image_path("chelsea"))


def checkpoint_with_objects(tmp: Path, model: nn.Module) -> object:
    from argparse import Namespace

    from sise.models.checkpoints import read_checkpoint

    path = tmp / "training_state.pt"
    torch.save({"args": Namespace(lr=0.1), "state_dict": {"w": torch.ones(2)}}, path)
    return read_checkpoint(path)


def random_bytes_as_checkpoint(tmp: Path, model: nn.Module) -> object:
    from sise.models.checkpoints import read_checkpoint

    path = tmp / "weights.pt"
    path.write_bytes(bytes(range(256)) * 8)
    return read_checkpoint(path)


def grayscale_inputs(tmp: Path, model: nn.Module) -> object:
    from sise import SISE

    return SISE(model)(torch.randn(1, 1, 64, 64))


def rgba_inputs(tmp: Path, model: nn.Module) -> object:
    from sise import SISE

    return SISE(model)(torch.randn(1, 4, 64, 64))


def tiny_inputs(tmp: Path, model: nn.Module) -> object:
    from sise import GradCAM

    return GradCAM(model)(torch.randn(1, 3, 3, 3))


def tiny_inputs_masked(tmp: Path, model: nn.Module) -> object:
    from sise import RISE

    return RISE(model, n_masks=8)(torch.randn(2, 3, 3, 3))


def a_trillion_rise_masks(tmp: Path, model: nn.Module) -> object:
    from sise import RISE

    # 10^12 masks: refused before any allocation (today: torch's raw allocation error)
    return RISE(model, n_masks=10**12)(torch.randn(1, 3, 16, 16))


def a_billion_ig_steps(tmp: Path, model: nn.Module) -> object:
    from sise import IntegratedGradients

    return IntegratedGradients(model, n_steps=10**9)(torch.randn(1, 3, 64, 64))


def a_billion_blur_levels(tmp: Path, model: nn.Module) -> object:
    from sise import ExtremalPerturbation

    return ExtremalPerturbation(model, levels=10**9, iterations=1)(torch.randn(1, 3, 64, 64))


def sise_layers_not_a_list(tmp: Path, model: nn.Module) -> object:
    from sise import SISE

    return SISE(model, layers=2.5)  # type: ignore[arg-type]


def rise_seed_below_zero(tmp: Path, model: nn.Module) -> object:
    from sise import RISE

    return RISE(model, seed=-1)


def rise_seed_above_64_bits(tmp: Path, model: nn.Module) -> object:
    from sise import RISE

    return RISE(model, seed=2**64)


#: (case, expected SiseError message fragment)
ERRORS: list[tuple[Callable[[Path, nn.Module], object], str]] = [
    # bad outcome 4: refused before decoding, naming the limit and both ways to raise it
    (huge_png_file, r"12000 × 12000 = 144.0 Mpx, more than the limit of 50,000,000 pixels"),
    (huge_png_file, r"SISE_MAX_PIXELS=144000000 \(in Python: max_pixels=144000000\)"),
    (huge_png_never_decoded, r"12000 × 12000 = 144.0 Mpx, more than the limit"),
    (huge_png_upload, r"the uploaded image has 12000 × 12000 .* SISE_MAX_PIXELS="),
    (over_a_lowered_budget, r"100 × 100 = 0.0 Mpx, more than the limit of 9,999 pixels"),
    (bad_budget_variable, r"SISE_MAX_PIXELS='lots' is not a positive whole number"),
    # raw errors 1-3: the model's own refusal, in the package's words
    (grayscale_inputs, r"takes 3-channel images but the inputs have 1 channel .*expand\(-1, 3"),
    (rgba_inputs, r"takes 3-channel images but the inputs have 4 channels .*inputs\[:, :3\]"),
    (tiny_inputs, r"inputs of 3x3 px are too small .* needs at least 4x4 px"),
    (tiny_inputs_masked, r"inputs of 3x3 px are too small .* needs at least 4x4 px"),
    # bad outcome 8: memory needs checked before allocating
    (a_trillion_rise_masks, r"RISE's 1,000,000,000,000 random grids .* need 497.0 TB, more "),
    (a_trillion_rise_masks, r"available on cpu: lower n_masks"),
    (a_billion_ig_steps, r"Integrated Gradients' 1,000,000,000 path points .* lower n_steps"),
    (a_billion_blur_levels, r"blur pyramid of 1,000,000,000 levels need .* lower levels"),
    # raw errors 4-8 (see also test_every_numeric_option_is_checked)
    (sise_layers_not_a_list, r"layers must be a list of layer names or modules, .* got 2.5"),
    (rise_seed_below_zero, r"seed must be >= 0, got -1"),
    (rise_seed_above_64_bits, r"seed must be <= 18446744073709551615"),
    # raw error 9: what the file is, never torch's advice to load it with weights_only=False
    (photo_as_checkpoint, r"chelsea.jpg' is not a PyTorch checkpoint: it is a JPEG image"),
    (checkpoint_with_objects, r"not a safe checkpoint: .* objects \(such as argparse.Namespace\)"),
    (
        random_bytes_as_checkpoint,
        r"it is not a PyTorch checkpoint \(torch cannot read it as saved tensors",
    ),
]


@pytest.mark.parametrize(
    ("case", "message"), ERRORS, ids=[f"{case.__name__}-{i}" for i, (case, _) in enumerate(ERRORS)]
)
def test_refused_with_a_message(case, message, tmp_path, small_cnn):
    with pytest.raises(SiseError, match=message) as caught:
        case(tmp_path, small_cnn)
    # one line, in the package's words: no advice to run code from an untrusted file
    assert "weights_only" not in str(caught.value) and "\n" not in str(caught.value)


# ----------------------------------------------------------------- cases with a right answer


def test_a_phone_photo_stored_sideways_is_read_upright(tmp_path):
    """Bad outcome 3: the EXIF orientation is applied, for files and uploads."""
    path = tmp_path / "portrait.jpg"
    upright = _sideways_photo(path)
    with Image.open(path) as stored:
        assert stored.size == (upright.shape[0], upright.shape[1])  # on its side in the file
    for rgb in (load_image(path), decode_image(path.read_bytes())):
        assert rgb.shape == upright.shape
        # JPEG re-encoding moves pixels by a few levels; a wrong turn moves them by ~60
        assert np.abs(rgb.astype(int) - upright).mean() < 3


def test_a_jpeg_is_decoded_no_larger_than_needed(tmp_path):
    """Bad outcome 4: with ``min_size``, a JPEG is decoded at 1/2, 1/4 or 1/8 scale (PIL's draft
    mode), the smallest that keeps both sides at least that big."""
    path = tmp_path / "big.jpg"
    Image.new("RGB", (3000, 2000), (200, 100, 50)).save(path)
    assert load_image(path).shape == (2000, 3000, 3)
    assert load_image(path, min_size=224).shape == (250, 375, 3)  # 1/8: 250 >= 224
    assert load_image(path, min_size=(300, 500)).shape == (500, 750, 3)  # 1/4: 250 < 300
    assert decode_image(path.read_bytes(), min_size=1000).shape == (1000, 1500, 3)  # 1/2
    # the budget counts the pixels decoded: 6 Mpx is refused at full size, not at 1/8
    with pytest.raises(SiseError, match="more than the limit of 1,000,000 pixels"):
        load_image(path, max_pixels=1_000_000)
    assert load_image(path, max_pixels=1_000_000, min_size=224).shape == (250, 375, 3)
    # a photo stored on its side: min_size is the upright image's (height, width)
    portrait = tmp_path / "portrait.jpg"
    Image.new("RGB", (1600, 800)).save(portrait, exif=_orientation(6))
    assert load_image(portrait, min_size=(400, 200)).shape == (400, 200, 3)  # 1/4 scale


def _orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = value
    return exif


def test_the_budget_comes_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setenv("SISE_MAX_PIXELS", "9_999")
    with pytest.raises(SiseError, match="limit of 9,999 pixels"):
        load_image(path)
    monkeypatch.setenv("SISE_MAX_PIXELS", "10000")
    assert load_image(path).shape == (100, 100, 3)


@pytest.mark.slow
def test_a_sideways_photo_is_explained_upright_by_the_real_model(tmp_path, demo):
    """On the pretrained EfficientNet-Lite0: the tagged sideways photo gives the upright photo's
    prediction (a tabby cat) and a map of the upright photo's shape."""
    from sise import GradCAM

    path = tmp_path / "portrait.jpg"
    upright = _sideways_photo(path)
    read = load_image(path)
    with torch.no_grad():
        top_upright = int(demo.model(demo.preprocess(upright)).argmax())
        top_read = int(demo.model(demo.preprocess(read)).argmax())
    assert demo.class_names[top_read] == demo.class_names[top_upright]
    assert "cat" in demo.class_names[top_read]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about on an upright photo
        maps = GradCAM(demo.model)(torch.cat([demo.preprocess(read), demo.preprocess(upright)]))
    # the same map as the upright photo's (a photo explained on its side gives another one)
    assert float((maps.maps[0] - maps.maps[1]).abs().mean()) < 0.02


# ------------------------------------------------------------------------- the warned cases


class Saturated(nn.Module):
    """A small CNN whose logits are multiplied by 1000: its softmax rounds to exactly 1."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1000 * self.model(x)


class Blind(nn.Module):
    """A classifier whose output does not depend on its input (a dead first layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.fill_(-1.0)  # ReLU(−1) = 0 everywhere

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def saturated_grad_cam(tmp: Path, model: nn.Module) -> object:
    from sise import GradCAM

    return GradCAM(Saturated(model), score="softmax")(torch.randn(1, 3, 32, 32))


def saturated_grad_cam_plus_plus(tmp: Path, model: nn.Module) -> object:
    from sise import GradCAMPlusPlus

    return GradCAMPlusPlus(Saturated(model), score="softmax")(torch.randn(1, 3, 32, 32))


def blind_model(tmp: Path, model: nn.Module) -> object:
    from sise import GradCAM

    return GradCAM(Blind().eval())(torch.randn(2, 3, 16, 16))


def extremal_on_24_px(tmp: Path, model: nn.Module) -> object:
    from sise import ExtremalPerturbation

    return ExtremalPerturbation(model, iterations=2)(torch.randn(1, 3, 24, 24))


#: (case, expected warning message fragment)
WARNINGS: list[tuple[Callable[[Path, nn.Module], object], str]] = [
    # bad outcome 1: an all-zero map from a saturated softmax names the saturation and the fix
    (saturated_grad_cam, r"GradCAM: the map of input 0 is all zero .* softmax .* saturated"),
    (saturated_grad_cam, r"score='logit' \(command line: --score logit\)"),
    (saturated_grad_cam_plus_plus, r"GradCAMPlusPlus: the map of input 0 is all zero"),
    # any all-zero map says so, with the reason
    (blind_model, r"GradCAM: the map of inputs \[0, 1\] is all zero .* did not respond"),
    # bad outcome 2: images too small for the masks' pixel sizes
    (extremal_on_24_px, r"24x24 px images are too small for sigma=21 px"),
    (extremal_on_24_px, r"step=1, sigma=2.25, blur_sigma=2.14"),
]


@pytest.mark.parametrize(
    ("case", "message"),
    WARNINGS,
    ids=[f"{case.__name__}-{i}" for i, (case, _) in enumerate(WARNINGS)],
)
def test_warned_with_the_reason(case, message, tmp_path, small_cnn):
    with pytest.warns(UserWarning, match=message):
        case(tmp_path, small_cnn)


def test_the_warning_points_at_the_caller(small_cnn):
    from sise import SISE, GradCAM

    for method in (GradCAM(Blind().eval()), SISE(Blind().eval(), layers=["conv"])):
        with pytest.warns(UserWarning, match="all zero") as caught:
            method(torch.randn(1, 3, 16, 16))
        assert caught[-1].filename == __file__
    with pytest.warns(UserWarning, match="too small for sigma") as caught:
        extremal_on_24_px(Path(), small_cnn)
    assert [w.filename for w in caught if "sigma" in str(w.message)] == [__file__]


def test_the_logit_of_a_saturated_softmax_is_explained(small_cnn):
    """Grad-CAM's default score is the logit, which does not saturate: a map, no warning."""
    from sise import GradCAM

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maps = GradCAM(Saturated(small_cnn))(torch.randn(1, 3, 32, 32)).maps
    assert float(maps.max()) == 1.0


# ------------------------------------------------------- errors that are the model's own


class Broken(nn.Module):
    """A model with bugs of its own: a channel mismatch deep inside, or any other error."""

    def __init__(self, bug: str) -> None:
        super().__init__()
        self.bug = bug
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.wrong = nn.Conv2d(4, 8, 3, padding=1)  # takes 4 channels, gets 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bug == "other":
            raise RuntimeError("the model's own failure")
        return self.wrong(self.conv(x)).mean(dim=(2, 3))


@pytest.mark.parametrize(
    ("bug", "message"),
    [("channels", r"expected input\[1, 8, 16, 16\] to have 4 channels"), ("other", "own failure")],
)
def test_errors_inside_the_model_are_left_as_they_are(bug, message):
    from sise import GradCAM

    with pytest.raises(RuntimeError, match=message) as caught:
        GradCAM(Broken(bug).eval(), layer="conv")(torch.randn(1, 3, 16, 16))
    assert not isinstance(caught.value, SiseError)


# ------------------------------------------------------- every method's numeric options

#: Values no numeric option takes: NaN, infinities, text, a bool, a list, and 2.5 for a count.
NOT_NUMBERS = [float("nan"), float("inf"), -float("inf"), "100", "abc", True, [1]]


def _numeric_options() -> list[tuple[str, str, object]]:
    """(method, option, bad value) for every option of every registered method whose default
    is a number (the options a user types as numbers: ``--option rise.n_masks=...``)."""
    import inspect

    from sise.methods.registry import METHODS

    cases = []
    for name, factory in METHODS.items():
        for option in inspect.signature(factory.__init__).parameters.values():
            default = option.default
            if isinstance(default, bool) or not isinstance(default, int | float):
                continue
            values = [*NOT_NUMBERS, *([2.5] if isinstance(default, int) else [])]
            cases += [(name, option.name, value) for value in values]
    return cases


@pytest.mark.parametrize(("method", "option", "value"), _numeric_options())
def test_every_numeric_option_is_checked(method, option, value, small_cnn):
    """Raw errors 4-8, for the options of all eight methods: one shared check
    (:func:`sise.errors.check_number`, :func:`sise.errors.check_integer`) names the option."""
    from sise.methods.registry import make_explainer

    with pytest.raises(SiseError, match=rf"^{option} must be"):
        make_explainer(method, small_cnn, **{option: value})


@pytest.mark.slow
@pytest.mark.parametrize(("channels", "message"), [(1, r"expand\(-1, 3"), (4, r"inputs\[:, :3\]")])
def test_the_real_model_names_the_channels_it_takes(demo, channels, message):
    """timm's EfficientNet pads its input before its first convolution ("same" padding), so torch
    names a 225 x 225 tensor: still the inputs, still their message."""
    from sise import GradCAM

    with pytest.raises(SiseError, match=rf"takes 3-channel images but the inputs have .*{message}"):
        GradCAM(demo.model)(torch.randn(1, channels, 224, 224))


def test_the_smallest_size_is_not_guessed_for_a_fixed_size_model():
    """A model that takes one size only (a Linear after Flatten) fails above the tiny size for
    another reason: the message then gives no minimum, and no other error replaces it."""
    from sise import GradCAM

    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 15 * 15, 2)
    ).eval()
    assert GradCAM(model, layer="1")(torch.randn(1, 3, 32, 32)).maps.shape == (1, 32, 32)
    with pytest.raises(SiseError, match=r"inputs of 3x3 px are too small .*give larger images"):
        GradCAM(model, layer="1")(torch.randn(1, 3, 3, 3))


@pytest.mark.slow
def test_the_real_model_warns_only_when_its_softmax_saturates(demo):
    """On the pretrained EfficientNet-Lite0 and the cat photo: no blank-map warning from the
    gradient methods (one pass each; the masked ones were checked by hand: no warning); with its logits x1000 Grad-CAM of the softmax is blank and
    says why, and Grad-CAM of the logit (its default) is not."""
    from sise.methods.registry import make_explainer

    x = demo.preprocess(load_image(sample_image_path("chelsea")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("gradcam", "gradcampp", "fullgrad"):
            assert float(make_explainer(name, demo.model)(x).maps.max()) == 1.0, name
    saturated = Saturated(demo.model).eval()
    with pytest.warns(UserWarning, match=r"GradCAM: .* all zero .* softmax .* saturated \(1\)"):
        make_explainer("gradcam", saturated, score="softmax")(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(make_explainer("gradcam", saturated)(x).maps.max()) == 1.0
