"""Reading photos: uploaded bytes as files on disk are read."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from sise import SiseError
from sise.images import decode_image, load_image, sample_image_path


def test_decode_image_reads_what_pil_reads():
    rgb = decode_image(sample_image_path("chelsea").read_bytes())
    assert (rgb == load_image(sample_image_path("chelsea"))).all()
    buffer = io.BytesIO()
    Image.new("LA", (5, 4), (10, 0)).save(buffer, format="PNG")  # transparent grey: onto white
    assert decode_image(buffer.getvalue()).tolist() == [[[255, 255, 255]] * 5] * 4
    with pytest.raises(SiseError, match="empty"):
        decode_image(b"")
