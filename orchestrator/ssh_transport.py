"""SSHTransport: a pod's shell and files over one paramiko connection (exec channels + SFTP).

Host keys are pinned per pod: the first contact records the key under `<pod id>@<host>:<port>` in
$PODTUNE_HOME/known_hosts; a different key later on the same pod, host and port is refused (someone else
answers on that address). A new port after a restart is a new first contact, since RunPod moves the port.
"""

from __future__ import annotations

import shlex
import socket
import time
from pathlib import Path

import paramiko

from .errors import SSHError
from .transport import ExecResult


class HostKeyStore:
    """podtune's own known_hosts: `<label> <key type> <base64>` per line."""

    def __init__(self, path: Path):
        self.path = path

    def _entries(self) -> dict[str, tuple[str, str]]:
        entries = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 3:
                    entries[parts[0]] = (parts[1], parts[2])
        return entries

    def openssh_lines(self, label: str, host: str, port: int) -> list[str]:
        """The pinned key in OpenSSH's known_hosts format, for handing a session to the `ssh` client."""
        known = self._entries().get(f"{label}@{host}:{port}")
        return [f"[{host}]:{port} {known[0]} {known[1]}"] if known else []

    def check_or_record(self, label: str, key: paramiko.PKey) -> None:
        known = self._entries().get(label)
        offered = (key.get_name(), key.get_base64())
        if known is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as fh:
                fh.write(f"{label} {offered[0]} {offered[1]}\n")
            return
        if known != offered:
            raise SSHError(
                f"the host key of {label} changed since podtune first connected: refusing to connect",
                f"if the pod was rebuilt on purpose, delete its line from {self.path}",
            )


class SSHTransport:
    def __init__(self, *, host: str, port: int, user: str, key_path: Path, pin_label: str, known_hosts: Path,
                 connect_timeout_s: float = 15, keepalive_s: int = 15):
        self.host, self.port, self.user = host, port, user
        self.key_path = key_path
        self.pin_label = pin_label
        self.store = HostKeyStore(known_hosts)
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def describe(self) -> str:
        return f"ssh -i {self.key_path} -p {self.port} {self.user}@{self.host}"

    # ---- connection ---------------------------------------------------------------------------------------
    def connect(self) -> SSHTransport:
        client = paramiko.SSHClient()
        # Verification happens below against podtune's own store (keyed by pod, not by address).
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(
                self.host, port=self.port, username=self.user, key_filename=str(self.key_path),
                timeout=self.connect_timeout_s, banner_timeout=self.connect_timeout_s,
                auth_timeout=self.connect_timeout_s, allow_agent=False, look_for_keys=False,
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise SSHError(f"cannot open SSH to {self.host}:{self.port}: {exc}", f"try by hand: {self.describe()}") from None
        try:
            self.store.check_or_record(f"{self.pin_label}@{self.host}:{self.port}", client.get_transport().get_remote_server_key())
        except SSHError:
            client.close()
            raise
        client.get_transport().set_keepalive(self.keepalive_s)
        self._client = client
        return self

    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None or not self._client.get_transport() or not self._client.get_transport().is_active():
            raise SSHError(f"the SSH connection to {self.host}:{self.port} is closed")
        return self._client

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
            self._sftp.get_channel().settimeout(120)
        return self._sftp

    def close(self) -> None:
        for thing in (self._sftp, self._client):
            try:
                if thing is not None:
                    thing.close()
            except Exception:  # closing a dead connection may raise anything; it is closed either way
                pass
        self._sftp = self._client = None

    # ---- Transport ----------------------------------------------------------------------------------------
    def exec(self, command: str, *, timeout_s: float = 120, stdin: bytes | None = None) -> ExecResult:
        try:
            channel = self.client.get_transport().open_session(timeout=self.connect_timeout_s)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"cannot open a channel to {self.host}:{self.port}: {exc}") from None
        channel.settimeout(5)
        channel.exec_command(command)
        if stdin:
            channel.sendall(stdin)
        channel.shutdown_write()
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout_s
        while True:
            while channel.recv_ready():
                out += channel.recv(65536)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            if time.monotonic() > deadline:
                channel.close()
                return ExecResult(124, out.decode("utf-8", "replace"), f"timed out after {timeout_s:.0f}s")
            if not self.client.get_transport().is_active():
                raise SSHError(f"the SSH connection to {self.host}:{self.port} dropped during a command")
            time.sleep(0.02)
        rc = channel.recv_exit_status()
        channel.close()
        return ExecResult(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def read_bytes(self, path: str, offset: int = 0, limit: int | None = None) -> bytes:
        try:
            with self.sftp.open(path, "rb") as fh:
                fh.seek(offset)
                return fh.read() if limit is None else fh.read(limit)
        except FileNotFoundError:
            raise
        except (paramiko.SSHException, EOFError, socket.error) as exc:
            self._sftp = None
            raise SSHError(f"reading {path} from the pod failed: {exc}") from None

    def _mkdirs(self, directory: str) -> None:
        self.exec(f"mkdir -p {shlex.quote(directory)}", timeout_s=30).check(f"creating {directory}")

    def write_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        directory, _, name = path.rpartition("/")
        tmp = f"{directory}/.{name}.podtune-tmp"
        try:
            try:
                fh = self.sftp.open(tmp, "wb")
            except FileNotFoundError:
                self._mkdirs(directory)
                fh = self.sftp.open(tmp, "wb")
            with fh:
                fh.chmod(mode)  # before any byte is written, so a secret is never readable by others
                fh.write(data)
            self.sftp.posix_rename(tmp, path)
        except (paramiko.SSHException, EOFError, socket.error) as exc:
            self._sftp = None
            raise SSHError(f"writing {path} on the pod failed: {exc}") from None

    def put_file(self, local: Path, path: str, mode: int | None = None) -> None:
        directory, _, name = path.rpartition("/")
        tmp = f"{directory}/.{name}.podtune-tmp"
        try:
            try:
                self.sftp.put(str(local), tmp)
            except FileNotFoundError:
                self._mkdirs(directory)
                self.sftp.put(str(local), tmp)
            self.sftp.chmod(tmp, mode if mode is not None else 0o644)
            self.sftp.posix_rename(tmp, path)
        except (paramiko.SSHException, EOFError, socket.error) as exc:
            self._sftp = None
            raise SSHError(f"uploading {local} to the pod failed: {exc}") from None

    def remove(self, path: str) -> None:
        try:
            self.sftp.remove(path)
        except FileNotFoundError:
            pass


def probe_banner(host: str, port: int, timeout_s: float = 3.0) -> bool:
    """Cheap readiness check before a full handshake: does something speak SSH on that port?"""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False

