"""The benchmark tests' data: a tiny synthetic set the shipped models have not seen."""

from __future__ import annotations

from pathlib import Path

import pytest

from sise.eval.data.synthetic import make_synthetic_voc


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 test images (8 pairs, one of them alone in its image) of 64 px, unseen by the shipped
    models."""
    return make_synthetic_voc(
        tmp_path_factory.mktemp("tiny") / "voc", 8, image_size=64, seed=8, test_fraction=0.5
    )
