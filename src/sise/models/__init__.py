"""Models by name, with their preprocessing and class names: the offline demo models,
torchvision and timm models, checkpoint files, and TorchRay's VOC/COCO models."""

from sise.models.checkpoints import load_state_dict_checked, read_checkpoint
from sise.models.classes import COCO_CLASSES, VOC_CLASSES
from sise.models.loading import (
    DEMO_MODEL,
    OFFLINE_MODELS,
    LoadedModel,
    demo_model,
    imagenet_class_names,
    load_model,
    offline_efficientnet_lite,
)
from sise.models.preprocessing import (
    CAFFE_MEAN,
    CAFFE_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
)
from sise.models.torchray import load_torchray_weights, torchray_architecture

__all__ = [
    "CAFFE_MEAN",
    "CAFFE_STD",
    "COCO_CLASSES",
    "DEMO_MODEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OFFLINE_MODELS",
    "VOC_CLASSES",
    "LoadedModel",
    "Preprocessing",
    "demo_model",
    "imagenet_class_names",
    "load_model",
    "load_state_dict_checked",
    "load_torchray_weights",
    "offline_efficientnet_lite",
    "read_checkpoint",
    "torchray_architecture",
]
