"""The laptop names the workspace's folders, the run folder's files and the event kinds only through
remote/events.py, the protocol module.

An AST scan, like test_architecture.py's: a string literal that spells a workspace folder, a run-folder file name or
an event kind in orchestrator/ fails the suite, so a change to the protocol cannot miss a copy of it on the laptop
side.
"""

from __future__ import annotations

import ast
import re

from remote.events import (CODE, CONSTRAINTS, HF_HOME_DIR, RUN_FILE_NAMES, RUNS, SECRETS, TENSORBOARD, VENVS,
                           EventKind)
from tests.conftest import REPO

FILE_NAMES = set(RUN_FILE_NAMES) | {HF_HOME_DIR, VENVS, SECRETS, TENSORBOARD}
# Names too common to flag on their own ("runs" is also a command and a column, "podtune" a user agent, the repo's
# constraints.txt the source of the pod's copy): flagged only as a component of a path, "{workspace}/runs/{id}".
PATH_ONLY = {CODE, RUNS, CONSTRAINTS}
KINDS = {kind.value for kind in EventKind}


def _names(names: set[str]) -> str:
    return "(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + ")"


# A protocol name as a path component inside a longer string: "{run_dir}/exit_code", "tail ... /x/train.log",
# "{workspace}/venvs/{key}"; a common one only after a slash: "{workspace}/runs/{id}", not "podtune stop".
END = r"(?=$|[/\s'\";|&<>)])"
IN_PATH = re.compile(r"(?:^|/)" + _names(FILE_NAMES) + END + "|/" + _names(PATH_ONLY) + END)
# Literals that spell a protocol name but mean something else, each with why.
ALLOWED = {
    ("orchestrator/cli.py", "recipe.yaml"),  # `podtune init`'s default output file, in the user's folder
    ("orchestrator/run.py", "tensorboard"),  # the tracker's name in the recipe's training.report_to, not the folder
}


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _as_key(tree: ast.AST) -> set[int]:
    """String constants used as a mapping key: `d["exit_code"]`, `d.get("step")`, `{"interrupted": True}`."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            ids.add(id(node.slice))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Constant)):
            ids.add(id(node.args[0]))
        elif isinstance(node, ast.Dict):
            ids.update(id(k) for k in node.keys if isinstance(k, ast.Constant))
    return ids


def _strings(node: ast.AST) -> list[ast.Constant]:
    """The node itself, or a tuple/list/set's elements, where they are string constants."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [n for n in items if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _kind_positions(tree: ast.AST) -> list[ast.Constant]:
    """Where an event-kind string acts as one: compared (`kind == "step"`, `kind in ("a", "b")`), a tuple of
    names (`END_KINDS = ("pipeline_done", ...)`), emitted, or the value of a "kind" field."""
    found: list[ast.Constant] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                found += _strings(operand)
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            found += _strings(node)
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "emit" and node.args:
                found += _strings(node.args[0])
            found += [s for k in node.keywords if k.arg == "kind" for s in _strings(k.value)]
        elif isinstance(node, ast.Dict):
            found += [s for k, v in zip(node.keys, node.values)
                      if isinstance(k, ast.Constant) and k.value == "kind" for s in _strings(v)]
    return found


def protocol_literals(source: str) -> list[tuple[int, str]]:
    """(line, literal) for each string literal in `source` that spells a run file name or an event kind."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    keys = _as_key(tree)
    hits = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in skip:
            continue
        text = node.value
        spelled = text in FILE_NAMES and id(node) not in keys
        if spelled or (text not in FILE_NAMES | PATH_ONLY and IN_PATH.search(text)):
            hits.append((node.lineno, text))
    hits += [(node.lineno, node.value) for node in _kind_positions(tree) if node.value in KINDS]
    return sorted(set(hits))


def test_the_laptop_names_run_files_and_event_kinds_only_through_the_protocol_module():
    found = {}
    for path in sorted((REPO / "orchestrator").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        hits = [(line, text) for line, text in protocol_literals(path.read_text(encoding="utf-8"))
                if (rel, text) not in ALLOWED]
        if hits:
            found[rel] = hits
    assert not found, f"use remote.events' names (RunPaths, the file-name constants, EventKind) instead: {found}"


def test_the_scan_catches_each_way_a_name_creeps_back():
    source = '''
"""A docstring may say events.jsonl and step."""
from pathlib import Path
END = ("pipeline_done", "self_stopped")
def f(run_dir, local, e, transport, log):
    transport.read_bytes(f"{run_dir}/exit_code")
    transport.exec(f"tail -n 5 {run_dir}/train.log", timeout_s=3)
    (local / "report.json").read_text()
    if e.get("kind") == "train_done" or e["kind"] in ("watchdog_stop", "merge_done"):
        log.emit("resumed")
    return {"kind": "step", "exit_code": 0, "interrupted": e.get("interrupted"), "x": e["step"], "y": "step"}
def g(ws, run_id, transport):
    transport.exec(f"cd {ws}/podtune && ls {ws}/runs/{run_id} {ws}/venvs", timeout_s=3)
    env = {"HF_HOME": str(Path(ws) / "hf"), "secret": f"{ws}/.podtune-secrets/{run_id}"}
    return env, "podtune stop", "runs", ("podtune", "runs")
'''
    assert protocol_literals(source) == [
        (4, "pipeline_done"), (4, "self_stopped"), (6, "/exit_code"), (7, "/train.log"), (8, "report.json"),
        (9, "merge_done"), (9, "train_done"), (9, "watchdog_stop"), (10, "resumed"), (11, "step"),
        (13, "/podtune && ls "), (13, "/runs/"), (13, "/venvs"), (14, "/.podtune-secrets/"), (14, "hf"),
    ]


def test_what_crosses_is_what_the_names_say():
    """The protocol's names keep the strings already on volumes and in state DBs."""
    from remote.events import EVENTS, EXIT_CODE, RUN_INFO, Phase, RunPaths

    assert (EVENTS, RUN_INFO, EXIT_CODE) == ("events.jsonl", "run.json", "exit_code")
    assert [p.value for p in Phase] == ["plan", "provision", "connect", "sync", "setup", "download", "train",
                                        "merge", "push", "idle", "stop"]
    assert f"{Phase.TRAIN}" == "train" and str(EventKind.STEP) == "step"
    assert str(RunPaths.on_pod("/workspace/runs/r-1").events) == "/workspace/runs/r-1/events.jsonl"


def test_a_workspace_keeps_the_folders_existing_volumes_have():
    """A resumed pod finds its model cache, venvs, secrets and runs where an older podtune put them."""
    from pathlib import Path

    from remote.events import WorkspacePaths

    ws = WorkspacePaths.on_pod("/workspace")
    assert [str(p) for p in (ws.code, ws.constraints, ws.hf_home, ws.venvs, ws.secrets, ws.legacy_token)] == [
        "/workspace/podtune", "/workspace/podtune/constraints.txt", "/workspace/hf", "/workspace/venvs",
        "/workspace/.podtune-secrets", "/workspace/.podtune-secrets/hf_token"]
    assert str(ws.run("r-1").events) == "/workspace/runs/r-1/events.jsonl"
    local = WorkspacePaths(Path("/tmp/ws")).run("r-1")  # the same layout on the machine's own filesystem
    assert isinstance(local.root, Path) and local.root == Path("/tmp/ws/runs/r-1")
