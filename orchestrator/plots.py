"""The loss curve: in the terminal with plotext and as a PNG in the run folder with matplotlib (Agg, no window)."""

from __future__ import annotations

from pathlib import Path


def warm_up() -> None:
    """Import the plotting libraries now (about a second), on a thread while the pod works, so the report at the
    end does not wait for them."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import importlib

        for name in ("matplotlib.pyplot", "plotext"):  # imported for the import time only
            importlib.import_module(name)
    except Exception:  # the report imports them again and says what is wrong there
        pass


def terminal_curve(points: list[tuple[float, float]], width: int = 60, height: int = 12) -> list[str]:
    """Lines of text: loss against step, with axes. [] without points. Plain text (no colour codes)."""
    if not points:
        return []
    import plotext as plt  # plotext 5's API; 6 changed it wholesale (pinned in pyproject)

    plt.clear_figure()
    plt.plot([p[0] for p in points], [p[1] for p in points], marker="braille")
    plt.plotsize(width, height)
    plt.xlabel("step")
    plt.theme("clear")
    text = plt.uncolorize(plt.build())
    plt.clear_figure()
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def write_png(points: list[tuple[float, float]], path: Path, title: str = "") -> None:
    """Write the loss curve to `path` (nothing without points)."""
    if not points:
        return
    import matplotlib

    matplotlib.use("Agg")  # no display on a laptop over SSH, and never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    ax.plot([p[0] for p in points], [p[1] for p in points])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
