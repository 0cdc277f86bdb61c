"""``sise --help``: answered without importing torch, and every flag explained."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src"

#: Runs ``python -m sise ARGS`` in this interpreter and prints the heavy modules it imported.
_CHECK = """
import runpy, sys
sys.argv = ["sise", *sys.argv[1:]]
try:
    runpy.run_module("sise", run_name="__main__")
except SystemExit:
    pass
print("IMPORTED", sorted(m for m in ("torch", "torchvision", "numpy", "matplotlib") if m in sys.modules))
"""


@pytest.mark.parametrize("command", [[], ["explain"], ["compare"], ["app"], ["benchmark"]])
def test_help_imports_no_torch(command):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", _CHECK, *command, "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert "usage: sise" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "IMPORTED []", done.stdout[-500:]


def test_device_score_and_budget_have_help(capsys):
    from sise.cli import main

    for command in ("explain", "compare"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        printed = " ".join(capsys.readouterr().out.split())
        assert "--device DEVICE where the model runs: cpu, cuda, cuda:N or mps" in printed
        assert "--score {softmax,sigmoid,logit} the score of the class that is explained" in printed
        assert "--budget {quick,paper} how much work the slow methods do" in printed


def test_the_names_written_out_for_the_help_match_the_package():
    from sise.cli.app import DEFAULT_PORT
    from sise.cli.arguments import BUDGET_NAMES, DEMO_MODEL, METHOD_NAMES, SCORES
    from sise.core.scores import SCORE_KINDS
    from sise.methods.registry import BUDGETS, DISPLAY_NAMES
    from sise.models.loading import DEMO_MODEL as LOADER_DEMO_MODEL
    from sise.web.server import DEFAULT_PORT as SERVER_PORT

    assert DEMO_MODEL == LOADER_DEMO_MODEL
    assert tuple(DISPLAY_NAMES) == METHOD_NAMES
    assert BUDGET_NAMES == BUDGETS
    assert set(SCORES) == set(SCORE_KINDS)
    assert DEFAULT_PORT == SERVER_PORT


def test_python_m_sise_runs_the_command_line():
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "sise", "--version"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0 and done.stdout.startswith("sise ")
