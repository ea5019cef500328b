"""``nox -s publish``: upload with twine to a PyPI-compatible internal server, or sync the static index.

Credentials come only from twine's own sources (TWINE_USERNAME / TWINE_PASSWORD, keyring); a URL
with credentials in it is refused, so nothing secret is ever echoed. Before uploading anything, the
server's listing is read (``published.project_files``: PEP 691 JSON, else HTML) and every wheel is
compared by sha256: the same bytes are skipped, other bytes under the same name are refused. The
listing is read with credentials only when it is on the upload host.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from packaging.utils import parse_wheel_filename

from llama_wheels import cmd, manifest
from llama_wheels.check import our_wheels
from llama_wheels.digest import sha256_file as _sha
from llama_wheels.errors import ConfigError, DamagedWheel, PublishError, StorageError
from llama_wheels.fs import (
    check_writable,
    copy_atomic,
    existing_ancestor,
    need_space,
    remove_stale_partials,
    storage_errors,
)
from llama_wheels.log import Logger
from llama_wheels.published import (
    STATE,
    PublishedFile,
    credentials_for,
    existing_folder,
    origin,
    project_files,
    read_state,
    url_sha256,
)
from llama_wheels.wheels import verify

__all__ = ["PublishError", "already_there", "check_release", "check_url", "sync_folder", "upload"]


def check_url(url: str, what: str = "--repository-url") -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{what} {url!r} is not an http(s) URL", "e.g. https://pypi.internal/legacy/")
    if parts.username or parts.password:
        raise ConfigError(f"the {what} URL carries credentials",
                          "remove them from the URL and set TWINE_USERNAME / TWINE_PASSWORD (or use keyring)")
    return url


def already_there(simple_url: str, wheels: list[Path], upload_url: str, env: Mapping[str, str]) -> list[Path]:
    """The wheels the server already lists with the same sha256. Same name, other bytes: refuse, upload nothing.

    (twine 7 allows --skip-existing only for PyPI itself, so the check is ours.)
    """
    auth = credentials_for(simple_url, upload_url, env)
    listings: dict[str, dict[str, PublishedFile]] = {}
    there = []
    for wheel in wheels:
        project = str(parse_wheel_filename(wheel.name)[0])
        if project not in listings:
            listings[project] = {}
            for f in project_files(simple_url, project, auth):
                listings[project].setdefault(f.filename, f)
        hit = listings[project].get(wheel.name)
        if hit is None:
            continue
        # No sha256 in the listing: hash the server's bytes (credentials only if the file is on the upload host).
        theirs = hit.sha256 or url_sha256(hit.url, credentials_for(hit.url, upload_url, env))
        ours = _sha(wheel)
        if theirs != ours:
            raise PublishError(f"{wheel.name} is already on the server with sha256 {theirs}, ours is {ours}",
                               "a published file never changes: rebuild under a new label")
        there.append(wheel)
    return there


def upload_candidates(wheelhouse: Path, flavour: str | None) -> list[Path]:
    by_name: dict[str, Path] = {}
    for w in our_wheels(wheelhouse):
        if flavour is None or w.parent.name == flavour:
            by_name.setdefault(w.name, w)  # the same file may sit in two flavour folders
    wheels = list(by_name.values())
    if not wheels:
        raise ConfigError(f"no wheels to publish{f' for flavour {flavour}' if flavour else ''} in {wheelhouse}",
                          "run nox -s build_cuda (or build_cpu) first")
    return wheels


def _index_hashes(index_root: Path) -> dict[str, str]:
    """filename -> sha256 as the index's own PEP 691 pages list them (wheels and their .metadata files)."""
    out: dict[str, str] = {}
    for page in sorted(index_root.glob("*/*/index.json")):
        try:
            data = json.loads(page.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DamagedWheel(f"{page} is not readable JSON ({exc})", "run nox -s index again") from None
        for f in data.get("files", []) if isinstance(data, dict) else []:
            out[str(f["filename"])] = str(f["hashes"]["sha256"])
            meta = (f.get("core-metadata") or {}).get("sha256") if isinstance(f.get("core-metadata"), dict) else None
            if meta:
                out[str(f["filename"]) + ".metadata"] = str(meta)
    return out


def check_release(wheelhouse: Path, *, flavour: str | None, upload_to: str | None, sync_to: Path | None,
                  create: bool = False, warn: Callable[[str], object] = lambda m: print(f"warning: {m}")) -> list[Path]:
    """Every file a release would send, proven before anything is sent; returns the wheels to upload.

    - upload: each wheel's zip CRCs and RECORD, its sha256 against manifest.json, that the build recorded it
      (a stray wheel is never published), and that it is the copy the index holds (else one filename would
      have two sha256 values: the server's and the synced folder's);
    - sync: every refusal of :func:`plan_sync` (folder, space, listed files), and every file of ``index/files``
      has zip CRCs, RECORD and the sha256 its own index pages list.
    One wrong file refuses the whole release (DamagedWheel, exit 9): nothing is uploaded or synced.
    """
    index_root = wheelhouse / "index"
    if sync_to is not None:
        plan_sync(index_root, sync_to, create=create)  # its refusals come before any upload
    problems: list[str] = []
    wheels: list[Path] = []
    if upload_to:
        wheels = upload_candidates(wheelhouse, flavour)
        unrecorded_ok = manifest.missing(wheelhouse)
        if unrecorded_ok:
            warn(f"{wheelhouse / manifest.NAME} is missing: these wheels cannot be checked against what "
                 "was built (only their zip and RECORD are)")
        entries = manifest.entries(wheelhouse)
        recorded = manifest.recorded_files(wheelhouse, entries)
        for w in wheels:
            if not unrecorded_ok and w not in recorded:
                problems.append(manifest.unrecorded(wheelhouse, entries, w))
                continue
            try:
                sha = verify(w, recorded.get(w))
            except DamagedWheel as exc:
                problems.append(exc.message)
                continue
            indexed = index_root / "files" / w.name
            if indexed.is_file() and _sha(indexed) != sha:
                problems.append(f"{w.name}: sha256 {sha} is not the indexed copy's {_sha(indexed)}")
    if sync_to is not None:
        listed = _index_hashes(index_root)
        for name in sorted({n for names in read_state(index_root / STATE).values() for n in names}):
            f = index_root / "files" / name
            want = listed.get(name)
            if want is None:
                problems.append(f"{name}: listed in {STATE} but on no index page (run nox -s index again)")
                continue
            if not f.is_file():
                problems.append(f"index/files/{name} is missing (run nox -s index again)")
                continue
            got = _sha(f)
            if got != want:
                problems.append(f"index/files/{name}: sha256 {got} is not the {want} its index pages list")
                continue
            try:
                if name.endswith(".whl"):
                    verify(f)  # zip CRCs and RECORD
            except DamagedWheel as exc:
                problems.append(f"index/files/{exc.message}")
                continue
            meta = f.with_name(name + ".metadata")
            if listed.get(meta.name) and (not meta.is_file() or _sha(meta) != listed[meta.name]):
                problems.append(f"index/files/{meta.name} is missing or not the file its index pages list")
    if problems:
        raise DamagedWheel(f"nothing was uploaded or synced: {len(problems)} file(s) failed the check: "
                           + "; ".join(problems),
                           "rebuild the damaged wheel(s) (or restore the file), then nox -s index; "
                           "nox -s check_wheels lists each problem")
    return wheels


def upload(wheelhouse: Path, url: str, flavour: str | None, env: Mapping[str, str], log: Logger,
           simple_url: str | None = None, wheels: list[Path] | None = None) -> dict[str, int]:
    """Upload ``wheels`` (default: every llama-cpp-python wheel of the wheelhouse, checked by check_release)."""
    check_url(url)
    if wheels is None:
        wheels = check_release(wheelhouse, flavour=flavour, upload_to=url, sync_to=None, warn=log.warning)
    simple = check_url(simple_url, "--index-url") if simple_url else url.rstrip("/") + "/simple/"
    if origin(simple) != origin(url) and env.get("TWINE_PASSWORD"):
        log.info(f"reading {simple} without credentials: it is not the upload host")
    there = already_there(simple, wheels, url, env)
    todo = [w for w in wheels if w not in there]
    skipped = len(wheels) - len(todo)
    if not todo:
        log.info(f"published 0 file(s), skipped {skipped} already present, to {url}")
        return {"uploaded": 0, "skipped": skipped}
    args = [sys.executable, "-m", "twine", "upload", "--repository-url", url, "--non-interactive",
            "--disable-progress-bar", *map(str, todo)]
    res = cmd.run(args, env=env, capture=True, check=False)
    out = res.stdout + res.stderr  # twine reports HTTP and connection errors on stderr
    if res.returncode != 0:
        status = re.search(r"\b(40[13])\b", out)
        if status:
            raise PublishError(f"upload refused by {url} (HTTP {status[1]})",
                               "check TWINE_USERNAME / TWINE_PASSWORD (or keyring) and the account's upload rights")
        if re.search(r"Connection refused|NewConnectionError|Max retries exceeded|Name or service not known", out):
            raise PublishError(f"could not reach {url}", "check the URL, that the server runs, and the network")
        last = next((ln for ln in reversed(out.strip().splitlines()) if ln.strip()), "no output")
        raise PublishError(f"twine upload failed: {last.strip()}", "see twine's output above")
    log.info(f"published {len(todo)} file(s), skipped {skipped} already present, to {url}")
    return {"uploaded": len(todo), "skipped": skipped}


@dataclass(frozen=True)
class SyncPlan:
    dest: Path
    create: bool  # dest does not exist yet and --create was given
    todo: tuple[Path, ...]  # index files to copy, in order: files/, pages, state.json
    same: int  # files already there with the same bytes
    needed: int  # bytes the copies need


def plan_sync(index_root: Path, dest: Path, *, create: bool = False) -> SyncPlan:
    """Every refusal of a sync, decided before anything is written anywhere (also before an upload): the
    index exists; ``dest`` exists (or ``create``) and is writable; it lists nothing this index lacks (else a
    fresh checkout, or a release that ran at the same time, would unlist published files: seed first); no
    file there differs from ours; its filesystem has room for the copies."""
    if not (index_root / STATE).exists():
        raise ConfigError(f"{index_root} holds no index", "run nox -s index first")
    if dest.exists() or not create:
        existing_folder(dest, "--sync-to", create=False)
        check_writable(dest)
    else:
        check_writable(existing_ancestor(dest))
    if (dest / STATE).exists():
        ours, theirs = read_state(index_root / STATE), read_state(dest / STATE)
        missing = sorted({n for f, names in theirs.items() for n in names if n not in ours.get(f, [])})
        if missing:
            raise PublishError(f"{dest} lists {len(missing)} file(s) this index does not (e.g. {missing[0]}): "
                               "syncing would unlist them",
                               f"run nox -s index -- --seed-from {dest} (again, if another release just published)")
    order = {"files": 0, STATE: 2}
    sources = sorted((p for p in index_root.rglob("*") if p.is_file() and not p.name.endswith(".partial")),
                     key=lambda p: (order.get(p.relative_to(index_root).parts[0], 1), p))
    same = set()
    for src in sources:
        target = dest / src.relative_to(index_root)
        if src.relative_to(index_root).parts[0] == "files" and target.exists():
            if _sha(target) != _sha(src):
                raise PublishError(f"{target} exists with different content", "a published file never changes")
            same.add(src)
    todo = tuple(src for src in sources if src not in same)
    needed = sum(src.stat().st_size for src in todo)
    stale = sum(p.stat().st_size for p in dest.rglob(".*.partial")) if dest.is_dir() else 0  # removed first
    need_space(dest, max(0, needed - stale))
    return SyncPlan(dest, not dest.exists(), todo, len(same), needed)


def sync_folder(index_root: Path, dest: Path, log: Logger, *, create: bool = False) -> dict[str, int]:
    """Copy the static index into ``dest`` (a mounted bucket, a web root): files by hash, pages always.

    Nothing is written unless every check of :func:`plan_sync` passes. Files go first, then the pages, then
    ``state.json``, so a page never links to a file that is not there yet. Each file appears whole (a
    ``.partial`` renamed, removed again if the copy fails); ``.partial`` files a killed sync of ours left
    there are removed first.
    """
    plan = plan_sync(index_root, dest, create=create)
    if plan.create:
        existing_folder(dest, "--sync-to", create=True)
        log.info(f"created {dest} (--create)")
    with storage_errors(dest, plan.needed):
        stale = remove_stale_partials(dest)
    if stale:
        log.info(f"removed {len(stale)} .partial file(s) a killed sync left in {dest}")
    copied = 0
    for src in plan.todo:
        target = dest / src.relative_to(index_root)
        try:
            with storage_errors(dest, plan.needed):
                target.parent.mkdir(parents=True, exist_ok=True)
                copy_atomic(src, target)
        except StorageError as exc:
            raise StorageError(f"{exc.message}; {copied} of {len(plan.todo)} file(s) were synced first (files "
                               "before pages: no page lists a missing file)", exc.remedy) from None
        copied += 1
    log.info(f"synced {copied} file(s) to {dest}, {plan.same} already there")
    return {"copied": copied, "skipped": plan.same}
