"""A real OpenSSH sshd standing in for a pod (or a plain SSH machine) on loopback.

Needs root, /usr/sbin/sshd, ssh-keygen and (for isolated pods) util-linux `unshare`.

isolate_workspace=True (an emulated pod):
    unshare --mount --pid --fork --mount-proc --kill-child --propagation private sh -c \
        'mount --bind WORKSPACE /workspace && ... && exec sshd -D -f CONFIG -E LOG'
  * over SSH the pod sees its own directory at /workspace (the host's /workspace stays empty);
  * sshd is pid 1 of its own PID namespace with its own /proc, so `ps`, `kill -0 $pid` and
    `/proc/$pid` inside the pod all speak the pod's pids; sshd reaps orphans;
  * stop_sshd() SIGKILLs that pid 1: the kernel then kills every process started in the pod
    (nohup'd and setsid'd ones too), exactly like a pod stop; the workspace directory stays;
  * root's ~/.bashrc and ~/.profile are masked (inside the pod only) by empty pod-private files,
    so the host's dotfiles (pyenv shims, cargo, ...) cannot put themselves before the pod's PATH.

isolate_workspace=False (a "plain sshd", e.g. for the SSH provider): `sshd -D` with no namespace;
stopping it stops the listener only.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
UNSHARE = "unshare"

_BANNER_WAIT_S = 10.0
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MOUNT_POINT_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")


@dataclass
class SshdPod:
    """One running private sshd."""

    port: int
    workspace: Path
    host_key_pub: str  # "ssh-ed25519 AAAA..." (type and base64, no comment)
    pid: int  # host pid of sshd; for an isolated pod that is pid 1 of the pod's PID namespace
    state_dir: Path | None = None
    log_path: Path | None = None
    isolated: bool = True
    mount_point: str = "/workspace"
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)
    _starttime: str | None = field(default=None, repr=False, compare=False)

    def alive(self) -> bool:
        return _pid_starttime(self.pid) == self._starttime and self._starttime is not None


_LIVE: dict[int, SshdPod] = {}
_LIVE_LOCK = threading.Lock()


def _pid_starttime(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks): guards against pid reuse."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw.rsplit(")", 1)[-1].split()
    # rest[0] is field 3 (state); field 22 is rest[19]
    if len(rest) < 20 or rest[0] == "Z":
        return None
    return rest[19]


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                out += [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                continue
    except OSError:
        pass
    return out


def generate_keypair(path: Path) -> tuple[Path, str]:
    """An ed25519 key pair at `path` (private) and `path`.pub, made with ssh-keygen.

    Reuses an existing pair at that path. Returns (private key path, public key line)."""
    path = Path(path)
    pub = path.with_name(path.name + ".pub")
    if not (path.exists() and pub.exists()):
        path.parent.mkdir(parents=True, exist_ok=True)
        for p in (path, pub):
            if p.exists():
                p.unlink()
        subprocess.run(
            [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", f"podtune-test@{path.stem}", "-f", str(path)],
            check=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
        )
    os.chmod(path, 0o600)
    return path, pub.read_text().strip()


def _public_line(private_key: Path) -> str:
    pub = private_key.with_name(private_key.name + ".pub")
    if pub.exists():
        text = pub.read_text()
    else:
        text = subprocess.run(
            [SSH_KEYGEN, "-y", "-f", str(private_key)], check=True, capture_output=True, text=True, timeout=30
        ).stdout
    parts = text.split()
    return " ".join(parts[:2])


def _setenv_line(env: dict[str, str]) -> str:
    """One `SetEnv` line (sshd honours only the first SetEnv line it reads).

    Each NAME=VALUE is written as one double-quoted token, so values may contain spaces
    (PUBLIC_KEY does). sshd_config cannot carry a double quote, a backslash or a control
    character safely: such values raise ValueError, as do names that are not identifiers."""
    tokens = []
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_KEY_RE.match(key):
            raise ValueError(f"invalid environment variable name for SetEnv: {key!r}")
        value = "" if value is None else str(value)
        bad = [c for c in value if c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F]
        if bad:
            raise ValueError(
                f"environment value of {key} cannot be passed through sshd SetEnv "
                f"(contains {sorted(set(bad))!r})"
            )
        tokens.append(f'"{key}={value}"')
    return ("SetEnv " + " ".join(tokens)) if tokens else ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _banner_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(1.0)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _write_config(
    cfg: Path, *, port: int, host_key: Path, pid_file: Path, auth_keys: Path, setenv: str
) -> None:
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"PidFile {pid_file}",
        f"AuthorizedKeysFile {auth_keys}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        "StrictModes no",
        "UsePAM no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "MaxStartups 64:30:128",
        "MaxSessions 32",
        "Subsystem sftp internal-sftp",
    ]
    if setenv:
        lines.append(setenv)
    cfg.write_text("\n".join(lines) + "\n")


def start_sshd(
    *,
    state_dir: Path,
    workspace: Path,
    authorized_keys: list[str],
    env: dict[str, str],
    host_key: Path | None = None,
    isolate_workspace: bool = True,
    mount_point: str = "/workspace",
) -> SshdPod:
    """Start a private sshd on a free 127.0.0.1 port and wait (<= 10 s) for its SSH banner.

    state_dir holds the config, log, pid file, authorized_keys and (unless `host_key` is given)
    the host key, generated once per state_dir and reused on every later start, so a pod keeps
    its host key across stop/start. The login user is root."""
    state_dir = Path(state_dir).resolve()
    workspace = Path(workspace).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    workspace.mkdir(parents=True, exist_ok=True)
    if isolate_workspace and not _MOUNT_POINT_RE.match(mount_point):
        raise ValueError(f"mount_point must be a simple absolute path, got {mount_point!r}")
    setenv = _setenv_line(env)
    for k in authorized_keys:
        if "\n" in k or "\r" in k:
            raise ValueError("one authorized key per list item, without newlines")

    if host_key is None:
        host_key = state_dir / "ssh_host_ed25519_key"
        if not host_key.exists():
            generate_keypair(host_key)
    host_key = Path(host_key).resolve()
    os.chmod(host_key, 0o600)
    host_key_pub = _public_line(host_key)

    auth_keys = state_dir / "authorized_keys"
    auth_keys.write_text("".join(k.strip() + "\n" for k in authorized_keys if k.strip()))
    cfg = state_dir / "sshd_config"
    pid_file = state_dir / "sshd.pid"
    log = state_dir / "sshd.log"
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)

    if isolate_workspace:
        os.makedirs(mount_point, exist_ok=True)  # on the host; stays empty there
        empty_rc = state_dir / "empty_rc"
        empty_rc.write_text("# emulated pod: host dotfiles masked\n")
        home = pwd.getpwnam("root").pw_dir
        script = [f"mount --bind {shlex.quote(str(workspace))} {shlex.quote(mount_point)}"]
        for rc in (".bashrc", ".profile", ".bash_profile", ".bash_login"):
            p = Path(home) / rc
            if p.is_file():
                script.append(f"mount --bind {shlex.quote(str(empty_rc))} {shlex.quote(str(p))}")
        script.append(f"exec {SSHD} -D -f {shlex.quote(str(cfg))} -E {shlex.quote(str(log))}")
        argv = [UNSHARE, "--mount", "--pid", "--fork", "--mount-proc", "--kill-child",
                "--propagation", "private", "sh", "-c", " && ".join(script)]
    else:
        argv = [SSHD, "-D", "-f", str(cfg), "-E", str(log)]

    last_err = ""
    for _attempt in range(5):
        port = _free_port()
        _write_config(cfg, port=port, host_key=host_key, pid_file=pid_file, auth_keys=auth_keys, setenv=setenv)
        log_start = log.stat().st_size if log.exists() else 0
        out = open(state_dir / "launcher.log", "ab")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        finally:
            out.close()
        deadline = time.monotonic() + _BANNER_WAIT_S
        ok = False
        for _ in range(400):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            if _banner_ok(port):
                ok = True
                break
            time.sleep(0.025)
        if ok:
            pid = proc.pid
            if isolate_workspace:
                pid = 0
                for _ in range(200):
                    kids = _children(proc.pid)
                    if kids:
                        pid = kids[0]
                        break
                    time.sleep(0.01)
                if not pid:
                    _kill_proc(proc)
                    raise RuntimeError("sshd answered but its namespace pid 1 was not found")
            pod = SshdPod(
                port=port, workspace=workspace, host_key_pub=host_key_pub, pid=pid, state_dir=state_dir,
                log_path=log, isolated=isolate_workspace, mount_point=mount_point if isolate_workspace else "",
                _proc=proc, _starttime=_pid_starttime(pid),
            )
            with _LIVE_LOCK:
                _LIVE[id(pod)] = pod
            return pod
        _kill_proc(proc)
        try:
            with open(log, "rb") as f:
                f.seek(log_start)
                last_err = f.read().decode(errors="replace")
        except OSError:
            last_err = ""
        try:
            last_err += (state_dir / "launcher.log").read_text(errors="replace")[-2000:]
        except OSError:
            pass
        if "Address already in use" not in last_err:
            break
    raise RuntimeError(f"sshd did not come up on 127.0.0.1: {last_err[-3000:]}")


def _kill_proc(proc: subprocess.Popen, timeout_s: float = 5) -> None:
    if proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass


def stop_sshd(pod: SshdPod, timeout_s: float = 5) -> None:
    """Stop a pod's sshd. For an isolated pod: SIGKILL the namespace's pid 1, which makes the kernel
    kill every process started in that pod. For a plain sshd: the listener only. Idempotent."""
    deadline = time.monotonic() + timeout_s
    if pod._starttime is not None and _pid_starttime(pod.pid) == pod._starttime:
        try:
            os.kill(pod.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if pod._proc is not None:
        # for an isolated pod this is `unshare`, which returns once pid 1 (and so the whole
        # namespace) is gone; --kill-child makes killing it a second line of defence
        try:
            pod._proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_proc(pod._proc, timeout_s=max(0.1, deadline - time.monotonic()))
    for _ in range(500):
        if _pid_starttime(pod.pid) != pod._starttime or pod._starttime is None or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    with _LIVE_LOCK:
        _LIVE.pop(id(pod), None)


@atexit.register
def _stop_all_at_exit() -> None:  # a crashed test must not leave pods running
    with _LIVE_LOCK:
        pods = list(_LIVE.values())
    for p in pods:
        try:
            stop_sshd(p, timeout_s=2)
        except Exception:
            pass
