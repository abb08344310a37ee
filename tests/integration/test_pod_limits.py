"""The pod guards the bill by itself: launched, then the laptop walks away (no follow, no stop from here).

Each test drives the real phase steps (provision, connect, sync, setup, launch) against the RunPod emulator,
then only watches the emulator: the watchdog on the pod must stop training and the pod on its own.
"""

from __future__ import annotations

import io
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from orchestrator.pod.pod_setup import prepare
from orchestrator.providers.runpod import RunPodProvider
from orchestrator.run import Runner, local_data_files
from orchestrator.state import RunRecord, State
from orchestrator.ui import UI
from remote.events import WorkspacePaths
from remote.recipe import load_recipe
from tests.doubles.runpod_emulator import DEFAULT_GPU_TYPES, RunPodEmulator
from tests.e2e.conftest import POD_PATH, runpod_recipe
from tests.e2e.helpers import events

GPU = "NVIDIA GeForce RTX 3090"


def _emulator(tmp_path, *, usd_per_hour: float | None = None, extra_env: dict | None = None) -> RunPodEmulator:
    gpus = [replace(g, secure_price=usd_per_hour, community_price=usd_per_hour) if g.id == GPU and usd_per_hour
            else g for g in DEFAULT_GPU_TYPES]
    return RunPodEmulator(state_dir=tmp_path / "rp", boot_delay_s=0.2, gpu_types=gpus,
                          pod_env_extra={"PATH": POD_PATH, **(extra_env or {})})


def _launch_and_walk_away(emu: RunPodEmulator, recipe_path: Path, monkeypatch) -> tuple[str, Path]:
    monkeypatch.setenv("RUNPOD_API_BASE_URL", emu.url)
    runner = Runner(State(), UI(Console(file=io.StringIO())))
    recipe = load_recipe(recipe_path)
    provider = RunPodProvider(emu.api_key)
    run_id = "guarded-run"
    runner.state.add_run(RunRecord(run_id, recipe.name, str(recipe_path), "runpod", "provisioning", time.time()))
    pod = runner.provision(run_id, recipe, provider, (GPU,))
    transport = runner.connect(provider, pod, 60)
    layout = WorkspacePaths.on_pod(pod.workspace)
    runner.state.update_run(run_id, remote_dir=str(layout.run(run_id).root))
    runner.upload(transport, pod, layout, run_id, recipe, local_data_files(recipe, recipe_path))
    ready = prepare(transport, layout, pod.python)
    runner.launch(transport, provider, pod, layout, run_id, recipe, ready.python, None)
    transport.close()  # the laptop is gone from here on
    return pod.id, WorkspacePaths(emu.pods[pod.id].workspace).run(run_id).root


def test_pod_stops_itself_within_seconds_of_the_work_ending(tmp_path, monkeypatch):
    with _emulator(tmp_path) as emu:
        pod_id, run_dir = _launch_and_walk_away(emu, runpod_recipe(tmp_path), monkeypatch)
        assert emu.wait_status(pod_id, "EXITED", 180), "the pod kept billing after the work ended"
        done = [e for e in events(run_dir / "events.jsonl") if e["kind"] == "pipeline_done"]
        assert done and done[0]["ok"] is True
        stopped_at = emu.pods[pod_id].intervals[-1].end
        assert stopped_at - done[0]["ts"] < 10
        assert (run_dir / "merged" / "model.safetensors").is_file()  # the volume keeps the result


def test_max_usd_stops_training_at_the_limit_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    # $36/h: a quarter of a dollar is 25 s of pod time, enough to be mid-training when the money runs out.
    limit = 0.25
    recipe = runpod_recipe(tmp_path, steps=5000, changes={"compute.max_usd": limit, "training.save_steps": 4000})
    with _emulator(tmp_path, usd_per_hour=36.0) as emu:
        pod_id, run_dir = _launch_and_walk_away(emu, recipe, monkeypatch)
        assert emu.wait_status(pod_id, "EXITED", 120), "max_usd never stopped the pod"
        guard = [e for e in events(run_dir / "events.jsonl") if e["kind"] == "watchdog_stop"]
        assert guard and guard[0]["reason"] == "max_usd"
        assert any(e["kind"] == "step" for e in events(run_dir / "events.jsonl"))
        assert any((run_dir / "checkpoints").glob("checkpoint-*")), "the checkpoint was not kept"
        # Stopped at the limit: what the emulator billed is the limit plus the few seconds a clean stop takes.
        assert limit * 0.95 <= emu.billed_usd(pod_id) <= limit * 1.4


def test_stalled_trainer_is_stopped(tmp_path, monkeypatch):
    recipe = runpod_recipe(tmp_path, steps=500, changes={"compute.stall_minutes": 0.1})
    with _emulator(tmp_path, extra_env={"PODTUNE_TEST_STALL_AT_STEP": "3"}) as emu:
        pod_id, run_dir = _launch_and_walk_away(emu, recipe, monkeypatch)
        assert emu.wait_status(pod_id, "EXITED", 120), "a stalled trainer kept the pod billing"
        guard = [e for e in events(run_dir / "events.jsonl") if e["kind"] == "watchdog_stop"]
        assert guard and guard[0]["reason"] == "stall"
        steps = [e["step"] for e in events(run_dir / "events.jsonl") if e["kind"] == "step"]
        assert 3 <= max(steps) <= 4  # stalled at 3; SIGTERM lets it finish the step in hand and save

