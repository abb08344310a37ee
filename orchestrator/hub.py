"""Hub checks run by `plan` before anything is rented: the token works, can write to the target repo, can read the base."""

from __future__ import annotations

import logging
from typing import Any, Callable, TypeVar

from remote import hub_retry
from remote.recipe import Recipe
from remote.redact import Redactor

from .errors import HubError

T = TypeVar("T")
TOKENS_URL = "https://huggingface.co/settings/tokens"
ATTEMPTS = 3  # a person is waiting: a few quick retries, then a clear message
TIMEOUT_S = 30.0


def check_access(recipe: Recipe, token: str | None) -> list[str]:
    """Notes to show; HubError (never containing the token) when the run could not download or push."""
    from huggingface_hub import HfApi

    redact = Redactor([token])
    # token=False: with no token found, ask anonymously rather than let the client look for one elsewhere.
    api = HfApi(token=token or False)
    notes: list[str] = []
    # The runpod SDK sets the root logger to INFO on import; the client's per-request lines are noise to a person.
    http_log = logging.getLogger("httpx2")
    level = http_log.level
    http_log.setLevel(max(level, logging.WARNING))
    try:
        with hub_retry.request_timeouts(read_s=TIMEOUT_S):
            me = _whoami(api) if token else None
            if recipe.output.hub_repo:
                assert me is not None, "plan.check_hub refuses a hub_repo without a token"
                notes.append(_check_write(api, me, recipe.output.hub_repo, recipe.output.private))
            if not recipe.model.is_builtin:
                notes.append(_check_base(api, recipe.model.base, with_token=bool(token)))
    except HubError as exc:
        exc.message, exc.hint = redact(exc.message), redact(exc.hint) if exc.hint else exc.hint
        exc.args = (exc.message,)
        raise
    finally:
        http_log.setLevel(level)
    return notes


def whoami(token: str) -> dict[str, Any]:
    """Who the token belongs to and its access (`auth.accessToken`), for `podtune doctor`; HubError if refused."""
    from huggingface_hub import HfApi

    with hub_retry.request_timeouts(read_s=TIMEOUT_S):
        return _whoami(HfApi(token=token))


def can_write_somewhere(access: dict[str, Any]) -> bool:
    """Whether a fine-grained token may write to any repo at all (scopes that cannot be read count as yes)."""
    scoped = (access.get("fineGrained") or {}).get("scoped")
    if not isinstance(scoped, list):
        return True
    return any(isinstance(s, dict) and "repo.write" in (s.get("permissions") or []) for s in scoped)


def _ask(fn: Callable[[], T], what: str) -> T:
    """fn() with retries on 5xx/timeouts; a Hub that stays down becomes a HubError, other errors pass through."""
    try:
        return hub_retry.call(fn, attempts=ATTEMPTS)
    except Exception as exc:
        if hub_retry.is_transient(exc):
            raise HubError(f"the Hub did not answer while {what}: {hub_retry.describe(exc)}",
                           "try again in a few minutes (https://status.huggingface.co)") from None
        raise


def _whoami(api) -> dict[str, Any]:
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return _ask(api.whoami, "checking the token")
    except HfHubHTTPError as exc:
        if hub_retry.status_of(exc) == 401:
            raise HubError("the Hub token is invalid or revoked",
                           f"create a new token at {TOKENS_URL} and set HF_TOKEN (or run `hf auth login`)") from None
        raise HubError(f"the Hub refused to check the token: {hub_retry.describe(exc)}") from None


def _check_write(api, me: dict[str, Any], repo_id: str, private: bool) -> str:
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    namespace = repo_id.split("/", 1)[0]
    user = str(me.get("name"))
    orgs = {o.get("name"): o.get("roleInOrg") for o in me.get("orgs") or [] if isinstance(o, dict)}
    access = (me.get("auth") or {}).get("accessToken") or {}
    role = access.get("role")
    fix = f"create a write token at {TOKENS_URL}"
    if namespace != user and namespace not in orgs:
        others = ", ".join(sorted(orgs)) or "none"
        raise HubError(f"token cannot write to {namespace}: it belongs to {user}, who is not {namespace} nor a "
                       f"member of it (organisations: {others})",
                       f"set output.hub_repo to {user}/{repo_id.split('/', 1)[1]}, or use a token of {namespace}")
    if role == "read":
        raise HubError(f"token cannot write to {namespace}: it is a read-only token", f"{fix}, then run again")
    if orgs.get(namespace) == "read":
        raise HubError(f"token cannot write to {namespace}: {user} has only read access in {namespace}",
                       f"ask an admin of {namespace} for write access, or push to {user}/...")
    try:
        # An existing repo answers the question exactly, fine-grained tokens included.
        _ask(lambda: api.auth_check(repo_id, write=True), "checking write access")
        state = "existing repo, write access checked"
    except RepositoryNotFoundError:
        state = f"new {'private' if private else 'public'} repo"
        if role == "fineGrained" and not _fine_grained_can_write(access, namespace, default=True):
            raise HubError(f"token cannot write to {namespace}: this fine-grained token has no repo write "
                           f"permission there", f"{fix} (or add write access to {namespace}), then run again") from None
    except HfHubHTTPError as exc:
        if hub_retry.status_of(exc) in (401, 403):
            raise HubError(f"token cannot write to {namespace} ({repo_id} refused write access)",
                           f"{fix}, then run again") from None
        raise HubError(f"the Hub refused the write check on {repo_id}: {hub_retry.describe(exc)}") from None
    return f"Hub: writing to {repo_id} as {user} (token role {role or 'unknown'}; {state})"


def _fine_grained_can_write(access: dict[str, Any], namespace: str, *, default: bool) -> bool:
    """Whether a fine-grained token's scopes grant repo writes in `namespace`; `default` when they cannot be read."""
    scoped = (access.get("fineGrained") or {}).get("scoped")
    if not isinstance(scoped, list):
        return default
    for scope in scoped:
        if not isinstance(scope, dict):
            continue
        entity = scope.get("entity") or {}
        if entity.get("name") == namespace and "repo.write" in (scope.get("permissions") or []):
            return True
    return False


def _check_base(api, base: str, *, with_token: bool) -> str:
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        _ask(lambda: api.auth_check(base), f"checking access to {base}")
    except GatedRepoError:  # a subclass of RepositoryNotFoundError: caught first
        who = "this token has no access to it" if with_token else "no Hub token was found"
        raise HubError(f"the base model {base} is gated and {who}",
                       f"accept the licence at https://huggingface.co/{base} (logged in as the token's user), "
                       "then run again" + ("" if with_token else "; set HF_TOKEN or run `hf auth login`")) from None
    except RepositoryNotFoundError:
        raise HubError(f"the base model {base} was not found on the Hub (or is private to another account)",
                       "check model.base; for a private model use a token of an account that can read it") from None
    except HfHubHTTPError as exc:
        raise HubError(f"the Hub refused access to {base}: {hub_retry.describe(exc)}") from None
    return f"Hub: base model {base} readable"
