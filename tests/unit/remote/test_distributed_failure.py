"""A failed multi-GPU train phase names the rank that failed first and shows that rank's own last lines."""

from __future__ import annotations

from remote.distributed import failure

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
