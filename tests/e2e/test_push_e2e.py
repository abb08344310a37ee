"""`podtune run` / `podtune push` to the Hub emulator from a RunPod-emulator pod: real CLI, real sshd, real client."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from orchestrator.pod.pod_secrets import RAM_DIR
from tests.conftest import REPO, env_without_secrets
from tests.doubles.hub_emulator import HubEmulator, HubToken, HubUser
from tests.doubles.runpod_emulator import RunPodEmulator
from tests.e2e.conftest import POD_PATH, runpod_env, runpod_recipe
from tests.e2e.helpers import events, podtune, wait_for

CANARY = "hf_CANARY" + "Zq8Lp3Xw7Rt2Mv9Bn4Kc6Hd1Jf5Gs0Ya"  # 30 characters after the prefix
READ = "hf_alice_read_0123456789abcdefghijk"
REPO_ID = "alice/tiny-tuned"
LLAMA = "meta-llama/Llama-2-7b-hf"


@pytest.fixture()
def hub():
    with HubEmulator(users=[HubUser("alice"), HubUser("meta-llama")],
                     tokens=[HubToken(CANARY, "alice", "write"), HubToken(READ, "alice", "read")]) as emu:
        emu.add_model(LLAMA, {"config.json": b'{"model_type": "llama"}'}, gated="manual")
        yield emu


@pytest.fixture()
def rp(tmp_path, hub):
    pod_env = {k: v for k, v in hub.client_env(tmp_path / "unused").items() if k != "HF_HOME"}
    pod_env.update(PATH=POD_PATH, PODTUNE_HUB_RETRY_BASE_S="0.2")  # the real policy, shorter waits
    with RunPodEmulator(state_dir=tmp_path / "runpod", boot_delay_s=0.3, pod_env_extra=pod_env) as emu:
        yield emu


def laptop_env(tmp_path: Path, hub: HubEmulator, rp: RunPodEmulator, token: str = CANARY) -> dict[str, str]:
    return {**runpod_env(rp), **hub.client_env(tmp_path / "hf-laptop"), "HF_TOKEN": token}


def hub_recipe(tmp_path: Path, *, base: str | None = None, steps: int = 10) -> Path:
    return runpod_recipe(tmp_path, steps=steps,
                         changes={"output.hub_repo": REPO_ID, **({"model.base": base} if base else {})})


def only_run(home: Path) -> tuple[str, str, str]:
    with closing(sqlite3.connect(home / "state.db")) as db:  # closed: no WAL file comes and goes under a scan
        (row,) = db.execute("SELECT id, status, pod_id FROM runs").fetchall()
    return row


def commit_statuses(hub: HubEmulator) -> list[int]:
    return [s for m, p, s in hub.requests if m == "POST" and p == f"/api/models/{REPO_ID}/commit/main"]


def run_watching_processes(args: list[str], home: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run the CLI while scanning /proc (pods share this kernel): every cmdline and pod-side environ seen."""
    full = env_without_secrets(PODTUNE_HOME=str(home), COLUMNS="200", **env)
    seen: list[str] = []
    proc = subprocess.Popen([str(Path(sys.executable).parent / "podtune"), *args], cwd=REPO, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: dict[str, str] = {}
    reader = threading.Thread(target=lambda: out.update(zip(("stdout", "stderr"), proc.communicate(timeout=300))))
    reader.start()
    while reader.is_alive():
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                if any(job in cmdline for job in JOB_COMMANDS):  # the pod's pipeline and watchdog: their environment too
                    cmdline += " ENV " + (entry / "environ").read_bytes().decode("utf-8", "replace")
            except OSError:
                continue
            seen.append(cmdline)
        time.sleep(0.2)
    reader.join()
    return subprocess.CompletedProcess(args, proc.returncode, out.get("stdout", ""), out.get("stderr", "")), seen


# How the pod's job processes show in /proc: the pipeline started by the launch, or the pod's Python started ahead
# of it (remote/warm.py) that the launch handed the pipeline to, and the watchdog.
JOB_COMMANDS = ("-m remote pipeline", "/.warm/boot.py", "-m remote watchdog")


def assert_no_canary_anywhere(home: Path, pod, seen: list[str]) -> None:
    assert not any(CANARY in v for v in pod.env.values()) and not any(CANARY in v for v in pod.sshd_env.values())
    assert any(pipeline in c for c in seen for pipeline in JOB_COMMANDS if pipeline != "-m remote watchdog"), \
        "the /proc scan never saw the pod's pipeline"
    assert not [c for c in seen if CANARY in c]
    assert not (pod.workspace / ".podtune-secrets" / "hf_token").exists()  # removed at stop
    assert not [p for r in (pod.workspace / "runs").iterdir() for p in token_files(pod, r.name) if p.exists()]
    assert not (pod.workspace / "hf" / "token").exists()
    roots = [home, pod.workspace / "runs", pod.workspace / ".podtune-secrets", pod.workspace / "hf"]
    files = [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "state.db" for p in files) and any(p.name == "train.log" for p in files)
    leaked = []
    for path in files:
        try:
            if path.stat().st_size < 64 << 20 and CANARY.encode() in path.read_bytes():
                leaked.append(str(path))
        except FileNotFoundError:  # sqlite's -wal/-shm files vanish once their content is in state.db
            continue
    assert leaked == []


def test_run_pushes_a_verified_model_through_commit_failures_and_leaks_no_token(tmp_path, hub, rp):
    home = tmp_path / "home"
    hub.fail_next(2, 500, path_contains="/commit/")  # the client never retries a commit: podtune must
    started = time.monotonic()
    out, seen = run_watching_processes(["run", str(hub_recipe(tmp_path)), "--yes"], home,
                                       laptop_env(tmp_path, hub, rp))
    assert out.returncode == 0, out.stdout + out.stderr
    run_id, status, pod_id = only_run(home)
    pod = rp.pods[pod_id]
    run_dir = pod.workspace / "runs" / run_id
    assert status == "succeeded" and rp.wait_status(pod_id, "EXITED", 10)

    repo = hub.repo(REPO_ID)
    merged = {p.name: p.read_bytes() for p in (run_dir / "merged").iterdir()}
    assert set(repo.files) == set(merged) | {"README.md", ".gitattributes"} and repo.private
    assert all(hub.file_bytes(REPO_ID, name) == data for name, data in merged.items())
    assert commit_statuses(hub) == [500, 500, 200]

    evs = events(run_dir / "events.jsonl")
    train = next(e for e in evs if e["kind"] == "train_done")
    pushed = next(e for e in evs if e["kind"] == "push_done")
    assert [e["what"] for e in evs if e["kind"] == "push_retry"] == ["upload", "upload"]
    assert pushed["verified"] and pushed["commit"] == repo.sha and pushed["retries"] == 2
    card = hub.file_bytes(REPO_ID, "README.md").decode()
    assert f"{train['first_loss']:.4f} → {train['final_loss']:.4f}" in card and f"| steps | {train['steps']} |" in card
    usd = train["train_seconds"] / 3600 * pod.cost_per_hr
    assert f"${pod.cost_per_hr:.3f}/h" in card and f"${usd:.4f}" in card
    merge = next(e for e in evs if e["kind"] == "merge_done")
    assert merge["samples"][0]["tuned"].strip()[:20] in card
    assert f"{hub.url}/{REPO_ID} @ {repo.sha}" in out.stdout  # the report
    assert json.loads((run_dir / "push.json").read_text())["commit"] == repo.sha
    assert_no_canary_anywhere(home, pod, seen)
    print(f"run with push: {time.monotonic() - started:.1f}s, push phase {pushed['seconds']}s")


def test_a_push_that_keeps_failing_stops_the_pod_and_podtune_push_finishes_it(tmp_path, hub, rp):
    home = tmp_path / "home"
    env = laptop_env(tmp_path, hub, rp)
    hub.fail_next(1000, 500, path_contains="/commit/")
    failed = podtune("run", str(hub_recipe(tmp_path)), "--yes", home=home, env=env, timeout=300, check=False)
    run_id, status, pod_id = only_run(home)
    assert failed.returncode != 0 and status == "failed"
    said = " ".join((failed.stderr + failed.stdout).split())  # rich wraps long lines
    assert f"podtune push {run_id}" in said and "HTTP 500" in said and CANARY not in said
    assert rp.wait_status(pod_id, "EXITED", 10)
    assert len(commit_statuses(hub)) == 5 and set(commit_statuses(hub)) == {500}
    run_dir = rp.pods[pod_id].workspace / "runs" / run_id
    trained = sum(e["kind"] == "phase_start" and e["phase"] == "train" for e in events(run_dir / "events.jsonl"))

    hub.clear_faults()
    asked = podtune("push", run_id, home=home, env=env, timeout=60, check=False)  # no terminal to answer on
    assert asked.returncode != 0 and f"podtune push {run_id} --yes" in " ".join((asked.stderr + asked.stdout).split())
    assert rp.pods[pod_id].desired_status == "EXITED", "push restarted a billing pod without asking"
    again = podtune("push", run_id, "--yes", home=home, env=env, timeout=300, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    evs = events(run_dir / "events.jsonl")
    assert sum(e["kind"] == "phase_start" and e["phase"] == "train" for e in evs) == trained == 1
    assert evs[-1]["kind"] == "pipeline_done" and evs[-1]["ok"]
    pushed = [e for e in evs if e["kind"] == "push_done"]
    assert len(pushed) == 1 and pushed[0]["verified"] and pushed[0]["commit"] == hub.repo(REPO_ID).sha
    merged = {p.name: p.read_bytes() for p in (run_dir / "merged").iterdir()}
    assert all(hub.file_bytes(REPO_ID, name) == data for name, data in merged.items())
    assert f"{hub.url}/{REPO_ID}" in again.stdout
    assert rp.wait_status(pod_id, "EXITED", 10) and len(rp.pods) == 1
    assert not (rp.pods[pod_id].workspace / ".podtune-secrets" / "hf_token").exists()
    assert not [p for p in token_files(rp.pods[pod_id], run_id) if p.exists()]


def token_files(pod, run_id: str) -> list[Path]:
    """Every place a run's token may be: the pod's RAM (/dev/shm; the host's here) and its volume."""
    return [Path(RAM_DIR) / f"{run_id}.hf_token", pod.workspace / ".podtune-secrets" / f"{run_id}.hf_token"]


def test_a_pod_stopped_from_outside_podtune_keeps_no_token_on_its_volume(tmp_path, hub, rp):
    home = tmp_path / "home"
    recipe = hub_recipe(tmp_path, steps=3000)
    podtune("run", str(recipe), "--yes", "--detach", home=home, env=laptop_env(tmp_path, hub, rp), timeout=300)
    run_id, _, pod_id = only_run(home)
    pod = rp.pods[pod_id]
    run_dir = pod.workspace / "runs" / run_id
    try:
        wait_for(lambda: any(e["kind"] == "step" for e in events(run_dir / "events.jsonl")), 120, "training steps")
        rp.stop_pod(pod_id)  # the RunPod console, a $0 balance: anything but podtune
        assert rp.wait_status(pod_id, "EXITED", 10)
        # What survives a stop is the volume; a real pod's /dev/shm goes with its container.
        on_volume = [p for p in pod.workspace.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]
        assert on_volume == []
    finally:
        for path in token_files(pod, run_id):
            path.unlink(missing_ok=True)


def test_plan_and_run_refuse_a_read_token_and_a_gated_base_before_renting(tmp_path, hub, rp):
    home = tmp_path / "home"
    recipe = hub_recipe(tmp_path)
    for command in (["plan", str(recipe)], ["run", str(recipe), "--yes"]):
        out = podtune(*command, home=home, env=laptop_env(tmp_path, hub, rp, token=READ), check=False)
        assert out.returncode != 0 and "token cannot write to alice" in out.stderr, out.stderr
        assert "settings/tokens" in out.stderr and READ not in out.stdout + out.stderr

    gated = hub_recipe(tmp_path, base=LLAMA)
    for command in (["plan", str(gated)], ["run", str(gated), "--yes"]):
        out = podtune(*command, home=home, env=laptop_env(tmp_path, hub, rp), check=False)
        assert out.returncode != 0 and "gated" in out.stderr, out.stderr
        assert f"https://huggingface.co/{LLAMA}" in out.stderr and "accept the licence" in out.stderr
        assert CANARY not in out.stdout + out.stderr

    assert rp.pods == {}
    assert not [r for r in rp.requests if r.get("op") == "createPod"]
