"""loss.png drawn ahead: on a low-priority thread once training is done, while the pod merges, so matplotlib's
0.1-0.3 s does not come after the pod's work (report.add_loss_plot takes the drawing when its points still hold)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from remote.events import EventKind, RunPaths, read_events


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
