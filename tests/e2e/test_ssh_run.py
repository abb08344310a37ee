"""The ssh provider against a plain OpenSSH sshd on loopback: the same chain as on a pod, over real SSH."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from tests.doubles.sshd import generate_keypair, start_sshd, stop_sshd
from tests.e2e.helpers import copy_tiny_data, events, podtune
from tests.recipes import write_recipe_variant


@pytest.fixture()
def ssh_host(tmp_path):
    key, public = generate_keypair(tmp_path / "user_key")
    workspace = tmp_path / "host-workspace"
    # The host's python is the test venv (it has the training stack), standing in for an image's python.
    path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    pod = start_sshd(state_dir=tmp_path / "sshd", workspace=workspace, authorized_keys=[public],
                     env={"PATH": path}, isolate_workspace=False)
    yield pod, key, workspace
    stop_sshd(pod)


def _recipe(tmp_path, port, key, workspace) -> Path:
    copy_tiny_data(tmp_path)
    host = {"host": "127.0.0.1", "port": port, "user": "root", "key_path": str(key), "workspace": str(workspace),
            "usd_per_hour": 0.5,
            # The host's login shell puts pyenv first on PATH; name the interpreter that has the stack,
            # as a user with a conda env would (else setup would build a venv and fetch CUDA torch).
            "python": sys.executable}
    return write_recipe_variant(tmp_path / "tiny-ssh.yaml", {"compute.provider": "ssh", "compute.ssh": host})


def test_ssh_provider_runs_the_whole_chain_and_rerun_uploads_nothing(tmp_path, ssh_host):
    pod, key, workspace = ssh_host
    home = tmp_path / "home"
    recipe = _recipe(tmp_path, pod.port, key, workspace)

    first = podtune("run", str(recipe), "--yes", home=home, timeout=300)
    assert "synced:" in first.stdout and "0 file(s) uploaded" not in first.stdout
    assert f"python on the pod: {sys.executable}" in first.stdout and "(new venv)" not in first.stdout
    db = sqlite3.connect(home / "state.db")
    run_id, status = db.execute("SELECT id, status FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
    assert status == "succeeded"
    run_dir = workspace / "runs" / run_id
    assert (run_dir / "merged" / "model.safetensors").is_file()
    assert [e for e in events(run_dir / "events.jsonl") if e["kind"] == "pipeline_done"][0]["ok"] is True
    # The host key was pinned on first contact.
    assert f"ssh-127.0.0.1-{pod.port} ssh-" in (home / "known_hosts").read_text()  # pinned per pod id
    # Cost at the configured rate: more than zero for a run of a few seconds.
    assert "$0.0000" not in first.stdout.split("cost")[-1][:40]

    # `podtune ssh RUN -- CMD` runs a command there through the real ssh client, with the pinned host key.
    listing = podtune("ssh", run_id, "--", "ls", str(run_dir / "merged"), home=home)
    assert "model.safetensors" in listing.stdout

    second = podtune("run", str(recipe), "--yes", home=home, timeout=300)
    assert "synced: 0 file(s) uploaded" in second.stdout, [l for l in second.stdout.splitlines() if "synced" in l]
    # The token file never existed (no Hub push in this recipe), and nothing podtune runs is left behind.
    assert not (workspace / ".podtune-secrets" / "hf_token").exists()


def test_changed_host_key_is_refused(tmp_path, ssh_host):
    pod, key, workspace = ssh_host
    home = tmp_path / "home"
    home.mkdir()
    (home / "known_hosts").write_text(f"ssh-127.0.0.1-{pod.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBogus\n")
    out = podtune("run", str(_recipe(tmp_path, pod.port, key, workspace)), "--yes", home=home, check=False)
    assert out.returncode != 0 and "host key" in out.stderr and "changed" in out.stderr
    assert "Traceback" not in out.stderr
