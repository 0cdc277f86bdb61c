"""The Runtime: the one object that holds speed settings, checked where it is built."""

from __future__ import annotations

import pytest
import torch

from sise.errors import SiseError
from sise.runtime.settings import FIELDS, Runtime, default_device


def test_defaults_change_nothing() -> None:
    runtime = Runtime()
    assert runtime.batch_size is None  # each method's own default
    assert runtime.precision == "fp32" and runtime.autocast_dtype is None
    assert runtime.channels_last is None and runtime.compile is False
    assert runtime.progress is False
    assert runtime.model_device == default_device()
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(
    ("precision", "dtype"), [("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", None)]
)
def test_precision_names_give_autocast_dtypes(precision: str, dtype: torch.dtype | None) -> None:
    assert Runtime(precision=precision).autocast_dtype == dtype  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": "big"}, "batch_size"),
        ({"precision": "fp8"}, "precision"),
        ({"precision": torch.float16}, "precision"),
        ({"channels_last": "yes"}, "channels_last"),
        ({"compile": "max"}, "compile"),
        ({"progress": 1}, "progress"),
        ({"device": "gpu0"}, "device"),
    ],
)
def test_bad_settings_are_refused_where_the_runtime_is_built(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(SiseError, match=message):
        Runtime(**settings)  # type: ignore[arg-type]


def test_replace_checks_names_and_values() -> None:
    runtime = Runtime(batch_size=8).replace(precision="fp16")
    assert (runtime.batch_size, runtime.precision) == (8, "fp16")
    with pytest.raises(SiseError, match="unknown runtime setting"):
        Runtime().replace(batchsize=4)
    with pytest.raises(SiseError, match="batch_size"):
        Runtime().replace(batch_size=-1)


def test_fields_are_the_speed_keys() -> None:
    assert FIELDS == ("batch_size", "precision", "channels_last", "compile", "progress", "device")


def test_a_method_refuses_what_is_not_a_runtime() -> None:
    from torch import nn

    from sise import GradCAM

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(SiseError, match=r"runtime must be a sise\.Runtime"):
        GradCAM(model, runtime={"batch_size": 8})  # type: ignore[arg-type]
