"""The pod's venv: pip installs what is missing pinned by the project's constraints.txt, never whatever is newest."""

from __future__ import annotations

import io
import shlex
import shutil
import textwrap
from pathlib import Path

from rich.console import Console

from orchestrator.planning.datafiles import recipe_data_files
from orchestrator.pod.pod_setup import prepare
from orchestrator.providers.local import LocalProvider
from orchestrator.run import Runner
from orchestrator.state import State
from orchestrator.pod.transport import LocalTransport
from orchestrator.ui import UI
from remote.events import WorkspacePaths
from remote.recipe import load_recipe
from tests.conftest import REPO

# An image's python that lacks one library: `-m venv` makes a venv whose python records how pip was called.
STUB_PYTHON = textwrap.dedent("""\
    #!/bin/sh
    if [ "$2" = "remote.requirements" ]; then echo '{"missing": ["pyyaml>=6"], "python": "3.11.7"}'; exit 0; fi
    if [ "$2" = "venv" ]; then
        mkdir -p "$4/bin"
        printf '#!/bin/sh\\necho "$@" > %s\\n' {log} > "$4/bin/python"
        chmod +x "$4/bin/python"; exit 0
    fi
    exit 1
""")


def _pod_with_code_and_python(tmp_path: Path, script: str) -> tuple[LocalTransport, WorkspacePaths, Path]:
    """This machine as a pod with the code uploaded, and an image's python that runs `script`."""
    pod = LocalProvider().find("podtune-tiny-cpu")
    layout = WorkspacePaths.on_pod(pod.workspace)
    recipe_path = REPO / "recipes" / "tiny-cpu.yaml"
    recipe = load_recipe(recipe_path)
    transport = LocalTransport()
    Runner(State(), UI(Console(file=io.StringIO()))).upload(transport, pod, layout, "setup-test", recipe,
                                                           recipe_data_files(recipe, recipe_path))
    python = tmp_path / "image-python"
    python.write_text(script)
    python.chmod(0o755)
    return transport, layout, python


def test_the_pods_pip_install_is_pinned_by_the_projects_constraints(tmp_path):
    log = tmp_path / "pip-argv"
    transport, layout, python = _pod_with_code_and_python(tmp_path, STUB_PYTHON.replace("{log}", shlex.quote(str(log))))

    ready = prepare(transport, layout, str(python))

    assert ready.created
    argv = log.read_text().split()
    assert argv[argv.index("-c") + 1] == str(layout.constraints) and "pyyaml>=6" in argv
    assert Path(layout.constraints).read_text() == (REPO / "constraints.txt").read_text()


# As above, but the venv's pip talks the way pip does, and takes a moment between lines.
TALKING_PYTHON = textwrap.dedent("""\
    #!/bin/sh
    if [ "$2" = "remote.requirements" ]; then echo '{"missing": ["pyyaml>=6"], "python": "3.11.7"}'; exit 0; fi
    if [ "$2" = "venv" ]; then
        mkdir -p "$4/bin"
        printf '#!/bin/sh\\necho "Collecting pyyaml>=6"\\necho "  Downloading PyYAML-6.0.2-cp311-manylinux.whl (1.5 MB)"\\nsleep 0.3\\necho "  Downloading other-1.0-py3-none-any.whl (500 kB)"\\necho "Successfully installed pyyaml-6.0.2"\\n' > "$4/bin/python"
        chmod +x "$4/bin/python"; exit 0
    fi
    exit 1
""")


def test_a_cold_setup_shows_pips_lines_as_they_come_and_reports_time_and_bytes(tmp_path):
    transport, layout, python = _pod_with_code_and_python(tmp_path, TALKING_PYTHON)
    seen: list[tuple[float, str]] = []

    import time

    ready = prepare(transport, layout, str(python), on_line=lambda line: seen.append((time.monotonic(), line)))

    lines = [line for _, line in seen]
    assert ready.created and lines[0].startswith("creating the venv")
    assert "Collecting pyyaml>=6" in lines and lines[-1] == "Successfully installed pyyaml-6.0.2"
    first_download = next(t for t, line in seen if "PyYAML" in line)
    assert seen[-1][0] - first_download >= 0.25, "lines arrived together at the end, not as pip printed them"
    assert ready.downloaded_bytes == 2_000_000 and ready.seconds >= 0.3


def test_a_failed_install_says_what_pip_said(tmp_path):
    transport, layout, python = _pod_with_code_and_python(tmp_path, TALKING_PYTHON.replace(
        'echo "Successfully installed pyyaml-6.0.2"', 'echo "ERROR: No matching distribution found for pyyaml>=6" >&2; exit 1'))
    import pytest

    from orchestrator.errors import SSHError

    with pytest.raises(SSHError) as failed:
        prepare(transport, layout, str(python), on_line=lambda line: None)
    assert "No matching distribution found for pyyaml>=6" in failed.value.message


def test_the_images_torch_version_is_pinned_so_pip_never_swaps_it(tmp_path):
    """pip keeps the image's CUDA torch or fails saying why; it never downloads another (GBs, maybe not for the
    driver). A version pip could not parse is left unpinned rather than breaking the install."""
    for reported, expected in (("2.4.0a0+f70bd71a48.nv24.06", "torch==2.4.0a0+f70bd71a48.nv24.06"), ("a; b", None)):
        log = tmp_path / f"pip-argv-{len(reported)}"
        stub = STUB_PYTHON.replace("{log}", shlex.quote(str(log))).replace(
            '"python": "3.11.7"}', f'"python": "3.11.7", "torch": "{reported}"}}')
        transport, layout, python = _pod_with_code_and_python(tmp_path, stub)
        shutil.rmtree(str(layout.venvs), ignore_errors=True)  # the first round's venv would be reused

        prepare(transport, layout, str(python))

        argv = log.read_text().split()
        assert [a for a in argv if a.startswith("torch")] == ([expected] if expected else [])


def _installed(site: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A distribution as pip leaves one in site-packages: the module and its dist-info."""
    (site / f"{name}.py").write_text(f"WHERE = {str(site)!r}\n")
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires))
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")


def _wheel(folder: Path, name: str, version: str, requires: tuple[str, ...]) -> None:
    """A pure-Python wheel pip can install offline (no build step), depending on `requires`."""
    import base64
    import hashlib
    import zipfile

    files = {
        f"{name}.py": "VALUE = 1\n",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
        f"{len(text.encode())}\n" for path, text in files.items())
    files[f"{name}-{version}.dist-info/RECORD"] = record + f"{name}-{version}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)


def test_an_image_whose_python_is_a_venv_keeps_its_torch_and_packages(tmp_path):
    """Some images ship torch inside a venv (/opt/torch/.venv/bin/python3 on the GPU machine this project uses).
    A venv made from that python with --system-site-packages sees the base interpreter's packages, not the image
    venv's: pip then downloaded a torch of its own (measured: 3.1 GB, torch 2.15 and CUDA 13 libraries, in place
    of the image's). The pod's venv must see the image's packages, and install only what is really missing."""
    import os
    import subprocess
    import sys

    image = tmp_path / "image"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(image)],
                   check=True, timeout=120)
    site = next((image / "lib").glob("python3*/site-packages"))
    _installed(site, "torch", "9.9.9+image")  # the image's own build: no index has it
    _installed(site, "imagelib", "1.0", ("torch",))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "needsimage", "1.0", ("imagelib>=1.0", "torch"))  # what the image lacks, offline
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), PIP_NO_CACHE_DIR="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    transport, layout, _ = _pod_with_code_and_python(tmp_path, "")
    transport = LocalTransport(env=env)
    lines: list[str] = []

    ready = prepare(transport, layout, str(image / "bin" / "python"), ("imagelib>=1.0", "needsimage>=1.0"),
                    on_line=lines.append)

    assert ready.created, lines
    seen = subprocess.run([ready.python, "-c", "import imagelib, needsimage; print(imagelib.WHERE)"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert seen.returncode == 0 and seen.stdout.strip() == str(site), seen.stderr
    own = next(Path(ready.venv or "").glob("lib/python3*/site-packages"))
    assert not list(own.glob("torch*")) and not list(own.glob("imagelib*")), "pip installed the image's packages again"
    assert list(own.glob("needsimage-1.0.dist-info")), lines
