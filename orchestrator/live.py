"""The live view of a run: one line that updates in place on a terminal, plain lines anywhere else.

It shows the phase, step/total, loss, learning rate, tokens/s, elapsed, ETA (from the step rate) and $ so far (the
pod's $/h, GPU + storage, times its billed time). rich's Live redraws it; nothing here writes terminal codes itself.
The redraw runs on rich's refresh thread, so everything it reads is plain data set from the main thread (the state
DB is read only there: sqlite connections stay in the thread that made them).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

HOUR = 3600.0


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


@dataclass(frozen=True)
class Meter:
    """$ so far of one run: the pod's $/h (GPU + storage) times the run's billed seconds."""

    usd_per_hour: float
    closed_s: float = 0.0  # billed seconds in intervals that have ended
    open_since: float | None = None  # start of the billing interval still open (the pod runs now)

    def usd(self, now: float | None = None) -> float:
        now = time.time() if now is None else now
        running = max(0.0, now - self.open_since) if self.open_since is not None else 0.0
        return self.usd_per_hour * (self.closed_s + running) / HOUR

    @classmethod
    def for_run(cls, state: Any, run_id: str) -> Meter | None:
        """From the state DB's pod record and billing intervals, counted from the run's creation."""
        run = state.get_run(run_id)
        record = state.get_pod(run.pod_id) if run is not None and run.pod_id else None
        if run is None or record is None:
            return None
        closed, open_since = 0.0, None
        for start, end in state.pod_intervals(record.id):
            start = max(start, run.created_at)
            if end is None:
                open_since = start
            elif end > start:
                closed += end - start
        return cls(record.cost_per_hr + record.storage_per_hr, closed, open_since)


class LiveView:
    """What a person watches while podtune works: `activity()` around anything slow, `update()` per event."""

    def __init__(self, console: Console):
        self.console = console
        self.interactive = console.is_terminal and not console.is_dumb_terminal
        self.meter: Meter | None = None
        self.phase: str | None = None
        self.phase_t0 = time.time()
        self.last_step: dict[str, Any] | None = None
        self.note: str | None = None  # what the phase waits for (e.g. SSH), in place of a line a poll
        self._anchor: tuple[int, float] | None = None  # (step, ts) of the first step seen in this phase
        self._eta_at: tuple[float, float] | None = None  # (eta seconds, at ts) from the latest step
        self._spinner = Spinner("dots", style="cyan")
        self._live: Live | None = None

    # ---- what is shown ------------------------------------------------------------------------------------
    def facts(self, now: float | None = None) -> list[str]:
        """The facts of the current moment, in the order a person reads them."""
        now = time.time() if now is None else now
        parts = [self.phase or "waiting for the pod's next phase"]
        if self.note:
            parts.append(self.note)
        step = self.last_step if self.phase == "train" else None
        if step is not None:
            parts.append(f"step {step.get('step')}/{step.get('total_steps') or '?'}")
            if step.get("loss") is not None:
                parts.append(f"loss {step['loss']:.4f}")
            if step.get("lr") is not None:
                parts.append(f"lr {step['lr']:.2e}")
            if step.get("tokens_per_s"):
                parts.append(f"{step['tokens_per_s']:,.0f} tok/s")
        parts.append(f"elapsed {fmt_seconds(now - self.phase_t0)}")
        if step is not None:
            eta = None if self._eta_at is None else max(0.0, self._eta_at[0] - max(0.0, now - self._eta_at[1]))
            parts.append(f"ETA {fmt_seconds(eta)}")
        if self.meter is not None:
            parts.append(f"${self.meter.usd(now):.4f}")
        return parts

    def __rich__(self) -> RenderableType:
        grid = Table.grid(padding=(0, 1))
        # One line whatever the terminal's width: a wrapped line would make the redraw climb over earlier output.
        grid.add_row(self._spinner, Text("  ".join(self.facts()), no_wrap=True, overflow="ellipsis"))
        return grid

    # ---- what changes it ----------------------------------------------------------------------------------
    def begin(self, phase: str | None, ts: float | None = None) -> None:
        self.phase, self.phase_t0 = phase, ts or time.time()
        self._anchor = self._eta_at = None
        self.note = None
        if phase == "train":
            self.last_step = None

    def end(self, phase: str, ts: float | None = None) -> str | None:
        """The line that stays once a phase is over (None for a phase that was not the current one)."""
        if phase != self.phase:
            return None
        took = max(0.0, (ts or time.time()) - self.phase_t0)
        step = self.last_step if phase == "train" else None
        detail = ""
        if step is not None:
            detail = f", step {step.get('step')}/{step.get('total_steps') or '?'}"
            if step.get("loss") is not None:
                detail += f", loss {step['loss']:.4f}"
        cost = f", ${self.meter.usd(ts):.4f} so far" if self.meter is not None else ""
        self.phase, self.note = None, None
        self.phase_t0 = ts or time.time()
        return f"  {phase} finished in {fmt_seconds(took)}{detail}{cost}"

    def step(self, event: dict[str, Any]) -> None:
        """A training step: step/total and the ETA from the rate of steps since the first one seen."""
        if self.phase != "train":
            self.begin("train", event.get("ts"))
        ts = float(event.get("ts") or time.time())
        step, total = int(event.get("step") or 0), int(event.get("total_steps") or 0)
        self.last_step = event
        if self._anchor is None:  # the first step's time includes loading the model: no rate from it
            self._anchor, rate = (step, ts), None
        else:
            done, spent = step - self._anchor[0], ts - self._anchor[1]
            rate = done / spent if done > 0 and spent > 0 else None
        if total and rate:
            self._eta_at = (max(0, total - step) / rate, ts)
        elif total and step >= total:
            self._eta_at = (0.0, ts)

    def step_line(self, event: dict[str, Any]) -> str:
        """The plain line for a step (no terminal): the same facts the live line shows."""
        self.step(event)
        facts = self.facts(float(event.get("ts") or time.time()))[1:]  # the phase is said by its own line
        if event.get("peak_mem_mb"):
            at = next(i for i, fact in enumerate(facts) if fact.startswith("elapsed "))
            facts.insert(at, f"peak {event['peak_mem_mb']:,.0f} MB")
        return "  " + "  ".join(facts)

    # ---- when it is on screen -----------------------------------------------------------------------------
    @property
    def showing(self) -> bool:
        """Whether the line is being redrawn in place now (else each step is a line of its own)."""
        return self._live is not None

    @contextmanager
    def activity(self, phase: str | None = None) -> Iterator[None]:
        """Spinner, phase and elapsed time redrawn in place while the block runs (on a terminal only)."""
        if phase is not None:
            self.begin(phase)
        if not self.interactive or self._live is not None:
            yield
            return
        # Transient: the moving line goes when the block ends; the lines printed meanwhile stay above it.
        self._live = Live(self, console=self.console, refresh_per_second=8, transient=True)
        try:
            with self._live:
                yield
        finally:
            self._live = None
