"""The live view's facts: $ so far from the pod's record and billed time, ETA from the step rate, plain lines."""

from __future__ import annotations

import io
import time

from rich.console import Console

from orchestrator.live import LiveView, Meter
from orchestrator.state import PodRecord, RunRecord, State
from orchestrator.ui import UI


def test_the_meter_charges_gpu_and_storage_for_the_runs_billed_time_only():
    state = State()
    t0 = time.time() - 7200
    state.add_run(RunRecord("r1", "tiny", "/x.yaml", "runpod", "running", created_at=t0 + 600, pod_id="p1"))
    state.upsert_pod(PodRecord(id="p1", provider="runpod", name="podtune-tiny", status="RUNNING", created_at=t0,
                               cost_per_hr=0.44, storage_per_hr=0.01))
    state.set_pod_status("p1", "RUNNING", t0)  # opened before the run: an earlier run's time is not this one's
    state.set_pod_status("p1", "EXITED", t0 + 1800)
    state.set_pod_status("p1", "RUNNING", t0 + 3600)
    meter = Meter.for_run(state, "r1")
    assert meter is not None and meter.usd_per_hour == 0.45
    assert meter.closed_s == 1200 and meter.open_since == t0 + 3600
    assert abs(meter.usd(t0 + 5400) - 0.45 * (1200 + 1800) / 3600) < 1e-9
    assert Meter.for_run(state, "no-such-run") is None


def _step(step: int, ts: float, **more) -> dict:
    return {"kind": "step", "step": step, "total_steps": 100, "loss": 2.5, "lr": 1e-4, "tokens_per_s": 1234.0,
            "ts": ts, **more}


def test_eta_comes_from_the_step_rate_not_from_the_model_load():
    view = LiveView(Console(file=io.StringIO()))
    view.begin("train", 1000.0)
    view.step(_step(1, 1060.0))  # a minute loading the model: no rate from the first step
    assert "ETA -" in view.facts(1060.0)
    view.step(_step(11, 1080.0))  # 10 steps in 20 s: 89 left take 178 s
    facts = view.facts(1080.0)
    assert "step 11/100" in facts and "ETA 2m58s" in facts and "elapsed 80.0s" in facts
    assert "ETA 2m48s" in view.facts(1090.0)  # counts down between events


def test_off_a_terminal_each_step_is_a_plain_line_with_every_fact():
    buffer = io.StringIO()
    ui = UI(Console(file=buffer, width=300, force_terminal=False, highlight=False))
    ui.live.meter = Meter(usd_per_hour=0.36, closed_s=0.0, open_since=1000.0)
    assert not ui.live.interactive
    with ui.live.activity():  # no Live off a terminal
        ui.event({"kind": "phase_start", "phase": "train", "ts": 1000.0})
        ui.event(_step(10, 1100.0, peak_mem_mb=5120.0))
        ui.event(_step(20, 1110.0, peak_mem_mb=5120.0))
        ui.event({"kind": "phase_end", "phase": "train", "ok": True, "ts": 1200.0})
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "» train"
    assert lines[2] == ("  step 20/100  loss 2.5000  lr 1.00e-04  1,234 tok/s  peak 5,120 MB  elapsed 110.0s  "
                        "ETA 80.0s  $0.0110")
    assert lines[3] == "  train finished in 3m20s, step 20/100, loss 2.5000, $0.0200 so far"
    assert "\x1b" not in buffer.getvalue()


def test_on_a_terminal_the_line_is_redrawn_in_place_and_waits_are_said_in_it():
    buffer = io.StringIO()
    ui = UI(Console(file=buffer, width=200, force_terminal=True, highlight=False))
    assert ui.live.interactive
    with ui.live.activity("connect"):
        ui.waiting("SSH on pod p1", 30)
        time.sleep(0.5)  # a few redraws at 8 a second
    shown = buffer.getvalue()
    assert "connect  waiting for SSH on pod p1 (30s left)  elapsed" in shown
    assert "\r" in shown and "\x1b[2K" in shown  # rich's Live moves back over the same line
    assert "  waiting for SSH" not in shown.replace("connect  waiting", "")  # no line of its own
    assert ui.live.end("connect") is not None and ui.live.note is None
