"""The one digest of the evaluation code: standard SHA-256 and CRC-32, whatever the chunking, and
the stored keys made with it pinned to the values earlier versions wrote."""

from __future__ import annotations

import pytest
import torch

from sise.errors import SiseError
from sise.eval.benchmark.store import config_id
from sise.eval.digest import digest, tensor_bytes

SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_digest_is_sha256_or_crc32_of_the_concatenation() -> None:
    assert digest([b"abc"]) == SHA256_ABC  # the FIPS 180-2 test vector
    assert digest([b"a", b"", b"bc"]) == SHA256_ABC
    assert digest([b"abc"], "crc32") == "352441c2"
    assert digest((chunk for chunk in (b"ab", b"c")), "crc32") == "352441c2"
    assert digest([], "crc32") == "00000000"
    with pytest.raises(SiseError, match="unknown digest algorithm"):
        digest([b"abc"], "md5")  # type: ignore[arg-type]


def test_tensor_bytes_ignore_strides() -> None:
    values = torch.arange(6, dtype=torch.float32).view(2, 3)
    assert tensor_bytes(values.t()) == values.t().contiguous().numpy().tobytes()
    assert tensor_bytes(values.t()) != tensor_bytes(values)


def test_a_configuration_keeps_its_stored_id() -> None:
    # written by the benchmark before the digest helper existed: a database keyed with it resumes
    assert config_id({"method": "sise", "options": {"mu": 0.5}, "seed": 0}) == "27236dceebfa6bfb"
