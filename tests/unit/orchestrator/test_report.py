"""The report's pieces: a terminal loss curve, a PNG that is a real image, and next steps that fit the run."""

from __future__ import annotations

from orchestrator.plots import terminal_curve, write_png
from orchestrator.report import next_steps

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
    pushed = {"run_id": "r1", "provider": "runpod", "hub_url": "https://huggingface.co/me/m", "hub_repo": "me/m",
              "merged_dir": "/workspace/runs/r1/merged", "volume_usd_per_day": 0.24}
    steps = dict(next_steps(pushed, ok=True))
    assert "pipeline('text-generation', 'me/m')" in steps["try the model"]
    assert steps["push again"] == "podtune push r1"
    assert steps["delete the pod's volume (it bills $0.240/day)"] == "podtune stop r1 --terminate"
    failed = dict(next_steps({"run_id": "r2", "provider": "local"}, ok=False))
    assert failed["read the log"] == "podtune logs r2" and "try the model" not in failed


def _events_with(tmp_path, curve) -> None:
    import json

    from remote.events import EVENTS

    lines = [{"kind": "step", "ts": 1.0 + i, "step": s, "loss": v} for i, (s, v) in enumerate(curve)]
    (tmp_path / EVENTS).write_text("".join(json.dumps(e) + "\n" for e in lines))


def test_a_plot_drawn_ahead_from_the_events_is_the_reports_plot(tmp_path, monkeypatch):
    import orchestrator.plots as plots
    from orchestrator.report import LossPlotAhead, add_loss_plot

    drawn: list[list] = []
    real = plots.write_png
    monkeypatch.setattr(plots, "write_png", lambda points, path, title="": (drawn.append(points), real(points, path, title)))
    _events_with(tmp_path, CURVE)
    LossPlotAhead.start("r1", tmp_path)
    summary = add_loss_plot({"run_id": "r1", "loss_curve": [list(p) for p in CURVE]}, tmp_path)
    assert summary["loss_png"] == str(tmp_path / "loss.png") and (tmp_path / "loss.png").stat().st_size > 1000
    assert len(drawn) == 1  # drawn once, on the thread, not again for the report


def test_a_curve_that_grew_after_the_plot_was_drawn_ahead_is_drawn_again(tmp_path, monkeypatch):
    import orchestrator.plots as plots
    from orchestrator.report import LossPlotAhead, add_loss_plot

    drawn: list[list] = []
    real = plots.write_png
    monkeypatch.setattr(plots, "write_png", lambda points, path, title="": (drawn.append(points), real(points, path, title)))
    _events_with(tmp_path, CURVE[:10])
    LossPlotAhead.start("r1", tmp_path)
    add_loss_plot({"run_id": "r1", "loss_curve": [list(p) for p in CURVE]}, tmp_path)
    assert [len(p) for p in drawn] == [10, 30]  # the last drawing is the whole curve
