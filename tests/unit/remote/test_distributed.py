"""The multi-GPU launch: a failed rank is named with its own last lines; no rank outlives a killed launcher."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from remote.distributed import LINUX, failure
from tests.conftest import REPO

# torchrun 2.13's summary as printed after rank 1 raised (taken from a real 2-rank run on this machine).
SUMMARY = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
============================================================
remote FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-30_18:41:15
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 19719)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 19719
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-30_18:41:15
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : 1 (pid: 19720) 
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================""".splitlines()


def test_the_root_cause_rank_and_its_own_lines_are_the_error():
    output = [f"[rank0]: step {i}" for i in range(30)] + [
        "[rank1]: Tokenizing:   0%|          | 0/405\rTokenizing: 100%|██████████| 405/405",
        "[rank1]: rank 1/2: model loaded",
        "[rank1]: Traceback (most recent call last):",
        "[rank0]: still fine",
        "[rank1]: RuntimeError: shape '[64, 32]' is invalid for input of size 1024",
    ] + SUMMARY
    message = failure(output, 1, 2)
    assert message.startswith("rank 1 of 2 exited with code 1; torchrun stopped the other ranks.")
    assert message.endswith("  Tokenizing: 100%|██████████| 405/405\n"
                            "  rank 1/2: model loaded\n  Traceback (most recent call last):\n"
                            "  RuntimeError: shape '[64, 32]' is invalid for input of size 1024")
    assert "rank0" not in message and "still fine" not in message  # rank 0 was only stopped


def test_without_torchruns_summary_the_error_points_at_the_log():
    assert failure(["[rank0]: bye"], 2, 2) == "distributed training on 2 ranks exited with code 2; see train.log"


# A launcher (standing in for torchrun) starts a worker in its own session, as torchrun starts each rank.
LAUNCHER = """
import subprocess, sys, time
from remote.distributed import die_with_parent
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True,
                          preexec_fn=die_with_parent if sys.argv[1] == "guarded" else None)
print(worker.pid, flush=True)
time.sleep(120)
"""


def _worker_after_launcher_is_killed(mode: str) -> bool:
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, mode], cwd=REPO, stdout=subprocess.PIPE, text=True)
    worker = int(launcher.stdout.readline())
    launcher.kill()  # SIGKILL: no handler runs, as when a stop's grace runs out
    launcher.wait(timeout=10)
    deadline = time.monotonic() + 1.5  # PDEATHSIG acts at once; 1.5 s alive means it did not
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return False
        if open(f"/proc/{worker}/stat").read().split()[2] == "Z":
            return False
        time.sleep(0.05)
    os.kill(worker, signal.SIGKILL)
    return True


@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_in_its_own_session_dies_with_its_launcher():
    assert _worker_after_launcher_is_killed("unguarded") is True  # what a rank would do without it: live on
    assert _worker_after_launcher_is_killed("guarded") is False
