"""Benchmark results in SQLite: one row per (image, class, method, metric), written per pair.

Layout:

* ``configs(config_id, config)``: the run configuration of one method as canonical JSON
  (dataset, model, explained score, metric settings, the method and its options); ``config_id``
  is a hash of that JSON, so the same settings always map to the same id.
* ``results(config_id, image_id, class_index, class_name, method, metric, value, seconds,
  created)``: ``seconds`` is the time the method took to explain the pair (the same in each of
  that pair's metric rows); primary key ``(config_id, image_id, class_index, method, metric)``.
  A metric that does not apply to a pair (distractor energy in an image without other classes)
  has no row for it.
* ``maps(config_id, image_id, class_index, method, height, width, data, seconds)``: the
  explanation maps of the few pairs shown in the example figure (float16 bytes).
* ``results_with_config``: a view joining each result to its configuration JSON.

Durability: every pair's rows go in one transaction (:meth:`ResultStore.write_pair`), so a run
killed at any moment, even by ``kill -9``, loses at most the pair it was computing, and a
restart skips what is complete (:meth:`ResultStore.completed`). In a distributed run each rank
writes its own file and rank 0 merges them (:meth:`ResultStore.merge_from`): SQLite files are
never written by two processes at once.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from sise.errors import SiseError
from sise.eval.benchmark.store_files import check_writable, connect_read_only, trouble
from sise.eval.digest import digest

__all__ = ["MapRow", "ResultRow", "ResultStore", "check_writable", "config_id"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS configs (
    config_id TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    config_id TEXT NOT NULL,
    image_id TEXT NOT NULL,
    class_index INTEGER NOT NULL,
    class_name TEXT NOT NULL,
    method TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    seconds REAL NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (config_id, image_id, class_index, method, metric)
);
CREATE TABLE IF NOT EXISTS maps (
    config_id TEXT NOT NULL,
    image_id TEXT NOT NULL,
    class_index INTEGER NOT NULL,
    method TEXT NOT NULL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    data BLOB NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (config_id, image_id, class_index, method)
);
CREATE VIEW IF NOT EXISTS results_with_config AS
    SELECT results.*, configs.config FROM results JOIN configs USING (config_id);
"""


def canonical_json(config: dict[str, object]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def config_id(config: dict[str, object]) -> str:
    """A short, stable hash of a configuration (its canonical JSON)."""
    return digest([canonical_json(config).encode()])[:16]


@dataclass(frozen=True)
class ResultRow:
    """One metric value of one method on one (image, class) pair."""

    config_id: str
    image_id: str
    class_index: int
    class_name: str
    method: str
    metric: str
    value: float
    seconds: float


@dataclass(frozen=True)
class MapRow:
    """An explanation map kept for the example figure."""

    config_id: str
    image_id: str
    class_index: int
    method: str
    map: np.ndarray  # (H, W) float in [0, 1]
    seconds: float


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _sqlite_errors(method: _Method) -> _Method:
    """SQLite's errors in a :class:`ResultStore` method as a :class:`SiseError` that names the
    file and says what to do (a damaged page can be met at any query, not only at opening)."""

    @functools.wraps(method)
    def wrapped(self: ResultStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as error:
            raise SiseError(trouble(self.path, error)) from error

    return cast(_Method, wrapped)


class ResultStore:
    """A benchmark results database (see the module docstring).

    Args:
        path: the SQLite file; created with its folder if absent (not when ``read_only``).
        timeout: seconds to wait for a lock held by another connection.
        read_only: open it for reading only (``--report-only``): nothing is created or written,
            and a file that does not exist is an error.
    """

    def __init__(self, path: str | Path, *, timeout: float = 60.0, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if self.path.is_dir():
            raise SiseError(f"--db {str(self.path)!r} is a folder: give a file name")
        if read_only:
            if not self.path.is_file():
                raise SiseError(
                    f"no results database {str(self.path)!r}: --report-only reads the database "
                    "of an earlier run; check --db (nothing was created)"
                )
        else:
            check_writable(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if read_only:
                self._conn = connect_read_only(self.path, timeout)
            else:
                self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
                self._conn.execute("PRAGMA synchronous=FULL")
                self._conn.executescript(_SCHEMA)
            tables = {
                name
                for (name,) in self._conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
        except sqlite3.DatabaseError as error:
            raise SiseError(trouble(self.path, error)) from error
        if read_only and not {"configs", "results", "maps"} <= tables:
            self._conn.close()
            raise SiseError(
                f"{str(self.path)!r} holds no benchmark results: check --db, or run the "
                "benchmark without --report-only first"
            )

    def check(self) -> None:
        """Read every page of the file (SQLite's ``quick_check``): a damaged database is
        reported before any work, not after hours of it."""
        try:
            found = [row[0] for row in self._conn.execute("PRAGMA quick_check(1)")]
        except sqlite3.DatabaseError as error:
            raise SiseError(trouble(self.path, error)) from error
        if found != ["ok"]:
            first = " ".join(found[0].replace("*** in database main ***", "").split())
            raise SiseError(trouble(self.path, sqlite3.DatabaseError(f"malformed: {first}")))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def _commit(self, ok: bool) -> None:
        self._conn.execute("COMMIT" if ok else "ROLLBACK")

    @_sqlite_errors
    def register_config(self, config: dict[str, object]) -> str:
        """Store a configuration, return its id."""
        cid = config_id(config)
        self._conn.execute(
            "INSERT OR IGNORE INTO configs (config_id, config) VALUES (?, ?)",
            (cid, canonical_json(config)),
        )
        return cid

    @_sqlite_errors
    def write_pair(
        self,
        rows: Sequence[ResultRow],
        maps: Sequence[MapRow] = (),
        configs: Iterable[dict[str, object]] = (),
    ) -> None:
        """Write one pair's rows (and maps, and the configurations they use) atomically."""
        now = time.time()
        conn = self._transaction()
        ok = False
        try:
            for config in configs:
                conn.execute(
                    "INSERT OR IGNORE INTO configs (config_id, config) VALUES (?, ?)",
                    (config_id(config), canonical_json(config)),
                )
            conn.executemany(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.config_id,
                        r.image_id,
                        r.class_index,
                        r.class_name,
                        r.method,
                        r.metric,
                        float(r.value),
                        float(r.seconds),
                        now,
                    )
                    for r in rows
                ],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO maps VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        m.config_id,
                        m.image_id,
                        m.class_index,
                        m.method,
                        int(m.map.shape[0]),
                        int(m.map.shape[1]),
                        np.ascontiguousarray(m.map, dtype=np.float16).tobytes(),
                        float(m.seconds),
                    )
                    for m in maps
                ],
            )
            ok = True
        finally:
            self._commit(ok)

    @_sqlite_errors
    def completed(
        self,
        config_ids: dict[str, str],
        metrics: Sequence[str] | Mapping[tuple[str, int], Collection[str]],
    ) -> set[tuple[str, int, str]]:
        """``(image_id, class_index, method)`` triples whose required metrics are all stored
        under the method's configuration (``config_ids``: method → config id).

        ``metrics``: the metrics every pair needs, or per ``(image_id, class_index)`` the metrics
        that pair needs (a metric may not apply to every pair); a pair missing from the mapping
        is never complete.
        """
        found: dict[tuple[str, int, str], set[str]] = {}
        for method, cid in config_ids.items():
            cursor = self._conn.execute(
                "SELECT image_id, class_index, metric FROM results WHERE config_id = ?", (cid,)
            )
            for image_id, class_index, metric in cursor:
                found.setdefault((image_id, int(class_index), method), set()).add(metric)
        if isinstance(metrics, Mapping):
            return {
                key
                for key, have in found.items()
                if key[:2] in metrics and set(metrics[key[:2]]) <= have
            }
        wanted = set(metrics)
        return {key for key, have in found.items() if wanted <= have}

    @_sqlite_errors
    def rows(self, config_ids: dict[str, str]) -> list[ResultRow]:
        """Every result row of the given configurations (method → config id)."""
        out: list[ResultRow] = []
        for cid in dict.fromkeys(config_ids.values()):
            cursor = self._conn.execute(
                "SELECT config_id, image_id, class_index, class_name, method, metric, value, "
                "seconds FROM results WHERE config_id = ? ORDER BY image_id, class_index, method, "
                "metric",
                (cid,),
            )
            out.extend(
                ResultRow(c, i, int(k), n, m, metric, float(v), float(s))
                for c, i, k, n, m, metric, v, s in cursor
            )
        return out

    @_sqlite_errors
    def maps(
        self, config_ids: dict[str, str]
    ) -> dict[tuple[str, int, str], tuple[np.ndarray, float]]:
        """Stored example maps: ``(image_id, class_index, method) → (map, seconds)``."""
        out: dict[tuple[str, int, str], tuple[np.ndarray, float]] = {}
        for method, cid in config_ids.items():
            cursor = self._conn.execute(
                "SELECT image_id, class_index, height, width, data, seconds FROM maps "
                "WHERE config_id = ? AND method = ?",
                (cid, method),
            )
            for image_id, class_index, h, w, data, seconds in cursor:
                array = np.frombuffer(data, dtype=np.float16).reshape(h, w).astype(np.float32)
                out[(image_id, int(class_index), method)] = (array, float(seconds))
        return out

    @_sqlite_errors
    def merge_from(self, other: str | Path) -> int:
        """Copy every configuration, result and map of another store into this one (one
        transaction; later rows replace equal keys). Returns the number of result rows copied."""
        other = Path(other)
        if not other.is_file():
            raise SiseError(f"no results file {str(other)!r} to merge")
        self._conn.execute("ATTACH DATABASE ? AS other", (str(other),))
        try:
            conn = self._transaction()
            ok = False
            try:
                tables = {
                    name
                    for (name,) in conn.execute(
                        "SELECT name FROM other.sqlite_master WHERE type = 'table'"
                    )
                }
                if not {"configs", "results", "maps"} <= tables:  # created, never written
                    ok = True
                    return 0
                conn.execute("INSERT OR IGNORE INTO configs SELECT * FROM other.configs")
                copied = conn.execute("INSERT OR REPLACE INTO results SELECT * FROM other.results")
                count = copied.rowcount
                conn.execute("INSERT OR REPLACE INTO maps SELECT * FROM other.maps")
                ok = True
            finally:
                self._commit(ok)
        finally:
            self._conn.execute("DETACH DATABASE other")
        return int(count)
