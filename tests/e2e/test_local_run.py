"""The embedded default, end to end, exactly as a newcomer runs it: `podtune run recipes/tiny-cpu.yaml`."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch
from safetensors.torch import load_file

from tests.e2e.helpers import events, long_recipe, podtune, process_alive, processes_mentioning, wait_for


def _run_dir(home, run_id):
    return home / "local" / "workspace" / "runs" / run_id


def _latest_run_id(home):
    db = sqlite3.connect(home / "state.db")
    return db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    out = podtune("run", "recipes/tiny-cpu.yaml", "--yes", home=home)
    return home, _latest_run_id(home), out


def test_run_finishes_with_a_report(finished_run):
    home, run_id, out = finished_run
    text = out.stdout
    for phase in ("plan", "provision", "sync", "setup", "download", "train", "merge", "stop"):
        assert phase in text
    assert "loss" in text and "tokens/s" in text and "peak memory" in text and "cost" in text
    # Base and tuned answers are both shown; an empty answer is said to be empty, never a blank line.
    answers = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().startswith(("base :", "tuned:"))]
    assert len(answers) == 4 and all(answers), answers
    summary = json.loads((home / "runs" / run_id / "summary.json").read_text())
    assert summary["steps"] == 30
    assert summary["final_loss"] < summary["first_loss"]
    assert summary["cost"]["total_usd"] == 0.0
    assert summary["tokens_per_s"] > 0 and summary["peak_mem_mb"] > 0
    db = sqlite3.connect(home / "state.db")
    assert db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0] == "succeeded"


def test_report_has_loss_curve_png_time_and_next_steps_and_renders_again(finished_run):
    home, run_id, out = finished_run
    text = out.stdout
    assert "training loss:" in text and "step 1" in text and any("┤" in line for line in text.splitlines())
    png = home / "runs" / run_id / "loss.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and f"loss plot: {png}" in text
    assert "total time" in text and "next steps:" in text
    assert "try the model:" in text and f"podtune push {run_id}" in text
    # Not a terminal here, so rich would wrap at 80 columns: the command must stay whole to be pasted.
    tried = next(line.strip() for line in text.splitlines() if line.strip().startswith("python -c"))
    assert tried.endswith("[0]['generated_text'])\"") and f"/runs/{run_id}/merged'" in tried
    assert "--terminate" not in text  # the local provider has no volume that bills
    again = podtune("report", run_id, home=home)
    for words in ("training loss:", "prompt:", "tuned:", "next steps:", f"loss plot: {png}", "total time"):
        assert words in again.stdout, words
    data = json.loads(podtune("report", run_id, "--json", home=home).stdout)
    assert data["run_id"] == run_id and data["status"] == "succeeded" and data["total_seconds"] > 0


def test_the_report_shows_the_tuned_model_learned_the_data(finished_run):
    home, run_id, out = finished_run
    # 30 steps on a random-init model: it learns the data's template, which the base never writes.
    assert "learning: tuned answers follow the training data's format: 2 of 2 (base: 0 of 2)" in out.stdout
    summary = json.loads((home / "runs" / run_id / "summary.json").read_text())
    for judged in summary["learning"]["samples"]:
        assert judged["tuned"]["markers"] and not judged["base"]["markers"]
        assert judged["tuned"]["overlap"] > judged["base"]["overlap"]  # moved towards the training text


def test_adapter_and_merged_model_are_on_the_volume(finished_run):
    home, run_id, _ = finished_run
    run_dir = _run_dir(home, run_id)
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    merged = run_dir / "merged"
    assert (merged / "model.safetensors").is_file() and (merged / "tokenizer.json").is_file()
    base_dir = next((home / "local" / "workspace" / "hf").rglob("tiny-llama-v1"))
    base = load_file(base_dir / "model.safetensors")
    tuned = load_file(merged / "model.safetensors")
    differing = [k for k in base if k in tuned and not torch.equal(base[k].float(), tuned[k].float())]
    assert differing, "merged weights are identical to the base"

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(merged)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_events_record_progress_and_phases(finished_run):
    home, run_id, _ = finished_run
    evs = events(_run_dir(home, run_id) / "events.jsonl")
    steps = [e for e in evs if e["kind"] == "step"]
    assert len(steps) == 30 and all({"loss", "lr", "tokens", "tokens_per_s", "peak_mem_mb"} <= e.keys() for e in steps)
    assert [e["phase"] for e in evs if e["kind"] == "phase_end"] == ["download", "train", "merge"]
    assert evs[-1]["kind"] == "pipeline_done" and evs[-1]["ok"] is True
    # The laptop kept its own copy of every event, byte for byte.
    assert (home / "runs" / run_id / "events.jsonl").read_bytes() == (_run_dir(home, run_id) / "events.jsonl").read_bytes()


def test_the_pods_python_started_ahead_of_the_launch_ran_the_job(finished_run):
    """The training libraries were imported while the laptop synced and set up (remote/warm.py), and that process,
    handed the job at launch, wrote the events: the same run, begun earlier."""
    home, run_id, _ = finished_run
    run_dir = _run_dir(home, run_id)
    went = json.loads((run_dir / ".warm" / "went").read_text())
    launched = json.loads((run_dir / "run.json").read_text())["launched_at"]
    assert went["started_at"] < launched <= went["went_at"]
    start = next(e for e in events(run_dir / "events.jsonl") if e["kind"] == "pipeline_start")
    assert start["ts"] >= went["went_at"]
    assert list((home / "local" / "workspace" / "venvs").glob("last-python-*"))  # the next warm start's guess


def test_the_recorded_phases_are_the_documented_ones_with_plan_and_launch(finished_run):
    from orchestrator.run import RUN_PHASES
    from remote.events import Phase

    home, run_id, _ = finished_run
    db = sqlite3.connect(home / "state.db")
    rows = db.execute("SELECT phase, started_at, ended_at, ok FROM phases WHERE run_id = ? ORDER BY started_at",
                      (run_id,)).fetchall()
    # tiny-cpu has no output.hub_repo: the pod skips its push, so no push phase is recorded.
    assert [r[0] for r in rows] == [p.value for p in RUN_PHASES if p != Phase.PUSH]
    assert all(ok == 1 and end is not None for _, _, end, ok in rows)
    timed = {phase: (start, end) for phase, start, end, _ in rows}
    created = db.execute("SELECT created_at FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    assert timed["plan"][0] < created <= timed["plan"][1]  # planned before the run was recorded, ended after
    # The job's launch sits inside setup: run.json was written after setup began and before it ended.
    launched = json.loads((_run_dir(home, run_id) / "run.json").read_text())["launched_at"]
    assert timed["setup"][0] < launched <= timed["setup"][1]


def test_runs_status_and_logs_find_the_run(finished_run):
    home, run_id, _ = finished_run
    assert run_id in podtune("runs", home=home).stdout
    status = podtune("status", run_id, home=home).stdout
    assert "state: succeeded" in status and "train" in status and "RUNNING" not in status
    assert "cost so far: $0.0000" in status and f"next: podtune report {run_id}" in status
    logs = podtune("logs", run_id[:12], home=home).stdout
    assert "pipeline" in logs or "train" in logs


def test_stop_during_training_leaves_no_process(tmp_path):
    home = tmp_path / "home"
    recipe = long_recipe(tmp_path)
    podtune("run", str(recipe), "--yes", "--detach", home=home)
    run_id = _latest_run_id(home)
    run_dir = _run_dir(home, run_id)
    wait_for(lambda: any(e["kind"] == "step" for e in events(run_dir / "events.jsonl")), 120, "a training step")
    pid = int((run_dir / "pid").read_text())
    assert process_alive(pid)

    out = podtune("stop", run_id, home=home)
    assert "stopped" in out.stdout
    wait_for(lambda: not process_alive(pid), 30, "the pipeline to exit")
    assert processes_mentioning(str(run_dir)) == []
    # SIGTERM first: the trainer saved a checkpoint before stopping.
    assert any(run_dir.joinpath("checkpoints").glob("checkpoint-*"))
    db = sqlite3.connect(home / "state.db")
    assert db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0] == "stopped"
    # One state that agrees with the stop: not RUNNING, with the reason, the checkpoint left and what to type next.
    status = podtune("status", run_id, home=home).stdout
    assert "state: stopped" in status and "RUNNING" not in status and "running" not in status, status
    assert "reason: stopped by podtune stop" in status and "checkpoint: checkpoint-" in status
    assert f"next: podtune run {recipe}" in status
