"""The W&B key a wandb recipe needs: found like the Hub token, required before renting, carried as a 0600 file,
masked, and removed with the token; TensorBoard's files come back only inside the run folder."""

from __future__ import annotations

import io
import os
import stat
import sys
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.pod import remote_job, retrieve
from orchestrator.credentials import missing
from orchestrator.pod.pod_secrets import RAM_DIR, WANDB_KEY, deliver_secret, remove_token, secret_paths
from orchestrator.providers.local import LocalProvider
from orchestrator.run import Runner
from orchestrator.secrets import redactor, wandb_api_key
from orchestrator.state import State
from orchestrator.pod.transport import ExecResult, LocalTransport
from orchestrator.ui import UI
from remote.events import WorkspacePaths
from remote.recipe import load_recipe
from tests.conftest import REPO
from tests.recipes import recipe_variant

KEY = "wandbCANARYunit" + "0123456789abcdef0123456789abcd"


@pytest.fixture
def run_id():
    rid = f"tracker-test-{uuid.uuid4().hex[:12]}"
    yield rid
    for path in Path(RAM_DIR).glob(f"{rid}.*") if Path(RAM_DIR).exists() else []:
        path.unlink()


def wandb_recipe():
    return recipe_variant({"training.report_to": ["wandb"]})


def test_a_wandb_recipe_needs_the_key_and_says_how_to_set_it(tmp_path, monkeypatch):
    recipe = wandb_recipe()
    [(what, how)] = missing(recipe, "local")
    assert "report_to" in what and "WANDB_API_KEY" in how and "wandb login" in how
    assert missing(load_recipe(REPO / "recipes" / "tiny-cpu.yaml"), "local") == []
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert missing(recipe, "local") == []


def test_the_key_of_wandb_login_is_found_and_masked(tmp_path, monkeypatch):
    netrc = Path(os.environ["HOME"]) / ".netrc"
    netrc.parent.mkdir(parents=True, exist_ok=True)
    netrc.write_text(f"machine api.wandb.ai\n  login user\n  password {KEY}\n")
    netrc.chmod(0o600)
    assert wandb_api_key() == KEY
    assert KEY not in redactor()(f"key={KEY}")


def test_the_key_file_is_private_and_goes_with_the_token(tmp_path, run_id):
    layout = WorkspacePaths.on_pod(str(tmp_path / "workspace"))
    path = Path(deliver_secret(LocalTransport(), sys.executable, layout, run_id, KEY, WANDB_KEY))
    assert path.name == f"{run_id}.wandb_key" and str(path) in secret_paths(layout, run_id, WANDB_KEY)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600 and path.read_text() == KEY
    remove_token(LocalTransport(), layout, run_id)
    assert not path.exists()


def test_an_interrupted_launch_leaves_no_wandb_key_on_the_pod(tmp_path, run_id, monkeypatch):
    provider = LocalProvider()
    pod = provider.find("podtune-tiny-cpu")
    layout = WorkspacePaths.on_pod(pod.workspace)
    runner = Runner(State(), UI(Console(file=io.StringIO())))
    launched: dict = {}

    def ctrl_c(*args, **kwargs):
        launched.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(remote_job, "launch", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        runner.launch(LocalTransport(), provider, pod, layout, run_id, wandb_recipe(), sys.executable, None,
                      wandb_key=KEY)
    assert launched["wandb_key_file"] in secret_paths(layout, run_id, WANDB_KEY)  # a path, never the key
    assert not [p for p in secret_paths(layout, run_id, WANDB_KEY) if Path(p).exists()]
    assert not [p for p in Path(pod.workspace).rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]


class ListingTransport(LocalTransport):
    """A pod whose `find` names files outside the folder (a planted name must not write outside the run)."""

    def __init__(self, names: str):
        super().__init__()
        self.names = names

    def exec(self, command, *, timeout_s=120, stdin=None):
        return ExecResult(0, self.names, "") if command.startswith("cd ") else super().exec(command, timeout_s=timeout_s)


def test_tensorboard_files_come_back_and_nothing_lands_outside_the_run_folder(tmp_path):
    remote = tmp_path / "pod" / "run"
    (remote / "tensorboard" / "a").mkdir(parents=True)
    (remote / "tensorboard" / "a" / "events.out.tfevents.1").write_bytes(b"tb")
    local = tmp_path / "laptop" / "run"
    local.mkdir(parents=True)
    got = retrieve.fetch_tree(LocalTransport(), str(remote), local)
    assert got == ["tensorboard/a/events.out.tfevents.1"]
    assert (local / "tensorboard" / "a" / "events.out.tfevents.1").read_bytes() == b"tb"
    assert retrieve.fetch_tree(LocalTransport(), str(tmp_path / "none"), local) == []

    (tmp_path / "pod" / "secret").write_text("outside")
    planted = ListingTransport("./../../secret\n/etc/passwd\n./a/events.out.tfevents.1\n")
    assert retrieve.fetch_tree(planted, str(remote), local) == ["tensorboard/a/events.out.tfevents.1"]
    assert not (tmp_path / "laptop" / "secret").exists()
