"""Models by name, with their preprocessing and class names: the offline demo models,
torchvision and timm models, checkpoint files, and the benchmark's models."""

from sise.models.loading import (
    DEMO_MODEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OFFLINE_MODELS,
    LoadedModel,
    demo_model,
    imagenet_class_names,
    load_model,
    load_state_dict_checked,
    offline_efficientnet_lite,
    read_checkpoint,
)

__all__ = [
    "DEMO_MODEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OFFLINE_MODELS",
    "LoadedModel",
    "demo_model",
    "imagenet_class_names",
    "load_model",
    "load_state_dict_checked",
    "offline_efficientnet_lite",
    "read_checkpoint",
]
