"""The RunPod REST v2 emulator and its sshd pods, driven with plain httpx as RunPod's v2 clients call it.

Needs root, /usr/sbin/sshd and unshare (as the whole test suite does)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import httpx
import paramiko
import pytest

from . import runpod_emulator as rpe
from .openapi_contract import SPEC_PATH, Contract
from .runpod_emulator import MSG_NO_INSTANCES, MSG_RESUME_NO_GPU, RunPodEmulator
from .sshd import generate_keypair, start_sshd, stop_sshd

GPU = "NVIDIA GeForce RTX 3090"
IMAGE = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"
VENV_BIN = str(Path(sys.executable).parent)
POD_PATH = f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROBLEM = "application/problem+json"


@pytest.fixture
def emu(tmp_path):
    with RunPodEmulator(state_dir=tmp_path / "rp", boot_delay_s=0.2, starting_delay_s=0.2,
                        pod_env_extra={"PATH": POD_PATH}) as e:
        yield e
        assert e.contract_violations == []  # the emulator never answered outside the document


@pytest.fixture
def api(emu):
    with httpx.Client(base_url=emu.url, headers={"Authorization": f"Bearer {emu.api_key}"}, timeout=10) as c:
        yield c


@pytest.fixture
def key(tmp_path):
    return generate_keypair(tmp_path / "id_ed25519")


def _body(pub: str, name: str = "podtune-t", **over) -> dict:
    body = {
        "name": name, "image": IMAGE, "gpu": {"id": GPU, "count": 1}, "cloud": "COMMUNITY", "disk": 20,
        "mounts": {"persistent": {"size": 50, "path": "/workspace"}}, "ports": ["22/tcp"],
        "env": {"PUBLIC_KEY": pub, "PODTUNE_RUN": "t-1"},
    }
    body.update(over)
    return body


def _create(api: httpx.Client, pub: str, name: str = "podtune-t", **over) -> dict:
    r = api.post("/v2/pods", json=_body(pub, name, **over))
    assert r.status_code == 201, r.text
    return r.json()


def _wait_ssh(api: httpx.Client, pod_id: str, timeout_s: float = 15) -> tuple[int, list[str]]:
    """What a v2 client does: poll getPod until RUNNING with ssh.direct; -> (port, statuses seen)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pod = api.get(f"/v2/pods/{pod_id}").json()
        if not seen or seen[-1] != pod["status"]:
            seen.append(pod["status"])
        if pod["status"] != "RUNNING":
            assert pod["runtime"] is None and pod["ssh"]["direct"] is None
        elif pod["ssh"]["direct"]:
            port = pod["ssh"]["direct"]["port"]
            assert {"private": 22, "public": port, "type": "tcp", "ip": "127.0.0.1"} in pod["runtime"]["ports"]
            return port, seen
        time.sleep(0.02)
    raise AssertionError(f"pod {pod_id} never published SSH (saw {seen})")


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


def _wait(pred, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_the_repo_carries_the_shared_document_and_routes_every_operation():
    shared = Path("/work/shared/runpod-v2-pods.openapi.json")
    if shared.exists():
        assert SPEC_PATH.read_bytes() == shared.read_bytes()
    c = Contract()
    assert set(c.operations) == {"listPods", "createPod", "getPod", "updatePod", "deletePod", "podAction",
                                 "listGpuTypes", "getGpuType", "listPodBilling"}
    route, _ = c.match("GET", "/v2/catalog/gpus/NVIDIA%20GeForce%20RTX%203090")
    assert route.op == "getGpuType" and route.params == {"id": GPU}
    assert c.match("PUT", "/v2/pods/x") == (None, ["DELETE", "GET", "PATCH"])
    # the allOf + unevaluatedProperties trap: one bad field must not make valid fields "unknown"
    route, _ = c.match("POST", "/v2/pods")
    bad = {"name": "x", "image": "i", "gpu": {"id": GPU, "minRamPerGpu": 16}, "cloud": "ALL", "bogus": 1}
    raw = list(c.validator(c.schema_pointer("CreatePodRequest")).iter_errors(bad))
    assert any("'name'" in e.message for e in raw)  # what a naive reading of the validator would report
    assert sorted(c.check_request(route, query={}, body=json.dumps(bad).encode()).errors) == [
        "$.cloud: 'ALL' is not one of ['SECURE', 'COMMUNITY']",
        "$.gpu: additional properties 'minRamPerGpu' not allowed",
        "$: additional properties 'bogus' not allowed",
    ]


def test_pod_lifecycle_over_real_ssh(emu, api, key):
    key_path, pub = key
    created = _create(api, pub)
    pod_id = created["id"]
    assert created["status"] == "PROVISIONING" and created["runtime"] is None
    assert created["actions"] == ["stop", "terminate"] and created["cost"] == pytest.approx(0.22)  # community
    assert created["mounts"] == {"persistent": {"size": 50, "path": "/workspace"}}
    assert created["gpu"] == {"id": GPU, "count": 1} and created["env"]["PUBLIC_KEY"] == pub
    port1, seen = _wait_ssh(api, pod_id)
    assert seen == ["PROVISIONING", "STARTING", "RUNNING"]
    pod = api.get(f"/v2/pods/{pod_id}").json()
    assert pod["actions"] == ["stop", "restart", "terminate"] and pod["startedAt"] is not None
    assert pod["runtime"]["gpus"] == [{"util": 0, "memoryUtil": 0}] and pod["runtime"]["uptime"] >= 0

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
    ns_pid = int(_run(c, "nohup sleep 297.25 >/dev/null 2>&1 & echo $!")[1].strip())
    assert _run(c, f"kill -0 {ns_pid} && test -d /proc/{ns_pid} && echo alive")[1].strip() == "alive"
    c.close()
    assert len(_host_pids(["sleep", "297.25"])) == 1

    r = api.post(f"/v2/pods/{pod_id}/action", json={"action": "start"})  # not allowed while RUNNING
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM and r.json()["status"] == 409

    time.sleep(0.2)
    r = api.post(f"/v2/pods/{pod_id}/action", json={"action": "stop"})
    assert r.status_code == 200
    stopped = r.json()
    assert (stopped["status"], stopped["runtime"], stopped["cost"]) == ("EXITED", None, 0)
    assert stopped["actions"] == ["start", "terminate"] and stopped["ssh"]["direct"] is None
    assert emu.wait_status(pod_id, "EXITED", 1) and emu.pods[pod_id].status == "EXITED"
    assert _host_pids(["sleep", "297.25"]) == []  # every process of the pod died with it
    assert _port_closed(port1)
    gpu_s = emu.gpu_seconds(pod_id)
    time.sleep(0.2)
    assert emu.gpu_seconds(pod_id) == gpu_s  # GPU meter stopped; only the volume bills while EXITED

    r = api.post(f"/v2/pods/{pod_id}/action", json={"action": "start"})
    assert r.status_code == 200 and r.json()["status"] == "STARTING"
    port2, seen = _wait_ssh(api, pod_id)
    assert port2 != port1 and seen[-1] == "RUNNING" and "PROVISIONING" not in seen
    c = _ssh(port2, key_path)
    assert c.get_transport().get_remote_server_key().get_base64() == host_key1  # same host key
    rc, out, _ = _run(c, "cat /workspace/hello.txt; echo; pgrep -c sleep || true")
    assert out.split() == ["persist", "me", "0"]
    c.close()

    assert [p["id"] for p in api.get("/v2/pods").json()["pods"]] == [pod_id]
    r = api.post(f"/v2/pods/{pod_id}/action", json={"action": "terminate"})
    assert r.status_code == 204 and r.content == b""
    assert api.get(f"/v2/pods/{pod_id}").status_code == 404  # gone, never shown as TERMINATED
    assert api.get("/v2/pods").json() == {"pods": []}
    assert api.delete(f"/v2/pods/{pod_id}").status_code == 404
    assert emu.pods[pod_id].desired_status == "TERMINATED" and not emu.pods[pod_id].workspace.exists()
    assert _port_closed(port2)
    final = emu.billed_usd(pod_id)
    time.sleep(0.1)
    assert emu.billed_usd(pod_id) == final  # nothing is billed after terminate
    assert emu.graphql_requests == [] and emu.request_violations == []
    ops = [(r["method"], r["op"], r["status"]) for r in emu.requests]
    assert ops[0] == ("POST", "createPod", 201) and ("POST", "podAction", 409) in ops
    assert emu.requests[0]["body"]["mounts"]["persistent"]["path"] == "/workspace"


def test_request_errors_are_answered_like_the_api(emu, api, key):
    _, pub = key
    r = api.post("/v2/pods", json=_body(pub, gpu={"id": GPU, "count": 1, "minRamPerGpu": 16}, disk=0,
                                          startSsh=True, volumeInGb=50))
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert r.json()["errors"] == ["$.disk: 0 is less than the minimum of 1",
                                  "$.gpu: additional properties 'minRamPerGpu' not allowed",
                                  "$: additional properties 'volumeInGb' not allowed"]
    r = api.post("/v2/pods", json=_body(pub, mounts={"persistent": {"size": 5, "path": "/workspace"}}))
    assert r.status_code == 422 and r.json()["errors"] == ["$.mounts.persistent.size: 5 is less than the minimum of 10"]
    r = api.post("/v2/pods", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = api.post("/v2/pods", json=_body(pub, gpu={"id": "NVIDIA GeForce GTX 9999"}))
    assert r.status_code == 400 and "GTX 9999" in r.json()["detail"]
    r = api.post("/v2/pods", json=_body(pub, mounts={"persistent": {"size": 20, "path": "/etc"}}))
    assert r.status_code == 400
    emu.balance_usd = 0
    r = api.post("/v2/pods", json=_body(pub))
    assert r.status_code == 402 and r.headers["content-type"] == PROBLEM
    emu.balance_usd = 100
    assert emu.pods == {}
    assert api.get("/v2/pods/nosuchpod").status_code == 404
    assert api.post("/v2/pods/nosuchpod/action", json={"action": "bogus"}).status_code == 422
    assert api.put("/v2/pods/x", json={}).status_code == 405
    assert api.get("/v2/pods", params={"name": "podtune-t"}).status_code == 200  # tolerated, ignored...
    assert "listPods: query.name: parameter not declared by listPods" in emu.request_violations  # ...but noted
    # auth: Bearer only, problem+json 401
    assert httpx.get(f"{emu.url}/v2/pods", timeout=5).status_code == 401
    r = httpx.get(f"{emu.url}/v2/pods?api_key={emu.api_key}", timeout=5)
    assert r.status_code == 401 and r.json()["title"] == "Unauthorized"
    assert httpx.get(f"{emu.url}/v2/pods", headers={"Authorization": "Bearer rpa_WRONG"}, timeout=5).status_code == 401
    emu.unauthorized = True
    assert api.get("/v2/pods").status_code == 401
    emu.unauthorized = False
    # PATCH: schema-checked; name and lock apply at once; a locked pod cannot be stopped
    pod_id = _create(api, pub)["id"]
    assert api.patch(f"/v2/pods/{pod_id}", json={"name": "renamed", "gpu": {"id": GPU}}).status_code == 422
    r = api.patch(f"/v2/pods/{pod_id}", json={"name": "renamed", "locked": True, "env": {"A": "1"}})
    patched = r.json()
    assert r.status_code == 200 and (patched["name"], patched["locked"], patched["env"]) == ("renamed", True, {"A": "1"})
    assert "stop" not in patched["actions"]
    assert api.post(f"/v2/pods/{pod_id}/action", json={"action": "stop"}).status_code == 409
    assert api.delete(f"/v2/pods/{pod_id}").status_code == 204
    assert api.get(f"/v2/pods/{pod_id}").status_code == 404


def test_catalog_capacity_and_resume(emu, api, key):
    _, pub = key
    q = {"include": "AVAILABILITY", "product": "POD"}
    gpus = {g["id"]: g for g in api.get("/v2/catalog/gpus", params=q).json()["gpus"]}
    assert {"NVIDIA GeForce RTX 3090", "NVIDIA RTX A5000", "NVIDIA RTX A6000", "NVIDIA A100 80GB PCIe",
            "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"} <= set(gpus)
    g = gpus[GPU]
    assert (g["name"], g["memory"], g["availability"]) == ("RTX 3090", 24, "HIGH")
    assert g["price"] == {"secure": 0.43, "community": 0.22} and g["dataCenters"][0]["availability"] == "HIGH"
    assert "availability" not in api.get("/v2/catalog/gpus").json()["gpus"][0]  # only when asked for
    assert api.get("/v2/catalog/gpus", params={"include": "AVAILABILITY"}).status_code == 400  # product required
    assert api.get("/v2/catalog/gpus", params={**q, "count": 0}).status_code == 422
    assert api.get(f"/v2/catalog/gpus/{GPU}", params={**q, "count": 9}).json()["availability"] == "NONE"
    assert api.get("/v2/catalog/gpus/NVIDIA GeForce GTX 9999").status_code == 404
    emu.availability["NVIDIA A40"] = "LOW"
    emu.no_gpu_free.add(GPU)
    gpus = {g["id"]: g for g in api.get("/v2/catalog/gpus", params={**q, "cloud": "SECURE"}).json()["gpus"]}
    assert gpus[GPU]["availability"] == "NONE" and "dataCenters" not in gpus[GPU]
    assert gpus["NVIDIA A40"]["availability"] == "LOW"
    r = api.post("/v2/pods", json=_body(pub))
    assert r.status_code == 400 and r.json()["detail"] == MSG_NO_INSTANCES and emu.pods == {}
    emu.no_gpu_free.clear()
    emu.availability["NVIDIA A40"] = "NONE"  # no stock at all: the same 400
    assert api.post("/v2/pods", json=_body(pub, gpu={"id": "NVIDIA A40"})).json()["detail"] == MSG_NO_INSTANCES
    pod = _create(api, pub, gpu={"id": GPU, "count": 2}, cloud="SECURE")
    assert pod["cost"] == pytest.approx(0.86)  # secure price x gpu count
    assert api.post(f"/v2/pods/{pod['id']}/action", json={"action": "stop"}).status_code == 200
    emu.resume_fails = True  # the host's GPUs went to someone else
    r = api.post(f"/v2/pods/{pod['id']}/action", json={"action": "start"})
    assert r.status_code == 400 and r.json()["detail"] == MSG_RESUME_NO_GPU
    assert api.get(f"/v2/pods/{pod['id']}").json()["status"] == "EXITED"
    emu.resume_fails = False
    assert api.post(f"/v2/pods/{pod['id']}/action", json={"action": "start"}).json()["cost"] == pytest.approx(0.86)
    emu.terminate_action_status = 200  # the document also allows a 200 with the pod for terminate
    r = api.post(f"/v2/pods/{pod['id']}/action", json={"action": "terminate"})
    assert r.status_code == 200 and (r.json()["status"], r.json()["actions"]) == ("TERMINATED", [])
    assert api.get(f"/v2/pods/{pod['id']}").status_code == 404


def test_faults(emu, api, key):
    _, pub = key
    with pytest.raises(ValueError, match="unknown operation"):
        emu.fail_next(op="podFindAndDeployOnDemand")  # GraphQL names are gone: faults use operationIds
    emu.fail_next(1, status=502)
    r = api.get("/v2/catalog/gpus")
    assert r.status_code == 502 and r.headers["content-type"] == "text/html"
    emu.fail_next(1, status=503, op="listPods", body="json")
    assert api.get("/v2/catalog/gpus").status_code == 200  # another operation passes
    r = api.get("/v2/pods")
    assert r.status_code == 503 and r.headers["content-type"] == PROBLEM and r.json()["status"] == 503
    emu.rate_limit_next(1, retry_after_s=7)
    r = api.get("/v2/pods")
    assert r.status_code == 429 and r.headers["retry-after"] == "7" and r.json()["title"] == "Too Many Requests"
    emu.fail_next(1, status=500, op="createPod")
    assert api.post("/v2/pods", json=_body(pub)).status_code == 500 and emu.pods == {}
    # a create whose answer is lost still rents the pod (why create must not be blindly retried)
    emu.lose_create_response_next()
    assert api.post("/v2/pods", json=_body(pub, "lost-500")).status_code == 500
    emu.lose_create_response_next("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/v2/pods", json=_body(pub, "lost-drop"))
    emu.hang_next(1, seconds=1.0, op="createPod")
    with pytest.raises(httpx.ReadTimeout):
        api.post("/v2/pods", json=_body(pub, "hung"), timeout=0.3)
    emu.hang_next(1, seconds=0.5, execute=False)
    with pytest.raises(httpx.ReadTimeout):
        api.get("/v2/pods", timeout=0.2)
    assert sorted(p["name"] for p in api.get("/v2/pods").json()["pods"]) == ["hung", "lost-500", "lost-drop"]
    assert [r["fault"] for r in emu.requests if r["fault"]] == ["fail", "fail", "rate", "fail", "lost-500",
                                                                 "lost-drop", "hang", "hang"]
    # an image that fails to pull: PROVISIONING -> ERROR, still billing, start/terminate allowed
    emu.pod_error_next = True
    pod_id = _create(api, pub, "broken")["id"]
    assert emu.wait_v2_status(pod_id, "ERROR", 5)
    pod = api.get(f"/v2/pods/{pod_id}").json()
    assert (pod["actions"], pod["runtime"], pod["cost"]) == (["start", "terminate"], None, pytest.approx(0.22))
    assert api.post(f"/v2/pods/{pod_id}/action", json={"action": "stop"}).status_code == 409
    assert api.post(f"/v2/pods/{pod_id}/action", json={"action": "start"}).status_code == 200
    assert emu.wait_v2_status(pod_id, "RUNNING", 10)


def test_billing_records_reconcile_with_the_meter(emu, api, key):
    _, pub = key
    # no ports, no mounts: v2 has no defaults, so no volume, no SSH, no disk billing
    pod = _create(api, pub, "bare", ports=[], mounts={})
    assert pod["mounts"] == {} and pod["ports"] == []
    vol = _create(api, pub, "vol")
    assert emu.wait_ready(pod["id"], 10) and emu.wait_ready(vol["id"], 10)
    bare = api.get(f"/v2/pods/{pod['id']}").json()
    assert bare["status"] == "RUNNING" and bare["ssh"]["direct"] is None and bare["runtime"]["ports"] == []
    # without a volume /workspace is container disk: a restart wipes it
    (emu.pods[pod["id"]].workspace / "scratch").write_text("x")
    r = api.post(f"/v2/pods/{pod['id']}/action", json={"action": "restart"})
    assert r.status_code == 200 and r.json()["status"] == "STARTING" and r.json()["runtime"] is None
    assert emu.wait_v2_status(pod["id"], "RUNNING", 10)
    assert not (emu.pods[pod["id"]].workspace / "scratch").exists()
    time.sleep(0.3)
    api.post(f"/v2/pods/{vol['id']}/action", json={"action": "stop"})
    api.delete(f"/v2/pods/{pod['id']}")
    r = api.get("/v2/billing/pods", params={"podId": vol["id"], "bucketSize": "hour"})
    assert r.status_code == 200
    records = r.json()["records"]
    assert records and all(x["podId"] == vol["id"] and x["cpuAmount"] == 0 for x in records)
    assert sum(x["totalAmount"] for x in records) == pytest.approx(emu.billed_usd(vol["id"]), rel=0.02)
    assert sum(x["diskAmount"] for x in records) > 0 and r.json()["metadata"]["query"]["bucketSize"] == "hour"
    every = api.get("/v2/billing/pods").json()  # all pods, default bucketSize day
    assert every["metadata"]["query"]["bucketSize"] == "day" and every["metadata"]["uniquePodCount"] == 2
    terminated = [x for x in every["records"] if x["podId"] == pod["id"]]
    assert terminated and sum(x["diskAmount"] for x in terminated) == 0  # terminated pods stay billed
    assert sum(x["gpuAmount"] for x in terminated) == pytest.approx(emu.billed_usd(pod["id"]), rel=0.02)
    emu.billing_delay_s = 7200  # the billing pipeline lags: no bucket yet
    assert api.get("/v2/billing/pods", params={"bucketSize": "hour"}).json()["records"] == []
    r = api.get("/v2/billing/pods", params={"lastN": 2, "startTime": "2026-01-01T00:00:00Z"})
    assert r.status_code == 400
    assert api.get("/v2/billing/pods", params={"startTime": "yesterday"}).status_code == 422


def test_pod_scoped_key_stops_only_its_own_pod(emu, api, key):
    key_path, pub = key
    a, b = _create(api, pub, "pod-a")["id"], _create(api, pub, "pod-b")["id"]
    port_a, _ = _wait_ssh(api, a)
    script = r'''
import json, os, sys, urllib.request, urllib.error
def call(method, path, body=None):
    req = urllib.request.Request(os.environ["RUNPOD_API_BASE_URL"] + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + os.environ["RUNPOD_API_KEY"]})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
me = os.environ["RUNPOD_POD_ID"]
print(json.dumps([call("POST", "/v2/pods/%s/action" % sys.argv[1], {"action": "stop"}),
                  call("GET", "/v2/pods/" + me),
                  call("POST", "/v2/pods/%s/action" % me, {"action": "terminate"}),
                  call("POST", "/v2/pods/%s/action" % me, {"action": "stop"})]), flush=True)
'''
    c = _ssh(port_a, key_path)
    with c.open_sftp() as sftp:
        with sftp.open("/workspace/selfstop.py", "w") as f:
            f.write(script)
    # like the watchdog: detached, then the session ends; the pod stops itself
    _run(c, f"setsid nohup python /workspace/selfstop.py {b} > /workspace/selfstop.log 2>&1 < /dev/null &")
    c.close()
    assert emu.wait_status(a, "EXITED", 10)
    log = emu.pods[a].workspace / "selfstop.log"
    assert _wait(lambda: log.exists() and log.read_text().strip())
    assert json.loads(log.read_text()) == [403, 403, 403, 200]
    assert _wait(lambda: _port_closed(port_a))
    assert api.get(f"/v2/pods/{b}").json()["status"] != "EXITED"
    assert [r["status"] for r in emu.requests if r["auth"] == "pod"] == [403, 403, 403, 200]

    # where v2 refuses pod keys, the pod falls back to GraphQL podStop (its own pod only)
    emu.pod_keys_on_v2 = False
    key_b = emu.pods[b].sshd_env["RUNPOD_API_KEY"]
    auth_b = {"Authorization": f"Bearer {key_b}"}
    assert httpx.post(f"{emu.url}/v2/pods/{b}/action", json={"action": "stop"}, headers=auth_b).status_code == 403
    stop = 'mutation { podStop(input: { podId: "%s" }) { id desiredStatus } }'
    r = httpx.post(f"{emu.url}/graphql", json={"query": stop % a}, headers=auth_b)
    assert r.status_code == 403 and r.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    r = httpx.post(f"{emu.url}/graphql", json={"query": "query { myself { id } }"}, headers=auth_b)
    assert r.status_code == 400  # nothing but podStop is left
    r = httpx.post(f"{emu.url}/graphql", json={"query": stop % b}, headers=auth_b)
    assert r.json() == {"data": {"podStop": {"id": b, "desiredStatus": "EXITED"}}}
    assert emu.wait_status(b, "EXITED", 5) and api.get(f"/v2/pods/{b}").json()["status"] == "EXITED"
    assert [(r["op"], r["status"]) for r in emu.graphql_requests] == [("podStop", 403), ("graphql", 400),
                                                                      ("podStop", 200)]
    emu.graphql_gone = True
    assert httpx.post(f"{emu.url}/graphql", json={"query": stop % b}, headers=auth_b).status_code == 410
    assert len(emu.graphql_requests) == 4


def test_responses_outside_the_document_are_caught(emu, api, monkeypatch):
    real = RunPodEmulator._gpu_view

    def bad_view(self, g, q, single):
        out = real(self, g, q, single)
        out["memory"] = f"{out['memory']} GB"  # a string where the document says integer
        return out

    monkeypatch.setattr(RunPodEmulator, "_gpu_view", bad_view)
    r = api.get(f"/v2/catalog/gpus/{GPU}")
    assert r.status_code == 500 and r.headers["content-type"] == PROBLEM
    assert emu.contract_violations == ["getGpuType 200: $.memory: '24 GB' is not of type 'integer'"]
    assert r.json()["errors"] == emu.contract_violations
    monkeypatch.setattr(RunPodEmulator, "_gpu_view", real)
    assert api.get(f"/v2/catalog/gpus/{GPU}").status_code == 200
    emu.contract_violations.clear()  # seen; the fixture asserts there are no others


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


def test_close_stops_every_pod(tmp_path, key):
    _, pub = key
    e = RunPodEmulator(state_dir=tmp_path / "rp2", boot_delay_s=0.0)
    with httpx.Client(base_url=e.url, headers={"Authorization": f"Bearer {e.api_key}"}, timeout=10) as api:
        pod_id = _create(api, pub)["id"]
        port, _ = _wait_ssh(api, pod_id)
    e.close()
    assert _port_closed(port)
    e.close()
    assert rpe.CONTRACT is e.contract
