"""wheelhouse/manifest.json: one entry per wheel, and the wheelhouse's locks.

- One lock per wheelhouse (``.llama-wheels.lock``, filelock) serialises every change to what the
  wheelhouse publishes: moving a wheel in, the manifest, the index. A second run waits and says who
  holds it ("in use by PID N since T").
- A publish is journalled (``.publishing.json``): a kill at any point leaves either the old state or
  one that the next locked call completes. The wheel was complete and checked before it moved in,
  so a kill between the move and the manifest write rolls forward, never leaves an unrecorded wheel.
- One lock per flavour: a second build of the same flavour waits for the first instead of silently
  replacing its wheel and entry (last writer wins).

Lock order, always: the build dir's (clean.in_use), then a flavour's, then the wheelhouse's. All are OS
file locks (filelock): a killed holder releases them.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from llama_wheels.digest import sha256_file
from llama_wheels.errors import InUse, ManifestDamaged, StorageError
from llama_wheels.fs import move_into, storage_errors

NAME = "manifest.json"
LOCK = ".llama-wheels.lock"
JOURNAL = ".publishing.json"
#: How long a run waits for another run's lock before giving up (a CUDA build of one flavour can take an hour).
WAIT_SECONDS = 4 * 3600.0


def _owner_file(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".owner")


def holder(lock_path: Path) -> str:
    """Who holds the lock, as its holder wrote it ("PID N since T"), or "another run"."""
    try:
        return _owner_file(lock_path).read_text(encoding="utf-8").strip() or "another run"
    except OSError:
        return "another run"


@contextlib.contextmanager
def held(lock_path: Path, what: str, *, say: Callable[[str], object] = print,
         timeout: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the file lock at ``lock_path``; if another process holds it, say so and wait (up to ``timeout``).

    The lock is the OS's (flock / LockFileEx through filelock), so a killed holder never leaves it taken.
    """
    lock = FileLock(str(lock_path), thread_local=False)
    try:
        with storage_errors(lock_path.parent):  # a read-only wheelhouse: one line naming it, not Errno 30
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=0)
    except Timeout:
        say(f"{what} is in use by {holder(lock_path)}; waiting (up to {timeout / 60:.0f} min)")
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise InUse(f"{what} is in use by {holder(lock_path)}",
                        "wait for that run to finish, or stop it") from None
    try:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        _owner_file(lock_path).write_text(f"PID {os.getpid()} since {stamp}\n", encoding="utf-8")
        yield
    finally:
        lock.release()


def lock(wheelhouse: Path, say: Callable[[str], object] = print) -> contextlib.AbstractContextManager[None]:
    """The wheelhouse lock. Never taken twice by one process (a flock is not re-entrant across objects)."""
    return held(wheelhouse / LOCK, f"wheelhouse {wheelhouse}", say=say)


def flavour_lock(wheelhouse: Path, flavour: str,
                 say: Callable[[str], object] = print) -> contextlib.AbstractContextManager[None]:
    """Held by a build of ``flavour`` from its compile to its publish."""
    return held(wheelhouse / f".build-{flavour}.lock", f"flavour '{flavour}' of {wheelhouse} (another build)",
                say=say)


def read(wheelhouse: Path) -> dict[str, Any]:
    path = wheelhouse / NAME
    if not path.exists():
        return {"wheels": {}}
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestDamaged(f"{path} is not valid JSON ({exc})",
                              "it is only ever written atomically: restore it from a backup, or move it away "
                              "and rebuild") from None
    data.setdefault("wheels", {})
    return data


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write(wheelhouse: Path, data: Mapping[str, Any]) -> None:
    _write_json(wheelhouse / NAME, data)


def recover(wheelhouse: Path) -> str | None:
    """Finish or drop a publish that a kill interrupted. Call with the wheelhouse lock held.

    Returns the key rolled forward, if any."""
    journal = wheelhouse / JOURNAL
    if not journal.exists():
        return None
    try:
        pending = json.loads(journal.read_text(encoding="utf-8"))
        key, entry = str(pending["key"]), dict(pending["entry"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        journal.unlink()  # killed while writing the journal itself (it is written atomically, but be safe)
        return None
    final = wheelhouse / key
    done = None
    if final.is_file() and sha256_file(final) == entry.get("sha256"):
        data = read(wheelhouse)
        data["wheels"][key] = entry
        _write(wheelhouse, data)
        done = key
    journal.unlink()  # rolled forward, or the move never happened and the old state stands
    return done


def publish(wheelhouse: Path, staged: Path, final: Path, entry: Mapping[str, Any],
            say: Callable[[str], object] = print) -> dict[str, Any] | None:
    """Move a checked wheel into place and record it, as one step under the lock.

    Returns the entry it replaced, if any (a rebuild of the same file name)."""
    key = final.relative_to(wheelhouse).as_posix()
    with lock(wheelhouse, say), storage_errors(wheelhouse, staged.stat().st_size):  # full or read-only: one line
        recover(wheelhouse)
        previous = read(wheelhouse)["wheels"].get(key)
        _write_json(wheelhouse / JOURNAL, {"key": key, "entry": dict(entry)})
        final.parent.mkdir(parents=True, exist_ok=True)
        move_into(staged, final)  # a rename, or copy + rename within the wheelhouse's filesystem (EXDEV)
        data = read(wheelhouse)
        data["wheels"][key] = keep_cold_record(previous, entry)
        _write(wheelhouse, data)
        (wheelhouse / JOURNAL).unlink()
    return dict(previous) if previous else None


def entries_locked(wheelhouse: Path) -> dict[str, dict[str, Any]]:
    """The entries, for a caller that already holds the wheelhouse lock."""
    recover(wheelhouse)
    return dict(read(wheelhouse)["wheels"])


def entries(wheelhouse: Path) -> dict[str, dict[str, Any]]:
    """The entries, for a reader: no lock and no write unless a kill interrupted a publish (then it is
    completed under the lock, or, in a read-only wheelhouse, rolled forward in memory only). manifest.json
    only ever changes by an atomic rename, so a read sees one state or the next."""
    if not wheelhouse.is_dir():
        return {}
    if (wheelhouse / JOURNAL).exists():
        try:
            with lock(wheelhouse):
                return entries_locked(wheelhouse)
        except StorageError:
            pass  # read-only: nothing to lock or complete here
    data = dict(read(wheelhouse)["wheels"])
    try:
        pending = json.loads((wheelhouse / JOURNAL).read_text(encoding="utf-8"))
        key, entry = str(pending["key"]), dict(pending["entry"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return data
    final = wheelhouse / key
    if final.is_file() and sha256_file(final) == entry.get("sha256"):
        data[key] = entry
    return data


#: The fields of an entry that describe what its build cost (read by cost.py's estimate).
COST_FIELDS = ("build_seconds", "cpu_seconds", "cache")


def keep_cold_record(previous: Mapping[str, Any] | None, entry: Mapping[str, Any]) -> dict[str, Any]:
    """A rebuild that compiled nothing (no cache misses) keeps the previous entry's cost record, which the
    estimate needs, and files its own figures under ``last_build``."""
    new = dict(entry)
    misses = int((new.get("cache") or {}).get("misses", 0) or 0)
    if previous and misses == 0 and int((previous.get("cache") or {}).get("misses", 0) or 0) > 0:
        new["last_build"] = {k: new.get(k) for k in COST_FIELDS}
        new.update({k: previous.get(k) for k in COST_FIELDS})
    return new


def missing(wheelhouse: Path) -> bool:
    """No manifest.json: nothing in this wheelhouse can be checked against what was built."""
    return not (wheelhouse / NAME).exists()


def unrecorded(wheelhouse: Path, entries: Mapping[str, Mapping[str, Any]], wheel: Path) -> str:
    """The problem line for a wheel no entry records, with the right remedy: where an entry of its folder was
    written before dependency wheels were recorded with their sha256, a rebuild (nothing recompiles) records
    them; otherwise no build of ours put it there."""
    legacy = any((wheelhouse / k).parent == wheel.parent and "dependencies" not in e for k, e in entries.items())
    if legacy:
        return (f"{wheel.relative_to(wheelhouse)}: not recorded in manifest.json (its flavour was built before "
                "dependency wheels were recorded): rebuild that flavour to record them, or remove it if no build "
                "put it there")
    return (f"{wheel.relative_to(wheelhouse)}: not recorded in manifest.json: no build of ours or its dependency "
            "resolution put it there; remove it")


def recorded_files(wheelhouse: Path, entries: Mapping[str, Mapping[str, Any]]) -> dict[Path, str | None]:
    """Every wheel a build put into the wheelhouse: each entry's wheel and its dependency wheels (in its
    flavour folder), with the sha256 recorded for it (None where an older manifest recorded only the name)."""
    out: dict[Path, str | None] = {}
    for key, e in entries.items():
        out[wheelhouse / key] = e.get("sha256")
        folder = (wheelhouse / key).parent
        for name in e.get("dependency_wheels") or []:
            out.setdefault(folder / str(name), None)
        for name, sha in (e.get("dependencies") or {}).items():
            out[folder / str(name)] = str(sha) if sha else None
    return out
