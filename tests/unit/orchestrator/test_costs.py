"""Metering on a real SQLite state: per-phase GPU and storage $, idle time, months, stopped volumes, `podtune costs`."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

import pytest
from typer.testing import CliRunner

from orchestrator import costs
from orchestrator.cli import app
from orchestrator.state import PodRecord, RunRecord, State

GPU, STORAGE = 0.29, 50 * 0.20 / 730  # $/h: seed A's 3090 and a 50 GB volume
T0 = datetime(2026, 1, 15, 12, 0).timestamp()
# (phase, start, end) in seconds after T0: what run.py and the pod's events record.
PHASES = [("plan", 0, 1), ("provision", 1, 21), ("connect", 21, 100), ("sync", 100, 110), ("setup", 110, 260),
          ("download", 262, 400), ("train", 400, 3_600), ("merge", 3_600, 3_700), ("push", 3_700, 4_000),
          ("stop", 4_060, 4_070)]  # the laptop noticed the end 60 s after push: that minute is idle


def add_run(state: State, run_id: str, t0: float, pod_id: str = "pod1", *, exited_at: float | None = None,
            estimate: float | None = 6.0) -> None:
    state.add_run(RunRecord(run_id, "llama2-ko", "/r.yaml", "runpod", "running", created_at=t0, pod_id=pod_id,
                            estimate={"estimate": {"total_usd": estimate}} if estimate is not None else None))
    if state.get_pod(pod_id) is None:
        state.upsert_pod(PodRecord(pod_id, "runpod", "podtune-llama2-ko", "RUNNING", created_at=t0 + 1,
                                   gpu_type="NVIDIA GeForce RTX 3090", cost_per_hr=GPU, storage_per_hr=STORAGE,
                                   volume_gb=50))
    for phase, start, end in PHASES:
        state.phase_started(run_id, phase, t0 + start)
        state.phase_ended(run_id, phase, True, t0 + end)
    # Billing: from the end of provision (pod created) until the stop returned.
    state.set_pod_status(pod_id, "RUNNING", at=t0 + 21)
    state.set_pod_status(pod_id, "EXITED", at=exited_at or t0 + 4_070)
    state.update_run(run_id, status="succeeded", ended_at=t0 + 4_070)


@pytest.fixture
def state():
    s = State()  # $PODTUNE_HOME/state.db: the conftest points PODTUNE_HOME at tmp_path
    yield s
    s.close()


def test_per_phase_gpu_and_storage_at_the_price_snapshot(state):
    add_run(state, "r1", T0)
    result = costs.run_cost(state, state.get_run("r1"), state.list_runs(), now=T0 + 4_100)
    rows = {r["phase"]: r for r in result["phases"]}
    assert [r["phase"] for r in result["phases"]] == [
        "plan", "provision", "connect", "sync", "setup", "download", "train", "merge", "push", "idle", "stop"]
    assert rows["plan"]["gpu_usd"] == 0 and rows["plan"]["storage_usd"] == 0
    # provision ends when the pod exists: no GPU billed yet, but the volume is.
    assert rows["provision"]["gpu_usd"] == 0 and rows["provision"]["storage_usd"] == pytest.approx(20 * STORAGE / 3600)
    assert rows["train"]["gpu_usd"] == pytest.approx(3_200 * GPU / 3600)
    assert rows["train"]["storage_usd"] == pytest.approx(3_200 * STORAGE / 3600)
    # The pod's Python starting (2 s from the launch, which ends setup, to the pipeline's first event) is part
    # of download, as the plan counts it; billed seconds no phase covers are idle: 60 s between push and stop.
    assert rows["download"]["seconds"] == pytest.approx(140)
    assert rows["idle"]["seconds"] == pytest.approx(60)
    # Per-second billing: the GPU $ add up to exactly the billed interval at the snapshot price.
    assert result["gpu_usd"] == pytest.approx((4_070 - 21) * GPU / 3600, abs=1e-6)  # stored to the micro-dollar
    assert result["total_usd"] == pytest.approx(result["gpu_usd"] + result["storage_usd"], abs=2e-6)
    assert result["estimated_usd"] == 6.0


def test_phase_costs_without_intervals_keeps_its_old_shape():
    rows = costs.phase_costs([{"phase": "plan", "started_at": 0.0, "ended_at": 1.0, "ok": 1},
                              {"phase": "train", "started_at": 1.0, "ended_at": 3601.0, "ok": 1},
                              {"phase": "merge", "started_at": 3601.0, "ended_at": None, "ok": None}],
                             PodRecord("p", "runpod", "n", "RUNNING", 0.0, cost_per_hr=1.0, storage_per_hr=0.5))
    assert rows == [{"phase": "plan", "seconds": 1.0, "ok": 1, "gpu_usd": 0.0, "storage_usd": 0.0},
                    {"phase": "train", "seconds": 3600.0, "ok": 1, "gpu_usd": 1.0, "storage_usd": 0.5}]


def test_a_pod_left_running_after_a_detached_run_bills_as_idle(state):
    add_run(state, "r1", T0)
    state.set_pod_status("pod1", "RUNNING", at=T0 + 5_000)  # resumed and never stopped
    result = costs.run_cost(state, state.get_run("r1"), state.list_runs(), now=T0 + 5_000 + 3_600)
    idle = next(r for r in result["phases"] if r["phase"] == "idle")
    assert idle["seconds"] == pytest.approx(60 + 3_600)
    assert idle["gpu_usd"] == pytest.approx((60 + 3_600) * GPU / 3600)


def test_a_reused_pod_bills_each_interval_to_its_own_run(state):
    add_run(state, "r1", T0)
    add_run(state, "r2", T0 + 10_000)
    runs = state.list_runs()
    first = costs.run_cost(state, state.get_run("r1"), runs, now=T0 + 20_000)
    second = costs.run_cost(state, state.get_run("r2"), runs, now=T0 + 20_000)
    assert first["gpu_usd"] == second["gpu_usd"] == pytest.approx((4_070 - 21) * GPU / 3600, abs=1e-6)


def test_stopped_volumes_accrue_storage_with_the_command_to_delete_them(state):
    add_run(state, "r1", T0)
    now = T0 + 4_070 + 86_400
    data = costs.summarize(state, now=now)
    [volume] = data["stopped_volumes"]
    assert volume["pod_id"] == "pod1" and volume["delete_command"] == "podtune stop r1 --terminate"
    assert volume["usd_per_day"] == pytest.approx(STORAGE * 24)
    assert volume["accrued_since_stop_usd"] == pytest.approx(STORAGE * 24)
    totals = data["totals"]
    assert totals["stopped_storage_usd"] == pytest.approx(STORAGE * 24, rel=1e-3)
    assert totals["total_usd"] == pytest.approx(data["runs"][0]["total_usd"] + totals["stopped_storage_usd"], abs=1e-5)
    assert totals["accruing_usd_per_day"] == pytest.approx(STORAGE * 24)


def test_a_terminated_volume_stops_accruing(state):
    add_run(state, "r1", T0)
    state.set_pod_status("pod1", "TERMINATED", at=T0 + 4_070 + 3_600)
    data = costs.summarize(state, now=T0 + 4_070 + 86_400)
    assert data["stopped_volumes"] == []
    assert data["totals"]["stopped_storage_usd"] == pytest.approx(STORAGE, rel=1e-3)  # the hour before terminate
    assert data["totals"]["accruing_usd_per_day"] == 0


def test_months_split_runs_and_stopped_storage(state):
    add_run(state, "jan", T0)
    state.set_pod_status("pod1", "TERMINATED", at=T0 + 4_070)
    feb = datetime(2026, 2, 10, 12, 0).timestamp()
    add_run(state, "feb", feb, pod_id="pod2")
    data = costs.summarize(state, now=feb + 4_070)
    assert [m["month"] for m in data["months"]] == ["2026-01", "2026-02"]
    assert [m["runs"] for m in data["months"]] == [1, 1]
    assert data["months"][0]["total_usd"] == pytest.approx(data["runs"][0]["total_usd"], abs=1e-5)


def test_podtune_costs_json_csv_and_table(state):
    add_run(state, "r1", T0)
    runner = CliRunner()
    out = runner.invoke(app, ["costs", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["runs"][0]["run_id"] == "r1" and data["runs"][0]["gpu_type"] == "NVIDIA GeForce RTX 3090"
    assert data["stopped_volumes"][0]["delete_command"] == "podtune stop r1 --terminate"

    out = runner.invoke(app, ["costs", "--csv"])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["run_id"] for r in rows] == ["r1"] and float(rows[0]["total_usd"]) == pytest.approx(
        data["runs"][0]["total_usd"], rel=1e-3)
    assert rows[0]["month"] == "2026-01" and float(rows[0]["estimated_usd"]) == 6.0

    out = runner.invoke(app, ["costs"])
    assert out.exit_code == 0, out.output
    text = " ".join(out.stdout.split())  # rich wraps long lines
    assert "r1" in text and "2026-01" in text and "podtune stop r1 --terminate" in text


def test_costs_with_no_runs_says_how_to_start(state):
    out = CliRunner().invoke(app, ["costs"])
    assert out.exit_code == 0 and "podtune run recipes/tiny-cpu.yaml" in out.stdout
    assert json.loads(CliRunner().invoke(app, ["costs", "--json"]).stdout)["totals"]["total_usd"] == 0
