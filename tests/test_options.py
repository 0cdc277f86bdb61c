"""The one grammar of ``--option METHOD.KEY=VALUE`` (sise.options), used by every command."""

from __future__ import annotations

import pytest

from sise.cli import main
from sise.errors import SiseError
from sise.options import (
    RUNTIME_OPTIONS,
    check_method_options,
    parse_method_options,
    parse_option,
    parse_value,
    result_options,
)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("2000", 2000),
        ("0.5", 0.5),
        ("-3", -3),
        ("blur", "blur"),
        ("'blur'", "blur"),
        ('"blur"', "blur"),
        ("True", True),
        ("true", True),
        ("FALSE", False),
        ("null", None),
        ("None", None),
        ("(1.0, 1000.0)", (1.0, 1000.0)),
        ("[0.05, 0.1]", (0.05, 0.1)),  # JSON / Python lists read as tuples
        ("0.05,0.1", (0.05, 0.1)),
        ("layer2,layer3", ("layer2", "layer3")),
        ("features.3", "features.3"),
        ("nan", "nan"),  # a word, refused by any number-typed option
    ],
)
def test_values(raw: str, value: object) -> None:
    assert parse_value(raw) == value
    assert type(parse_value(raw)) is type(value)


def test_options_are_typed_by_the_method() -> None:
    assert parse_option("rise.n_masks=2000") == ("rise", "n_masks", 2000)
    assert parse_option("rise.p=1") == ("rise", "p", 1.0)  # an int where a number is wanted
    assert parse_option("extremal.areas=0.05") == ("extremal", "areas", (0.05,))
    assert parse_option("extremal.areas=0.05,0.1") == ("extremal", "areas", (0.05, 0.1))
    assert parse_option("extremal.area_weight=300") == ("extremal", "area_weight", 300.0)
    assert parse_option("sise.layers=layer2,layer3") == ("sise", "layers", ("layer2", "layer3"))
    assert parse_option("sise.batch_size=auto") == ("sise", "batch_size", "auto")
    # speed keys are the Runtime's settings the method uses (precision replaced autocast_dtype)
    assert parse_option("sise.precision=bf16") == ("sise", "precision", "bf16")
    assert parse_option("rise.compile=true") == ("rise", "compile", True)
    assert parse_option("sise.channels_last=true") == ("sise", "channels_last", True)
    assert parse_option("Grad-CAM.layer=features.3") == ("gradcam", "layer", "features.3")
    assert parse_method_options(["extremal.iterations=300", "rise.baseline=blur"]) == {
        "extremal": {"iterations": 300},
        "rise": {"baseline": "blur"},
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rise.n_masks=2.5", "rise.n_masks takes an integer, got 2.5"),
        ("rise.n_masks=abc", "rise.n_masks takes an integer, got 'abc'"),
        ("rise.n_masks=True", "takes an integer, got True"),
        ("sise.mu=nan", "sise.mu takes a finite number, got 'nan'"),
        ("sise.mu=1e999", "takes a finite number, got inf"),
        ("ig.method=bogus", "ig.method takes one of 'gausslegendre'"),
        ("sise.progress=1", "takes true or false, got 1"),
        ("extremal.area_weight=1,2,3", "area_weight takes a finite number, got (1, 2, 3)"),
        ("rise.baseline=0.5", "rise.baseline takes a string or"),
        ("rise.n_masks=", "the value is empty"),
        ("rise.nope=1", "method 'rise' has no option 'nope'; its options: n_masks"),
        ("rise.model=1", "has no option 'model'"),
        ("rise.runtime=1", "has no option 'runtime'"),
        ("gradcam.batch_size=8", "method 'gradcam' has no option 'batch_size'"),
        ("sise.precision=fp8", "sise.precision takes one of 'fp32', 'bf16', 'fp16'"),
        ("nosuch.n=1", "unknown method 'nosuch'"),
        ("n_masks=3", "write METHOD.KEY=VALUE"),
        ("rise.n_masks", "write METHOD.KEY=VALUE"),
    ],
)
def test_mistakes_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(SiseError) as caught:
        parse_option(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"--option {text!r}: ")


def test_options_given_in_python_are_checked_too() -> None:
    assert check_method_options({"RISE": {"n_masks": 10}}) == {"rise": {"n_masks": 10}}
    with pytest.raises(SiseError, match=r"rise.n_masks takes an integer"):
        check_method_options({"rise": {"n_masks": 2.5}})


def test_runtime_options_never_hide_result_options() -> None:
    # precision and autocast change the maps: they must stay in a run's configuration
    assert {"batch_size", "progress", "channels_last"} <= RUNTIME_OPTIONS
    assert not {"precision", "autocast_dtype", "n_masks", "seed"} & RUNTIME_OPTIONS
    options = {"batch_size": 256, "precision": "bf16", "n_masks": 10}
    assert result_options(options) == {"precision": "bf16", "n_masks": 10}


@pytest.mark.parametrize("option", ["rise.n_masks=2.5", "rise.n_masks=abc", "sise.mu=nan"])
def test_commands_print_one_line(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--option", option, "--no-progress"]
    assert main(["compare", "--methods", "gradcam", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--option {option!r}" in err and "Traceback" not in err
    assert main(["benchmark", "--dataset", "synthetic", "--model", "synthetic-vgg", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--option {option!r}" in err
