"""The pod gets what the recipe needs: deepspeed for ZeRO-3, the trackers it reports to; each set has its own venv."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest
from packaging.requirements import Requirement

from orchestrator.pod.pod_setup import prepare, requirements_hash
from orchestrator.pod.transport import LocalTransport
from remote.events import WorkspacePaths
from remote.recipe import load_recipe
from remote.requirements import DEEPSPEED, REQUIREMENTS, TRACKERS, for_recipe
from tests.conftest import REPO
from tests.unit.orchestrator.planning.test_estimate import plan_for


def names(requirements) -> set[str]:
    return {Requirement(r).name for r in requirements}


@pytest.mark.parametrize(("recipe", "added"), [
    ("ironman-persona.yaml", {"deepspeed"}),  # seed D: distributed deepspeed_zero3
    ("llama2-ko.yaml", {"wandb"}),  # seed A reports to wandb
    ("llama2-guanaco.yaml", {"tensorboard"}),  # seed B reports to tensorboard
    ("tiny-cpu.yaml", set()),
])
def test_each_recipe_gets_its_engine_and_trackers(recipe, added):
    wanted = for_recipe(load_recipe(REPO / "recipes" / recipe))
    assert names(wanted) - names(REQUIREMENTS) == added
    assert set(REQUIREMENTS) <= set(wanted)


def test_the_plan_lists_what_the_pod_will_install():
    plan = plan_for("ironman-persona.yaml")
    line = next(li for li in plan.estimate["lines"] if li.startswith("packages on the pod:"))
    assert "this recipe adds deepspeed>=" in line and "transformers>=" in line
    assert "deepspeed>=0.16" in plan.estimate["requirements"]
    tiny = next(li for li in plan_for("tiny-cpu.yaml").estimate["lines"] if li.startswith("packages on the pod:"))
    assert "deepspeed" not in tiny and "adds" not in tiny


def test_the_optional_packages_are_in_the_dev_extra_and_pinned():
    """What the tests install to check them: deepspeed's own config parser runs in the suite."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dev = names(project["optional-dependencies"]["dev"])
    assert "deepspeed" in dev
    assert any(line.startswith("deepspeed==") for line in (REPO / "constraints.txt").read_text().splitlines())
    assert set(TRACKERS) == {"wandb", "tensorboard"} and DEEPSPEED.startswith("deepspeed>=")


def _pod(tmp_path: Path) -> tuple[LocalTransport, WorkspacePaths[PurePosixPath]]:
    layout = WorkspacePaths.on_pod(str(tmp_path / "workspace"))
    code = Path(layout.code)
    code.mkdir(parents=True)
    (code / "remote").symlink_to(REPO / "remote")  # what sync puts there
    return LocalTransport(), layout


def test_a_pod_with_everything_uses_its_own_python(tmp_path):
    transport, layout = _pod(tmp_path)
    ready = prepare(transport, layout, sys.executable, for_recipe(load_recipe(REPO / "recipes" / "tiny-cpu.yaml")))
    assert ready.venv is None and ready.python == sys.executable


def test_a_recipe_needing_a_missing_package_gets_its_own_venv(tmp_path):
    """The probe names what is missing (here a tracker this machine lacks), and the venv key follows the set."""
    transport, layout = _pod(tmp_path)
    python_version = ".".join(map(str, sys.version_info[:3]))
    wanted = REQUIREMENTS + ("podtune-no-such-package>=1",)
    probe = transport.exec(f"cd {layout.code} && {sys.executable} -m remote.requirements 'podtune-no-such-package>=1'"
                           f" {DEEPSPEED!r}", timeout_s=120)
    assert '"missing": ["podtune-no-such-package>=1"]' in probe.stdout  # deepspeed is installed for the tests
    key = requirements_hash(python_version, wanted)
    assert key != requirements_hash(python_version, REQUIREMENTS)
    assert key != requirements_hash(python_version, REQUIREMENTS + (DEEPSPEED,))
    # A venv already built for exactly this set is reused, not rebuilt (a real build would need the network).
    venv = Path(layout.venvs) / key
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / ".ready").touch()
    ready = prepare(transport, layout, sys.executable, wanted)
    assert (ready.venv, ready.created) == (str(venv), False)
