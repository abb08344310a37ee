"""The plan phase: before renting, check the Hub, estimate memory, time and $, pick the GPU; refuse what cannot work."""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from remote.recipe import Recipe
from remote.requirements import extras, for_recipe

from . import catalog, estimate
from ..errors import BudgetError, CapacityError, ConfigError, HubError
from .estimate import OfferEstimate
from ..providers import GpuOffer, Provider

TIGHT_BUDGET_SHARE = 0.8  # an estimate above this share of max_usd gets a warning: estimates are +-50%


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
    rents: bool = True  # the provider bills for a machine it lends (not the user's own machine)
    uploads: list[str] = field(default_factory=list)  # every laptop file beyond podtune's own code that goes to the pod

    @property
    def estimated_usd(self) -> float:
        return float(self.estimate.get("total_usd", 0.0))

    @property
    def needs_confirmation(self) -> bool:
        """Renting is always asked about, whatever the amount: a person must see the price before any bill starts."""
        return self.rents

    def confirmation_question(self) -> str:
        hours = self.estimate.get("hours")
        took = f" for about {hours:.1f} h" if isinstance(hours, (int, float)) else ""
        count = self.estimate.get("gpu_count") or 1
        return (f"Rent {count}x {self.gpu_type} for ${self.usd_per_hour:.3f}/h{took}, about ${self.estimated_usd:.2f} "
                f"in all (estimates are +-50%; the pod stops itself at compute.max_hours / max_usd)?")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_gpu_names(recipe: Recipe, offers: list[GpuOffer], provider_name: str) -> None:
    """A gpu_types entry the provider does not know is a typo (or a display name), not a busy GPU: say so."""
    ids = {o.gpu_type for o in offers}
    by_name = {o.display_name.lower(): o.gpu_type for o in offers}
    for wanted in recipe.compute.gpu_types:
        if wanted in ids:
            continue
        exact = by_name.get(wanted.lower())
        close = [exact] if exact else difflib.get_close_matches(wanted, sorted(ids), n=3, cutoff=0.5)
        if not close:  # "3090": match on display names too
            names = difflib.get_close_matches(wanted.lower(), sorted(by_name), n=3, cutoff=0.4)
            close = [by_name[n] for n in names]
        suggestion = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else (
            f"known ids: {', '.join(sorted(ids)[:12])}")
        raise ConfigError(
            f"compute.gpu_types: {wanted!r} is not a GPU type id of provider {provider_name}",
            f"{suggestion} (ids are what `podtune plan` lists; display names such as 'RTX 3090' are not ids)",
        )


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
    if not recipe.output.hub_repo and recipe.model.is_builtin and recipe.dataset.is_local:
        return []
    if recipe.output.hub_repo and not token:
        raise HubError(
            f"output.hub_repo is {recipe.output.hub_repo} but no Hub token was found",
            "set HF_TOKEN or run `hf auth login` (a write token), or set output.hub_repo: null",
        )
    from .hub import check_access

    return check_access(recipe, token)


def make_plan(recipe: Recipe, provider: Provider, *, data_files: list[Path], token: str | None,
              say: Callable[[str], None] | None = None) -> Plan:
    started = time.time()  # the plan phase counts its own Hub and price look-ups (and a CPU probe)
    notes = check_hub(recipe, token)
    offers = provider.offers(recipe.compute.gpu_count, recipe.compute.cloud)
    check_gpu_names(recipe, offers, provider.name)
    # A provider whose machine is this one measures its CPU instead of trusting the table (orchestrator/planning/calibrate.py).
    plan = build_plan(recipe, provider.name, offers, data_files=data_files, notes=notes,
                      storage_usd_per_gb_month=provider.storage_usd_per_gb_month, rents=provider.rents,
                      on_this_machine=provider.runs_on_this_machine, calibration=provider.calibration(say=say))
    plan.started_at = started
    return plan


def build_plan(recipe: Recipe, provider_name: str, offers: list[GpuOffer], *, data_files: list[Path],
               notes: list[str] | None = None, storage_usd_per_gb_month: float = 0.0, rents: bool = True,
               on_this_machine: bool = False, calibration: dict[str, Any] | None = None) -> Plan:
    """The plan for these offers: fitting GPUs only, cheapest estimated total first unless the recipe orders them.

    `rents`, `on_this_machine` and `storage_usd_per_gb_month` are what the provider declares (providers/base.py)."""
    c = recipe.compute
    notes = list(notes or [])
    model = catalog.model_info(recipe.model.base)
    work = estimate.work(recipe, model, data_files)
    if rents:  # only a rented pod has a volume of compute.volume_gb
        _check_volume(recipe, estimate.volume(recipe, model))
    mem = estimate.memory(recipe, model, work.vram_seq_len)
    need = mem.total_gb
    fitting = _fitting(recipe, offers, need)
    free = choose_gpus(recipe, fitting)
    storage_per_hour = c.volume_gb * storage_usd_per_gb_month / catalog.transfer(False)["hours_per_month"]
    options = [estimate.for_offer(recipe, o, model, work, on_this_machine=on_this_machine,
                                  storage_usd_per_hour=storage_per_hour, calibration=calibration) for o in free]
    if not c.gpu_types:
        options.sort(key=lambda e: e.total_usd)  # cheapest in total, not per hour: a faster GPU can cost less
    within = [e for e in options if c.max_usd is None or e.total_usd <= c.max_usd]
    if not within:
        _refuse(recipe, min(options, key=lambda e: e.total_usd))
    chosen = within[0]
    notes += [n for n in (model.note, *work.notes) if n]
    notes += _warnings(recipe, chosen, [e for e in options if e not in within])
    per_gpu = chosen.memory_gb > 0
    by_strategy = estimate.strategy_memory(recipe, model, work.vram_seq_len) if c.gpu_count > 1 else {}
    lines = [estimate.memory_summary(mem, per_gpu), *[f"  {line}" for line in mem.lines],
             *_strategy_lines(recipe, by_strategy), _fit_line(within, offers, need, chosen),
             *_cloud_lines(c.cloud, offers, chosen), *work.lines, *estimate.describe(chosen, c.gpu_count),
             _packages_line(recipe)]
    est = {
        **chosen.to_json(), "gpu_count": c.gpu_count, "vram_gb": round(need, 2), "tokens": round(work.tokens),
        "seq_len": work.seq_len, "model_size": model.size, "lines": lines, "requirements": list(for_recipe(recipe)),
        "vram_gb_per_gpu_by_strategy": {k: round(v, 2) for k, v in by_strategy.items()},
        "memory": {"weights_gb": round(mem.weights_gb, 3), "lora_gb": round(mem.lora_gb, 3),
                   "activations_gb": round(mem.activations_gb, 3), "logits_gb": round(mem.logits_gb, 3),
                   "overhead_gb": mem.overhead_gb},
        "options": [{"gpu_type": e.gpu_type, "memory_gb": e.memory_gb, "usd_per_hour": e.usd_per_hour,
                     "hours": e.hours, "total_usd": e.total_usd} for e in options],
    }
    return Plan(recipe=recipe.name, provider=provider_name, gpu_types=tuple(e.gpu_type for e in within),
                gpu_type=chosen.gpu_type, usd_per_hour=chosen.usd_per_hour, estimate=est, notes=notes,
                rents=rents, uploads=[str(p) for p in data_files])


def _strategy_lines(recipe: Recipe, needs: dict[str, float]) -> list[str]:
    """With several GPUs: the per-GPU need under each strategy, the recipe's marked."""
    if not needs:
        return []
    how = {"ddp": "replicates weights, gradients and optimizer state",
           "deepspeed_zero3": "shards weights, gradients and optimizer state"}
    mine = recipe.training.distributed
    shown = " · ".join(f"{name} {gb:.1f} GB ({how.get(name, 'per GPU')})"
                       + (" ← this recipe" if name == mine else "") for name, gb in needs.items())
    return [f"per GPU of {recipe.compute.gpu_count} by strategy: {shown}"]


def _packages_line(recipe: Recipe) -> str:
    """What setup installs on the pod (only what its image lacks), naming what this recipe adds to the base set."""
    added = extras(for_recipe(recipe))
    return (f"packages on the pod: {', '.join(for_recipe(recipe))}"
            + (f" (this recipe adds {', '.join(added)})" if added else "")
            + "; setup installs those the image lacks into a venv on the volume")


def _fitting(recipe: Recipe, offers: list[GpuOffer], need: float) -> list[GpuOffer]:
    fitting = [o for o in offers if estimate.fits(o, need)]
    named = [o for o in offers if o.gpu_type in recipe.compute.gpu_types]
    if (named and not any(o in fitting for o in named)) or (offers and not fitting):
        bigger = sorted((o for o in fitting if o.available), key=lambda o: o.usd_per_hour)[:5]
        listing = "; ".join(f"{o.gpu_type} ({o.memory_gb:.0f} GB, ${o.usd_per_hour:.2f}/h)" for o in bigger)
        too_small = ", ".join(f"{o.gpu_type} ({o.memory_gb:.0f} GB)" for o in (named or offers))
        raise ConfigError(
            f"this run needs about {need:.1f} GB of GPU memory; {too_small} cannot hold it",
            (f"put a larger GPU in compute.gpu_types: {listing}" if listing else "no offered GPU is large enough")
            + "; or lower training.batch_size / training.max_seq_length, or turn on gradient_checkpointing",
        )
    return fitting


def _check_volume(recipe: Recipe, vol: estimate.Volume) -> None:
    """A volume that fills up fails the run late (at the merge, after the GPU hours are spent): refuse it now."""
    have = recipe.compute.volume_gb
    if vol.need_gb > have:
        raise ConfigError(
            f"compute.volume_gb is {have} GB but this run needs about {vol.need_gb:.0f} GB on the pod's volume "
            f"({vol.line.split('= ', 1)[1]})",
            f"set compute.volume_gb: {math.ceil(vol.need_gb / 10) * 10} (or more) in the recipe",
        )


def _refuse(recipe: Recipe, cheapest: OfferEstimate) -> None:
    c = recipe.compute
    floor = math.ceil(cheapest.total_usd * 1.2)
    which = "named in compute.gpu_types" if c.gpu_types else "that fits and is free"
    raise BudgetError(
        f"the cheapest GPU {which}, {cheapest.gpu_type} at ${cheapest.usd_per_hour:.2f}/h, is estimated at "
        f"${cheapest.total_usd:.2f} ({cheapest.hours:.1f} h), above compute.max_usd ${c.max_usd:g}",
        f"raise compute.max_usd to at least ${floor} (estimates are +-50%), or shorten the run "
        f"(training.epochs or max_steps, a smaller dataset.split)"
        + ("" if not c.gpu_types else ", or add a cheaper GPU type to compute.gpu_types"),
    )


def _warnings(recipe: Recipe, chosen: OfferEstimate, over_budget: list[OfferEstimate]) -> list[str]:
    c, notes = recipe.compute, []
    if chosen.hours > c.max_hours:
        notes.append(f"warning: estimated {chosen.hours:.1f} h is more than compute.max_hours {c.max_hours:g}: "
                     f"the pod stops itself at {c.max_hours:g} h, before the run ends; raise compute.max_hours")
    if c.max_usd is not None and chosen.total_usd > TIGHT_BUDGET_SHARE * c.max_usd:
        notes.append(f"warning: the estimate ${chosen.total_usd:.2f} is close to compute.max_usd ${c.max_usd:g}; "
                     f"the pod stops itself at the limit (a checkpoint is kept)")
    if over_budget:
        names = ", ".join(f"{e.gpu_type} (${e.total_usd:.2f})" for e in over_budget)
        notes.append(f"skipped as over compute.max_usd: {names}")
    return notes


def _cloud_lines(cloud: str, offers: list[GpuOffer], chosen: OfferEstimate) -> list[str]:
    """Which cloud tier, and what the chosen GPU costs in each (only for providers that have tiers)."""
    offer = next((o for o in offers if o.gpu_type == chosen.gpu_type), None)
    if offer is None or not offer.prices:
        return []
    why = ("RunPod's own datacenters: the pod receives your Hub token" if cloud == "secure"
           else "third-party hosts: they can read what the pod holds, including your Hub token")
    prices = ", ".join(f"{tier} ${usd:.2f}/h" for tier, usd in offer.prices)
    stock = f"; stock {offer.stock}" if offer.stock else ""
    return [f"cloud: {cloud} ({why}); {offer.gpu_type} per GPU: {prices}{stock}"]


def _memory(gb: float) -> str:
    return f"{gb:.0f} GB" if gb > 0 else "(memory not reported: not checked)"


def _fit_line(within: list[OfferEstimate], offers: list[GpuOffer], need: float, chosen: OfferEstimate) -> str:
    shown = ", ".join(
        f"{e.gpu_type} {_memory(e.memory_gb)} ${e.usd_per_hour:.2f}/h"
        f" → {e.hours:.1f} h ${e.total_usd:.2f}"
        + (" (chosen)" if e is chosen else "") for e in within[:5])
    small = [o.gpu_type for o in offers if not estimate.fits(o, need)]
    return (f"GPUs that fit (need ≤ {estimate.FIT_SHARE:.0%} of memory): {shown}"
            + (f"; too small: {', '.join(small[:6])}" if small else ""))
