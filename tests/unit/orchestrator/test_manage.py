"""`podtune ssh`: the argv handed to OpenSSH keeps a recipe's user and host out of its options."""

from __future__ import annotations

from pathlib import Path

from orchestrator.manage import ssh_argv


def test_the_ssh_target_comes_after_the_end_of_options():
    argv = ssh_argv(Path("/k"), 2222, Path("/kh"), "root", "127.0.0.1", ["nvidia-smi"])
    assert argv[argv.index("--") + 1:] == ["root@127.0.0.1", "nvidia-smi"]
    assert all(not a.startswith("root@") for a in argv[:argv.index("--")])
