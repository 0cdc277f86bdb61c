"""The benchmark's data: the VOC and COCO readers, the synthetic set, the photo set."""
