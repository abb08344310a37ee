"""Finds the user's tokens where their own tools keep them, and masks them wherever text leaves podtune.

Tokens are only ever held in memory, written to a 0600 file on the pod over SFTP, and masked by redact().
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from remote.redact import Redactor


def hf_token() -> str | None:
    """HF_TOKEN, else the `hf auth login` store ($HF_TOKEN_PATH or $HF_HOME/token or ~/.cache/huggingface/token)."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(name):
            return os.environ[name].strip()
    hf_home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    path = Path(os.environ.get("HF_TOKEN_PATH") or hf_home / "token")
    try:
        return path.read_text().strip() or None
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None


def runpod_api_key() -> str | None:
    """RUNPOD_API_KEY, else ~/.runpod/config.toml (what `runpod config` writes)."""
    if os.environ.get("RUNPOD_API_KEY"):
        return os.environ["RUNPOD_API_KEY"].strip()
    path = Path.home() / ".runpod" / "config.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (FileNotFoundError, tomllib.TOMLDecodeError):
        return None
    profile = data.get("default", data)
    key = profile.get("api_key") if isinstance(profile, dict) else None
    return key.strip() if isinstance(key, str) and key.strip() else None


def wandb_api_key() -> str | None:
    """WANDB_API_KEY, else the `wandb login` entry for api.wandb.ai in ~/.netrc (or $NETRC)."""
    if os.environ.get("WANDB_API_KEY"):
        return os.environ["WANDB_API_KEY"].strip()
    import netrc

    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        entry = netrc.netrc(str(path)).authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError, PermissionError, OSError):
        return None
    key = entry[2] if entry else None
    return key.strip() if key and key.strip() else None


def redactor() -> Redactor:
    return Redactor([hf_token(), runpod_api_key(), wandb_api_key()])


_REDACTOR: Redactor | None = None


def redact(text: str) -> str:
    global _REDACTOR
    if _REDACTOR is None:
        _REDACTOR = redactor()
    return _REDACTOR(text)
