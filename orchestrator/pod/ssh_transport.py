"""SSHTransport: a pod's shell and files over one paramiko connection (exec channels + SFTP).

Host keys are pinned per pod id in $PODTUNE_HOME/known_hosts, and checked during the handshake, before podtune
authenticates (a paramiko host-key policy): RunPod gives a resumed pod a new port, so an address says nothing
about who answers. A different key on a known pod is refused, unless podtune itself just resumed that pod (stock
RunPod images make new host keys on every start): then the new fingerprint is shown with that reason and pinned.
"""

from __future__ import annotations

import shlex
import socket
import threading
import time
from pathlib import Path

import paramiko

from ..errors import SSHError
from .host_keys import HostKeyStore, fingerprint
from .transport import ExecResult

__all__ = ["HostKeyStore", "SSHTransport", "fingerprint", "open_if_ssh", "probe_banner"]


class _PinnedKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Runs inside the handshake, before authentication: the client holds no keys of its own, so every server key
    comes here and is checked against podtune's pins for this pod."""

    def __init__(self, store: HostKeyStore, label: str):
        self.store, self.label = store, label
        self.notice: str | None = None
        self.first_contact: str | None = None

    def missing_host_key(self, client, hostname, key) -> None:
        first = self.label not in self.store._entries()
        self.notice = self.store.check_or_record(self.label, key)
        if first:
            self.first_contact = fingerprint(key.get_name(), key.get_base64())


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
        self._sftp_lock = threading.Lock()
        self.host_key_notice: str | None = None  # set when a pod's expected new host key was accepted
        self.host_key_first_contact: str | None = None  # the fingerprint pinned now, on first contact

    def describe(self) -> str:
        return f"ssh -i {self.key_path} -p {self.port} {self.user}@{self.host}"

    # ---- connection ---------------------------------------------------------------------------------------
    def connect(self, sock: socket.socket | None = None) -> SSHTransport:
        """The handshake, on `sock` when given (a connection `open_if_ssh` found answering), else a new one."""
        client = paramiko.SSHClient()
        policy = _PinnedKeyPolicy(self.store, self.pin_label)  # keyed by pod, not by address
        client.set_missing_host_key_policy(policy)
        try:
            if sock is None:
                sock = _no_delay_socket(self.host, self.port, self.connect_timeout_s)
            client.connect(
                self.host, port=self.port, username=self.user, key_filename=str(self.key_path), sock=sock,
                banner_timeout=self.connect_timeout_s, auth_timeout=self.connect_timeout_s,
                allow_agent=False, look_for_keys=False,
            )
        except SSHError:
            client.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            if sock is not None:
                sock.close()
            raise SSHError(f"cannot open SSH to {self.host}:{self.port}: {exc}", f"try by hand: {self.describe()}") from None
        self.host_key_notice, self.host_key_first_contact = policy.notice, policy.first_contact
        client.get_transport().set_keepalive(self.keepalive_s)
        self._client = client
        self._sftp = None
        # The first file op opens SFTP (a channel and the pod's sftp-server: ~40 ms on loopback, a round trip or
        # two more to a pod): opened on a thread now, while the first commands run.
        threading.Thread(target=self._open_sftp_for, args=(client,), name="sftp-open", daemon=True).start()
        return self

    def _open_sftp_for(self, client: paramiko.SSHClient) -> None:
        try:
            with self._sftp_lock:
                if self._sftp is None and self._client is client:
                    self._sftp = self._open_sftp(client)
        except Exception:  # the first file op opens it again, and says what is wrong
            pass

    @staticmethod
    def _open_sftp(client: paramiko.SSHClient) -> paramiko.SFTPClient:
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(120)
        return sftp

    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None or not self._client.get_transport() or not self._client.get_transport().is_active():
            raise SSHError(f"the SSH connection to {self.host}:{self.port} is closed")
        return self._client

    @property
    def sftp(self) -> paramiko.SFTPClient:
        with self._sftp_lock:
            if self._sftp is None:
                self._sftp = self._open_sftp(self.client)
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
        try:
            return self._run(channel, command, timeout_s, stdin)
        except (paramiko.SSHException, EOFError) as exc:  # callers know SSHError and OSError, not paramiko
            raise SSHError(f"the SSH connection to {self.host}:{self.port} dropped during a command: {exc}") from None

    def _run(self, channel: paramiko.Channel, command: str, timeout_s: float, stdin: bytes | None) -> ExecResult:
        channel.settimeout(5)
        channel.exec_command(command)
        if stdin:
            channel.sendall(stdin)
        channel.shutdown_write()
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout_s
        pause = 0.001  # short commands (a manifest, a kill -0) answer in milliseconds: poll fast, then back off
        while True:
            got = len(out) + len(err)
            while channel.recv_ready():
                out += channel.recv(65536)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            pause = 0.001 if len(out) + len(err) > got else min(pause * 2, 0.02)
            if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            if time.monotonic() > deadline:
                channel.close()
                return ExecResult(124, out.decode("utf-8", "replace"), f"timed out after {timeout_s:.0f}s")
            if not self.client.get_transport().is_active():
                raise SSHError(f"the SSH connection to {self.host}:{self.port} dropped during a command")
            time.sleep(pause)
        rc = channel.recv_exit_status()
        channel.close()
        return ExecResult(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def stream(self, command: str, *, timeout_s: float = 600) -> _SSHSession:
        """A command to converse with over one channel (sync's manifest and upload share one round trip)."""
        try:
            channel = self.client.get_transport().open_session(timeout=self.connect_timeout_s)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"cannot open a channel to {self.host}:{self.port}: {exc}") from None
        channel.settimeout(timeout_s)
        try:
            channel.exec_command(command)
        except (paramiko.SSHException, EOFError) as exc:
            raise SSHError(f"the SSH connection to {self.host}:{self.port} dropped during a command: {exc}") from None
        return _SSHSession(channel, f"{self.host}:{self.port}")

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
        except (paramiko.SSHException, EOFError) as exc:
            self._sftp = None
            raise SSHError(f"removing {path} on the pod failed: {exc}") from None


class _SSHSession:
    def __init__(self, channel: paramiko.Channel, where: str):
        self.channel = channel
        self.where = where
        self.stdout = channel.makefile("rb")

    def _dropped(self, exc: BaseException) -> SSHError:
        return SSHError(f"the SSH connection to {self.where} dropped during a command: {exc}")

    def send(self, data: bytes) -> None:
        try:
            self.channel.sendall(data)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._dropped(exc) from None

    def readline(self) -> bytes:
        try:
            return self.stdout.readline()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._dropped(exc) from None

    def read_available(self, timeout_s: float) -> bytes:
        try:
            self.channel.settimeout(max(timeout_s, 0.0))
            try:
                data = self.channel.recv(65536)
            except socket.timeout:
                return b""
            if not data:
                raise EOFError(f"the command's output on {self.where} ended")
            chunks = [data]
            while self.channel.recv_ready():  # what else has arrived, without waiting again
                more = self.channel.recv(65536)
                if not more:
                    break
                chunks.append(more)
            return b"".join(chunks)
        except (paramiko.SSHException, OSError) as exc:
            raise self._dropped(exc) from None

    def read_stderr_available(self) -> bytes:
        chunks = []
        try:
            while self.channel.recv_stderr_ready():
                chunks.append(self.channel.recv_stderr(65536))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._dropped(exc) from None
        return b"".join(chunks)

    def kill(self) -> None:
        self.channel.close()  # sshd closes the command's pipes; a command that ignores that is killed by its caller

    def finish(self) -> ExecResult:
        try:
            self.channel.shutdown_write()
            out = self.stdout.read()
            err = self.channel.makefile_stderr("rb").read()
            rc = self.channel.recv_exit_status()
        except TimeoutError:
            self.channel.close()
            return ExecResult(124, "", "timed out")
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._dropped(exc) from None
        self.channel.close()
        return ExecResult(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def _no_delay_socket(host: str, port: int, timeout_s: float) -> socket.socket:
    """A TCP connection that sends each SSH packet at once. With Nagle's algorithm on (paramiko leaves it on), a
    packet written while the previous one is unacknowledged waits for the pod's delayed ACK: every command that
    sends its stdin or EOF after the exec request (and the handshake) sat ~40 ms on loopback, a round trip on a
    real network. On loopback: handshake 64-88 ms -> 21 ms, a short command 45 ms -> 4 ms (BENCHMARKS.md)."""
    sock = socket.create_connection((host, port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def open_if_ssh(host: str, port: int, timeout_s: float = 3.0) -> socket.socket | None:
    """A connection to host:port whose first bytes are an SSH banner, left unread for the handshake
    (SSHTransport.connect(sock=...)); None while nothing speaks SSH there. One connection is both the readiness
    check and the session: a probe of its own cost a TCP handshake and an sshd start more, a round trip to a pod."""
    try:
        sock = _no_delay_socket(host, port, timeout_s)
    except OSError:
        return None
    try:
        deadline = time.monotonic() + timeout_s
        head = sock.recv(4, socket.MSG_PEEK)
        while 0 < len(head) < 4 and time.monotonic() < deadline:  # the banner's first bytes, a few at a time
            time.sleep(0.002)
            head = sock.recv(4, socket.MSG_PEEK)
        if head == b"SSH-":
            return sock
    except OSError:
        pass
    sock.close()
    return None


def probe_banner(host: str, port: int, timeout_s: float = 3.0) -> bool:
    """Cheap readiness check before a full handshake: does something speak SSH on that port? (open_if_ssh's check,
    for a caller that connects later or not at all.)"""
    sock = open_if_ssh(host, port, timeout_s)
    if sock is None:
        return False
    sock.close()
    return True

