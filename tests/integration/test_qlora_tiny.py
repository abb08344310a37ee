"""A real 4-bit QLoRA run of the tiny model on CPU: train, merge, samples; SIGTERM keeps a checkpoint, a rerun resumes.

Nothing is mocked: bitsandbytes Linear4bit layers, peft, trl and the Trainer run as they do on a pod.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remote.events import EventLog, read_events
from remote.recipe import dump_recipe, load_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "tiny-cpu.yaml"
DATA = REPO / "recipes" / "data" / "tiny-instructions.jsonl"


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    import torch

    home = tmp_path_factory.mktemp("hf")
    threads = torch.get_num_threads()
    # One thread: this tiny model gains nothing from more, and a busy neighbour core makes OpenMP spin for seconds.
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(home))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.delenv("PODTUNE_TEST_STALL_AT_STEP", raising=False)
        yield home
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(hf_home):
    from remote.tiny import ensure_tiny_model

    return ensure_tiny_model(hf_home)


def new_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    (run_dir / "data").mkdir(parents=True)
    shutil.copy(DATA, run_dir / "data")  # what the orchestrator uploads
    return run_dir


def with_steps(recipe, max_steps: int, save_steps: int):
    return recipe.model_copy(
        update={"training": recipe.training.model_copy(update={"max_steps": max_steps, "save_steps": save_steps})}
    )


def events_of(run_dir: Path) -> list[dict]:
    return read_events(run_dir / "events.jsonl")[0]


def test_train_and_merge(tmp_path, model_dir):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from remote import merge, train

    recipe = load_recipe(RECIPE)  # the embedded default, as shipped
    run_dir = new_run(tmp_path)
    log = EventLog(run_dir)
    summary = train.run(run_dir, recipe, log, model_dir=model_dir, token=None)

    events = events_of(run_dir)
    model_event = next(e for e in events if e["kind"] == "model")
    assert model_event["linear4bit"] == 14  # 2 layers x (q, k, v, o, gate, up, down): real bitsandbytes layers
    steps = [e for e in events if e["kind"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 31)) and steps[0]["total_steps"] == 30
    losses = [e["loss"] for e in steps]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1, losses
    assert all(b["tokens"] > a["tokens"] for a, b in zip(steps, steps[1:]))
    assert all(e["tokens_per_s"] > 0 and e["peak_mem_mb"] > 0 and e["lr"] is not None for e in steps)
    done = [e for e in events if e["kind"] == "train_done"]
    assert len(done) == 1 and summary["interrupted"] is False
    assert summary["steps"] == 30 and summary["final_loss"] == pytest.approx(losses[-1])
    assert summary["first_loss"] == pytest.approx(losses[0]) and summary["tokens"] == steps[-1]["tokens"]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-15", "checkpoint-30"]

    result = merge.run(run_dir, recipe, log, model_dir=model_dir, token=None)
    merged_file = run_dir / "merged" / "model.safetensors"
    assert merged_file.is_file() and (run_dir / "merged" / "tokenizer.json").is_file()
    assert (run_dir / "merged" / "generation_config.json").is_file()
    assert result["max_weight_diff"] > 0 and result["max_logit_diff"] < 1e-3
    base_weights = load_file(model_dir / "model.safetensors")
    merged_weights = load_file(merged_file)
    assert set(merged_weights) == set(base_weights)
    changed = [k for k in base_weights if not torch.equal(base_weights[k], merged_weights[k])]
    assert "model.layers.0.self_attn.q_proj.weight" in changed and "model.embed_tokens.weight" not in changed
    plain = AutoModelForCausalLM.from_pretrained(run_dir / "merged")  # no peft, no quantization config
    assert type(plain).__name__ == "LlamaForCausalLM" and getattr(plain.config, "quantization_config", None) is None
    assert [s["prompt"] for s in result["samples"]] == recipe.eval.prompts
    assert all(isinstance(s["base"], str) and isinstance(s["tuned"], str) for s in result["samples"])
    merge_done = [e for e in events_of(run_dir) if e["kind"] == "merge_done"]
    assert len(merge_done) == 1 and merge_done[0]["samples"] == result["samples"]


CHILD = """
import json, sys
from pathlib import Path
from remote import train
from remote.events import EventLog
from remote.recipe import load_recipe
run_dir, model_dir = Path(sys.argv[1]), Path(sys.argv[2])
summary = train.run(run_dir, load_recipe(run_dir / "recipe.yaml"), EventLog(run_dir), model_dir=model_dir, token=None)
print("SUMMARY " + json.dumps(summary))
"""


def test_sigterm_keeps_a_checkpoint_and_a_rerun_resumes(tmp_path, hf_home, model_dir):
    from remote import train

    recipe = with_steps(load_recipe(RECIPE), max_steps=12, save_steps=50)  # no scheduled save before the signal
    run_dir = new_run(tmp_path)
    (run_dir / "recipe.yaml").write_text(dump_recipe(recipe))
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PODTUNE_TEST_STALL_AT_STEP": "3"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(run_dir), str(model_dir)], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.time() + 120
        while not any(e["kind"] == "step" and e["step"] == 3 for e in events_of(run_dir)):
            assert child.poll() is None, child.stdout.read()
            assert time.time() < deadline, "no step 3 within 120 s"
            time.sleep(0.2)
        time.sleep(1.5)  # now blocked by the stall hook, as a hung pod would be
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, out
    summary = json.loads(out.split("SUMMARY ", 1)[1])
    assert summary["interrupted"] is True and summary["checkpoint"] == "checkpoint-4"
    events = events_of(run_dir)
    assert [e for e in events if e["kind"] == "interrupted"] == [
        {"ts": pytest.approx(time.time(), abs=300), "kind": "interrupted", "reason": "SIGTERM", "step": 4}
    ]
    assert not any(e["kind"] == "train_done" for e in events) and not (run_dir / "adapter").exists()
    assert (run_dir / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors").is_file()

    # The restarted pod: same run directory, training continues from step 4 to the end.
    resumed = train.run(run_dir, recipe, EventLog(run_dir), model_dir=model_dir, token=None)
    events = events_of(run_dir)
    assert [e["checkpoint"] for e in events if e["kind"] == "resumed"] == ["checkpoint-4"]
    after = [e["step"] for e in events if e["kind"] == "step"][4:]
    assert after == list(range(5, 13)) and resumed["steps"] == 12 and resumed["resumed_from"] == "checkpoint-4"
    assert resumed["interrupted"] is False and (run_dir / "adapter" / "adapter_model.safetensors").is_file()
