"""The end-of-run summary: built from the state DB and the run's events, rendered by ui.py."""

from __future__ import annotations

import json
from typing import Any

from remote.events import read_events

from .costs import phase_costs
from .paths import local_run_dir
from .state import State


def build_summary(state: State, run_id: str) -> dict[str, Any]:
    run = state.get_run(run_id)
    assert run is not None
    pod = state.get_pod(run.pod_id) if run.pod_id else None
    events, _ = read_events(local_run_dir(run_id) / "events.jsonl")
    steps = [e for e in events if e.get("kind") == "step" and e.get("loss") is not None]
    train = next((e for e in reversed(events) if e.get("kind") == "train_done"), {})
    merge = next((e for e in reversed(events) if e.get("kind") == "merge_done"), {})
    push = next((e for e in reversed(events) if e.get("kind") == "push_done"), {})
    stops = [e for e in events if e.get("kind") == "watchdog_stop"]
    self_stop = next((e for e in reversed(events) if e.get("kind") == "self_stopped"), None)
    rows = phase_costs(state.phases(run_id), pod, state.pod_intervals(pod.id) if pod else None)
    gpu = sum(r["gpu_usd"] for r in rows)
    storage = sum(r["storage_usd"] for r in rows)
    return {
        "run_id": run_id,
        "recipe": run.recipe_name,
        "provider": run.provider,
        "pod_id": run.pod_id,
        "gpu_type": pod.gpu_type if pod else None,
        "usd_per_hour": pod.cost_per_hr if pod else 0.0,
        "phases": rows,
        "steps": train.get("steps") or (steps[-1]["step"] if steps else 0),
        "first_loss": train.get("first_loss") or (steps[0]["loss"] if steps else None),
        "final_loss": train.get("final_loss") or (steps[-1]["loss"] if steps else None),
        "loss_curve": [[e["step"], e["loss"]] for e in steps],
        "tokens": train.get("tokens"),
        "tokens_per_s": train.get("tokens_per_s"),
        "peak_mem_mb": train.get("peak_mem_mb"),
        "train_seconds": train.get("train_seconds"),
        "merged_dir": merge.get("merged_dir"),
        "max_weight_diff": merge.get("max_weight_diff"),
        "samples": merge.get("samples", []),
        "learning": merge.get("learning"),
        "hub_url": push.get("url"),
        "hub_commit": push.get("commit"),
        "watchdog": stops[-1] if stops else None,
        "stopped_by": (f"the pod itself via {self_stop.get('path')}" if self_stop
                       else "podtune on the laptop (provider API)" if pod and pod.cost_per_hr > 0 else None),
        "cost": {"gpu_usd": round(gpu, 6), "storage_usd": round(storage, 6), "total_usd": round(gpu + storage, 6)},
        "estimate": run.estimate,
    }


def summary_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=1, ensure_ascii=False, default=str)
