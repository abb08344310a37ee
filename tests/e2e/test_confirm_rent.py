"""`run` never rents without asking: in a terminal it shows GPU, $/h, hours and $ with a visible [y/N];
without a terminal and without --yes it refuses before renting. Against the RunPod emulator (nothing is booted)."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

from tests.conftest import REPO, env_without_secrets
from tests.e2e.conftest import runpod_env, runpod_recipe
from tests.e2e.helpers import podtune, runs_in

PODTUNE = str(Path(sys.executable).parent / "podtune")


def _read_until(fd: int, wanted: str, timeout: float) -> str:
    """What the terminal showed, up to `wanted` or the deadline (never blocks past it)."""
    seen, deadline = b"", time.monotonic() + timeout
    while wanted.encode() not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen.decode("utf-8", "replace")


def _wait(pid: int, timeout: float) -> int | None:
    """The child's exit code, or None after killing it at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.1)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


def test_the_prompt_shows_price_and_y_n_and_no_rents(tmp_path, runpod_emu):
    recipe = runpod_recipe(tmp_path, steps=30)  # a cheap run is asked about too
    home = tmp_path / "home"
    env = env_without_secrets(PODTUNE_HOME=str(home), COLUMNS="200", TERM="xterm", **runpod_env(runpod_emu))
    pid, fd = pty.fork()
    if pid == 0:  # the child: podtune on a pseudo-terminal
        os.chdir(REPO)
        os.execve(PODTUNE, [PODTUNE, "run", str(recipe)], env)
    try:
        shown = _read_until(fd, "[y/N]", 60)
        assert "[y/N]" in shown, shown
        question = " ".join(shown.split("» plan")[-1].split())
        assert "Rent 1x NVIDIA GeForce RTX 3090 for $0." in question and "/h for about" in question, question
        assert "about $" in question and "in all" in question
        os.write(fd, b"n\n")
        rest = _read_until(fd, "hint:", 30)
        assert "cancelled before renting anything" in rest, rest
    finally:
        code = _wait(pid, 30)
        os.close(fd)
    assert code == 1
    assert runpod_emu.pods == {} and runs_in(home) == []


def test_no_terminal_and_no_yes_refuses_before_renting(tmp_path, runpod_emu):
    recipe = runpod_recipe(tmp_path, steps=30)
    home = tmp_path / "home"
    out = podtune("run", str(recipe), home=home, env=runpod_env(runpod_emu), check=False, timeout=60)
    said = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 1 and "Traceback" not in said
    assert "no terminal to ask" in said and "--yes" in said and "NVIDIA GeForce RTX 3090" in said
    assert runpod_emu.pods == {} and runs_in(home) == []
