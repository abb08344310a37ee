"""Error messages that do not mislead: the CLI run as a person runs it, judged by what it prints and its exit code."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO, env_without_secrets
from tests.recipes import write_recipe_variant

TINY = REPO / "recipes" / "tiny-cpu.yaml"


def _podtune(bin_: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = env_without_secrets(PODTUNE_HOME=str(tmp_path / "home"), HOME=str(tmp_path / "user"), COLUMNS="250",
                              HF_HOME=str(tmp_path / "hf"))
    return subprocess.run([bin_, *args], capture_output=True, text=True, timeout=60, cwd=REPO, env=env)


def test_missing_recipe_file_hints_at_the_path_not_at_fields(tmp_path, podtune_bin):
    out = _podtune(podtune_bin, tmp_path, "plan", "recipes/tiny-cpu.yml")
    assert out.returncode == 2 and "no such file" in out.stderr
    assert "fix the fields" not in out.stderr and "recipes/tiny-cpu.yaml" in out.stderr


def test_validate_checks_every_file_and_fails_if_any_is_bad(tmp_path, podtune_bin):
    bad = tmp_path / "bad.yaml"
    text, edits = re.subn(r"(?m)^  learning_rate: .*$", "  learning_rate: -1", TINY.read_text())
    assert edits == 1  # a reformatted recipe must fail here, not silently produce a valid file
    bad.write_text(text)
    out = _podtune(podtune_bin, tmp_path, "validate", str(tmp_path / "nope.yaml"), str(bad), str(TINY))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "nope.yaml: 1 problem(s)" in out.stderr and "no such file" in out.stderr
    assert "training.learning_rate (line 27)" in out.stderr
    assert "tiny-cpu.yaml: ok (tiny-cpu)" in out.stdout
    assert "2 of 3 recipe(s) have problems" in out.stderr and "Traceback" not in out.stderr


def test_validate_all_good_exits_0(tmp_path, podtune_bin):
    out = _podtune(podtune_bin, tmp_path, "validate", str(TINY), str(REPO / "recipes" / "llama2-ko.yaml"))
    assert out.returncode == 0 and out.stdout.count(": ok (") == 2, out.stderr


def test_every_missing_credential_is_reported_at_once(tmp_path, podtune_bin):
    recipe = tmp_path / "r.yaml"
    (tmp_path / "data").mkdir()
    shutil.copy(REPO / "recipes" / "data" / "tiny-instructions.jsonl", tmp_path / "data")
    write_recipe_variant(recipe, {"output.hub_repo": "me/tiny"})
    out = _podtune(podtune_bin, tmp_path, "plan", str(recipe), "--provider", "runpod")
    assert out.returncode == 1, out.stderr
    said = " ".join(out.stderr.split())
    assert "2 credential(s) missing" in said and "RUNPOD_API_KEY" in said and "HF_TOKEN" in said
    run = _podtune(podtune_bin, tmp_path, "run", str(recipe), "--provider", "runpod", "--yes")
    assert run.returncode == 1 and "2 credential(s) missing" in " ".join(run.stderr.split())
