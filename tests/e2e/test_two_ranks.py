"""`compute.gpu_count: 2` on the local provider: the pod's pipeline and launch command, two torchrun ranks on
CPU (gloo).

Each rank loads its own 4-bit model (real bitsandbytes layers) and DDP trains the adapter; the artefacts are those
of one process: events written once by rank 0, one adapter, one merged model, resumable checkpoints.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from pathlib import Path

from orchestrator.pod.remote_job import launch
from orchestrator.pod.transport import LocalTransport
from remote.events import WorkspacePaths
from tests.conftest import env_without_secrets
from tests.e2e.helpers import events, long_recipe, podtune, processes_mentioning, wait_for

TWO_RANKS = {"compute.gpu_count": 2, "training.distributed": "ddp"}


def two_rank_recipe(tmp_path: Path, steps: int) -> Path:
    """tiny-cpu on two ranks (DDP), checkpoints only when stopped."""
    return long_recipe(tmp_path, steps, TWO_RANKS)


def latest_run(home: Path) -> tuple[str, Path]:
    run_id = sqlite3.connect(home / "state.db").execute(
        "SELECT id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()[0]
    return run_id, home / "local" / "workspace" / "runs" / run_id


def status_of(home: Path, run_id: str) -> str:
    return sqlite3.connect(home / "state.db").execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0]


def kinds(run_dir: Path, kind: str) -> list[dict]:
    return [e for e in events(run_dir / "events.jsonl") if e["kind"] == kind]


def rank_pids(run_dir: Path) -> dict[int, int]:
    """{rank: pid} of the training ranks of this run, read from each process's environment."""
    found = {}
    for pid in processes_mentioning(str(run_dir)):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            env = dict(v.split(b"=", 1) for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in v)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b"train-rank" in cmdline and b"RANK" in env:
            found[int(env[b"RANK"])] = pid
    return found


def test_two_ranks_stop_resume_and_finish_as_one_process_would(tmp_path):
    home = tmp_path / "home"
    recipe = two_rank_recipe(tmp_path, steps=5)  # no scheduled checkpoint: the stop must write one
    env = {"PODTUNE_TEST_STALL_AT_STEP": "2"}  # both ranks hang after step 2, as a stuck job would
    podtune("run", str(recipe), "--yes", "--detach", home=home, env=env)
    run_id, run_dir = latest_run(home)
    wait_for(lambda: [e["step"] for e in kinds(run_dir, "step")] == [1, 2] and len(rank_pids(run_dir)) == 2, 120,
             "step 2 on two ranks")
    ranks = rank_pids(run_dir)

    # `podtune stop`: the stop reaches both ranks, which stop at the same step and save one checkpoint.
    assert "stopped" in podtune("stop", run_id, home=home).stdout
    wait_for(lambda: not processes_mentioning(str(run_dir)), 60, "every rank, torchrun and the pipeline to exit")
    assert all(not Path(f"/proc/{pid}").exists() for pid in ranks.values())
    assert [(e["reason"], e["step"]) for e in kinds(run_dir, "interrupted")] == [("SIGTERM", 3)]
    assert (run_dir / "checkpoints" / "checkpoint-3" / "adapter_model.safetensors").is_file()
    assert not kinds(run_dir, "train_done") and status_of(home, run_id) == "stopped"

    # The restarted pod relaunches with the same command: both ranks resume from the checkpoint, then merge.
    layout = WorkspacePaths.on_pod(str(home / "local" / "workspace"))
    launch(LocalTransport(env=env_without_secrets(PODTUNE_HOME=str(home))), layout, run_id, sys.executable,
           token_file=None, phases="train,merge")
    wait_for(lambda: (run_dir / "exit_code").is_file(), 180, "the relaunched train and merge phases to end")
    assert (run_dir / "exit_code").read_text().strip() == "0", (run_dir / "train.log").read_text()[-3000:]
    assert [e["checkpoint"] for e in kinds(run_dir, "resumed")] == ["checkpoint-3"]

    log = (run_dir / "train.log").read_text()
    for rank in (0, 1):  # each rank holds its own 4-bit model; torchrun tags its lines
        assert f"[rank{rank}]: rank {rank}/2: model loaded with 14 bitsandbytes Linear4bit layers" in log
    assert [e["world_size"] for e in kinds(run_dir, "model")] == [2, 2]  # rank 0 alone writes events, per launch
    assert not (run_dir / ".rank-logs").exists()  # torchrun's unredacted per-rank copies are gone
    assert [e["step"] for e in kinds(run_dir, "step")] == [1, 2, 3, 4, 5]
    done = kinds(run_dir, "train_done")
    assert len(done) == 1 and done[0]["resumed_from"] == "checkpoint-3" and done[0]["tokens"] > 0
    assert [p.name for p in run_dir.glob("adapter*")] == ["adapter"]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    merged = kinds(run_dir, "merge_done")
    assert len(merged) == 1 and merged[0]["max_weight_diff"] > 0  # verified as for one process
    assert (run_dir / "merged" / "model.safetensors").is_file()
    assert kinds(run_dir, "pipeline_done")[-1]["ok"] is True


def test_a_rank_that_dies_fails_the_run_with_its_last_lines(tmp_path):
    home = tmp_path / "home"
    podtune("run", str(two_rank_recipe(tmp_path, steps=3000)), "--yes", "--detach", home=home)
    run_id, run_dir = latest_run(home)
    wait_for(lambda: kinds(run_dir, "step") and len(rank_pids(run_dir)) == 2, 120, "training on two ranks")
    os.kill(rank_pids(run_dir)[1], signal.SIGKILL)  # an OOM kill, a hardware fault

    wait_for(lambda: kinds(run_dir, "pipeline_done"), 90, "the pipeline to report the failure")
    wait_for(lambda: not processes_mentioning(str(run_dir)), 60, "rank 0 and torchrun to exit")
    error = kinds(run_dir, "pipeline_done")[0]["error"]
    assert "rank 1 of 2 was killed by SIGKILL; torchrun stopped the other ranks" in error
    # Rank 1's own last lines, as torchrun tee'd them into train.log with its prefix: the last one must be there,
    # and only rank 1's. Which lines they are varies: torchrun echoes a rank's stdout and stderr files on separate
    # threads, and on a kill its stdout's last lines ("model loaded ...") may not be echoed before it exits.
    own = [line.split("[rank1]: ", 1)[1].rsplit("\r", 1)[-1] for line in
           (run_dir / "train.log").read_text(errors="replace").splitlines() if line.startswith("[rank1]: ")]
    own = [line for line in own if line.strip()]
    assert own and f"  {own[-1]}" in error.splitlines()
    shown = error.split("Last lines of rank 1:\n", 1)[1].splitlines()
    assert shown and all(line[2:] in own for line in shown)
    assert (run_dir / "exit_code").read_text().strip() == "1"

    attached = podtune("attach", run_id, home=home, check=False)
    assert attached.returncode != 0 and "rank 1 of 2 was killed by SIGKILL" in attached.stdout + attached.stderr
    assert status_of(home, run_id) == "failed"
