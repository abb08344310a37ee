"""Where podtune keeps its own files on the laptop (`PODTUNE_HOME` overrides ~/.podtune)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WARM_SCRIPT = REPO_ROOT / "remote" / "warm.py"  # sent to the pod as is: the pod's Python started ahead of the job


def podtune_home() -> Path:
    home = Path(os.environ.get("PODTUNE_HOME") or Path.home() / ".podtune")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Pinned host keys, podtune's SSH key and the run history: nobody else on this machine reads or plants them.
    if home.stat().st_mode & 0o077:
        home.chmod(0o700)
    return home


def state_db_path() -> Path:
    return podtune_home() / "state.db"


def local_run_dir(run_id: str) -> Path:
    path = podtune_home() / "runs" / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def known_hosts_path() -> Path:
    return podtune_home() / "known_hosts"


def ssh_key_path() -> Path:
    """podtune's own key pair, put into pods it rents (the public half travels as PUBLIC_KEY)."""
    return podtune_home() / "id_ed25519"
