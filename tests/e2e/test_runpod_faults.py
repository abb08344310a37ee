"""Faults around a RunPod run's end (issue #10): each has a defined outcome a user can see.

Nothing is lost (every log line once, the outcome and report from any later podtune), no pod bills unseen, and
every ending says why and what to do next. The real CLI against the REST v2 emulator; pods are real sshds.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing, contextmanager
from pathlib import Path

from tests.conftest import REPO, env_without_secrets
from tests.doubles.runpod_emulator import RunPodEmulator
from tests.doubles.sshd import _children
from tests.e2e.conftest import POD_PATH, runpod_env, runpod_recipe
from tests.e2e.helpers import events, podtune, runs_in, wait_for


def _said(out) -> str:
    return " ".join((out.stdout + out.stderr).split())  # rich wraps long lines


def _start(*args: str, home: Path, env: dict[str, str]) -> subprocess.Popen:
    full = env_without_secrets(PODTUNE_HOME=str(home), COLUMNS="200", **env)
    return subprocess.Popen([str(Path(sys.executable).parent / "podtune"), *args], cwd=REPO, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@contextmanager
def emulator(tmp_path: Path, **pod_env: str):
    with RunPodEmulator(state_dir=tmp_path / "runpod", boot_delay_s=0.3,
                        pod_env_extra={"PATH": POD_PATH, **pod_env}) as emu:
        yield emu
        assert emu.graphql_requests == [] and emu.request_violations == [] and emu.contract_violations == []


def _detached(emu: RunPodEmulator, recipe: Path, home: Path) -> tuple[str, str, Path]:
    podtune("run", str(recipe), "--yes", "--detach", home=home, env=runpod_env(emu), timeout=300)
    ((run_id, _, pod_id),) = runs_in(home)
    return run_id, pod_id, emu.pods[pod_id].workspace / "runs" / run_id


def _steps(run_dir: Path) -> list[int]:
    return [e["step"] for e in events(run_dir / "events.jsonl") if e["kind"] == "step"]


def _non_empty(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def _laptop_intervals(home: Path, pod_id: str) -> list[tuple[float, float | None]]:
    with closing(sqlite3.connect(home / "state.db")) as db:
        return db.execute("SELECT started_at, ended_at FROM pod_intervals WHERE pod_id = ? ORDER BY started_at",
                          (pod_id,)).fetchall()


def test_after_the_laptop_died_status_logs_and_attach_get_the_truth_from_the_stopped_pod(tmp_path, runpod_emu):
    home, env = tmp_path / "home", runpod_env(runpod_emu)
    run_id, pod_id, run_dir = _detached(runpod_emu, runpod_recipe(tmp_path), home)
    assert runpod_emu.wait_status(pod_id, "EXITED", 180), "the pod did not stop itself"
    self_stop = runpod_emu.pods[pod_id].intervals[0].end
    time.sleep(3)  # the laptop comes back a while later

    # No terminal, no --yes: nothing is started, and the run is not shown as running.
    first = podtune("status", run_id, home=home, env=env)
    said = _said(first)
    assert "state: ended" in said and "running" not in said
    assert f"podtune status {run_id} --yes" in said
    assert runpod_emu.pods[pod_id].desired_status == "EXITED" and len(runpod_emu.pods[pod_id].intervals) == 1

    unasked = podtune("logs", "-f", run_id, home=home, env=env, check=False)
    said = _said(unasked)
    assert unasked.returncode == 1 and "Traceback" not in said
    assert "the log from byte 0 on was not shown; it is on the pod's volume" in said
    assert f"podtune logs {run_id} -f --yes" in said and runpod_emu.pods[pod_id].desired_status == "EXITED"

    shown = podtune("logs", run_id, "--yes", home=home, env=env)
    assert f"started pod {pod_id}" in shown.stdout
    written = _non_empty((run_dir / "train.log").read_text())
    lines = _non_empty(shown.stdout)
    assert [line for line in lines if line in set(written)] == written  # each line once, in order
    assert f"run {run_id} succeeded" in shown.stdout
    assert runpod_emu.wait_status(pod_id, "EXITED", 10)  # stopped again after the fetch
    assert all(i.end is not None for i in runpod_emu.pods[pod_id].intervals)
    # The laptop's meter learnt when the pod really stopped itself, from the pod's own events.
    (start, end), (brief_start, brief_end) = _laptop_intervals(home, pod_id)
    assert abs(end - self_stop) < 1.5 and brief_end is not None

    final = _said(podtune("status", run_id, home=home, env=env))
    assert "state: succeeded" in final and "exit code: 0" in final
    attached = podtune("attach", run_id, home=home, env=env)
    assert "Traceback" not in _said(attached) and "total" in attached.stdout  # the report
    assert len(runpod_emu.pods[pod_id].intervals) == 2  # nothing started a third time


def test_logs_follow_ends_with_every_line_when_ssh_drops_and_the_pod_stops_itself(tmp_path, runpod_emu):
    home, env = tmp_path / "home", runpod_env(runpod_emu)
    run_id, pod_id, run_dir = _detached(runpod_emu, runpod_recipe(tmp_path, steps=40), home)
    follower = _start("logs", "-f", "--raw", run_id, "--yes", home=home, env=env)
    try:
        wait_for(lambda: len(_steps(run_dir)) >= 30, 120, "training near its end")
        sshd = runpod_emu.pods[pod_id].ssh
        os.kill(sshd.pid, signal.SIGSTOP)  # SSH refused from here on: no new connection is served...
        for child in _children(sshd.pid):  # ...and the one logs -f holds is cut (the job's processes live on)
            if Path(f"/proc/{child}/comm").read_text().strip() == "sshd":
                os.kill(child, signal.SIGKILL)
        assert runpod_emu.wait_status(pod_id, "EXITED", 120), "the pod did not stop itself"
        stopped = time.monotonic()
        output, _ = follower.communicate(timeout=90)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert time.monotonic() - stopped < 60  # no 120 s wait for a pod that is gone
    assert follower.returncode == 0, output
    written = _non_empty((run_dir / "train.log").read_text())
    assert [line for line in _non_empty(output) if line in set(written)] == written  # every line once, in order
    assert f"run {run_id} succeeded" in output
    assert runpod_emu.wait_status(pod_id, "EXITED", 10) and runs_in(home)[0][1] == "succeeded"


def _resume_and_lose_the_laptop(run_id: str, pod_id: str, run_dir: Path, emu: RunPodEmulator, home: Path) -> str:
    """`podtune resume`, killed once training went on: the pod must finish and stop itself, and a later status
    must find this attempt's outcome, not the earlier attempt's."""
    env = runpod_env(emu)
    laptop = _start("resume", run_id, "--yes", home=home, env=env)
    try:
        wait_for(lambda: any(e["kind"] == "resumed" for e in events(run_dir / "events.jsonl")), 180, "the resume")
        laptop.send_signal(signal.SIGKILL)
        output, _ = laptop.communicate(timeout=10)
    finally:
        if laptop.poll() is None:
            laptop.kill()
    assert f"restarted pod {pod_id}" in output
    assert emu.wait_status(pod_id, "EXITED", 180), "the resumed pod did not stop itself"
    said = _said(podtune("status", run_id, "--yes", home=home, env=env))
    assert "state: succeeded" in said and "exit code: 0" in said and "podtune resume" not in said
    return said


def test_a_crash_shows_its_reason_exit_code_and_last_log_lines_in_status_then_resumes(tmp_path):
    with emulator(tmp_path, PODTUNE_TEST_CRASH_AT_STEP="17") as emu:  # after checkpoint-15; once per run
        home, env = tmp_path / "home", runpod_env(emu)
        out = podtune("run", str(runpod_recipe(tmp_path)), "--yes", home=home, env=env, check=False, timeout=300)
        assert out.returncode == 3 and "Traceback" not in out.stderr
        ((run_id, status, pod_id),) = runs_in(home)
        assert status == "failed" and emu.wait_status(pod_id, "EXITED", 10)
        said = _said(podtune("status", run_id, home=home, env=env))
        assert "state: failed" in said and "exit code: 1" in said
        assert "reason: RuntimeError: test crash at step 17" in said
        assert "last lines of the log:" in said and "RuntimeError: test crash at step 17" in said.split("last lines")[1]
        assert f"next: podtune resume {run_id}" in said

        run_dir = emu.pods[pod_id].workspace / "runs" / run_id
        _resume_and_lose_the_laptop(run_id, pod_id, run_dir, emu, home)
        (resumed,) = [e for e in events(run_dir / "events.jsonl") if e["kind"] == "resumed"]
        assert resumed["checkpoint"] == "checkpoint-15"


def test_a_stalled_trainer_is_stopped_and_status_says_why_and_how_to_resume(tmp_path):
    with emulator(tmp_path, PODTUNE_TEST_STALL_AT_STEP="3") as emu:
        home, env = tmp_path / "home", runpod_env(emu)
        recipe = runpod_recipe(tmp_path, steps=200, changes={"compute.stall_minutes": 0.1})
        run_id, pod_id, _ = _detached(emu, recipe, home)
        assert emu.wait_status(pod_id, "EXITED", 120), "a stalled trainer kept the pod billing"
        said = _said(podtune("status", run_id, "--yes", home=home, env=env))
        assert "state: stopped" in said and "stall" in said and "no progress in phase train" in said
        assert f"next: podtune resume {run_id}" in said
        assert emu.wait_status(pod_id, "EXITED", 10)


def test_resume_after_the_pod_was_stopped_from_outside_continues_from_the_checkpoint(tmp_path, runpod_emu):
    home, env = tmp_path / "home", runpod_env(runpod_emu)
    run_id, pod_id, run_dir = _detached(runpod_emu, runpod_recipe(tmp_path, steps=40), home)  # saves every 15
    saved = run_dir / "checkpoints" / "checkpoint-15" / "trainer_state.json"
    wait_for(lambda: saved.exists() and max(_steps(run_dir), default=0) >= 17, 180, "checkpoint-15")
    runpod_emu.stop_pod(pod_id)  # the console, or another tool: no SIGTERM, no goodbye
    before = max(_steps(run_dir))
    checkpoint = max(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("checkpoint-*")
                     if (p / "trainer_state.json").exists())

    said = _said(podtune("status", run_id, "--yes", home=home, env=env))
    assert "state: stopped" in said and "stopped from outside podtune" in said
    assert f"next: podtune resume {run_id}" in said

    _resume_and_lose_the_laptop(run_id, pod_id, run_dir, runpod_emu, home)
    evs = events(run_dir / "events.jsonl")
    (resumed,) = [e for e in evs if e["kind"] == "resumed"]
    assert resumed["checkpoint"] == f"checkpoint-{checkpoint}"
    after = [e["step"] for e in evs[evs.index(resumed):] if e["kind"] == "step"]
    assert after == list(range(checkpoint + 1, 41)) and before < 40  # on to the same final step, not from 1
    assert [e["ok"] for e in evs if e["kind"] == "pipeline_done"] == [True]
    assert (run_dir / "merged" / "model.safetensors").is_file()
    assert runs_in(home)[0][1] == "succeeded" and runpod_emu.wait_status(pod_id, "EXITED", 10)
    assert len(runpod_emu.pods) == 1  # the same pod and volume


def test_laptop_killed_while_renting_then_the_next_run_finds_the_pod_by_name(tmp_path, runpod_emu):
    home, env = tmp_path / "home", runpod_env(runpod_emu)
    recipe = runpod_recipe(tmp_path, steps=5)
    runpod_emu.hang_next(1, seconds=20, op="createPod")  # the pod is rented at once; its answer is slow
    laptop = _start("run", str(recipe), "--yes", home=home, env=env)
    try:
        wait_for(lambda: runpod_emu.pods, 60, "a pod to be rented")
        laptop.send_signal(signal.SIGKILL)  # before podtune heard of the pod: the state DB does not know it
        laptop.wait(10)
    finally:
        if laptop.poll() is None:
            laptop.kill()
    (pod_id,) = runpod_emu.pods
    out = podtune("run", str(recipe), "--yes", home=home, env=env, timeout=300)
    assert "reusing" in out.stdout and pod_id in out.stdout
    assert len(runpod_emu.pods) == 1  # never rented twice
    assert runs_in(home)[-1][1:] == ("succeeded", pod_id) and runpod_emu.wait_status(pod_id, "EXITED", 10)


def test_a_pod_terminated_from_outside_ends_its_run_in_status(tmp_path, runpod_emu):
    home, env = tmp_path / "home", runpod_env(runpod_emu)
    run_id, pod_id, run_dir = _detached(runpod_emu, runpod_recipe(tmp_path, steps=3000), home)
    runpod_emu.terminate_pod(pod_id)  # the console, or a $0 balance
    said = _said(podtune("status", run_id, home=home, env=env))
    assert "state: stopped" in said and "running" not in said and "podtune resume" not in said
    assert f"pod {pod_id} of run {run_id} no longer exists (terminated)" in said and "went with it" in said
    assert runs_in(home)[0][1] == "stopped"
    assert all(end is not None for _, end in _laptop_intervals(home, pod_id))  # nothing bills in podtune's meter
