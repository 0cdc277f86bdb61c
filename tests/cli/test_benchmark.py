"""``sise benchmark``'s command-line defaults (the benchmark itself: tests/eval)."""

from __future__ import annotations


def test_benchmark_score_defaults_to_softmax_on_the_single_label_photo_set() -> None:
    from sise.cli.benchmark import _default_benchmark_score

    assert _default_benchmark_score("photos") == "softmax"
    assert _default_benchmark_score("Photos:/data/set") == "softmax"
    assert _default_benchmark_score("voc2007:/data/VOCdevkit") == "sigmoid"
    assert _default_benchmark_score("synthetic") == "sigmoid"


def test_benchmark_writes_its_tables_next_to_the_database_by_default(tmp_path, capsys) -> None:
    from sise.cli import main
    from sise.eval import make_synthetic_voc

    data = make_synthetic_voc(tmp_path / "voc", 4, image_size=64, seed=1, test_fraction=0.5)
    db = tmp_path / "runs" / "r.sqlite"
    db.parent.mkdir()
    argv = ["benchmark", "--dataset", f"synthetic:{data}", "--model", "synthetic-vgg"]
    argv += ["--methods", "gradcam", "--metrics", "ebpg", "--limit", "1", "--db", str(db)]
    assert main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    written = sorted(p.name for p in db.parent.iterdir() if p.suffix in (".md", ".csv", ".png"))
    assert len(written) == 3 and {p.rsplit(".", 1)[1] for p in written} == {"md", "csv", "png"}
    for name in written:
        assert f"wrote {db.parent / name}" in printed
    # --report-only writes nothing unless --out says where, and says so
    for name in written:
        (db.parent / name).unlink()
    assert main([*argv, "--no-progress", "--report-only"]) == 0
    assert "--report-only writes no file: add --out FOLDER" in capsys.readouterr().out
    assert sorted(p.name for p in db.parent.iterdir()) == ["r.sqlite"]
