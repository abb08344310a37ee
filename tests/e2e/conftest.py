"""Fixtures for end-to-end runs against the RunPod emulator (real sshd pods) and a plain sshd host."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.doubles.runpod_emulator import RunPodEmulator
from tests.e2e.helpers import copy_tiny_data

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


def runpod_recipe(tmp_path: Path, *, steps: int = 30, extra: str = "") -> Path:
    text = (REPO / "recipes" / "tiny-cpu.yaml").read_text()
    copy_tiny_data(tmp_path)
    text = text.replace("max_steps: 30", f"max_steps: {steps}")
    text = text.replace("  provider: local\n", '  provider: runpod\n  gpu_types: ["NVIDIA GeForce RTX 3090"]\n' + extra)
    path = tmp_path / f"tiny-runpod-{steps}.yaml"
    path.write_text(text)
    return path
