"""The Hub token on the pod: private from its first byte, never written through a planted link, gone after a failed launch."""

from __future__ import annotations

import io
import os
import stat
import sys
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.pod import remote_job
from orchestrator.pod.pod_secrets import RAM_DIR, deliver_token, token_paths
from orchestrator.providers.local import LocalProvider
from orchestrator.run import Runner
from orchestrator.state import State
from orchestrator.pod.transport import LocalTransport
from orchestrator.ui import UI
from remote.events import WorkspacePaths
from remote.recipe import load_recipe
from tests.conftest import REPO

TOKEN = "hf_CANARY_pod_secret_0123456789abcdef"


@pytest.fixture
def run_id():
    """A run id no other test (or engineer) uses: /dev/shm is shared by everything on this machine."""
    rid = f"secret-test-{uuid.uuid4().hex[:12]}"
    yield rid
    for path in (Path(RAM_DIR) / f"{rid}.hf_token",):
        if path.is_symlink() or path.exists():
            path.unlink()


def _holding_token(*roots: Path) -> list[Path]:
    found = []
    for root in roots:
        for path in ([root] if root.is_file() else root.rglob("*") if root.exists() else []):
            if path.is_file() and not path.is_symlink() and TOKEN.encode() in path.read_bytes():
                found.append(path)
    return found


def test_the_token_file_is_0600_in_a_0700_folder_and_a_planted_link_is_not_followed(tmp_path, run_id):
    layout = WorkspacePaths.on_pod(str(tmp_path / "workspace"))
    first = Path(token_paths(layout, run_id)[0])
    first.parent.mkdir(mode=0o700, exist_ok=True)
    decoy = tmp_path / "elsewhere.txt"
    decoy.write_text("not yours\n")
    first.symlink_to(decoy)  # planted where the token will go

    path = Path(deliver_token(LocalTransport(), sys.executable, layout, run_id, TOKEN))

    assert decoy.read_text() == "not yours\n"
    info = os.lstat(path)
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert path.read_text() == TOKEN


def test_an_interrupted_launch_leaves_no_token_on_the_pod(tmp_path, run_id, monkeypatch):
    provider = LocalProvider()
    pod = provider.find("podtune-tiny-cpu")
    layout = WorkspacePaths.on_pod(pod.workspace)
    recipe = load_recipe(REPO / "recipes" / "tiny-cpu.yaml")
    runner = Runner(State(), UI(Console(file=io.StringIO())))

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt  # the user gives up while the job is being started

    monkeypatch.setattr(remote_job, "launch", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        runner.launch(LocalTransport(), provider, pod, layout, run_id, recipe, sys.executable, TOKEN)

    assert _holding_token(Path(pod.workspace), *map(Path, token_paths(layout, run_id))) == []
