"""Fixtures of the command-line tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny_cli(monkeypatch, small_cnn):
    """The commands with a small CNN instead of the demo model; records each explainer built."""
    import torch

    import sise.cli.inputs
    import sise.cli.method_options
    from sise.models.loading import LoadedModel

    loaded = LoadedModel(
        small_cnn, [f"class {i}" for i in range(5)], (32, 32), (0.5,) * 3, (0.5,) * 3, "tiny"
    )

    built: dict[str, object] = {}
    real = sise.cli.method_options.make_explainer

    def recording(name, model, **options):
        explainer = real(name, model, **options)
        built[explainer.name] = explainer
        return explainer

    # the commands import the loader from sise.cli.inputs when they run
    monkeypatch.setattr(sise.cli.inputs, "load_model_from_args", lambda args: loaded)
    monkeypatch.setattr(sise.cli.method_options, "make_explainer", recording)
    torch.manual_seed(0)
    return built
