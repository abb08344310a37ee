"""Fixtures for end-to-end runs against the RunPod emulator (real sshd pods) and a plain sshd host."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.doubles.runpod_emulator import RunPodEmulator
from tests.e2e.helpers import copy_tiny_data
from tests.recipes import write_recipe_variant

VENV_BIN = str(Path(sys.executable).parent)
# A RunPod image ships CUDA torch; the emulated pod stands in for it with the test venv first on PATH.
POD_PATH = f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture()
def runpod_emu(tmp_path):
    with RunPodEmulator(state_dir=tmp_path / "runpod", boot_delay_s=0.3, pod_env_extra={"PATH": POD_PATH}) as emu:
        yield emu
        # REST v2 only, inside RunPod's published contract, in both directions.
        assert emu.graphql_requests == [], "podtune sent a GraphQL request"
        assert emu.request_violations == [] and emu.contract_violations == []


def runpod_env(emu: RunPodEmulator) -> dict[str, str]:
    return {"RUNPOD_API_KEY": emu.api_key, "RUNPOD_API_BASE_URL": emu.url}


def runpod_recipe(tmp_path: Path, *, steps: int = 30, changes: Mapping[str, Any] | None = None) -> Path:
    """tiny-cpu on the emulator's RTX 3090 for `steps` steps, its data copied beside it, with `changes` on top."""
    copy_tiny_data(tmp_path)
    return write_recipe_variant(tmp_path / f"tiny-runpod-{steps}.yaml", {
        "training.max_steps": steps, "compute.provider": "runpod", "compute.gpu_types": ["NVIDIA GeForce RTX 3090"],
        **(changes or {})})
