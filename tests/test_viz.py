"""Pictures are written atomically."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sise import SiseError


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    from sise.viz import save_overlay

    out = tmp_path / "overlay.png"
    rgb = np.zeros((8, 8, 3), np.uint8)
    save_overlay(out, rgb, np.zeros((8, 8)))
    before = out.read_bytes()

    def full_disk(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(SiseError, match=r"could not write.*No space left"):
        save_overlay(out, rgb, np.ones((8, 8)))
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.png"]  # no temporary left
