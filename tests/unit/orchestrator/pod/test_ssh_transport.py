"""Host keys against a real sshd: pinned per pod (not per address), checked before podtune authenticates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import SSHError
from orchestrator.paths import known_hosts_path
from orchestrator.pod.ssh_transport import HostKeyStore, SSHTransport
from tests.doubles.sshd import generate_keypair, start_sshd, stop_sshd

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def client_key(tmp_path):
    return generate_keypair(tmp_path / "client" / "id_ed25519")


def _sshd(tmp_path, name: str, public: str):
    """A pod's sshd with its own host key; a fresh port each time, as RunPod gives a resumed pod."""
    host_key, _ = generate_keypair(tmp_path / name / "ssh_host_ed25519_key")
    return start_sshd(state_dir=tmp_path / name, workspace=tmp_path / name / "ws", authorized_keys=[public],
                      env={}, host_key=host_key, isolate_workspace=False)


def _connect(sshd, key, label: str = "pod123") -> SSHTransport:
    return SSHTransport(host="127.0.0.1", port=sshd.port, user="root", key_path=key, pin_label=label,
                        known_hosts=known_hosts_path(), connect_timeout_s=10).connect()


def _fingerprint(sshd) -> str:
    pub = sshd.state_dir / "ssh_host_ed25519_key.pub"
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]


def test_a_pod_answering_with_another_key_on_a_new_port_is_refused_before_authentication(tmp_path, client_key):
    key, public = client_key
    first = _sshd(tmp_path, "boot1", public)
    try:
        pinned = _connect(first, key)  # first contact pins the key of pod123, and says which
        pinned.close()
        assert pinned.host_key_first_contact and _fingerprint(first) in pinned.host_key_first_contact
    finally:
        stop_sshd(first)
    impostor = _sshd(tmp_path, "boot2", public)
    try:
        with pytest.raises(SSHError) as err:
            _connect(impostor, key)
        log = impostor.log_path.read_text()
    finally:
        stop_sshd(impostor)
    said = f"{err.value.message} {err.value.hint}"
    assert "host key of pod pod123 changed" in said
    assert _fingerprint(first) in said and _fingerprint(impostor) in said
    assert "Accepted publickey" not in log, "podtune authenticated to a host whose key it refused"


def test_a_new_key_after_podtune_resumed_the_pod_is_shown_with_its_fingerprint_and_reason(tmp_path, client_key):
    key, public = client_key
    first = _sshd(tmp_path, "boot1", public)
    _connect(first, key).close()
    stop_sshd(first)
    HostKeyStore(known_hosts_path()).expect_new_key("pod123", "podtune resumed this pod")
    second = _sshd(tmp_path, "boot2", public)
    try:
        transport = _connect(second, key)
        transport.close()
        assert transport.host_key_notice is not None
        assert _fingerprint(second) in transport.host_key_notice and "podtune resumed this pod" in transport.host_key_notice
        _connect(second, key).close()  # the new key is pinned now
        third = _sshd(tmp_path, "boot3", public)
        try:
            with pytest.raises(SSHError, match="changed"):  # the expectation was used up
                _connect(third, key)
        finally:
            stop_sshd(third)
    finally:
        stop_sshd(second)


def test_a_channel_that_drops_during_a_command_is_an_ssherror_that_followers_reconnect_on(tmp_path, client_key):
    """paramiko's own error would escape the follower's reconnect (it knows SSHError and OSError, not paramiko)."""
    import paramiko

    from orchestrator.pod.follow import CONNECTION_ERRORS

    key, public = client_key
    sshd = _sshd(tmp_path, "pod", public)
    try:
        transport = _connect(sshd, key)
        assert transport.exec("echo hi").stdout == "hi\n"
        real = paramiko.Channel.exec_command

        def dropped(self, command):
            real(self, command)
            self.close()  # the channel is gone when its output is read
            raise paramiko.SSHException("Channel closed.")

        paramiko.Channel.exec_command = dropped  # type: ignore[method-assign]
        try:
            with pytest.raises(SSHError, match="dropped during a command") as caught:
                transport.exec("echo hi")
            with pytest.raises(SSHError, match="dropped during a command"):
                transport.stream("cat")
        finally:
            paramiko.Channel.exec_command = real  # type: ignore[method-assign]
        assert isinstance(caught.value, CONNECTION_ERRORS)
        assert transport.exec("echo again").stdout == "again\n"  # the connection itself is still usable
        transport.close()
    finally:
        stop_sshd(sshd)


def test_each_packet_leaves_at_once_so_a_command_with_stdin_does_not_wait_for_a_delayed_ack(tmp_path, client_key):
    """With Nagle's algorithm on, the stdin and EOF written after an exec request waited for the pod's delayed ACK:
    ~40 ms per command on loopback, a round trip to a real pod (BENCHMARKS.md, SSH round trips)."""
    import socket

    key, public = client_key
    sshd = _sshd(tmp_path, "pod", public)
    try:
        transport = _connect(sshd, key)
        sock = transport.client.get_transport().sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert transport.exec("cat", stdin=b"sent as stdin").stdout == "sent as stdin"
        transport.close()
    finally:
        stop_sshd(sshd)


def test_a_pod_with_nothing_listening_is_an_ssherror_with_the_command_to_try_by_hand(tmp_path, client_key):
    import socket

    from orchestrator.pod.ssh_transport import open_if_ssh

    key, _ = client_key
    with socket.socket() as held:  # a port that was free a moment ago: nothing listens on it now
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
    assert open_if_ssh("127.0.0.1", port, timeout_s=2) is None  # not ready yet: the wait looks again
    with pytest.raises(SSHError) as err:
        SSHTransport(host="127.0.0.1", port=port, user="root", key_path=key, pin_label="pod123",
                     known_hosts=known_hosts_path(), connect_timeout_s=5).connect()
    assert f"cannot open SSH to 127.0.0.1:{port}" in err.value.message
    assert f"ssh -i {key} -p {port} root@127.0.0.1" in (err.value.hint or "")


def test_planning_and_starting_a_run_do_not_import_paramiko_until_a_pod_is_reached():
    """paramiko takes ~0.1 s to import: the RunPod provider starts it on a thread while the pod boots."""
    code = ("import sys\nimport orchestrator.cli, orchestrator.run, orchestrator.planning.plan, orchestrator.providers.runpod\n"
            "print('PARAMIKO', 'paramiko' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "PARAMIKO False" in out.stdout, out.stdout + out.stderr
