"""Every test gets its own PODTUNE_HOME and HF_HOME, and never sees the developer's real tokens."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SECRET_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "RUNPOD_API_KEY", "WANDB_API_KEY", "RUNPOD_API_BASE_URL")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "podtune-home"
    monkeypatch.setenv("PODTUNE_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-laptop"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    # The local provider's plan would measure this CPU in every fresh home (~10 s each): the table's entry instead.
    # tests/unit/orchestrator/planning/test_calibrate.py turns it back on where the probe itself is under test.
    monkeypatch.setenv("PODTUNE_CPU_PROBE", "off")
    for name in SECRET_VARS:
        monkeypatch.delenv(name, raising=False)
    # orchestrator.secrets caches a redactor built from the environment; each test starts clean.
    import orchestrator.secrets as secrets

    monkeypatch.setattr(secrets, "_REDACTOR", None)
    return home


@pytest.fixture(scope="session")
def podtune_bin() -> str:
    """The installed console script (a real subprocess, as a user runs it)."""
    candidate = Path(sys.executable).parent / "podtune"
    return str(candidate)


def env_without_secrets(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    env.update(extra)
    return env
