"""The benchmark runner: storage, kill -9 and resume, torchrun scale-out, the table, the errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sise.cli import main
from sise.errors import SiseError
from sise.eval.benchmark import BenchmarkConfig, format_table, load_dataset, run_benchmark
from sise.eval.synthetic import make_synthetic_voc
from sise.methods.registry import METHODS

METHODS_UNDER_TEST = [m for m in ("gradcam", "sise") if m in METHODS]
ARGS = [
    "--model",
    "synthetic-vgg",
    "--methods",
    ",".join(METHODS_UNDER_TEST),
    "--steps",
    "8",
    "--no-progress",
]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 test images (about 8 pairs) of 64 px, unseen by the shipped models."""
    return make_synthetic_voc(
        tmp_path_factory.mktemp("tiny") / "voc", 8, image_size=64, seed=7, test_fraction=0.5
    )


def _config(data: Path, db: Path, **changes: object) -> BenchmarkConfig:
    values: dict[str, object] = dict(
        dataset=f"synthetic:{data}",
        model="synthetic-vgg",
        methods=METHODS_UNDER_TEST,
        db=db,
        steps=8,
        progress=False,
    )
    values.update(changes)
    return BenchmarkConfig(**values)  # type: ignore[arg-type]


def _rows(db: Path) -> set[tuple[object, ...]]:
    """Result rows without timings, values rounded far below any printed precision."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT config_id, image_id, class_index, class_name, method, metric, value "
            "FROM results"
        ).fetchall()
    return {(*row[:-1], round(row[-1], 4)) for row in rows}


def _single_thread() -> object:
    class Threads:
        def __enter__(self) -> None:
            self.saved = torch.get_num_threads()
            torch.set_num_threads(1)

        def __exit__(self, *exc: object) -> None:
            torch.set_num_threads(self.saved)

    return Threads()


@pytest.fixture(scope="module")
def clean_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """One uninterrupted single-process run, single-threaded like torchrun's workers."""
    out = tmp_path_factory.mktemp("clean")
    db = out / "clean.sqlite"
    with _single_thread():  # type: ignore[attr-defined]
        result = run_benchmark(_config(tiny_data, db, out=out, name="clean"))
    assert result is not None
    return db, result


def test_clean_run_stores_every_pair(clean_run: tuple[Path, object], tiny_data: Path) -> None:
    db, result = clean_run
    pairs = result.pairs  # type: ignore[attr-defined]
    rows = _rows(db)
    assert len(rows) == pairs * len(METHODS_UNDER_TEST) * 8
    assert result.counts == dict.fromkeys(METHODS_UNDER_TEST, pairs)  # type: ignore[attr-defined]
    with sqlite3.connect(db) as conn:
        config = conn.execute("SELECT config FROM results_with_config LIMIT 1").fetchone()[0]
        assert '"miou_fraction":0.2' in config and '"drop_baseline":"zero"' in config
        seconds = conn.execute("SELECT MIN(seconds) FROM results").fetchone()[0]
        assert seconds > 0
        maps = conn.execute("SELECT COUNT(*) FROM maps").fetchone()[0]
    assert maps == min(4, pairs) * len(METHODS_UNDER_TEST)
    files = {p.name for p in result.files}  # type: ignore[attr-defined]
    assert files == {"clean.md", "clean.csv", "clean_examples.png"}
    markdown = result.markdown  # type: ignore[attr-defined]
    assert "top 20% of pixels" in markdown and "masking baseline `zero`" in markdown


def test_rerun_computes_nothing(
    clean_run: tuple[Path, object], tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sise.eval.benchmark as benchmark

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a complete pair was computed again")

    monkeypatch.setattr(benchmark, "evaluate_pair", fail)
    db, result = clean_run
    again = run_benchmark(_config(tiny_data, db, name="clean"))
    assert again is not None and again.markdown == result.markdown  # type: ignore[attr-defined]


def test_kill_9_then_resume_gives_the_clean_rows(
    clean_run: tuple[Path, object], tiny_data: Path, tmp_path: Path
) -> None:
    db = tmp_path / "killed.sqlite"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "sise.cli", "benchmark", "--dataset", f"synthetic:{tiny_data}"]
    command += [*ARGS, "--db", str(db), "--throttle", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"benchmark ended early: {process.stdout.read().decode()}")  # type: ignore[union-attr]
            if db.is_file():
                try:
                    with sqlite3.connect(db, timeout=5) as conn:
                        if conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] > 0:
                            break
                except sqlite3.OperationalError:
                    pass  # schema not created yet
            time.sleep(0.05)
        else:
            pytest.fail("the benchmark wrote nothing in 120 s")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    partial = _rows(db)
    clean_db, result = clean_run
    clean = _rows(clean_db)
    assert 0 < len(partial) < len(clean)
    assert partial <= clean
    with _single_thread():  # type: ignore[attr-defined]
        resumed = run_benchmark(_config(tiny_data, db))
    assert resumed is not None
    assert _rows(db) == clean
    assert _table_without_seconds(resumed.markdown) == _table_without_seconds(
        result.markdown  # type: ignore[attr-defined]
    )


def _table_without_seconds(markdown: str) -> list[str]:
    return [
        line
        for line in markdown.splitlines()
        if line.startswith("|") and not line.startswith("| Seconds")
    ]


def test_torchrun_two_processes_match_one(
    clean_run: tuple[Path, object], tiny_data: Path, tmp_path: Path
) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    db = tmp_path / "dist.sqlite"
    command = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "sise.cli"]
    command += ["benchmark", "--dataset", f"synthetic:{tiny_data}", *ARGS]
    command += ["--db", str(db), "--out", str(tmp_path), "--name", "dist"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    clean_db, result = clean_run
    assert _rows(db) == _rows(clean_db)
    assert not list(tmp_path.glob("dist.sqlite.rank*"))  # shards merged and removed
    assert _table_without_seconds((tmp_path / "dist.md").read_text()) == _table_without_seconds(
        result.markdown  # type: ignore[attr-defined]
    )
    assert "| EBPG (%) ↑ |" in done.stdout  # rank 0 printed the table once
    assert done.stdout.count("| EBPG (%) ↑ |") == 1


def test_table_layout() -> None:
    values = {
        "ebpg": {"gradcam": 50.0, "sise": 60.5},
        "drop": {"gradcam": 30.0, "sise": 40.0},
        "increase": {"gradcam": 20.0, "sise": 20.001},
        "deletion": {"gradcam": 12.0, "sise": None},
        "seconds": {"gradcam": 0.1, "sise": 2.0},
    }
    markdown, table_csv = format_table(
        values,
        ["sise", "gradcam"],
        ["drop", "ebpg", "increase", "deletion"],
        {"gradcam": 3, "sise": 3},
    )
    lines = markdown.splitlines()
    assert lines[0] == "| Metric | Grad-CAM | SISE |"  # paper order, whatever order was asked
    assert [line.split(" |")[0] for line in lines[2:]] == [
        "| EBPG (%) ↑",
        "| Drop% ↓",
        "| Increase% ↑",
        "| Deletion AUC (%) ↓",
        "| Seconds / pair ↓",
        "| Pairs",
    ]
    assert lines[2] == "| EBPG (%) ↑ | 50.00 | **60.50** |"
    assert lines[3] == "| Drop% ↓ | **30.00** | 40.00 |"  # lower is better
    assert lines[4] == "| Increase% ↑ | **20.00** | **20.00** |"  # tie at printed precision
    assert lines[5] == "| Deletion AUC (%) ↓ | 12.00 | – |"  # nothing to compare with
    assert lines[6] == "| Seconds / pair ↓ | **0.100** | 2.000 |"
    assert table_csv.splitlines()[0] == "metric,Grad-CAM,SISE"
    assert table_csv.splitlines()[1] == "EBPG (%) ↑,50.0,60.5"


def test_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SiseError, match="no VOC dataset"):
        load_dataset(f"voc2007:{tmp_path / 'nowhere'}")
    with pytest.raises(SiseError, match="no COCO dataset folder"):
        load_dataset(f"coco2014:{tmp_path / 'nowhere'}")
    with pytest.raises(SiseError, match="needs the folder"):
        load_dataset("voc2007")
    with pytest.raises(SiseError, match="unknown dataset"):
        load_dataset("imagenet:/data")
    root = make_synthetic_voc(tmp_path / "empty", 4, image_size=32)
    (root / "VOC2007" / "ImageSets" / "Main" / "test.txt").write_text("")
    with pytest.raises(SiseError, match="lists no images"):
        load_dataset(f"voc2007:{root}")
    # the command line prints the message and exits with 2
    code = main(["benchmark", "--dataset", f"synthetic:{root}", "--model", "synthetic-vgg"])
    assert code == 2 and "lists no images" in capsys.readouterr().err
    data = make_synthetic_voc(tmp_path / "ok", 4, image_size=64)
    for changes, message in [
        ({"methods": ["nosuch"]}, "unknown method"),
        ({"metrics": ["accuracy"]}, "unknown metric"),
        ({"limit": 0}, "--limit must be"),
        ({"method_options": {"gradcam": {"nosuch": 1}}}, "has no option 'nosuch'"),
    ]:
        with pytest.raises(SiseError, match=message):
            run_benchmark(_config(data, tmp_path / "x.sqlite", **changes))
    with pytest.raises(SiseError, match="torchrun"):
        run_benchmark(_config(data, tmp_path / "x.sqlite"), distributed=True)


def test_summaries_compare_methods_on_common_pairs() -> None:
    from sise.eval.benchmark import parse_method_options, summarise
    from sise.eval.datasets import EvalPair
    from sise.eval.store import ResultRow

    pairs = [EvalPair(f"{i}", Path("x.jpg"), i % 2, "c", [(0, 0, 1, 1)], 8, 8) for i in range(3)]
    rows = [
        ResultRow("id", p.image_id, p.class_index, "c", method, metric, value, 1.0)
        for p, value in zip(pairs, (10.0, 20.0, 60.0), strict=True)
        for method in ("gradcam", "sise")
        for metric in ("ebpg", "pointing")
        if not (method == "sise" and p.image_id == "2")  # SISE has not done pair 2 yet
    ]
    values, counts = summarise(rows, pairs, ["gradcam", "sise"], ["ebpg", "pointing"])
    assert counts == {"gradcam": 2, "sise": 2} and values["ebpg"]["gradcam"] == 15.0
    values, counts = summarise(
        rows, pairs, ["gradcam", "sise"], ["ebpg", "pointing"], common_only=False
    )
    assert counts == {"gradcam": 3, "sise": 2} and values["ebpg"]["gradcam"] == 30.0
    assert parse_method_options(["extremal.iterations=300", "rise.baseline=blur"]) == {
        "extremal": {"iterations": 300},
        "rise": {"baseline": "blur"},
    }
    with pytest.raises(SiseError, match="METHOD.KEY=VALUE"):
        parse_method_options(["iterations=3"])
