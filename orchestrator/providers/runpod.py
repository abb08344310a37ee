"""RunPod through the pinned runpod SDK (GraphQL). See providers/base.py for the contract.

RunPod is retiring GraphQL for REST v2; everything SDK-shaped stays in this file so a REST implementation can
replace it without touching anything else. Retries happen here only (reads, stop, terminate); create is never
retried blindly: after an unclear failure the pod is looked up by name first, so a user is never billed twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from ..errors import CapacityError, ConfigError, ProviderError
from ..paths import known_hosts_path
from ..secrets import runpod_api_key
from ..ssh_keys import ensure_keypair
from ..ssh_transport import SSHTransport, probe_banner
from ..transport import Transport
from ..waiting import wait_until
from .base import GpuOffer, Pod, PodSpec, PodState

STORAGE_USD_PER_GB_MONTH = 0.20  # RUNPOD.md: a stopped volume bills about $0.20/GB-month
HOURS_PER_MONTH = 730.0
NO_CAPACITY = ("no longer any instances available", "not enough free", "no gpu", "no instances", "not available")
T = TypeVar("T")


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


_retry = retry(retry=retry_if_exception(_is_retryable), stop=stop_after_attempt(4),
               wait=wait_exponential(multiplier=0.5, max=8), reraise=True)


class RunPodProvider:
    name = "runpod"

    def __init__(self, api_key: str):
        import runpod  # lazy: only this provider needs the SDK

        self._sdk = runpod
        self._key = api_key

    @classmethod
    def from_environment(cls) -> RunPodProvider:
        key = runpod_api_key()
        if not key:
            raise ConfigError("no RunPod API key found",
                              "export RUNPOD_API_KEY=... (or run `runpod config`), or use --provider local")
        return cls(key)

    # ---- the SDK edge: every call goes through here -------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        import requests
        from runpod import error as rp_error

        self._sdk.api_key = self._key  # the SDK ignores RUNPOD_API_KEY; it reads this module global
        try:
            return fn(*args, **kwargs)
        except rp_error.AuthenticationError:
            raise ConfigError("RunPod rejected the API key", "check RUNPOD_API_KEY (Settings > API Keys)") from None
        except rp_error.QueryError as exc:
            message = str(exc.message or exc)
            if any(marker in message.lower() for marker in NO_CAPACITY):
                raise CapacityError(f"RunPod: {message}") from None
            raise ProviderError(f"RunPod refused to {what}: {message}") from None
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise ProviderError(f"RunPod did not answer while trying to {what} ({exc.__class__.__name__})",
                                "check your network; podtune retried a few times", retryable=True) from None
        except (json.JSONDecodeError, requests.exceptions.JSONDecodeError):
            # A 5xx HTML page instead of JSON: RunPod is having trouble.
            raise ProviderError(f"RunPod answered with an error page while trying to {what}",
                                "RunPod may be degraded; try again in a few minutes", retryable=True) from None
        except ValueError as exc:
            raise ProviderError(f"RunPod: {exc}") from None

    # ---- Provider -----------------------------------------------------------------------------------------
    @_retry
    def offers(self, gpu_count: int = 1) -> list[GpuOffer]:
        offers = []
        for gpu in self._call("list GPU types", self._sdk.get_gpus):
            detail = self._call("price a GPU type", self._sdk.get_gpu, gpu["id"], gpu_count)
            price = (detail.get("lowestPrice") or {}).get("uninterruptablePrice")
            offers.append(GpuOffer(
                gpu_type=gpu["id"], display_name=gpu.get("displayName") or gpu["id"],
                memory_gb=float(gpu.get("memoryInGb") or 0), usd_per_hour=float(price or 0),
                available=price is not None,
            ))
        return offers

    @_retry
    def _pods(self) -> list[dict[str, Any]]:
        return self._call("list pods", self._sdk.get_pods) or []

    def find(self, name: str) -> Pod | None:
        mine = [p for p in self._pods() if p.get("name") == name and p.get("desiredStatus") != "TERMINATED"]
        # Newest first: after a failed resume a fresh pod of the same name replaces the stuck one.
        mine.sort(key=lambda p: str(p.get("lastStatusChange") or ""), reverse=True)
        return self._to_pod(mine[0]) if mine else None

    def create(self, spec: PodSpec) -> Pod:
        tried = []
        for gpu_type in spec.gpu_types:
            try:
                created = self._create_once(spec, gpu_type)
            except CapacityError as exc:
                tried.append(f"{gpu_type}: {exc.message}")
                continue
            return created
        raise CapacityError(
            "no pod could be rented: " + "; ".join(tried),
            "add other GPU types to compute.gpu_types (see `podtune plan`), or try again later",
        )

    def _create_once(self, spec: PodSpec, gpu_type: str, attempts: int = 3) -> Pod:
        for attempt in range(attempts):
            try:
                answer = self._call(
                    "create a pod", self._sdk.create_pod, spec.name, spec.image, gpu_type,
                    cloud_type="ALL", gpu_count=spec.gpu_count, volume_in_gb=spec.volume_gb,
                    container_disk_in_gb=spec.container_disk_gb, volume_mount_path="/workspace",
                    ports="22/tcp", env={"PUBLIC_KEY": spec.public_key}, support_public_ip=True,
                )
                return self.get(answer["id"]) or self._to_pod(answer)
            except ProviderError as exc:
                if not exc.retryable or attempt == attempts - 1:
                    raise
                # The create may have gone through before the error: never rent twice.
                existing = self.find(spec.name)
                if existing is not None:
                    return existing
        raise AssertionError("unreachable")

    @_retry
    def get(self, pod_id: str) -> Pod | None:
        answer = self._call("read a pod", self._sdk.get_pod, pod_id)
        if not answer or answer.get("desiredStatus") == "TERMINATED":
            return None
        return self._to_pod(answer)

    def start(self, pod_id: str) -> Pod:
        current = self.get(pod_id)
        gpu_count = current.gpu_count if current else 1
        self._call("resume a pod", self._sdk.resume_pod, pod_id, gpu_count)
        pod = self.get(pod_id)
        if pod is None:
            raise ProviderError(f"pod {pod_id} vanished while resuming")
        return pod

    @_retry
    def stop(self, pod_id: str) -> None:
        self._call("stop a pod", self._sdk.stop_pod, pod_id)

    @_retry
    def terminate(self, pod_id: str) -> None:
        self._call("terminate a pod", self._sdk.terminate_pod, pod_id)

    def connect(self, pod: Pod, *, timeout_s: float, on_wait=None) -> Transport:
        def ssh_ready() -> Pod | None:
            current = self.get(pod.id)
            if current is None:
                raise ProviderError(f"pod {pod.id} was terminated while podtune waited for it")
            if current.state != PodState.RUNNING or current.ssh_port is None:
                return None  # image still pulling: runtime is null, no port yet
            return current if probe_banner(current.ssh_host or "", current.ssh_port) else None

        ready = wait_until(ssh_ready, timeout_s=timeout_s, what=f"pod {pod.id} to accept SSH", on_wait=on_wait,
                           hint="the image may still be pulling; see the pod in the RunPod console")
        key_path, _ = ensure_keypair()
        return SSHTransport(host=ready.ssh_host or "", port=ready.ssh_port or 22, user="root", key_path=key_path,
                            pin_label=pod.id, known_hosts=known_hosts_path()).connect()

    def self_stop_command(self, pod: Pod) -> str | None:
        # Standard library only, run with the image's python: works even if the training venv is broken.
        return f"cd {pod.workspace}/podtune && python3 -m remote selfstop runpod"

    # ---- mapping ------------------------------------------------------------------------------------------
    def _to_pod(self, raw: dict[str, Any]) -> Pod:
        status = raw.get("desiredStatus") or "RUNNING"
        state = {"RUNNING": PodState.RUNNING, "EXITED": PodState.STOPPED, "TERMINATED": PodState.TERMINATED}.get(
            status, PodState.PENDING)
        host = port = None
        for p in ((raw.get("runtime") or {}).get("ports") or []):
            if p.get("privatePort") == 22 and p.get("isIpPublic"):
                host, port = p.get("ip"), p.get("publicPort")
        volume = int(raw.get("volumeInGb") or 0)
        return Pod(
            id=raw["id"], name=raw.get("name") or "", provider=self.name, state=state,
            gpu_type=(raw.get("machine") or {}).get("gpuDisplayName"), gpu_count=int(raw.get("gpuCount") or 1),
            cost_per_hr=float(raw.get("costPerHr") or 0), volume_gb=volume,
            storage_per_hr=volume * STORAGE_USD_PER_GB_MONTH / HOURS_PER_MONTH,
            ssh_host=host, ssh_port=int(port) if port else None, workspace=raw.get("volumeMountPath") or "/workspace",
        )
