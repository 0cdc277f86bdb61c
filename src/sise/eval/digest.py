"""The one digest of the evaluation code: what identifies a run's configuration, a generated data
set, a model's weights, a pair's random seed.

Every stored key is made here, so a benchmark database, a cached data set and a per-model filter
written before stay valid as long as this function gives the same text for the same bytes. Two
algorithms, both over the concatenation of the chunks: SHA-256 where a collision must be out of
reach (configurations, data sets, weights), CRC-32 where the keys already stored are CRC-32s
(the synthetic data's and the shipped models' identities, the pair seeds).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from typing import Literal

from torch import Tensor

from sise.errors import SiseError

__all__ = ["digest", "tensor_bytes"]

Algorithm = Literal["sha256", "crc32"]


def digest(chunks: Iterable[bytes], algorithm: Algorithm = "sha256") -> str:
    """The hex digest of the concatenated ``chunks``: SHA-256 (64 hex digits) or CRC-32 (8).

    Feeding the chunks one by one gives the digest of their concatenation, so a large set of
    files is digested without holding it in memory.
    """
    if algorithm == "crc32":
        value = 0
        for chunk in chunks:
            value = zlib.crc32(chunk, value)
        return f"{value:08x}"
    if algorithm != "sha256":
        raise SiseError(f"unknown digest algorithm {algorithm!r}: use sha256 or crc32")
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.hexdigest()


def tensor_bytes(tensor: Tensor) -> bytes:
    """A tensor's values as bytes, in row-major order, whatever its device and strides."""
    return tensor.detach().cpu().contiguous().numpy().tobytes()
