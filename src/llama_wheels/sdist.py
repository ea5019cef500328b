"""The pinned source: fetch, verify by sha256, slim for carrying, extract to a stable path.

A *slim* sdist drops ``.git``, ``docs/``, ``benches/``, ``media/`` and the vocab ``.gguf`` files
(77 MB -> ~12 MB, and it still builds). Next to it, ``<slim>.json`` records the sha256 of the
original PyPI sdist it came from and its own sha256, so an offline build can verify both links.
The source is extracted to ``<build-dir>/src/<name>-<sha12>`` so that every build compiles the
same paths, which is what lets ccache hit in a fresh build dir.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from llama_wheels import cmd
from llama_wheels.digest import sha256_file
from llama_wheels.errors import ChecksumError, OfflineMissing, SourceError, StorageError
from llama_wheels.fs import need_space, storage_errors

DROP_DIRS = (".git", "docs", "benches", "media")
DROP_GLOBS = ("vendor/llama.cpp/models/*.gguf",)


def sdist_name(version: str) -> str:
    return f"llama_cpp_python-{version}.tar.gz"


def slim_name(version: str) -> str:
    return f"llama_cpp_python-{version}.slim.tar.gz"


@dataclass(frozen=True)
class Source:
    """A verified sdist: the file, the PyPI sha256 it is pinned to, and whether it is slimmed."""

    path: Path
    original_sha256: str
    slim: bool


def _dropped(member: str) -> bool:
    parts = PurePosixPath(member).parts[1:]  # strip the top-level "llama_cpp_python-X/" folder
    if not parts:
        return False
    if parts[0] in DROP_DIRS:
        return True
    rel = PurePosixPath(*parts)
    return any(rel.match(g) for g in DROP_GLOBS)


def slim_sdist(original: Path, dest: Path, original_sha256: str) -> Path:
    """Write the slim sdist and its sidecar JSON. Deterministic: same input, same bytes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".partial")
    dropped = 0
    buf = io.BytesIO()
    with tarfile.open(original, "r:gz") as src, tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out:
        for m in src:
            if _dropped(m.name):
                dropped += m.size
                continue
            m.mtime = min(m.mtime, 1_700_000_000)
            out.addfile(m, src.extractfile(m) if m.isfile() else None)
    import gzip

    with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buf.getvalue())
    tmp.replace(dest)
    sidecar = {"original": original.name, "original_sha256": original_sha256, "slim_sha256": sha256_file(dest),
               "dropped_bytes": dropped, "dropped": [*DROP_DIRS, *DROP_GLOBS]}
    dest.with_name(dest.name + ".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return dest


def verify(path: Path, expected: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise ChecksumError(f"sha256 mismatch for {path.name}: expected {expected}, got {got}",
                            f"delete {path} and fetch it again; if it persists, check sdist-sha256 in pyproject.toml")


def verify_slim(path: Path, original_sha256: str) -> None:
    side = path.with_name(path.name + ".json")
    if not side.exists():
        raise OfflineMissing(f"{side.name} is missing next to {path.name}", "run nox -s prefetch again")
    info = json.loads(side.read_text())
    if info.get("original_sha256") != original_sha256:
        got = str(info.get("original_sha256"))
        raise ChecksumError(f"{path.name} was slimmed from an sdist with sha256 {got}, "
                            f"not the pinned {original_sha256}",
                            "run nox -s prefetch again for the pinned version")
    verify(path, info["slim_sha256"])


def find_offline(folder: Path, version: str, original_sha256: str) -> Source:
    """The sdist in a prefetch folder: the original if present, else the slim one."""
    for d in (folder / "sdist", folder):
        orig = d / sdist_name(version)
        if orig.exists():
            verify(orig, original_sha256)
            return Source(orig, original_sha256, slim=False)
        slim = d / slim_name(version)
        if slim.exists():
            verify_slim(slim, original_sha256)
            return Source(slim, original_sha256, slim=True)
    raise OfflineMissing(f"the llama-cpp-python {version} sdist is not in {folder}",
                         "run nox -s prefetch on a machine with network and carry the folder here")


def fetch(cache: Path, version: str, original_sha256: str, env: dict[str, str] | None = None) -> Source:
    """Download (once) with pip and verify."""
    path = cache / "sdist" / sdist_name(version)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = path.parent / ".download"
        # pip prepares the sdist's metadata even for a download. Only llama-cpp-python as source: with
        # `--no-binary :all:` its build requirements were built from source too (CMake: 15+ minutes).
        # Where scikit-build-core is installed (the build venv) no build environment is made at all.
        isolation = [] if importlib.util.find_spec("scikit_build_core") is None else ["--no-build-isolation"]
        cmd.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python", *isolation,
                 "--disable-pip-version-check", "--dest", str(tmp_dir), f"llama-cpp-python=={version}"], env=env)
        got = next(tmp_dir.glob("llama_cpp_python-*.tar.gz"), None)
        if got is None:
            raise SourceError("pip downloaded no sdist", "check the network and the index settings")
        got.replace(path)
    verify(path, original_sha256)  # on mismatch the file stays: either it or the pin is wrong
    return Source(path, original_sha256, slim=False)


def extract(source: Source, dest_root: Path) -> Path:
    """Extract once to a stable path; returns the project dir (holding pyproject.toml)."""
    tag = source.original_sha256[:12] + ("-slim" if source.slim else "")
    m = re.match(r"(llama_cpp_python-[^/]+?)(?:\.slim)?\.tar\.gz$", source.path.name)
    base = m[1] if m else "llama_cpp_python"
    target = dest_root / f"{base}-{tag}"
    stamp = target / ".extracted"
    if stamp.exists():
        return target / base
    staging = dest_root / f".{base}-{tag}.partial"
    if staging.exists():
        from llama_wheels.clean import remove_tree_within

        remove_tree_within(staging, dest_root)
    with tarfile.open(source.path, "r:gz") as tar:
        members = tar.getmembers()
        # What the files need, plus a block per entry: a full build dir is refused before anything is written.
        needed = sum(m.size for m in members if m.isfile()) + 4096 * len(members)
        need_space(dest_root, needed)
        with storage_errors(dest_root, needed):
            staging.mkdir(parents=True)
        try:
            with storage_errors(dest_root, needed):
                tar.extractall(staging, members=members, filter="data")  # refuses absolute paths, '..', links out
        except tarfile.FilterError as exc:
            raise SourceError(f"unsafe member in {source.path.name}: {exc}",
                              "the sdist is corrupt; fetch it again") from None
        except StorageError:
            from llama_wheels.clean import remove_tree_within

            remove_tree_within(staging, dest_root)  # ours: nothing half-extracted stays
            raise
    if not (staging / base / "pyproject.toml").exists():
        raise SourceError(f"{source.path.name} has no {base}/pyproject.toml", "the sdist is corrupt; fetch it again")
    (staging / ".extracted").write_text(source.path.name + "\n")
    if target.exists():
        from llama_wheels.clean import remove_tree_within

        remove_tree_within(target, dest_root)
    os.replace(staging, target)
    return target / base
