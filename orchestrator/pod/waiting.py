"""One way to wait: poll a check until it answers, with backoff and a hard deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import PodtuneError

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], *, timeout_s: float, what: str, hint: str | None = None,
               on_wait: Callable[[str, float], None] | None = None, first_delay_s: float = 0.5,
               max_delay_s: float = 5.0) -> T:
    """Call `check` until it returns something other than None; raise PodtuneError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    delay = first_delay_s
    last_report = 0.0
    while True:
        result = check()
        if result is not None:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PodtuneError(f"timed out after {timeout_s:.0f}s waiting for {what}", hint)
        if on_wait and time.monotonic() - last_report >= 10:
            last_report = time.monotonic()
            on_wait(what, remaining)
        time.sleep(min(delay, max(remaining, 0.05)))
        delay = min(delay * 1.5, max_delay_s)
