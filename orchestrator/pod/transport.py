"""How the laptop reaches a pod's shell and files: the Transport protocol and the local implementation.

SSHTransport (paramiko + SFTP) lives in ssh_transport.py; both speak in pod paths (strings, POSIX).
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import SSHError


@dataclass(frozen=True)
class ExecResult:
    rc: int
    stdout: str
    stderr: str

    def check(self, what: str) -> ExecResult:
        if self.rc != 0:
            tail = (self.stderr or self.stdout).strip()[-2000:]
            raise SSHError(f"{what} failed on the pod (exit {self.rc}): {tail}")
        return self


class Transport(Protocol):
    """A shell and a file system on the pod. Every call is bounded by a timeout."""

    def exec(self, command: str, *, timeout_s: float = 120, stdin: bytes | None = None) -> ExecResult:
        """Run a shell command and wait for it."""
        ...

    def read_bytes(self, path: str, offset: int = 0, limit: int | None = None) -> bytes:
        """Bytes of a pod file from `offset`; FileNotFoundError when it does not exist."""
        ...

    def write_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Replace a pod file atomically (temp + rename), creating parent directories."""
        ...

    def put_file(self, local: Path, path: str, mode: int | None = None) -> None:
        """Copy a laptop file to the pod atomically."""
        ...

    def remove(self, path: str) -> None:
        """Delete a pod file if it exists."""
        ...

    def stream(self, command: str, *, timeout_s: float = 600) -> Session:
        """Start a command to converse with, or to read as it writes (a followed log)."""
        ...

    def close(self) -> None: ...


class Session(Protocol):
    """One command with a conversation: send to its stdin, read its stdout line by line, then finish."""

    def send(self, data: bytes) -> None: ...

    def readline(self) -> bytes: ...

    def finish(self) -> ExecResult:
        """Close its stdin, wait for it; the rest of its stdout and its stderr."""
        ...

    def read_available(self, timeout_s: float) -> bytes:
        """Stdout bytes that have arrived, waiting up to timeout_s for the first; b"" when none came in time.
        EOFError once its stdout is closed. Not to be mixed with readline on the same session."""
        ...

    def read_stderr_available(self) -> bytes:
        """Stderr bytes that have arrived, without waiting."""
        ...

    def kill(self) -> None:
        """End the command now (a follower that is done); safe to call twice, or after it ended."""
        ...


class _LocalSession:
    def __init__(self, command: str, env: dict[str, str] | None, timeout_s: float):
        self.timeout_s = timeout_s
        self.proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None  # opened with stdin=PIPE
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def readline(self) -> bytes:
        assert self.proc.stdout is not None  # opened with stdout=PIPE
        return self.proc.stdout.readline()

    def read_available(self, timeout_s: float) -> bytes:
        assert self.proc.stdout is not None  # opened with stdout=PIPE
        return _read_pipe(self.proc.stdout.fileno(), timeout_s)

    def read_stderr_available(self) -> bytes:
        assert self.proc.stderr is not None  # opened with stderr=PIPE
        try:
            return _read_pipe(self.proc.stderr.fileno(), 0)
        except EOFError:
            return b""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def finish(self) -> ExecResult:
        try:
            out, err = self.proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return ExecResult(124, "", f"timed out after {self.timeout_s:.0f}s")
        return ExecResult(self.proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def _read_pipe(fd: int, timeout_s: float) -> bytes:
    """What a pipe holds now, waiting up to timeout_s for it; EOFError when its writer has closed it."""
    with selectors.DefaultSelector() as selector:  # not select(): a busy laptop may hand out fds past 1024
        selector.register(fd, selectors.EVENT_READ)
        if not selector.select(max(timeout_s, 0)):
            return b""
    data = os.read(fd, 65536)
    if not data:
        raise EOFError("the command's output ended")
    return data


class LocalTransport:
    """The 'pod' is this machine: commands run in a subprocess, files are local files."""

    def __init__(self, env: dict[str, str] | None = None):
        self.env = env

    def stream(self, command: str, *, timeout_s: float = 600) -> Session:
        return _LocalSession(command, self.env, timeout_s)

    def exec(self, command: str, *, timeout_s: float = 120, stdin: bytes | None = None) -> ExecResult:
        try:
            done = subprocess.run(
                ["/bin/sh", "-c", command], input=stdin, capture_output=True, timeout=timeout_s, env=self.env
            )
        except subprocess.TimeoutExpired:
            return ExecResult(124, "", f"timed out after {timeout_s:.0f}s: {command[:200]}")
        return ExecResult(done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"))

    def read_bytes(self, path: str, offset: int = 0, limit: int | None = None) -> bytes:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read() if limit is None else fh.read(limit)

    def write_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.podtune-tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)

    def put_file(self, local: Path, path: str, mode: int | None = None) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.podtune-tmp")
        shutil.copyfile(local, tmp)
        os.chmod(tmp, mode if mode is not None else 0o644)
        os.replace(tmp, target)

    def remove(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)

    def close(self) -> None:
        pass
