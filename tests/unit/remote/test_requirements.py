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


def test_the_quick_floor_check_agrees_with_packaging():
    """`name>=X.Y` is answered without packaging's parser where the installed version is a plain release."""
    from packaging.specifiers import SpecifierSet

    from remote.requirements import _meets_floor

    for version in ("5.0", "5.0.0", "4.9.9", "5", "10.1", "2.5.1+cu121", "0.21", "0.20.99", "1.16.0", "6.0.2"):
        for floor in ("5.0", "5", "0.21", "1.16", "6", "2.5.1", "10.0.1"):
            want = SpecifierSet(f">={floor}").contains(version, prereleases=True)
            assert _meets_floor(version, floor) is want, (version, floor)
    for odd in ("5.0.0rc1", "5.0.dev0", "1.0.post1", "1!2.0"):  # left to packaging
        assert _meets_floor(odd, "5.0") is None


def test_a_missing_or_too_old_package_is_named(monkeypatch):
    import remote.requirements as req

    have = {"torch": "2.5.1+cu121", "peft": "0.20.1", "trl": "1.16.0rc1"}
    monkeypatch.setattr(req, "installed_version", lambda name: have.get(name))
    assert req.missing(("torch", "peft>=0.21", "trl>=1.16", "wandb>=0.19", "torch>=2.5")) == ["peft>=0.21", "trl>=1.16", "wandb>=0.19"]  # 1.16.0rc1 comes before 1.16
