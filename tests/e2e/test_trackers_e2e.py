"""Trackers a recipe reports to: the W&B key reaches the pod as the Hub token does (and nowhere else), TensorBoard's
event files come back to the laptop, and what the pod warns about is on screen and in the report."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.pod.pod_secrets import RAM_DIR
from tests.conftest import REPO, env_without_secrets
from tests.doubles.runpod_emulator import RunPodEmulator
from tests.e2e.conftest import POD_PATH, runpod_env, runpod_recipe
from tests.e2e.helpers import copy_tiny_data, podtune, runs_in
from tests.recipes import write_recipe_variant

WANDB_CANARY = "wandbCANARY" + "4f8d2c7a9e1b3d5f6a8c0e2b4d6f8a1c3e5"  # 40 characters, as a W&B key is
OFFLINE = {"WANDB_MODE": "offline", "WANDB_DISABLE_GIT": "true", "WANDB_SILENT": "true"}  # nothing leaves the box


def tiny_local(tmp_path: Path, trackers: list[str], changes: dict[str, object] | None = None, steps: int = 3) -> Path:
    copy_tiny_data(tmp_path)
    return write_recipe_variant(tmp_path / "tiny-trackers.yaml", {
        "training.max_steps": steps, "training.save_steps": 1000, "training.report_to": trackers, **(changes or {})})


def _parent(pid: int) -> int | None:
    """The parent's pid from /proc (None when the process is gone)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _laptop_side(pid: int) -> set[int]:
    """The podtune process and its children: the user's own shell environment, where WANDB_API_KEY belongs."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (parent := _parent(int(entry.name))) is not None:
            parents[int(entry.name)] = parent
    mine = {pid}
    grew = True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in mine and child not in mine:
                mine.add(child)
                grew = True
    return mine


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether `pid` is `ancestor` or its descendant now (a child the laptop started after the last snapshot of
    its tree, such as matplotlib's `fc-list` building a font cache, is the laptop's too)."""
    for _ in range(64):  # bounded: a parent chain is short
        if pid == ancestor:
            return True
        parent = _parent(pid) if pid > 1 else None
        if parent is None:
            return False
        pid = parent
    return False


def run_scanning(args: list[str], home: Path, env: dict[str, str], secret: str):
    """Run the CLI while reading every process's argv and environment (the emulated pods share this kernel).

    Returns (completed, argv/env that held the secret, how many pod-side pipeline processes were seen)."""
    full = env_without_secrets(PODTUNE_HOME=str(home), COLUMNS="200", **env)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "podtune"), *args], cwd=REPO, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: dict[str, str] = {}
    reader = threading.Thread(target=lambda: out.update(zip(("stdout", "stderr"), proc.communicate(timeout=300))))
    reader.start()
    leaks: list[str] = []
    pipelines = 0
    needle = secret.encode()
    while reader.is_alive():
        laptop = _laptop_side(proc.pid)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                if needle in cmdline:
                    leaks.append(f"argv of {entry.name}: {cmdline[:200]!r}")
                if int(entry.name) in laptop:
                    continue
                # The pipeline as the launch starts it, or the pod's Python started ahead that it was handed to.
                pipelines += b"-m\0remote\0pipeline" in cmdline or b"/.warm/boot.py" in cmdline
                if needle in (entry / "environ").read_bytes() and not _descends_from(int(entry.name), proc.pid):
                    leaks.append(f"environment of {entry.name}: {cmdline[:200]!r}")
            except OSError:
                continue
        time.sleep(0.2)
    reader.join()
    return subprocess.CompletedProcess(args, proc.returncode, out.get("stdout", ""), out.get("stderr", "")), leaks, pipelines


def files_holding(secret: str, *roots: Path) -> list[str]:
    found = []
    for root in roots:
        for path in (root.rglob("*") if root.exists() else []):
            try:
                if path.is_file() and not path.is_symlink() and path.stat().st_size < 64 << 20 \
                        and secret.encode() in path.read_bytes():
                    found.append(str(path))
            except (FileNotFoundError, PermissionError):  # sqlite's -wal/-shm files come and go
                continue
    return found


@pytest.fixture()
def rp_offline(tmp_path):
    with RunPodEmulator(state_dir=tmp_path / "runpod", boot_delay_s=0.3,
                        pod_env_extra={"PATH": POD_PATH, **OFFLINE}) as emu:
        yield emu
        assert emu.graphql_requests == [] and emu.request_violations == [] and emu.contract_violations == []


def test_a_wandb_run_carries_its_key_as_a_private_file_and_leaks_it_nowhere(tmp_path, rp_offline):
    home = tmp_path / "home"
    recipe = runpod_recipe(tmp_path, steps=3, changes={"training.report_to": ["wandb"]})
    started = time.monotonic()
    out, leaks, pipelines = run_scanning(["run", str(recipe), "--yes"], home,
                                         {**runpod_env(rp_offline), **OFFLINE, "WANDB_API_KEY": WANDB_CANARY},
                                         WANDB_CANARY)
    assert out.returncode == 0, out.stdout + out.stderr
    [(run_id, status, pod_id)] = runs_in(home)
    pod = rp_offline.pods[pod_id]
    run_dir = pod.workspace / "runs" / run_id
    assert status == "succeeded" and pipelines > 0, "the scan never saw the pod's pipeline"
    # wandb really ran on the pod, with the key (offline: it writes the run beside the others' files).
    assert list((run_dir / "wandb").glob("offline-run-*")), sorted(p.name for p in run_dir.iterdir())
    assert "report_to wandb dropped" not in out.stdout
    assert leaks == []
    assert not any(WANDB_CANARY in v for v in pod.sshd_env.values())
    assert WANDB_CANARY not in out.stdout + out.stderr
    # Removed at stop, wherever it was put: the pod's RAM (the host's /dev/shm here) or its volume.
    assert not (list(Path(RAM_DIR).glob(f"{run_id}.*")) if Path(RAM_DIR).exists() else [])
    assert not list((pod.workspace / ".podtune-secrets").glob(f"{run_id}.*"))
    launched = json.loads((run_dir / "run.json").read_text())
    assert any(p.endswith(f"{run_id}.wandb_key") for p in launched["secret_files"])
    assert files_holding(WANDB_CANARY, tmp_path) == []  # state DB, report, logs, events, wandb's own files
    assert any((home / "runs" / run_id / name).exists() for name in ("summary.json", "train.log"))
    print(f"wandb run: {time.monotonic() - started:.1f}s")


def test_tensorboard_logs_come_back_and_a_pod_warning_is_on_screen_and_in_the_report(tmp_path):
    home = tmp_path / "home"
    # ddp on one process: the pod trains anyway and says so (a warning only the pod can give).
    recipe = tiny_local(tmp_path, ["tensorboard"], {"training.distributed": "ddp"})
    out = podtune("run", str(recipe), "--yes", home=home, timeout=300)
    [(run_id, status, _)] = runs_in(home)
    assert status == "succeeded"
    local = home / "runs" / run_id
    tb = list((local / "tensorboard").rglob("events.out.tfevents.*"))
    assert tb and all(p.stat().st_size > 0 for p in tb), out.stdout
    said = " ".join(out.stdout.split())
    warning = "training.distributed is ddp but this is a single process"
    assert said.count(f"warning: pod: {warning}") == 2  # as it happened, and again in the report
    assert json.loads((local / "summary.json").read_text())["warnings"] == [warning]
    again = podtune("report", run_id, home=home)
    assert f"warning: pod: {warning}" in " ".join(again.stdout.split())


def test_plan_refuses_a_wandb_recipe_without_its_key_and_names_every_missing_credential(tmp_path):
    home = tmp_path / "home"
    out = podtune("plan", str(tiny_local(tmp_path, ["wandb"])), home=home, check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    said = " ".join(out.stderr.split())
    assert "1 credential(s) missing" in said and "WANDB_API_KEY" in said and "wandb login" in said
    seed_a = podtune("plan", "recipes/llama2-ko.yaml", home=home, check=False)
    said = " ".join(seed_a.stderr.split())
    assert seed_a.returncode == 1 and "3 credential(s) missing" in said, said  # RunPod key, Hub token, W&B key
    assert "RUNPOD_API_KEY" in said and "HF_TOKEN" in said and "export WANDB_API_KEY=" in said
