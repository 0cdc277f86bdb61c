"""Each gradient method's default explained score is its paper's and its reference library's:
the class logit, pinned on the real ImageNet EfficientNet-Lite0 and a real photo against
pytorch-grad-cam (Grad-CAM, Grad-CAM++), torch-cam (Grad-CAM) and Captum (Integrated Gradients).

Before this default, ``GradCAM(model)(x, [c])`` differentiated the softmax probability: on the
real Lite0 its maps differ in character from the peers' (the test's last assertion shows that
the softmax map is not the peers')."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sise import GradCAM, GradCAMPlusPlus, IntegratedGradients
from sise.core.layers import resolve_layers
from sise.images import load_image, sample_image_path

TABBY = 281  # explained on the cat photo (the model's top class is 285, Egyptian cat)
LAYER = "bn2"  # the last feature map, the methods' default layer on Lite0


@pytest.fixture(scope="module")
def chelsea(demo):
    return demo.preprocess(load_image(sample_image_path("chelsea")))


@pytest.mark.slow
def test_grad_cam_default_is_pytorch_grad_cams(demo, chelsea):
    from pytorch_grad_cam import GradCAM as PgcGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = resolve_layers(demo.model, [LAYER])[0][1]
    ours = GradCAM(demo.model, LAYER)(chelsea, [TABBY]).maps[0].numpy()
    with PgcGradCAM(model=demo.model, target_layers=[module]) as cam:
        reference = cam(input_tensor=chelsea, targets=[ClassifierOutputTarget(TABBY)])[0]
    # cv2's bilinear resize (pytorch-grad-cam) and torch's differ by rounding only
    assert np.corrcoef(ours.ravel(), reference.ravel())[0, 1] > 0.999
    assert np.abs(ours - reference).max() < 0.02
    softmax = GradCAM(demo.model, LAYER, score="softmax")(chelsea, [TABBY]).maps[0].numpy()
    assert np.abs(softmax - reference).max() > 0.1  # the old default is not the peers'


@pytest.mark.slow
def test_grad_cam_default_is_torch_cams(demo, chelsea):
    from torchcam.methods import GradCAM as TcGradCAM

    ours = GradCAM(demo.model, LAYER)(chelsea, [TABBY])
    with TcGradCAM(demo.model, target_layer=LAYER) as extractor:
        scores = demo.model(chelsea)
        (raw,) = extractor(TABBY, scores)
    reference = raw[0]
    # torch-cam leaves the map at the layer's size: compare ours before up-sampling
    low = torch.relu(ours.extras["cam"][0])  # the map at the layer's size

    def minmax(t: torch.Tensor) -> torch.Tensor:  # torch-cam min-max normalises its maps
        return (t - t.min()) / (t.max() - t.min())

    torch.testing.assert_close(minmax(low), minmax(reference), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_grad_cam_plus_plus_default_is_pytorch_grad_cams(demo, chelsea):
    from pytorch_grad_cam import GradCAMPlusPlus as PgcGradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = resolve_layers(demo.model, [LAYER])[0][1]
    ours = GradCAMPlusPlus(demo.model, LAYER)(chelsea, [TABBY]).maps[0].numpy()
    with PgcGradCAMPlusPlus(model=demo.model, target_layers=[module]) as cam:
        reference = cam(input_tensor=chelsea, targets=[ClassifierOutputTarget(TABBY)])[0]
    assert np.corrcoef(ours.ravel(), reference.ravel())[0, 1] > 0.999


@pytest.mark.slow
def test_integrated_gradients_default_is_captums(demo, chelsea):
    from captum.attr import IntegratedGradients as CaptumIG

    ours = IntegratedGradients(demo.model, n_steps=8)(chelsea, [TABBY])
    reference = CaptumIG(demo.model).attribute(
        chelsea, baselines=torch.zeros_like(chelsea), target=TABBY, n_steps=8
    )
    torch.testing.assert_close(ours.extras["attributions"], reference, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        logit = demo.model(chelsea)[0, TABBY]
    torch.testing.assert_close(ours.scores[0], logit)
