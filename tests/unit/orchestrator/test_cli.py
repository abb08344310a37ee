"""The command line: fast help without torch, every command documented, bad input -> message + exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO, env_without_secrets
from tests.recipes import write_recipe_variant

COMMANDS = ["run", "plan", "validate", "schema", "logs", "status", "attach", "stop", "ssh", "push", "runs", "costs",
            "report", "doctor", "init"]


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from orchestrator.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'trl', 'bitsandbytes', 'datasets') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, podtune_bin):
    out = subprocess.run([podtune_bin, command, "--help"], capture_output=True, text=True, timeout=60,
                         env=env_without_secrets())
    assert out.returncode == 0 and "Usage" in out.stdout, out.stderr


def test_bad_recipe_exits_2_with_field_and_no_traceback(tmp_path, podtune_bin):
    bad = write_recipe_variant(tmp_path / "bad.yaml", {"training.learning_rate": -1}, validate=False)
    out = subprocess.run([podtune_bin, "run", str(bad), "--yes"], capture_output=True, text=True, timeout=60,
                         env=env_without_secrets())
    assert out.returncode == 2
    assert "training.learning_rate" in out.stderr and "Traceback" not in out.stderr + out.stdout


def test_missing_recipe_file_is_a_clear_error(tmp_path, podtune_bin):
    out = subprocess.run([podtune_bin, "validate", str(tmp_path / "nope.yaml")], capture_output=True, text=True,
                         timeout=60, env=env_without_secrets())
    assert out.returncode == 2 and "no such file" in out.stderr and "Traceback" not in out.stderr


def test_runpod_without_key_says_how_to_set_it(tmp_path, podtune_bin):
    out = subprocess.run([podtune_bin, "run", str(REPO / "recipes" / "tiny-cpu.yaml"), "--provider", "runpod", "--yes"],
                         capture_output=True, text=True, timeout=60,
                         env=env_without_secrets(PODTUNE_HOME=str(tmp_path), HOME=str(tmp_path)))
    assert out.returncode != 0 and "RUNPOD_API_KEY" in out.stderr and "Traceback" not in out.stderr


def test_logs_with_no_runs_says_how_to_start(tmp_path, podtune_bin):
    out = subprocess.run([podtune_bin, "logs"], capture_output=True, text=True, timeout=60,
                         env=env_without_secrets(PODTUNE_HOME=str(tmp_path)))
    assert out.returncode == 1 and "podtune run recipes/tiny-cpu.yaml" in out.stderr


@pytest.mark.parametrize("args,words", [
    (["run", "recipes/tiny-cpu.yaml", "--bogus"], "No such option: --bogus"),
    (["stop", "--terminate", "--yse"], "No such option: --yse"),
    (["logs", "a", "b"], "unexpected extra argument"),
    (["run", "recipes/tiny-cpu.yaml", "--connect-timeout", "0"], "--connect-timeout"),
])
def test_bad_flags_exit_2_with_usage_and_no_traceback(args, words, podtune_bin):
    out = subprocess.run([podtune_bin, *args], capture_output=True, text=True, timeout=60, cwd=REPO,
                         env=env_without_secrets(COLUMNS="200"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert words in out.stdout + out.stderr
