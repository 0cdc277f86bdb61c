"""SISE's layers as the page shows them."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sise import SISE, GradCAM
from sise.core.postprocess import minmax_normalize, otsu_threshold
from sise.images import load_image, sample_image_path
from sise.web.pictures import sise_layer_views


@pytest.mark.slow
def test_layer_gates_are_the_gates_of_the_fusion(demo):
    """Fusing the layer maps with the gates the page shows gives SISE's own map back."""
    # 128 px keeps it quick; the model is the same.
    inputs = replace(demo, input_size=(128, 128)).preprocess(
        load_image(sample_image_path("chelsea"))
    )
    explanation = SISE(demo.model, selection="adaptive")(inputs)
    views = sise_layer_views(explanation)
    assert views is not None and [v.name for v in views] == explanation.layer_names
    fused = None
    for view in views:
        if view.role == "skipped":
            continue
        assert (view.role == "start") == (fused is None)
        assert torch.equal(view.gate, view.saliency > otsu_threshold(view.saliency[None])[0])
        fused = view.saliency if fused is None else (fused + view.saliency) * view.gate
    assert fused is not None
    torch.testing.assert_close(minmax_normalize(fused), explanation.maps[0], atol=1e-6, rtol=0)
    assert sise_layer_views(GradCAM(demo.model)(inputs)) is None
