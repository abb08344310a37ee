"""The end-of-run summary: built from the state DB and the run's events, rendered by ui.py."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from remote.events import EventKind, RunPaths, read_events

from .costs import phase_costs
from .paths import local_run_dir
from .providers import PROVIDERS, provider_class
from .state import RunStatus, State


@dataclass(frozen=True)
class RunSummary:
    """The end-of-run summary. Its JSON (`as_dict`, `to_json`) is what the state DB stores, summary.json holds and
    `podtune report --json` prints: field names are those keys, in that order, and never change."""

    run_id: str
    recipe: str | None = None
    provider: str | None = None
    pod_id: str | None = None
    gpu_type: str | None = None
    usd_per_hour: float = 0.0
    phases: tuple[dict[str, Any], ...] = ()  # costs.phase_costs rows: phase, seconds, ok, gpu_usd, storage_usd
    steps: int = 0
    first_loss: float | None = None
    final_loss: float | None = None
    loss_curve: tuple[tuple[float, float], ...] = ()  # (step, loss)
    tokens: int | None = None
    tokens_per_s: float | None = None
    peak_mem_mb: float | None = None
    train_seconds: float | None = None
    merged_dir: str | None = None
    model_on_this_machine: bool = False  # merged_dir is a path on this machine (the pod was this machine)
    max_weight_diff: float | None = None
    samples: tuple[dict[str, Any], ...] = ()  # prompt, base and tuned answers
    learning: dict[str, Any] | None = None
    hub_url: str | None = None
    hub_commit: str | None = None
    watchdog: dict[str, Any] | None = None  # the watchdog's last stop event
    stopped_by: str | None = None
    cost: dict[str, float] = field(default_factory=lambda: {"gpu_usd": 0.0, "storage_usd": 0.0, "total_usd": 0.0})
    estimate: dict[str, Any] | None = None  # the plan as the run recorded it
    total_seconds: float = 0.0
    hub_repo: str | None = None
    volume_usd_per_day: float = 0.0
    warnings: tuple[str, ...] = ()
    loss_png: str | None = None  # only once a plot is written
    status: RunStatus | None = None  # only once the run has ended

    def as_dict(self) -> dict[str, Any]:
        """The JSON object; the two keys a summary gains later are absent until it has them, as they always were."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(phases=list(self.phases), loss_curve=[list(p) for p in self.loss_curve],
                    samples=list(self.samples), warnings=list(self.warnings))
        for late in ("loss_png", "status"):
            if data[late] is None:
                del data[late]
        return data

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=1, ensure_ascii=False, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        """Keys it does not know are ignored and missing ones take their defaults: a summary stored by an older
        podtune still loads."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        for name in ("phases", "samples", "warnings"):
            values[name] = tuple(values.get(name) or ())
        values["loss_curve"] = tuple((s, v) for s, v in values.get("loss_curve") or ())
        if values.get("status") is not None:
            values["status"] = RunStatus(values["status"])
        values.setdefault("run_id", "")
        values.setdefault("model_on_this_machine", model_on_this_machine(values.get("provider")))  # stored before it was
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | bytes) -> RunSummary:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"a run summary is a JSON object, not {type(data).__name__}")
        return cls.from_dict(data)


def model_on_this_machine(provider: str | None) -> bool:
    """Whether a run's pod was this machine, so its merged_dir is a path here (False for a provider this podtune
    no longer has)."""
    return provider in PROVIDERS and provider_class(provider).runs_on_this_machine


def build_summary(state: State, run_id: str, now: float | None = None) -> RunSummary:
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
    return RunSummary(
        run_id=run_id,
        recipe=run.recipe_name,
        provider=run.provider,
        pod_id=run.pod_id,
        gpu_type=pod.gpu_type if pod else None,
        usd_per_hour=pod.cost_per_hr if pod else 0.0,
        phases=tuple(rows),
        steps=train.get("steps") or (steps[-1]["step"] if steps else 0),
        first_loss=train.get("first_loss") or (steps[0]["loss"] if steps else None),
        final_loss=train.get("final_loss") or (steps[-1]["loss"] if steps else None),
        loss_curve=tuple((e["step"], e["loss"]) for e in steps),
        tokens=train.get("tokens"),
        tokens_per_s=train.get("tokens_per_s"),
        peak_mem_mb=train.get("peak_mem_mb"),
        train_seconds=train.get("train_seconds"),
        merged_dir=merge.get("merged_dir"),
        model_on_this_machine=model_on_this_machine(run.provider),
        max_weight_diff=merge.get("max_weight_diff"),
        samples=tuple(merge.get("samples", [])),
        learning=merge.get("learning"),
        hub_url=push.get("url"),
        hub_commit=push.get("commit"),
        watchdog=stops[-1] if stops else None,
        stopped_by=(f"the pod itself via {self_stop.get('path')}" if self_stop
                    else "podtune on the laptop (provider API)" if pod and pod.cost_per_hr > 0 else None),
        cost={"gpu_usd": round(gpu, 6), "storage_usd": round(storage, 6), "total_usd": round(gpu + storage, 6)},
        estimate=run.estimate,
        total_seconds=round((run.ended_at or now or time.time()) - run.created_at, 1),
        hub_repo=_hub_repo(local.recipe, run.recipe_path),
        volume_usd_per_day=round(pod.storage_per_hr * 24, 4) if pod and pod.storage_per_hr else 0.0,
        # What the pod warned about (a dropped tracker...), once each, in order: the report keeps what scrolled by.
        warnings=tuple(dict.fromkeys(str(e.get("message", "")) for e in events if e.get("kind") == EventKind.WARNING)),
    )


def add_loss_plot(summary: RunSummary, run_dir: Path) -> RunSummary:
    """Write loss.png into the run folder (when there is a curve); the summary that says where. A plot drawn
    ahead (loss_plot.LossPlotAhead) is used when its points are the summary's."""
    from .loss_plot import LossPlotAhead

    path = run_dir / "loss.png"
    ahead = LossPlotAhead.take(path)
    points = [(float(s), float(v)) for s, v in summary.loss_curve]
    if not points:
        return summary
    if ahead is None or not ahead.drew(points, path):
        from .plots import write_png

        write_png(points, path, title=f"{summary.run_id} training loss")
    return replace(summary, loss_png=str(path))


def next_steps(summary: RunSummary, ok: bool) -> list[tuple[str, str]]:
    """(what, the command to type) after a run: try the model, push again, delete what still bills."""
    run_id = summary.run_id
    steps: list[tuple[str, str]] = []
    if not ok:
        steps.append(("read the log", f"podtune logs {run_id}"))
    # A pod's merged_dir is a path on the pod, useless here; the local provider's is on this machine.
    local = summary.model_on_this_machine and summary.merged_dir
    model = (summary.hub_repo if summary.hub_url else None) or local
    if ok and model:
        steps.append(("try the model", f"python -c \"from transformers import pipeline; "
                      f"print(pipeline('text-generation', '{model}')('Hello')[0]['generated_text'])\""))
    if ok and summary.merged_dir:
        steps.append(("push again" if summary.hub_url else "push it (set output.hub_repo first)",
                      f"podtune push {run_id}"))
    if summary.volume_usd_per_day:
        steps.append((f"delete the pod's volume (it bills ${summary.volume_usd_per_day:.3f}/day)",
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



