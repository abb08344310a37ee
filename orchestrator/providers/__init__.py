"""Provider registry: an explicit name -> factory map (SDKs are imported only when their provider is used)."""

from __future__ import annotations

from collections.abc import Callable

from remote.recipe import Recipe

from ..errors import ConfigError
from .base import BilledAmount, GpuOffer, Pod, PodSpec, PodState, Provider


def _local(recipe: Recipe) -> Provider:
    from .local import LocalProvider

    return LocalProvider()


def _runpod(recipe: Recipe) -> Provider:
    from .runpod import RunPodProvider

    return RunPodProvider.from_environment()


def _ssh(recipe: Recipe) -> Provider:
    from .ssh import SSHProvider

    if recipe.compute.ssh is None:
        raise ConfigError("provider `ssh` needs compute.ssh in the recipe", "add compute.ssh: {host: ..., key_path: ...}")
    return SSHProvider(recipe.compute.ssh)


PROVIDERS: dict[str, Callable[[Recipe], Provider]] = {"local": _local, "runpod": _runpod, "ssh": _ssh}


def billing_provider(name: str) -> Provider | None:
    """A provider that keeps its own bill, built from the environment alone (for `costs --reconcile`)."""
    if name != "runpod":
        return None  # local and ssh machines are the user's own: nothing billed through podtune
    from .runpod import RunPodProvider

    return RunPodProvider.from_environment()


def get_provider(name: str, recipe: Recipe) -> Provider:
    try:
        factory = PROVIDERS[name]
    except KeyError:
        raise ConfigError(f"unknown provider {name!r}", f"use one of: {', '.join(PROVIDERS)}") from None
    return factory(recipe)


__all__ = ["BilledAmount", "GpuOffer", "Pod", "PodSpec", "PodState", "Provider", "PROVIDERS", "billing_provider", "get_provider"]
