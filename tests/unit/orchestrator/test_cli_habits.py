"""The habits a person expects of a CLI: help without arguments, -h, --version, --json, completion, exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, env_without_secrets


def _podtune(bin_: str, home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([bin_, *args], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=env_without_secrets(PODTUNE_HOME=str(home), COLUMNS="200"))


def test_no_arguments_prints_help_and_exits_0(tmp_path, podtune_bin):
    out = _podtune(podtune_bin, tmp_path)
    assert out.returncode == 0 and "Usage: podtune" in out.stdout and "Commands" in out.stdout
    assert "Exit codes: 0 ok" in out.stdout


@pytest.mark.parametrize("args", [["-h"], ["run", "-h"], ["costs", "-h"]])
def test_dash_h_is_help(tmp_path, podtune_bin, args):
    out = _podtune(podtune_bin, tmp_path, *args)
    assert out.returncode == 0 and "Usage: podtune" in out.stdout


def test_version(tmp_path, podtune_bin):
    from orchestrator import __version__

    out = _podtune(podtune_bin, tmp_path, "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"podtune {__version__}"


def test_shell_completion_script(tmp_path, podtune_bin):
    out = _podtune(podtune_bin, tmp_path, "--show-completion", "bash")
    assert out.returncode == 0 and "_PODTUNE_COMPLETE" in out.stdout


def test_json_outputs_parse_with_no_runs(tmp_path, podtune_bin):
    runs = _podtune(podtune_bin, tmp_path, "runs", "--json")
    assert runs.returncode == 0 and json.loads(runs.stdout) == []
    costs = _podtune(podtune_bin, tmp_path, "costs", "--json")
    assert costs.returncode == 0 and json.loads(costs.stdout)["runs"] == []
    plan = _podtune(podtune_bin, tmp_path, "plan", "recipes/tiny-cpu.yaml", "--json")
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)
    assert data["provider"] == "local" and data["gpu_type"] == "cpu" and data["rents"] is False
    status = _podtune(podtune_bin, tmp_path, "status", "--json")
    assert status.returncode == 1 and status.stdout == "" and "no runs yet" in status.stderr


def test_json_runs_and_status_after_a_run(tmp_path, podtune_bin, monkeypatch):
    from orchestrator.state import RunRecord, State

    monkeypatch.setenv("PODTUNE_HOME", str(tmp_path))
    state = State()
    state.add_run(RunRecord(id="tiny-cpu-1", recipe_name="tiny-cpu", recipe_path="r.yaml", provider="local",
                            status="succeeded", created_at=1.0, ended_at=2.0))
    state.phase_started("tiny-cpu-1", "plan", 1.0)
    state.phase_ended("tiny-cpu-1", "plan")
    runs = json.loads(_podtune(podtune_bin, tmp_path, "runs", "--json").stdout)
    assert [(r["id"], r["status"]) for r in runs] == [("tiny-cpu-1", "succeeded")]
    out = _podtune(podtune_bin, tmp_path, "status", "tiny-cpu-1", "--json")
    status = json.loads(out.stdout)
    assert status["run_id"] == "tiny-cpu-1" and status["status"] == "succeeded"
    assert [p["phase"] for p in status["phases"]] == ["plan"]
