"""Fixtures for the pod-side unit tests: an isolated, offline HF_HOME and the tiny model built once."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _offline_hf_home(tmp_path, monkeypatch):
    # Nothing here may reach the Hub; every cache lands in the test's own directory.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from remote.tiny import ensure_tiny_model

    return ensure_tiny_model(tmp_path_factory.mktemp("hf-tiny"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)
