"""``nox -s publish``: upload with twine to a PyPI-compatible internal server, or sync the static index.

Credentials come only from twine's own sources (TWINE_USERNAME / TWINE_PASSWORD, keyring); a URL
with credentials in it is refused, so nothing secret is ever echoed. Re-running skips files the
server already has with the same sha256 (read from its simple API) and refuses a changed file.
"""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from llama_wheels import cmd
from llama_wheels.check import our_wheels
from llama_wheels.errors import ConfigError, FatalError
from llama_wheels.log import Logger
from llama_wheels.sdist import sha256_file as _sha


class PublishError(FatalError):
    return_code = 14


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--repository-url {url!r} is not an http(s) URL", "e.g. https://pypi.internal/legacy/")
    if parts.username or parts.password:
        raise ConfigError("the repository URL carries credentials",
                          "remove them from the URL and set TWINE_USERNAME / TWINE_PASSWORD (or use keyring)")
    return url


def already_there(simple_url: str, wheel: Path, env: Mapping[str, str]) -> bool:
    """Ask the server's simple API (PEP 503) whether ``wheel`` is there. Same name, other hash: refuse.

    (twine 7 allows --skip-existing only for PyPI itself, so the check is ours.)
    """
    project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
    req = urllib.request.Request(f"{simple_url.rstrip('/')}/{project}/")
    user, password = env.get("TWINE_USERNAME"), env.get("TWINE_PASSWORD")
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            page = resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise PublishError(f"{simple_url} answered HTTP {exc.code}", "check --index-url and the credentials") from None
    except OSError as exc:
        raise PublishError(f"could not reach {simple_url} ({exc})",
                           "check the URL, that the server runs, and the network") from None
    m = re.search(re.escape(wheel.name) + r"(?:#sha256=([0-9a-f]{64}))?", html.unescape(page))
    if m is None:
        return False
    if m[1] and m[1] != _sha(wheel):
        raise PublishError(f"{wheel.name} is already on the server with sha256 {m[1]}, ours is "
                           f"{_sha(wheel)}", "a published file never changes: rebuild under a new label")
    return True


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
    simple = simple_url or url.rstrip("/") + "/simple/"
    todo = [w for w in wheels if not already_there(simple, w, env)]
    skipped = len(wheels) - len(todo)
    if not todo:
        log.info(f"published 0 file(s), skipped {skipped} already present, to {url}")
        return {"uploaded": 0, "skipped": skipped}
    args = [sys.executable, "-m", "twine", "upload", "--repository-url", url, "--non-interactive",
            "--disable-progress-bar", *map(str, todo)]
    res = cmd.run(args, env=env, capture=True, check=False)
    out = res.stdout
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
    """Copy the static index into ``dest`` (a mounted bucket, a web root): files by hash, pages always."""
    if not (index_root / "state.json").exists():
        raise ConfigError(f"{index_root} holds no index", "run nox -s index first")
    copied = skipped = 0
    for src in sorted(p for p in index_root.rglob("*") if p.is_file()):
        rel = src.relative_to(index_root)
        target = dest / rel
        if rel.parts[0] == "files" and target.exists():
            if _sha(target) == _sha(src):
                skipped += 1
                continue
            raise PublishError(f"{target} exists with different content", "a published file never changes")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".partial")
        shutil.copyfile(src, tmp)
        os.replace(tmp, target)
        copied += 1
    log.info(f"synced {copied} file(s) to {dest}, {skipped} already there")
    return {"copied": copied, "skipped": skipped}
