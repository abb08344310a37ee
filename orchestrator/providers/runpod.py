"""RunPod through its REST v2 API (providers/runpod_api.py). See providers/base.py for the contract.

RunPod's GraphQL API (what the `runpod` 1.12 SDK speaks) goes away in early 2027; nothing here uses it. Only
the pod's own self-stop still falls back to GraphQL's podStop while it exists (remote/selfstop.py).
Retries live in the client (idempotent calls only). Create is sent once per attempt and followed, after any
failure that is not a clear "no capacity", by a look-up by name: the pod is used if it exists, so nobody is
billed for a pod podtune does not know.
"""

from __future__ import annotations

import os
import shlex
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from remote.events import WorkspacePaths
from remote.recipe import Recipe

from ..background import import_in_background
from ..errors import CapacityError, ConfigError, PodtuneError, ProviderError
from ..paths import known_hosts_path
from ..secrets import runpod_api_key
from ..ssh_keys import ensure_keypair
from ..pod.transport import Transport
from ..pod.waiting import wait_until
from .base import BilledAmount, GpuOffer, Pod, PodSpec, PodState
from .runpod_api import ApiError, RunPodApi

SSH = "orchestrator.pod.ssh_transport"  # imported when a pod is about to be reached, not with this module

if TYPE_CHECKING:
    from ..doctor import Check

STORAGE_USD_PER_GB_MONTH = 0.20  # RUNPOD.md: a volume bills about $0.20/GB-month, running or stopped
HOURS_PER_MONTH = 730.0
MOUNT_PATH = "/workspace"
CREATE_ATTEMPTS = 3
STATES = {"PROVISIONING": PodState.PENDING, "STARTING": PodState.PENDING, "RUNNING": PodState.RUNNING,
          "EXITED": PodState.STOPPED, "ERROR": PodState.ERROR, "TERMINATED": PodState.TERMINATED}
T = TypeVar("T")
DOCTOR_TIMEOUT_S = 10.0  # a person is waiting; the client still retries a 5xx a few times
KEYS_URL = "https://www.runpod.io/console/user/settings"
BILLING_URL = "https://www.runpod.io/console/user/billing"


def explain(exc: ApiError, what: str) -> PodtuneError:
    """One clear message with a hint for each kind of answer RunPod gives."""
    said = exc.detail + (f" ({'; '.join(exc.errors)})" if exc.errors else "")
    if exc.no_capacity:
        return CapacityError(f"RunPod: {exc.detail}")
    if exc.status == 401:
        return ConfigError("RunPod rejected the API key (401)", "check RUNPOD_API_KEY (RunPod console > Settings > API Keys)")
    if exc.status == 402:
        return ProviderError(f"RunPod refused to {what}: the account balance is too low (402: {said})",
                             "add funds in the RunPod console (Billing); a $0 balance also terminates running pods")
    if exc.status == 403:
        return ProviderError(f"RunPod refused to {what}: the API key may not do this (403: {said})",
                             "give the key read/write access to Pods (RunPod console > Settings > API Keys)")
    if exc.status == 409:
        return ProviderError(f"RunPod refused to {what} in the pod's current state (409: {said})",
                             "see the pod with `podtune status`; it may be stopping, starting or part of a cluster")
    if exc.status == 422:
        return ProviderError(f"RunPod rejected podtune's request to {what} as malformed (422: {said})",
                             "this is a podtune bug: please report it with this message")
    if exc.status == 429:
        wait = f"{exc.retry_after_s:g} s" if exc.retry_after_s is not None else "a minute"
        return ProviderError(f"RunPod is rate-limiting this API key while podtune tried to {what} (429)",
                             f"podtune retried; wait {wait} and run the command again", retryable=True)
    if exc.status == 0 or exc.status >= 500:
        return ProviderError(f"RunPod could not {what}: {said}",
                             "RunPod may be degraded (podtune retried a few times); try again in a few minutes",
                             retryable=True)
    return ProviderError(f"RunPod refused to {what}: {said}")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class RunPodProvider:
    name = "runpod"
    rents = True
    storage_usd_per_gb_month = STORAGE_USD_PER_GB_MONTH
    runs_on_this_machine = False

    def __init__(self, api_key: str, base_url: str | None = None):
        self._api = RunPodApi(api_key, base_url)

    @classmethod
    def from_environment(cls) -> RunPodProvider:
        key = runpod_api_key()
        if not key:
            raise ConfigError("no RunPod API key found",
                              "export RUNPOD_API_KEY=... (or put it in ~/.runpod/config.toml), or use --provider local")
        return cls(key)

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> RunPodProvider:
        return cls.from_environment()  # the account is the user's, not the recipe's

    @classmethod
    def missing_credentials(cls, recipe: Recipe) -> list[tuple[str, str]]:
        if runpod_api_key():
            return []
        return [("a RunPod API key (provider runpod)",
                 "export RUNPOD_API_KEY=... (RunPod: Settings > API Keys) or run `runpod config`; "
                 "or use --provider local")]

    @classmethod
    def doctor_checks(cls, recipe: Recipe | None) -> list[Check]:
        return runpod_checks(required=recipe is not None)

    @classmethod
    def starter_compute(cls, gpu: str | None) -> list[tuple[str, Any]]:
        return [("gpu_types", [gpu] if gpu else []), ("gpu_count", 1), ("cloud", "secure"), ("volume_gb", 50),
                ("max_usd", 10.0)]

    def calibration(self, say: Callable[[str], None] | None = None) -> dict[str, Any] | None:
        return None  # a rented GPU is not this machine: the plan uses the throughput table

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            raise explain(exc, what) from None

    # ---- catalog ------------------------------------------------------------------------------------------
    def offers(self, gpu_count: int = 1, cloud: str = "secure") -> list[GpuOffer]:
        gpus = self._call("list GPU types", self._api.list_gpus, count=gpu_count, cloud=cloud.upper())
        offers = []
        for gpu in gpus:
            price = gpu.get("price") or {}
            in_cloud = bool(gpu.get(cloud, True))
            offers.append(GpuOffer(
                gpu_type=gpu["id"], display_name=gpu.get("name") or gpu["id"], memory_gb=float(gpu.get("memory") or 0),
                usd_per_hour=float(price.get(cloud) or 0),
                available=in_cloud and gpu.get("availability", "NONE") != "NONE" and bool(price.get(cloud)),
                cloud=cloud, prices=tuple((c, float(price[c])) for c in ("secure", "community") if price.get(c)),
                stock=str(gpu.get("availability") or "unknown"),
            ))
        return offers

    # ---- pods ---------------------------------------------------------------------------------------------
    def find(self, name: str) -> Pod | None:
        mine = [p for p in self._call("list pods", self._api.list_pods) if p.get("name") == name
                and p.get("status") != "TERMINATED"]
        # Newest first: after a failed resume a fresh pod of the same name replaces the stuck one.
        mine.sort(key=lambda p: str(p.get("createdAt") or ""), reverse=True)
        return self._to_pod(mine[0]) if mine else None

    def create(self, spec: PodSpec) -> Pod:
        import_in_background(SSH)  # SSH comes next: paramiko's 0.1 s of import passes while the pod boots
        tried = []
        for gpu_type in spec.gpu_types:
            try:
                return self._create_once(spec, gpu_type)
            except CapacityError as exc:  # the race: in stock at plan time, gone now
                tried.append(f"{gpu_type}: {exc.message}")
        raise CapacityError(
            "no pod could be rented: " + "; ".join(tried),
            "add other GPU types to compute.gpu_types (see `podtune plan`), or try again later",
        )

    def _create_body(self, spec: PodSpec, gpu_type: str) -> dict[str, Any]:
        # v2 has no default volume and no default ports: both are always sent.
        return {
            "name": spec.name, "image": spec.image, "cloud": spec.cloud.upper(),
            "gpu": {"id": gpu_type, "count": spec.gpu_count},
            "mounts": {"persistent": {"size": spec.volume_gb, "path": MOUNT_PATH}},
            "disk": spec.container_disk_gb, "ports": ["22/tcp"], "env": {"PUBLIC_KEY": spec.public_key},
        }

    def _create_once(self, spec: PodSpec, gpu_type: str) -> Pod:
        body = self._create_body(spec, gpu_type)
        for attempt in range(CREATE_ATTEMPTS):
            try:
                return self._to_pod(self._api.create_pod(body))
            except ApiError as exc:
                failure, retry_after = explain(exc, "create a pod"), exc.retry_after_s
                if isinstance(failure, CapacityError):
                    raise failure from None
            # The create may have gone through before the error (or the lost answer): never rent twice, never
            # leave a pod podtune does not know about.
            existing = self.find(spec.name)
            if existing is not None:
                return existing
            if not (isinstance(failure, ProviderError) and failure.retryable) or attempt == CREATE_ATTEMPTS - 1:
                raise failure
            time.sleep(min(2 ** attempt, 8) if retry_after is None else min(retry_after, 30))
        raise AssertionError("unreachable")

    def get(self, pod_id: str) -> Pod | None:
        raw = self._call("read a pod", self._api.get_pod, pod_id)
        return self._to_pod(raw) if raw is not None and raw.get("status") != "TERMINATED" else None

    def _action(self, pod_id: str, action: str, what: str) -> Pod | None:
        """Do `action`; returns the pod as it is afterwards, None when it is gone.

        Asked straight away: a stop at the end of a run and a resume are allowed in the pod's usual status, and a
        look at its `actions` list first cost every one an API round trip (billed GPU time, for a stop). A 409
        says the status does not allow it now: the pod as it is goes back to the caller, which decides whether
        that already is what it wanted. Refused while the list allows it (the status changed in between): asked
        once more, then the refusal is the error."""
        for attempt in range(2):
            try:
                answer = self._api.pod_action(pod_id, action)
            except ApiError as exc:
                if exc.status == 404:
                    return None
                if exc.status != 409:
                    raise explain(exc, what) from None
                current = self.get(pod_id)
                if current is None or action not in current.actions:
                    return current
                if attempt:
                    raise explain(exc, what) from None
                continue
            return self._to_pod(answer) if answer else self.get(pod_id)
        raise AssertionError("unreachable")

    def start(self, pod_id: str) -> Pod:
        import_in_background(SSH)  # SSH comes next: paramiko's 0.1 s of import passes while the pod boots
        pod = self._action(pod_id, "start", "resume a pod")
        if pod is None:
            raise ProviderError(f"pod {pod_id} no longer exists on RunPod", "run again to rent a new pod")
        if pod.state in (PodState.STOPPED, PodState.ERROR) and "start" not in pod.actions:
            raise ProviderError(f"RunPod will not start pod {pod_id} now (status {pod.status})",
                                "see it in the RunPod console; `podtune stop --pod ID --terminate` deletes it")
        return pod

    def stop(self, pod_id: str) -> None:
        pod = self._action(pod_id, "stop", "stop a pod")
        if pod is not None and pod.state == PodState.ERROR:
            raise ProviderError(f"pod {pod_id} is in ERROR: RunPod cannot stop it and bills it until it is deleted",
                                f"delete it (and its volume): podtune stop --pod {pod_id} --terminate")
        if pod is not None and pod.state in (PodState.RUNNING, PodState.PENDING) and "stop" not in pod.actions:
            raise ProviderError(f"RunPod will not stop pod {pod_id} now (status {pod.status}, locked?)",
                                "stop it in the RunPod console: it is still billing")

    def terminate(self, pod_id: str) -> None:
        self._call("terminate a pod", self._api.delete_pod, pod_id)

    def connect(self, pod: Pod, *, timeout_s: float, on_wait=None) -> Transport:
        from ..pod.ssh_transport import SSHTransport, open_if_ssh

        def ssh_ready() -> tuple[Pod, socket.socket] | None:
            current = self.get(pod.id)
            if current is None:
                raise ProviderError(f"pod {pod.id} was terminated while podtune waited for it")
            if current.state == PodState.ERROR:
                raise ProviderError(f"pod {pod.id} went into ERROR while starting (the image may not exist or "
                                    f"failed to start)", "check compute.image; see the pod's logs in the RunPod console")
            if current.state == PodState.STOPPED:
                raise ProviderError(f"pod {pod.id} stopped while podtune waited for it to start")
            if current.state != PodState.RUNNING or current.ssh_port is None:
                return None  # PROVISIONING or STARTING: image pulling, no runtime yet
            sock = open_if_ssh(current.ssh_host or "", current.ssh_port)
            return (current, sock) if sock is not None else None

        # A resumed pod with a cached image can accept SSH within a tenth of a second of the start call: look
        # often at first (0.05 s, backing off x1.5 to 5 s: a dozen looks in the first 10 s), so the run does not
        # sit out most of a coarse poll after the pod is ready (with a 0.25 s first look, a benchmark resume that
        # just missed the first look waited 0.26 s for SSH, one that did not 0.06 s).
        ready, sock = wait_until(ssh_ready, timeout_s=timeout_s, what=f"pod {pod.id} to accept SSH", on_wait=on_wait,
                                 hint="the image may still be pulling; see the pod in the RunPod console",
                                 first_delay_s=0.05)
        try:
            key_path, _ = ensure_keypair()
        except BaseException:
            sock.close()
            raise
        return SSHTransport(host=ready.ssh_host or "", port=ready.ssh_port or 22, user="root", key_path=key_path,
                            pin_label=pod.id, known_hosts=known_hosts_path()).connect(sock)

    def self_stop_command(self, pod: Pod) -> str | None:
        # Standard library only, run with the image's python: works even if the training venv is broken.
        return f"cd {shlex.quote(str(WorkspacePaths.on_pod(pod.workspace).code))} && python3 -m remote selfstop runpod"

    def billed(self, pod_id: str, start: float, end: float) -> BilledAmount | None:
        """RunPod's own figure for this pod between start and end (hourly buckets; recent hours may be missing)."""
        records = self._call("read billing", self._api.pod_billing, pod_id, start=_iso(start), end=_iso(end))
        if not records:
            return None
        return BilledAmount(
            usd=sum(float(r.get("totalAmount") or 0) for r in records),
            gpu_usd=sum(float(r.get("gpuAmount") or 0) for r in records),
            storage_usd=sum(float(r.get("diskAmount") or 0) for r in records),
            start=min(_epoch(r["startTime"]) for r in records), end=max(_epoch(r["endTime"]) for r in records),
        )

    def balance_usd(self) -> float | None:
        """REST v2 has no account balance (it was GraphQL only): unknown."""
        return None

    # ---- mapping ------------------------------------------------------------------------------------------
    def _to_pod(self, raw: dict[str, Any]) -> Pod:
        status = str(raw.get("status") or "PROVISIONING")
        host, port = _ssh_endpoint(raw)
        persistent = (raw.get("mounts") or {}).get("persistent") or {}
        volume = int(persistent.get("size") or 0)
        gpu = raw.get("gpu") or {}
        return Pod(
            id=raw["id"], name=raw.get("name") or "", provider=self.name, state=STATES.get(status, PodState.PENDING),
            status=status, actions=tuple(raw.get("actions") or ()),
            gpu_type=gpu.get("id"), gpu_count=int(gpu.get("count") or 1),
            cost_per_hr=float(raw.get("cost") or 0), volume_gb=volume,
            storage_per_hr=volume * STORAGE_USD_PER_GB_MONTH / HOURS_PER_MONTH,
            ssh_host=host, ssh_port=port, workspace=persistent.get("path") or MOUNT_PATH,
        )


def _ssh_endpoint(raw: dict[str, Any]) -> tuple[str | None, int | None]:
    """ssh.direct when RunPod gives it; else the runtime's public mapping of port 22. Both null unless RUNNING."""
    direct = (raw.get("ssh") or {}).get("direct")
    if direct and direct.get("host") and direct.get("port"):
        return str(direct["host"]), int(direct["port"])
    for mapping in ((raw.get("runtime") or {}).get("ports") or []):
        if mapping.get("private") == 22 and mapping.get("public") and mapping.get("ip"):
            return str(mapping["ip"]), int(mapping["public"])
    return None, None


# ---- `podtune doctor` ---------------------------------------------------------------------------------------
def runpod_key_source() -> str | None:
    if os.environ.get("RUNPOD_API_KEY"):
        return "RUNPOD_API_KEY"
    path = Path.home() / ".runpod" / "config.toml"
    return str(path) if path.is_file() else None


def runpod_checks(*, required: bool) -> list[Check]:
    """The API key, tried on the cheapest authenticated call; the balance, which the v2 API does not report."""
    from ..doctor import FAIL, OK, SKIP, UNKNOWN, Check, absent

    key = runpod_api_key()
    balance = Check("RunPod balance", UNKNOWN, "RunPod's REST v2 API does not report the account balance",
                    f"see it in the RunPod console: {BILLING_URL}")
    if not key:
        return [absent("RunPod API key", "not set", "for provider runpod",
                       f"create a key at {KEYS_URL}, then export RUNPOD_API_KEY=... "
                       "(or put api_key in ~/.runpod/config.toml)", required),
                Check("RunPod balance", SKIP, "no API key")]
    api = RunPodApi(key, timeout_s=DOCTOR_TIMEOUT_S)
    try:
        gpus = api.list_gpus(count=1)  # the cheapest authenticated call: the GPU catalog
    except ApiError as exc:
        err = explain(exc, "list GPU types")
        return [Check("RunPod API key", FAIL, f"{err.message} (key from {runpod_key_source()})", err.hint or "", True),
                balance]
    finally:
        api.close()
    free = sum(1 for g in gpus if g.get("availability", "NONE") != "NONE")
    return [Check("RunPod API key", OK, f"accepted (from {runpod_key_source()}); GPU catalog lists {len(gpus)} "
                  f"types, {free} available now", required=required), balance]
