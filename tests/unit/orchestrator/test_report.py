"""The report's pieces: a terminal loss curve, a PNG that is a real image, and next steps that fit the run."""

from __future__ import annotations

import struct
import zlib

from orchestrator.plots import terminal_curve, write_png
from orchestrator.report import next_steps

CURVE = [(i, 3.0 * 0.9 ** i + 0.2) for i in range(1, 31)]


def test_terminal_curve_falls_from_top_left_to_bottom_right():
    lines = terminal_curve(CURVE, width=40, height=6)
    plot = [line.split("┤", 1)[1] for line in lines if "┤" in line]
    assert len(plot) == 6 and all(len(row) == 40 for row in plot)
    assert plot[0][0] != "\u2800" and plot[0][-1] == "\u2800"  # high at the start only
    assert plot[-1][-1] != "\u2800" and plot[-1][0] == "\u2800"  # low at the end only
    assert lines[0].strip().startswith(f"{CURVE[0][1]:.4g}") and lines[-1].split()[-1] == "30"
    assert terminal_curve([]) == []


def test_png_is_a_valid_image_of_the_curve(tmp_path):
    path = tmp_path / "loss.png"
    note = write_png(CURVE, path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    if note is None:  # matplotlib drew it
        return
    assert "matplotlib is not installed" in note
    width, height = struct.unpack(">II", data[16:24])
    idat = data[data.index(b"IDAT") + 4:data.index(b"IEND") - 8]
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + 3 * width)
    assert bytes((31, 119, 180)) in raw  # the curve's colour is drawn


def test_next_steps_fit_what_the_run_left():
    pushed = {"run_id": "r1", "provider": "runpod", "hub_url": "https://huggingface.co/me/m", "hub_repo": "me/m",
              "merged_dir": "/workspace/runs/r1/merged", "volume_usd_per_day": 0.24}
    steps = dict(next_steps(pushed, ok=True))
    assert "pipeline('text-generation', 'me/m')" in steps["try the model"]
    assert steps["push again"] == "podtune push r1"
    assert steps["delete the pod's volume (it bills $0.240/day)"] == "podtune stop r1 --terminate"
    failed = dict(next_steps({"run_id": "r2", "provider": "local"}, ok=False))
    assert failed["read the log"] == "podtune logs r2" and "try the model" not in failed
