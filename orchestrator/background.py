"""Imports a module on a daemon thread, so its import time passes while the caller waits on the network."""

from __future__ import annotations

import importlib
import threading


def import_in_background(module: str) -> None:
    """Start importing `module`. Whoever imports it next waits only for what is left (Python's import lock)."""
    threading.Thread(target=_import, args=(module,), name=f"import {module}", daemon=True).start()


def _import(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception:  # the caller's own import raises it again, where it is used and shown
        pass
