"""Everything podtune shows a person: phases, progress lines, plans and the final report (rich)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from remote.events import EventKind

from .live import LiveView
from .secrets import redact
from .state import RunStatus

if TYPE_CHECKING:
    from .report import RunSummary


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.2f}h"


class UI:
    def __init__(self, console: Console | None = None, *, assume_yes: bool = False):
        self.console = console or Console(highlight=False)
        self.assume_yes = assume_yes
        self.live = LiveView(self.console)  # the in-place line while a run works (plain lines off a terminal)

    def say(self, text: str, style: str | None = None) -> None:
        # Styled as a Text, not by print(style=): that style would also paint the live line drawn after it.
        self.console.print(Text(redact(text), style=style or ""))

    def info(self, text: str) -> None:
        self.say(text)

    def warn(self, text: str) -> None:
        self.say(f"warning: {text}", style="yellow")

    def error(self, problem: Any) -> None:
        """`error: ...` (and `hint: ...`) on stderr, as main() shows a PodtuneError; for reports that go on."""
        err = Console(stderr=True, highlight=False)
        err.print(f"error: {redact(getattr(problem, 'message', str(problem)))}", style="red", markup=False, soft_wrap=True)
        if getattr(problem, "hint", None):
            err.print(f"hint: {redact(problem.hint)}", markup=False, soft_wrap=True)

    def phase(self, name: str) -> None:
        self.say(f"» {name}", style="bold cyan")

    def waiting(self, what: str, remaining_s: float) -> None:
        if self.live.showing:  # said in the live line, not a new line each poll
            self.live.note = f"waiting for {what} ({remaining_s:.0f}s left)"
            return
        self.say(f"  waiting for {what} ({remaining_s:.0f}s left)", style="dim")

    @property
    def can_ask(self) -> bool:
        """Whether a person can answer a question: --yes, or a terminal on both ends."""
        return self.assume_yes or (self.console.is_interactive and sys.stdin.isatty())

    def confirm(self, question: str) -> bool:
        if self.assume_yes:
            return True
        if not self.can_ask:
            return False
        # A Text, not a str: rich would read `[y/N]` as a markup tag and print nothing of it.
        try:
            answer = self.console.input(Text(f"{redact(question)} [y/N] "))
        except EOFError:
            return False
        return answer.strip().lower() in ("y", "yes")

    def plan(self, plan: Any) -> None:
        self.say(f"» plan: {plan.recipe} on {plan.provider}, {plan.gpu_type} at ${plan.usd_per_hour:.3f}/h", "bold cyan")
        for line in plan.estimate.get("lines", []):
            self.say(f"  {line}")
        for note in plan.notes:
            self.say(f"  {note}")
        uploads = plan.uploads
        self.say("  uploads from this machine: podtune's code (remote/, pyproject.toml, constraints.txt)"
                 + "".join(f"\n    {path}" for path in uploads))

    def event(self, e: dict[str, Any]) -> None:
        kind = e.get("kind")
        if kind == EventKind.PHASE_START:
            self.phase(e["phase"])
            self.live.begin(e["phase"], e.get("ts"))
        elif kind == EventKind.PHASE_END and not e.get("ok", True):
            self.say(f"  {e['phase']} failed: {e.get('error') or e.get('reason') or ''}", style="red")
        elif kind == EventKind.PHASE_END:
            done = self.live.end(e["phase"], e.get("ts"))
            if done:
                self.say(done, style="dim")
        elif kind == EventKind.PHASE_SKIPPED:
            self.say(f"  {e['phase']} skipped: {e.get('reason', '')}", style="dim")
        elif kind == EventKind.STEP:
            if self.live.showing:
                self.live.step(e)  # redrawn in place
            else:
                self.say(self.live.step_line(e))
        elif kind in (EventKind.TRAIN_DONE, EventKind.MERGE_DONE, EventKind.PUSH_DONE):
            self.say(f"  {kind.replace('_', ' ')}", style="green")
        elif kind in (EventKind.WATCHDOG_STOP, EventKind.INTERRUPTED):
            self.say(f"  {kind}: {e.get('reason') or e.get('message') or ''}", style="yellow")
        elif kind == EventKind.WARNING:  # the pod's own (a tracker it dropped, a setting it could not honour)
            self.warn(f"pod: {e.get('message', '')}")

    def detached(self, run_id: str) -> None:
        self.say(f"Detached from {run_id}; the job goes on on the pod.")
        self.say(f"Re-attach: podtune logs -f {run_id}    Status: podtune status {run_id}    Stop: podtune stop {run_id}")

    def report(self, s: RunSummary) -> None:
        table = Table(title=f"run {s.run_id} ({s.provider}, {s.gpu_type or '-'})", show_lines=False)
        for col in ("phase", "time", "estimated", "GPU $", "storage $"):
            table.add_column(col, justify="right" if col != "phase" else "left")
        planned = ((s.estimate or {}).get("estimate") or {}).get("phases") or {}
        for row in s.phases:
            guess = planned.get(row["phase"])
            table.add_row(row["phase"], _fmt_seconds(row["seconds"]), _fmt_seconds(guess) if guess is not None else "",
                          f"{row['gpu_usd']:.4f}", f"{row['storage_usd']:.4f}")
        cost = s.cost
        table.add_row("total", "", "", f"{cost['gpu_usd']:.4f}", f"{cost['storage_usd']:.4f}", style="bold")
        self.console.print(table)
        facts = Table.grid(padding=(0, 2))
        first, last = s.first_loss, s.final_loss
        loss = f"{first:.4f} → {last:.4f}" if first is not None and last is not None else "-"
        rows = [
            ("steps", str(s.steps or "-")),
            ("loss", loss),
            ("tokens/s", f"{s.tokens_per_s:,.0f}" if s.tokens_per_s else "-"),
            ("peak memory", f"{s.peak_mem_mb:,.0f} MB" if s.peak_mem_mb else "-"),
            ("merged model", s.merged_dir or "-"),
            ("hub", f"{s.hub_url} @ {s.hub_commit}" if s.hub_url else "not pushed"),
            ("cost", f"${cost['total_usd']:.4f}"),
            ("total time", _fmt_seconds(s.total_seconds)),
        ]
        if s.stopped_by:
            rows.append(("pod stopped by", s.stopped_by))
        estimate = (s.estimate or {}).get("estimate") or {}
        if estimate.get("total_usd") is not None:
            rows.append(("estimated", f"${estimate['total_usd']:.4f}"))
        for key, value in rows:
            facts.add_row(key, redact(value))
        self.console.print(facts)
        for message in s.warnings:
            self.warn(f"pod: {message}")
        self.loss_curve(s)
        for sample in s.samples:
            self.say(f"prompt: {sample.get('prompt', '').strip()[:200]}", style="bold")
            self.say(f"  base : {_answer(sample.get('base'))}")
            self.say(f"  tuned: {_answer(sample.get('tuned'))}")
        learning = s.learning or {}
        if learning.get("line"):  # computed on the pod against the training data
            self.say(f"learning: {learning['line']}", style="bold")
        from .report import next_steps

        self.say("next steps:", style="bold")
        # A summary without a status is a run that has not ended: nothing failed yet.
        for what, command in next_steps(s, ok=s.status in (None, RunStatus.SUCCEEDED)):
            self.say(f"  {what}:")
            # Whole, on a line of its own: a command wrapped at the terminal's width cannot be copied and pasted.
            self.console.print(Text(f"    {redact(command)}"), soft_wrap=True)

    def loss_curve(self, s: RunSummary) -> None:
        from .plots import terminal_curve

        lines = terminal_curve([(float(a), float(b)) for a, b in s.loss_curve],
                               width=max(20, min(72, self.console.width - 12)))
        if not lines:
            return
        self.say("training loss:", style="bold")
        for line in lines:
            self.say(line)
        if s.loss_png:
            self.say(f"loss plot: {s.loss_png}")

    def status(self, info: dict[str, Any], phases: list[dict[str, Any]]) -> None:
        """One state, then why, progress, checkpoint, cost so far and the next command (no contradicting fields)."""
        rows = [("run", info["run_id"]), ("recipe", f"{info['recipe']} on {info['provider']}"),
                ("state", info["state"])]
        if info.get("reason"):
            rows.append(("reason", info["reason"]))
        if info.get("pod_id") and info.get("pod_state"):
            rows.append(("pod", f"{info['pod_id']} ({info['pod_state']})"))
        remote = info.get("remote") or {}
        if remote.get("step") is not None:
            loss = f", loss {remote['loss']:.4f}" if isinstance(remote.get("loss"), (int, float)) else ""
            rows.append(("progress", f"step {remote['step']}/{remote.get('total_steps') or '?'}{loss}"))
        if info.get("checkpoint"):
            rows.append(("checkpoint", info["checkpoint"]))
        if info.get("exit_code") is not None:
            rows.append(("exit code", str(info["exit_code"])))
        rows.append(("cost so far", f"${info.get('cost_usd') or 0:.4f}"))
        for key, value in rows:
            self.say(f"{key:>11}: {value}")
        if info.get("warning"):
            self.warn(info["warning"])
        for p in phases:
            if p["ended_at"]:
                took = _fmt_seconds(p["ended_at"] - p["started_at"]) + ("" if p.get("ok", 1) else " (failed)")
            else:
                took = "running" if info["state"] in ("running", "provisioning") else "-"
            self.say(f"  {p['phase']:<10} {took}")
        # Why it ended (manage.status collects these facts), then what to type next.
        for key in ("error", "stopped_by_watchdog", "last_step", "resumed_from"):
            if info.get(key) and info[key] != info.get("reason"):
                self.say(f"{key.replace('_', ' '):>11}: {info[key]}")
        if info.get("log_tail"):
            self.say("  last lines of the log:")
            for line in info["log_tail"]:
                self.say(f"    {line}")
        self.say(f"{'next':>11}: {info['next']}", style="bold")

    def runs(self, rows: list[Any]) -> None:
        table = Table(title="runs")
        for col in ("run", "provider", "status", "phase", "pod", "cost $"):
            table.add_column(col)
        for run in rows:
            cost = ((run.summary or {}).get("cost") or {}).get("total_usd")
            table.add_row(run.id, run.provider, run.status, run.phase or "-", run.pod_id or "-",
                          f"{cost:.4f}" if cost is not None else "-")
        self.console.print(table)


def _answer(text: Any) -> str:
    """A sample answer for the report; an empty one says so rather than looking like a display bug."""
    shown = str(text or "").strip()[:300]
    return shown or "(no text: the model ended its answer at once)"
