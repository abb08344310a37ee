"""The Provider contract: every place podtune can rent or use a machine speaks this, nothing more.

The phase machine (run.py) never branches on a provider's name; whatever differs lives behind these methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from remote.recipe import Recipe

    from ..doctor import Check
    from ..pod.transport import Transport


class PodState(str, Enum):
    PENDING = "PENDING"  # asked for, not yet running (image pulling, runtime null)
    RUNNING = "RUNNING"
    STOPPED = "EXITED"  # RunPod's word: GPU released, volume kept and billed
    ERROR = "ERROR"  # the container could not start (bad image...): it may be started again or terminated
    TERMINATED = "TERMINATED"


@dataclass(frozen=True)
class GpuOffer:
    gpu_type: str  # provider id, e.g. "NVIDIA GeForce RTX 3090"
    display_name: str
    memory_gb: float
    usd_per_hour: float  # per GPU, in the cloud asked for
    available: bool = True
    cloud: str = ""  # which tier the price and stock are for (RunPod: secure | community)
    prices: tuple[tuple[str, float], ...] = ()  # per-GPU price in every tier the provider lists, for the plan
    stock: str = ""  # the provider's own word for how many are free (RunPod: NONE | LOW | MEDIUM | HIGH)


@dataclass(frozen=True)
class BilledAmount:
    """What the provider itself billed for a pod over a window (to reconcile podtune's own meter)."""

    usd: float
    gpu_usd: float
    storage_usd: float
    start: float
    end: float


@dataclass(frozen=True)
class PodSpec:
    name: str  # podtune-<recipe-name>: how an existing pod is found again (create is never blindly retried)
    recipe_name: str
    gpu_types: tuple[str, ...]
    gpu_count: int
    volume_gb: int
    container_disk_gb: int
    image: str
    public_key: str  # podtune's SSH public key; RunPod images append PUBLIC_KEY to authorized_keys
    cloud: str = "secure"  # secure: the provider's own datacenters; community: third-party hosts


@dataclass(frozen=True)
class Pod:
    id: str
    name: str
    provider: str
    state: PodState
    gpu_type: str | None = None
    gpu_count: int = 1
    cost_per_hr: float = 0.0  # GPU price, per hour, for the whole pod
    storage_per_hr: float = 0.0  # what the volume costs per hour, running or stopped
    volume_gb: int = 0
    ssh_host: str | None = None
    ssh_port: int | None = None
    workspace: str = "/workspace"
    python: str = "python3"  # the pod image's interpreter
    status: str = ""  # the provider's own status word, for messages
    actions: tuple[str, ...] = ()  # what the provider allows now (RunPod: start, stop, restart, terminate)


class Provider(Protocol):
    """What a provider is and needs is declared here, on its class, so nothing outside providers/ asks its name."""

    name: str
    rents: bool  # it lends a machine that bills (`run` asks first); False: the user's own machine
    storage_usd_per_gb_month: float  # what a volume costs while it exists, running or stopped
    runs_on_this_machine: bool  # the pod is this machine: its files (the merged model) are paths here

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> Provider:
        """The provider for this recipe (its host, the user's API key...); ConfigError when something is missing."""
        ...

    @classmethod
    def missing_credentials(cls, recipe: Recipe) -> list[tuple[str, str]]:
        """(what is missing, how to provide it) for each credential a run on this provider needs and cannot find."""
        ...

    @classmethod
    def doctor_checks(cls, recipe: Recipe | None) -> list[Check]:
        """`podtune doctor`'s rows for this provider; `recipe` is given when it trains here (its needs are required)."""
        ...

    @classmethod
    def starter_compute(cls, gpu: str | None) -> list[tuple[str, Any]]:
        """The compute fields `podtune init` writes for this provider, beyond `provider` and the time limits."""
        ...

    def calibration(self, say: Callable[[str], None] | None = None) -> dict[str, Any] | None:
        """This machine's measured CPU speed when the pod is this machine (orchestrator/planning/calibrate.py); else None."""
        ...

    def offers(self, gpu_count: int = 1, cloud: str = "secure") -> list[GpuOffer]:
        """GPU types with their current price and whether one is free now (from the catalog, not by trying)."""
        ...

    def find(self, name: str) -> Pod | None:
        """The non-terminated pod with this name, if any (looked up before every create)."""
        ...

    def create(self, spec: PodSpec) -> Pod:
        """Rent a pod: the first of spec.gpu_types that is free. CapacityError lists what is free instead."""
        ...

    def get(self, pod_id: str) -> Pod | None:
        """The pod as the provider sees it now; None when it no longer exists."""
        ...

    def start(self, pod_id: str) -> Pod:
        """Resume a stopped pod (same volume). CapacityError when its host has no free GPU."""
        ...

    def stop(self, pod_id: str) -> None:
        """Stop GPU billing; keep the volume."""
        ...

    def terminate(self, pod_id: str) -> None:
        """Delete the pod and its volume."""
        ...

    def connect(self, pod: Pod, *, timeout_s: float, on_wait: object = None) -> Transport:
        """Wait until the pod answers (RUNNING, port published, SSH handshake) and return a transport to it."""
        ...

    def self_stop_command(self, pod: Pod) -> str | None:
        """Shell command the pod runs to stop its own billing when the laptop is gone (None: nothing to stop)."""
        ...

    def billed(self, pod_id: str, start: float, end: float) -> BilledAmount | None:
        """The provider's own bill for the pod in [start, end) (None: it keeps none, or none yet)."""
        ...


class OwnMachine:
    """A machine that is always up and is the user's own (local, ssh): nothing to rent, resume, stop or delete.

    Subclasses give `name`, `_pod(name)`, `offers`, `connect`, and what they need: `from_recipe`,
    `missing_credentials`, `doctor_checks`."""

    name: str
    rents = False  # the user's own machine: nothing rented, nothing to ask before
    storage_usd_per_gb_month = 0.0
    runs_on_this_machine = False

    @classmethod
    def starter_compute(cls, gpu: str | None) -> list[tuple[str, Any]]:
        return []

    def calibration(self, say: Callable[[str], None] | None = None) -> dict[str, Any] | None:
        return None

    def _pod(self, name: str = "") -> Pod:
        raise NotImplementedError

    def find(self, name: str) -> Pod | None:
        return self._pod(name)

    def create(self, spec: PodSpec) -> Pod:
        return self._pod(spec.name)

    def get(self, pod_id: str) -> Pod | None:
        return self._pod()

    def start(self, pod_id: str) -> Pod:
        return self._pod()

    def stop(self, pod_id: str) -> None:
        """Nothing bills through podtune: the run's processes are stopped by the phase machine, the machine stays."""

    def terminate(self, pod_id: str) -> None:
        """Nothing podtune rented, so nothing to delete."""

    def self_stop_command(self, pod: Pod) -> str | None:
        return None

    def billed(self, pod_id: str, start: float, end: float) -> BilledAmount | None:
        return None
