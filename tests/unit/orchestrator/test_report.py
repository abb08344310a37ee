"""The report's pieces: a terminal loss curve, a PNG that is a real image, and next steps that fit the run."""

from __future__ import annotations

from dataclasses import replace

from orchestrator.plots import terminal_curve, write_png
from orchestrator.report import RunSummary, next_steps

CURVE = [(i, 3.0 * 0.9 ** i + 0.2) for i in range(1, 31)]


def test_terminal_curve_falls_from_top_left_to_bottom_right():
    lines = terminal_curve(CURVE, width=40, height=8)
    rows = [line.split("┤", 1)[1].rstrip().rstrip("│") for line in lines if "┤" in line]
    marks = [{i for i, c in enumerate(row) if c != " "} for row in rows]
    width = max(len(r) for r in rows)
    assert marks[0] and max(marks[0]) < width // 3  # high only at the start
    assert marks[-1] and min(marks[-1]) > width // 3 and max(marks[-1]) == width - 1  # low only later on
    assert lines[-1].strip() == "step" and "\x1b" not in "".join(lines)
    assert terminal_curve([]) == []


def test_png_is_a_real_plot_of_the_curve(tmp_path):
    from PIL import Image

    path = tmp_path / "loss.png"
    write_png(CURVE, path, title="r1 training loss")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (800, 400)
        rgb = image.convert("RGB")
        # matplotlib's first line colour (C0, #1f77b4) is drawn: the curve is there, not just a frame.
        assert (31, 119, 180) in {rgb.getpixel((x, y)) for x in range(0, 800, 2) for y in range(0, 400, 2)}


def test_next_steps_fit_what_the_run_left():
    pushed = RunSummary(run_id="r1", provider="runpod", hub_url="https://huggingface.co/me/m", hub_repo="me/m",
                        merged_dir="/workspace/runs/r1/merged", volume_usd_per_day=0.24)
    steps = dict(next_steps(pushed, ok=True))
    assert "pipeline('text-generation', 'me/m')" in steps["try the model"]
    assert steps["push again"] == "podtune push r1"
    assert steps["delete the pod's volume (it bills $0.240/day)"] == "podtune stop r1 --terminate"
    failed = dict(next_steps(RunSummary(run_id="r2", provider="local"), ok=False))
    assert failed["read the log"] == "podtune logs r2" and "try the model" not in failed


def test_a_model_on_this_machine_is_tried_from_its_path_and_a_pods_is_not():
    here = RunSummary(run_id="r3", model_on_this_machine=True, merged_dir="/home/me/.podtune/runs/r3/merged")
    assert "pipeline('text-generation', '/home/me/.podtune/runs/r3/merged')" in dict(next_steps(here, ok=True))[
        "try the model"]
    on_pod = replace(here, model_on_this_machine=False)
    assert "try the model" not in dict(next_steps(on_pod, ok=True))


def test_a_local_summary_stored_before_the_fact_existed_still_offers_its_model():
    old = {"run_id": "r4", "provider": "local", "merged_dir": "/home/me/.podtune/runs/r4/merged"}
    assert RunSummary.from_dict(old).model_on_this_machine
    assert not RunSummary.from_dict({**old, "provider": "runpod"}).model_on_this_machine
    assert not RunSummary.from_dict({**old, "provider": "retired-cloud"}).model_on_this_machine


# The keys of `podtune report --json`, summary.json and the state DB's summary, in order: a user-facing format.
SUMMARY_KEYS = [
    "run_id", "recipe", "provider", "pod_id", "gpu_type", "usd_per_hour", "phases", "steps", "first_loss",
    "final_loss", "loss_curve", "tokens", "tokens_per_s", "peak_mem_mb", "train_seconds", "merged_dir",
    "model_on_this_machine", "max_weight_diff", "samples", "learning", "hub_url", "hub_commit", "watchdog",
    "stopped_by", "cost", "estimate", "total_seconds", "hub_repo", "volume_usd_per_day", "warnings",
]


def _finished_run(tmp_path):
    import json
    import time

    from orchestrator.paths import local_run_dir
    from orchestrator.state import RunRecord, RunStatus, State

    state = State()
    state.add_run(RunRecord(id="r1", recipe_name="t", recipe_path=str(tmp_path / "gone.yaml"), provider="local",
                            status=RunStatus.RUNNING, created_at=time.time() - 30))
    state.phase_started("r1", "plan", time.time() - 30)
    state.phase_ended("r1", "plan", at=time.time() - 29)
    events = [{"kind": "step", "step": s, "loss": v} for s, v in CURVE[:3]]
    events.append({"kind": "warning", "message": "wandb dropped"})
    (local_run_dir("r1") / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return state


def test_a_summary_keeps_the_json_keys_users_read_and_round_trips(tmp_path):
    from orchestrator.report import build_summary

    summary = build_summary(_finished_run(tmp_path), "r1")
    data = summary.as_dict()
    assert list(data) == SUMMARY_KEYS  # no loss_png nor status until the run has them
    assert data["loss_curve"] == [[s, v] for s, v in CURVE[:3]] and data["warnings"] == ["wandb dropped"]
    assert [row["phase"] for row in data["phases"]] == ["plan"]
    assert RunSummary.from_json(summary.to_json()) == summary


def test_the_loss_plot_gives_a_new_summary_that_says_where_it_is(tmp_path):
    from dataclasses import replace

    from orchestrator.report import add_loss_plot, build_summary
    from orchestrator.state import RunStatus

    summary = replace(build_summary(_finished_run(tmp_path), "r1"), status=RunStatus.SUCCEEDED)
    plotted = add_loss_plot(summary, tmp_path)
    assert summary.loss_png is None and plotted.loss_png == str(tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert list(plotted.as_dict()) == [*SUMMARY_KEYS, "loss_png", "status"]
    assert plotted.as_dict()["status"] == "succeeded"


def test_a_summary_an_older_podtune_stored_still_loads_and_renders():
    import io

    from rich.console import Console

    from orchestrator.ui import UI

    old = {"run_id": "r0", "recipe": "t", "provider": "runpod", "pod_id": "p", "gpu_type": "RTX 3090",
           "usd_per_hour": 0.5, "phases": [{"phase": "train", "seconds": 60.0, "ok": 1, "gpu_usd": 0.0083,
                                            "storage_usd": 0.0001}],
           "steps": 30, "first_loss": 3.0, "final_loss": 1.0, "loss_curve": [[1, 3.0], [30, 1.0]],
           "cost": {"gpu_usd": 0.0083, "storage_usd": 0.0001, "total_usd": 0.0084}, "total_seconds": 90.0,
           "status": "stopped", "retired_key": 1}  # no warnings, learning, hub_repo... as older podtunes stored
    summary = RunSummary.from_dict(old)
    assert summary.status == "stopped" and summary.warnings == () and summary.loss_curve == ((1, 3.0), (30, 1.0))
    out = io.StringIO()
    UI(Console(file=out, width=120)).report(summary)
    text = out.getvalue()
    assert "$0.0084" in text and "3.0000 → 1.0000" in text and "read the log:\n    podtune logs r0\n" in text
