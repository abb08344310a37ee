"""Bounded retries (exponential backoff + jitter) and request timeouts for Hub calls; stdlib + huggingface_hub only.

huggingface_hub retries preupload, LFS and tree listings itself, but sends whoami, create_repo, validate-yaml,
commit, model_info and auth_check once. Both the pod (push) and the laptop (plan's access checks) wrap those
here. Not tenacity: the pod's Python gets only remote/requirements.py, and this is the whole policy.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
ATTEMPTS = 5
BASE_DELAY_S = float(os.environ.get("PODTUNE_HUB_RETRY_BASE_S") or 1.0)
MAX_DELAY_S = 30.0
MAX_RETRY_AFTER_S = 120.0  # a Hub asking for longer than this is down; give up and let `podtune push` retry later
# Seconds a request may wait for the server (the client's own default is to wait forever).
READ_TIMEOUT_S = float(os.environ.get("PODTUNE_HUB_TIMEOUT_S") or 300.0)
CONNECT_TIMEOUT_S = 30.0


def status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_transient(exc: BaseException) -> bool:
    """A 5xx/408/429, a timeout or a dropped connection, possibly wrapped (LFS failures arrive as RuntimeError)."""
    try:
        import httpx2

        network: tuple[type[BaseException], ...] = (
            httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)
    except ImportError:  # pragma: no cover - huggingface_hub 2.x always brings httpx2
        network = ()
    for err in causes(exc):
        status = status_of(err)
        if status is not None:
            return status in TRANSIENT_STATUS
        if type(err).__name__ == "OfflineModeIsEnabled":  # a setting, not a network problem
            return False
        if isinstance(err, network) or isinstance(err, (ConnectionError, TimeoutError)):
            return True
    return False


def retry_after_s(exc: BaseException) -> float | None:
    for err in causes(exc):
        headers = getattr(getattr(err, "response", None), "headers", None)
        value = headers.get("Retry-After") if headers is not None else None
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def delay_for(attempt: int, exc: BaseException | None = None) -> float:
    """Exponential backoff with jitter (so many pods do not retry in step); honours Retry-After."""
    backoff = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (attempt - 1))
    delay = backoff * (0.5 + random.random() / 2)
    asked = retry_after_s(exc) if exc is not None else None
    return min(MAX_RETRY_AFTER_S, max(delay, asked)) if asked is not None else delay


def call(fn: Callable[[], T], *, attempts: int = ATTEMPTS,
         on_retry: Callable[[int, BaseException, float], None] | None = None,
         already_done: Callable[[], T | None] | None = None) -> T:
    """fn() until it succeeds, a permanent error, or `attempts` tries.

    `already_done` runs before every re-try: a request whose answer was lost may have taken effect (a commit),
    and a non-None result is returned instead of sending it again."""
    for attempt in range(1, attempts + 1):
        if attempt > 1 and already_done is not None:
            done = already_done()
            if done is not None:
                return done
        try:
            return fn()
        except Exception as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
            delay = delay_for(attempt, exc)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def describe(exc: BaseException, limit: int = 300) -> str:
    """One line about an error: its type, HTTP status and first line (callers redact it)."""
    status = next((s for s in map(status_of, causes(exc)) if s is not None), None)
    root = next((e for e in causes(exc) if status_of(e) is not None), exc)
    first = (str(root).strip().splitlines() or [""])[0]
    text = f"{type(root).__name__}" + (f" (HTTP {status})" if status else "") + (f": {first}" if first else "")
    return text[:limit]


@contextmanager
def request_timeouts(read_s: float | None = None) -> Iterator[None]:
    """Give huggingface_hub's shared HTTP client timeouts for the duration, then put its factory back."""
    try:
        import httpx2
        from huggingface_hub import set_client_factory
        from huggingface_hub.utils import _http

        previous: Any = getattr(_http, "_GLOBAL_CLIENT_FACTORY", _http.default_client_factory)
    except (ImportError, AttributeError):  # another client version: run without, rather than not at all
        yield
        return
    timeout = httpx2.Timeout(read_s or READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)

    def factory():
        client = previous()
        client.timeout = timeout
        return client

    set_client_factory(factory)
    try:
        yield
    finally:
        set_client_factory(previous)
