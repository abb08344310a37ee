"""The pod's venv: pip installs what is missing pinned by the project's constraints.txt, never whatever is newest."""

from __future__ import annotations

import io
import shlex
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
