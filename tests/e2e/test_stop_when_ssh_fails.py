"""`podtune stop` stops the pod through the provider even when SSH to it fails: the pod must not keep billing."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

from rich.console import Console

from orchestrator.paths import known_hosts_path
from orchestrator.providers.runpod import RunPodProvider
from orchestrator.run import Runner
from orchestrator.state import RunRecord, State
from orchestrator.ui import UI
from remote.events import WorkspacePaths
from remote.recipe import load_recipe
from tests.doubles.sshd import generate_keypair
from tests.e2e.conftest import runpod_env, runpod_recipe
from tests.e2e.helpers import podtune

GPU = "NVIDIA GeForce RTX 3090"


def _running_pod_with_a_run(emu, tmp_path, monkeypatch) -> tuple[str, str]:
    monkeypatch.setenv("RUNPOD_API_BASE_URL", emu.url)
    recipe_path = runpod_recipe(tmp_path)
    recipe = load_recipe(recipe_path)
    runner = Runner(State(), UI(Console(file=io.StringIO())))
    run_id = "stop-me"
    runner.state.add_run(RunRecord(run_id, recipe.name, str(recipe_path), "runpod", "running", time.time()))
    provider = RunPodProvider(emu.api_key)
    pod = runner.provision(run_id, recipe, provider, (GPU,))
    runner.connect(provider, pod, 60).close()  # first contact: the host key is pinned
    run_dir = WorkspacePaths.on_pod(pod.workspace).run(run_id).root
    runner.state.update_run(run_id, remote_dir=str(run_dir), status="running")
    return run_id, pod.id


def test_stop_stops_the_pod_when_its_host_key_changed(tmp_path, runpod_emu, monkeypatch):
    run_id, pod_id = _running_pod_with_a_run(runpod_emu, tmp_path, monkeypatch)
    # Someone else answers on the pod's address now: every pinned key is replaced by a stranger's.
    stranger = " ".join(generate_keypair(tmp_path / "stranger")[1].split()[:2])
    pins = known_hosts_path()
    pins.write_text("".join(f"{line.split()[0]} {stranger}\n" for line in pins.read_text().splitlines()))

    out = podtune("stop", run_id, home=Path(os.environ["PODTUNE_HOME"]), env=runpod_env(runpod_emu), check=False)

    said = " ".join((out.stdout + out.stderr).split())
    assert runpod_emu.pods[pod_id].desired_status == "EXITED", said
    assert "host key" in said and f"pod {pod_id} stopped" in said and "Traceback" not in said
