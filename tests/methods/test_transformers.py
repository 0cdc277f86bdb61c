"""Vision transformers and hierarchical backbones: token layouts, every method on timm's models
(random weights, small sizes), and Grad-CAM against pytorch-grad-cam on a ViT."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from sise import SiseError
from sise.core.feature_layout import FeatureLayout, candidate_layouts, grid_fit, settled_layout
from sise.methods import SISE, FullGrad, GradCAM
from sise.methods.registry import METHODS as REGISTRY
from sise.methods.registry import make_explainer

timm = pytest.importorskip("timm")

#: Every method with options that keep it cheap on a 64 px input.
METHODS: dict[str, dict[str, object]] = {
    "sise": {},
    "gradcam": {},
    "gradcampp": {},
    "scorecam": {},
    "rise": {"n_masks": 32, "seed": 0},
    "extremal": {
        "areas": (0.1,),
        "iterations": 2,
        "step": 8,
        "sigma": 4.0,
        "blur_sigma": 4.0,
        "levels": 3,
    },
    "ig": {"n_steps": 4},
    "fullgrad": {},
}

#: timm architectures at small sizes, with SISE's layers and their layouts as found.
MODELS: dict[str, tuple[str, dict[str, object], int, list[tuple[str, str]]]] = {
    "vit": (
        "vit_tiny_patch16_224",
        {"img_size": 32, "patch_size": 8, "depth": 4, "embed_dim": 48, "num_heads": 2},
        32,
        # 4 blocks: the ends of the first quarters (0, 1) and the input of the last (2)
        [
            ("blocks.0", "tokens: 1 prefix + 4x4"),
            ("blocks.1", "tokens: 1 prefix + 4x4"),
            ("blocks.2", "tokens: 1 prefix + 4x4"),
        ],
    ),
    "deit_distilled": (
        "deit_tiny_distilled_patch16_224",
        {"img_size": 32, "patch_size": 8, "depth": 4, "embed_dim": 48, "num_heads": 2},
        32,
        [
            ("blocks.0", "tokens: 2 prefix + 4x4"),
            ("blocks.1", "tokens: 2 prefix + 4x4"),
            ("blocks.2", "tokens: 2 prefix + 4x4"),
        ],
    ),
    "swin": (
        "swin_tiny_patch4_window7_224",
        {
            "img_size": 64,
            "window_size": 4,
            "embed_dim": 12,
            "num_heads": (1, 2, 2, 4),
            "depths": (2, 2, 2, 2),
        },
        64,
        [
            ("layers.0", "nhwc: 16x16"),
            ("layers.1", "nhwc: 8x8"),
            ("layers.2", "nhwc: 4x4"),
            ("norm", "nhwc: 2x2"),
        ],
    ),
    "convnext": (
        "convnext_atto",
        # 16 channels at 16 x 16: both readings fit, the trace at 128 px tells them apart
        {"dims": (16, 32, 48, 64), "depths": (1, 1, 2, 1)},
        64,
        [
            ("stages.0", "nchw: 16x16"),
            ("stages.1", "nchw: 8x8"),
            ("stages.2", "nchw: 4x4"),
            ("stages", "nchw: 2x2"),
        ],
    ),
    "pvt_v2": (
        "pvt_v2_b0",
        {"embed_dims": (16, 32, 48, 64), "depths": (1, 1, 2, 1), "num_heads": (1, 1, 2, 2)},
        64,
        [
            ("stages.0", "nchw: 16x16"),
            ("stages.1", "nchw: 8x8"),
            ("stages.2", "nchw: 4x4"),
            ("stages", "nchw: 2x2"),
        ],
    ),
    "maxvit": (
        "test_maxvit",
        {"img_size": 64},
        64,
        [
            ("stem", "nchw: 32x32"),
            ("stages.0", "nchw: 16x16"),
            ("stages.1", "nchw: 8x8"),
            ("stages.2", "nchw: 4x4"),
            ("norm", "nchw: 2x2"),
        ],
    ),
}

_built: dict[str, nn.Module] = {}


def build_model(key: str) -> tuple[nn.Module, int]:
    """The architecture with seeded random weights and 10 classes (built once per session)."""
    arch, options, size, _ = MODELS[key]
    if key not in _built:
        torch.manual_seed(0)
        _built[key] = timm.create_model(arch, pretrained=False, num_classes=10, **options).eval()
    return _built[key], size


def test_the_table_covers_every_registered_method():
    assert set(METHODS) == set(REGISTRY)


# ------------------------------------------------------------------------------ the layouts


def test_grid_fit_reads_a_common_stride():
    assert grid_fit(14, 14, (224, 224)) == 2  # ViT-B/16
    assert grid_fit(7, 11, (224, 352)) == 2  # stride 32 on a non-square input
    assert grid_fit(15, 15, (230, 230)) == 1  # ⌈230 / 16⌉
    assert grid_fit(7, 7, (224, 352)) == 0  # no stride gives 7 × 7 of 224 × 352
    assert grid_fit(16, 96, (64, 64)) == 0  # a side larger than the input's


def test_token_and_channels_last_layouts_are_read_from_shapes():
    # ViT-Tiny at 64 px: 1 class token + 4 × 4 patches, even without num_prefix_tokens
    assert candidate_layouts((1, 17, 192), (64, 64), batch=1) == [FeatureLayout("tokens", 4, 4, 1)]
    # DeiT's class and distillation tokens, said by the model
    assert candidate_layouts((1, 18, 192), (64, 64), batch=1, prefix=2) == [
        FeatureLayout("tokens", 4, 4, 2)
    ]
    # a trace at twice the size gives P exactly: 17 = P + 16 and 65 = P + 64
    assert candidate_layouts(
        (1, 17, 8), (64, 64), batch=1, other_shape=(1, 65, 8), other_input_size=(128, 128)
    ) == [FeatureLayout("tokens", 4, 4, 1)]
    assert candidate_layouts((1, 16, 16, 96), (64, 64), batch=1) == [FeatureLayout("nhwc", 16, 16)]
    assert candidate_layouts((1, 96, 16, 16), (64, 64), batch=1) == [FeatureLayout("nchw", 16, 16)]
    # Swin's windows: (N·windows, tokens, C) is no map of the image; flat outputs neither
    assert candidate_layouts((16, 16, 96), (64, 64), batch=1) == []
    assert candidate_layouts((1, 192), (64, 64), batch=1) == []


def test_an_ambiguous_token_count_asks_for_reshape():
    # 10 tokens of a 6 × 6 input: 1 + 3 × 3 (stride 2) or 6 + 2 × 2 (stride 3)
    found = candidate_layouts((1, 10, 4), (6, 6), batch=1)
    assert set(found) == {FeatureLayout("tokens", 3, 3, 1), FeatureLayout("tokens", 2, 2, 6)}
    with pytest.raises(SiseError, match=r"cannot tell how layer 'x'.*pass reshape="):
        settled_layout("x", (1, 10, 4), found)


def test_token_conversion_by_hand():
    # 2 images, 1 prefix token, a 2 × 3 grid of 4 channels: token 1 + 3·i + j is pixel (i, j)
    tokens = torch.arange(2 * 7 * 4, dtype=torch.float32).view(2, 7, 4)
    maps = FeatureLayout("tokens", 2, 3, 1).to_maps(tokens)
    assert maps.shape == (2, 4, 2, 3)
    for n in range(2):
        for i in range(2):
            for j in range(3):
                assert maps[n, :, i, j].tolist() == tokens[n, 1 + 3 * i + j].tolist()
    grid = torch.randn(2, 5, 6, 3)
    assert torch.equal(FeatureLayout("nhwc", 5, 6).to_maps(grid)[1, 2, 3, 4], grid[1, 3, 4, 2])


class _TokenNet(nn.Module):
    """A ViT's shape without attention: patch embedding, ``prefix`` learnt tokens, token-wise
    MLP blocks with ReLU, the class token to the head. Takes only 24 px inputs."""

    def __init__(self, prefix: int = 1, patch: int = 4, width: int = 8) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, width, patch, stride=patch)
        self.prefix = nn.Parameter(torch.randn(1, prefix, width))
        self.blocks = nn.Sequential(
            *[nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(4)]
        )
        self.head = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-1] == 24, "built for 24 px"
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.prefix.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.head(self.blocks(tokens).mean(dim=1))


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """(N, h, w, C) → (N, C, h, w): pytorch-grad-cam's Swin transform for timm's Swin."""
    return tensor.permute(0, 3, 1, 2)


def _reshape_for(prefix: int, side: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """pytorch-grad-cam's documented ViT ``reshape_transform``, for ``prefix`` tokens."""

    def reshape(tensor: torch.Tensor) -> torch.Tensor:
        result = tensor[:, prefix:, :].reshape(tensor.size(0), side, side, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)

    return reshape


def test_a_layout_that_cannot_be_read_needs_reshape():
    # 24 px, patch 8, 2 prefix tokens: 11 tokens are 2 + 3 × 3 (stride 8) or 7 + 2 × 2
    # (stride 12), and the model takes no other size to tell them apart
    torch.manual_seed(0)
    model = _TokenNet(prefix=2, patch=8).eval()
    x = torch.randn(2, 3, 24, 24)
    with pytest.raises(SiseError, match=r"blocks\.3.*pass reshape="):
        GradCAM(model, "blocks.3")(x)
    by_hand = GradCAM(model, "blocks.3", reshape=_reshape_for(2, 3))(x, [0, 1])
    # the class token is not part of the map: the 3 × 3 grid's own Grad-CAM
    assert by_hand.extras["cam"].shape == (2, 3, 3)
    # the same with the prefix count said by the model
    model.num_prefix_tokens = 2  # type: ignore[assignment]
    told = GradCAM(model, "blocks.3")(x, [0, 1])
    torch.testing.assert_close(told.maps, by_hand.maps)
    with pytest.raises(SiseError, match="reshape= must be a function"):
        GradCAM(model, "blocks.3", reshape=3)  # type: ignore[arg-type]


def test_gradients_are_converted_like_activations():
    """Grad-CAM's weights on a token layer are the spatial mean of ∂Ψ/∂A over the patch tokens
    alone, computed here by autograd on the tokens directly."""
    torch.manual_seed(1)
    model = _TokenNet(prefix=1).eval()
    x = torch.randn(1, 3, 24, 24)
    explanation = GradCAM(model, "blocks.2", score="logit")(x, 2)
    tokens = model.blocks[:3](
        torch.cat([model.prefix, model.embed(x).flatten(2).transpose(1, 2)], dim=1)
    )
    tokens = tokens.detach().requires_grad_(True)
    logit = model.head(model.blocks[3](tokens).mean(dim=1))[0, 2]
    (gradient,) = torch.autograd.grad(logit, tokens)
    weights = gradient[0, 1:].mean(dim=0)  # 36 patch tokens, class token left out
    torch.testing.assert_close(explanation.extras["weights"][0], weights)
    cam = torch.relu(tokens[0, 1:].detach() @ weights).view(6, 6)
    torch.testing.assert_close(explanation.extras["cam"][0], cam)


def test_fullgrad_on_tokens_is_exact_for_a_piecewise_linear_token_net():
    """Linear layers on tokens add their bias along the last dimension: the decomposition
    ``∇x·x + Σ ∇b·b`` of a ReLU token network sums to the logit exactly."""
    torch.manual_seed(2)
    model = _TokenNet(prefix=1).eval()
    # A learnt class token is a constant of the network that is no layer's bias (as a ViT's
    # position embeddings): zero, it adds nothing the decomposition leaves out.
    with torch.no_grad():
        model.prefix.zero_()
    x = torch.randn(2, 3, 24, 24)
    explanation = FullGrad(model, score="logit")(x, [0, 2])
    with torch.no_grad():
        logits = model(x)[[0, 1], [0, 2]]
    torch.testing.assert_close(explanation.extras["full_gradient_sum"], logits)


# ------------------------------------------------------------- discovery and every method


@pytest.mark.parametrize("key", list(MODELS))
def test_sise_layers_of_each_backbone(key):
    model, size = build_model(key)
    sise = SISE(model)
    layers, layouts = sise.layers_and_layouts(torch.zeros(1, 3, size, size))
    found = [(name, layout.describe()) for (name, _), layout in zip(layers, layouts, strict=True)]
    assert found == MODELS[key][3]


def test_channels_last_grid_with_as_many_channels_as_rows_needs_reshape():
    """Swin at 64 px with 16 channels: its first stage is (1, 16, 16, 16), which reads as
    (N, C, h, w) and as (N, h, w, C), and Swin takes no second size to tell them apart."""
    torch.manual_seed(0)
    model = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        img_size=64,
        window_size=4,
        embed_dim=16,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 2, 4),
        num_classes=10,
    ).eval()
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(SiseError, match=r"'layers\.0'.*nchw: 16x16; nhwc: 16x16.*reshape="):
        SISE(model)(x)
    channels_last = SISE(model, reshape=_channels_last)
    layers, layouts = channels_last.layers_and_layouts(x)
    assert [name for name, _ in layers] == ["layers.0", "layers.1", "layers.2", "norm"]
    assert all(layout.kind == "custom" for layout in layouts)
    # the reshape applies to activations and gradients: Grad-CAM on the 16 x 16 grid
    cam = GradCAM(model, "layers.0", reshape=_channels_last)(x).extras["cam"]
    assert isinstance(cam, torch.Tensor) and cam.shape == (1, 16, 16)


def test_plain_vit_blocks_are_evenly_spaced():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32).eval()
    names = [name for (name, _) in SISE(model).layers_for(torch.zeros(1, 3, 32, 32))]
    assert names == ["blocks.2", "blocks.5", "blocks.8", "blocks.10"]
    assert GradCAM(model).layer_for(torch.zeros(1, 3, 32, 32))[0] == "blocks.10"


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("key", list(MODELS))
def test_every_method_on_every_backbone(key, method, model_state):
    model, size = build_model(key)
    # one image: the batch paths are checked on the CNNs of test_common.py
    inputs = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    model.train()
    next(model.children()).eval()  # a mixed mode must survive as it is
    first = next(model.parameters())
    first.requires_grad_(False)
    state = model_state(model)
    try:
        explanation = make_explainer(method, model, score="softmax", **METHODS[method])(inputs, 3)
        state.assert_unchanged()
    finally:
        first.requires_grad_(True)
        model.eval()
    maps = explanation.maps
    assert maps.shape == (1, size, size)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    if method not in ("gradcam", "gradcampp", "scorecam"):
        # A CAM of random weights can be blank: ReLU(Σ_k w_k A_k) <= 0 everywhere on a 2 x 2
        # map (Grad-CAM's values are pinned against pytorch-grad-cam below instead).
        assert (maps.amax(dim=(1, 2)) > 0).all()
    with torch.no_grad():
        expected = model(inputs).softmax(dim=1)[:, 3]
    torch.testing.assert_close(explanation.scores, expected, rtol=1e-4, atol=1e-6)
    if method == "sise":
        assert explanation.layer_names == [name for name, _ in MODELS[key][3]]
        assert (explanation.kept_maps > 0).all()  # every layer's gradient reached its maps


# ---------------------------------------------------------------- against pytorch-grad-cam


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


@pytest.mark.parametrize(
    ("arch", "options", "size", "prefix", "layer"),
    [
        # pytorch-grad-cam's tutorial: ViT at 224 px, 14 × 14 patches, blocks[-1].norm1
        ("vit_tiny_patch16_224", {}, 224, 1, "blocks.11.norm1"),
        ("vit_tiny_patch16_224", {}, 224, 1, "blocks.10"),
        ("deit_tiny_distilled_patch16_224", {"img_size": 64}, 64, 2, "blocks.11.norm1"),
    ],
)
def test_gradcam_on_a_vit_equals_pytorch_grad_cam(arch, options, size, prefix, layer):
    pgc = pytest.importorskip("pytorch_grad_cam")
    targets_module = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, **options).eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        classes = model(x).argmax(dim=1).tolist()
    module = dict(model.named_modules())[layer]
    with pgc.GradCAM(
        model=model, target_layers=[module], reshape_transform=_reshape_for(prefix, size // 16)
    ) as cam:
        theirs = cam(
            input_tensor=x, targets=[targets_module.ClassifierOutputTarget(c) for c in classes]
        )
    ours = GradCAM(model, layer)(x, classes).maps
    for i in range(2):
        r = _pearson(ours[i], torch.from_numpy(theirs[i]))
        assert r >= 0.999, f"image {i}: r = {r:.5f}"
    # measured: r = 1.000000, largest difference 3e-7 (the same maps up to float32 rounding)
    torch.testing.assert_close(ours, torch.from_numpy(theirs), atol=1e-5, rtol=0)


@pytest.mark.parametrize("key", ["swin", "convnext", "pvt_v2", "maxvit"])
def test_gradcam_on_hierarchical_backbones_equals_pytorch_grad_cam(key):
    """Grad-CAM at the last map SISE finds, against pytorch-grad-cam on the same layer (with a
    channels-last ``reshape_transform`` for Swin, whose stages are (N, h, w, C))."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    targets_module = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    model, size = build_model(key)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(4))
    layer, layout = MODELS[key][3][-1]
    with pgc.GradCAM(
        model=model,
        target_layers=[dict(model.named_modules())[layer]],
        reshape_transform=_channels_last if layout.startswith("nhwc") else None,
    ) as cam:
        theirs = cam(
            input_tensor=x, targets=[targets_module.ClassifierOutputTarget(c) for c in (1, 3)]
        )
    ours = GradCAM(model)(x, [1, 3])
    assert ours.extras["layer"] == layer
    torch.testing.assert_close(ours.maps, torch.from_numpy(theirs), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------ the command line


@pytest.mark.parametrize(
    ("arch", "method"), [("vit_tiny_patch16_224", "gradcam"), ("convnext_atto", "gradcampp")]
)
def test_explain_a_timm_transformer_from_the_command_line(arch, method, tmp_path, capsys):
    """``sise explain --model timm:NAME`` end to end, offline: the weights from a checkpoint
    file the test writes (seeded random weights of timm's architecture)."""
    from PIL import Image

    from sise.cli import main

    torch.manual_seed(0)
    checkpoint = tmp_path / "weights.pt"
    torch.save(timm.create_model(arch, pretrained=False).state_dict(), checkpoint)
    out = tmp_path / "cat.png"
    command = ["explain", "--model", f"timm:{arch}", "--checkpoint", str(checkpoint)]
    assert main([*command, "--method", method, "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "explained class:" in printed
    overlay = np.asarray(Image.open(out))
    assert overlay.shape == (300, 451, 3) and overlay.std() > 20


def test_timm_weights_that_cannot_be_downloaded_are_a_clear_error(monkeypatch, capsys):
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as on a machine without network
    from sise.cli import main

    code = main(["explain", "--model", "timm:vit_tiny_patch16_224", "--method", "gradcam"])
    if code == 0:
        pytest.skip("timm's weights are in this machine's cache")
    assert code == 2
    error = capsys.readouterr().err
    assert "could not get timm's pretrained weights for 'vit_tiny_patch16_224'" in error
    assert "--checkpoint FILE" in error


def test_a_transformer_built_for_one_size_refuses_another_clearly(tmp_path):
    from sise.models.loading import load_model

    torch.manual_seed(0)
    checkpoint = tmp_path / "weights.pt"
    torch.save(timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict(), checkpoint)
    loaded = load_model("timm:vit_tiny_patch16_224", checkpoint)
    assert loaded.input_size == (224, 224)  # timm's own size for the model
    with pytest.raises(
        SiseError, match=r"does not take 320x320 px inputs \(its own size is 224x224"
    ):
        load_model("timm:vit_tiny_patch16_224", checkpoint, input_size=(320, 320))
