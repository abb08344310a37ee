"""A small typed client for RunPod's REST v2 API (https://api.runpod.io/v2), the part podtune needs.

Why our own client and not `runpod` 2.0.0rc2: that release is a pre-release, its create_pod sends fields the
published OpenAPI document forbids (gpu.minRamPerGpu / minVcpuCountPerGpu, answered 422), and it defaults the
mount path to /runpod-volume and the container disk to 10 GB. Nine endpoints on httpx are less to trust than that.

Every HTTP detail lives here: auth, problem+json errors, Retry-After, which calls may be retried. Only
idempotent calls (GET, an action, DELETE) are retried; create is sent once: the caller looks the pod up by
name after any unclear answer, so a user is never billed for a pod podtune does not know.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import RetryCallState, retry, retry_if_exception, stop_after_attempt

DEFAULT_BASE_URL = "https://api.runpod.io"
TIMEOUT_S = 30.0
RETRY_ATTEMPTS = 4
MAX_RETRY_WAIT_S = 30.0


@dataclass(frozen=True)
class ApiError(Exception):
    """An answer that is not a success, in RunPod's problem+json terms (or a transport failure: status 0)."""

    status: int
    title: str
    detail: str
    errors: tuple[str, ...] = ()
    retry_after_s: float | None = None

    def __str__(self) -> str:
        extra = f" ({'; '.join(self.errors)})" if self.errors else ""
        return f"{self.status} {self.title}: {self.detail}{extra}"

    @property
    def transient(self) -> bool:
        """Worth asking again: no answer, rate limited, or a server-side failure, whatever its body."""
        return self.status == 0 or self.status == 429 or self.status >= 500

    @property
    def no_capacity(self) -> bool:
        text = f"{self.detail} {' '.join(self.errors)}".lower()
        return self.status == 400 and ("no longer any instances" in text or "not enough free gpus" in text)


def _wait(state: RetryCallState) -> float:
    """Retry-After when RunPod gives one, else 0.5, 1, 2 s..."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, ApiError) and exc.retry_after_s is not None:
        return min(exc.retry_after_s, MAX_RETRY_WAIT_S)
    return min(0.5 * 2 ** (state.attempt_number - 1), 8.0)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.transient


idempotent = retry(retry=retry_if_exception(_transient), stop=stop_after_attempt(RETRY_ATTEMPTS), wait=_wait,
                   reraise=True)


def _problem(response: httpx.Response) -> ApiError:
    retry_after = response.headers.get("Retry-After")
    try:
        wait = float(retry_after) if retry_after is not None else None
    except ValueError:  # an HTTP date: rare; fall back to our own backoff
        wait = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "title" in body:
        errors = tuple(str(e) for e in body.get("errors") or ())
        return ApiError(response.status_code, str(body.get("title")), str(body.get("detail") or ""), errors, wait)
    # A proxy's HTML page or an empty body: only the status says anything.
    return ApiError(response.status_code, response.reason_phrase or "error",
                    f"HTTP {response.status_code} without a problem+json body", (), wait)


class RunPodApi:
    """The REST v2 endpoints podtune uses. Methods return the documented JSON; errors raise ApiError."""

    def __init__(self, api_key: str, base_url: str | None = None, timeout_s: float = TIMEOUT_S):
        base = (base_url or os.environ.get("RUNPOD_API_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self._client = httpx.Client(base_url=base, timeout=timeout_s, headers={
            "Authorization": f"Bearer {api_key}", "Accept": "application/json", "User-Agent": "podtune"})

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, *, json: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self._client.request(method, path, json=json, params=params)
        except httpx.TimeoutException as exc:
            raise ApiError(0, "no answer", f"RunPod did not answer within {TIMEOUT_S:g} s ({exc.__class__.__name__})")
        except httpx.TransportError as exc:
            raise ApiError(0, "no connection", f"could not reach RunPod ({exc.__class__.__name__})")
        if response.status_code >= 400:
            raise _problem(response)
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ApiError(response.status_code, "bad answer", "RunPod answered with something that is not JSON")

    # ---- pods ---------------------------------------------------------------------------------------------
    @idempotent
    def list_pods(self) -> list[dict[str, Any]]:
        return list(self._json(self._request("GET", "/v2/pods")).get("pods") or [])

    @idempotent
    def get_pod(self, pod_id: str) -> dict[str, Any] | None:
        try:
            return dict(self._json(self._request("GET", f"/v2/pods/{pod_id}")))
        except ApiError as exc:
            if exc.status == 404:  # terminated pods are gone, never shown as TERMINATED
                return None
            raise

    def create_pod(self, body: dict[str, Any]) -> dict[str, Any]:
        """Sent once, never retried here (see the module docstring)."""
        return dict(self._json(self._request("POST", "/v2/pods", json=body)))

    @idempotent
    def pod_action(self, pod_id: str, action: str) -> dict[str, Any] | None:
        """start | stop | restart | terminate. The document allows 200 with the pod or 204 without a body."""
        response = self._request("POST", f"/v2/pods/{pod_id}/action", json={"action": action})
        return dict(self._json(response)) if response.status_code == 200 and response.content else None

    @idempotent
    def delete_pod(self, pod_id: str) -> None:
        try:
            self._request("DELETE", f"/v2/pods/{pod_id}")
        except ApiError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise

    # ---- catalog and billing ------------------------------------------------------------------------------
    @idempotent
    def list_gpus(self, *, count: int, cloud: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"include": "AVAILABILITY", "product": "POD", "count": count}
        if cloud:
            params["cloud"] = cloud
        return list(self._json(self._request("GET", "/v2/catalog/gpus", params=params)).get("gpus") or [])

    @idempotent
    def pod_billing(self, pod_id: str, *, start: str, end: str) -> list[dict[str, Any]]:
        params = {"podId": pod_id, "bucketSize": "hour", "startTime": start, "endTime": end}
        return list(self._json(self._request("GET", "/v2/billing/pods", params=params)).get("records") or [])

