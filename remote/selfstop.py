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

# The same document the runpod SDK sends for stop_pod (runpod/api/mutations/pods.py).
POD_STOP = 'mutation {{ podStop(input: {{ podId: "{pod_id}" }}) {{ id desiredStatus }} }}'


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


def stop_runpod(attempts: int = 5, timeout_s: float = 30) -> bool:
    pod_id = pod_env("RUNPOD_POD_ID")
    key = pod_env("RUNPOD_API_KEY")
    if not pod_id or not key:
        print("selfstop: RUNPOD_POD_ID or RUNPOD_API_KEY missing from the pod's environment", flush=True)
        return False
    base = pod_env("RUNPOD_API_BASE_URL") or "https://api.runpod.io"
    body = json.dumps({"query": POD_STOP.format(pod_id=pod_id)}).encode()
    for attempt in range(attempts):
        request = urllib.request.Request(
            f"{base}/graphql", data=body, method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                answer = json.loads(response.read() or b"{}")
            if not answer.get("errors"):
                print(f"selfstop: podStop accepted for {pod_id}", flush=True)
                return True
            print(f"selfstop: podStop refused: {answer['errors'][0].get('message')}", flush=True)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            print(f"selfstop: attempt {attempt + 1} failed: {exc.__class__.__name__}", flush=True)
        time.sleep(min(2 ** attempt, 20))
    return False


def main(provider: str) -> int:
    if provider == "runpod":
        return 0 if stop_runpod() else 1
    print(f"selfstop: provider {provider!r} has nothing to stop", flush=True)
    return 0
