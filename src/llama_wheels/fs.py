"""Files that appear whole, on any filesystem, and the faults of a folder as typed errors.

- :func:`copy_atomic` writes a hidden ``.NAME.PID.partial`` next to the target and renames it: the target
  appears whole or not at all. A failed copy removes its own ``.partial``; one left by a killed run (its PID
  is gone) is removed by :func:`remove_stale_partials` on the next run.
- :func:`move_into`: ``os.replace`` where it can; across filesystems (EXDEV: a wheelhouse on another mount
  than the build dir) it copies into the target folder and renames there, which is atomic on that side.
- :func:`storage_errors` turns read-only (EROFS, EACCES, EPERM) and full (ENOSPC, EDQUOT) into
  :class:`StorageError`, naming the folder and, where known, how much space was needed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from llama_wheels.errors import StorageError
from llama_wheels.log import fmt_bytes

_PARTIAL = re.compile(r"^\..+\.(\d+)\.partial$")
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def partial_path(dest: Path) -> Path:
    """Where ``dest`` is written before its rename: hidden, per process."""
    return dest.with_name(f".{dest.name}.{os.getpid()}.partial")


def existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(existing_ancestor(folder)).free


def storage_error(exc: OSError, folder: Path, needed: int | None = None) -> StorageError | None:
    """The typed error for a read-only or full ``folder``, or None for any other OSError."""
    if exc.errno in _FULL:
        need = f"{fmt_bytes(needed)} needed, " if needed else ""
        return StorageError(f"{folder} is full: no space left on device ({need}{fmt_bytes(free_bytes(folder))} free)",
                            "free space there (or give it more), or choose another folder; then run again")
    if exc.errno in _READ_ONLY:
        return StorageError(f"{folder} is not writable ({os.strerror(exc.errno or 0)})",
                            "mount it read-write or fix its permissions, or choose another folder")
    return None


@contextlib.contextmanager
def storage_errors(folder: Path, needed: int | None = None) -> Iterator[None]:
    """Inside: a read-only or full ``folder`` raises StorageError (exit 18), one line; other errors pass."""
    try:
        yield
    except OSError as exc:
        err = storage_error(exc, folder, needed)
        if err is None:
            raise
        raise err from None


def need_space(folder: Path, needed: int) -> None:
    """Refuse before writing anything when ``folder``'s filesystem has less than ``needed`` bytes free."""
    free = free_bytes(folder)
    if free < needed:
        raise StorageError(f"{folder} has {fmt_bytes(free)} free, {fmt_bytes(needed)} needed",
                           "free space there (or give it more), or choose another folder; then run again")


def check_writable(folder: Path) -> None:
    """Refuse a read-only ``folder`` (a read-only mount) before any work, with its name: create and remove a
    hidden probe file there."""
    probe = partial_path(folder / "write-probe")
    with storage_errors(folder):
        probe.write_bytes(b"")
        probe.unlink()


def copy_atomic(src: Path, dest: Path) -> None:
    """``dest`` appears whole or not at all; a failed copy leaves no ``.partial`` behind."""
    tmp = partial_path(dest)
    try:
        with storage_errors(dest.parent, src.stat().st_size):
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def move_into(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest``: a rename where both sit on one filesystem, else copy into ``dest``'s folder
    and rename there (atomic in the target), then remove ``src``."""
    try:
        os.replace(src, dest)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            err = storage_error(exc, dest.parent, src.stat().st_size if src.exists() else None)
            if err is None:
                raise
            raise err from None
    copy_atomic(src, dest)
    src.unlink()


def pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill(pid, 0) would terminate it: keep the file
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or no PID can be that large
        return False
    except (PermissionError, OSError):
        return True  # someone else's live process (or a platform that cannot tell): keep its file
    return True


def remove_stale_partials(folder: Path) -> list[Path]:
    """Remove the ``.NAME.PID.partial`` files under ``folder`` that this tool wrote from a process that is gone
    (a killed or interrupted run). Nothing else is touched; a live run's files are kept."""
    gone: list[Path] = []
    if not folder.is_dir():
        return gone
    for p in folder.rglob(".*.partial"):
        m = _PARTIAL.match(p.name)
        if m and p.is_file() and not p.is_symlink() and not pid_alive(int(m[1])):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone
