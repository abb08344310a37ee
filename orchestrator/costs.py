"""What a run cost, per phase: GPU time at the pod's price snapshot, and the volume's storage time."""

from __future__ import annotations

from typing import Any

from .state import PodRecord

HOUR = 3600.0


def phase_costs(phases: list[dict[str, Any]], pod: PodRecord | None) -> list[dict[str, Any]]:
    """One row per recorded phase: seconds, GPU $ and storage $ (a local run's rows cost 0)."""
    gpu_rate = pod.cost_per_hr if pod else 0.0
    storage_rate = pod.storage_per_hr if pod else 0.0
    rows = []
    for p in phases:
        if p["ended_at"] is None:
            continue
        seconds = max(0.0, p["ended_at"] - p["started_at"])
        # Before the pod exists (plan) nothing bills; from provision on, the GPU and the volume both do.
        billed = p["phase"] != "plan"
        rows.append({
            "phase": p["phase"], "seconds": round(seconds, 3), "ok": p["ok"],
            "gpu_usd": seconds * gpu_rate / HOUR if billed else 0.0,
            "storage_usd": seconds * storage_rate / HOUR if billed else 0.0,
        })
    return rows
