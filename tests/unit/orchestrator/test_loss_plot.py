"""loss.png drawn ahead while the pod merges: the report uses that drawing when the curve has not changed since."""

from __future__ import annotations

CURVE = [(i, 3.0 * 0.9 ** i + 0.2) for i in range(1, 31)]


def _events_with(tmp_path, curve) -> None:
    import json

    from remote.events import EVENTS

    lines = [{"kind": "step", "ts": 1.0 + i, "step": s, "loss": v} for i, (s, v) in enumerate(curve)]
    (tmp_path / EVENTS).write_text("".join(json.dumps(e) + "\n" for e in lines))


def test_a_plot_drawn_ahead_from_the_events_is_the_reports_plot(tmp_path, monkeypatch):
    import orchestrator.plots as plots
    from orchestrator.loss_plot import LossPlotAhead
    from orchestrator.report import RunSummary, add_loss_plot

    drawn: list[list] = []
    real = plots.write_png
    monkeypatch.setattr(plots, "write_png",
                        lambda points, path, title="": (drawn.append(points), real(points, path, title)))
    _events_with(tmp_path, CURVE)
    LossPlotAhead.start("r1", tmp_path)
    summary = add_loss_plot(RunSummary(run_id="r1", loss_curve=tuple(CURVE)), tmp_path)
    assert summary.loss_png == str(tmp_path / "loss.png") and (tmp_path / "loss.png").stat().st_size > 1000
    assert len(drawn) == 1  # drawn once, on the thread, not again for the report


def test_a_curve_that_grew_after_the_plot_was_drawn_ahead_is_drawn_again(tmp_path, monkeypatch):
    import orchestrator.plots as plots
    from orchestrator.loss_plot import LossPlotAhead
    from orchestrator.report import RunSummary, add_loss_plot

    drawn: list[list] = []
    real = plots.write_png
    monkeypatch.setattr(plots, "write_png",
                        lambda points, path, title="": (drawn.append(points), real(points, path, title)))
    _events_with(tmp_path, CURVE[:10])
    LossPlotAhead.start("r1", tmp_path)
    add_loss_plot(RunSummary(run_id="r1", loss_curve=tuple(CURVE)), tmp_path)
    assert [len(p) for p in drawn] == [10, 30]  # the last drawing is the whole curve
