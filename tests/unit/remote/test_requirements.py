"""The pod's package check reads versions itself where it can: it must answer as importlib.metadata does."""

from __future__ import annotations

import sys
from importlib import metadata

import pytest

import remote.requirements as requirements


@pytest.fixture
def fresh_listings(monkeypatch):
    monkeypatch.setattr(requirements, "_listings", {})


def _dist_info(folder, name: str, version: str) -> None:
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody: Version: 0\n")


def test_every_installed_distribution_has_the_version_importlib_metadata_gives(fresh_listings):
    names = {d.metadata["Name"] for d in metadata.distributions()}
    assert len(names) > 20
    assert {n: requirements.installed_version(n) for n in names} == {n: metadata.version(n) for n in names}
    assert requirements.installed_version("surely-not-installed-podtune-x") is None


def test_the_first_folder_on_sys_path_wins_even_with_an_egg_info(tmp_path, monkeypatch, fresh_listings):
    first, second = tmp_path / "first", tmp_path / "second"
    egg = first / "Foo_Bar.egg-info"
    egg.mkdir(parents=True)
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: foo-bar\nVersion: 1.0\n")
    _dist_info(second, "foo_bar", "2.0")
    _dist_info(second, "Other.Pkg", "3.1")
    monkeypatch.setattr(sys, "path", [str(first), str(second)])
    assert requirements.installed_version("foo-bar") == metadata.version("foo-bar") == "1.0"
    assert requirements.installed_version("other-pkg") == metadata.version("other-pkg") == "3.1"
    assert requirements.missing(("foo-bar>=2", "other_pkg>=3", "other-pkg[extra]>=3; python_version > '3'")) == [
        "foo-bar>=2"]
