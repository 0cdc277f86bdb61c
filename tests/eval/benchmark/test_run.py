"""The benchmark runner: storage, kill -9 and resume, torchrun scale-out, packing and prefetching,
the errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from sise.cli import main
from sise.errors import SiseError
from sise.eval.benchmark import BenchmarkConfig, run_benchmark
from sise.eval.benchmark import run as running
from sise.eval.benchmark.scoring import DEFAULT_METRICS, MetricSettings, required_metrics
from sise.eval.data import EvalImage, EvalPair, VOCDetection2007, load_dataset
from sise.eval.data.synthetic import make_synthetic_voc
from sise.methods.registry import METHODS

METHODS_UNDER_TEST = ["gradcam", "sise"]


ARGS = [
    "--model",
    "synthetic-vgg",
    "--methods",
    ",".join(METHODS_UNDER_TEST),
    "--steps",
    "8",
    "--no-progress",
]


def _config(data: Path, db: Path, **changes: object) -> BenchmarkConfig:
    values: dict[str, object] = dict(
        dataset=f"synthetic:{data}",
        model="synthetic-vgg",
        methods=METHODS_UNDER_TEST,
        db=db,
        metric_settings=MetricSettings(steps=8),
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


def test_methods_under_test_are_registered() -> None:
    assert set(METHODS_UNDER_TEST) <= set(METHODS)


def test_clean_run_stores_every_pair(clean_run: tuple[Path, object], tiny_data: Path) -> None:
    db, result = clean_run
    pairs = result.pairs  # type: ignore[attr-defined]
    rows = _rows(db)
    # every metric of every pair, but distractor energy only where the image holds another class
    dataset = VOCDetection2007(tiny_data, "test")
    per_pair = [len(required_metrics(p, DEFAULT_METRICS)) for p in dataset]
    assert len(per_pair) == pairs and min(per_pair) < max(per_pair)  # both kinds of pair here
    assert len(rows) == sum(per_pair) * len(METHODS_UNDER_TEST)
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
    # the table's standard errors and near-best marks are the result's too
    errors = result.errors  # type: ignore[attr-defined]
    assert set(errors) == set(DEFAULT_METRICS) and errors["ebpg"].keys() == result.counts.keys()  # type: ignore[attr-defined]
    assert f"± {errors['ebpg']['sise']:.2f}" in markdown
    assert set(result.near_best) == set(DEFAULT_METRICS)  # type: ignore[attr-defined]


def test_rerun_computes_nothing(
    clean_run: tuple[Path, object], tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a complete pair was computed again")

    monkeypatch.setattr(running, "evaluate_pack", fail)
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


# --------------------------------------------------------------------------------------------
# resuming: what enters a run's identity (the identity itself: test_config.py)


def test_runtime_options_do_not_restart_a_run(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "rise.sqlite"
    first = _config(
        tiny_data,
        db,
        methods=["rise"],
        metrics=["ebpg", "pointing"],
        method_options={"rise": {"n_masks": 40, "batch_size": 16}},
        limit=2,
    )
    done = run_benchmark(first)
    assert done is not None and done.counts == {"rise": done.pairs}

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("another batch size started the run over")

    monkeypatch.setattr(running, "evaluate_pack", fail)
    # another batch size (an option and the benchmark's own), another pack: the same results
    again = _config(
        tiny_data,
        db,
        methods=["rise"],
        metrics=["ebpg", "pointing"],
        method_options={"rise": {"n_masks": 40, "batch_size": 7}},
        batch_size=5,
        pack=2,
        limit=2,
    )
    resumed = run_benchmark(again)
    assert resumed is not None and resumed.config_ids == done.config_ids
    assert resumed.counts == done.counts


# --------------------------------------------------------------------------------------------
# packing and prefetching


def test_packed_pairs_and_workers_give_the_single_pair_results(
    clean_run: tuple[Path, object], tiny_data: Path, tmp_path: Path
) -> None:
    """3 pairs per method call, read by 2 DataLoader processes, against one pair at a time.

    Bitwise equality is out of reach on a CPU: a model's batched matrix products round
    differently from single ones (about 1e-7 here), and insertion / deletion, which rank the
    pixels, turn that into up to 0.002 points on a pair on one machine and 0.026 on another
    (2-core VM, 2026-12-04: Grad-CAM's deletion AUC 28.829 against 28.855; nearly tied pixels swap
    places). So maps must agree to their float16 storage, insertion / deletion to 0.05 points and
    every other value to 0.01, below the table's precision; hits and flags exactly."""
    db = tmp_path / "packed.sqlite"
    with _single_thread():  # type: ignore[attr-defined]
        packed = run_benchmark(_config(tiny_data, db, pack=3, workers=2))
    assert packed is not None
    clean_db, clean = clean_run

    def values(path: Path) -> dict[tuple[object, ...], float]:
        with sqlite3.connect(path) as conn:
            rows = conn.execute(
                "SELECT config_id, image_id, class_index, method, metric, value FROM results"
            ).fetchall()
        return {row[:-1]: row[-1] for row in rows}

    single, together = values(clean_db), values(db)
    assert single.keys() == together.keys()  # the same pairs, methods and metrics
    for key, value in single.items():
        if key[-1] in ("pointing", "increase"):  # hits and flags: exactly the same
            assert together[key] == value, key
        else:
            ranked = key[-1] in ("insertion", "deletion")
            assert together[key] == pytest.approx(value, abs=0.05 if ranked else 0.01), key
    assert packed.counts == clean.counts  # type: ignore[attr-defined]

    def maps(path: Path) -> dict[tuple[object, ...], np.ndarray]:
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT image_id, class_index, method, data FROM maps").fetchall()
        return {row[:3]: np.frombuffer(row[3], dtype=np.float16) for row in rows}

    single_maps, packed_maps = maps(clean_db), maps(db)
    assert single_maps.keys() == packed_maps.keys() and len(single_maps) > 0
    for key, data in single_maps.items():
        assert np.abs(packed_maps[key].astype(np.float32) - data).max() <= 1e-3, key


# --------------------------------------------------------------------------------------------
# mistakes found before any work


def test_help_lists_every_metric_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["benchmark", "--help"])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    for flag in ("--miou-fraction", "--drop-baseline", "--steps", "--pointing-tolerance"):
        assert flag in printed
    assert "Drop%/Increase%" in printed and "--pack" in printed and "--workers" in printed


def test_command_line_checks_settings_before_any_work(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "never.sqlite"
    base = ["benchmark", "--dataset", f"synthetic:{tiny_data}", *ARGS, "--db", str(db)]
    not_a_folder = tmp_path / "table.md"
    not_a_folder.write_text("keep me")
    for extra, message in [
        (["--metrics", ","], "no metric to compute"),
        (["--metrics", "ebpg,accuracy"], "unknown metric 'accuracy'"),
        (["--methods", ","], "no method to benchmark"),
        (["--steps", "0"], "--steps must be a positive integer"),
        (["--nproc", "0"], "--nproc must be at least 1"),
        (["--pack", "0"], "--pack must be an integer >= 1"),
        (["--workers", "-1"], "--workers must be an integer >= 0"),
        (["--miou-fraction", "1.5"], "--miou-fraction must lie in (0, 1]"),
        (["--pointing-tolerance", "nan"], "--pointing-tolerance must be a finite number"),
        (["--out", str(not_a_folder)], "is a file: give a folder"),
    ]:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)
    # --batch-size is a number or 'auto': argparse refuses anything else
    with pytest.raises(SystemExit) as refused:
        main([*base, "--batch-size", "0"])
    assert (
        refused.value.code == 2 and "--batch-size: 0 must be at least 1" in capsys.readouterr().err
    )
    assert not db.exists()  # nothing was computed, not even the database created
    assert not_a_folder.read_text() == "keep me"


# --------------------------------------------------------------------------------------------
# photos[:PATH]: a dataset made for the model (sise.eval.data.photos, another module's job)


class _Photos:
    """What ``sise.eval.data.photos.photo_dataset`` returns: one photo, one class, one box."""

    def __init__(self, loaded: object) -> None:
        from sise.images import sample_image_path

        self.class_names = list(loaded.class_names)  # type: ignore[attr-defined]
        path = sample_image_path("chelsea")
        self.pair = EvalPair("chelsea", path, 285, "Egyptian cat", [(0, 0, 300, 300)], 451, 300)

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> EvalPair:
        return [self.pair][index]

    def __iter__(self):
        return iter([self.pair])

    def images(self) -> list[EvalImage]:
        return [EvalImage("chelsea", self.pair.image_path, (285,))]


def _fake_photos(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, object]]:
    calls: list[tuple[object, object]] = []

    def photo_dataset(root: object, loaded: object) -> tuple[_Photos, dict[str, str]]:
        calls.append((root, loaded))
        return _Photos(loaded), {"kind": "photos", "root": str(root), "split": "all"}

    module = types.ModuleType("sise.eval.data.photos")
    module.photo_dataset = photo_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sise.eval.data.photos", module)
    return calls


def test_photos_dataset_is_wired(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_photos(monkeypatch)
    model = types.SimpleNamespace(class_names=["a"] * 1000)
    kind, dataset, identity = load_dataset("photos:/some/folder", loaded=model)  # type: ignore[arg-type]
    assert kind == "photos" and isinstance(dataset, _Photos) and identity["split"] == "all"
    assert calls == [("/some/folder", model)]
    load_dataset("photos", loaded=model)  # type: ignore[arg-type]
    assert calls[-1] == (None, model)  # no path: the module's own photos
    with pytest.raises(SiseError, match="needs the model"):
        load_dataset("photos")


def test_photos_benchmark_loads_the_model_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _fake_photos(monkeypatch)
    config = BenchmarkConfig(
        dataset="photos",
        model="efficientnet_lite0",
        methods=["gradcam"],
        metrics=["ebpg", "pointing"],
        db=tmp_path / "photos.sqlite",
        progress=False,
        score="softmax",
    )
    result = run_benchmark(config)
    assert result is not None and result.counts == {"gradcam": 1}
    assert calls[0][1].name == "efficientnet_lite0"  # type: ignore[attr-defined]
    assert "(photos, split `all`)" in result.markdown
    with pytest.raises(SiseError, match="labelled for an ImageNet model"):
        run_benchmark(BenchmarkConfig(**{**config.__dict__, "model": "synthetic-vgg"}))


def test_photos_benchmark_loads_the_model_at_its_own_size(monkeypatch, tmp_path) -> None:
    """Without --size the model runs at its native input size (Lite2: 260 px), not 224."""
    from sise.eval.benchmark import run as running

    seen: list[object] = []

    def fake_load_model(name, checkpoint=None, *, device="cpu", input_size=None):
        seen.append(input_size)
        raise RuntimeError("stop here")

    monkeypatch.setattr(running, "load_model", fake_load_model)
    config = BenchmarkConfig(dataset="photos", model="efficientnet_lite2", db=tmp_path / "r.sqlite")
    with pytest.raises(RuntimeError, match="stop here"):
        running._load(config, "cpu")
    config = BenchmarkConfig(
        dataset="photos", model="efficientnet_lite2", db=tmp_path / "r.sqlite", input_size=200
    )
    with pytest.raises(RuntimeError, match="stop here"):
        running._load(config, "cpu")
    assert seen == [None, (200, 200)]


def test_a_cpu_run_keeps_freed_memory_for_all_its_pairs(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One allocator block around the whole pair loop: glibc's thresholds are set once and
    restored once, however many pairs and explanations run inside."""
    from sise.runtime import allocator

    calls: list[tuple[str, int]] = []

    class Libc:
        def sbrk(self, increment: int) -> int:
            return 0

        def mallopt(self, option: int, value: int) -> int:
            calls.append(("mallopt", option))
            return 1

        def malloc_trim(self, pad: int) -> int:
            calls.append(("malloc_trim", pad))
            return 1

    monkeypatch.setattr(allocator, "_glibc", lambda: Libc())
    depths: list[int] = []
    evaluate = running.evaluate_pack

    def recording(*args: object, **kwargs: object) -> object:
        depths.append(allocator._depth)
        return evaluate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(running, "evaluate_pack", recording)
    config = _config(
        tiny_data, tmp_path / "one.sqlite", methods=["gradcam"], metrics=["pointing"], limit=3
    )
    assert run_benchmark(config) is not None
    assert len(depths) > 1 and set(depths) == {1}
    assert [c for c in calls if c[0] == "mallopt"] == [("mallopt", -3), ("mallopt", -1)] * 2
