"""Host keys against a real sshd: pinned per pod (not per address), checked before podtune authenticates."""

from __future__ import annotations

import subprocess

import pytest

from orchestrator.errors import SSHError
from orchestrator.paths import known_hosts_path
from orchestrator.ssh_transport import HostKeyStore, SSHTransport
from tests.doubles.sshd import generate_keypair, start_sshd, stop_sshd


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
