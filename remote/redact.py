"""Masks secrets in any text that leaves a process (logs, events, reports). Standard library only."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"
# Shapes of tokens podtune handles, masked even when the exact value is unknown to this process.
TOKEN_PATTERNS = (
    re.compile(r"hf_[A-Za-z0-9]{20,}"),
    re.compile(r"rpa_[A-Za-z0-9]{16,}"),
    re.compile(r"(?i)(authorization:\s*bearer\s+)[^\s'\"]+"),
)


class Redactor:
    def __init__(self, secrets: Iterable[str | None] = ()):
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 6 and secret not in self.secrets:
            self.secrets = sorted([*self.secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        for pattern in TOKEN_PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
        return text


class RedactingStream:
    """Wraps stdout/stderr so nothing a library prints can carry a secret into train.log."""

    def __init__(self, stream, redactor: Redactor):
        self._stream = stream
        self._redact = redactor

    def write(self, text: str) -> int:
        self._stream.write(self._redact(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def point_log_handlers(old, new) -> None:
    """Handlers a library set up before the streams were wrapped (transformers makes its own at import, and a warm
    start, remote/warm.py, imports it ahead of the job) hold the bare stream: they write through `new` instead."""
    loggers = [logging.getLogger(), *(found for found in logging.Logger.manager.loggerDict.values()
                                       if isinstance(found, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)
