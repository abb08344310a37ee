"""Cold setup on an image without the libraries: what the user sees while the pod's venv is built, and its cost.

    python bench/bench_setup.py

The "image" is a fresh venv of this machine's Python holding only torch (the CPU wheel, from local disk), as a
stock PyTorch image holds its CUDA build and nothing else of the stack. podtune's own setup (`pod_setup.prepare`,
the code a run calls, through the local transport a local run uses) then builds the pod's venv: pip downloads
the [train] libraries at constraints.txt's versions from PyPI with no pip cache and no local wheel folder, as on
a new pod. Every line the user would see is timestamped. Reported: the wall time, the bytes podtune reports
downloading, how many lines reached the screen, and the longest silence between two of them (the progress
target: something on screen throughout). One run: it downloads ~0.3 GB, and PyPI's speed is this row's noise.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

def image_python(folder: Path) -> str:
    """A venv with torch and pip only: the stand-in for a stock PyTorch image (not timed)."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(folder)], check=True, timeout=300)
    py = str(folder / "bin" / "python")
    torch_version = __import__("torch").__version__.split("+")[0]  # this machine's pip config finds its CPU wheel
    subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"torch=={torch_version}"],
                   check=True, timeout=900)
    return py


def as_on_a_pod() -> None:
    """pip as on a new pod: PyPI only. This build machine's pip config adds local wheel folders and indexes (and
    its environment a find-links); without this, pip would copy from disk and download nothing."""
    os.environ["PIP_CONFIG_FILE"] = os.devnull
    os.environ["PIP_NO_CACHE_DIR"] = "1"
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_CONSTRAINT"):
        os.environ.pop(name, None)


def main() -> dict:
    saved = dict(os.environ)
    try:
        return _measure()
    finally:  # run_all calls this in its own process: leave its environment as it was
        os.environ.clear()
        os.environ.update(saved)


def _measure() -> dict:
    from rich.console import Console

    with tempfile.TemporaryDirectory(prefix="podtune-bench-setup-") as name:
        tmp = Path(name)
        os.environ["PODTUNE_HOME"] = str(tmp / "home")  # the local provider's workspace: a new, empty volume
        from orchestrator.planning.datafiles import recipe_data_files
        from orchestrator.pod.pod_setup import prepare
        from orchestrator.pod.transport import LocalTransport
        from orchestrator.providers.local import LocalProvider
        from orchestrator.run import Runner
        from orchestrator.state import State
        from orchestrator.ui import UI
        from remote.events import WorkspacePaths
        from remote.recipe import load_recipe
        from remote.requirements import for_recipe

        py = image_python(tmp / "image")
        print(f"image python with torch only: {py}", file=sys.stderr)
        recipe_path = REPO / "recipes" / "tiny-cpu.yaml"
        recipe = load_recipe(recipe_path)
        pod = LocalProvider().find("podtune-tiny-cpu")
        layout = WorkspacePaths.on_pod(pod.workspace)
        transport = LocalTransport()
        Runner(State(), UI(Console(file=io.StringIO()))).upload(transport, pod, layout, "bench-setup", recipe,
                                                               recipe_data_files(recipe, recipe_path))
        as_on_a_pod()
        seen: list[tuple[float, str]] = []
        started = time.monotonic()

        def on_line(line: str) -> None:
            seen.append((time.monotonic(), line))
            print(f"  {seen[-1][0] - started:6.1f} s  {line[:150]}", file=sys.stderr, flush=True)

        ready = prepare(transport, layout, py, for_recipe(recipe), on_line=on_line)
        took = time.monotonic() - started
    stamps = [started] + [t for t, _ in seen] + [started + took]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"created": ready.created, "seconds": round(took, 1), "reported_seconds": round(ready.seconds, 1),
            "downloaded_mb": round(ready.downloaded_bytes / 1e6, 1), "lines": len(seen),
            "longest_silence_s": round(max(gaps), 1), "first_line_s": round(gaps[0], 2),
            "last_lines": [line for _, line in seen[-3:]]}


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
