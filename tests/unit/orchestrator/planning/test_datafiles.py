"""Local data: a recipe names data only beside itself, --data names the rest, plan lists it, bad files say where."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.pod.sync import sync, tree_entries
from orchestrator.pod.transport import LocalTransport
from tests.conftest import REPO, env_without_secrets
from tests.recipes import write_recipe_variant

DATA = REPO / "recipes" / "data" / "tiny-instructions.jsonl"
SECRET = "api_key = 'rpa_SECRET_canary_0123456789'\n"


def _podtune(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "podtune"), *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=env_without_secrets(PODTUNE_HOME=str(home), COLUMNS="200"))


@pytest.fixture
def laptop(tmp_path):
    """A user's home with a RunPod key in it, and a folder holding a shared recipe."""
    secret = tmp_path / "me" / ".runpod" / "config.toml"
    secret.parent.mkdir(parents=True)
    secret.write_text(SECRET)
    shared = tmp_path / "shared-recipes"
    (shared / "data").mkdir(parents=True)
    shutil.copy(DATA, shared / "data" / DATA.name)
    return secret, shared


def _recipe(folder: Path, source: str, name: str = "r.yaml", validate: bool = True) -> Path:
    return write_recipe_variant(folder / name, {"dataset.source": source}, validate=validate)


@pytest.mark.parametrize("source", ["ABSOLUTE", "../me/.runpod/config.toml", "~/.runpod/config.toml"])
def test_a_recipe_cannot_name_a_laptop_file_outside_its_folder(laptop, tmp_path, source):
    secret, shared = laptop
    recipe = _recipe(shared, str(secret) if source == "ABSOLUTE" else source, validate=False)  # the test is the refusal
    for command in ("validate", "plan", "run"):
        out = _podtune(command, str(recipe), *(["--yes"] if command == "run" else []), home=tmp_path / "home")
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        assert "dataset.source" in out.stderr and "--data" in out.stderr and "Traceback" not in out.stderr
    assert not list((tmp_path / "home").rglob("config.toml")), "the secret was copied to the pod's workspace"


def test_a_symlink_beside_the_recipe_cannot_lead_out_of_its_folder(laptop, tmp_path):
    secret, shared = laptop
    (shared / "data" / "innocent.jsonl").symlink_to(secret)
    recipe = _recipe(shared, "data/innocent.jsonl")
    out = _podtune("run", str(recipe), "--yes", home=tmp_path / "home")
    assert out.returncode == 2 and "leads out of the recipe's folder" in out.stderr, out.stderr
    assert "--data PATH" in out.stderr
    pod_files = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert not any(SECRET in p.read_text(errors="replace") for p in pod_files)


def test_plan_lists_every_local_file_it_uploads_and_data_comes_from_the_command_line(laptop, tmp_path):
    _, shared = laptop
    elsewhere = tmp_path / "datasets" / "mine.jsonl"
    elsewhere.parent.mkdir()
    shutil.copy(DATA, elsewhere)
    recipe = _recipe(shared, "data/tiny-instructions.jsonl")

    own = _podtune("plan", str(recipe), home=tmp_path / "home")
    assert own.returncode == 0, own.stderr
    assert str((shared / "data" / DATA.name).resolve()) in own.stdout

    given = _podtune("plan", str(recipe), "--data", str(elsewhere), home=tmp_path / "home")
    assert given.returncode == 0, given.stderr
    assert str(elsewhere.resolve()) in given.stdout and str(shared / "data") not in given.stdout


@pytest.mark.parametrize("content,line,what", [
    ('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n', 2, "not valid JSON"),
    ("instruction,output\nhello,world\n", 1, "not valid JSON"),
    ('{"instruction": "a", "output": "b"}\n\n["a list"]\n', 3, "must be a JSON object"),
    (b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff"}\n', 2, "not UTF-8"),
])
def test_a_bad_data_file_names_the_file_and_line_without_a_traceback(tmp_path, content, line, what):
    folder = tmp_path / "recipes"
    (folder / "data").mkdir(parents=True)
    data = folder / "data" / "bad.jsonl"
    data.write_bytes(content if isinstance(content, bytes) else content.encode())
    for command in ("validate", "plan"):
        out = _podtune(command, str(_recipe(folder, "data/bad.jsonl")), home=tmp_path / "home")
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert f"bad.jsonl, line {line}" in out.stderr and what in out.stderr


def test_a_non_json_file_given_with_data_is_refused_by_name(tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_text("instruction,output\n")
    out = _podtune("plan", str(REPO / "recipes" / "tiny-cpu.yaml"), "--data", str(csv), home=tmp_path / "home")
    assert out.returncode == 2 and "--data" in out.stderr and ".jsonl" in out.stderr and "Traceback" not in out.stderr


def test_sync_never_follows_a_symlink_out_of_the_tree_it_sends(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "code.py").write_text("x = 1\n")
    (src / "inside.py").symlink_to(src / "code.py")
    outside = tmp_path / "id_ed25519"
    outside.write_text("PRIVATE KEY\n")
    (src / "key").symlink_to(outside)
    (src / "dir").symlink_to(tmp_path, target_is_directory=True)
    pod = tmp_path / "pod"
    sync(LocalTransport(), sys.executable, tree_entries(src, str(pod)))
    assert sorted(p.name for p in pod.iterdir()) == ["code.py", "inside.py"]
