"""A faithful emulator of RunPod's REST v2 API (pods, GPU catalog, pod billing), checked against
RunPod's own OpenAPI document (tests/doubles/runpod-v2-pods.openapi.json, via openapi_contract.py).

    with RunPodEmulator(state_dir=tmp_path / "rp") as emu:
        httpx.post(f"{emu.url}/v2/pods", headers={"Authorization": f"Bearer {emu.api_key}"}, json={
            "name": "x", "image": "runpod/pytorch", "gpu": {"id": "NVIDIA GeForce RTX 3090", "count": 1},
            "cloud": "SECURE", "mounts": {"persistent": {"size": 50, "path": "/workspace"}},
            "ports": ["22/tcp"], "env": {"PUBLIC_KEY": pub}})

* HTTP on 127.0.0.1, `emu.url` is the base (`/v2/...` paths as the document gives them). Auth is
  `Authorization: Bearer <key>` only: the account key `emu.api_key`; a pod's own RUNPOD_API_KEY is
  pod-scoped and accepted only for `POST /v2/pods/{its id}/action {"action": "stop"}` (403 elsewhere)
  and for the GraphQL podStop of its own pod. Errors are `application/problem+json`.
* Contract self-check: every request on a documented path is validated (path/query/body) against
  the document: schema violations answer 422 (`errors` name only truly undeclared fields), malformed
  JSON 400; everything outside the contract (also tolerated things such as undeclared query params)
  lands in `emu.request_violations`. Every response is validated against the documented response for
  its status: a violation is an emulator bug, recorded in `emu.contract_violations` and answered 500.
* Each pod is a real sshd (tests/doubles/sshd.py) in its own mount+PID namespace; the volume
  (`mounts.persistent`) is a directory bind-mounted at its `path`; root's authorized_keys = the pod's
  PUBLIC_KEY env; the pod's processes see its env plus RUNPOD_POD_ID, a pod-scoped RUNPOD_API_KEY,
  RUNPOD_API_BASE_URL (this emulator) and `pod_env_extra`. Without a persistent mount /workspace is
  container disk: wiped on every stop/restart. SSH is published (runtime.ports, ssh.direct) only when
  "22/tcp" is in `ports`: v2 has no default ports and no default volume.
* Status: PROVISIONING (image pull, boot_delay_s) -> STARTING (starting_delay_s + sshd start) ->
  RUNNING; EXITED after stop; ERROR when the image fails (`pod_error_next`). A terminated pod is 404.
* GraphQL: only `POST /graphql` with the podStop mutation remains (parsed by a strict regex), every
  request to it counted in `emu.graphql_requests`; `emu.graphql_gone = True` answers 410.

Switches (all take effect on the next request): unauthorized, no_gpu_free, availability, resume_fails,
balance_usd (<= 0 after what was billed: 402), pod_error_next, graphql_gone, pod_keys_on_v2,
terminate_action_status, billing_delay_s; queued faults fail_next, hang_next, rate_limit_next,
lose_create_response_next (`op` is an operationId, or "podStop"/"graphql" for /graphql).
"""

from __future__ import annotations

import calendar
import json
import math
import re
import secrets
import shutil
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from .openapi_contract import Contract, parse_rfc3339
from .sshd import SshdPod, _setenv_line, start_sshd, stop_sshd

HOURS_PER_MONTH = 730.0  # RunPod bills storage per GB-month of ~730 h

MSG_NO_INSTANCES = (
    "There are no longer any instances available with the requested specifications. "
    "Please refresh and try again."
)
MSG_RESUME_NO_GPU = "There are not enough free GPUs on the host machine to start this pod."
MSG_FORBIDDEN = "You do not have permission to perform this action."
MSG_POD_NOT_FOUND = "pod not found"
MSG_BALANCE = "Your account balance is too low to deploy or start this pod. Please add funds."

DATA_CENTER = {"id": "EU-CZ-1", "name": "EU Czech Republic 1", "country": "CZ"}
CUDA_VERSIONS = ("12.4", "12.6", "12.8")  # what the emulated hosts offer; a pod gets the highest allowed

_RESERVED_MOUNTS = {
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin", "/sys",
    "/tmp", "/usr", "/var", "/home", "/opt", "/srv", "/mnt", "/media",
}
_MOUNT_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
_PORT_RE = re.compile(r"^([1-9]\d{0,4})/(tcp|http|udp)$")
_ACTIONS_BY_STATUS = {
    "RUNNING": ["stop", "restart", "terminate"],
    "EXITED": ["start", "terminate"],
    "ERROR": ["start", "terminate"],
    "PROVISIONING": ["stop", "terminate"],
    "STARTING": ["stop", "terminate"],
    "TERMINATED": [],
}
_TITLES = {400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 410: "Gone",
           413: "Payload Too Large", 422: "Unprocessable Entity", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}
_GRAPHQL_POD_STOP = re.compile(
    r'^\s*mutation\s*(?:[A-Za-z_]\w*\s*)?\{\s*podStop\s*\(\s*input\s*:\s*\{\s*podId\s*:\s*"([A-Za-z0-9]{1,64})"\s*\}'
    r'\s*\)\s*\{\s*((?:id|desiredStatus)(?:\s*,?\s*(?:id|desiredStatus))*)\s*\}\s*\}\s*$')

CONTRACT = Contract()


@dataclass
class GpuType:
    id: str
    display_name: str
    memory_in_gb: int
    secure_price: float | None
    community_price: float | None
    max_gpu_count: int = 8
    manufacturer: str = "Nvidia"
    cuda_cores: int = 0
    pool: str | None = None  # serverless pool id

    def price(self, cloud: str = "SECURE") -> float | None:
        return self.community_price if cloud == "COMMUNITY" else self.secure_price


# ids / display names / memory as RunPod lists them; on-demand $/GPU/h of late 2025
DEFAULT_GPU_TYPES: list[GpuType] = [
    GpuType("NVIDIA RTX A4000", "RTX A4000", 16, 0.25, 0.17, cuda_cores=6144, pool="AMPERE_16"),
    GpuType("NVIDIA GeForce RTX 3090", "RTX 3090", 24, 0.43, 0.22, cuda_cores=10496, pool="AMPERE_24"),
    GpuType("NVIDIA RTX A5000", "RTX A5000", 24, 0.27, 0.16, cuda_cores=8192, pool="AMPERE_24"),
    GpuType("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 0.69, 0.34, cuda_cores=16384, pool="ADA_24"),
    GpuType("NVIDIA RTX A6000", "RTX A6000", 48, 0.49, 0.33, cuda_cores=10752, pool="AMPERE_48"),
    GpuType("NVIDIA A40", "A40", 48, 0.40, 0.35, cuda_cores=10752, pool="AMPERE_48"),
    GpuType("NVIDIA L40S", "L40S", 48, 0.86, 0.79, cuda_cores=18176, pool="ADA_48_PRO"),
    GpuType("NVIDIA A100 80GB PCIe", "A100 PCIe", 80, 1.64, 1.19, cuda_cores=6912, pool="AMPERE_80"),
    GpuType("NVIDIA A100-SXM4-80GB", "A100 SXM", 80, 1.89, 1.39, cuda_cores=6912, pool="AMPERE_80"),
    GpuType("NVIDIA H100 PCIe", "H100 PCIe", 80, 2.39, 1.99, cuda_cores=14592, pool="HOPPER_80"),
    GpuType("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 2.99, 2.69, cuda_cores=16896, pool="HOPPER_80"),
]


class ApiError(Exception):
    """Answered as application/problem+json {title, status, detail, errors?}."""

    def __init__(self, status: int, detail: str, errors: list[str] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def problem(status: int, detail: str, errors: list[str] | None = None) -> dict:
    out: dict[str, Any] = {"title": _TITLES.get(status, "Error"), "status": status, "detail": detail}
    if errors is not None:
        out["errors"] = errors
    return out


@dataclass
class Interval:
    start: float
    end: float | None
    cost_per_hr: float

    def seconds(self, now: float) -> float:
        return max(0.0, (self.end if self.end is not None else now) - self.start)

    def overlap(self, a: float, b: float, now: float) -> float:
        return max(0.0, min(b, self.end if self.end is not None else now) - max(a, self.start))


@dataclass
class EmulatedPod:
    id: str
    name: str
    image_name: str
    gpu_type_id: str
    gpu_count: int
    cloud_type: str  # SECURE | COMMUNITY
    cost_per_hr: float  # $/h while not EXITED (gpu price x count)
    volume_in_gb: int  # mounts.persistent.size (0: no volume)
    volume_mount_path: str  # mounts.persistent.path ("/workspace" for container disk without a volume)
    container_disk_in_gb: int
    env: dict[str, str]  # the env given at create / PATCH (what the API shows)
    ports: list[str]
    docker_args: str
    api_key: str  # the pod-scoped key (RUNPOD_API_KEY inside the pod)
    dir: Path  # state_dir/pods/<id>
    workspace: Path  # dir/workspace, bind-mounted at volume_mount_path in the pod
    created_at: float
    cuda_version: str
    data_center_id: str = DATA_CENTER["id"]
    has_volume: bool = True
    desired_status: str = "RUNNING"  # RUNNING / EXITED / TERMINATED (what the pod is meant to be)
    status: str = "PROVISIONING"  # the v2 status: PROVISIONING STARTING RUNNING EXITED ERROR TERMINATED
    locked: bool = False
    ssh: SshdPod | None = None
    runtime_started_at: float | None = None  # runtime non-null from here (status RUNNING)
    started_at: float | None = None  # startedAt: when the container last reached RUNNING
    intervals: list[Interval] = field(default_factory=list)  # GPU billing: desired RUNNING periods
    terminated_at: float | None = None
    boot_error: str | None = None
    sshd_env: dict[str, str] = field(default_factory=dict)  # the env the pod's processes see
    proxy_user: str = ""
    _gen: int = field(default=0, repr=False)
    _op_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def running_intervals(self) -> list[tuple[float, float | None]]:
        return [(i.start, i.end) for i in self.intervals]


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _rand(n: int, alphabet: str = string.ascii_lowercase + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


# ----------------------------------------------------------------------------- billing buckets

def _bucket_floor(t: float, size: str) -> float:
    d = datetime.fromtimestamp(t, timezone.utc)
    if size == "hour":
        d = d.replace(minute=0, second=0, microsecond=0)
    elif size == "day":
        d = d.replace(hour=0, minute=0, second=0, microsecond=0)
    elif size == "week":  # ISO weeks: Monday 00:00 UTC
        d = (d - timedelta(days=d.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    elif size == "month":
        d = d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        d = d.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    return d.timestamp()


def _bucket_next(start: float, size: str) -> float:
    d = datetime.fromtimestamp(start, timezone.utc)
    if size == "hour":
        return start + 3600
    if size == "day":
        return start + 86400
    if size == "week":
        return start + 7 * 86400
    if size == "month":
        y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        return calendar.timegm((y, m, 1, 0, 0, 0))
    return calendar.timegm((d.year + 1, 1, 1, 0, 0, 0))


def _bucket_ceil(t: float, size: str) -> float:
    f = _bucket_floor(t, size)
    return f if f == t else _bucket_next(f, size)


# ----------------------------------------------------------------------------- the emulator

class RunPodEmulator:
    """RunPod's REST v2 API on http://127.0.0.1:PORT, pods as real sshds. Thread-safe; a context manager."""

    def __init__(
        self,
        *,
        state_dir: Path,
        api_key: str = "rpa_TESTKEY0EMULATOR0000000000000000000000000000",
        gpu_types: list[GpuType] | None = None,
        pod_env_extra: dict[str, str] | None = None,
        boot_delay_s: float = 0.5,
        starting_delay_s: float = 0.0,
        storage_usd_per_gb_month: float = 0.20,
        balance_usd: float = 100.0,
    ):
        self.state_dir = Path(state_dir).resolve()
        (self.state_dir / "pods").mkdir(parents=True, exist_ok=True)
        self.api_key = api_key
        self.gpu_types: list[GpuType] = list(gpu_types) if gpu_types is not None else list(DEFAULT_GPU_TYPES)
        self.pod_env_extra: dict[str, str] = dict(pod_env_extra or {})
        self.boot_delay_s = boot_delay_s  # PROVISIONING (image pull) lasts this long
        self.starting_delay_s = starting_delay_s  # STARTING lasts this long before sshd starts
        self.storage_usd_per_gb_month = storage_usd_per_gb_month
        self.balance_usd = balance_usd
        self.contract = CONTRACT
        self.pods: dict[str, EmulatedPod] = {}
        self.requests: list[dict] = []
        self.graphql_requests: list[dict] = []
        self.contract_violations: list[str] = []  # responses this emulator sent outside the document (bugs)
        self.request_violations: list[str] = []  # requests it received outside the document
        # fault and behaviour switches
        self.unauthorized = False
        self.no_gpu_free: set[str] = set()
        self.availability: dict[str, str] = {}  # gpu id -> NONE|LOW|MEDIUM|HIGH (default HIGH)
        self.resume_fails = False
        self.pod_error_next = False
        self.graphql_gone = False
        self.pod_keys_on_v2 = True  # False: a pod-scoped key is refused (403) on /v2 action too
        self.terminate_action_status = 204  # what POST .../action {"action":"terminate"} answers (or 200)
        self.billing_delay_s = 0.0
        self._faults: list[dict] = []
        self._lose_create: list[str] = []

        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sshds: list[SshdPod] = []  # every sshd ever started, for close()
        self._pod_keys: dict[str, str] = {}  # pod-scoped key -> pod id

        emu = self

        class Handler(_Handler):
            emulator = emu

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._serve_thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                              name="runpod-emulator", daemon=True)
        self._serve_thread.start()
        self._closed = False

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> "RunPodEmulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the HTTP server and every pod's sshd (all pod processes die). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout=12)
        with self._lock:
            sshds = list(self._sshds)
            for p in self.pods.values():
                p.ssh = None
                p.runtime_started_at = None
        for s in sshds:
            try:
                stop_sshd(s)
            except Exception:
                pass
        self._serve_thread.join(timeout=5)

    # ------------------------------------------------------------------ fault switches
    def fail_next(self, n: int = 1, status: int = 500, *, op: str | None = None, body: str = "html") -> None:
        """The next n requests (only those for operationId `op`, if given; "podStop" for GraphQL) fail
        with this HTTP status and nothing is executed. body="html": a proxy's HTML error page;
        body="json": an application/problem+json body from the API itself."""
        self._check_op(op)
        with self._lock:
            self._faults.append({"kind": "fail", "n": n, "status": status, "op": op, "body": body})

    def hang_next(self, n: int = 1, seconds: float = 35, *, op: str | None = None, execute: bool = True) -> None:
        """The next n requests (matching `op` if given) hang for `seconds`. execute=True: the operation
        takes effect at once and only the answer is held back (a create that "timed out" still rents
        a pod); execute=False: nothing happens and a 504 HTML page comes after the wait."""
        self._check_op(op)
        with self._lock:
            self._faults.append({"kind": "hang", "n": n, "seconds": seconds, "op": op, "execute": execute})

    def rate_limit_next(self, n: int = 1, retry_after_s: int = 1, *, op: str | None = None) -> None:
        """The next n requests (matching `op` if given) get 429 problem+json with `Retry-After` seconds."""
        self._check_op(op)
        with self._lock:
            self._faults.append({"kind": "rate", "n": n, "retry_after": max(0, math.ceil(retry_after_s)),
                                 "op": op})

    def lose_create_response_next(self, how: str = "500") -> None:
        """The next createPod IS executed (the pod exists and bills) but the client never sees the 201:
        how="500" answers 500 problem+json; how="drop" closes the connection without any answer."""
        assert how in ("500", "drop")
        with self._lock:
            self._lose_create.append(how)

    def _check_op(self, op: str | None) -> None:
        if op is not None and op not in self.contract.operations and op not in ("podStop", "graphql"):
            raise ValueError(f"unknown operation {op!r}: use an operationId of the document "
                             f"({sorted(self.contract.operations)}) or 'podStop'/'graphql'")

    def _take_fault(self, op: str | None) -> dict | None:
        with self._lock:
            for f in self._faults:
                if f["n"] > 0 and (f["op"] is None or f["op"] == op):
                    f["n"] -= 1
                    out = dict(f)
                    self._faults = [x for x in self._faults if x["n"] > 0]
                    return out
        return None

    # ------------------------------------------------------------------ helpers for tests
    def pod(self, pod_id: str) -> EmulatedPod:
        with self._lock:
            return self.pods[pod_id]

    def ssh_port(self, pod_id: str) -> int | None:
        """The pod's current public SSH port (None unless RUNNING with sshd up)."""
        with self._lock:
            p = self.pods.get(pod_id)
            return p.ssh.port if p is not None and p.ssh is not None and p.runtime_started_at else None

    def wait_status(self, pod_id: str, status: str, timeout_s: float) -> bool:
        """Wait until the pod is `status`: RUNNING/EXITED/TERMINATED compare the desired status (as the
        GraphQL desiredStatus did: RUNNING right after create/start); PROVISIONING/STARTING/ERROR compare
        the v2 status. Use wait_v2_status for the v2 status in every case."""
        attr = "desired_status" if status in ("RUNNING", "EXITED", "TERMINATED") else "status"
        return self._wait(lambda p: getattr(p, attr) == status, pod_id, timeout_s)

    def wait_v2_status(self, pod_id: str, status: str, timeout_s: float) -> bool:
        """Wait until the pod's v2 `status` (what GET /v2/pods/{id} shows) is `status`."""
        return self._wait(lambda p: p.status == status, pod_id, timeout_s)

    def _wait(self, pred: Callable[[EmulatedPod], bool], pod_id: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        for _ in range(int(timeout_s / 0.02) + 2):
            with self._lock:
                p = self.pods.get(pod_id)
                if p is not None and pred(p):
                    return True
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        return False

    def wait_ready(self, pod_id: str, timeout_s: float) -> bool:
        """Wait until the pod is RUNNING with a non-null runtime (its sshd answers)."""
        deadline = time.monotonic() + timeout_s
        for _ in range(int(timeout_s / 0.02) + 2):
            if self.ssh_port(pod_id):
                return True
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        return False

    def stop_pod(self, pod_id: str) -> None:
        """Stop the pod from outside podtune (the console, another tool)."""
        self._stop(pod_id, defer=False, after=[])

    def terminate_pod(self, pod_id: str) -> None:
        """Terminate the pod from outside podtune."""
        self._terminate(pod_id)

    # ------------------------------------------------------------------ metering (real clock)
    def gpu_seconds(self, pod_id: str) -> float:
        now = time.time()
        with self._lock:
            return sum(i.seconds(now) for i in self.pods[pod_id].intervals)

    def storage_seconds(self, pod_id: str) -> float:
        now = time.time()
        with self._lock:
            p = self.pods[pod_id]
            return max(0.0, (p.terminated_at if p.terminated_at is not None else now) - p.created_at)

    def billed_usd(self, pod_id: str) -> float:
        """GPU: billed seconds (create/start to stop/terminate, ERROR included) x cost/3600 per interval;
        disk: volume existence seconds x mounts.persistent.size x storage rate (per GB-month of 730 h)."""
        with self._lock:
            return self._billed(self.pods[pod_id], time.time())

    def _storage_usd_per_hr(self, p: EmulatedPod) -> float:
        return p.volume_in_gb * self.storage_usd_per_gb_month / HOURS_PER_MONTH

    def _amounts(self, p: EmulatedPod, a: float, b: float, now: float) -> tuple[float, float]:
        """(gpu, disk) USD billed for this pod within [a, b), counting up to `now`."""
        gpu = sum(i.overlap(a, b, now) * i.cost_per_hr / 3600.0 for i in p.intervals)
        end = min(now, p.terminated_at if p.terminated_at is not None else now)
        disk = max(0.0, min(b, end) - max(a, p.created_at)) * self._storage_usd_per_hr(p) / 3600.0
        return gpu, disk

    def _billed(self, p: EmulatedPod, now: float) -> float:
        gpu, disk = self._amounts(p, p.created_at, now + 1, now)
        return gpu + disk

    # ------------------------------------------------------------------ views
    def _actions(self, p: EmulatedPod) -> list[str]:
        acts = list(_ACTIONS_BY_STATUS[p.status])
        if p.locked:
            acts = [a for a in acts if a not in ("stop", "restart")]
        return acts

    def _pod_view(self, p: EmulatedPod, now: float) -> dict:
        runtime = None
        direct = None
        if p.status == "RUNNING" and p.ssh is not None and p.runtime_started_at is not None:
            runtime = {
                "uptime": int(now - p.runtime_started_at),
                "gpus": [{"util": 0, "memoryUtil": 0} for _ in range(p.gpu_count)],
                "cpu": {"util": 1},
                "memory": {"util": 2},
                "ports": self._runtime_ports(p),
            }
            if "22/tcp" in p.ports:
                direct = {"host": "127.0.0.1", "port": p.ssh.port, "username": "root",
                          "command": f"ssh root@127.0.0.1 -p {p.ssh.port}"}
        proxy = None
        if p.status != "PROVISIONING":  # null until the pod has a machine assignment
            proxy = {"host": "ssh.runpod.io", "port": 22, "username": p.proxy_user,
                     "command": f"ssh {p.proxy_user}@ssh.runpod.io"}
        mounts: dict[str, Any] = {}
        if p.has_volume:
            mounts["persistent"] = {"size": p.volume_in_gb, "path": p.volume_mount_path}
        return {
            "id": p.id,
            "name": p.name,
            "image": p.image_name,
            "args": p.docker_args,
            "disk": p.container_disk_in_gb,
            "ports": list(p.ports),
            "env": dict(p.env),
            "registry": None,
            "status": p.status,
            "actions": self._actions(p),
            "mounts": mounts,
            "gpu": {"id": p.gpu_type_id, "count": p.gpu_count},
            "cloud": p.cloud_type,
            "dataCenterId": p.data_center_id,
            "cudaVersion": p.cuda_version,
            "ssh": {"proxy": proxy, "direct": direct},
            "template": None,
            "cost": 0.0 if p.status in ("EXITED", "TERMINATED") else p.cost_per_hr,
            "locked": p.locked,
            "globalNetworking": {"enabled": False},
            "runtime": runtime,
            "createdAt": _iso(p.created_at),
            "startedAt": _iso(p.started_at) if p.started_at is not None else None,
        }

    def _runtime_ports(self, p: EmulatedPod) -> list[dict]:
        out: list[dict] = []
        if p.ssh is None:
            return out
        for spec in p.ports:
            m = _PORT_RE.match(spec)
            if not m:
                continue
            private, kind = int(m.group(1)), m.group(2)
            if kind == "tcp" and private == 22:
                out.append({"private": 22, "public": p.ssh.port, "type": "tcp", "ip": "127.0.0.1"})
            elif kind == "tcp":  # published, but nothing listens behind it in the emulator
                out.append({"private": private, "public": 10000 + (private % 50000), "type": "tcp",
                            "ip": "127.0.0.1"})
            else:  # http ports go through RunPod's proxy: no public ip/port of their own
                out.append({"private": private, "public": None, "type": kind, "ip": None})
        return out

    def _gpu(self, gpu_id: str) -> GpuType | None:
        for g in self.gpu_types:
            if g.id == gpu_id:
                return g
        return None

    def _availability(self, g: GpuType, count: int = 1, cloud: str = "SECURE") -> str:
        with self._lock:
            if g.id in self.no_gpu_free:
                return "NONE"
            level = self.availability.get(g.id, "HIGH")
        if g.price(cloud) is None or not 1 <= count <= g.max_gpu_count:
            return "NONE"
        return level

    def _get_live(self, pod_id: str) -> EmulatedPod:
        p = self.pods.get(pod_id)
        if p is None or p.desired_status == "TERMINATED":
            raise ApiError(404, MSG_POD_NOT_FOUND)
        return p

    def _remaining_balance(self) -> float:
        now = time.time()
        with self._lock:
            return self.balance_usd - sum(self._billed(p, now) for p in self.pods.values())

    # ------------------------------------------------------------------ lifecycle
    def _create(self, body: dict) -> dict:
        if body.get("templateId"):
            raise ApiError(404, f"template {body['templateId']} not found")
        if ("gpu" in body) == ("cpu" in body):
            raise ApiError(400, "exactly one of gpu or cpu must be set")
        if "cpu" in body:
            raise ApiError(400, f"CPU flavor {body['cpu'].get('id')} is not available")
        gpu = body["gpu"]
        gpu_id, count = gpu["id"], gpu.get("count", 1)
        cloud = body.get("cloud", "SECURE")
        mounts = body.get("mounts") or {}
        if "network" in mounts:
            if "persistent" in mounts:
                raise ApiError(400, "mounts.persistent and mounts.network are mutually exclusive")
            raise ApiError(400, f"network volume {mounts['network'][0]['volumeId']} not found"
                           if mounts["network"] else "mounts.network must not be empty")
        persistent = mounts.get("persistent")
        mount = persistent["path"].rstrip("/") if persistent else "/workspace"
        if persistent and (not _MOUNT_RE.match(mount) or mount in _RESERVED_MOUNTS or ".." in mount.split("/")):
            raise ApiError(400, f"invalid mounts.persistent.path: {persistent['path']}")
        ports = list(body.get("ports") or [])
        bad = [p for p in ports if not _PORT_RE.match(p)]
        if bad or len(set(ports)) != len(ports):
            raise ApiError(400, f"invalid ports (want port/protocol, unique): {bad or ports}")
        allowed = gpu.get("allowedCudaVersions") or []
        floor = gpu.get("minCudaVersion")
        if allowed and floor:
            raise ApiError(400, "gpu.allowedCudaVersions and gpu.minCudaVersion are mutually exclusive")
        g = self._gpu(gpu_id)
        if g is None:
            raise ApiError(400, f"GPU type {gpu_id} not found")
        if not 1 <= count <= g.max_gpu_count:
            raise ApiError(400, f"gpu.count must be between 1 and {g.max_gpu_count} for {gpu_id}")
        cudas = [v for v in CUDA_VERSIONS if (not allowed or v in allowed)
                 and (not floor or _cuda_key(v) >= _cuda_key(floor))]
        dcs = body.get("dataCenterIds") or []
        if self._remaining_balance() <= 0:
            raise ApiError(402, MSG_BALANCE)
        if self._availability(g, count, cloud) == "NONE" or not cudas or (dcs and DATA_CENTER["id"] not in dcs):
            raise ApiError(400, MSG_NO_INSTANCES)
        env = dict(body.get("env") or {})
        pod_id = _rand(14)
        pdir = self.state_dir / "pods" / pod_id
        now = time.time()
        pod = EmulatedPod(
            id=pod_id,
            name=body["name"],
            image_name=body["image"],
            gpu_type_id=g.id,
            gpu_count=count,
            cloud_type=cloud,
            cost_per_hr=round(g.price(cloud) * count, 4),
            volume_in_gb=persistent["size"] if persistent else 0,
            volume_mount_path=mount,
            container_disk_in_gb=body.get("disk", 10),
            env=env,
            ports=ports,
            docker_args=body.get("args", ""),
            api_key="rpa_" + _rand(44, string.ascii_uppercase + string.digits),
            dir=pdir,
            workspace=pdir / "workspace",
            created_at=now,
            cuda_version=cudas[-1],
            has_volume=persistent is not None,
            proxy_user=f"{pod_id}-{secrets.token_hex(4)}",
        )
        pod.sshd_env = self._sshd_env(pod)
        try:  # refuse env that sshd cannot carry now, not later in the boot thread
            _setenv_line(pod.sshd_env)
        except ValueError as e:
            raise ApiError(400, f"emulator: {e}") from None
        pod.workspace.mkdir(parents=True, exist_ok=True)
        with self._lock:
            error_boot, self.pod_error_next = self.pod_error_next, False
            pod.intervals.append(Interval(now, None, pod.cost_per_hr))
            self.pods[pod_id] = pod
            self._pod_keys[pod.api_key] = pod_id
            gen = pod._gen
            view = self._pod_view(pod, now)
        self._spawn(self._boot, pod, gen, True, error_boot)
        return view

    def _sshd_env(self, pod: EmulatedPod) -> dict[str, str]:
        env = dict(pod.env)
        env.update({
            "RUNPOD_POD_ID": pod.id,
            "RUNPOD_API_KEY": pod.api_key,
            "RUNPOD_API_BASE_URL": self.url,
            "RUNPOD_POD_HOSTNAME": pod.proxy_user,
            "RUNPOD_GPU_COUNT": str(pod.gpu_count),
            "RUNPOD_PUBLIC_IP": "127.0.0.1",
            "RUNPOD_DC_ID": pod.data_center_id,
        })
        env.update(self.pod_env_extra)
        return env

    def _spawn(self, fn: Callable, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _boot(self, pod: EmulatedPod, gen: int, provisioning: bool, error_boot: bool = False) -> None:
        """PROVISIONING (the image 'pulls', boot_delay_s) -> STARTING (starting_delay_s, then sshd starts)
        -> RUNNING. error_boot: the image pull fails and the pod lands in ERROR (still billing)."""
        if provisioning:
            if self._closing.wait(self.boot_delay_s):
                return
            with self._lock:
                if pod._gen != gen or self._closing.is_set():
                    return
                if error_boot:
                    pod.status = "ERROR"
                    pod.boot_error = "image pull failed (pod_error_next)"
                    return
                pod.status = "STARTING"
        if self._closing.wait(self.starting_delay_s):
            return
        with pod._op_lock:
            with self._lock:
                if pod._gen != gen or pod.desired_status != "RUNNING" or self._closing.is_set():
                    return
                keys = [ln for ln in pod.env.get("PUBLIC_KEY", "").splitlines() if ln.strip()]
                if not pod.has_volume:  # container disk: a fresh /workspace on every start
                    shutil.rmtree(pod.workspace, ignore_errors=True)
                    pod.workspace.mkdir(parents=True, exist_ok=True)
            try:
                ssh = start_sshd(
                    state_dir=pod.dir / "sshd", workspace=pod.workspace, authorized_keys=keys,
                    env=pod.sshd_env, isolate_workspace=True, mount_point=pod.volume_mount_path,
                )
            except Exception as e:  # visible to tests through pod.boot_error; the pod goes to ERROR
                with self._lock:
                    pod.boot_error = repr(e)
                    if pod._gen == gen:
                        pod.status = "ERROR"
                return
            with self._lock:
                self._sshds.append(ssh)  # close() stops it whatever happens next
                pod.ssh = ssh
                pod.runtime_started_at = pod.started_at = time.time()
                pod.status = "RUNNING"
                pod.boot_error = None

    def _take_down(self, pod: EmulatedPod, *, defer: bool, after: list) -> None:
        """Stop the pod's sshd (every process in the pod dies). Caller holds pod._op_lock, not _lock."""
        with self._lock:
            ssh, pod.ssh, pod.runtime_started_at = pod.ssh, None, None
        if ssh is not None:
            if defer:  # the caller lives inside this pod: answer first, then the pod goes down
                def later(ssh: SshdPod = ssh) -> None:
                    self._closing.wait(0.2)
                    stop_sshd(ssh)
                after.append(later)
            else:
                stop_sshd(ssh)

    def _stop(self, pod_id: str, *, defer: bool, after: list, check: bool = False) -> dict:
        with self._lock:
            pod = self._get_live(pod_id)
        with pod._op_lock:
            with self._lock:
                now = time.time()
                if check:
                    self._check_action(pod, "stop")
                if pod.desired_status == "RUNNING":
                    pod._gen += 1
                    pod.desired_status = "EXITED"
                    for i in pod.intervals:
                        if i.end is None:
                            i.end = now
                pod.status = "EXITED"
            self._take_down(pod, defer=defer, after=after)
            with self._lock:
                return self._pod_view(pod, time.time())

    def _check_action(self, pod: EmulatedPod, action: str) -> None:
        if action not in self._actions(pod):
            why = " (the pod is locked)" if pod.locked and action in _ACTIONS_BY_STATUS[pod.status] else ""
            raise ApiError(409, f"action {action} is not valid for a pod in status {pod.status}{why}; "
                                f"valid now: {self._actions(pod)}")

    def _start(self, pod_id: str) -> dict:
        with self._lock:
            pod = self._get_live(pod_id)
        with pod._op_lock:
            with self._lock:
                now = time.time()
                self._check_action(pod, "start")
                g = self._gpu(pod.gpu_type_id)
                price = g.price(pod.cloud_type) if g is not None else None
                if self.resume_fails or g is None or price is None \
                        or self._availability(g, pod.gpu_count, pod.cloud_type) == "NONE":
                    raise ApiError(400, MSG_RESUME_NO_GPU)
                if self._remaining_balance() <= 0:
                    raise ApiError(402, MSG_BALANCE)
                pod._gen += 1
                gen = pod._gen
                if pod.desired_status != "RUNNING":  # from ERROR the GPU meter is still running
                    pod.cost_per_hr = round(price * pod.gpu_count, 4)
                    pod.intervals.append(Interval(now, None, pod.cost_per_hr))
                pod.desired_status = "RUNNING"
                pod.status = "STARTING"
                pod.boot_error = None
                view = self._pod_view(pod, now)
        self._spawn(self._boot, pod, gen, False)
        return view

    def _restart(self, pod_id: str) -> dict:
        with self._lock:
            pod = self._get_live(pod_id)
        with pod._op_lock:
            with self._lock:
                self._check_action(pod, "restart")
                pod._gen += 1
                gen = pod._gen
                pod.status = "STARTING"
            self._take_down(pod, defer=False, after=[])
            with self._lock:
                view = self._pod_view(pod, time.time())
        self._spawn(self._boot, pod, gen, False)
        return view

    def _terminate(self, pod_id: str) -> dict:
        with self._lock:
            pod = self._get_live(pod_id)
        with pod._op_lock:
            with self._lock:
                now = time.time()
                pod._gen += 1
                pod.desired_status = "TERMINATED"
                pod.status = "TERMINATED"
                pod.terminated_at = now
                for i in pod.intervals:
                    if i.end is None:
                        i.end = now
                self._pod_keys.pop(pod.api_key, None)
            self._take_down(pod, defer=False, after=[])
            shutil.rmtree(pod.workspace, ignore_errors=True)
            with self._lock:
                return self._pod_view(pod, now)

    def _update(self, pod_id: str, body: dict) -> dict:
        with self._lock:
            pod = self._get_live(pod_id)
            if body.get("templateId"):
                raise ApiError(404, f"template {body['templateId']} not found")
            mounts = body.get("mounts") or {}
            if "network" in mounts:
                raise ApiError(400, "mount kind is fixed at create: this pod has no network mount")
            if "persistent" in mounts:
                if not pod.has_volume:
                    raise ApiError(400, "mount kind is fixed at create: this pod has no persistent mount")
                new = mounts["persistent"]
                path = new["path"].rstrip("/")
                if not _MOUNT_RE.match(path) or path in _RESERVED_MOUNTS:
                    raise ApiError(400, f"invalid mounts.persistent.path: {new['path']}")
                if new["size"] < pod.volume_in_gb:
                    raise ApiError(400, "mounts.persistent.size cannot shrink")
            if body.get("globalNetworking"):
                raise ApiError(400, f"global networking is not available in {pod.data_center_id}")
            ports = body.get("ports")
            if ports is not None and any(not _PORT_RE.match(p) for p in ports):
                raise ApiError(400, f"invalid ports: {ports}")
            env = body.get("env")
            if env is not None:
                new_env = dict(env)
                trial = self._sshd_env(pod)
                for k in pod.env:
                    trial.pop(k, None)
                trial.update(new_env)
                try:
                    _setenv_line(trial)
                except ValueError as e:
                    raise ApiError(400, f"emulator: {e}") from None
            # apply: name/locked now; image/args/disk/ports/env/mount path on the next start
            for key, attr in (("name", "name"), ("locked", "locked"), ("image", "image_name"),
                              ("args", "docker_args"), ("disk", "container_disk_in_gb")):
                if key in body:
                    setattr(pod, attr, body[key])
            if ports is not None:
                pod.ports = list(ports)
            if "persistent" in mounts:
                pod.volume_in_gb = mounts["persistent"]["size"]
                pod.volume_mount_path = mounts["persistent"]["path"].rstrip("/")
            if env is not None:
                pod.env = dict(env)
                pod.sshd_env = self._sshd_env(pod)
            return self._pod_view(pod, time.time())

    # ------------------------------------------------------------------ catalog and billing
    def _gpu_view(self, g: GpuType, q: dict, single: bool) -> dict | None:
        out: dict[str, Any] = {
            "id": g.id, "name": g.display_name, "pool": g.pool,
            "manufacturer": g.manufacturer.upper() if g.manufacturer.upper() in ("NVIDIA", "AMD") else "UNKNOWN",
            "memory": g.memory_in_gb,
            "secure": g.secure_price is not None, "community": g.community_price is not None,
            "price": {"secure": g.secure_price or 0.0, "community": g.community_price or 0.0},
            "maxCount": {"secure": g.max_gpu_count if g.secure_price is not None else 0,
                         "community": g.max_gpu_count if g.community_price is not None else 0},
        }
        if "AVAILABILITY" not in (q.get("include") or []):
            return out
        cloud = q.get("cloud", "SECURE")
        level = self._availability(g, q.get("count", 1), cloud)
        countries = q.get("countryCodes")
        in_country = not countries or DATA_CENTER["country"] in countries
        if not in_country:
            if not single:
                return None  # no data center in those countries: the type drops out of the list
            level = "NONE"
        cudas = [v for v in CUDA_VERSIONS
                 if (not q.get("cudaVersions") or v in q["cudaVersions"])
                 and (not q.get("minCudaVersion") or _cuda_key(v) >= _cuda_key(q["minCudaVersion"]))]
        if not cudas:
            level = "NONE"
        out["availability"] = level
        if level != "NONE":
            out["dataCenters"] = [{"id": DATA_CENTER["id"], "name": DATA_CENTER["name"], "availability": level}]
        if in_country and cudas:
            out["cudaVersions"] = [{"version": v, "available": level != "NONE"} for v in cudas]
        return out

    def _catalog_query(self, q: dict) -> None:
        has_inc = "AVAILABILITY" in (q.get("include") or [])
        if has_inc and not q.get("product"):
            raise ApiError(400, "product is required with include=AVAILABILITY")
        for name in ("product", "countryCodes", "cudaVersions", "minCudaVersion"):
            if name in q and not has_inc:
                raise ApiError(400, f"{name} is valid only with include=AVAILABILITY")
        if q.get("cudaVersions") and q.get("minCudaVersion"):
            raise ApiError(400, "cudaVersions and minCudaVersion are mutually exclusive")

    def _list_gpus(self, q: dict) -> dict:
        self._catalog_query(q)
        gpus = [self._gpu_view(g, q, single=False) for g in self.gpu_types]
        return {"gpus": [g for g in gpus if g is not None]}

    def _get_gpu(self, gpu_id: str, q: dict) -> dict:
        self._catalog_query(q)
        g = self._gpu(gpu_id)
        if g is None:
            raise ApiError(404, f"GPU type {gpu_id} not found")
        view = self._gpu_view(g, q, single=True)
        assert view is not None
        return view

    def _billing(self, q: dict) -> dict:
        size = q.get("bucketSize", "day")
        now = time.time()
        if "lastN" in q and ("startTime" in q or "endTime" in q):
            raise ApiError(400, "lastN is mutually exclusive with startTime/endTime")
        if "lastN" in q:
            end = _bucket_next(_bucket_floor(now, size), size)
            start = _bucket_floor(now, size)
            for _ in range(min(q["lastN"], 100_000) - 1):
                start = _bucket_floor(start - 1, size)
        else:
            start = parse_rfc3339(q["startTime"]).timestamp() if "startTime" in q else now - 30 * 86400
            end = parse_rfc3339(q["endTime"]).timestamp() if "endTime" in q else now
            start, end = _bucket_floor(start, size), _bucket_ceil(end, size)
            if end <= start:
                raise ApiError(400, "endTime must be after startTime")
        visible_until = now - self.billing_delay_s  # what the billing pipeline has caught up with
        pod_id = q.get("podId")
        records: list[dict[str, Any]] = []
        with self._lock:
            pods = [p for p in self.pods.values() if pod_id is None or p.id == pod_id]
            buckets = []
            t = start
            while t < end and t < visible_until:
                buckets.append((t, _bucket_next(t, size)))
                t = buckets[-1][1]
                if len(buckets) > 200_000:
                    raise ApiError(400, "window too large for this bucketSize")
            for p in sorted(pods, key=lambda x: x.created_at):
                alive_end = p.terminated_at if p.terminated_at is not None else visible_until
                for a, b in buckets:
                    if b <= p.created_at or a >= alive_end:
                        continue
                    gpu, disk = self._amounts(p, a, b, visible_until)
                    records.append({"startTime": _iso(a), "endTime": _iso(b), "podId": p.id,
                                    "totalAmount": gpu + disk, "gpuAmount": gpu, "cpuAmount": 0.0,
                                    "diskAmount": disk})
        totals = {k: sum(r[k] for r in records) for k in ("totalAmount", "gpuAmount", "cpuAmount", "diskAmount")}
        return {"records": records, "metadata": {
            "query": {"startTime": _iso(start), "endTime": _iso(end), "bucketSize": size, "podId": pod_id},
            "recordCount": len(records), "uniquePodCount": len({r["podId"] for r in records}), "totals": totals}}

    # ------------------------------------------------------------------ auth
    def _auth(self, header: str | None) -> tuple[str, str | None]:
        """-> (auth kind, pod scope). Kinds: account, pod, invalid, missing."""
        if not header:
            return "missing", None
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            return "invalid", None
        token = token.strip()
        if secrets.compare_digest(token, self.api_key):
            return "account", None
        with self._lock:
            pod_id = self._pod_keys.get(token)
        if pod_id is not None:
            return "pod", pod_id
        return "invalid", None


def _cuda_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def _html(status: int) -> bytes:
    reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
              504: "Gateway Time-out", 520: "Web server is returning an unknown error",
              524: "A timeout occurred"}.get(status, "Error")
    return (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
            f"</body>\r\n</html>\r\n").encode()


class _Handler(BaseHTTPRequestHandler):
    emulator: RunPodEmulator
    server_version = "RunPodEmulator/2.0"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that sends less than its Content-Length cannot hold a thread forever

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    # ------------------------------------------------------------------ sending
    def _send(self, status: int, body: bytes, ctype: str | None, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            if ctype and body:
                self.send_header("Content-Type", ctype)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if body:
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            pass  # the client went away (timed out, or was killed with its pod)
        self.close_connection = True

    def _answer(self, entry: dict, status: int, obj: Any, headers: dict[str, str] | None = None,
                check: bool = True) -> None:
        """Send a JSON / problem+json answer; on a v2 operation, first hold it against the document."""
        emu = self.emulator
        body = b"" if obj is None else json.dumps(obj).encode()
        ctype = None if obj is None else ("application/json" if status < 300 else "application/problem+json")
        if check and entry.get("op") and entry["op"] in emu.contract.operations:
            problems = emu.contract.check_response(entry["op"], status, ctype, body, headers)
            if problems:
                with emu._lock:
                    emu.contract_violations.extend(problems)
                entry["contract_violations"] = problems
                status, headers = 500, {}
                body = json.dumps(problem(500, "emulator bug: its response violates the OpenAPI document",
                                          problems)).encode()
                ctype = "application/problem+json"
        entry["status"] = status
        self._send(status, body, ctype, headers)

    # ------------------------------------------------------------------ dispatch
    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_PATCH(self):  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self):  # noqa: N802
        self._handle("DELETE")

    def do_PUT(self):  # noqa: N802
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        emu = self.emulator
        parts = urlsplit(self.path)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        entry: dict[str, Any] = {
            "t": time.time(), "method": method, "path": path, "op": None,
            "query": {k: (v[0] if len(v) == 1 else v) for k, v in query.items()}, "body": None,
            "auth": None, "auth_ok": False, "pod_scope": None, "status": None, "fault": None,
            "user_agent": self.headers.get("User-Agent"),
        }
        with emu._lock:
            emu.requests.append(entry)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > 4 * 1024 * 1024:
            return self._answer(entry, 413, problem(413, "request body too large"), check=False)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            entry["body"] = json.loads(raw) if raw else None
        except ValueError:
            entry["body"] = raw.decode(errors="replace")

        if path == "/graphql":
            return self._graphql(entry, method, raw)

        route, allowed = emu.contract.match(method, path)
        if route is None:
            note = f"{method} {path}: no such operation in the document"
            with emu._lock:
                emu.request_violations.append(note)
            if allowed:
                return self._answer(entry, 405, problem(405, f"method {method} not allowed"),
                                    {"Allow": ", ".join(allowed)}, check=False)
            return self._answer(entry, 404, problem(404, f"no route for {method} {path}"), check=False)
        entry["op"] = route.op
        # checked (and recorded) first: a request outside the contract is a client bug whatever answer it gets
        chk = emu.contract.check_request(route, query=query, body=raw, content_type=self.headers.get("Content-Type"))
        if chk.violations:
            entry["violations"] = chk.violations
            with emu._lock:
                emu.request_violations.extend(f"{route.op}: {v}" for v in chk.violations)

        if emu.unauthorized:
            entry["fault"] = "unauthorized"
            return self._answer(entry, 401, problem(401, "invalid bearer token"))
        if self._fault(entry, route.op):
            return
        kind, scope = emu._auth(self.headers.get("Authorization"))
        entry["auth"], entry["pod_scope"] = kind, scope
        entry["auth_ok"] = kind in ("account", "pod")
        if not entry["auth_ok"]:
            return self._answer(entry, 401, problem(401, "missing bearer token" if kind == "missing"
                                                    else "invalid bearer token"))

        if kind == "pod":
            own_stop = (emu.pod_keys_on_v2 and route.op == "podAction" and route.params.get("id") == scope
                        and isinstance(chk.body, dict) and chk.body.get("action") == "stop")
            if not own_stop:
                return self._answer(entry, 403, problem(403, MSG_FORBIDDEN))
        if chk.bad_json:
            return self._answer(entry, 400, problem(400, chk.bad_json))
        if chk.errors:
            return self._answer(entry, 422, problem(422, "Request validation failed.", chk.errors))

        after: list[Callable] = []
        try:
            status, obj = self._execute(route.op, route.params, chk.query, chk.body, scope, after)
        except ApiError as e:
            status, obj, headers = e.status, problem(e.status, e.detail, e.errors), e.headers
        else:
            headers = {}
        hang = entry.pop("_hang_after", None)
        if hang is not None:  # executed; only the answer is late
            emu._closing.wait(hang)
        if status >= 400:
            return self._answer(entry, status, obj, headers)
        if route.op == "createPod":
            with emu._lock:
                lost = emu._lose_create.pop(0) if emu._lose_create else None
            if lost:
                entry["fault"] = f"lost-{lost}"
                if lost == "drop":
                    entry["status"] = None
                    self.close_connection = True  # no answer at all: the client sees a dropped connection
                    return
                return self._answer(entry, 500, problem(500, "upstream request timed out"))
        self._answer(entry, status, obj)
        for fn in after:
            emu._spawn(fn)

    def _fault(self, entry: dict, op: str) -> bool:
        """Apply a queued fault; True when it answered (or hung up) already."""
        emu = self.emulator
        fault = emu._take_fault(op)
        if not fault:
            return False
        entry["fault"] = fault["kind"]
        if fault["kind"] == "fail":
            if fault["body"] == "json":
                self._answer(entry, fault["status"], problem(fault["status"], "upstream failure, try again"),
                             check=False)
            else:
                entry["status"] = fault["status"]
                self._send(fault["status"], _html(fault["status"]), "text/html")
            return True
        if fault["kind"] == "rate":
            self._answer(entry, 429, problem(429, "rate limit exceeded for the minute window"),
                         {"Retry-After": str(fault["retry_after"])})
            return True
        if not fault["execute"]:
            emu._closing.wait(fault["seconds"])
            entry["status"] = 504
            self._send(504, _html(504), "text/html")
            return True
        entry["_hang_after"] = fault["seconds"]
        return False

    def _execute(self, op: str, params: dict, q: dict, body: Any, scope: str | None,
                 after: list) -> tuple[int, Any]:
        emu = self.emulator
        now = time.time()
        if op == "listPods":
            with emu._lock:
                pods = [emu._pod_view(p, now) for p in emu.pods.values() if p.desired_status != "TERMINATED"]
            return 200, {"pods": pods}
        if op == "createPod":
            return 201, emu._create(body)
        if op == "getPod":
            with emu._lock:
                return 200, emu._pod_view(emu._get_live(params["id"]), now)
        if op == "updatePod":
            return 200, emu._update(params["id"], body)
        if op == "deletePod":
            emu._terminate(params["id"])
            return 204, None
        if op == "podAction":
            action = body["action"]
            if action == "stop":
                return 200, emu._stop(params["id"], defer=scope is not None, after=after, check=True)
            if action == "start":
                return 200, emu._start(params["id"])
            if action == "restart":
                return 200, emu._restart(params["id"])
            with emu._lock:
                emu._check_action(emu._get_live(params["id"]), "terminate")
            view = emu._terminate(params["id"])
            return (204, None) if emu.terminate_action_status == 204 else (200, view)
        if op == "listGpuTypes":
            return 200, emu._list_gpus(q)
        if op == "getGpuType":
            return 200, emu._get_gpu(params["id"], q)
        if op == "listPodBilling":
            return 200, emu._billing(q)
        raise ApiError(404, f"operation {op} is not emulated")

    # ------------------------------------------------------------------ GraphQL (podStop only)
    def _graphql(self, entry: dict, method: str, raw: bytes) -> None:
        emu = self.emulator
        with emu._lock:
            emu.graphql_requests.append(entry)
        entry["op"] = "graphql"

        def gql(status: int, obj: dict, headers: dict | None = None) -> None:
            entry["status"] = status
            self._send(status, json.dumps(obj).encode(), "application/json", headers)

        if emu.graphql_gone:
            return gql(410, {"errors": [{"message": "The GraphQL API has been retired. Use the REST API v2: "
                                                    "https://api.runpod.io/v2", "extensions": {"code": "GONE"}}]})
        if method != "POST":
            return gql(405, {"errors": [{"message": "Only POST is supported."}]}, {"Allow": "POST"})
        body = entry["body"]
        query = body.get("query") if isinstance(body, dict) else None
        m = _GRAPHQL_POD_STOP.match(query) if isinstance(query, str) else None
        if m:
            entry["op"] = "podStop"
        if emu.unauthorized:
            entry["fault"] = "unauthorized"
            return gql(401, {"error": "Unauthorized"})
        fault = emu._take_fault(entry["op"])
        if fault:
            entry["fault"] = fault["kind"]
            if fault["kind"] == "rate":
                return gql(429, {"errors": [{"message": "Too many requests"}]},
                           {"Retry-After": str(fault["retry_after"])})
            if fault["kind"] == "fail" or not fault["execute"]:
                if fault["kind"] == "hang":
                    emu._closing.wait(fault["seconds"])
                status = fault.get("status", 504)
                entry["status"] = status
                return self._send(status, _html(status), "text/html")
            entry["_hang_after"] = fault["seconds"]
        kind, scope = emu._auth(self.headers.get("Authorization"))
        entry["auth"], entry["pod_scope"] = kind, scope
        entry["auth_ok"] = kind in ("account", "pod")
        if not entry["auth_ok"]:
            return gql(401, {"error": "Unauthorized"})
        if not m:
            return gql(400, {"errors": [{"message": "emulator: only `mutation { podStop(input: {podId: \"...\"}) "
                                                    "{ id desiredStatus } }` remains emulated on /graphql",
                                         "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]})
        pod_id, fields = m.group(1), re.findall(r"id|desiredStatus", m.group(2))
        if scope is not None and scope != pod_id:
            return gql(403, {"errors": [{"message": MSG_FORBIDDEN, "path": ["podStop"],
                                         "extensions": {"code": "FORBIDDEN"}}], "data": {"podStop": None}})
        after: list[Callable] = []
        try:
            view = emu._stop(pod_id, defer=scope is not None, after=after)
        except ApiError:
            return gql(200, {"errors": [{"message": "Pod not found.", "path": ["podStop"],
                                         "extensions": {"code": "INTERNAL_SERVER_ERROR"}}],
                             "data": {"podStop": None}})
        hang = entry.pop("_hang_after", None)
        if hang is not None:
            emu._closing.wait(hang)
        values = {"id": view["id"], "desiredStatus": "EXITED"}
        gql(200, {"data": {"podStop": {f: values[f] for f in fields}}})
        for fn in after:
            emu._spawn(fn)
