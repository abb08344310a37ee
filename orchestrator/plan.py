"""The plan phase: before anything is rented, decide the GPU and check the Hub; refuse what cannot work."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from remote.recipe import Recipe

from .errors import CapacityError, HubError
from .providers import GpuOffer, Provider

CONFIRM_ABOVE_USD = 5.0


@dataclass
class Plan:
    recipe: str
    provider: str
    gpu_types: tuple[str, ...]  # the ones to try, in order
    gpu_type: str
    usd_per_hour: float
    started_at: float = field(default_factory=time.time)
    estimate: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def estimated_usd(self) -> float:
        return float(self.estimate.get("total_usd", 0.0))

    @property
    def needs_confirmation(self) -> bool:
        return self.estimated_usd > CONFIRM_ABOVE_USD

    def confirmation_question(self) -> str:
        return f"This run is estimated at ${self.estimated_usd:.2f}. Rent the pod?"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_gpus(recipe: Recipe, offers: list[GpuOffer]) -> list[GpuOffer]:
    """The recipe's GPU types in its order that are free now; with none named, every free one, cheapest first."""
    by_id = {o.gpu_type: o for o in offers}
    if recipe.compute.gpu_types:
        wanted = [by_id[g] for g in recipe.compute.gpu_types if g in by_id]
    else:
        wanted = sorted(offers, key=lambda o: o.usd_per_hour)
    free = [o for o in wanted if o.available]
    if not free:
        others = sorted((o for o in offers if o.available), key=lambda o: o.usd_per_hour)[:8]
        listing = "; ".join(f"{o.gpu_type} ({o.memory_gb:.0f} GB) ${o.usd_per_hour:.2f}/h" for o in others) or "none"
        raise CapacityError(
            f"none of compute.gpu_types {list(recipe.compute.gpu_types)} is free right now",
            f"free now: {listing}. Add one of them to compute.gpu_types, or try again later.",
        )
    return free


def check_hub(recipe: Recipe, token: str | None) -> list[str]:
    if not recipe.output.hub_repo and recipe.model.is_builtin:
        return []
    if recipe.output.hub_repo and not token:
        raise HubError(
            f"output.hub_repo is {recipe.output.hub_repo} but no Hub token was found",
            "set HF_TOKEN or run `hf auth login` (a write token), or set output.hub_repo: null",
        )
    from .hub import check_access

    return check_access(recipe, token)


def make_plan(recipe: Recipe, provider: Provider, *, data_files: list[Path], token: str | None) -> Plan:
    notes = check_hub(recipe, token)
    offers = choose_gpus(recipe, provider.offers(recipe.compute.gpu_count))
    chosen = offers[0]
    return Plan(
        recipe=recipe.name, provider=provider.name, gpu_types=tuple(o.gpu_type for o in offers),
        gpu_type=chosen.gpu_type, usd_per_hour=chosen.usd_per_hour * recipe.compute.gpu_count, notes=notes,
    )
