"""Safe deletion: the hand procedure's temp-clearing step, without its risks.

Ownership is earned, not assumed: :func:`claim` stamps a folder with our marker only when it creates
it or finds it empty, and :func:`owned_subdir` records each top-level entry llama-wheels creates in the
marker. Clean-up removes only those recorded entries (anything else is listed and kept), then the pip
cache through pip. Symlinks and junctions are removed as links, never followed. A root is never
removed itself; ``/``, a drive root, a folder holding a home directory, the project or a repository,
and a folder in use by a running build (its lock) are refused.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from llama_wheels import cmd
from llama_wheels.errors import CleanRefused

MARKER = ".llama-wheels"


@dataclass
class CleanReport:
    removed: list[tuple[str, int]] = field(default_factory=list)  # path, bytes
    failed: list[tuple[str, str]] = field(default_factory=list)  # path, why (e.g. in use)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(b for _, b in self.removed)


def _is_link(path: Path) -> bool:
    return path.is_symlink() or (hasattr(os.path, "isjunction") and os.path.isjunction(path))


# Top-level names in a folder stamped by an older llama-wheels (plain-text marker, no list): the only
# entries clean-temp will still treat as ours there.
_LEGACY_OURS = re.compile(r"^(src|tmp|staging|smoke|bench(-.+)?|cpu(-.+)?|cu\d+-.+)$")


def _read_marker(root: Path) -> dict[str, Any] | None:
    """The marker's record, or None if ``root`` has no marker. An old plain-text marker reads as legacy."""
    marker = root / MARKER
    if _is_link(marker) or not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return {"owner": "llama-wheels", "legacy": True, "created": []}
    if not isinstance(data, dict) or data.get("owner") != "llama-wheels":
        return None
    data.setdefault("created", [])
    return data


def _write_marker(root: Path, data: Mapping[str, Any]) -> None:
    tmp = root / f"{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, root / MARKER)


#: The build-dir example a refusal suggests, for this OS (C:\lwb keeps Windows paths short).
EXAMPLE = "C:\\lwb or .\\build" if os.name == "nt" else "./build (the default) or /var/tmp/lwb"


def inside_source_tree(root: Path) -> str | None:
    """Why ``root`` may not be a build dir because of where it lies, or None: inside a repository's ``.git``
    folder (git's own files), or inside a project's ``src/`` (a build there would be packaged and imported)."""
    real = Path(os.path.realpath(root))
    for p in (real, *real.parents):
        if p.name == ".git":
            return f"{root} is inside the repository folder {p}"
        if p.name == "src" and any((p.parent / n).is_file() for n in ("pyproject.toml", "setup.py", "setup.cfg")):
            return f"{root} is inside the source folder {p} of the project {p.parent}"
    return None


def claim(root: Path) -> None:
    """Make ``root`` ours: create it, or take it over only while it is empty or already carries our marker.

    An existing folder that holds anything else is refused (exit 10): llama-wheels never stamps a folder
    it did not create, so ``clean-temp`` can never empty someone's files.
    """
    if _is_link(root):
        raise CleanRefused(f"{root} is a symlink or junction", "point build-dir at a real folder")
    inside = inside_source_tree(root)
    if inside:
        raise CleanRefused(inside, f"set build-dir (LLAMA_WHEELS_BUILD_DIR) to a folder of its own, e.g. {EXAMPLE}")
    if root.exists() and not root.is_dir():
        raise CleanRefused(f"{root} exists and is not a folder", "set build-dir to a new or empty folder")
    if root.is_dir() and _read_marker(root) is not None:
        return
    if root.is_dir() and any(root.iterdir()):
        raise CleanRefused(f"{root} already holds files that llama-wheels did not create",
                           "set build-dir (LLAMA_WHEELS_BUILD_DIR) to a new or empty folder")
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{MARKER}.marker-lock")):
        if _read_marker(root) is None:
            _write_marker(root, {"owner": "llama-wheels", "created": [],
                                 "note": "llama-wheels created this folder; `invoke clean-temp` removes only "
                                         "the entries listed in 'created'"})


def owned_subdir(root: Path, name: str) -> Path:
    """``root/name``, created and recorded in the marker as ours (``root`` is claimed first)."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith(MARKER):
        raise ValueError(f"not a plain folder name: {name!r}")
    claim(root)
    with FileLock(str(root / f"{MARKER}.marker-lock")):
        data = _read_marker(root) or {"owner": "llama-wheels", "created": []}
        if name not in data["created"]:
            data["created"] = sorted({*data["created"], name})
            _write_marker(root, data)
    path = root / name
    path.mkdir(exist_ok=True)
    return path


def created_entries(root: Path) -> set[str]:
    """Top-level names in ``root`` that llama-wheels created (from the marker)."""
    data = _read_marker(root)
    if data is None:
        return set()
    names = set(data["created"])
    if data.get("legacy"):
        names |= {p.name for p in root.iterdir() if _LEGACY_OURS.match(p.name)}
    return names


def _lock_paths(root: Path) -> tuple[Path, Path]:
    return root / f"{MARKER}.lock", root / f"{MARKER}.lock.json"


def _holder(root: Path) -> str:
    info = _lock_paths(root)[1]
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(data["since"])))
        return f"PID {data['pid']} ({data.get('what', '?')}) since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another llama-wheels process"


@contextmanager
def in_use(root: Path, what: str, *, wait: bool, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``root``'s lock while a build, smoke, bench or clean uses it.

    ``wait=False`` fails at once with "in use by PID N since T" (exit 10); ``wait=True`` says who it is
    waiting for, then waits. The lock is an OS file lock: a killed holder releases it.
    """
    claim(root)
    lock_file, info = _lock_paths(root)
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise CleanRefused(f"{root} is in use by {_holder(root)}",
                               "wait for that run to finish (or stop it), then try again") from None
        if log:
            log(f"{root} is in use by {_holder(root)}; waiting for it to finish")
        lock.acquire()
    try:
        tmp = info.with_name(f"{info.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "since": time.time(), "what": what}), encoding="utf-8")
        os.replace(tmp, info)
        yield
    finally:
        lock.release()


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def refuse_reason(root: Path, env: Mapping[str, str], project_root: Path | None = None) -> str | None:
    """Why ``root`` must never be cleaned, or None."""
    if _is_link(root):
        return f"{root} is a symlink or junction; point build-dir at the real folder"
    real = Path(os.path.realpath(root))
    if real == Path(real.anchor) or str(real) in ("/", "\\"):
        return f"{root} is a filesystem or drive root"
    homes = {Path.home(), *(Path(env[v]) for v in ("HOME", "USERPROFILE") if env.get(v))}
    for h in homes:
        if _is_within(Path(os.path.realpath(h)), real):
            return f"{root} is a home directory" if Path(os.path.realpath(h)) == real else \
                f"{root} contains the home directory {h}"
    if (real / ".git").exists():
        return f"{root} is a repository root"
    if project_root is not None and _is_within(Path(os.path.realpath(project_root)), real):
        return f"{root} contains the project {project_root}"
    try:
        repos = [p for p in real.iterdir() if (p / ".git").exists()]
    except OSError:
        repos = []
    if repos:
        return f"{root} contains the repository {repos[0]}"
    return None


def _size(path: Path) -> int:
    try:
        st = path.lstat()
    except OSError:
        return 0
    if stat.S_ISDIR(st.st_mode) and not _is_link(path):
        total = 0
        try:
            with os.scandir(path) as it:
                for e in it:
                    total += _size(Path(e.path))
        except OSError:
            pass
        return total
    return st.st_size


def _remove(path: Path, report: CleanReport, dry_run: bool) -> bool:
    """Remove ``path`` without following links. Returns True if fully removed."""
    if _is_link(path) or not path.is_dir():
        try:
            if not dry_run:
                if hasattr(os.path, "isjunction") and os.path.isjunction(path):
                    os.rmdir(path)
                else:
                    path.unlink()
            return True
        except OSError as exc:
            report.failed.append((str(path), exc.strerror or str(exc)))
            return False
    ok = True
    try:
        entries = list(os.scandir(path))
    except OSError as exc:
        report.failed.append((str(path), exc.strerror or str(exc)))
        return False
    for e in entries:
        ok = _remove(Path(e.path), report, dry_run) and ok
    if ok and not dry_run:
        try:
            path.rmdir()
        except OSError as exc:
            report.failed.append((str(path), exc.strerror or str(exc)))
            return False
    return ok


def remove_tree_within(path: Path, owner: Path, report: CleanReport | None = None, dry_run: bool = False) -> None:
    """Remove ``path`` (a file, link or folder), which must lie strictly inside ``owner``."""
    owner_real = Path(os.path.realpath(owner))
    parent_real = Path(os.path.realpath(path.parent))
    if parent_real != owner_real and owner_real not in parent_real.parents:
        raise CleanRefused(f"refusing to delete {path}: it is outside {owner}", "this is a bug; please report it")
    rep = report or CleanReport()
    size = _size(path)
    if _remove(path, rep, dry_run):
        rep.removed.append((str(path), size))


def clean_build_dir(root: Path, env: Mapping[str, str], *, dry_run: bool, report: CleanReport,
                    project_root: Path | None = None) -> None:
    """Remove the entries of ``root`` that llama-wheels created (listed in its marker); keep the rest."""
    why = refuse_reason(root, env, project_root)
    if why:
        raise CleanRefused(f"refusing to clean {root}: {why.split(': ', 1)[-1] if ': ' in why else why}",
                           f"set build-dir to a folder of its own, e.g. {EXAMPLE}")
    if not root.exists():
        report.skipped.append((str(root), "does not exist"))
        return
    if _read_marker(root) is None:
        raise CleanRefused(f"refusing to clean {root}: llama-wheels did not create it (no {MARKER} marker)",
                           "empty it yourself, or set build-dir to a new folder that llama-wheels will own")
    ours = created_entries(root)
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(MARKER):
            continue
        if entry.name not in ours:
            report.skipped.append((str(entry), "not created by llama-wheels: kept"))
            continue
        remove_tree_within(entry, root, report, dry_run)


def pip_cache_dir(python: str, env: Mapping[str, str]) -> Path | None:
    res = cmd.run([python, "-m", "pip", "cache", "dir"], env=env, capture=True, check=False, quiet=True)
    line = res.stdout.strip().splitlines()[-1] if res.returncode == 0 and res.stdout.strip() else ""
    return Path(line) if line and Path(line).exists() else None


def clean_temp(root: Path, env: Mapping[str, str], *, dry_run: bool, purge_pip: bool = True,
               python: str = sys.executable, project_root: Path | None = None) -> CleanReport:
    """The hand procedure's "clear %TEMP%", safely: our build dir's own entries (under its lock, so never during a
    build), then pip's cache through pip. Builds point TEMP/TMP into the build dir, so pip's temporary
    folders of our builds are removed with it; the system temp folder is never touched."""
    report = CleanReport()
    if root.is_dir() and not _is_link(root) and _read_marker(root) is not None and not refuse_reason(
            root, env, project_root):
        with in_use(root, "clean-temp", wait=False):
            clean_build_dir(root, env, dry_run=dry_run, report=report, project_root=project_root)
    else:
        clean_build_dir(root, env, dry_run=dry_run, report=report, project_root=project_root)
    if purge_pip:
        cache = pip_cache_dir(python, env)
        if cache is not None:
            size = _size(cache)
            if not dry_run:
                cmd.run([python, "-m", "pip", "cache", "purge"], env=env, capture=True, check=False)
                size -= _size(cache)
            report.removed.append((f"pip cache ({cache})", size))
    return report
