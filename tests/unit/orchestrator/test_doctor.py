"""`podtune doctor` as a person runs it, against the RunPod and Hub emulators and a real sshd."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.doubles.hub_emulator import HubEmulator, HubToken, HubUser
from tests.doubles.runpod_emulator import RunPodEmulator
from tests.doubles.sshd import generate_keypair, start_sshd, stop_sshd
from tests.e2e.helpers import podtune
from tests.recipes import write_recipe_variant

WRITE = "hf_alice_write_0123456789abcdefghij"
READ = "hf_alice_read_0123456789abcdefghijk"
WRONG_KEY = "rpa_WRONGKEY0123456789ABCDEFGHIJKLMNOPQRSTUV"


@pytest.fixture(scope="module")
def hub():
    with HubEmulator(users=[HubUser("alice")],
                     tokens=[HubToken(WRITE, "alice", "write"), HubToken(READ, "alice", "read")]) as emu:
        yield emu


@pytest.fixture(scope="module")
def rp(tmp_path_factory):
    with RunPodEmulator(state_dir=tmp_path_factory.mktemp("runpod")) as emu:
        yield emu


def doctor(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    out = podtune("doctor", *args, home=tmp_path / "home", env=env, check=False, timeout=120)
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    return out


def rows(out) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(out.stdout)["checks"]}


def hub_env(tmp_path: Path, hub: HubEmulator, token: str | None) -> dict[str, str]:
    env = hub.client_env(tmp_path / "hf")
    if token:
        env["HF_TOKEN"] = token
    return env


def recipe_with(tmp_path: Path, changes: dict[str, object]) -> Path:
    """tiny-cpu with its data beside it (a recipe may only name data in its own folder), changed as asked."""
    (tmp_path / "data").mkdir(exist_ok=True)
    shutil.copy(REPO / "recipes" / "data" / "tiny-instructions.jsonl", tmp_path / "data")
    return write_recipe_variant(tmp_path / "recipe.yaml", changes)


def test_nothing_configured_warns_with_fixes_and_passes(tmp_path):
    out = doctor(tmp_path)
    assert out.returncode == 0, out.stdout
    for name in ("RunPod API key", "RunPod balance", "Hub token", "podtune SSH key", "state DB",
                 "local training (python)", "ssh client"):
        assert name in out.stdout
    assert "RUNPOD_API_KEY" in out.stdout and "hf auth login" in out.stdout and "all required checks passed" in out.stdout


def test_working_credentials_pass_and_no_secret_is_shown(tmp_path, rp, hub):
    env = {**hub_env(tmp_path, hub, WRITE), "RUNPOD_API_KEY": rp.api_key, "RUNPOD_API_BASE_URL": rp.url}
    out = doctor(tmp_path, "--json", env=env)
    assert out.returncode == 0, out.stdout
    found = rows(out)
    assert found["RunPod API key"]["status"] == "ok" and "GPU catalog lists" in found["RunPod API key"]["detail"]
    assert found["RunPod balance"]["status"] == "unknown" and "does not report" in found["RunPod balance"]["detail"]
    assert found["Hub token"]["status"] == "ok" and "hf_… of alice" in found["Hub token"]["detail"]
    assert json.loads(out.stdout)["ok"] is True
    table = doctor(tmp_path, env=env)
    for secret in (WRITE, rp.api_key, WRITE[3:12]):
        assert secret not in out.stdout + table.stdout + table.stderr


def test_a_wrong_runpod_key_fails_and_says_where_to_fix_it(tmp_path, rp):
    out = doctor(tmp_path, env={"RUNPOD_API_KEY": WRONG_KEY, "RUNPOD_API_BASE_URL": rp.url})
    assert out.returncode == 1
    assert "RunPod rejected the API key (401)" in out.stdout and "RUNPOD_API_KEY" in out.stdout
    assert "1 check(s) failed: RunPod API key" in out.stdout and WRONG_KEY not in out.stdout


def test_a_recipe_on_runpod_requires_a_key(tmp_path):
    recipe = recipe_with(tmp_path, {"compute.provider": "runpod"})
    found = rows(doctor(tmp_path, str(recipe), "--json"))
    assert found["RunPod API key"]["status"] == "fail" and found["RunPod API key"]["required"] is True


def test_a_read_only_token_warns_alone_and_fails_a_recipe_that_pushes(tmp_path, hub):
    env = hub_env(tmp_path, hub, READ)
    alone = doctor(tmp_path, "--json", env=env)
    assert alone.returncode == 0 and rows(alone)["Hub token"]["status"] == "warn"
    assert "read-only" in rows(alone)["Hub token"]["detail"]

    recipe = recipe_with(tmp_path, {"output.hub_repo": "alice/tiny-tuned"})
    out = doctor(tmp_path, str(recipe), env=env)
    assert out.returncode == 1 and "read-only" in out.stdout and "settings/tokens" in out.stdout
    assert READ not in out.stdout


def test_a_missing_token_fails_a_recipe_that_pushes(tmp_path, hub):
    recipe = recipe_with(tmp_path, {"output.hub_repo": "alice/tiny-tuned"})
    out = doctor(tmp_path, str(recipe), "--json", env=hub_env(tmp_path, hub, None))
    assert out.returncode == 1
    found = rows(out)
    assert found["Hub token"]["status"] == "fail" and "hf auth login" in found["Hub token"]["fix"]
    assert found["Hub access (recipe)"]["status"] == "fail"


def test_a_revoked_token_fails(tmp_path, hub):
    out = doctor(tmp_path, "--json", env=hub_env(tmp_path, hub, "hf_REVOKED_0123456789abcdefghijklmn"))
    assert out.returncode == 1 and rows(out)["Hub token"]["detail"].startswith("the Hub token is invalid or revoked")


def test_a_readable_private_key_and_a_broken_state_db_fail_with_their_fixes(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    from orchestrator.ssh_keys import ensure_keypair

    key, _ = ensure_keypair(home / "id_ed25519")
    os.chmod(key, 0o644)
    (home / "state.db").write_bytes(b"this is not sqlite" * 100)
    out = doctor(tmp_path, "--json")
    assert out.returncode == 1
    found = rows(out)
    assert found["podtune SSH key"]["status"] == "fail" and found["podtune SSH key"]["fix"] == f"chmod 600 {key}"
    assert found["state DB"]["status"] == "fail" and "mv " in found["state DB"]["fix"]

    os.chmod(key, 0o600)
    (home / "state.db").unlink()
    podtune("runs", home=home)  # creates a real state DB
    found = rows(doctor(tmp_path, "--json"))
    assert found["podtune SSH key"]["status"] == "ok" and found["state DB"]["status"] == "ok"
    assert "0 run(s), schema ok" in found["state DB"]["detail"]


def test_an_ssh_recipe_is_checked_against_its_host(tmp_path):
    key, public = generate_keypair(tmp_path / "user_key")
    pod = start_sshd(state_dir=tmp_path / "sshd", workspace=tmp_path / "ws", authorized_keys=[public],
                     env={}, isolate_workspace=False)
    try:
        ssh = {"host": "127.0.0.1", "port": pod.port, "user": "root", "key_path": str(key),
               "workspace": str(tmp_path / "ws"), "python": "/usr/bin/python3"}
        recipe = recipe_with(tmp_path, {"compute.provider": "ssh", "compute.ssh": ssh})
        found = rows(doctor(tmp_path, str(recipe), "--json"))
        check = found[f"ssh host root@127.0.0.1:{pod.port}"]
        assert check["status"] == "ok" and "logged in" in check["detail"] and "python 3." in check["detail"]
    finally:
        stop_sshd(pod)
    out = doctor(tmp_path, str(recipe))
    assert out.returncode == 1 and "nothing answers SSH there" in out.stdout
