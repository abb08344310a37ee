"""`podtune doctor`: every credential and tool podtune needs, checked at once, each with how to fix it.

A check fails only when something podtune will need is broken or missing: a key that is present but rejected,
a private key others can read, a state DB that does not open. What a recipe does not need (a RunPod key for a
local run) is a warning. With a recipe, its own needs become required (provider, Hub repo, ssh host).
No secret is ever shown: a token appears as its prefix only (`hf_…`).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from remote.recipe import Recipe

from .errors import PodtuneError

OK, WARN, FAIL, UNKNOWN, SKIP = "ok", "warn", "fail", "unknown", "skip"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""
    required: bool = False


def main(recipe_path: Path | None, *, as_json: bool, console) -> bool:
    """Run every check and show them (a table, or JSON); True when no required check failed."""
    import json

    recipe = None
    if recipe_path is not None:
        from .run import load_recipe_or_fail

        recipe = load_recipe_or_fail(recipe_path)
    checks = run_checks(recipe)
    if as_json:
        print(json.dumps(to_json(checks), indent=1, ensure_ascii=False))
    else:
        render(console, checks)
    return not failed(checks)


def run_checks(recipe: Recipe | None = None) -> list[Check]:
    """Every provider's own checks (required for the recipe's), then the Hub, podtune's files and the ssh client."""
    from .providers import PROVIDERS, provider_class

    mine = recipe.compute.provider if recipe else None
    by_provider = [c for name in PROVIDERS for c in provider_class(name).doctor_checks(recipe if name == mine else None)]
    return [*by_provider, *hub_checks(recipe), ssh_key_check(), state_db_check(), ssh_client_check()]


def failed(checks: list[Check]) -> bool:
    return any(c.status == FAIL for c in checks)


def absent(name: str, what: str, needed_for: str, fix: str, required: bool) -> Check:
    """Absent: a failure when this run needs it, else a warning that says when it would be needed."""
    if required:
        return Check(name, FAIL, what, fix, True)
    return Check(name, WARN, f"{what} (needed only {needed_for})", fix, False)


# ---- Hugging Face Hub -----------------------------------------------------------------------------------------
def hf_token_source() -> str | None:
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(name):
            return name
    hf_home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    path = Path(os.environ.get("HF_TOKEN_PATH") or hf_home / "token")
    return str(path) if path.is_file() else None


def hub_checks(recipe: Recipe | None) -> list[Check]:
    from .planning import hub
    from .secrets import hf_token

    token = hf_token()
    wants_push = bool(recipe and recipe.output.hub_repo)
    fix_token = f"create a write token at {hub.TOKENS_URL}, then export HF_TOKEN=... or run `hf auth login`"
    if not token:
        checks = [absent("Hub token", "not set", "to push models and to read gated bases", fix_token, wants_push)]
    else:
        checks = [_hub_token_check(token, required=wants_push, fix=fix_token)]
    if recipe is None or (token and checks[0].status == FAIL):
        return checks
    from .planning.plan import check_hub

    try:
        notes = check_hub(recipe, token)  # the same checks `plan` makes: write access to hub_repo, base readable
    except PodtuneError as exc:
        return [*checks, Check("Hub access (recipe)", FAIL, exc.message, exc.hint or "", True)]
    detail = "; ".join(n.removeprefix("Hub: ") for n in notes) or "nothing to check (built-in base, no hub_repo)"
    return [*checks, Check("Hub access (recipe)", OK, detail, required=True)]


def _hub_token_check(token: str, *, required: bool, fix: str) -> Check:
    from .planning import hub
    from .errors import HubError

    source = hf_token_source()
    shown = f"{token[:3]}…" if token.startswith("hf_") else "…"
    try:
        me = hub.whoami(token)
    except HubError as exc:
        return Check("Hub token", FAIL, f"{exc.message} (token {shown} from {source})", exc.hint or fix, True)
    access = (me.get("auth") or {}).get("accessToken") or {}
    role = access.get("role") or "unknown"
    who = f"token {shown} of {me.get('name')} from {source}, role {role}"
    loose = _group_readable(source)
    if role == "read" or (role == "fineGrained" and not hub.can_write_somewhere(access)):
        return Check("Hub token", FAIL if required else WARN, f"{who}: read-only, cannot push models", fix, required)
    if loose:
        return Check("Hub token", WARN, f"{who}; but {source} is readable by other users", f"chmod 600 {source}", required)
    return Check("Hub token", OK, f"{who}: can write", required=required)


def _group_readable(source: str | None) -> bool:
    if not source or not source.startswith("/"):
        return False
    try:
        return bool(Path(source).stat().st_mode & 0o077)
    except OSError:
        return False


# ---- podtune's own files --------------------------------------------------------------------------------------
def ssh_key_check() -> Check:
    from cryptography.hazmat.primitives import serialization

    from .paths import ssh_key_path

    path = ssh_key_path()
    pub = path.with_suffix(".pub")
    if not path.exists():
        return Check("podtune SSH key", OK, f"none yet: podtune creates {path} on its first RunPod run")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        return Check("podtune SSH key", FAIL, f"{path} has permissions {mode:04o}: other users can read it",
                     f"chmod 600 {path}", True)
    regenerate = f"rm {path} {pub} (podtune makes a new pair; pods made with the old key keep only the old one)"
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        return Check("podtune SSH key", FAIL, f"{path} is not a readable OpenSSH private key ({exc.__class__.__name__})",
                     regenerate, True)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    try:
        matches = pub.read_text().split()[:2] == public.split()[:2]
    except OSError:
        matches = False
    if not matches:
        return Check("podtune SSH key", FAIL, f"{pub} is missing or does not match {path}",
                     f"ssh-keygen -y -f {path} > {pub}", True)
    return Check("podtune SSH key", OK, f"{path} (0600), public half matches")


def state_db_check() -> Check:
    from .paths import state_db_path
    from .state import MIGRATIONS

    path = state_db_path()
    if not path.exists():
        return Check("state DB", OK, f"none yet: podtune creates {path} on its first run")
    if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK):
        return Check("state DB", FAIL, f"{path} (or its directory) is not readable and writable by you",
                     f"chmod u+rw {path} {path.parent}, or set PODTUNE_HOME to a directory you own", True)
    aside = f"mv {path} {path}.broken (podtune starts a new one; past runs are no longer listed)"
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            applied = {row[0] for row in db.execute("SELECT name FROM _podtune_migrations")}
            runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        return Check("state DB", FAIL, f"{path} does not open as podtune's database ({exc})", aside, True)
    if check != "ok":
        return Check("state DB", FAIL, f"{path} is damaged (quick_check: {check})", aside, True)
    known = {m.__name__ for m in MIGRATIONS}
    if applied - known:
        return Check("state DB", FAIL, f"{path} was written by a newer podtune ({', '.join(sorted(applied - known))})",
                     "upgrade podtune (pip install -U podtune)", True)
    pending = len(known - applied)
    later = f"; {pending} schema update(s) applied on the next run" if pending else ""
    return Check("state DB", OK, f"{path}: {runs} run(s), schema ok{later}")


# ---- this machine ---------------------------------------------------------------------------------------------
def ssh_client_check() -> Check:
    found = shutil.which("ssh")
    if found:
        return Check("ssh client", OK, found)
    return Check("ssh client", WARN, "no `ssh` on PATH (needed only by `podtune ssh`)",
                 "install OpenSSH's client (apt-get install openssh-client)")


# ---- output ---------------------------------------------------------------------------------------------------
def to_json(checks: list[Check]) -> dict[str, Any]:
    from .secrets import redact

    rows = [{k: redact(v) if isinstance(v, str) else v for k, v in asdict(c).items()} for c in checks]
    return {"ok": not failed(checks), "checks": rows}


STYLE = {OK: "green", WARN: "yellow", FAIL: "red", UNKNOWN: "cyan", SKIP: "dim"}


def render(console, checks: list[Check]) -> None:
    from rich.table import Table

    from .secrets import redact

    from rich.text import Text

    table = Table(title="podtune doctor", show_lines=False)
    for col in ("check", "status", "detail", "how to fix"):
        table.add_column(col, overflow="fold")
    for c in checks:  # Text, not markup: paths and messages may hold square brackets
        table.add_row(Text(c.name), Text(c.status, style=STYLE[c.status]), Text(redact(c.detail)), Text(redact(c.fix)))
    console.print(table)
    bad = [c.name for c in checks if c.status == FAIL]
    console.print(f"{len(bad)} check(s) failed: {', '.join(bad)}" if bad else "all required checks passed",
                  style="red" if bad else "green", markup=False)
