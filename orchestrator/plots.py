"""The loss curve: in the terminal (braille dots, no dependency) and as a PNG in the run folder.

The PNG uses matplotlib when it is installed (axes labelled); otherwise a small built-in writer draws the curve in
a frame without text, and `png_note` says so. (plotext 6 changed its API wholesale; braille is a few lines.)"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

BRAILLE = 0x2800
# Dot bit for (column 0/1, row 0..3) inside one braille cell.
DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


def _sample(points: list[tuple[float, float]], n: int) -> list[float]:
    """The curve read at n evenly spaced steps (linear between logged points)."""
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    if len(points) == 1 or xs[-1] == xs[0]:
        return [ys[-1]] * n
    out, j = [], 0
    for i in range(n):
        x = xs[0] + (xs[-1] - xs[0]) * i / max(n - 1, 1)
        while j < len(xs) - 2 and xs[j + 1] < x:
            j += 1
        span = xs[j + 1] - xs[j] or 1.0
        t = min(max((x - xs[j]) / span, 0.0), 1.0)
        out.append(ys[j] + (ys[j + 1] - ys[j]) * t)
    return out


def terminal_curve(points: list[tuple[float, float]], width: int = 60, height: int = 8) -> list[str]:
    """Lines of text: the loss against the step, y range on the left, step range below. [] without points."""
    if not points:
        return []
    values = _sample(points, width * 2)
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    rows = height * 4
    cells = [[0] * width for _ in range(height)]
    previous = None
    for x, v in enumerate(values):
        y = round((hi - v) / span * (rows - 1))  # row 0 is the top
        # Fill the vertical gap to the previous column so steep drops stay connected.
        for yy in range(min(y, previous if previous is not None else y), max(y, previous if previous is not None else y) + 1):
            cells[yy // 4][x // 2] |= DOTS[x % 2][yy % 4]
        previous = y
    left = max(len(f"{hi:.4g}"), len(f"{lo:.4g}"))
    lines = []
    for i, row in enumerate(cells):
        label = f"{hi:.4g}" if i == 0 else f"{lo:.4g}" if i == height - 1 else ""
        lines.append(f"{label:>{left}} ┤" + "".join(chr(BRAILLE + c) for c in row))
    first, last = points[0][0], points[-1][0]
    lines.append(" " * left + " └" + "─" * width)
    lines.append(" " * (left + 2) + f"step {first:g}".ljust(width - len(f"{last:g}")) + f"{last:g}")
    return lines


def write_png(points: list[tuple[float, float]], path: Path, title: str = "") -> str | None:
    """Write the loss curve to `path`; returns a note for the report when the PNG is the plain built-in one."""
    if not points:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on a laptop over SSH, and never a window
        import matplotlib.pyplot as plt
    except ImportError:
        _plain_png(points, path)
        return "matplotlib is not installed: the PNG has the curve but no axis labels (pip install matplotlib)"
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    ax.plot([p[0] for p in points], [p[1] for p in points])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None


def _plain_png(points: list[tuple[float, float]], path: Path, width: int = 640, height: int = 320) -> None:
    margin = 20
    pixels = [[(255, 255, 255)] * width for _ in range(height)]
    for x in range(margin, width - margin):
        pixels[margin][x] = pixels[height - margin - 1][x] = (160, 160, 160)
    for y in range(margin, height - margin):
        pixels[y][margin] = pixels[y][width - margin - 1] = (160, 160, 160)
    inner_w, inner_h = width - 2 * margin - 4, height - 2 * margin - 4
    values = _sample(points, inner_w)
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    previous = None
    for i, v in enumerate(values):
        y = margin + 2 + round((hi - v) / span * (inner_h - 1))
        x = margin + 2 + i
        for yy in range(min(y, previous or y), max(y, previous or y) + 1):
            pixels[yy][x] = (31, 119, 180)
        previous = y
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
                     + chunk(b"IEND", b""))
