"""The RunPod emulator and its sshd pods, driven through the REAL runpod SDK (1.12.0).

Needs root, /usr/sbin/sshd and unshare (as the whole test suite does)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import paramiko
import pytest
import requests
import runpod
from runpod.api.graphql import run_graphql_query
from runpod.error import AuthenticationError, QueryError

from .runpod_emulator import MSG_NO_INSTANCES, MSG_RESUME_NO_GPU, RunPodEmulator
from .sshd import generate_keypair, start_sshd, stop_sshd

GPU = "NVIDIA GeForce RTX 3090"
VENV_BIN = str(Path(sys.executable).parent)
POD_PATH = f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def emu(tmp_path, monkeypatch):
    with RunPodEmulator(state_dir=tmp_path / "rp", boot_delay_s=0.2, pod_env_extra={"PATH": POD_PATH}) as e:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", e.url)
        monkeypatch.setattr(runpod, "api_key", e.api_key)
        yield e


@pytest.fixture
def key(tmp_path):
    return generate_keypair(tmp_path / "id_ed25519")


def _create(pub: str, name: str = "podtune-t", **kw) -> str:
    pod = runpod.create_pod(
        name, "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04", GPU,
        volume_in_gb=50, volume_mount_path="/workspace", container_disk_in_gb=20,
        ports="22/tcp", env={"PUBLIC_KEY": pub, "PODTUNE_RUN": "t-1"}, **kw,
    )
    return pod["id"]


def _wait_ssh_port(pod_id: str, timeout_s: float = 10) -> int:
    """What the provider does: poll get_pod until RUNNING + runtime + public port 22."""
    deadline = time.monotonic() + timeout_s
    for _ in range(500):
        pod = runpod.get_pod(pod_id)
        if pod and pod["desiredStatus"] == "RUNNING" and pod["runtime"]:
            for p in pod["runtime"]["ports"] or []:
                if p["privatePort"] == 22 and p["isIpPublic"] and p["type"] == "tcp":
                    return p["publicPort"]
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise AssertionError(f"pod {pod_id} never published SSH")


def _ssh(port: int, key_path: Path) -> paramiko.SSHClient:
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    c.connect("127.0.0.1", port=port, username="root", key_filename=str(key_path),
              allow_agent=False, look_for_keys=False, timeout=5)
    return c


def _run(c: paramiko.SSHClient, cmd: str, timeout: float = 20) -> tuple[int, str, str]:
    _, out, err = c.exec_command(cmd, timeout=timeout)
    o, e = out.read().decode(), err.read().decode()
    return out.channel.recv_exit_status(), o, e


def _host_pids(argv: list[str]) -> list[int]:
    """psutil-free /proc scan for processes whose argv is exactly `argv`."""
    want = "\0".join(argv) + "\0"
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if Path(f"/proc/{d}/cmdline").read_text() == want:
                    pids.append(int(d))
            except OSError:
                continue
    return pids


def _port_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return False
    except OSError:
        return True


def test_gpu_types_as_the_sdk_sees_them(emu):
    gpus = {g["id"]: g for g in runpod.get_gpus()}
    for gid in ("NVIDIA GeForce RTX 3090", "NVIDIA RTX A5000", "NVIDIA RTX A6000", "NVIDIA A100 80GB PCIe",
                "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"):
        assert gid in gpus
    assert gpus["NVIDIA RTX A6000"]["memoryInGb"] == 48
    g = runpod.get_gpu(GPU, 2)
    assert g["displayName"] == "RTX 3090" and g["memoryInGb"] == 24
    assert 0.2 <= g["lowestPrice"]["uninterruptablePrice"] <= 0.3
    with pytest.raises(ValueError, match="No GPU found"):
        runpod.get_gpu("NVIDIA GeForce GTX 9999")
    assert [r["op"] for r in emu.requests] == ["gpuTypes"] * 3
    assert all(r["auth"] == "account" for r in emu.requests)


def test_pod_lifecycle_over_real_ssh(emu, key, tmp_path):
    key_path, pub = key
    pod_id = _create(pub)
    assert [r["op"] for r in emu.requests][-2:] == ["gpuTypes", "podFindAndDeployOnDemand"]
    first = runpod.get_pod(pod_id)
    assert first["desiredStatus"] == "RUNNING" and first["runtime"] is None  # image still "pulling"
    assert first["costPerHr"] == pytest.approx(0.22) and first["volumeInGb"] == 50
    assert f"PUBLIC_KEY={pub}" in first["env"]
    assert first["machine"]["gpuDisplayName"] == "RTX 3090"
    port1 = _wait_ssh_port(pod_id)

    c = _ssh(port1, key_path)
    host_key1 = c.get_transport().get_remote_server_key().get_base64()
    rc, out, _ = _run(c, "echo $RUNPOD_POD_ID; ls -A /workspace | wc -l; echo $RUNPOD_API_BASE_URL; "
                         "test -n \"$RUNPOD_API_KEY\" && echo haskey; echo $PODTUNE_RUN; command -v python")
    assert rc == 0
    assert out.split() == [pod_id, "0", emu.url, "haskey", "t-1", f"{VENV_BIN}/python"]
    with c.open_sftp() as sftp:
        with sftp.open("/workspace/hello.txt", "w") as f:
            f.write("persist me")
    assert (emu.pods[pod_id].workspace / "hello.txt").read_text() == "persist me"
    assert not Path("/workspace/hello.txt").exists()  # the host's /workspace is not the pod's
    rc, out, _ = _run(c, "nohup sleep 297.25 >/dev/null 2>&1 & echo $!")
    ns_pid = int(out.strip())
    rc, out, _ = _run(c, f"kill -0 {ns_pid} && test -d /proc/{ns_pid} && echo alive")  # the pod's own pids
    assert out.strip() == "alive"
    c.close()
    assert len(_host_pids(["sleep", "297.25"])) == 1

    time.sleep(0.3)
    billed_running = emu.billed_usd(pod_id)
    assert billed_running > 0 and emu.gpu_seconds(pod_id) > 0.3

    assert runpod.stop_pod(pod_id) == {"id": pod_id, "desiredStatus": "EXITED"}
    assert runpod.get_pod(pod_id)["runtime"] is None
    assert _host_pids(["sleep", "297.25"]) == []  # every process of the pod died with it
    assert _port_closed(port1)
    gpu_s = emu.gpu_seconds(pod_id)
    billed_stopped = emu.billed_usd(pod_id)
    time.sleep(0.3)
    assert emu.gpu_seconds(pod_id) == gpu_s  # GPU meter stopped
    storage_per_s = 50 * 0.20 / 730 / 3600
    grew = emu.billed_usd(pod_id) - billed_stopped
    assert 0 < grew < storage_per_s * 2  # only storage is billed while EXITED

    resumed = runpod.resume_pod(pod_id, 1)
    assert resumed["desiredStatus"] == "RUNNING" and resumed["id"] == pod_id
    port2 = _wait_ssh_port(pod_id)
    assert port2 != port1
    c = _ssh(port2, key_path)
    assert c.get_transport().get_remote_server_key().get_base64() == host_key1  # same host key
    rc, out, _ = _run(c, "cat /workspace/hello.txt; echo; pgrep -c sleep || true")
    assert out.split() == ["persist", "me", "0"]
    c.close()

    pods = runpod.get_pods()
    assert [p["id"] for p in pods] == [pod_id] and pods[0]["uptimeSeconds"] >= 0
    runpod.terminate_pod(pod_id)
    assert runpod.get_pods() == [] and runpod.get_pod(pod_id) is None
    assert emu.pods[pod_id].desired_status == "TERMINATED"
    assert not emu.pods[pod_id].workspace.exists()
    assert _port_closed(port2)
    final = emu.billed_usd(pod_id)
    time.sleep(0.1)
    assert emu.billed_usd(pod_id) == final  # nothing is billed after terminate


def test_pod_stops_itself_with_its_own_key_only(emu, key, tmp_path):
    key_path, pub = key
    a, b = _create(pub, "pod-a"), _create(pub, "pod-b")
    port_a = _wait_ssh_port(a)
    _wait_ssh_port(b)
    script = r'''
import json, os, sys, urllib.request, urllib.error
def gql(q):
    req = urllib.request.Request(os.environ["RUNPOD_API_BASE_URL"] + "/graphql",
        data=json.dumps({"query": q}).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + os.environ["RUNPOD_API_KEY"]})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
stop = 'mutation { podStop(input: {podId: "%s"}) { id desiredStatus } }'
print(json.dumps(gql(stop % sys.argv[1])), flush=True)
print(json.dumps(gql('query { myself { pods { id } } }')), flush=True)
print(json.dumps(gql('mutation { podTerminate(input: {podId: "%s"}) }' % os.environ["RUNPOD_POD_ID"])), flush=True)
print(json.dumps(gql('query { pod(input: {podId: "%s"}) { id desiredStatus } }' % os.environ["RUNPOD_POD_ID"])), flush=True)
print(json.dumps(gql(stop % os.environ["RUNPOD_POD_ID"])), flush=True)
'''
    c = _ssh(port_a, key_path)
    with c.open_sftp() as sftp:
        with sftp.open("/workspace/selfstop.py", "w") as f:
            f.write(script)
    # like the watchdog: detached, then the session ends; the pod stops itself
    _run(c, f"setsid nohup python /workspace/selfstop.py {b} > /workspace/selfstop.log 2>&1 < /dev/null &")
    c.close()
    assert emu.wait_status(a, "EXITED", 10)
    lines = []
    for _ in range(100):
        lines = (emu.pods[a].workspace / "selfstop.log").read_text().splitlines()
        if len(lines) >= 5:
            break
        time.sleep(0.05)
    other, myself, term, own_read, own_stop = (json.loads(x) for x in lines[:5])
    assert other[0] == 403 and "errors" in other[1]  # may not stop another pod
    assert myself[0] == 403 and term[0] == 403  # may not list the account or terminate
    assert own_read == [200, {"data": {"pod": {"id": a, "desiredStatus": "RUNNING"}}}]
    assert own_stop == [200, {"data": {"podStop": {"id": a, "desiredStatus": "EXITED"}}}]
    assert runpod.get_pod(b)["desiredStatus"] == "RUNNING"
    assert runpod.get_pod(a)["desiredStatus"] == "EXITED"
    scoped = [r for r in emu.requests if r["auth"] == "pod"]
    assert {r["pod_scope"] for r in scoped} == {a} and [r["status"] for r in scoped] == [403, 403, 403, 200, 200]
    for _ in range(100):
        if _port_closed(port_a):
            break
        time.sleep(0.05)
    assert _port_closed(port_a)
    # a pod-scoped key never works as the account key for the SDK
    with pytest.raises(QueryError):
        run_graphql_query('mutation { podStop(input: {podId: "%s"}) { id } }' % b, api_key=emu.pods[a].api_key)


def test_auth_failures_raise_authentication_error(emu, monkeypatch):
    monkeypatch.setattr(runpod, "api_key", "rpa_WRONG")
    with pytest.raises(AuthenticationError):
        runpod.get_gpus()
    monkeypatch.setattr(runpod, "api_key", emu.api_key)
    emu.unauthorized = True
    with pytest.raises(AuthenticationError):
        runpod.get_pods()
    emu.unauthorized = False
    assert runpod.get_pods() == []
    # 1.12.0 sends the key only as a Bearer header; ?api_key= is not how it authenticates
    r = requests.post(f"{emu.url}/graphql?api_key={emu.api_key}", json={"query": "{ myself { id } }"}, timeout=5)
    assert r.status_code == 401
    assert [r["auth"] for r in emu.requests] == ["invalid", None, "account", "missing"]
    assert all((r["user_agent"] or "").startswith("RunPod-Python-SDK") for r in emu.requests[:3])


def test_faults_html_5xx_and_hang(emu, key):
    _, pub = key
    emu.fail_next(1, status=502)
    with pytest.raises(requests.exceptions.JSONDecodeError):  # what the SDK surfaces for an HTML page
        runpod.get_gpus()
    assert len(runpod.get_gpus()) >= 6
    emu.fail_next(1, status=500, op="podFindAndDeployOnDemand")  # get_gpu passes, the create fails
    with pytest.raises(ValueError):
        _create(pub)
    assert runpod.get_pods() == [] and emu.pods == {}
    # a create whose answer never comes still rents the pod (why create must not be blindly retried)
    emu.hang_next(1, seconds=1.0, op="podFindAndDeployOnDemand")
    q = ('mutation { podFindAndDeployOnDemand(input: {name: "hung", imageName: "img", gpuTypeId: "%s", '
         'cloudType: ALL, gpuCount: 1, ports: "22/tcp", volumeInGb: 10}) { id } }' % GPU)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{emu.url}/graphql", json={"query": q}, timeout=0.3,
                      headers={"Authorization": f"Bearer {emu.api_key}"})
    assert [p["name"] for p in runpod.get_pods()] == ["hung"]
    emu.hang_next(1, seconds=0.5, execute=False)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{emu.url}/graphql", json={"query": "{ myself { id } }"}, timeout=0.2,
                      headers={"Authorization": f"Bearer {emu.api_key}"})
    assert [r["fault"] for r in emu.requests if r["fault"]] == ["fail", "fail", "hang", "hang"]


def test_capacity_errors(emu, key):
    _, pub = key
    emu.no_gpu_free.add(GPU)
    assert runpod.get_gpu(GPU)["lowestPrice"]["uninterruptablePrice"] is None
    with pytest.raises(QueryError, match="no longer any instances available") as ei:
        _create(pub)
    assert str(ei.value) == MSG_NO_INSTANCES
    emu.no_gpu_free.clear()
    pod_id = _create(pub)
    runpod.stop_pod(pod_id)
    emu.resume_fails = True
    with pytest.raises(QueryError) as ei:
        runpod.resume_pod(pod_id, 1)
    assert str(ei.value) == MSG_RESUME_NO_GPU
    assert runpod.get_pod(pod_id)["desiredStatus"] == "EXITED"
    emu.resume_fails = False
    assert runpod.resume_pod(pod_id, 2)["desiredStatus"] == "RUNNING"
    assert runpod.get_pod(pod_id)["costPerHr"] == pytest.approx(0.44)  # price x gpu count


def test_graphql_is_parsed_and_validated(emu, key):
    _, pub = key
    with pytest.raises(QueryError, match='Cannot query field "bogus" on type "User"'):
        run_graphql_query("query { myself { id bogus } }")
    with pytest.raises(QueryError, match="podRentInterruptable"):
        run_graphql_query('mutation { podRentInterruptable(input: {bidPerGpu: 0.1}) { id } }')
    # the SDK interpolates env values unescaped: a quote breaks the document, as on RunPod
    with pytest.raises(QueryError, match="Syntax Error"):
        runpod.create_pod("x", "img", GPU, env={"A": 'say "hi"'})
    assert [r["status"] for r in emu.requests if r["op"] != "gpuTypes"] == [400, 400, 400]
    assert emu.requests[-1]["op"] is None and emu.pods == {}
    # what the SDK cannot ask for, podtune can: the balance
    emu.balance_usd = 12.5
    me = run_graphql_query("query { myself { clientBalance currentSpendPerHr } }")["data"]["myself"]
    assert me == {"clientBalance": 12.5, "currentSpendPerHr": 0}
    assert runpod.get_user() == {"id": "user_2emulated0000000000000", "pubKey": "", "networkVolumes": []}
    # values with spaces (PUBLIC_KEY has them) reach the pod; the API shows env as KEY=VALUE strings
    pod_id = _create(pub)
    assert emu.pods[pod_id].sshd_env["PUBLIC_KEY"] == pub and emu.pods[pod_id].env["PODTUNE_RUN"] == "t-1"


def test_plain_sshd_and_setenv_validation(tmp_path, key):
    key_path, pub = key
    with pytest.raises(ValueError):
        start_sshd(state_dir=tmp_path / "s0", workspace=tmp_path / "w0", authorized_keys=[pub],
                   env={"A": 'bad"quote'})
    pod = start_sshd(state_dir=tmp_path / "s1", workspace=tmp_path / "w1", authorized_keys=[pub],
                     env={"FOO": "a b=c", "PATH": POD_PATH}, isolate_workspace=False)
    try:
        c = _ssh(pod.port, key_path)
        assert _run(c, "echo \"$FOO\"")[1].strip() == "a b=c"
        c.close()
    finally:
        stop_sshd(pod)
    assert _port_closed(pod.port)
    stop_sshd(pod)  # idempotent


def test_close_stops_every_pod(tmp_path, key, monkeypatch):
    _, pub = key
    e = RunPodEmulator(state_dir=tmp_path / "rp2", boot_delay_s=0.0)
    monkeypatch.setenv("RUNPOD_API_BASE_URL", e.url)
    monkeypatch.setattr(runpod, "api_key", e.api_key)
    pod_id = _create(pub)
    port = _wait_ssh_port(pod_id)
    e.close()
    assert _port_closed(port)
    e.close()
