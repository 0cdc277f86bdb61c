"""Faults a careless or hostile user meets on the command line (issue 22): each ends in one
clear line and exit status 2, before any work, or in the right result.

Cases: output paths through symbolic-link loops and folders given as ``--out``; two runs into one
output folder at once; a ``results.jsonl`` whose last line a killed run cut short; benchmark
databases that are damaged, mistyped, read-only or in a read-only folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sise.cli import main


def _photos(folder: Path, names: tuple[str, ...] = ("a.jpg", "b.png")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / name)
    return folder


# --------------------------------------------------------------------------------------------
# sise explain / compare: where the pictures go


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # a link to itself in the folder part, and as the file itself
        (["explain", "--out", "{tmp}/loop/x.png"], "--out '{tmp}/loop/x.png' goes through a loop"),
        (["explain", "--out", "{tmp}/self.png"], "--out '{tmp}/self.png' goes through a loop"),
        (["explain", "{photos}", "--out-dir", "{tmp}/loop"], "--out-dir '{tmp}/loop' goes through"),
        (["explain", "--out-dir", "{tmp}/loop/sub"], "--out-dir '{tmp}/loop/sub' goes through"),
        (["explain", "--out-dir", "{tmp}/ab/c"], "--out-dir '{tmp}/ab/c' goes through a loop"),
        (["compare", "--out", "{tmp}/loop/x.png"], "--out '{tmp}/loop/x.png' goes through a loop"),
        (["compare", "--out", "{tmp}/self.png"], "--out '{tmp}/self.png' goes through a loop"),
        (["compare", "{tmp}/loop"], "image file '{tmp}/loop' does not exist"),
        # the current folder and its parent are folders, not picture files
        (["explain", "--out", "."], "--out '.' is a folder: give a file name, e.g. 'map.png'"),
        (["explain", "--out", ".."], "--out '..' is a folder"),
        (["explain", "--out", "photos"], "--out 'photos' is a folder"),
        (["compare", "--out", "."], "'.' is a folder"),
        (["explain", "--out-dir", "{tmp}/dangling"], "which does not exist: create that folder"),
    ],
)
def test_bad_output_paths(tiny_cli, tmp_path, monkeypatch, capsys, argv, message):
    photos = _photos(tmp_path / "photos")
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "self.png").symlink_to("self.png")
    (tmp_path / "ab").symlink_to("ba")  # two links pointing to each other
    (tmp_path / "ba").symlink_to("ab")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    monkeypatch.chdir(tmp_path)
    argv = [a.format(tmp=tmp_path, photos=photos) for a in argv]
    assert main([*argv, "--methods" if argv[0] == "compare" else "--method", "gradcam"]) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and err.count("\n") == 1  # one line, no traceback
    assert not tiny_cli  # refused before any work
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["photos", "loop", "self.png", "ab", "ba", "dangling"]
    )


# --------------------------------------------------------------------------------------------
# sise explain into one folder: two runs at once, a torn results.jsonl


def test_a_second_run_into_a_busy_folder_is_refused(tiny_cli, tmp_path, capsys):
    from sise.cli.many_images import ResultsLog

    photos = _photos(tmp_path / "photos")
    out = tmp_path / "out"
    argv = ["explain", str(photos), "--out-dir", str(out), "--method", "gradcam", "--no-progress"]
    with ResultsLog(out / "results.jsonl").locked():  # another run, busy in that folder
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"another sise explain (process {os.getpid()}) is writing into '{out}'" in err
        assert sorted(p.name for p in out.iterdir()) == [".results.jsonl.lock"]  # the other's
    # the lock is the system's: a run killed with the lock held leaves a file that blocks nothing
    (out / ".results.jsonl.lock").write_text("999999999\n")
    assert main(argv) == 0
    assert "2 image(s): 2 explained" in capsys.readouterr().out
    assert not (out / ".results.jsonl.lock").exists()  # removed when the run ends
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["image"] for line in lines] == [
        str(photos / "a.jpg"),
        str(photos / "b.png"),
    ]


def test_two_real_runs_at_once_explain_each_image_once(tmp_path):
    """Two processes started together on 6 images: one explains them, the other is refused
    (or, started after the first ended, skips them): 6 records, never 12."""
    import subprocess
    import sys

    photos = _photos(tmp_path / "photos", tuple(f"p{i}.png" for i in range(6)))
    out = tmp_path / "out"
    script = (  # a tiny model; each image read slowly: the first run still works when the
        # second one starts
        "import sys, time, torch, sise.cli.explain as e, sise.cli.many_images as m\n"
        "from sise.models.loading import LoadedModel\n"
        "torch.manual_seed(0)\n"
        "net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),\n"
        "    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()\n"
        "loaded = LoadedModel(net, ['x', 'y', 'z'], (32, 32), (0.5,) * 3, (0.5,) * 3, 'tiny')\n"
        "e.load_model_from_args = lambda args: loaded\n"
        "real = m.load_image\n"
        "def slow(path):\n"
        "    time.sleep(0.5)\n"
        "    return real(path)\n"
        "m.load_image = slow\n"
        "from sise.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = [str(photos), "--out-dir", str(out), "--method", "gradcam"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, "explain", *argv, "--no-progress"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in results)
    if codes == [0, 0]:  # the second started after the first had finished: it skipped all
        assert any("6 already done" in output for _, output, _ in results), results
    else:
        assert codes == [0, 2], results
        assert "is writing into" in next(err for code, _, err in results if code == 2)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["image"] for r in records) == [str(p) for p in sorted(photos.iterdir())]


@pytest.mark.parametrize("cut", ["half", "all but the newline"])
def test_a_torn_last_line_does_not_swallow_the_next(tiny_cli, tmp_path, capsys, cut):
    photos = _photos(tmp_path / "photos", ("a.jpg", "b.png", "c.png"))
    out = tmp_path / "out"
    argv = ["explain", str(photos), "--out-dir", str(out), "--method", "gradcam", "--no-progress"]
    assert main([*argv]) == 0
    results = out / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    whole = lines[1].rstrip("\n")
    # a run killed while writing b's line: c was never done
    torn = whole[: len(whole) // 2] if cut == "half" else whole
    results.write_text(lines[0] + torn)
    (out / "c_gradcam.png").unlink()
    capsys.readouterr()
    assert main(argv) == 0
    captured = capsys.readouterr()
    done = 2 if cut == "half" else 1  # a half line is cut off: b is done again
    assert f"3 image(s): {done} explained, {3 - done} already done" in captured.out
    records = [json.loads(line) for line in results.read_text().splitlines()]  # every line whole
    assert sorted(r["image"] for r in records) == [
        str(photos / n) for n in ("a.jpg", "b.png", "c.png")
    ]
    assert ("removed its last line" in captured.err) == (cut == "half")
    assert main(argv) == 0
    assert "3 image(s): 0 explained, 3 already done" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# sise benchmark: the results database

BENCHMARK = [
    "benchmark",
    "--model",
    "synthetic-vgg",
    "--methods",
    "gradcam",
    "--steps",
    "8",
    "--no-progress",
]


@pytest.fixture(scope="module")
def bench_root() -> Iterator[Path]:
    """A folder every user may read (the read-only cases run as another user when the tests
    run as root, whom no permission stops): a tiny synthetic dataset and the database of a
    finished run over it (4 pairs)."""
    from sise.eval.data.synthetic import make_synthetic_voc

    root = Path(tempfile.mkdtemp(prefix="sise-faults-"))
    root.chmod(0o755)
    try:
        make_synthetic_voc(root / "data", 4, image_size=64, seed=8, test_fraction=0.5)
        done = root / "done.sqlite"
        args = [*BENCHMARK, "--dataset", f"synthetic:{root / 'data'}", "--db", str(done)]
        assert main(args) == 0
        assert main([*args, "--report-only"]) == 0  # every module the report needs is loaded
        yield root
    finally:
        for folder, _, _ in os.walk(root):
            os.chmod(folder, 0o755)
        shutil.rmtree(root)


@contextmanager
def _without_write_access() -> Iterator[None]:
    """Run as a user the read-only files and folders stop: yourself, or, for root, ``nobody``
    (its effective ids only, given back after; the cases' files are then nobody's)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def _damaged(folder: Path, done: Path) -> Path:
    data = bytearray(done.read_bytes())
    data[4096:] = bytes((7 * i) % 256 for i in range(4096, len(data)))  # all but the header page
    (folder / "r.sqlite").write_bytes(bytes(data))
    return folder / "r.sqlite"


def _not_sqlite(folder: Path, done: Path) -> Path:
    (folder / "r.sqlite").write_text("results: see the spreadsheet")
    return folder / "r.sqlite"


def _mistyped(folder: Path, done: Path) -> Path:
    return folder / "resluts.sqlite"


def _read_only_file(folder: Path, done: Path) -> Path:
    shutil.copy(done, folder / "r.sqlite")
    (folder / "r.sqlite").chmod(0o444)
    return folder / "r.sqlite"


def _new_in_read_only_folder(folder: Path, done: Path) -> Path:
    folder.chmod(0o555)
    return folder / "r.sqlite"


def _writable_file_in_read_only_folder(folder: Path, done: Path) -> Path:
    """A run stopped after 2 of its 4 pairs: a run has work to do, and writes."""
    shutil.copy(done, folder / "r.sqlite")
    with sqlite3.connect(folder / "r.sqlite") as conn:
        kept = conn.execute("SELECT DISTINCT image_id, class_index FROM results LIMIT 2").fetchall()
        conn.execute(
            "DELETE FROM results WHERE (image_id, class_index) NOT IN (VALUES (?, ?), (?, ?))",
            [v for pair in kept for v in pair],
        )
    conn.close()
    folder.chmod(0o555)
    return folder / "r.sqlite"


def _hot_journal(folder: Path, done: Path) -> Path:
    """The files a run leaves when it is killed inside a transaction: the database with some
    uncommitted pages written, and the journal (``-journal``) that can undo them."""
    shutil.copy(done, folder / "live.sqlite")
    conn = sqlite3.connect(folder / "live.sqlite", isolation_level=None)
    conn.execute("PRAGMA cache_size=1")  # uncommitted pages go to the file early
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM results")
    conn.executemany(
        "INSERT INTO results VALUES (?, ?, 0, 'c', 'm', 'x', 1.0, 1.0, 1.0)",
        [("cfg", f"image {i}") for i in range(3000)],
    )
    for name in ("live.sqlite", "live.sqlite-journal"):
        shutil.copy(folder / name, folder / name.replace("live", "r"))  # the state at a kill
    conn.execute("ROLLBACK")
    conn.close()
    (folder / "live.sqlite").unlink()
    assert (folder / "r.sqlite-journal").stat().st_size > 0
    return folder / "r.sqlite"


def _hot_journal_read_only(folder: Path, done: Path) -> Path:
    db = _hot_journal(folder, done)
    db.chmod(0o444)
    folder.chmod(0o555)
    return db


@pytest.mark.parametrize(
    ("make_db", "report_only", "code", "message"),
    [
        (_damaged, False, 2, "is damaged or not a SQLite database (malformed"),
        (_damaged, True, 2, "is damaged or not a SQLite database (malformed"),
        (_not_sqlite, False, 2, "is damaged or not a SQLite database (file is not a database)"),
        (_not_sqlite, True, 2, "is damaged or not a SQLite database (file is not a database)"),
        (_mistyped, True, 2, "no results database '{db}': --report-only reads the database of"),
        (_read_only_file, False, 2, "the results database '{db}' is read-only"),
        (_read_only_file, True, 0, "| Pairs | 4 |"),
        (_new_in_read_only_folder, False, 2, "the folder '{folder}' is not writable"),
        (_writable_file_in_read_only_folder, False, 2, "the folder '{folder}' is not writable"),
        (_writable_file_in_read_only_folder, True, 0, "aggregated over the 2 of 4 pairs"),
        (_hot_journal_read_only, True, 2, "holds an unfinished write of a stopped run"),
    ],
)
def test_bad_benchmark_databases(
    bench_root, monkeypatch, capsys, make_db, report_only, code, message
):
    """Refused before the dataset or the model is loaded, nothing created or changed; with
    --report-only a database that can be read gives its table and is not written."""
    from sise.eval.benchmark import run as running

    folder = bench_root / f"{make_db.__name__.strip('_')}-{'report' if report_only else 'run'}"
    folder.mkdir(mode=0o755)
    db = make_db(folder, bench_root / "done.sqlite")
    if os.geteuid() == 0:  # the case's files are the user's (nobody's, see _without_write_access)
        for path in [folder, *folder.iterdir()]:
            os.chown(path, 65534, 65534)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    loaded = []
    real_load = running._load
    monkeypatch.setattr(running, "_load", lambda *a: loaded.append(1) or real_load(*a))
    argv = [*BENCHMARK, "--dataset", f"synthetic:{bench_root / 'data'}", "--db", str(db)]
    with _without_write_access():
        assert main([*argv, "--report-only"] if report_only else argv) == code
    captured = capsys.readouterr()
    if code == 2:
        assert captured.err.startswith("sise: error: ") and captured.err.count("\n") == 1
        assert message.format(db=db, folder=folder) in captured.err
        assert not loaded  # before any work
    else:
        assert message in captured.out
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_metrics_help_says_which_are_the_default(capsys):
    from sise.eval.benchmark.scoring import DEFAULT_METRICS, METRICS

    with pytest.raises(SystemExit):
        main(["benchmark", "--help"])
    printed = " ".join(capsys.readouterr().out.split())
    assert "(default: all)" not in printed  # the opt-in metrics are left out by default
    optional = [m for m in METRICS if m not in DEFAULT_METRICS]
    assert {"pointing_all", "pointing_difficult", "road", "adcc"} <= set(optional)
    assert f"(default: {', '.join(DEFAULT_METRICS)}; opt-in, computed only when named: " in printed
    assert f"{', '.join(optional)})" in printed


def test_report_only_rolls_back_what_a_killed_run_left_unfinished(bench_root, capsys):
    """The one write --report-only makes: SQLite's own roll-back of a transaction a killed run
    left, without which nothing can read the file (the next run would make it too)."""
    folder = bench_root / "hot-journal"
    folder.mkdir()
    db = _hot_journal(folder, bench_root / "done.sqlite")
    argv = [*BENCHMARK, "--dataset", f"synthetic:{bench_root / 'data'}", "--db", str(db)]
    assert main([*argv, "--report-only"]) == 0
    captured = capsys.readouterr()
    assert "rolled back the unfinished write" in captured.err and "| Pairs | 4 |" in captured.out
    assert sorted(p.name for p in folder.iterdir()) == ["r.sqlite"]
