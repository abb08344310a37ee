"""The pod refuses data that does not fit the recipe before it loads a model, naming the column and showing a record."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from remote.datacheck import DataError, check_columns, check_lengths, check_records, preview
from remote.data import prepare
from remote.recipe import dump_recipe, load_recipe

REPO = Path(__file__).resolve().parents[3]
RECIPES = REPO / "recipes"
QA = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(20)]


def _recipe(name: str = "tiny-cpu", training=None, **dataset):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    update = {"dataset": recipe.dataset.model_copy(update=dataset)}
    if training:
        update["training"] = recipe.training.model_copy(update=training)
    return recipe.model_copy(update=update)


def _run_dir(tmp_path: Path, records, name="tiny-instructions.jsonl") -> Path:
    data = tmp_path / "run" / "data"
    data.mkdir(parents=True)
    (data / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path / "run"


def test_alpaca_over_question_answer_names_the_columns_and_the_fix():
    with pytest.raises(DataError) as err:
        check_columns(_recipe(), ["question", "answer"], "data.jsonl")
    assert "no columns 'instruction'" in err.value.message and "'output'" in err.value.message
    assert "question, answer" in err.value.message
    assert "dataset.columns" in err.value.hint


def test_renamed_columns_pass_and_input_is_optional():
    check_columns(_recipe(columns={"instruction": "question", "output": "answer"}), ["question", "answer"], "x")


def test_missing_text_column_suggests_the_ones_there():
    with pytest.raises(DataError, match=r"no column 'text'.*set dataset.text_column to one of: body"):
        check_columns(_recipe("llama2-ko"), ["body"], "x")


def test_mostly_empty_outputs_are_refused_with_a_rendered_example():
    recipe = _recipe()
    records = [{"instruction": f"q{i}", "input": "", "output": ""} for i in range(8)] + [
        {"instruction": "q", "input": "", "output": "a"}]
    with pytest.raises(DataError) as err:
        check_records(recipe, records, "x", lambda r: preview(recipe, r))
    assert "8 of the first 9 records have an empty 'output'" in err.value.message
    assert "    | ### instruction:" in err.value.message and "    | q0" in err.value.message


def test_a_few_empty_inputs_are_fine_and_empty_split_is_not():
    recipe = _recipe()
    check_records(recipe, [{"instruction": "q", "input": "", "output": "a"}], "x", str)
    with pytest.raises(DataError, match="has no records"):
        check_records(recipe, [], "x", str)


def test_mostly_truncated_refused_without_packing_only():
    unpacked = _recipe(training={"packing": False})
    with pytest.raises(DataError, match=r"3 of the first 4 records are longer than 128 tokens"):
        check_lengths(unpacked, [500, 500, 500, 10], 128, "text", "x")
    check_lengths(unpacked, [500, 10, 10, 10], 128, "text", "x")
    check_lengths(_recipe(), [500, 500, 500, 10], 128, "text", "x")  # tiny-cpu packs


def test_prepare_refuses_wrong_columns(tmp_path, tiny_tokenizer):
    with pytest.raises(DataError, match="no columns 'instruction'"):
        prepare(_recipe(), tiny_tokenizer, _run_dir(tmp_path, QA), None)


def test_prepare_refuses_an_empty_file(tmp_path, tiny_tokenizer):
    with pytest.raises(DataError, match="is empty"):
        prepare(_recipe(), tiny_tokenizer, _run_dir(tmp_path, []), None)


def test_prepare_refuses_mostly_truncated_records(tmp_path, tiny_tokenizer):
    long = [{"instruction": "word " * 400, "input": "", "output": "a"} for _ in range(5)]
    recipe = _recipe(training={"packing": False})
    with pytest.raises(DataError, match="would be truncated"):
        prepare(recipe, tiny_tokenizer, _run_dir(tmp_path, long), None, max_length=128)


def test_pipeline_refuses_before_training_and_trains_nothing(tmp_path, tiny_dir):
    """The real pod entry point over question/answer records: a failed run that names the column, no checkpoint."""
    run_dir = _run_dir(tmp_path, QA)
    (run_dir / "recipe.yaml").write_text(dump_recipe(_recipe()))
    hf_home = tmp_path / "hf"
    shutil.copytree(tiny_dir, hf_home / "podtune" / tiny_dir.name)  # the built tiny model, where ensure_tiny_model looks
    env = {"PATH": "/usr/bin:/bin", "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    error = _pipeline_refused_in_train(run_dir, env)
    assert "DataError" in error and "no columns 'instruction'" in error
    assert not (run_dir / ".done-train").exists()


def _pipeline_refused_in_train(run_dir: Path, env: dict[str, str]) -> str:
    """Runs the pod's real entry point; asserts it failed in train, cleanly, with nothing trained; its error."""
    out = subprocess.run([sys.executable, "-m", "remote", "pipeline", "--run-dir", str(run_dir),
                          "--phases", "download,train,merge"], capture_output=True, text=True, timeout=240,
                         env=env, cwd=REPO)
    assert out.returncode == 1, out.stderr[-2000:]
    done = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()][-1]
    assert done["kind"] == "pipeline_done" and not done["ok"] and done["phase"] == "train"
    assert "Traceback" not in out.stderr
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "adapter").exists()
    return done["error"]


def test_a_hub_dataset_with_the_wrong_columns_is_refused_on_the_pod_and_trains_nothing(tmp_path, tiny_dir):
    """Hub datasets whose card lists no columns are checked where the data is: the pod loads the real dataset
    (datasets' Hub loader against the Hub emulator), refuses it naming the column, and trains nothing."""
    from tests.doubles.hub_emulator import HubEmulator, HubUser

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "recipe.yaml").write_text(dump_recipe(_recipe(source="kor/qa", split="train")))
    hf_home = tmp_path / "hf"
    shutil.copytree(tiny_dir, hf_home / "podtune" / tiny_dir.name)
    rows = "".join(json.dumps(r) + "\n" for r in QA).encode()
    with HubEmulator(users=[HubUser("kor")], tokens=[]) as hub:
        hub.add_dataset("kor/qa", {"data/train.jsonl": rows})  # no card: plan could not see the columns
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **hub.client_env(hf_home)}
        error = _pipeline_refused_in_train(run_dir, env)
    assert "no columns 'instruction'" in error and "question, answer" in error
