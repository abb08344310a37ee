"""The provider seam: outside orchestrator/providers/ no code asks which provider it has. What differs between
providers (renting, credentials, doctor checks, whether the pod is this machine) is declared on the Provider
protocol (providers/base.py), so adding a provider is adding a class, not editing the modules that use one."""

from __future__ import annotations

import ast
from pathlib import Path

from orchestrator.providers import PROVIDERS
from tests.conftest import REPO


def _mentions_provider(node: ast.AST) -> bool:
    """`provider`, `provider_name`, `run.provider`, `summary.get("provider")`, `self._provider`, `x.name`."""
    if isinstance(node, ast.Attribute) and node.attr == "name":
        return True
    return "provider" in ast.unparse(node).lower()


def _provider_literals(node: ast.AST, names: set[str]) -> bool:
    """A string literal that is a provider's name, alone or in a tuple/list/set literal."""
    if isinstance(node, ast.Constant):
        return node.value in names
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_provider_literals(e, names) for e in node.elts)
    return False


def violations(path: Path, names: set[str]) -> list[str]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_provider_literals(s, names) for s in sides) and any(_mentions_provider(s) for s in sides
                                                                        if not _provider_literals(s, names)):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Match) and _mentions_provider(node.subject):
            for case in node.cases:
                if any(isinstance(p, ast.MatchValue) and _provider_literals(p.value, names)
                       for p in ast.walk(case.pattern)):
                    found.append((case.pattern.lineno, f"case {ast.unparse(case.pattern)}"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
              and node.args and _mentions_provider(node.args[0])):
            found.append((node.lineno, ast.unparse(node)))
    return [f"line {line}: {text}" for line, text in sorted(found)]


def scan(root: Path, names: set[str]) -> dict[str, list[str]]:
    """Every module of orchestrator/ outside providers/ -> the places that ask which provider it has."""
    package = root / "orchestrator"
    found = {}
    for path in sorted(package.rglob("*.py")):
        if (package / "providers") in path.parents:
            continue
        bad = violations(path, names)
        if bad:
            found[str(path.relative_to(root))] = bad
    return found


def test_no_module_outside_providers_asks_which_provider_it_has():
    assert scan(REPO, set(PROVIDERS)) == {}, (
        "declare what differs on the Provider protocol (orchestrator/providers/base.py) instead")


def test_the_scan_finds_each_way_of_asking(tmp_path):
    """The scanner itself: each form is caught, inside providers/ is allowed, and other literals are not provider names."""
    (tmp_path / "orchestrator" / "providers").mkdir(parents=True)
    (tmp_path / "orchestrator" / "x.py").write_text(
        "def f(provider, provider_name, summary, run, p, table, path):\n"
        "    a = provider == 'runpod'\n"
        "    b = summary.get('provider') == 'local'\n"
        "    c = provider_name not in ('local', 'ssh')\n"
        "    d = 'ssh' != run.provider\n"
        "    e = p.name == 'local'\n"
        "    g = getattr(provider, 'cpu_calibration', None)\n"
        "    h = hasattr(self_provider, 'rents')\n"
        "    match provider_name:\n"
        "        case 'runpod':\n"
        "            pass\n"
        "    fine = [k for k in table if k != 'local'] + [path.suffix == '.json', provider.rents is True]\n"
        "    return getattr(path, 'stem', None)\n")
    (tmp_path / "orchestrator" / "providers" / "__init__.py").write_text("ok = lambda name: name != 'runpod'\n")
    found = scan(tmp_path, {"local", "runpod", "ssh"})
    assert list(found) == ["orchestrator/x.py"]
    assert [line.split(":")[0] for line in found["orchestrator/x.py"]] == [f"line {n}" for n in range(2, 11) if n != 9]
