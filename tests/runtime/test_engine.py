"""The batched masked-scoring engine and the fast path (sise.runtime.engine, sise.runtime.device).

Everything is checked against a naive loop, on tiny models, in well under a second each.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from tiny_models import SmallCNN
from torch import Tensor, nn

from sise import SISE
from sise.core.masks import (
    ConcatMasks,
    MaskSums,
    TensorMasks,
    UpsampledMaps,
    make_baseline,
    repeated_maps,
)
from sise.core.postprocess import minmax_normalize, upsample
from sise.core.scores import class_scores
from sise.errors import SiseError
from sise.runtime import Runtime
from sise.runtime.device import (
    CPU_BATCH_SIZE,
    auto_batch_size,
    autocast_dtype_for,
    channels_last_weights,
    device_name,
    fidelity,
)
from sise.runtime.engine import score_masked

H = W = 16


class Recorder(nn.Module):
    """Remembers every batch it is given and returns a fixed linear function of it."""

    def __init__(self, channels: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(channels * H * W, classes)
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().clone())
        return self.fc(x.flatten(1))


def _model(seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    model = SmallCNN(classes=6).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        bn = model.features[1]
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    return model


def _inputs(n: int, seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, H, W, generator=generator)


def _random_source(n_images: int, n_masks: int, seed: int = 2) -> UpsampledMaps:
    generator = torch.Generator().manual_seed(seed)
    maps = torch.rand(n_masks, 4, 4, generator=generator)
    owners = torch.randint(0, n_images, (n_masks,), generator=generator)
    return UpsampledMaps(maps, owners, (H, W))


def _naive_scores(model, inputs, targets, masks, owners, baseline=None, score="softmax"):
    out = []
    for mask, owner in zip(masks, owners.tolist(), strict=True):
        x = inputs[owner]
        b = torch.zeros_like(x) if baseline is None else baseline[owner]
        masked = b + (x - b) * mask
        logits = model(masked[None])
        out.append(class_scores(logits, targets[owner : owner + 1], score)[0])
    return torch.stack(out)


# --- mask sources --------------------------------------------------------------------------------


def test_upsampled_maps_are_minmax_of_bilinear_upsampling():
    maps = torch.rand(5, 3, 4)
    maps[2] = 0.0  # a constant map becomes zeros
    source = UpsampledMaps(maps, torch.zeros(5, dtype=torch.long), (H, W))
    expected = minmax_normalize(upsample(maps, (H, W)))
    torch.testing.assert_close(source.masks(0, 5), expected, rtol=0, atol=1e-6)
    out = torch.full((3, H, W), -1.0)
    written = source.masks(1, 4, out=out)
    assert written.data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, expected[1:4], rtol=0, atol=1e-6)
    assert float(out[1].abs().max()) == 0.0


class PlainSource:
    """A third-party mask source without ``out=``."""

    def __init__(self, masks: Tensor, owners: Tensor) -> None:
        self._masks = masks
        self.owners = owners

    def __len__(self) -> int:
        return self._masks.shape[0]

    def masks(self, start: int, stop: int) -> Tensor:
        return self._masks[start:stop] * 1.0


def test_concat_masks_slices_across_sources():
    a = _random_source(2, 5, seed=3)
    b = TensorMasks(torch.rand(4, H, W), torch.tensor([1, 0, 1, 1]))
    empty = TensorMasks(torch.rand(0, H, W), torch.zeros(0, dtype=torch.long))
    c = PlainSource(torch.rand(3, H, W), torch.tensor([0, 0, 1]))
    concat = ConcatMasks([a, empty, b, c])
    full = torch.cat([a.masks(0, 5), b.masks(0, 4), c.masks(0, 3)])
    assert len(concat) == 12
    torch.testing.assert_close(concat.owners, torch.cat([a.owners, b.owners, c.owners]))
    for start in range(12):
        for stop in range(start + 1, 13):
            torch.testing.assert_close(concat.masks(start, stop), full[start:stop])
            out = torch.empty(stop - start, H, W)
            torch.testing.assert_close(concat.masks(start, stop, out=out), full[start:stop])
    assert len(ConcatMasks([])) == 0


def test_tensor_masks_are_not_modified():
    masks = torch.rand(6, H, W)
    keep = masks.clone()
    source = TensorMasks(masks, torch.tensor([0, 1, 0, 1, 0, 1]))
    sums = MaskSums([1] * 6, (H, W), "cpu", per_unit_area=True)
    score_masked(Recorder(), _inputs(2), torch.tensor([0, 1]), source, batch_size=4, sums=sums)
    assert torch.equal(masks, keep)


# --- score_masked -------------------------------------------------------------------------------


@pytest.mark.parametrize("baseline_kind", ["zero", "tensor", "blur"])
@pytest.mark.parametrize("n_images", [1, 3])
def test_masked_inputs_match_naive_loop(baseline_kind, n_images):
    torch.manual_seed(0)
    model = Recorder().eval()
    inputs = _inputs(n_images)
    targets = torch.arange(n_images) % 4
    if baseline_kind == "tensor":
        baseline = make_baseline(inputs, torch.randn(1, 3, 1, 1))
    else:
        baseline = make_baseline(inputs, baseline_kind, blur_sigma=2.0)
    source = _random_source(n_images, 11)
    masks, owners = source.masks(0, 11), source.owners
    with torch.no_grad():
        scores = score_masked(model, inputs, targets, source, baseline=baseline, batch_size=4)
        batches = torch.cat(model.seen)
        model.seen.clear()
        expected = _naive_scores(model, inputs, targets, masks, owners, baseline)
    b = torch.zeros_like(inputs) if baseline is None else baseline
    built = b[owners] + (inputs[owners] - b[owners]) * masks[:, None]
    torch.testing.assert_close(batches, built, rtol=0, atol=1e-6)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("score", ["softmax", "sigmoid", "logit"])
def test_batch_size_does_not_change_scores(score):
    model = _model()
    inputs = _inputs(2)
    targets = torch.tensor([3, 1])
    source = _random_source(2, 70)
    one = score_masked(model, inputs, targets, source, score=score, batch_size=1)
    many = score_masked(model, inputs, targets, source, score=score, batch_size=64)
    auto = score_masked(model, inputs, targets, source, score=score, batch_size="auto")
    torch.testing.assert_close(one, many, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(one, auto, rtol=1e-5, atol=1e-6)


def test_packing_images_equals_one_by_one():
    model = _model()
    inputs = _inputs(3)
    targets = torch.tensor([0, 5, 2])
    source = _random_source(3, 40)
    together = score_masked(model, inputs, targets, source, batch_size=16)
    masks = source.masks(0, 40)
    for i in range(3):
        mine = (source.owners == i).nonzero().squeeze(1)
        alone = score_masked(
            model, inputs[i : i + 1], targets[i : i + 1], TensorMasks(masks[mine]), batch_size=16
        )
        torch.testing.assert_close(together[mine], alone, rtol=1e-5, atol=1e-6)


def test_channels_last_gives_equal_scores_and_restores_the_model():
    model = _model()
    before = {name: (p, p.data, p.stride()) for name, p in model.named_parameters()}
    inputs = _inputs(2)
    targets = torch.tensor([1, 4])
    source = _random_source(2, 20)
    plain = score_masked(model, inputs, targets, source, batch_size=8)
    fast = score_masked(model, inputs, targets, source, batch_size=8, channels_last=True)
    torch.testing.assert_close(plain, fast, rtol=1e-5, atol=1e-6)
    for name, p in model.named_parameters():
        param, data, stride = before[name]
        assert p is param and p.data.data_ptr() == data.data_ptr() and p.stride() == stride


class ViewNet(nn.Module):
    """Flattens a feature map with ``.view``: it cannot take a channels-last batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * H * W, 3)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return self.fc(y.view(y.shape[0], -1))


def test_auto_channels_last_equals_nchw_and_falls_back_for_view_models():
    model = _model()
    inputs, targets, source = _inputs(2), torch.tensor([1, 4]), _random_source(2, 20)
    plain = score_masked(model, inputs, targets, source, batch_size=8, channels_last=False)
    auto = score_masked(model, inputs, targets, source, batch_size=8)
    torch.testing.assert_close(plain, auto, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    view_net = ViewNet().eval()
    with pytest.raises(RuntimeError, match="view"):
        view_net(inputs.contiguous(memory_format=torch.channels_last))
    plain = score_masked(view_net, inputs, targets % 3, source, batch_size=8, channels_last=False)
    auto = score_masked(view_net, inputs, targets % 3, source, batch_size=8)
    torch.testing.assert_close(plain, auto, rtol=1e-5, atol=1e-6)


def test_channels_last_weights_restores_even_on_error():
    model = _model()
    conv = model.features[0]
    data = conv.weight.data
    with pytest.raises(RuntimeError, match="boom"), channels_last_weights(model):
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert not conv.weight.is_contiguous()
        raise RuntimeError("boom")
    assert conv.weight.data.data_ptr() == data.data_ptr() and conv.weight.is_contiguous()


def test_bad_batch_size_is_a_clear_error():
    model = _model()
    source = _random_source(1, 3)
    for bad in (0, "big", 2.5):
        with pytest.raises(SiseError, match="batch_size"):
            score_masked(model, _inputs(1), torch.tensor([0]), source, batch_size=bad)  # type: ignore[arg-type]


def test_empty_source_scores_nothing():
    scores = score_masked(_model(), _inputs(1), torch.tensor([0]), ConcatMasks([]))
    assert scores.shape == (0,)


def test_no_host_synchronisation_in_the_loop():
    """On the meta device any ``.item()``/``bool()``/data-dependent shape raises: the loop has none."""
    model = _model().to("meta")
    inputs = torch.empty(2, 3, H, W, device="meta")
    owners = torch.empty(9, dtype=torch.long, device="meta")
    source = ConcatMasks(
        [
            UpsampledMaps(torch.empty(7, 4, 4, device="meta"), owners[:7], (H, W)),
            TensorMasks(torch.empty(2, H, W, device="meta"), owners[7:]),
        ]
    )
    scores = score_masked(
        model,
        inputs,
        torch.empty(2, dtype=torch.long, device="meta"),
        source,
        baseline=torch.empty(2, 3, H, W, device="meta"),
        batch_size=4,
        channels_last=True,
    )
    assert scores.shape == (9,) and scores.device.type == "meta"


# --- MaskSums against a naive sum --------------------------------------------------------------


@pytest.mark.parametrize("per_unit_area", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_mask_sums_match_naive(per_unit_area, chunk):
    source = ConcatMasks(
        [_random_source(3, 8, seed=5), TensorMasks(torch.rand(2, H, W), torch.tensor([2, 0]))]
    )
    weights = torch.randn(10)
    masks = source.masks(0, 10)
    expected = torch.zeros(3, H, W)
    for mask, weight, owner in zip(masks, weights, source.owners.tolist(), strict=True):
        area = mask.sum() if per_unit_area else torch.tensor(1.0)
        expected[owner] += weight * mask / area
    # one group per mask (these owners are not in order), added in chunks, then summed per owner
    sums = MaskSums([1] * 10, (H, W), "cpu", per_unit_area=per_unit_area)
    for start in range(0, 10, chunk):
        sums.add(start, masks[start : start + chunk], weights[start : start + chunk])
    got = torch.zeros(3, H, W).index_add_(0, source.owners, sums.result())
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


# --- SISE through the engine --------------------------------------------------------------------


def _sise(model: nn.Module, *, score: str = "softmax", **speed) -> SISE:
    """SISE on three fixed layers, ``speed`` being its Runtime's settings."""
    layers = ["features.2", "features.5", "features.8"]
    return SISE(model, layers, score=score, runtime=Runtime(**speed))


def test_sise_several_images_equal_single_calls():
    model = _model()
    inputs = _inputs(3)
    targets = [1, 4, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        together = _sise(model, batch_size=32)(inputs, targets)
        for i in range(3):
            alone = _sise(model, batch_size=32)(inputs[i : i + 1], targets[i])
            torch.testing.assert_close(together.maps[i], alone.maps[0], rtol=0, atol=1e-5)
            layer_maps = together.layer_maps
            assert isinstance(layer_maps, Tensor)
            torch.testing.assert_close(layer_maps[i], alone.layer_maps[0], rtol=0, atol=1e-5)
            assert int(together.forward_passes[i]) == int(alone.forward_passes[0])


def test_sise_batch_size_and_channels_last_do_not_change_maps():
    model = _model()
    inputs = _inputs(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = _sise(model, batch_size=64)(inputs, [0, 3])
        one = _sise(model, batch_size=1)(inputs, [0, 3])
        fast = _sise(model, batch_size="auto", channels_last=True)(inputs, [0, 3])
    torch.testing.assert_close(one.maps, reference.maps, rtol=0, atol=1e-5)
    torch.testing.assert_close(fast.maps, reference.maps, rtol=0, atol=1e-5)


def test_sise_bf16_runs_and_correlates():
    model = _model()
    inputs = _inputs(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp32 = _sise(model, score="logit")(inputs, [0, 3])
        bf16 = _sise(model, score="logit", precision="bf16")(inputs, [0, 3])
    layer_corr = fidelity(fp32.layer_maps.flatten(0, 1), bf16.layer_maps.flatten(0, 1))  # type: ignore[union-attr]
    assert bool((layer_corr > 0.99).all()), layer_corr
    # The fused map goes through binary Otsu gates: a pixel within bf16 noise of a threshold
    # can flip, so the fused maps correlate a little less than the layer maps they are made of.
    fused_corr = fidelity(fp32.maps, bf16.maps)
    assert bool((fused_corr > 0.9).all()), fused_corr


def test_precision_options():
    model = _model()
    assert _sise(model, precision="bf16").runtime.autocast_dtype is torch.bfloat16
    assert _sise(model, precision="fp32").runtime.autocast_dtype is None
    assert autocast_dtype_for("fp16") is torch.float16
    with pytest.raises(SiseError, match="precision"):
        autocast_dtype_for("fp8")
    # precision is the one way to ask for reduced precision: an unknown name is refused where
    # the Runtime is built (SISE's former autocast_dtype, which could disagree with it, is gone)
    with pytest.raises(SiseError, match="precision"):
        _sise(model, precision="fp8")


# --- device helpers -----------------------------------------------------------------------------


def test_auto_batch_size_on_cpu():
    model = _model()
    assert auto_batch_size(model, _inputs(1)) == CPU_BATCH_SIZE
    assert auto_batch_size(model, _inputs(1), limit=5) == 5


def test_fidelity_is_pearson_per_map():
    a = torch.rand(3, 8, 8)
    b = torch.stack([a[0], 2 * a[1] + 1, -a[2]])
    torch.testing.assert_close(fidelity(a, b), torch.tensor([1.0, 1.0, -1.0]))
    x, y = torch.rand(64), torch.rand(64)
    expected = torch.corrcoef(torch.stack([x, y]))[0, 1]
    torch.testing.assert_close(
        fidelity(x.view(8, 8), y.view(8, 8)), expected.float(), atol=1e-6, rtol=0
    )
    constant = torch.zeros(2, 4, 4)
    torch.testing.assert_close(fidelity(constant, constant), torch.ones(2))
    assert float(fidelity(constant[:1], torch.rand(1, 4, 4))[0]) == 0.0
    with pytest.raises(SiseError):
        fidelity(torch.rand(2, 4, 4), torch.rand(2, 4, 5))


def test_device_name_mentions_threads():
    assert "threads" in device_name("cpu")


def test_upsample_reference_is_align_corners_false():
    maps = torch.rand(2, 3, 3)
    expected = F.interpolate(maps[:, None], size=(H, W), mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsample(maps, (H, W)), expected[:, 0])


# --- CUDA (run by benchmarks/gpu_check.sh; skipped without a GPU) ------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_auto_batch_and_fast_path_match_cpu():
    model = _model()
    inputs = _inputs(2)
    source = _random_source(2, 50)
    targets = torch.tensor([1, 2])
    reference = score_masked(model, inputs, targets, source, batch_size=16)
    gpu_model = _model().cuda()
    gpu_source = UpsampledMaps(source._maps.cuda(), source.owners.cuda(), (H, W))
    size = auto_batch_size(gpu_model, inputs.cuda())
    assert 1 <= size <= 512 and (size % 8 == 0 or size < 8)
    for dtype, channels_last, tol in (
        (None, False, 1e-4),
        (None, True, 1e-4),
        (torch.bfloat16, True, 5e-2),
    ):
        got = score_masked(
            gpu_model,
            inputs.cuda(),
            targets.cuda(),
            gpu_source,
            batch_size="auto",
            autocast_dtype=dtype,
            channels_last=channels_last,
        )
        torch.testing.assert_close(got.cpu(), reference, rtol=tol, atol=tol)


@cuda
def test_cuda_masked_loop_never_synchronises():
    model = _model().cuda()
    inputs = _inputs(2).cuda()
    source = _random_source(2, 50)
    gpu_source = UpsampledMaps(source._maps.cuda(), source.owners.cuda(), (H, W))
    targets = torch.tensor([1, 2], device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        score_masked(model, inputs, targets, gpu_source, batch_size=8, channels_last=True)
        score_masked(
            model, inputs, targets, gpu_source, batch_size=8, autocast_dtype=torch.bfloat16
        )
    finally:
        torch.cuda.set_sync_debug_mode(0)


# --- MaskSums: masks summed while they are scored -----------------------------------------------


def test_mask_sums_by_hand():
    # groups of sizes 2, 0, 1: masks 0-1 in group 0, mask 2 in group 2
    masks = torch.tensor(
        [[[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [2.0, 2.0]]]
    )
    plain = MaskSums([2, 0, 1], (2, 2), "cpu")
    plain.add(0, masks[:1], torch.tensor([3.0]))  # a batch boundary inside group 0
    plain.add(1, masks[1:], torch.tensor([5.0, 0.5]))
    expected = torch.tensor([[[8.0, 5.0], [0.0, 0.0]], [[0, 0], [0, 0]], [[0.0, 0.0], [1.0, 1.0]]])
    torch.testing.assert_close(plain.result(), expected, rtol=0, atol=0)
    # per unit area: each mask divided by its sum (1, 2 and 4)
    area = MaskSums([2, 0, 1], (2, 2), "cpu", per_unit_area=True)
    area.add(0, masks, torch.tensor([3.0, 5.0, 0.5]))
    expected = torch.tensor(
        [[[5.5, 2.5], [0.0, 0.0]], [[0, 0], [0, 0]], [[0.0, 0.0], [0.25, 0.25]]]
    )
    torch.testing.assert_close(area.result(), expected, rtol=0, atol=0)
    with pytest.raises(SiseError, match="not among the 3 masks"):
        area.add(2, masks[:2], torch.ones(2))
    # counts: the first mask stands for three equal ones
    counted = MaskSums([2, 0, 1], (2, 2), "cpu", counts=torch.tensor([3, 1, 2]))
    counted.add(0, masks, torch.tensor([3.0, 5.0, 0.5]))
    expected = torch.tensor([[[14.0, 5.0], [0.0, 0.0]], [[0, 0], [0, 0]], [[0.0, 0.0], [2.0, 2.0]]])
    torch.testing.assert_close(counted.result(), expected, rtol=0, atol=0)
    with pytest.raises(SiseError, match="one entry per mask"):
        MaskSums([2, 0, 1], (2, 2), "cpu", counts=torch.ones(2))


def test_repeated_maps_by_hand():
    a = torch.tensor([[0.0, 1.0], [2.0, 0.5]])
    b = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    image_0 = [a, b, 2 * a + 1, a, 0.5 * b - 2, a + 1e-3 * b]
    image_1 = [a, torch.ones(2, 2), 3 * a, a, b, b]
    activations = torch.stack([torch.stack(image_0), torch.stack(image_1)])
    keep = torch.tensor([[1, 1, 1, 0, 1, 1], [1, 1, 1, 1, 0, 1]], dtype=torch.bool)
    repeat, counts = repeated_maps(activations, keep)
    # image 0: 2a + 1 repeats a, 0.5b - 2 repeats b; a at channel 3 is not kept; a + 1e-3 b is
    # another map. Image 1: 3a and a repeat channel 0; the constant map is a map of its own; b at
    # channel 4 is not kept, so channel 5 stands for itself.
    assert repeat.int().tolist() == [[0, 0, 1, 0, 1, 0], [0, 0, 1, 1, 0, 0]]
    assert counts.tolist() == [[2, 2, 0, 0, 0, 1], [3, 1, 0, 0, 0, 1]]
    none = repeated_maps(activations, torch.zeros_like(keep))
    assert not none[0].any() and not none[1].any()


def _repeats_by_unique(activations: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """The same with ``torch.unique`` on the kept maps of each image (an independent check)."""
    repeat = torch.zeros_like(keep)
    counts = torch.zeros(keep.shape, dtype=torch.long)
    for i in range(keep.shape[0]):
        channels = keep[i].nonzero()[:, 0]
        if len(channels) == 0:
            continue
        flat = activations[i, channels].flatten(1)
        low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
        rows = (flat - low) / torch.where(high > low, high - low, 1.0)
        _, inverse = torch.unique(rows, dim=0, return_inverse=True)
        for group in inverse.unique():
            members = channels[inverse == group]
            counts[i, members[0]] = len(members)
            repeat[i, members[1:]] = True
    return repeat, counts


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_repeated_maps_equal_an_independent_search(size):
    torch.manual_seed(size)
    n, k = 3, 200
    # sparse maps with few active cells and few distinct values repeat often, as tiny feature
    # maps do; scaled and shifted copies too
    activations = torch.randint(0, 3, (n, k, size, size)).float()
    activations *= torch.rand(n, k, 1, 1) < 0.3
    activations = activations * torch.randint(1, 4, (n, k, 1, 1)) + torch.randint(
        0, 2, (n, k, 1, 1)
    )
    keep = torch.rand(n, k) < 0.7
    repeat, counts = repeated_maps(activations, keep)
    expected_repeat, expected_counts = _repeats_by_unique(activations, keep)
    assert int(expected_repeat.sum()) > 0
    assert torch.equal(repeat, expected_repeat) and torch.equal(counts, expected_counts)
    assert torch.equal(counts.sum(dim=1), keep.sum(dim=1))


def test_counted_masks_sum_to_all_masks():
    torch.manual_seed(0)
    # 2x2 maps with one active cell: 4 distinct masks per image
    activations = torch.zeros(2, 20, 4)
    activations[torch.arange(2)[:, None], torch.arange(20), torch.randint(0, 4, (2, 20))] = (
        torch.rand(2, 20) + 0.1
    )
    activations = activations.view(2, 20, 2, 2)
    keep = torch.ones(2, 20, dtype=torch.bool)
    repeat, counts = repeated_maps(activations, keep)
    scored = (keep & ~repeat).nonzero()
    assert len(scored) == 8
    owners = torch.arange(40) // 20
    all_masks = UpsampledMaps(activations.flatten(0, 1), owners, (H, W)).masks(0, 40)
    scores = all_masks.mean(dim=(1, 2))  # equal masks, equal scores
    full = MaskSums([20, 20], (H, W), "cpu", per_unit_area=True)
    full.add(0, all_masks, scores)
    index = scored[:, 0] * 20 + scored[:, 1]
    weights = counts[scored[:, 0], scored[:, 1]]
    few = MaskSums([4, 4], (H, W), "cpu", per_unit_area=True, counts=weights)
    few.add(0, all_masks[index], scores[index])
    torch.testing.assert_close(few.result(), full.result(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_mask_sums_while_scoring_equal_a_sum_after_scoring(batch_size):
    # masks of two images, image by image, as SISE and RISE order them
    maps = torch.rand(7, 4, 4)
    owners = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    source = UpsampledMaps(maps, owners, (H, W))
    model, inputs, targets = Recorder(), _inputs(2), torch.tensor([1, 2])
    sums = MaskSums([3, 4], (H, W), "cpu", per_unit_area=True)
    scores = score_masked(model, inputs, targets, source, batch_size=batch_size, sums=sums)
    masks = source.masks(0, 7)
    contributions = scores[:, None, None] * masks / masks.sum(dim=(1, 2), keepdim=True)
    reference = torch.stack([contributions[:3].sum(dim=0), contributions[3:].sum(dim=0)])
    torch.testing.assert_close(sums.result(), reference, rtol=1e-5, atol=1e-7)
