"""The pod stops its own billing, as `runpodctl stop pod $RUNPOD_POD_ID` does: works with the laptop gone.

    python -m remote selfstop runpod

Uses the pod-scoped RUNPOD_API_KEY that RunPod puts in every pod's environment; the user's key never
reaches the pod. Standard library only, so it runs even if the training environment is broken.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

# RunPod's GraphQL podStop (what runpodctl sent): the fallback while GraphQL exists (until early 2027).
POD_STOP = 'mutation {{ podStop(input: {{ podId: "{pod_id}" }}) {{ id desiredStatus }} }}'
# Answers that mean "this path will never work": try the other one instead of retrying.
FINAL = (400, 401, 403, 404, 405, 410, 422)


def pod_env(name: str) -> str | None:
    """A variable RunPod sets for the container; non-interactive SSH sessions may lack it, pid 1 never does."""
    if os.environ.get(name):
        return os.environ[name]
    try:
        raw = open("/proc/1/environ", "rb").read()
    except OSError:
        return None
    for item in raw.split(b"\0"):
        key, _, value = item.partition(b"=")
        if key.decode(errors="replace") == name and value:
            return value.decode(errors="replace")
    return None


def _post(url: str, key: str, body: dict, timeout_s: float) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json", "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else {})
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def stop_v2(base: str, pod_id: str, key: str, timeout_s: float) -> tuple[bool, bool]:
    """(stopped, worth retrying). REST v2 /action with the pod's own key; an EXITED pod answers 409: done."""
    status, answer = _post(f"{base}/v2/pods/{pod_id}/action", key, {"action": "stop"}, timeout_s)
    if status in (200, 204):
        return True, False
    if status == 409:  # stop is refused only when the pod is not running (EXITED, ERROR): nothing bills
        return True, False
    print(f"selfstop: v2 /action answered {status}: {answer.get('detail') or answer.get('title') or ''}", flush=True)
    return False, status not in FINAL


def stop_graphql(base: str, pod_id: str, key: str, timeout_s: float) -> tuple[bool, bool]:
    status, answer = _post(f"{base}/graphql", key, {"query": POD_STOP.format(pod_id=pod_id)}, timeout_s)
    if status == 200 and not answer.get("errors"):
        return True, False
    message = (answer.get("errors") or [{}])[0].get("message") if answer.get("errors") else f"HTTP {status}"
    print(f"selfstop: GraphQL podStop refused: {message}", flush=True)
    return False, status not in FINAL


def stop_runpod(attempts: int = 5, timeout_s: float = 30) -> bool:
    pod_id = pod_env("RUNPOD_POD_ID")
    key = pod_env("RUNPOD_API_KEY")
    if not pod_id or not key:
        print("selfstop: RUNPOD_POD_ID or RUNPOD_API_KEY missing from the pod's environment", flush=True)
        return False
    base = (pod_env("RUNPOD_API_BASE_URL") or "https://api.runpod.io").rstrip("/")
    paths = [("v2 /action", stop_v2), ("GraphQL podStop", stop_graphql)]
    for attempt in range(attempts):
        for label, stop in list(paths):
            try:
                stopped, again = stop(base, pod_id, key, timeout_s)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                print(f"selfstop: {label} attempt {attempt + 1} failed: {exc.__class__.__name__}", flush=True)
                continue
            if stopped:
                # The watchdog reads this line into the run's status: the report says which path stopped the pod.
                print(f"selfstop: stopped {pod_id} via {label}", flush=True)
                return True
            if not again:
                paths.remove((label, stop))
        if not paths:
            return False
        time.sleep(min(2 ** attempt, 20))
    return False


def main(provider: str) -> int:
    if provider == "runpod":
        return 0 if stop_runpod() else 1
    print(f"selfstop: provider {provider!r} has nothing to stop", flush=True)
    return 0
