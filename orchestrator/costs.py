"""What runs cost: per phase (GPU and storage at the pod's price snapshot, billed per second), per run, per month,
and the storage still accruing on stopped volumes (`podtune costs`)."""

from __future__ import annotations

import csv
import json
import sys
import time
from datetime import datetime
from typing import Any

from remote.events import PIPELINE_PHASES, Phase

from .errors import PodtuneError
from .providers.base import PodState
from .state import PodRecord, RunRecord, State

HOUR = 3600.0
PHASE_ORDER: tuple[str, ...] = tuple(Phase)  # the order a run goes through them
Span = tuple[float, float]


def _union(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _overlap(start: float, end: float, spans: list[Span]) -> float:
    return sum(max(0.0, min(end, e) - max(start, s)) for s, e in _union(spans))


def _subtract(spans: list[Span], holes: list[Span]) -> list[Span]:
    """The parts of `spans` outside every hole."""
    out: list[Span] = []
    for start, end in _union(spans):
        cursor = start
        for h0, h1 in _union(holes):
            if h1 <= cursor or h0 >= end:
                continue
            if h0 > cursor:
                out.append((cursor, h0))
            cursor = max(cursor, h1)
        if cursor < end:
            out.append((cursor, end))
    return out


def _order(phase: str) -> int:
    return PHASE_ORDER.index(phase) if phase in PHASE_ORDER else len(PHASE_ORDER)


def with_pod_start(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pod's Python starting, from the launch (which ends setup) to the pipeline's first phase, counts to that
    phase: its imports take seconds on a pod (and run ahead of the launch since the warm start, remote/warm.py),
    and the plan counts them in `download` too. Billed time left over is idle, as before."""
    out: list[dict[str, Any]] = []
    previous: dict[str, Any] | None = None
    for p in sorted(phases, key=lambda p: p["started_at"]):
        row = p
        if (previous is not None and previous["phase"] == Phase.SETUP and previous["ended_at"] is not None
                and p["phase"] in PIPELINE_PHASES and previous["ended_at"] <= p["started_at"]):
            row = {**p, "started_at": previous["ended_at"]}
        out.append(row)
        previous = p
    return out


def phase_costs(phases: list[dict[str, Any]], pod: PodRecord | None,
                intervals: list[tuple[float, float | None]] | None = None, *,
                until: float | None = None, now: float | None = None) -> list[dict[str, Any]]:
    """One row per recorded phase: seconds, GPU $ and storage $ (a local run's rows cost 0).

    With `intervals` (the pod's billed RUNNING spans, as State.pod_intervals gives them) GPU time is charged only
    inside them, and billed time that no phase covers, up to `until` (the next run on the pod) or now, becomes an
    `idle` row: a laptop that detached while the pod kept running still shows what that cost.
    """
    gpu_rate = pod.cost_per_hr if pod else 0.0
    storage_rate = pod.storage_per_hr if pod else 0.0
    now = time.time() if now is None else now
    billed = None if intervals is None else [(s, now if e is None else e) for s, e in intervals]
    rows, covered = [], []
    for p in sorted(with_pod_start(phases), key=lambda p: (_order(p["phase"]), p["started_at"])):
        if p["ended_at"] is None:
            continue
        seconds = max(0.0, p["ended_at"] - p["started_at"])
        # Before the pod exists (plan) nothing bills; from provision on, the GPU and the volume both do.
        chargeable = p["phase"] != Phase.PLAN
        gpu_s = seconds if billed is None else _overlap(p["started_at"], p["ended_at"], billed)
        if chargeable:
            covered.append((p["started_at"], p["ended_at"]))
        rows.append({
            "phase": p["phase"], "seconds": round(seconds, 3), "ok": p["ok"],
            "gpu_usd": gpu_s * gpu_rate / HOUR if chargeable else 0.0,
            "storage_usd": seconds * storage_rate / HOUR if chargeable else 0.0,
        })
    if billed is not None and covered:
        window = (min(s for s, _ in covered), until if until is not None else now)
        idle_s = sum(e - s for s, e in _subtract(_subtract(billed, [(0.0, window[0]), (window[1], float("inf"))]),
                                                covered))
        if idle_s >= 0.5:  # below that it is the bookkeeping between `stop` ending and the status write
            rows.append({"phase": Phase.IDLE.value, "seconds": round(idle_s, 3), "ok": None,
                         "gpu_usd": idle_s * gpu_rate / HOUR, "storage_usd": idle_s * storage_rate / HOUR})
            rows.sort(key=lambda r: _order(r["phase"]))
    return rows


def _month(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m")


def _by_month(span: Span) -> dict[str, float]:
    """Seconds of a span in each calendar month (local time)."""
    out: dict[str, float] = {}
    start, end = span
    while start < end:
        d = datetime.fromtimestamp(start)
        nxt = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1).timestamp()
        out[_month(start)] = out.get(_month(start), 0.0) + min(end, nxt) - start
        start = nxt
    return out


def run_cost(state: State, run: RunRecord, runs: list[RunRecord], now: float) -> dict[str, Any]:
    pod = state.get_pod(run.pod_id) if run.pod_id else None
    intervals = state.pod_intervals(pod.id) if pod else None
    # A reused pod's later intervals belong to the next run on it.
    later = [r.created_at for r in runs if r.pod_id == run.pod_id and r.created_at > run.created_at]
    rows = phase_costs(state.phases(run.id), pod, intervals, until=min(later) if later else None, now=now)
    gpu = sum(r["gpu_usd"] for r in rows)
    storage = sum(r["storage_usd"] for r in rows)
    estimate = ((run.estimate or {}).get("estimate") or {}).get("total_usd")
    return {
        "run_id": run.id, "recipe": run.recipe_name, "provider": run.provider, "status": run.status,
        "created_at": run.created_at, "month": _month(run.created_at), "pod_id": run.pod_id,
        "gpu_type": pod.gpu_type if pod else None, "usd_per_hour": pod.cost_per_hr if pod else 0.0,
        "storage_usd_per_hour": pod.storage_per_hr if pod else 0.0,
        "seconds": round(sum(r["seconds"] for r in rows if r["phase"] != Phase.PLAN), 3), "phases": rows,
        "gpu_usd": round(gpu, 6), "storage_usd": round(storage, 6), "total_usd": round(gpu + storage, 6),
        "estimated_usd": estimate,
    }


def _run_window(state: State, run: RunRecord, now: float) -> Span | None:
    spans = [(p["started_at"], p["ended_at"] or now) for p in state.phases(run.id) if p["phase"] != Phase.PLAN]
    return (min(s for s, _ in spans), max(e for _, e in spans)) if spans else None


def stopped_storage(state: State, pod: PodRecord, runs: list[RunRecord], now: float) -> dict[str, Any] | None:
    """Storage billed while the pod was not running and no run was using it (runs already count their own)."""
    if pod.storage_per_hr <= 0:
        return None
    intervals = [(s, now if e is None else e) for s, e in state.pod_intervals(pod.id)]
    windows = [w for w in (_run_window(state, r, now) for r in runs if r.pod_id == pod.id) if w]
    gaps = _subtract([(pod.created_at, pod.terminated_at or now)], intervals + windows)
    months: dict[str, float] = {}
    for gap in gaps:
        for month, seconds in _by_month(gap).items():
            months[month] = months.get(month, 0.0) + seconds * pod.storage_per_hr / HOUR
    mine = [r for r in runs if r.pod_id == pod.id]
    latest = max(mine, key=lambda r: r.created_at) if mine else None
    stopped = pod.status == PodState.STOPPED and pod.terminated_at is None
    since = max((e for _, e in intervals), default=pod.created_at)
    return {
        "pod_id": pod.id, "name": pod.name, "provider": pod.provider, "status": pod.status, "volume_gb": pod.volume_gb,
        "storage_usd_per_hour": pod.storage_per_hr, "stopped_since": since if stopped else None,
        "accruing": stopped, "usd_per_day": round(pod.storage_per_hr * 24, 6) if stopped else 0.0,
        "accrued_since_stop_usd": round((now - since) * pod.storage_per_hr / HOUR, 6) if stopped else 0.0,
        "stopped_storage_usd": round(sum(months.values()), 6), "by_month": months,
        "run_id": latest.id if latest else None,
        "delete_command": None if not stopped else (
            f"podtune stop {latest.id} --terminate" if latest else f"podtune stop --pod {pod.id} --terminate"),
    }


def _month_row(months: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    return months.setdefault(key, {"month": key, "runs": 0, "gpu_usd": 0.0, "storage_usd": 0.0,
                                   "stopped_storage_usd": 0.0})


def summarize(state: State, now: float | None = None) -> dict[str, Any]:
    """Everything `podtune costs` shows: runs, months, totals and stopped volumes."""
    now = time.time() if now is None else now
    runs = sorted(state.list_runs(limit=100_000), key=lambda r: r.created_at)
    rows = [run_cost(state, r, runs, now) for r in runs]
    volumes = [v for v in (stopped_storage(state, p, runs, now) for p in state.list_pods()) if v]
    months: dict[str, dict[str, Any]] = {}
    for r in rows:
        m = _month_row(months, r["month"])
        m["runs"] += 1
        m["gpu_usd"] += r["gpu_usd"]
        m["storage_usd"] += r["storage_usd"]
    for v in volumes:
        for key, usd in v["by_month"].items():
            _month_row(months, key)["stopped_storage_usd"] += usd
    for m in months.values():
        m["total_usd"] = m["gpu_usd"] + m["storage_usd"] + m["stopped_storage_usd"]
        for key in ("gpu_usd", "storage_usd", "stopped_storage_usd", "total_usd"):
            m[key] = round(m[key], 6)
    totals = {key: round(sum(m[key] for m in months.values()), 6)
              for key in ("gpu_usd", "storage_usd", "stopped_storage_usd", "total_usd")}
    totals["runs"] = len(rows)
    totals["accruing_usd_per_day"] = round(sum(v["usd_per_day"] for v in volumes), 6)
    return {"generated_at": now, "runs": rows, "months": [months[k] for k in sorted(months)], "totals": totals,
            "stopped_volumes": [v for v in volumes if v["accruing"]]}


def reconcile(state: State, now: float | None = None) -> list[dict[str, Any]]:
    """Per pod: podtune's meter beside the provider's own bill, with the difference.

    Per pod, not per run: the provider bills a pod in hourly buckets, so a warm re-run on the same pod shares
    buckets with the run before it. Most pods carry one run; the row lists the runs it carried."""
    from .providers import billing_provider

    now = time.time() if now is None else now
    data = summarize(state, now)
    volumes = {v["pod_id"]: v for v in (stopped_storage(state, p, list(state.list_runs(limit=100_000)), now)
                                         for p in state.list_pods()) if v}
    providers: dict[str, Any] = {}
    rows = []
    for pod in state.list_pods():
        if pod.provider not in providers:
            providers[pod.provider] = billing_provider(pod.provider)
        provider = providers[pod.provider]
        if provider is None:
            continue
        runs = [r for r in data["runs"] if r["pod_id"] == pod.id]
        ours = sum(r["total_usd"] for r in runs) + (volumes.get(pod.id) or {}).get("stopped_storage_usd", 0.0)
        bill = provider.billed(pod.id, pod.created_at, now)
        theirs = None if bill is None else round(bill.usd, 6)
        rows.append({
            "pod_id": pod.id, "provider": pod.provider, "runs": [r["run_id"] for r in runs],
            "podtune_usd": round(ours, 6), "provider_usd": theirs,
            "difference_usd": None if theirs is None else round(theirs - ours, 6),
            "provider_gpu_usd": None if bill is None else round(bill.gpu_usd, 6),
            "provider_storage_usd": None if bill is None else round(bill.storage_usd, 6),
        })
    return rows


def show_reconcile(state: State, ui: Any, *, as_json: bool = False, now: float | None = None) -> None:
    rows = reconcile(state, now)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=1, default=str) + "\n")
        return
    from rich.table import Table

    if not rows:
        ui.info("no pods rented from a provider that keeps a bill (local and ssh runs cost nothing through podtune)")
        return
    table = Table(title="podtune's meter beside the provider's bill, per pod")
    for col in ("pod", "runs", "podtune $", "provider $", "difference $"):
        table.add_column(col, justify="left" if col in ("pod", "runs") else "right")
    for r in rows:
        theirs = "not billed yet" if r["provider_usd"] is None else f"{r['provider_usd']:.4f}"
        diff = "-" if r["difference_usd"] is None else f"{r['difference_usd']:+.4f}"
        table.add_row(r["pod_id"], ", ".join(r["runs"]) or "-", f"{r['podtune_usd']:.4f}", theirs, diff)
    ui.console.print(table)
    ui.info("the provider bills in hourly buckets that arrive with a delay: the last hour may not be there yet")


CSV_COLUMNS = ("run_id", "month", "recipe", "provider", "status", "gpu_type", "usd_per_hour", "seconds", "gpu_usd",
               "storage_usd", "total_usd", "estimated_usd")


def show(state: State, ui: Any, *, as_json: bool = False, as_csv: bool = False, now: float | None = None) -> None:
    """Print the cost history: rich tables through ui.console, or plain JSON / CSV on stdout for scripts."""
    if as_json and as_csv:
        raise PodtuneError("--json and --csv are exclusive", "pick one: podtune costs --json, or podtune costs --csv")
    data = summarize(state, now)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n")
        return
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in data["runs"]:
            writer.writerow(["" if r[c] is None else r[c] for c in CSV_COLUMNS])
        return
    _render(data, ui)


def _render(data: dict[str, Any], ui: Any) -> None:
    from rich.table import Table

    if not data["runs"] and not data["stopped_volumes"]:
        ui.info("no runs yet: start one with `podtune run recipes/tiny-cpu.yaml`")
        return
    runs = Table(title="cost per run (GPU and storage at the price when rented, per second)")
    for col in ("run", "provider", "GPU", "status", "hours", "GPU $", "storage $", "total $", "estimated $"):
        runs.add_column(col, justify="left" if col in ("run", "provider", "GPU", "status") else "right")
    for r in data["runs"]:
        est = r["estimated_usd"]
        runs.add_row(r["run_id"], r["provider"], r["gpu_type"] or "-", r["status"], f"{r['seconds'] / HOUR:.2f}",
                     f"{r['gpu_usd']:.4f}", f"{r['storage_usd']:.4f}", f"{r['total_usd']:.4f}",
                     f"{est:.4f}" if est is not None else "-")
    ui.console.print(runs)
    months = Table(title="per month")
    for col in ("month", "runs", "GPU $", "storage $", "stopped volumes $", "total $"):
        months.add_column(col, justify="left" if col == "month" else "right")
    for m in data["months"]:
        months.add_row(m["month"], str(m["runs"]), f"{m['gpu_usd']:.4f}", f"{m['storage_usd']:.4f}",
                       f"{m['stopped_storage_usd']:.4f}", f"{m['total_usd']:.4f}")
    t = data["totals"]
    months.add_row("total", str(t["runs"]), f"{t['gpu_usd']:.4f}", f"{t['storage_usd']:.4f}",
                   f"{t['stopped_storage_usd']:.4f}", f"{t['total_usd']:.4f}", style="bold")
    ui.console.print(months)
    for v in data["stopped_volumes"]:
        ui.warn(f"stopped pod {v['pod_id']} ({v['name']}, {v['volume_gb']} GB volume) still bills storage: "
                f"${v['usd_per_day']:.2f}/day, ${v['accrued_since_stop_usd']:.2f} since it stopped. "
                f"Delete it (and its volume, weights cache included) with: {v['delete_command']}")
