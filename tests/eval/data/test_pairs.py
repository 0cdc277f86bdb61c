"""Rasterising boxes: a box covers the pixels whose centres it contains."""

from __future__ import annotations

from sise.eval import (
    boxes_mask,
)


def test_boxes_mask_touching_borders() -> None:
    mask = boxes_mask([(0.0, 0.0, 3.0, 1.0), (2.0, 2.0, 4.0, 4.0)], (4, 4), 4, 4)
    assert mask.int().tolist() == [[1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]


def test_boxes_mask_counts_pixel_centres() -> None:
    # centres 0.5, 1.5, 2.5, 3.5: only column 1 lies in [0.75, 2.25), every row in [0.25, 3.75)
    assert boxes_mask([(0.75, 0.25, 2.25, 3.75)], (4, 4), 4, 4).nonzero()[:, 1].tolist() == [1] * 4
    # a sliver holding no centre keeps the pixel under its middle (2.75, 0.5)
    assert boxes_mask([(2.6, 0.0, 2.9, 1.0)], (4, 4), 4, 4).nonzero().tolist() == [[0, 2]]
