"""Safe deletion: the temp-clearing step of the guide, without its risks.

Only what llama-wheels owns is removed: the contents of a build dir that carries our marker file,
the pip cache (through pip), and stale ``pip-*`` folders of the current user in the system temp.
Symlinks and junctions are removed as links, never followed. A root is never removed itself, and
``/``, a drive root, a home directory and a repository root are refused.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llama_wheels import cmd
from llama_wheels.errors import CleanRefused

MARKER = ".llama-wheels"
STALE_SECONDS = 3600


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


def mark_owned(root: Path) -> None:
    """Create ``root`` if needed and mark it as ours, so clean-temp may empty it later."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    if not marker.exists():
        marker.write_text("This folder is owned by llama-wheels; `invoke clean-temp` empties it.\n")


def refuse_reason(root: Path, env: Mapping[str, str]) -> str | None:
    """Why ``root`` must never be cleaned, or None."""
    if _is_link(root):
        return f"{root} is a symlink or junction; point build-dir at the real folder"
    real = Path(os.path.realpath(root))
    if real == Path(real.anchor) or str(real) in ("/", "\\"):
        return f"{root} is a filesystem or drive root"
    homes = {Path.home(), *(Path(env[v]) for v in ("HOME", "USERPROFILE") if env.get(v))}
    if any(real == Path(os.path.realpath(h)) for h in homes):
        return f"{root} is a home directory"
    if (real / ".git").exists():
        return f"{root} is a repository root"
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


def clean_build_dir(root: Path, env: Mapping[str, str], *, dry_run: bool, report: CleanReport) -> None:
    why = refuse_reason(root, env)
    if why:
        raise CleanRefused(f"refusing to clean {root}: {why.split(': ', 1)[-1] if ': ' in why else why}",
                           "set build-dir to a folder of its own, e.g. C:\\lwb or ./build")
    if not root.exists():
        report.skipped.append((str(root), "does not exist"))
        return
    if not (root / MARKER).exists():
        raise CleanRefused(f"refusing to clean {root}: llama-wheels did not create it (no {MARKER} marker)",
                           "empty it yourself, or set build-dir to a new folder that llama-wheels will own")
    for entry in sorted(root.iterdir()):
        if entry.name == MARKER:
            continue
        remove_tree_within(entry, root, report, dry_run)


def stale_pip_dirs(tmp: Path, now: float | None = None) -> list[Path]:
    """``pip-*`` folders in ``tmp`` that belong to us and were not touched for an hour."""
    now = now or time.time()
    out = []
    try:
        entries = list(tmp.iterdir())
    except OSError:
        return []
    for p in entries:
        if not p.name.startswith("pip-") or _is_link(p):
            continue
        try:
            st = p.lstat()
        except OSError:
            continue
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            continue
        if now - st.st_mtime >= STALE_SECONDS:
            out.append(p)
    return sorted(out)


def pip_cache_dir(python: str, env: Mapping[str, str]) -> Path | None:
    res = cmd.run([python, "-m", "pip", "cache", "dir"], env=env, capture=True, check=False, quiet=True)
    line = res.stdout.strip().splitlines()[-1] if res.returncode == 0 and res.stdout.strip() else ""
    return Path(line) if line and Path(line).exists() else None


def clean_temp(root: Path, env: Mapping[str, str], *, dry_run: bool, purge_pip: bool = True,
               system_tmp: Path | None = None, python: str = sys.executable) -> CleanReport:
    report = CleanReport()
    clean_build_dir(root, env, dry_run=dry_run, report=report)
    if purge_pip:
        cache = pip_cache_dir(python, env)
        if cache is not None:
            size = _size(cache)
            if not dry_run:
                cmd.run([python, "-m", "pip", "cache", "purge"], env=env, capture=True, check=False)
                size -= _size(cache)
            report.removed.append((f"pip cache ({cache})", size))
    tmp = system_tmp or Path(tempfile.gettempdir())
    for p in stale_pip_dirs(tmp):
        remove_tree_within(p, tmp, report, dry_run)
    return report
