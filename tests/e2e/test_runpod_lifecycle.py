"""What a RunPod user meets around a run: busy GPUs, a pod that never boots, stop and terminate, failed resume.

The real CLI and the real runpod SDK against the emulator; pods are real sshds.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, env_without_secrets
from tests.doubles.runpod_emulator import RunPodEmulator
from tests.e2e.conftest import POD_PATH, runpod_env, runpod_recipe
from tests.e2e.helpers import events, podtune, processes_mentioning, runs_in, wait_for

RTX_3090, A5000 = "NVIDIA GeForce RTX 3090", "NVIDIA RTX A5000"


def emu_pod(emu: RunPodEmulator) -> str:
    (pod_id,) = emu.pods
    return pod_id


def start_podtune(*args: str, home, env) -> subprocess.Popen:
    full = env_without_secrets(PODTUNE_HOME=str(home), COLUMNS="200", **env)
    return subprocess.Popen([str(Path(sys.executable).parent / "podtune"), *args], cwd=REPO, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _said(out) -> str:
    return " ".join((out.stdout + out.stderr).split())  # rich wraps long lines


def test_busy_first_choice_rents_the_next_gpu_in_the_recipes_order(tmp_path, runpod_emu):
    runpod_emu.no_gpu_free = {RTX_3090}
    recipe = runpod_recipe(tmp_path, steps=5, changes={"compute.gpu_types": [RTX_3090, A5000]})
    home = tmp_path / "home"
    podtune("run", str(recipe), "--yes", home=home, env=runpod_env(runpod_emu), timeout=300)
    ((_, status, pod_id),) = runs_in(home)
    assert status == "succeeded" and runpod_emu.pods[pod_id].gpu_type_id == A5000


def test_no_named_gpu_free_lists_what_is_free_with_prices_and_rents_nothing(tmp_path, runpod_emu):
    runpod_emu.no_gpu_free = {RTX_3090}
    home = tmp_path / "home"
    out = podtune("run", str(runpod_recipe(tmp_path)), "--yes", home=home, env=runpod_env(runpod_emu), check=False)
    said = _said(out)
    assert out.returncode != 0 and "Traceback" not in said
    assert f"none of compute.gpu_types ['{RTX_3090}'] is free" in said
    a5000 = next(g for g in runpod_emu.gpu_types if g.id == A5000)
    assert f"{A5000} (24 GB) ${a5000.price('ALL'):.2f}/h" in said and "Add one of them to compute.gpu_types" in said
    assert runpod_emu.pods == {}


def test_a_pod_that_never_accepts_ssh_is_stopped_at_the_connect_timeout(tmp_path):
    # The image "pulls" for ten minutes: runtime stays null, no port 22.
    with RunPodEmulator(state_dir=tmp_path / "runpod", boot_delay_s=600, pod_env_extra={"PATH": POD_PATH}) as emu:
        home = tmp_path / "home"
        started = time.monotonic()
        out = podtune("run", str(runpod_recipe(tmp_path)), "--yes", "--connect-timeout", "3", home=home,
                      env=runpod_env(emu), check=False)
        assert time.monotonic() - started < 60
        said = _said(out)
        assert out.returncode != 0 and "Traceback" not in said
        assert "timed out after 3s waiting for pod" in said and f"stopped pod {emu_pod(emu)} so it does not bill" in said
        ((_, status, pod_id),) = runs_in(home)
        assert status == "failed"
        assert emu.wait_status(pod_id, "EXITED", 10)
        assert all(i.end is not None for i in emu.pods[pod_id].intervals)  # the GPU meter stopped


def test_stop_keeps_the_volume_and_says_its_price_then_terminate_deletes_it(tmp_path, runpod_emu):
    home = tmp_path / "home"
    env = runpod_env(runpod_emu)
    podtune("run", str(runpod_recipe(tmp_path, steps=3000)), "--yes", "--detach", home=home, env=env, timeout=300)
    ((run_id, status, pod_id),) = runs_in(home)
    assert status == "detached"
    pod = runpod_emu.pods[pod_id]
    run_dir = pod.workspace / "runs" / run_id
    wait_for(lambda: any(e["kind"] == "step" for e in events(run_dir / "events.jsonl")), 120, "training to step")

    stopped = podtune("stop", run_id, home=home, env=env)
    per_day = 50 * 0.20 / 730 * 24  # a 50 GB volume at $0.20/GB-month
    assert f"${per_day:.3f}/day" in _said(stopped) and f"podtune stop {run_id} --terminate" in _said(stopped)
    assert runpod_emu.wait_status(pod_id, "EXITED", 10)
    assert (run_dir / "events.jsonl").is_file()  # the volume is kept
    assert not processes_mentioning(str(run_dir))  # the job is gone with the pod
    assert runs_in(home)[0][1] == "stopped"

    accruing = json.loads(podtune("costs", "--json", home=home, env=env).stdout)["stopped_volumes"]
    assert [v["pod_id"] for v in accruing] == [pod_id]

    refused = podtune("stop", run_id, "--terminate", home=home, env=env, check=False)  # no terminal to say yes
    assert refused.returncode != 0 and "not terminated" in _said(refused)
    assert runpod_emu.pods[pod_id].desired_status == "EXITED"

    podtune("stop", run_id, "--terminate", "--yes", home=home, env=env)
    assert runpod_emu.pods[pod_id].desired_status == "TERMINATED"
    assert not pod.workspace.exists()
    assert json.loads(podtune("costs", "--json", home=home, env=env).stdout)["stopped_volumes"] == []


def test_a_pod_that_cannot_resume_is_replaced_with_a_warning(tmp_path, runpod_emu):
    home = tmp_path / "home"
    env = runpod_env(runpod_emu)
    recipe = runpod_recipe(tmp_path, steps=5)
    podtune("run", str(recipe), "--yes", home=home, env=env, timeout=300)
    first_pod = runs_in(home)[0][2]
    assert runpod_emu.wait_status(first_pod, "EXITED", 10)

    runpod_emu.resume_fails = True  # the host's GPUs went to someone else
    second = podtune("run", str(recipe), "--yes", home=home, env=env, timeout=300)
    said = _said(second)
    assert f"pod {first_pod} cannot resume" in said and "Renting a new pod (cold cache)" in said
    assert f"podtune stop --pod {first_pod} --terminate" in said
    runs = runs_in(home)
    assert [r[1] for r in runs] == ["succeeded", "succeeded"] and runs[1][2] != first_pod
    assert len(runpod_emu.pods) == 2 and runpod_emu.wait_status(runs[1][2], "EXITED", 10)


def test_ctrl_c_before_training_starts_stops_the_pod(tmp_path):
    with RunPodEmulator(state_dir=tmp_path / "runpod", boot_delay_s=600, pod_env_extra={"PATH": POD_PATH}) as emu:
        home = tmp_path / "home"
        laptop = start_podtune("run", str(runpod_recipe(tmp_path)), "--yes", home=home, env=runpod_env(emu))
        try:
            wait_for(lambda: emu.pods, 60, "a pod to be rented")
            time.sleep(1)  # podtune is waiting for SSH now
            laptop.send_signal(signal.SIGINT)
            output, _ = laptop.communicate(timeout=60)
        finally:
            if laptop.poll() is None:
                laptop.kill()
        pod_id = emu_pod(emu)
        said = " ".join(output.split())
        assert laptop.returncode == 130 and "Traceback" not in said
        assert f"interrupted: stopped pod {pod_id} so it does not bill" in said
        assert emu.wait_status(pod_id, "EXITED", 10) and runs_in(home)[0][1] == "failed"


def test_ctrl_c_while_following_detaches_and_training_goes_on(tmp_path, runpod_emu):
    home = tmp_path / "home"
    env = runpod_env(runpod_emu)
    laptop = start_podtune("run", str(runpod_recipe(tmp_path, steps=3000)), "--yes", home=home, env=env)
    try:
        (run_id, _, pod_id), = wait_for(lambda: [r for r in runs_in(home) if r[2]], 60, "a pod")
        run_dir = runpod_emu.pods[pod_id].workspace / "runs" / run_id

        def steps() -> int:
            return sum(e["kind"] == "step" for e in events(run_dir / "events.jsonl"))

        wait_for(lambda: steps() >= 2, 120, "training steps")
        laptop.send_signal(signal.SIGINT)
        output, _ = laptop.communicate(timeout=60)
    finally:
        if laptop.poll() is None:
            laptop.kill()
    said = " ".join(output.split())
    assert laptop.returncode == 0 and f"Detached from {run_id}" in said and f"podtune logs -f {run_id}" in said
    seen = steps()
    wait_for(lambda: steps() > seen + 2, 60, "training to go on without the laptop")
    assert runpod_emu.pods[pod_id].desired_status == "RUNNING" and runs_in(home)[0][1] == "detached"
    podtune("stop", run_id, home=home, env=env)
    assert runpod_emu.wait_status(pod_id, "EXITED", 10)


def test_a_run_above_the_confirmation_threshold_is_not_rented_without_a_yes(tmp_path, runpod_emu):
    recipe = runpod_recipe(tmp_path, steps=20_000_000, changes={"compute.max_hours": 720})  # about 50 h on a 3090
    home = tmp_path / "home"
    out = podtune("run", str(recipe), home=home, env=runpod_env(runpod_emu), check=False)  # no terminal, no --yes
    said = _said(out)
    assert out.returncode != 0 and "Traceback" not in said
    assert "cancelled before renting anything" in said and "--yes" in said
    assert runpod_emu.pods == {} and runs_in(home) == []
