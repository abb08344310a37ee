"""Import rules that keep the two sides apart: the laptop never loads the training stack, the pod never needs the
laptop's code, and product code never reaches into tests. Each rule fails the suite when an import breaks it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate", "deepspeed")
# The pod-side modules the laptop may import: standard library + pydantic/yaml only (the shared protocol).
LIGHT_REMOTE = {"remote", "remote.recipe", "remote.events", "remote.redact", "remote.datacheck",
                "remote.requirements", "remote.hub_retry"}


def imports(package: str) -> dict[str, set[str]]:
    """module file -> every module name it imports (at any depth: a lazy import still counts)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(REPO))] = names
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def test_remote_never_imports_the_laptop_side():
    bad = {f: sorted(n for n in names if top(n) == "orchestrator") for f, names in imports("remote").items()}
    assert not {f: n for f, n in bad.items() if n}


def test_the_laptop_never_imports_the_training_stack():
    bad = {f: sorted(n for n in names if top(n) in HEAVY) for f, names in imports("orchestrator").items()}
    assert not {f: n for f, n in bad.items() if n}


def test_the_laptop_imports_only_the_light_pod_modules():
    bad = {f: sorted(n for n in names if top(n) == "remote" and n not in LIGHT_REMOTE
                     and n.rsplit(".", 1)[0] not in LIGHT_REMOTE - {"remote"})
           for f, names in imports("orchestrator").items()}
    assert not {f: n for f, n in bad.items() if n}


def test_product_code_never_imports_tests():
    for package in ("orchestrator", "remote"):
        bad = {f: sorted(n for n in names if top(n) in ("tests", "bench")) for f, names in imports(package).items()}
        assert not {f: n for f, n in bad.items() if n}


def test_importing_every_laptop_module_loads_nothing_heavy():
    """What actually lands in sys.modules (transitively) when every orchestrator module is imported."""
    code = (
        "import importlib, json, pkgutil, sys, orchestrator\n"
        "for m in pkgutil.walk_packages(orchestrator.__path__, 'orchestrator.'):\n"
        "    importlib.import_module(m.name)\n"
        f"print(json.dumps(sorted(n for n in sys.modules if n.split('.')[0] in {HEAVY!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_rules_catch_a_forbidden_import(tmp_path, monkeypatch):
    """The scanner itself: a lazy torch import inside a function is found."""
    pkg = tmp_path / "orchestrator"
    pkg.mkdir()
    (pkg / "x.py").write_text("def f():\n    import torch.nn\n    from remote.train import train\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    names = imports("orchestrator")["orchestrator/x.py"]
    assert "torch.nn" in names and "remote.train" in names
    assert "remote.train" not in LIGHT_REMOTE


# orchestrator/pod (talking to a pod) and orchestrator/planning (deciding before renting) each serve the phase
# machine: they use their own package and the shared basics, never each other, the CLI, the phase machine or state.
CLUSTERS = ("orchestrator.pod", "orchestrator.planning")
BASICS = ("orchestrator.__version__", "orchestrator.errors", "orchestrator.paths", "orchestrator.providers")


def resolved_imports(package: str) -> dict[str, set[str]]:
    """module file -> the orchestrator modules it imports, relative imports resolved to absolute names."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package.replace(".", "/")).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        here = parts[:-1]  # the package a relative import starts from (an __init__ is its own package too)
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1]) if node.level else ""
                module = ".".join(p for p in (base, node.module or "") if p)
                names.update(f"{module}.{a.name}" if not node.module and node.level else module for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        found[str(path.relative_to(REPO))] = {n for n in names if top(n) == "orchestrator"}
    return found


def _strays(package: str) -> dict[str, list[str]]:
    own = package
    bad = {}
    for f, names in resolved_imports(package).items():
        wrong = sorted(n for n in names if n != "orchestrator" and not n.startswith(own)
                       and not any(n == b or n.startswith(b + ".") for b in BASICS))
        if wrong:
            bad[f] = wrong
    return bad


def test_the_pod_and_planning_packages_stay_apart_from_each_other_and_the_phase_machine():
    for package in CLUSTERS:
        assert _strays(package) == {}, package


def test_the_cluster_rule_catches_planning_reaching_into_pod(tmp_path, monkeypatch):
    pkg = tmp_path / "orchestrator" / "planning"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("from ..pod.sync import sync\nfrom .estimate import for_offer\nfrom ..errors import X\n"
                              "def f():\n    from ..run import Runner\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert _strays("orchestrator.planning") == {
        "orchestrator/planning/x.py": ["orchestrator.pod.sync", "orchestrator.run"]}
