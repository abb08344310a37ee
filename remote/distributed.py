"""The multi-GPU train phase: torchrun starts one rank per GPU; this module only launches it and reads its output.

torchrun does the distributed work: rendezvous, one process per GPU, and stopping every rank when one fails
(then it prints which rank failed first). Here: every rank's output reaches train.log through this process,
tagged with its rank and redacted like the pipeline's own; a stop reaches torchrun exactly once (it passes it
to every rank, which saves a checkpoint); and a failed rank's last lines become the run's error.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path

from .events import EventKind, RunPaths, read_events

LINE_PREFIX = "[rank${rank}]: "  # torchrun's TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE
KEEP_LINES = 5000  # enough output to find a failed rank's last lines in; older lines are only in train.log
TAIL_LINES = 12
PR_SET_PDEATHSIG = 1
LINUX = sys.platform.startswith("linux")


def command(run_dir: Path, model_dir: Path, nproc: int, token_file: str | None,
            wandb_key_file: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           # --tee is what makes torchrun tag each line with its rank; the copies it keeps are deleted afterwards.
           "--log-dir", str(rank_logs(run_dir)), "--tee", "3",
           "-m", "remote", "train-rank", "--run-dir", str(run_dir), "--model-dir", str(model_dir)]
    return (cmd + (["--token-file", token_file] if token_file else [])
            + (["--wandb-key-file", wandb_key_file] if wandb_key_file else []))


def rank_logs(run_dir: Path) -> Path:
    """torchrun's own per-rank copies of the output: they skip redaction, so they never outlive the phase."""
    return RunPaths(Path(run_dir)).rank_logs


def _prctl():
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(prctl=None) -> None:
    """Linux: the kernel SIGKILLs this process when its parent dies. torchrun puts each rank in its own session,
    so a SIGKILL of the job's process group (a stop past its grace) would otherwise leave ranks holding GPUs."""
    if LINUX:
        (prctl or _prctl())(PR_SET_PDEATHSIG, signal.SIGKILL)


def train(run_dir: Path, nproc: int, model_dir: Path, token_file: str | None, *,
          wandb_key_file: str | None = None) -> dict:
    """Run the train phase on nproc ranks; the train_done summary rank 0 wrote, or `interrupted`."""
    env = {**os.environ, "TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE": LINE_PREFIX}
    events_path = RunPaths(run_dir).events
    start = events_path.stat().st_size if events_path.exists() else 0  # a resumed run has older events
    stops: list[int] = []
    prctl = _prctl() if LINUX else None  # looked up here: the forked child should do as little as possible
    proc = subprocess.Popen(
        command(run_dir, model_dir, nproc, token_file, wandb_key_file), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        # On Linux torchrun gets its own session so a stop reaches it once, from here (a second SIGTERM would cut
        # its shutdown of the ranks short), and dies with this process. Elsewhere the group's signal reaches it.
        start_new_session=LINUX, preexec_fn=(lambda: die_with_parent(prctl)) if LINUX else None,
    )

    def on_stop(signum, frame):
        if not stops and LINUX:
            proc.send_signal(signal.SIGTERM)
        stops.append(signum)

    previous = {s: signal.signal(s, on_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    lines: deque[str] = deque(maxlen=KEEP_LINES)
    try:
        assert proc.stdout is not None  # started with stdout=PIPE
        for raw in proc.stdout:  # ends when torchrun exits; the pod's watchdog bounds a hung job in time
            line = raw.decode("utf-8", "replace")  # split on \n only: a progress bar's \r stays inside its line
            sys.stdout.write(line)
            lines.append(line.rstrip("\r\n"))
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        shutil.rmtree(rank_logs(run_dir), ignore_errors=True)
    sys.stdout.flush()
    events, _ = read_events(events_path, start)
    if stops or any(e.get("kind") == EventKind.INTERRUPTED for e in events):
        return {"interrupted": True}
    done = [e for e in events if e.get("kind") == EventKind.TRAIN_DONE]
    if code != 0 or not done:
        raise RuntimeError(failure(list(lines), code, nproc))
    return {k: v for k, v in done[-1].items() if k not in ("ts", "kind")}


def failure(lines: list[str], code: int, nproc: int) -> str:
    """The run's error: which rank failed first, how, and its last output lines (from torchrun's summary)."""
    text = "\n".join(lines)
    cause = text.rsplit("Root Cause (first observed failure):", 1)
    rank = re.search(r"^\s*rank\s*:\s*(\d+)", cause[1], re.M) if len(cause) == 2 else None
    if rank is None:
        return f"distributed training on {nproc} ranks exited with code {code}; see train.log"
    exit_code = re.search(r"^\s*exitcode\s*:\s*(-?\d+)", cause[1], re.M)
    how = _exit_text(int(exit_code.group(1))) if exit_code else "failed"
    prefix = LINE_PREFIX.replace("${rank}", rank.group(1))
    # What a terminal would show of each line: the last state of a progress bar redrawn with \r.
    bodies = [line[len(prefix):].rsplit("\r", 1)[-1] for line in lines if line.startswith(prefix)]
    tail = [body for body in bodies if body.strip()]
    shown = "\n".join(f"  {line}" for line in tail[-TAIL_LINES:]) or "  (no output)"
    return (f"rank {rank.group(1)} of {nproc} {how}; torchrun stopped the other ranks. "
            f"Last lines of rank {rank.group(1)}:\n{shown}")


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
