"""`plan` (and `run`, `validate`) refuse a local data file that cannot train the recipe, before renting anything."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import REPO, env_without_secrets
from tests.recipes import write_recipe_variant


def _recipe_over(tmp_path: Path, records: list, columns: dict[str, str] | None = None, raw: str | None = None) -> Path:
    data = tmp_path / "data" / "tiny-instructions.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(raw if raw is not None else "".join(json.dumps(r) + "\n" for r in records))
    return write_recipe_variant(tmp_path / "r.yaml", {"dataset.columns": columns} if columns else {})


def _podtune(bin_: str, home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([bin_, *args], capture_output=True, text=True, timeout=60, cwd=REPO,
                          env=env_without_secrets(PODTUNE_HOME=str(home), COLUMNS="200"))


def test_plan_refuses_question_answer_records_for_alpaca(tmp_path, podtune_bin):
    recipe = _recipe_over(tmp_path, [{"question": "1+1?", "answer": "2"}] * 3)
    out = _podtune(podtune_bin, tmp_path / "home", "plan", str(recipe))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "has no columns 'instruction'" in out.stderr and "question, answer" in out.stderr
    assert "dataset.columns" in out.stderr and "Traceback" not in out.stderr
    assert "» plan" not in out.stdout


def test_run_refuses_before_creating_a_run(tmp_path, podtune_bin):
    recipe = _recipe_over(tmp_path, [{"question": "1+1?", "answer": "2"}] * 3)
    out = _podtune(podtune_bin, tmp_path / "home", "run", str(recipe), "--yes")
    assert out.returncode == 2 and "no columns 'instruction'" in out.stderr
    assert not (tmp_path / "home" / "runs").exists() or not any((tmp_path / "home" / "runs").iterdir())


def test_column_map_makes_the_same_file_plan(tmp_path, podtune_bin):
    recipe = _recipe_over(tmp_path, [{"question": "1+1?", "answer": "2"}] * 3,
                          columns={"instruction": "question", "output": "answer"})
    out = _podtune(podtune_bin, tmp_path / "home", "plan", str(recipe))
    assert out.returncode == 0, out.stderr
    assert "» plan" in out.stdout


def test_empty_outputs_show_a_rendered_record(tmp_path, podtune_bin):
    recipe = _recipe_over(tmp_path, [{"instruction": "say hi", "input": "", "output": ""}] * 4)
    out = _podtune(podtune_bin, tmp_path / "home", "plan", str(recipe))
    assert out.returncode == 2
    assert "4 of the first 4 records have an empty 'output'" in out.stderr
    assert "| say hi" in out.stderr


def test_empty_file_and_bad_line_are_named(tmp_path, podtune_bin):
    recipe = _recipe_over(tmp_path, [], raw="")
    out = _podtune(podtune_bin, tmp_path / "home", "validate", str(recipe))
    assert out.returncode == 2 and "has no records" in out.stderr
    recipe = _recipe_over(tmp_path, [], raw='{"instruction": "a", "output": "b"}\n{oops\n')
    out = _podtune(podtune_bin, tmp_path / "home", "validate", str(recipe))
    assert out.returncode == 2 and "line 2: is not valid JSON" in out.stderr
