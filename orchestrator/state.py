"""The laptop's memory of runs, pods and phases: SQLite at $PODTUNE_HOME/state.db (WAL).

Everything `podtune logs/status/stop/costs` needs to re-attach from another terminal is here. No secret is ever
written to it. Schema changes are new migration functions; old ones are never edited.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .paths import state_db_path
from .providers.base import PodState
from .secrets import redact

class RunStatus(str, Enum):
    """A run's status in the state DB (the value is what the DB holds)."""

    PROVISIONING = "provisioning"
    RUNNING = "running"
    DETACHED = "detached"  # running on its pod with no podtune attached
    ENDED = "ended"  # its pod stopped with nobody attached; how the run ended is on the volume
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return str(self.value)


class Unset(Enum):
    """A field update_run leaves as it is (None is a value: it clears the field)."""

    UNSET = "unset"


UNSET = Unset.UNSET

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []
migration = MIGRATIONS.append


@migration
def m001_runs_pods_phases(db: sqlite3.Connection) -> None:
    db.executescript(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            recipe_name TEXT NOT NULL,
            recipe_path TEXT NOT NULL,
            provider TEXT NOT NULL,
            pod_id TEXT,
            status TEXT NOT NULL,          -- planned, running, detached, succeeded, failed, stopped
            phase TEXT,
            remote_dir TEXT,
            created_at REAL NOT NULL,
            ended_at REAL,
            events_offset INTEGER NOT NULL DEFAULT 0,
            message TEXT,
            estimate_json TEXT,
            summary_json TEXT
        );
        CREATE TABLE phases (
            run_id TEXT NOT NULL REFERENCES runs(id),
            phase TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL,
            ok INTEGER,
            PRIMARY KEY (run_id, phase)
        );
        CREATE TABLE pods (
            id TEXT PRIMARY KEY,
            provider TEXT NOT NULL,
            name TEXT NOT NULL,
            recipe_name TEXT,
            gpu_type TEXT,
            gpu_count INTEGER NOT NULL DEFAULT 1,
            cost_per_hr REAL NOT NULL DEFAULT 0,
            storage_per_hr REAL NOT NULL DEFAULT 0,
            volume_gb INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            terminated_at REAL,
            spec_json TEXT
        );
        -- Every interval a pod was billed for GPU time, as seen from the laptop.
        CREATE TABLE pod_intervals (
            pod_id TEXT NOT NULL REFERENCES pods(id),
            started_at REAL NOT NULL,
            ended_at REAL
        );
        """
    )


@dataclass
class RunRecord:
    id: str
    recipe_name: str
    recipe_path: str
    provider: str
    status: RunStatus
    created_at: float
    pod_id: str | None = None
    phase: str | None = None
    remote_dir: str | None = None
    ended_at: float | None = None
    events_offset: int = 0
    message: str | None = None
    estimate: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None


@dataclass
class PodRecord:
    id: str
    provider: str
    name: str
    status: PodState
    created_at: float
    recipe_name: str | None = None
    gpu_type: str | None = None
    gpu_count: int = 1
    cost_per_hr: float = 0.0
    storage_per_hr: float = 0.0
    volume_gb: int = 0
    terminated_at: float | None = None
    spec: dict[str, Any] = field(default_factory=dict)


class State:
    def __init__(self, path: Path | str | None = None):
        self.path = str(path or state_db_path())
        if self.path != ":memory:":
            _private_file(Path(self.path))
        self.db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        migrate(self.db)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # runs ------------------------------------------------------------------------------------------------
    def add_run(self, run: RunRecord) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO runs (id, recipe_name, recipe_path, provider, pod_id, status, phase, remote_dir,"
                " created_at, estimate_json) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (run.id, run.recipe_name, run.recipe_path, run.provider, run.pod_id, run.status, run.phase,
                 run.remote_dir, run.created_at, _dump(run.estimate)),
            )

    def update_run(self, run_id: str, *, status: RunStatus | Unset = UNSET, pod_id: str | None | Unset = UNSET,
                   remote_dir: str | None | Unset = UNSET, ended_at: float | None | Unset = UNSET,
                   events_offset: int | Unset = UNSET, message: str | None | Unset = UNSET,
                   summary: dict[str, Any] | None | Unset = UNSET) -> None:
        """Set the given fields of a run; a field left out keeps its value (None clears one)."""
        if isinstance(message, str) and message:
            message = redact(message)  # errors may quote a token; the DB never holds one
        columns: dict[str, Any] = {
            "status": status, "pod_id": pod_id, "remote_dir": remote_dir, "ended_at": ended_at,
            "events_offset": events_offset, "message": message,
            "summary_json": summary if isinstance(summary, Unset) else _dump(summary),
        }
        sets, values = [], []
        for column, value in columns.items():
            if not isinstance(value, Unset):
                sets.append(f"{column} = ?")
                values.append(value)
        if not sets:
            return
        with self.tx() as db:
            db.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*values, run_id))

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run(row) if row else None

    def latest_run(self) -> RunRecord | None:
        row = self.db.execute("SELECT * FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
        return _run(row) if row else None

    def list_runs(self, limit: int = 100) -> list[RunRecord]:
        rows = self.db.execute("SELECT * FROM runs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,))
        return [_run(row) for row in rows]

    def run_ids_like(self, prefix: str) -> list[str]:
        rows = self.db.execute("SELECT id FROM runs WHERE id LIKE ? ORDER BY created_at DESC", (prefix + "%",))
        return [row["id"] for row in rows]

    # phases ----------------------------------------------------------------------------------------------
    def phase_started(self, run_id: str, phase: str, at: float | None = None) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO phases (run_id, phase, started_at) VALUES (?,?,?)"
                " ON CONFLICT(run_id, phase) DO UPDATE SET started_at = excluded.started_at, ended_at = NULL, ok = NULL",
                (run_id, phase, at or time.time()),
            )
            db.execute("UPDATE runs SET phase = ? WHERE id = ?", (phase, run_id))

    def phase_ended(self, run_id: str, phase: str, ok: bool = True, at: float | None = None) -> None:
        at = at or time.time()
        with self.tx() as db:
            db.execute(
                "INSERT INTO phases (run_id, phase, started_at, ended_at, ok) VALUES (?,?,?,?,?)"
                " ON CONFLICT(run_id, phase) DO UPDATE SET ended_at = excluded.ended_at, ok = excluded.ok",
                (run_id, phase, at, at, int(ok)),
            )

    def phases(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM phases WHERE run_id = ? ORDER BY started_at, rowid", (run_id,))
        return [dict(row) for row in rows]

    # pods ------------------------------------------------------------------------------------------------
    def upsert_pod(self, pod: PodRecord) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO pods (id, provider, name, recipe_name, gpu_type, gpu_count, cost_per_hr, storage_per_hr,"
                " volume_gb, status, created_at, terminated_at, spec_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET status = excluded.status, gpu_type = excluded.gpu_type,"
                " cost_per_hr = excluded.cost_per_hr, terminated_at = excluded.terminated_at",
                (pod.id, pod.provider, pod.name, pod.recipe_name, pod.gpu_type, pod.gpu_count, pod.cost_per_hr,
                 pod.storage_per_hr, pod.volume_gb, pod.status, pod.created_at, pod.terminated_at, _dump(pod.spec)),
            )

    def get_pod(self, pod_id: str) -> PodRecord | None:
        row = self.db.execute("SELECT * FROM pods WHERE id = ?", (pod_id,)).fetchone()
        return _pod(row) if row else None

    def list_pods(self) -> list[PodRecord]:
        return [_pod(row) for row in self.db.execute("SELECT * FROM pods ORDER BY created_at")]

    def set_pod_status(self, pod_id: str, status: PodState, at: float | None = None) -> None:
        """Record a status change and open/close the GPU-billing interval that goes with it."""
        at = at or time.time()
        with self.tx() as db:
            open_row = db.execute(
                "SELECT rowid FROM pod_intervals WHERE pod_id = ? AND ended_at IS NULL", (pod_id,)
            ).fetchone()
            if status == PodState.RUNNING and open_row is None:
                db.execute("INSERT INTO pod_intervals (pod_id, started_at) VALUES (?, ?)", (pod_id, at))
            elif status != PodState.RUNNING and open_row is not None:
                db.execute("UPDATE pod_intervals SET ended_at = ? WHERE rowid = ?", (at, open_row["rowid"]))
            terminated = at if status == PodState.TERMINATED else None
            db.execute(
                "UPDATE pods SET status = ?, terminated_at = COALESCE(terminated_at, ?) WHERE id = ?",
                (status, terminated, pod_id),
            )

    def correct_interval_end(self, pod_id: str, started_at: float, ended_at: float) -> None:
        """Set when a billed interval really ended, learnt later (a pod that stopped itself with no laptop)."""
        with self.tx() as db:
            db.execute("UPDATE pod_intervals SET ended_at = ? WHERE pod_id = ? AND started_at = ?",
                       (max(ended_at, started_at), pod_id, started_at))

    def pod_intervals(self, pod_id: str) -> list[tuple[float, float | None]]:
        rows = self.db.execute(
            "SELECT started_at, ended_at FROM pod_intervals WHERE pod_id = ? ORDER BY started_at", (pod_id,)
        )
        return [(row["started_at"], row["ended_at"]) for row in rows]


def _private_file(path: Path) -> None:
    """state.db is 0600 from its first byte (SQLite gives its -wal and -shm files the same mode)."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def migrate(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS _podtune_migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    done = {row[0] for row in db.execute("SELECT name FROM _podtune_migrations")}
    for step in MIGRATIONS:
        if step.__name__ not in done:
            step(db)
            db.execute("INSERT INTO _podtune_migrations VALUES (?, ?)", (step.__name__, time.time()))


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _run(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        id=row["id"], recipe_name=row["recipe_name"], recipe_path=row["recipe_path"], provider=row["provider"],
        status=RunStatus(row["status"]), created_at=row["created_at"], pod_id=row["pod_id"], phase=row["phase"],
        remote_dir=row["remote_dir"], ended_at=row["ended_at"], events_offset=row["events_offset"],
        message=row["message"], estimate=_load(row["estimate_json"]), summary=_load(row["summary_json"]),
    )


def _pod(row: sqlite3.Row) -> PodRecord:
    return PodRecord(
        id=row["id"], provider=row["provider"], name=row["name"], status=PodState(row["status"]),
        created_at=row["created_at"], recipe_name=row["recipe_name"], gpu_type=row["gpu_type"], gpu_count=row["gpu_count"],
        cost_per_hr=row["cost_per_hr"], storage_per_hr=row["storage_per_hr"], volume_gb=row["volume_gb"],
        terminated_at=row["terminated_at"], spec=_load(row["spec_json"]) or {},
    )
