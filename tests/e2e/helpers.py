"""Shared helpers for end-to-end tests: run the real `podtune` script, poll run files with deadlines."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.conftest import REPO, env_without_secrets
from tests.recipes import write_recipe_variant


def podtune(*args: str, home: Path, timeout: float = 240, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    import sys

    full_env = env_without_secrets(PODTUNE_HOME=str(home), COLUMNS="200")
    full_env.update(env or {})
    out = subprocess.run([str(Path(sys.executable).parent / "podtune"), *args], capture_output=True, text=True,
                         timeout=timeout, env=full_env, cwd=REPO)
    if check and out.returncode != 0:
        raise AssertionError(f"podtune {' '.join(args)} exited {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


def copy_tiny_data(folder: Path) -> None:
    """The shipped data beside a test's recipe: a recipe may only name data in its own folder."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "recipes" / "data" / "tiny-instructions.jsonl", folder / "data" / "tiny-instructions.jsonl")


def long_recipe(tmp_path: Path, steps: int = 3000, changes: Mapping[str, Any] | None = None) -> Path:
    """tiny-cpu with many steps (for stop/detach tests), its data copied beside it, with `changes` on top."""
    copy_tiny_data(tmp_path)
    return write_recipe_variant(tmp_path / "long.yaml",
                                {"training.max_steps": steps, "training.save_steps": 1000, **(changes or {})})


def runs_in(home: Path) -> list[tuple[str, str, str | None]]:
    """(id, status, pod_id) of every run in the state DB, oldest first; none while podtune has not created it."""
    if not (home / "state.db").exists():
        return []
    with closing(sqlite3.connect(home / "state.db")) as db:  # closed: no WAL file comes and goes under a scan
        try:
            return db.execute("SELECT id, status, pod_id FROM runs ORDER BY created_at, rowid").fetchall()
        except sqlite3.OperationalError:  # the file exists before its tables do
            return []


def wait_for(check, timeout: float, what: str, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            if text in cmdline and process_alive(int(entry.name)):
                found.append(int(entry.name))
    return found
