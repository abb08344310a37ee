"""What a person sees while a run works: on a terminal one line redrawn in place (step/total, ETA, $), off a
terminal plain lines with the same facts, and with --raw the trainer's own lines. One tiny local run, in a pty."""

from __future__ import annotations

import os
import pty
import re
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, env_without_secrets
from tests.e2e.helpers import long_recipe, podtune, runs_in

PODTUNE = str(Path(sys.executable).parent / "podtune")
STEPS = 80  # a few seconds of training on a CPU: the laptop reads the pod's events about once a second
STEP = re.compile(rf"step (\d+)/{STEPS}\b")


def _drain(fd: int, pid: int, timeout: float) -> tuple[bytes, int | None]:
    """Everything the terminal showed until the child exits (killed at the deadline: never blocks past it)."""
    import select

    seen, code, deadline = b"", None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                chunk = b""
            seen += chunk
            if chunk:
                continue
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return seen, code


@pytest.fixture(scope="module")
def tty_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    recipe = long_recipe(tmp_path_factory.mktemp("recipe"), steps=STEPS)
    env = env_without_secrets(PODTUNE_HOME=str(home), COLUMNS="200", LINES="40", TERM="xterm")
    pid, fd = pty.fork()
    if pid == 0:  # the child: podtune on a pseudo-terminal
        os.chdir(REPO)
        os.execve(PODTUNE, [PODTUNE, "run", str(recipe), "--yes"], env)
    try:
        shown, code = _drain(fd, pid, 300)
    finally:
        os.close(fd)
    assert code == 0, shown.decode("utf-8", "replace")[-3000:]
    return home, runs_in(home)[-1][0], shown.decode("utf-8", "replace")


def test_the_live_view_updates_in_place_with_step_eta_and_cost(tty_run):
    _, _, shown = tty_run
    # Frames of the one live line: each redraw moves the cursor back (rich's Live), no new line per step.
    frames = [f for f in re.split(r"\r|\x1b\[\d*[AK]", shown) if STEP.search(f)]
    assert len(frames) >= 2, shown[-3000:]
    assert "\x1b[" in shown and "\r" in shown
    steps = [int(STEP.search(f).group(1)) for f in frames]  # type: ignore[union-attr]
    assert steps == sorted(steps) and len(set(steps)) >= 2, steps  # the same line, counting up
    with_facts = [f for f in frames if "ETA " in f and "$0.0000" in f and "loss " in f and "tok/s" in f]
    assert with_facts, frames[-3:]
    # The laptop's own slow phases show a spinner with their elapsed time too.
    assert re.search(r"(provision|sync|setup)\s+elapsed \d", shown), shown[:3000]
    # What stays once the live line is gone: the phases done, the report.
    assert "train finished in" in shown and "next steps:" in shown


def test_off_a_terminal_logs_f_shows_plain_lines_with_the_same_facts_and_the_final_state(tty_run):
    home, run_id, _ = tty_run
    out = podtune("logs", "-f", run_id, home=home, timeout=120).stdout
    assert "\x1b" not in out and "\r" not in out
    lines = [line for line in out.splitlines() if line.startswith("  step ")]
    assert len(lines) == STEPS, out
    last = lines[-1]
    assert f"step {STEPS}/{STEPS}" in last and "loss " in last and "lr " in last and "tok/s" in last, last
    assert "elapsed " in last and "ETA 0.0s" in last and "$0.0000" in last, last
    assert "» train" in out and "train finished in" in out
    assert out.strip().splitlines()[-1] == f"run {run_id} succeeded"  # it ends with the run's final state


def test_raw_shows_the_trainers_own_lines(tty_run):
    home, run_id, _ = tty_run
    out = podtune("logs", "-f", "--raw", run_id, home=home, timeout=120).stdout
    written = [line for line in (home / "local" / "workspace" / "runs" / run_id / "train.log").read_text().splitlines()
               if line.strip()]
    shown = [line for line in out.splitlines() if line.strip()]
    assert written and shown[:len(written)] == written
    assert not any("ETA " in line for line in shown)


def test_attach_raw_follows_the_trainers_lines_not_the_live_view(tty_run):
    home, run_id, _ = tty_run  # last in this module: attaching again settles the finished run a second time
    out = podtune("attach", "--raw", run_id, home=home, timeout=120).stdout
    written = [line for line in (home / "local" / "workspace" / "runs" / run_id / "train.log").read_text().splitlines()
               if line.strip()]
    shown = [line for line in out.splitlines() if line.strip()]
    assert [line for line in shown if line in set(written)] == written  # each line once, in order
    assert not any(STEP.search(line) and "ETA " in line for line in shown)
    assert "» stop" in out and "next steps:" in out  # then stop and report, as ever
