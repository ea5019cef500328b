"""``nox -s publish``: upload with twine to a PyPI-compatible internal server, or sync the static index.

Credentials come only from twine's own sources (TWINE_USERNAME / TWINE_PASSWORD, keyring); a URL
with credentials in it is refused, so nothing secret is ever echoed. Before uploading anything, the
server's listing is read (``published.project_files``: PEP 691 JSON, else HTML) and every wheel is
compared by sha256: the same bytes are skipped, other bytes under the same name are refused. The
listing is read with credentials only when it is on the upload host.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from packaging.utils import parse_wheel_filename

from llama_wheels import cmd
from llama_wheels.check import our_wheels
from llama_wheels.digest import sha256_file as _sha
from llama_wheels.errors import ConfigError, PublishError
from llama_wheels.log import Logger
from llama_wheels.published import (
    STATE,
    PublishedFile,
    credentials_for,
    origin,
    partial,
    project_files,
    read_state,
    url_sha256,
)

__all__ = ["PublishError", "already_there", "check_url", "sync_folder", "upload"]


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


def upload(wheelhouse: Path, url: str, flavour: str | None, env: Mapping[str, str], log: Logger,
           simple_url: str | None = None) -> dict[str, int]:
    check_url(url)
    by_name: dict[str, Path] = {}
    for w in our_wheels(wheelhouse):
        if flavour is None or w.parent.name == flavour:
            by_name.setdefault(w.name, w)  # the same file may sit in two flavour folders
    wheels = list(by_name.values())
    if not wheels:
        raise ConfigError(f"no wheels to publish{f' for flavour {flavour}' if flavour else ''} in {wheelhouse}",
                          "run nox -s build_cuda (or build_cpu) first")
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


def sync_folder(index_root: Path, dest: Path, log: Logger) -> dict[str, int]:
    """Copy the static index into ``dest`` (a mounted bucket, a web root): files by hash, pages always.

    Nothing is written unless every check passes: ``dest`` lists nothing this index lacks (else a fresh
    checkout, or a release that ran at the same time, would unlist published files: seed first), and no
    file there differs from ours. Files go first, then the pages, then ``state.json``, so a page never
    links to a file that is not there yet.
    """
    if not (index_root / STATE).exists():
        raise ConfigError(f"{index_root} holds no index", "run nox -s index first")
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
    copied = 0
    for src in sources:
        if src in same:
            continue
        target = dest / src.relative_to(index_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = partial(target)
        shutil.copyfile(src, tmp)
        os.replace(tmp, target)
        copied += 1
    log.info(f"synced {copied} file(s) to {dest}, {len(same)} already there")
    return {"copied": copied, "skipped": len(same)}
