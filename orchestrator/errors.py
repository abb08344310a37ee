"""The one family of errors a person sees: what happened, and what to do next."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    USER = 1  # a flag, a missing token, a run that does not exist
    CONFIG = 2  # a recipe that does not validate
    REMOTE_FAILED = 3  # the job on the pod failed
    CAPACITY = 4  # no GPU of the wanted kind is free
    INTERRUPTED = 130


class PodtuneError(Exception):
    exit_code = ExitCode.USER

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(PodtuneError):
    exit_code = ExitCode.CONFIG


class ProviderError(PodtuneError):
    def __init__(self, message: str, hint: str | None = None, *, retryable: bool = False):
        super().__init__(message, hint)
        self.retryable = retryable


class CapacityError(ProviderError):
    exit_code = ExitCode.CAPACITY


class SSHError(PodtuneError):
    pass


class RemoteJobError(PodtuneError):
    exit_code = ExitCode.REMOTE_FAILED

    def __init__(self, message: str, hint: str | None = None, *, log_tail: str = ""):
        super().__init__(message, hint)
        self.log_tail = log_tail


class HubError(PodtuneError):
    pass


class BudgetError(PodtuneError):
    pass


class PodGone(PodtuneError):
    """The run's pod no longer exists (terminated from outside, or by the provider): its volume went with it."""


class PodStopped(PodtuneError):
    """The pod is no longer running (it stopped itself, or someone stopped it) while podtune followed it."""
