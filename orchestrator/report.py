"""The end-of-run summary: built from the state DB and the run's events, rendered by ui.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from remote.events import EventKind, RunPaths, read_events

from .costs import phase_costs
from .paths import local_run_dir
from .state import State


def build_summary(state: State, run_id: str, now: float | None = None) -> dict[str, Any]:
    run = state.get_run(run_id)
    assert run is not None
    pod = state.get_pod(run.pod_id) if run.pod_id else None
    local = RunPaths(local_run_dir(run_id))
    events, _ = read_events(local.events)
    steps = [e for e in events if e.get("kind") == EventKind.STEP and e.get("loss") is not None]
    train: dict[str, Any] = next((e for e in reversed(events) if e.get("kind") == EventKind.TRAIN_DONE), {})
    merge: dict[str, Any] = next((e for e in reversed(events) if e.get("kind") == EventKind.MERGE_DONE), {})
    push: dict[str, Any] = next((e for e in reversed(events) if e.get("kind") == EventKind.PUSH_DONE), {})
    stops = [e for e in events if e.get("kind") == EventKind.WATCHDOG_STOP]
    self_stop = next((e for e in reversed(events) if e.get("kind") == EventKind.SELF_STOPPED), None)
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
        "total_seconds": round((run.ended_at or now or time.time()) - run.created_at, 1),
        "hub_repo": _hub_repo(local.recipe, run.recipe_path),
        "volume_usd_per_day": round(pod.storage_per_hr * 24, 4) if pod and pod.storage_per_hr else 0.0,
        # What the pod warned about (a dropped tracker...), once each, in order: the report keeps what scrolled by.
        "warnings": list(dict.fromkeys(str(e.get("message", "")) for e in events if e.get("kind") == EventKind.WARNING)),
    }


def add_loss_plot(summary: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Write loss.png into the run folder (when there is a curve) and record where. A plot drawn ahead
    (LossPlotAhead) is used when its points are the summary's."""
    path = run_dir / "loss.png"
    ahead = LossPlotAhead.take(path)
    points = [(float(s), float(v)) for s, v in summary.get("loss_curve") or []]
    if not points:
        return summary
    if ahead is None or not ahead.drew(points, path):
        from .plots import write_png

        write_png(points, path, title=f"{summary['run_id']} training loss")
    summary["loss_png"] = str(path)
    return summary


def loss_points(events: list[dict[str, Any]]) -> list[tuple[float, float]]:
    return [(float(e["step"]), float(e["loss"])) for e in events
            if e.get("kind") == EventKind.STEP and e.get("loss") is not None]


class LossPlotAhead:
    """Draws loss.png on a low-priority thread from the laptop's copy of the events once training is done, while
    the pod merges: matplotlib's 0.1-0.3 s no longer comes after the pod's work (nor during the stop, where it
    held the GIL the stop's SSH calls wait on)."""

    _started: dict[Path, LossPlotAhead] = {}  # by the plot's path, until add_loss_plot takes it

    @classmethod
    def start(cls, run_id: str, run_dir: Path) -> None:
        ahead = cls(run_id, run_dir)
        previous = cls._started.pop(ahead.path, None)
        if previous is not None:
            previous.drew([], ahead.path)  # waits for it: one drawing of a path at a time
        cls._started[ahead.path] = ahead
        ahead.begin()

    @classmethod
    def take(cls, path: Path) -> LossPlotAhead | None:
        return cls._started.pop(path, None)

    def __init__(self, run_id: str, run_dir: Path):
        import threading

        self.path = run_dir / "loss.png"
        self.points = loss_points(read_events(RunPaths(run_dir).events)[0])
        self.title = f"{run_id} training loss"
        self.ok = False
        self.thread = threading.Thread(target=self._draw, name="loss-png", daemon=True)

    def begin(self) -> None:
        if self.points:
            self.thread.start()

    def _draw(self) -> None:
        import os
        import threading

        from .plots import write_png

        try:  # this thread only (Linux); the pod's merge may share these CPUs (local provider)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        try:
            write_png(self.points, self.path, title=self.title)
            self.ok = True
        except Exception:  # drawn again, in the open, by add_loss_plot: its error is the one to see
            pass

    def drew(self, points: list[tuple[float, float]], path: Path) -> bool:
        """True when this plot is at `path` with exactly these points (else the caller draws it, once this
        thread no longer writes)."""
        if self.thread.ident is not None:  # started
            self.thread.join()
        return self.ok and points == self.points and path == self.path


def next_steps(summary: dict[str, Any], ok: bool) -> list[tuple[str, str]]:
    """(what, the command to type) after a run: try the model, push again, delete what still bills."""
    run_id = summary["run_id"]
    steps: list[tuple[str, str]] = []
    if not ok:
        steps.append(("read the log", f"podtune logs {run_id}"))
    # A pod's merged_dir is a path on the pod, useless here; the local provider's is on this machine.
    local = summary.get("provider") == "local" and summary.get("merged_dir")
    model = (summary.get("hub_repo") if summary.get("hub_url") else None) or local
    if ok and model:
        steps.append(("try the model", f"python -c \"from transformers import pipeline; "
                      f"print(pipeline('text-generation', '{model}')('Hello')[0]['generated_text'])\""))
    if ok and summary.get("merged_dir"):
        steps.append(("push again" if summary.get("hub_url") else "push it (set output.hub_repo first)",
                      f"podtune push {run_id}"))
    if summary.get("volume_usd_per_day"):
        steps.append((f"delete the pod's volume (it bills ${summary['volume_usd_per_day']:.3f}/day)",
                      f"podtune stop {run_id} --terminate"))
    steps.append(("see this report again", f"podtune report {run_id}"))
    return steps


def _hub_repo(*recipes: Path | str) -> str | None:
    """output.hub_repo of the run's recipe: the copy sent with the run, else the file it came from."""
    from remote.recipe import RecipeError, load_recipe

    for path in recipes:
        try:
            return load_recipe(path).output.hub_repo
        except RecipeError:  # gone or changed since the run: try the next, else report without it
            continue
    return None



