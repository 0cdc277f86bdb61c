"""``sise compare``."""

from __future__ import annotations

from sise.cli import main


def test_compare_with_no_method(capsys):
    assert main(["compare", "--methods", ","]) == 2
    assert "names no method" in capsys.readouterr().err


def test_compare_without_captum_skips_integrated_gradients_and_writes_the_figure(
    tiny_cli, tmp_path, capsys, monkeypatch
):
    import sys

    for name in [m for m in sys.modules if m.split(".")[0] == "captum"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "captum", None)  # as if not installed
    out = tmp_path / "cmp.png"
    argv = ["compare", "--methods", "ig,gradcam", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "skipping Integrated Gradients: Integrated Gradients needs the package" in printed
    assert 'pip install "sise[ig]"' in printed
    assert "Grad-CAM" in printed and out.is_file()
    assert set(tiny_cli) == {"gradcam"}  # nothing was built for the missing one
    # with nothing left to run, it is an error, not an empty figure
    assert main(["compare", "--methods", "ig", "--out", str(tmp_path / "x.png")]) == 2
    assert "none of the methods can run" in capsys.readouterr().err


def _labels(monkeypatch):
    """The method labels of the figure ``sise compare`` draws."""
    import sise.viz

    drawn: list[str] = []
    real = sise.viz.save_comparison

    def recording(path, rgb, results, title=""):
        drawn.extend(label for label, _, _ in results)
        return real(path, rgb, results, title)

    monkeypatch.setattr(sise.viz, "save_comparison", recording)
    return drawn


def test_compare_budgets_etas_and_a_bar_per_method(tiny_cli, tmp_path, capsys, monkeypatch):
    labels = _labels(monkeypatch)
    out = str(tmp_path / "cmp.png")
    # no --budget on a CPU: the quick one, said so, with the way to the paper's
    argv = ["compare", "--methods", "rise,extremal,ig,gradcam", "--out", out]
    assert main([*argv, "--option", "extremal.iterations=20"]) == 0
    printed = capsys.readouterr()
    assert tiny_cli["rise"].n_masks == 1000 and tiny_cli["ig"].n_steps == 20
    assert tiny_cli["extremal"].iterations == 20 and tiny_cli["extremal"].areas == [0.1]
    assert "budget quick (the default without a CUDA GPU): RISE n_masks=1000 (paper: 4000)" in (
        printed.out
    )
    assert "--budget paper" in printed.out
    # before each method: its passes through the model and the time they take
    assert "Extremal Perturbation areas=0.1 (paper: 0.025,0.05,0.1,0.2)" in printed.out
    assert "iterations=300" not in printed.out  # the --option's value is not the budget's
    assert "[1/4] RISE: 1,001 forward passes, " in printed.out
    assert "[2/4] Extremal Perturbation: 2 forward passes and 20 forward+backward passes" in (
        printed.out
    )
    assert "[3/4] Integrated Gradients: 2 forward passes and 20 forward+backward passes" in (
        printed.out
    )
    assert "[4/4] Grad-CAM: 1 forward+backward pass, " in printed.out
    # a bar over each slow method's masks, iterations or path points
    for bar in ("RISE masked forwards", "Extremal Perturbation", "Integrated Gradients"):
        assert bar in printed.err
    assert labels == ["RISE", "Extremal Perturbation", "Integrated Gradients", "Grad-CAM"]

    # the paper's budget, and an --option wins over a budget
    argv = ["compare", "--methods", "rise,extremal", "--budget", "paper", "--out", out]
    assert main([*argv, "--option", "extremal.iterations=3", "--no-progress"]) == 0
    assert tiny_cli["rise"].n_masks == 4000 and tiny_cli["extremal"].iterations == 3
    assert tiny_cli["extremal"].areas == [0.025, 0.05, 0.1, 0.2]
    assert "(paper: " not in capsys.readouterr().out  # nothing was reduced
    argv = ["compare", "--methods", "rise", "--budget", "quick", "--out", out, "--no-progress"]
    assert main([*argv, "--option", "rise.n_masks=8"]) == 0
    assert tiny_cli["rise"].n_masks == 8


def test_compare_adaptive_is_labelled_ada_sise(tiny_cli, tmp_path, capsys, monkeypatch):
    labels = _labels(monkeypatch)
    out = str(tmp_path / "cmp.png")
    argv = ["compare", "--methods", "sise,gradcam", "--out", out, "--no-progress"]
    assert main([*argv, "--option", "sise.selection=adaptive"]) == 0
    assert labels == ["Ada-SISE", "Grad-CAM"]
    assert "Ada-SISE" in capsys.readouterr().out
