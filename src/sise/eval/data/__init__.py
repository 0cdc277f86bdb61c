"""The benchmark's data: the evaluation pairs and their ground truth (:mod:`~sise.eval.data.pairs`),
the VOC and COCO readers (:mod:`~sise.eval.data.voc`, :mod:`~sise.eval.data.coco`), the synthetic
set (:mod:`~sise.eval.data.synthetic`), the photo set (:mod:`sise.eval.data.photos`, imported on
its own: it needs the model), the ``--dataset`` argument (:mod:`~sise.eval.data.datasets`), and
the pointing game's difficult subset (:mod:`~sise.eval.data.difficult_subset`).

Dependencies point one way: pairs ← voc, coco ← synthetic ← photos, and datasets above them all;
pairs ← difficult_subset.
"""

from sise.eval.data.coco import COCODetection2014
from sise.eval.data.datasets import (
    DATASET_KINDS,
    NEEDS_MODEL,
    Dataset,
    dataset_kind,
    load_dataset,
    select_pairs,
)
from sise.eval.data.difficult_subset import DifficultSubset, read_difficult_subset
from sise.eval.data.pairs import (
    Box,
    EvalImage,
    EvalPair,
    boxes_mask,
    decode_segmentation,
    distractor_mask,
    gt_mask,
    pointing_region,
)
from sise.eval.data.synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_DATA,
    SyntheticData,
    default_cache_dir,
    make_synthetic_voc,
    synthetic_dataset,
)
from sise.eval.data.voc import VOC_CLASSES, VOCDetection2007, voc_annotation_xml

__all__ = [
    "DATASET_KINDS",
    "NEEDS_MODEL",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_DATA",
    "VOC_CLASSES",
    "Box",
    "COCODetection2014",
    "Dataset",
    "DifficultSubset",
    "EvalImage",
    "EvalPair",
    "SyntheticData",
    "VOCDetection2007",
    "boxes_mask",
    "dataset_kind",
    "decode_segmentation",
    "default_cache_dir",
    "distractor_mask",
    "gt_mask",
    "load_dataset",
    "make_synthetic_voc",
    "pointing_region",
    "read_difficult_subset",
    "select_pairs",
    "synthetic_dataset",
    "voc_annotation_xml",
]
