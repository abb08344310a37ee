"""Provider registry: an explicit name -> class map (a provider's module is imported only when it is used).

A provider is one class: what it needs and how it differs (credentials, doctor checks, the starter recipe's compute
fields, whether it rents or runs on this machine) is declared on it (base.py), so adding one is adding a class here.
"""

from __future__ import annotations

from collections.abc import Callable

from remote.recipe import Recipe

from ..errors import ConfigError
from .base import BilledAmount, GpuOffer, Pod, PodSpec, PodState, Provider


def _local() -> type[Provider]:
    from .local import LocalProvider

    return LocalProvider


def _runpod() -> type[Provider]:
    from .runpod import RunPodProvider

    return RunPodProvider


def _ssh() -> type[Provider]:
    from .ssh import SSHProvider

    return SSHProvider


PROVIDERS: dict[str, Callable[[], type[Provider]]] = {"local": _local, "runpod": _runpod, "ssh": _ssh}


def provider_class(name: str) -> type[Provider]:
    """The class of the provider called `name` (a recipe's compute.provider, a --provider flag, a stored run's)."""
    try:
        load = PROVIDERS[name]
    except KeyError:
        raise ConfigError(f"unknown provider {name!r}", f"use one of: {', '.join(PROVIDERS)}") from None
    return load()


def billing_provider(name: str) -> Provider | None:
    """A provider that keeps its own bill, built from the environment alone (for `costs --reconcile`)."""
    if name != "runpod":
        return None  # local and ssh machines are the user's own: nothing billed through podtune
    from .runpod import RunPodProvider

    return RunPodProvider.from_environment()


def get_provider(name: str, recipe: Recipe) -> Provider:
    return provider_class(name).from_recipe(recipe)


__all__ = ["BilledAmount", "GpuOffer", "Pod", "PodSpec", "PodState", "Provider", "PROVIDERS", "billing_provider",
           "get_provider", "provider_class"]
