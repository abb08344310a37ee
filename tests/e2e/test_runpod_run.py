"""`podtune run --provider runpod` against the RunPod REST v2 emulator: a real sshd pod, RunPod's own contract."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, env_without_secrets
from tests.e2e.conftest import runpod_env, runpod_recipe
from tests.e2e.helpers import events, podtune, runs_in, wait_for


def test_runpod_run_end_to_end_then_warm_rerun(tmp_path, runpod_emu):
    """The README's default recipe, rented on RunPod: cheapest secure GPU in stock, v2 only, then a warm re-run."""
    home = tmp_path / "home"
    recipe = REPO / "recipes" / "tiny-cpu.yaml"
    args = ("run", str(recipe), "--provider", "runpod", "--yes")
    first = podtune(*args, home=home, env=runpod_env(runpod_emu), timeout=300)

    (run_id, status, pod_id), = runs_in(home)
    assert status == "succeeded"
    pod = runpod_emu.pods[pod_id]
    cheapest = min(runpod_emu.gpu_types, key=lambda g: g.secure_price or 1e9)
    assert (pod.volume_in_gb, pod.volume_mount_path, pod.gpu_type_id) == (50, "/workspace", cheapest.id)
    assert "cloud: secure" in first.stdout
    assert "PUBLIC_KEY" in pod.env and not any("hf_" in v for v in pod.env.values())
    run_dir = pod.workspace / "runs" / run_id
    assert (run_dir / "merged" / "model.safetensors").is_file()
    assert (pod.workspace / "hf").is_dir()  # HF_HOME on the volume
    assert runpod_emu.wait_status(pod_id, "EXITED", 10)
    assert "train" in first.stdout and "loss" in first.stdout
    # The report's metered GPU cost matches what the emulator billed, within 2 %.
    summary = json.loads((home / "runs" / run_id / "summary.json").read_text())
    billed_gpu = sum(i.seconds(time.time()) * i.cost_per_hr / 3600 for i in pod.intervals)
    assert billed_gpu > 0 and abs(summary["cost"]["gpu_usd"] - billed_gpu) <= 0.02 * billed_gpu, (summary["cost"], billed_gpu)
    assert summary["cost"]["storage_usd"] > 0

    second = podtune(*args, home=home, env=runpod_env(runpod_emu), timeout=300)
    assert "resumed stopped pod" in second.stdout
    assert "synced: 0 file(s) uploaded" in second.stdout
    runs = runs_in(home)
    assert len(runs) == 2 and runs[1][1] == "succeeded" and runs[1][2] == pod_id  # same pod, same volume
    assert len(runpod_emu.pods) == 1
    assert runpod_emu.wait_status(pod_id, "EXITED", 10)

    # RunPod's own bill (GET /v2/billing/pods) beside podtune's meter: one pod, both runs, a small difference.
    (row,) = json.loads(podtune("costs", "--reconcile", "--json", home=home, env=runpod_env(runpod_emu)).stdout)
    assert row["pod_id"] == pod_id and row["runs"] == [runs[0][0], runs[1][0]]
    assert row["provider_usd"] == pytest.approx(runpod_emu.billed_usd(pod_id), rel=0.02)
    assert abs(row["difference_usd"]) <= 0.05 * row["provider_usd"], row
    shown = podtune("costs", "--reconcile", home=home, env=runpod_env(runpod_emu)).stdout
    assert pod_id in shown and "provider $" in shown


def test_laptop_killed_mid_training_then_reattach(tmp_path, runpod_emu):
    home = tmp_path / "home"
    recipe = runpod_recipe(tmp_path, steps=150)
    env = env_without_secrets(PODTUNE_HOME=str(home), COLUMNS="200", **runpod_env(runpod_emu))
    laptop = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "podtune"), "run", str(recipe), "--yes"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: runs_in(home), 60, "the run record")
        (run_id, _, _), = wait_for(lambda: [r for r in runs_in(home) if r[2]], 60, "a pod")
        pod_id = runs_in(home)[0][2]
        run_dir = runpod_emu.pods[pod_id].workspace / "runs" / run_id
        wait_for(lambda: sum(e["kind"] == "step" for e in events(run_dir / "events.jsonl")) >= 3, 120, "steps")
        laptop.send_signal(signal.SIGKILL)  # the laptop dies without a word
        laptop.wait(10)
    finally:
        if laptop.poll() is None:
            laptop.kill()

    status = podtune("status", run_id, home=home, env=runpod_env(runpod_emu)).stdout
    assert "state: running" in status and f"{pod_id} (RUNNING)" in status and f"podtune logs -f {run_id}" in status
    attached = podtune("attach", run_id, home=home, env=runpod_env(runpod_emu), timeout=300)
    assert "train done" in attached.stdout
    evs = events(run_dir / "events.jsonl")
    assert sum(e["kind"] == "pipeline_start" for e in evs) == 1  # never restarted: never interrupted
    steps = [e["step"] for e in evs if e["kind"] == "step"]
    assert steps == list(range(1, 151))
    assert runs_in(home)[0][1] == "succeeded"
    assert runpod_emu.wait_status(pod_id, "EXITED", 10)
