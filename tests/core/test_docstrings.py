"""The ``Example:`` blocks of the public docstrings run, and print what they say they print."""

from __future__ import annotations

import doctest
import importlib
import io

import pytest
import torch

#: Modules whose docstring examples are run.
MODULES = [
    "sise.methods.sise",
    "sise.methods.grad_cam",
    "sise.methods.grad_cam_plus_plus",
    "sise.methods.score_cam",
    "sise.methods.rise",
    "sise.methods.extremal_perturbation",
    "sise.methods.integrated_gradients",
    "sise.methods.fullgrad",
    "sise.targets.ready_made",
    "sise.targets.class_names",
    "sise.methods.registry",
    "sise.models.loading",
    "sise.extras",
    "sise.runtime.settings",
]


def _examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder()
    found = []
    for name in MODULES:
        found += [test for test in finder.find(importlib.import_module(name)) if test.examples]
    return sorted(found, key=lambda test: test.name)


def test_every_public_class_has_an_example():
    import sise
    from sise.models.loading import load_model

    results = (sise.SiseError, sise.Explainer, sise.Explanation, sise.SISEExplanation)
    public = [getattr(sise, name) for name in sise.__all__ if name[0].isupper()]
    public = [obj for obj in public if obj not in results] + [load_model]
    missing = [obj.__name__ for obj in public if ">>> " not in (obj.__doc__ or "")]
    assert not missing, f"no Example: block in {missing}"
    tested = {test.name.rsplit(".", 1)[-1] for test in _examples()}
    assert {obj.__name__ for obj in public} <= tested


@pytest.mark.parametrize("test", _examples(), ids=lambda test: test.name)
def test_docstring_example(test):
    torch.manual_seed(0)  # the examples draw random images and weights
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    result = runner.run(test, out=report.write)
    assert result.failed == 0, report.getvalue()
