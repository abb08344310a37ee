"""Hub checks run by `plan` before anything is rented: the token works, can write to the target repo, can read the base."""

from __future__ import annotations

import logging
from typing import Any, Callable, TypeVar

from remote import hub_retry
from remote.recipe import Recipe
from remote.redact import Redactor

from ..errors import HubError

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
            if not recipe.dataset.is_local:
                notes.append(_check_dataset(api, recipe, with_token=bool(token)))
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
    orgs = {str(o.get("name")): o.get("roleInOrg") for o in me.get("orgs") or [] if isinstance(o, dict)}
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
        public = not _ask(lambda: api.repo_info(repo_id).private, "checking the repo's visibility")
        if public and private:
            raise HubError(f"{repo_id} exists and is public, but output.private is true (the default): the model "
                           "would be published", "make the repo private on the Hub, choose another output.hub_repo, "
                           "or set output.private: false to publish it")
        state = f"existing repo, write access checked; {'public' if public else 'private'}"
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


def _check_dataset(api, recipe: Recipe, *, with_token: bool) -> str:
    """The Hub dataset exists, is readable, and its card's features have the columns the format needs.

    Only the dataset's metadata is fetched (no data): a card without features leaves the check to the pod."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    from remote.datacheck import DataError, check_columns

    from ..errors import ConfigError

    source = recipe.dataset.source
    try:
        info = _ask(lambda: api.dataset_info(source), f"reading the dataset card of {source}")
    except GatedRepoError:
        raise HubError(f"the dataset {source} is gated and " + ("this token has no access to it" if with_token
                       else "no Hub token was found"),
                       f"accept its terms at https://huggingface.co/datasets/{source}, then run again") from None
    except RepositoryNotFoundError:
        raise HubError(f"the dataset {source} was not found on the Hub (or is private to another account)",
                       "check dataset.source; a local file must end in .json or .jsonl") from None
    except HfHubHTTPError as exc:
        raise HubError(f"the Hub refused access to the dataset {source}: {hub_retry.describe(exc)}") from None
    features, splits = _card_features(info.card_data)
    if features is None:
        return f"Hub: dataset {source} readable (its card lists no columns: the pod checks them before training)"
    where = f"dataset.source {source} (per its dataset card)"
    try:
        check_columns(recipe, features, where)
    except DataError as exc:
        raise ConfigError(exc.message, exc.hint) from None
    split = recipe.dataset.split.split("[", 1)[0]
    if splits and split not in splits:
        raise ConfigError(f"{where} has no split '{split}'; its splits are: {', '.join(splits)}",
                          "set dataset.split to one of them (slicing such as train[:10%] works)")
    if splits.get(split) == 0:
        raise ConfigError(f"{where}: split '{split}' has no records", "pick another dataset.split")
    return f"Hub: dataset {source} has the columns {recipe.dataset.format} needs ({', '.join(features)})"


def _card_features(card: Any) -> tuple[list[str] | None, dict[str, int | None]]:
    """(column names or None, {split: record count}) from a dataset card's `dataset_info` (default config first)."""
    data = card.to_dict() if hasattr(card, "to_dict") else (card or {})
    block = data.get("dataset_info") if isinstance(data, dict) else None
    if isinstance(block, list):  # one entry per config
        block = next((b for b in block if isinstance(b, dict) and b.get("config_name") == "default"),
                     block[0] if block else None)
    if not isinstance(block, dict) or not isinstance(block.get("features"), list):
        return None, {}
    names = [f["name"] for f in block["features"] if isinstance(f, dict) and "name" in f]
    splits = {s["name"]: s.get("num_examples") for s in block.get("splits") or [] if isinstance(s, dict) and "name" in s}
    return names, splits
