"""A faithful emulator of the RunPod GraphQL API, as the pinned runpod SDK (1.12.0) speaks it.

    with RunPodEmulator(state_dir=tmp_path / "rp") as emu:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", emu.url)
        runpod.api_key = emu.api_key
        pod = runpod.create_pod("x", "runpod/pytorch", "NVIDIA GeForce RTX 3090", volume_in_gb=50,
                                volume_mount_path="/workspace", ports="22/tcp", env={"PUBLIC_KEY": pub})

* HTTP: POST {url}/graphql, JSON body {"query", "variables"?, "operationName"?}, `Authorization: Bearer
  KEY` (what 1.12.0 sends; `?api_key=` is not accepted). Wrong/missing key -> HTTP 401.
* The query text is parsed and validated with graphql-core against a schema that mirrors the real
  one for the types the SDK touches, so unknown operations or fields get the real kind of answer:
  HTTP 400 `{"errors": [{"message": "Cannot query field ...", "extensions": {"code":
  "GRAPHQL_VALIDATION_FAILED"}}]}`. Resolver failures answer HTTP 200 with `data` and `errors`.
* Each pod is a real sshd (tests/doubles/sshd.py) in its own mount+PID namespace with its own
  workspace directory bind-mounted at the pod's volumeMountPath, root's authorized_keys = the pod's
  PUBLIC_KEY env, and SetEnv of the pod env plus RUNPOD_POD_ID, a pod-scoped RUNPOD_API_KEY,
  RUNPOD_API_BASE_URL (this emulator) and `pod_env_extra`.
* The SSH port is published in runtime.ports only when the pod was created with "22/tcp" in
  `ports`, as on RunPod.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import string
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from graphql import (
    GraphQLError,
    OperationDefinitionNode,
    build_schema,
    execute,
    parse,
    validate,
)
from graphql.language import FieldNode
from graphql.utilities import value_from_ast_untyped

from .sshd import SshdPod, start_sshd, stop_sshd

HOURS_PER_MONTH = 730.0  # RunPod bills storage per GB-month of ~730 h

MSG_NO_INSTANCES = (
    "There are no longer any instances available with the requested specifications. "
    "Please refresh and try again."
)
MSG_RESUME_NO_GPU = "There are not enough free GPUs on the host machine to start this pod."
MSG_FORBIDDEN = "You do not have permission to perform this action."
MSG_POD_NOT_FOUND = "Pod not found."

_RESERVED_MOUNTS = {
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin", "/sys",
    "/tmp", "/usr", "/var", "/home", "/opt", "/srv", "/mnt", "/media",
}


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

    def price(self, cloud_type: str = "ALL") -> float | None:
        if cloud_type == "SECURE":
            return self.secure_price
        if cloud_type == "COMMUNITY":
            return self.community_price
        prices = [p for p in (self.secure_price, self.community_price) if p is not None]
        return min(prices) if prices else None


# ids / display names / memory as RunPod lists them; on-demand $/GPU/h of late 2025
DEFAULT_GPU_TYPES: list[GpuType] = [
    GpuType("NVIDIA RTX A4000", "RTX A4000", 16, 0.25, 0.17, cuda_cores=6144),
    GpuType("NVIDIA GeForce RTX 3090", "RTX 3090", 24, 0.43, 0.22, cuda_cores=10496),
    GpuType("NVIDIA RTX A5000", "RTX A5000", 24, 0.27, 0.16, cuda_cores=8192),
    GpuType("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 0.69, 0.34, cuda_cores=16384),
    GpuType("NVIDIA RTX A6000", "RTX A6000", 48, 0.49, 0.33, cuda_cores=10752),
    GpuType("NVIDIA A40", "A40", 48, 0.40, 0.35, cuda_cores=10752),
    GpuType("NVIDIA L40S", "L40S", 48, 0.86, 0.79, cuda_cores=18176),
    GpuType("NVIDIA A100 80GB PCIe", "A100 PCIe", 80, 1.64, 1.19, cuda_cores=6912),
    GpuType("NVIDIA A100-SXM4-80GB", "A100 SXM", 80, 1.89, 1.39, cuda_cores=6912),
    GpuType("NVIDIA H100 PCIe", "H100 PCIe", 80, 2.39, 1.99, cuda_cores=14592),
    GpuType("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 2.99, 2.69, cuda_cores=16896),
]

# The subset of RunPod's GraphQL schema that the SDK's pod/GPU/user calls use, with the real
# names and types (from the public schema). Anything not here is answered like the real API
# answers an unknown field: a validation error.
SCHEMA_SDL = """
scalar Void

enum CloudTypeEnum { ALL SECURE COMMUNITY }
enum PodStatus { CREATED RUNNING RESTARTING EXITED PAUSED DEAD TERMINATED }
enum PodType { INTERRUPTABLE RESERVED BID BACKGROUND }
enum ComputeType { CPU GPU }

type Query {
  myself: User
  gpuTypes(input: GpuTypeFilter): [GpuType]
  pod(input: PodFilter!): Pod
}

type Mutation {
  podFindAndDeployOnDemand(input: PodFindAndDeployOnDemandInput): Pod
  podStop(input: PodStopInput!): Pod
  podResume(input: PodResumeInput!): Pod
  podTerminate(input: PodTerminateInput!): Void
}

input GpuTypeFilter { id: String ids: [String] }
input PodFilter { podId: String! }
input PodStopInput { podId: String! incrementVersion: Boolean }
input PodResumeInput { podId: String! gpuCount: Int syncMachine: Boolean computeType: ComputeType }
input PodTerminateInput { podId: String! }
input EnvironmentVariableInput { key: String! value: String }
input GpuLowestPriceInput {
  gpuCount: Int!
  minDisk: Int minMemoryInGb: Int minVcpuCount: Int secureCloud: Boolean supportPublicIp: Boolean
  countryCode: String dataCenterId: String minDownload: Int minUpload: Int totalDisk: Int
  cudaVersion: String allowedCudaVersions: [String] includeAiApi: Boolean
}
input PodFindAndDeployOnDemandInput {
  aiApiId: String
  cloudType: CloudTypeEnum
  containerDiskInGb: Int
  countryCode: String
  deployCost: Float
  dockerArgs: String
  env: [EnvironmentVariableInput]
  gpuCount: Int
  gpuTypeId: String
  gpuTypeIdList: [String]
  imageName: String
  minDisk: Int
  minDownload: Int
  minMemoryInGb: Int
  minUpload: Int
  minVcpuCount: Int
  name: String
  networkVolumeId: String
  port: Int
  ports: String
  startJupyter: Boolean
  startSsh: Boolean
  stopAfter: String
  supportPublicIp: Boolean
  templateId: String
  terminateAfter: String
  volumeInGb: Int
  volumeKey: String
  volumeMountPath: String
  dataCenterId: String
  cudaVersion: String
  allowedCudaVersions: [String]
  instanceIds: [String]
  computeType: ComputeType
}

type User {
  id: String
  email: String
  pubKey: String
  clientBalance: Float
  currentSpendPerHr: Float
  spendLimit: Int
  underBalance: Boolean
  minBalance: Float
  clientLifetimeSpend: Float
  pods: [Pod]
  networkVolumes: [NetworkVolume]
}

type NetworkVolume { id: String name: String size: Int dataCenterId: String }

type GpuType {
  id: String
  displayName: String
  manufacturer: String
  memoryInGb: Int
  cudaCores: Int
  secureCloud: Boolean
  communityCloud: Boolean
  securePrice: Float
  communityPrice: Float
  oneMonthPrice: Float
  threeMonthPrice: Float
  sixMonthPrice: Float
  oneWeekPrice: Float
  communitySpotPrice: Float
  secureSpotPrice: Float
  maxGpuCount: Int
  maxGpuCountCommunityCloud: Int
  maxGpuCountSecureCloud: Int
  minPodGpuCount: Int
  lowestPrice(input: GpuLowestPriceInput): LowestPrice
}

type LowestPrice {
  gpuName: String
  gpuTypeId: String
  minimumBidPrice: Float
  uninterruptablePrice: Float
  minMemory: Int
  minVcpu: Int
  rentalPercentage: Float
  rentedCount: Int
  totalCount: Int
  stockStatus: String
  minDownload: Int
  minDisk: Int
  minUpload: Int
  countryCode: String
  supportPublicIp: Boolean
}

type Pod {
  id: String
  name: String
  imageName: String
  env: [String]
  machineId: String
  machine: PodMachineInfo
  desiredStatus: PodStatus
  podType: PodType
  costPerHr: Float
  adjustedCostPerHr: Float
  gpuCount: Int
  vcpuCount: Int
  memoryInGb: Int
  containerDiskInGb: Int
  volumeInGb: Int
  volumeMountPath: String
  volumeEncrypted: Boolean
  dockerArgs: String
  dockerId: String
  port: Int
  ports: String
  uptimeSeconds: Int
  lastStatusChange: String
  lastStartedAt: String
  createdAt: String
  templateId: String
  networkVolumeId: String
  locked: Boolean
  version: Int
  runtime: PodRuntime
}

type PodMachineInfo {
  id: String
  podHostId: String
  gpuDisplayName: String
  gpuTypeId: String
  location: String
  dataCenterId: String
  secureCloud: Boolean
  supportPublicIp: Boolean
  maxDownloadSpeedMbps: Int
  maxUploadSpeedMbps: Int
}

type PodRuntime {
  uptimeInSeconds: Int
  ports: [PodRuntimePorts]
  gpus: [PodRuntimeGpus]
  container: PodRuntimeContainer
}
type PodRuntimePorts { ip: String isIpPublic: Boolean privatePort: Int publicPort: Int type: String }
type PodRuntimeGpus { id: String gpuUtilPercent: Float memoryUtilPercent: Float }
type PodRuntimeContainer { cpuPercent: Float memoryPercent: Float }
"""


class ApiError(Exception):
    """A resolver error answered like the real API: in `errors`, with extensions.code."""

    def __init__(self, message: str, code: str = "INTERNAL_SERVER_ERROR", http_status: int = 200):
        super().__init__(message)
        self.extensions = {"code": code}
        self.http_status = http_status


@dataclass
class Interval:
    start: float
    end: float | None
    cost_per_hr: float

    def seconds(self, now: float) -> float:
        return max(0.0, (self.end if self.end is not None else now) - self.start)


@dataclass
class EmulatedPod:
    id: str
    name: str
    image_name: str
    gpu_type_id: str
    gpu_count: int
    cloud_type: str
    cost_per_hr: float
    volume_in_gb: int
    volume_mount_path: str
    container_disk_in_gb: int
    env: dict[str, str]  # the env given at create (what the API shows)
    ports: str
    docker_args: str
    support_public_ip: bool
    vcpu_count: int
    memory_in_gb: int
    api_key: str  # the pod-scoped key (RUNPOD_API_KEY inside the pod)
    dir: Path  # state_dir/pods/<id>
    workspace: Path  # dir/workspace, bind-mounted at volume_mount_path in the pod
    created_at: float
    machine_id: str
    pod_host_id: str
    desired_status: str = "RUNNING"
    ssh: SshdPod | None = None
    runtime_started_at: float | None = None  # runtime non-null from here (sshd up, boot delay over)
    intervals: list[Interval] = field(default_factory=list)  # GPU billing: RUNNING periods
    terminated_at: float | None = None
    last_status_change: str = ""
    last_started_at: float | None = None
    boot_error: str | None = None
    sshd_env: dict[str, str] = field(default_factory=dict)  # the env the pod's processes see
    version: int = 0
    _gen: int = field(default=0, repr=False)
    _op_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def running_intervals(self) -> list[tuple[float, float | None]]:
        return [(i.start, i.end) for i in self.intervals]


def _js_date(t: float) -> str:
    # the format RunPod uses in lastStatusChange (JavaScript Date.toString())
    return time.strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)", time.gmtime(t))


def _rand(n: int, alphabet: str = string.ascii_lowercase + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


# ----------------------------------------------------------------------------- resolvers

def _ctx(info) -> dict:
    return info.context


def _r_myself(_root, info):
    c = _ctx(info)
    emu: RunPodEmulator = c["emu"]
    if c["scope"] is not None:
        raise ApiError(MSG_FORBIDDEN, "FORBIDDEN", 403)
    now = time.time()
    with emu._lock:
        pods = [emu._pod_view(p, now) for p in emu.pods.values() if p.desired_status != "TERMINATED"]
        spend = sum(p.cost_per_hr for p in emu.pods.values() if p.desired_status == "RUNNING")
        spend += sum(emu._storage_usd_per_hr(p) for p in emu.pods.values() if p.desired_status != "TERMINATED")
        lifetime = sum(emu._billed(p, now) for p in emu.pods.values())
        return {
            "id": "user_2emulated0000000000000",
            "email": "test@example.com",
            "pubKey": "",
            "clientBalance": round(emu.balance_usd - lifetime, 6),
            "currentSpendPerHr": round(spend, 6),
            "spendLimit": 80,
            "underBalance": emu.balance_usd - lifetime <= 0,
            "minBalance": 0.0,
            "clientLifetimeSpend": round(lifetime, 6),
            "pods": pods,
            "networkVolumes": [],
        }


def _r_gpu_types(_root, info, input=None):  # noqa: A002 - GraphQL argument name
    emu: RunPodEmulator = _ctx(info)["emu"]
    types = emu.gpu_types
    if input:
        if input.get("id") is not None:
            types = [g for g in types if g.id == input["id"]]
        if input.get("ids") is not None:
            types = [g for g in types if g.id in set(input["ids"])]
    out = []
    for g in types:
        out.append({
            "_gpu": g,
            "id": g.id, "displayName": g.display_name, "manufacturer": g.manufacturer,
            "memoryInGb": g.memory_in_gb, "cudaCores": g.cuda_cores,
            "secureCloud": g.secure_price is not None, "communityCloud": g.community_price is not None,
            "securePrice": g.secure_price, "communityPrice": g.community_price,
            "oneMonthPrice": None, "threeMonthPrice": None, "sixMonthPrice": None, "oneWeekPrice": None,
            "communitySpotPrice": None, "secureSpotPrice": None,
            "maxGpuCount": g.max_gpu_count, "maxGpuCountCommunityCloud": g.max_gpu_count,
            "maxGpuCountSecureCloud": g.max_gpu_count, "minPodGpuCount": 1,
        })
    return out


def _r_lowest_price(parent, info, input=None):  # noqa: A002
    emu: RunPodEmulator = _ctx(info)["emu"]
    g: GpuType = parent["_gpu"]
    count = (input or {}).get("gpuCount") or 1
    secure = (input or {}).get("secureCloud")
    price = g.price("SECURE" if secure else ("COMMUNITY" if secure is False else "ALL"))
    with emu._lock:
        free = g.id not in emu.no_gpu_free
    available = free and price is not None and 1 <= count <= g.max_gpu_count
    return {
        "gpuName": g.display_name, "gpuTypeId": g.id,
        "minimumBidPrice": None,  # spot/interruptible pods no longer exist
        "uninterruptablePrice": price if available else None,
        "minMemory": 31 * count if available else None, "minVcpu": 8 * count if available else None,
        "rentalPercentage": 0.5 if available else None, "rentedCount": 10 if available else None,
        "totalCount": 20 if available else None,
        "stockStatus": "High" if available else None,
        "minDownload": 500 if available else None, "minDisk": 500 if available else None,
        "minUpload": 500 if available else None, "countryCode": "CZ" if available else None,
        "supportPublicIp": True if available else None,
    }


def _r_pod(_root, info, input):  # noqa: A002
    c = _ctx(info)
    emu: RunPodEmulator = c["emu"]
    pod_id = input["podId"]
    if c["scope"] is not None and c["scope"] != pod_id:
        raise ApiError(MSG_FORBIDDEN, "FORBIDDEN", 403)
    with emu._lock:
        pod = emu.pods.get(pod_id)
        if pod is None or pod.desired_status == "TERMINATED":
            return None
        return emu._pod_view(pod, time.time())


def _r_create(_root, info, input=None):  # noqa: A002
    c = _ctx(info)
    if c["scope"] is not None:
        raise ApiError(MSG_FORBIDDEN, "FORBIDDEN", 403)
    return c["emu"]._create(input or {})


def _r_stop(_root, info, input):  # noqa: A002
    c = _ctx(info)
    pod_id = input["podId"]
    if c["scope"] is not None and c["scope"] != pod_id:
        raise ApiError(MSG_FORBIDDEN, "FORBIDDEN", 403)
    return c["emu"]._stop(pod_id, defer=c["scope"] is not None, after=c["after"])


def _r_resume(_root, info, input):  # noqa: A002
    c = _ctx(info)
    if c["scope"] is not None:
        raise ApiError(MSG_FORBIDDEN, "FORBIDDEN", 403)
    return c["emu"]._resume(input["podId"], input.get("gpuCount"))


def _r_terminate(_root, info, input):  # noqa: A002
    c = _ctx(info)
    if c["scope"] is not None:
        raise ApiError(MSG_FORBIDDEN, "FORBIDDEN", 403)
    c["emu"]._terminate(input["podId"])
    return None


def _build_schema():
    schema = build_schema(SCHEMA_SDL)
    q = schema.query_type.fields
    q["myself"].resolve = _r_myself
    q["gpuTypes"].resolve = _r_gpu_types
    q["pod"].resolve = _r_pod
    m = schema.mutation_type.fields
    m["podFindAndDeployOnDemand"].resolve = _r_create
    m["podStop"].resolve = _r_stop
    m["podResume"].resolve = _r_resume
    m["podTerminate"].resolve = _r_terminate
    schema.type_map["GpuType"].fields["lowestPrice"].resolve = _r_lowest_price
    return schema


SCHEMA = _build_schema()


# ----------------------------------------------------------------------------- the emulator

class RunPodEmulator:
    """RunPod's GraphQL API on http://127.0.0.1:PORT, pods as real sshds. Thread-safe; a context manager."""

    def __init__(
        self,
        *,
        state_dir: Path,
        api_key: str = "rpa_TESTKEY0EMULATOR0000000000000000000000000000",
        gpu_types: list[GpuType] | None = None,
        pod_env_extra: dict[str, str] | None = None,
        boot_delay_s: float = 0.5,
        storage_usd_per_gb_month: float = 0.20,
        balance_usd: float = 100.0,
    ):
        self.state_dir = Path(state_dir).resolve()
        (self.state_dir / "pods").mkdir(parents=True, exist_ok=True)
        self.api_key = api_key
        self.gpu_types: list[GpuType] = list(gpu_types) if gpu_types is not None else list(DEFAULT_GPU_TYPES)
        self.pod_env_extra: dict[str, str] = dict(pod_env_extra or {})
        self.boot_delay_s = boot_delay_s
        self.storage_usd_per_gb_month = storage_usd_per_gb_month
        self.balance_usd = balance_usd
        self.pods: dict[str, EmulatedPod] = {}
        self.requests: list[dict] = []
        # fault switches
        self.unauthorized = False
        self.no_gpu_free: set[str] = set()
        self.resume_fails = False
        self._faults: list[dict] = []

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
    def fail_next(self, n: int = 1, status: int = 500, *, op: str | None = None) -> None:
        """The next n requests (only those whose first top-level field is `op`, if given) get an HTML
        error page with this HTTP status, as a proxy in front of the API answers. Nothing is executed."""
        with self._lock:
            self._faults.append({"kind": "fail", "n": n, "status": status, "op": op})

    def hang_next(self, n: int = 1, seconds: float = 35, *, op: str | None = None, execute: bool = True) -> None:
        """The next n requests (matching `op` if given) hang for `seconds`. execute=True: the operation
        takes effect at once and only the answer is held back (a create that "timed out" still rents
        a pod); execute=False: nothing happens and a 504 HTML page comes after the wait."""
        with self._lock:
            self._faults.append({"kind": "hang", "n": n, "seconds": seconds, "op": op, "execute": execute})

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
        """The pod's current public SSH port (None while not running/booting)."""
        with self._lock:
            p = self.pods.get(pod_id)
            return p.ssh.port if p is not None and p.ssh is not None and p.runtime_started_at else None

    def wait_status(self, pod_id: str, status: str, timeout_s: float) -> bool:
        """Wait until the pod's desiredStatus is `status` (RUNNING/EXITED/TERMINATED)."""
        deadline = time.monotonic() + timeout_s
        for _ in range(int(timeout_s / 0.02) + 2):
            with self._lock:
                p = self.pods.get(pod_id)
                if p is not None and p.desired_status == status:
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
        """GPU: RUNNING seconds x costPerHr/3600 (per interval, at that interval's rate); storage:
        volume existence seconds x volumeInGb x storage rate (per GB-month of 730 h)."""
        with self._lock:
            return self._billed(self.pods[pod_id], time.time())

    def _storage_usd_per_hr(self, p: EmulatedPod) -> float:
        return p.volume_in_gb * self.storage_usd_per_gb_month / HOURS_PER_MONTH

    def _billed(self, p: EmulatedPod, now: float) -> float:
        gpu = sum(i.seconds(now) * i.cost_per_hr / 3600.0 for i in p.intervals)
        end = p.terminated_at if p.terminated_at is not None else now
        storage = max(0.0, end - p.created_at) * self._storage_usd_per_hr(p) / 3600.0
        return gpu + storage

    # ------------------------------------------------------------------ views
    def _pod_view(self, p: EmulatedPod, now: float) -> dict:
        g = self._gpu(p.gpu_type_id)
        runtime = None
        uptime = 0
        if p.desired_status == "RUNNING" and p.ssh is not None and p.runtime_started_at is not None:
            uptime = int(now - p.runtime_started_at)
            runtime = {
                "uptimeInSeconds": uptime,
                "ports": self._runtime_ports(p),
                "gpus": [{"id": f"GPU-{p.id}-{i}", "gpuUtilPercent": 0.0, "memoryUtilPercent": 0.0}
                         for i in range(p.gpu_count)],
                "container": {"cpuPercent": 0.0, "memoryPercent": 1.0},
            }
        return {
            "id": p.id,
            "name": p.name,
            "imageName": p.image_name,
            "env": [f"{k}={v}" for k, v in p.env.items()],
            "machineId": p.machine_id,
            "machine": {
                "id": p.machine_id, "podHostId": p.pod_host_id,
                "gpuDisplayName": g.display_name if g else p.gpu_type_id, "gpuTypeId": p.gpu_type_id,
                "location": "CZ", "dataCenterId": "EU-CZ-1", "secureCloud": p.cloud_type != "COMMUNITY",
                "supportPublicIp": p.support_public_ip, "maxDownloadSpeedMbps": 1000, "maxUploadSpeedMbps": 1000,
            },
            "desiredStatus": p.desired_status,
            "podType": "RESERVED",
            "costPerHr": p.cost_per_hr,
            "adjustedCostPerHr": p.cost_per_hr,
            "gpuCount": p.gpu_count,
            "vcpuCount": p.vcpu_count,
            "memoryInGb": p.memory_in_gb,
            "containerDiskInGb": p.container_disk_in_gb,
            "volumeInGb": p.volume_in_gb,
            "volumeMountPath": p.volume_mount_path,
            "volumeEncrypted": False,
            "dockerArgs": p.docker_args,
            "dockerId": None,
            "port": None,
            "ports": p.ports,
            "uptimeSeconds": uptime,
            "lastStatusChange": p.last_status_change,
            "lastStartedAt": _js_date(p.last_started_at) if p.last_started_at else None,
            "createdAt": _js_date(p.created_at),
            "templateId": None,
            "networkVolumeId": None,
            "locked": False,
            "version": p.version,
            "runtime": runtime,
        }

    def _runtime_ports(self, p: EmulatedPod) -> list[dict]:
        out = []
        for spec in [s for s in (p.ports or "").split(",") if s]:
            num, _, kind = spec.partition("/")
            try:
                private = int(num)
            except ValueError:
                continue
            kind = kind or "http"
            if kind == "tcp" and private == 22:
                out.append({"ip": "127.0.0.1", "isIpPublic": bool(p.support_public_ip),
                            "privatePort": 22, "publicPort": p.ssh.port, "type": "tcp"})
            elif kind == "tcp":  # published but nothing listens behind it in the emulator
                out.append({"ip": "127.0.0.1", "isIpPublic": bool(p.support_public_ip),
                            "privatePort": private, "publicPort": 10000 + (private % 50000), "type": "tcp"})
            else:
                out.append({"ip": "100.65.0.2", "isIpPublic": False, "privatePort": private,
                            "publicPort": 60000 + (private % 5000), "type": kind})
        return out

    def _gpu(self, gpu_id: str) -> GpuType | None:
        for g in self.gpu_types:
            if g.id == gpu_id:
                return g
        return None

    def _get_live(self, pod_id: str) -> EmulatedPod:
        p = self.pods.get(pod_id)
        if p is None or p.desired_status == "TERMINATED":
            raise ApiError(MSG_POD_NOT_FOUND)
        return p

    # ------------------------------------------------------------------ lifecycle
    def _create(self, inp: dict) -> dict:
        gpu_type_id = inp.get("gpuTypeId")
        gpu_count = inp.get("gpuCount") if inp.get("gpuCount") is not None else 1
        cloud_type = inp.get("cloudType") or "ALL"
        image = inp.get("imageName") or ""
        if not image and not inp.get("templateId"):
            raise ApiError("Either imageName or templateId is required.", "BAD_USER_INPUT")
        if inp.get("templateId"):
            raise ApiError("emulator: templates are not emulated", "BAD_USER_INPUT")
        mount = inp.get("volumeMountPath") or "/workspace"
        if not mount.startswith("/") or mount.rstrip("/") in _RESERVED_MOUNTS or mount == "/" or ".." in mount:
            raise ApiError(f"Invalid volumeMountPath: {mount}", "BAD_USER_INPUT")
        env: dict[str, str] = {}
        for item in inp.get("env") or []:
            if item is None:
                continue
            env[item["key"]] = "" if item.get("value") is None else item["value"]
        g = self._gpu(gpu_type_id) if gpu_type_id else None
        with self._lock:
            unavailable = (
                g is None or gpu_type_id in self.no_gpu_free or not (1 <= gpu_count <= g.max_gpu_count)
                or g.price(cloud_type) is None
            )
        if unavailable:
            raise ApiError(MSG_NO_INSTANCES)
        pod_id = _rand(14)
        pdir = self.state_dir / "pods" / pod_id
        now = time.time()
        price = g.price(cloud_type)
        pod = EmulatedPod(
            id=pod_id,
            name=inp.get("name") or "",
            image_name=image,
            gpu_type_id=g.id,
            gpu_count=gpu_count,
            cloud_type=cloud_type,
            cost_per_hr=round(price * gpu_count, 4),
            volume_in_gb=inp.get("volumeInGb") or 0,
            volume_mount_path=mount.rstrip("/") or "/workspace",
            container_disk_in_gb=inp.get("containerDiskInGb") or 0,
            env=env,
            ports=(inp.get("ports") or "").replace(" ", ""),
            docker_args=inp.get("dockerArgs") or "",
            support_public_ip=bool(inp.get("supportPublicIp", False)),
            vcpu_count=max(inp.get("minVcpuCount") or 0, 8 * gpu_count),
            memory_in_gb=max(inp.get("minMemoryInGb") or 0, 31 * gpu_count),
            api_key="rpa_" + _rand(44, string.ascii_uppercase + string.digits),
            dir=pdir,
            workspace=pdir / "workspace",
            created_at=now,
            machine_id=_rand(12),
            pod_host_id=f"{pod_id}-{secrets.token_hex(4)}",
            last_status_change=f"Rented by User: {_js_date(now)}",
            last_started_at=now,
        )
        pod.sshd_env = self._sshd_env(pod)
        # refuse env that sshd cannot carry now, not later in the boot thread
        from .sshd import _setenv_line  # noqa: PLC0415
        try:
            _setenv_line(pod.sshd_env)
        except ValueError as e:
            raise ApiError(f"emulator: {e}", "BAD_USER_INPUT") from None
        pod.workspace.mkdir(parents=True, exist_ok=True)
        with self._lock:
            pod.intervals.append(Interval(now, None, pod.cost_per_hr))
            self.pods[pod_id] = pod
            self._pod_keys[pod.api_key] = pod_id
            gen = pod._gen
            view = self._pod_view(pod, now)
        self._spawn(self._boot, pod, gen)
        return view

    def _sshd_env(self, pod: EmulatedPod) -> dict[str, str]:
        env = dict(pod.env)
        env.update({
            "RUNPOD_POD_ID": pod.id,
            "RUNPOD_API_KEY": pod.api_key,
            "RUNPOD_API_BASE_URL": self.url,
            "RUNPOD_POD_HOSTNAME": pod.pod_host_id,
            "RUNPOD_GPU_COUNT": str(pod.gpu_count),
            "RUNPOD_PUBLIC_IP": "127.0.0.1",
            "RUNPOD_DC_ID": "EU-CZ-1",
        })
        env.update(self.pod_env_extra)
        return env

    def _spawn(self, fn: Callable, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _boot(self, pod: EmulatedPod, gen: int) -> None:
        """The image 'pulls' for boot_delay_s (runtime null), then the pod's sshd starts."""
        if self._closing.wait(self.boot_delay_s):
            return
        with pod._op_lock:
            with self._lock:
                if pod._gen != gen or pod.desired_status != "RUNNING" or self._closing.is_set():
                    return
                keys = [ln for ln in pod.env.get("PUBLIC_KEY", "").splitlines() if ln.strip()]
            try:
                ssh = start_sshd(
                    state_dir=pod.dir / "sshd", workspace=pod.workspace, authorized_keys=keys,
                    env=pod.sshd_env, isolate_workspace=True, mount_point=pod.volume_mount_path,
                )
            except Exception as e:  # visible to tests through pod.boot_error; runtime stays null
                with self._lock:
                    pod.boot_error = repr(e)
                return
            with self._lock:
                self._sshds.append(ssh)  # close() stops it whatever happens next
                pod.ssh = ssh
                pod.runtime_started_at = time.time()
                pod.boot_error = None

    def _stop(self, pod_id: str, *, defer: bool, after: list) -> dict:
        with self._lock:
            pod = self._get_live(pod_id)
        with pod._op_lock:
            with self._lock:
                now = time.time()
                if pod.desired_status == "RUNNING":
                    pod._gen += 1
                    pod.desired_status = "EXITED"
                    pod.version += 1
                    pod.last_status_change = f"Exited by user: {_js_date(now)}"
                    for i in pod.intervals:
                        if i.end is None:
                            i.end = now
                ssh, pod.ssh, pod.runtime_started_at = pod.ssh, None, None
                view = self._pod_view(pod, now)
            if ssh is not None:
                if defer:
                    # the caller lives inside this pod: answer first, then the pod goes down
                    after.append(lambda: (self._closing.wait(0.2), stop_sshd(ssh)))
                else:
                    stop_sshd(ssh)
        return view

    def _resume(self, pod_id: str, gpu_count: int | None) -> dict:
        with self._lock:
            pod = self._get_live(pod_id)
        with pod._op_lock:
            with self._lock:
                now = time.time()
                if pod.desired_status == "RUNNING":
                    return self._pod_view(pod, now)
                count = pod.gpu_count if gpu_count is None else gpu_count
                g = self._gpu(pod.gpu_type_id)
                if self.resume_fails or pod.gpu_type_id in self.no_gpu_free or g is None \
                        or not (1 <= count <= g.max_gpu_count):
                    raise ApiError(MSG_RESUME_NO_GPU)
                pod.gpu_count = count
                pod.cost_per_hr = round(g.price(pod.cloud_type) * count, 4)
                pod._gen += 1
                gen = pod._gen
                pod.desired_status = "RUNNING"
                pod.version += 1
                pod.last_status_change = f"Resumed by user: {_js_date(now)}"
                pod.last_started_at = now
                pod.sshd_env["RUNPOD_GPU_COUNT"] = str(count)
                pod.intervals.append(Interval(now, None, pod.cost_per_hr))
                view = self._pod_view(pod, now)
        self._spawn(self._boot, pod, gen)
        return view

    def _terminate(self, pod_id: str) -> None:
        with self._lock:
            pod = self._get_live(pod_id)
        with pod._op_lock:
            with self._lock:
                now = time.time()
                pod._gen += 1
                pod.desired_status = "TERMINATED"
                pod.terminated_at = now
                pod.last_status_change = f"Terminated by user: {_js_date(now)}"
                for i in pod.intervals:
                    if i.end is None:
                        i.end = now
                ssh, pod.ssh, pod.runtime_started_at = pod.ssh, None, None
                self._pod_keys.pop(pod.api_key, None)
            if ssh is not None:
                stop_sshd(ssh)
            shutil.rmtree(pod.workspace, ignore_errors=True)

    # ------------------------------------------------------------------ request handling
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


def _js_quotes(message: str) -> str:
    """graphql-core quotes names 'like this'; graphql-js (what RunPod runs) "like this"."""
    return re.sub(r"'([^'\n]*)'", r'"\1"', message)


def _html(status: int) -> bytes:
    reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
              504: "Gateway Time-out", 520: "Web server is returning an unknown error",
              524: "A timeout occurred"}.get(status, "Error")
    return (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
            f"</body>\r\n</html>\r\n").encode()


def _summarize(doc, operation_name: str | None, variables: dict | None) -> tuple[str | None, list[str], dict]:
    """First top-level field name, all of them, and the first field's arguments (from the AST)."""
    ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name:
        ops = [d for d in ops if d.name and d.name.value == operation_name] or ops
    if not ops:
        return None, [], {}
    fields = [s for s in ops[0].selection_set.selections if isinstance(s, FieldNode)]
    names = [f.name.value for f in fields]
    args = {}
    if fields:
        try:
            args = {a.name.value: value_from_ast_untyped(a.value, variables) for a in fields[0].arguments}
        except Exception:
            args = {}
    return (names[0] if names else None), names, args


class _Handler(BaseHTTPRequestHandler):
    emulator: RunPodEmulator
    server_version = "RunPodEmulator/1.0"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            pass  # the client went away (timed out, or was killed with its pod)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode())

    def do_GET(self):  # noqa: N802
        self._json(405, {"errors": [{"message": "Only POST is supported by this emulator."}]})

    def do_POST(self):  # noqa: N802
        emu = self.emulator
        path = self.path.split("?", 1)[0]
        entry: dict[str, Any] = {
            "t": time.time(), "path": self.path, "op": None, "ops": [], "args": {}, "variables": None,
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
            entry["status"] = 413
            return self._json(413, {"errors": [{"message": "Request entity too large"}]})
        raw = self.rfile.read(length) if length > 0 else b""
        if path != "/graphql":
            entry["status"] = 404
            return self._send(404, b"Not Found", "text/plain")

        body, doc, parse_error = None, None, None
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        query = body.get("query") if isinstance(body, dict) else None
        variables = body.get("variables") if isinstance(body, dict) else None
        operation_name = body.get("operationName") if isinstance(body, dict) else None
        entry["query"] = query
        entry["variables"] = variables
        if isinstance(query, str):
            try:
                doc = parse(query)
                entry["op"], entry["ops"], entry["args"] = _summarize(doc, operation_name, variables)
            except GraphQLError as e:
                parse_error = e

        if emu.unauthorized:
            entry["status"] = 401
            entry["fault"] = "unauthorized"
            return self._json(401, {"error": "Unauthorized"})
        fault = emu._take_fault(entry["op"])
        if fault and fault["kind"] == "fail":
            entry["status"] = fault["status"]
            entry["fault"] = "fail"
            return self._send(fault["status"], _html(fault["status"]), "text/html")
        hang_after = None
        if fault and fault["kind"] == "hang":
            entry["fault"] = "hang"
            if not fault["execute"]:
                emu._closing.wait(fault["seconds"])
                entry["status"] = 504
                return self._send(504, _html(504), "text/html")
            hang_after = fault["seconds"]

        kind, scope = emu._auth(self.headers.get("Authorization"))
        entry["auth"], entry["pod_scope"] = kind, scope
        entry["auth_ok"] = kind in ("account", "pod")
        if not entry["auth_ok"]:
            entry["status"] = 401
            return self._json(401, {"error": "Unauthorized"})

        after: list[Callable] = []
        status, payload = self._graphql(body, doc, parse_error, variables, operation_name, kind, scope, after)
        entry["status"] = status
        if hang_after is not None:
            emu._closing.wait(hang_after)
        self._json(status, payload)
        for fn in after:
            emu._spawn(fn)

    def _graphql(self, body, doc, parse_error, variables, operation_name, kind, scope, after):
        def err(message, code, status=400, extra=None):
            e = {"message": message, "extensions": {"code": code}}
            if extra:
                e.update(extra)
            return status, {"errors": [e]}

        if not isinstance(body, dict):
            return err("POST body sent invalid JSON.", "BAD_REQUEST")
        if not isinstance(body.get("query"), str) or not body["query"].strip():
            return err("GraphQL operations must contain a non-empty `query` or a `persistedQuery` extension.",
                       "BAD_REQUEST")
        if variables is not None and not isinstance(variables, dict):
            return err("`variables` in a POST body should be provided as an object.", "BAD_REQUEST")
        if parse_error is not None:
            f = parse_error.formatted
            return err(_js_quotes(f["message"]), "GRAPHQL_PARSE_FAILED", extra={"locations": f.get("locations")})
        errors = validate(SCHEMA, doc)
        if errors:
            out = []
            for e in errors:
                f = dict(e.formatted)
                f["message"] = _js_quotes(f["message"])
                f["extensions"] = {"code": "GRAPHQL_VALIDATION_FAILED"}
                out.append(f)
            return 400, {"errors": out}
        ctx = {"emu": self.emulator, "auth": kind, "scope": scope, "after": after}
        result = execute(SCHEMA, doc, variable_values=variables, operation_name=operation_name, context_value=ctx)
        payload: dict[str, Any] = {}
        status = 200
        if result.errors:
            out = []
            for e in result.errors:
                f = dict(e.formatted)
                orig = e.original_error
                if isinstance(orig, ApiError):
                    status = max(status, orig.http_status)
                    f["extensions"] = dict(orig.extensions)
                elif orig is not None:
                    f["message"] = "Something went wrong. Please try again later or contact support."
                    f["extensions"] = {"code": "INTERNAL_SERVER_ERROR", "emulator_detail": repr(orig)}
                else:
                    f.setdefault("extensions", {"code": "BAD_USER_INPUT"})
                    status = max(status, 400) if result.data is None else status
                out.append(f)
            payload["errors"] = out
        payload["data"] = result.data
        return status, payload
