"""What is already published, read before indexing and uploading: the published state decides, not this runner.

Two sources: a server's simple API (PEP 691 JSON when the server offers it, else PEP 503 HTML, both read by
the kept ``pypi-simple`` client) and a synced static index folder (its ``state.json`` and ``files/``).
``seed`` copies a folder's published files and state into ``wheelhouse/index/`` so the next
``nox -s index`` lists the old releases next to the new one, and refuses a wheel already published with
other bytes. Credentials are sent only to the upload host (same scheme, host and port).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from llama_wheels.digest import sha256_file
from llama_wheels.errors import ConfigError, PublishedConflict, PublishError
from llama_wheels.fs import copy_atomic, existing_ancestor, partial_path, storage_errors

if TYPE_CHECKING:  # requests and pypi-simple come with the publish group; seeding from a folder needs neither
    import requests

STATE = "state.json"


@dataclass(frozen=True)
class PublishedFile:
    filename: str
    url: str
    sha256: str | None  # None when the server's listing gives no sha256 (then the bytes are hashed)


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


def credentials_for(url: str, upload_url: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """TWINE_USERNAME / TWINE_PASSWORD for ``url`` only when it is on the upload host, else None."""
    user, password = env.get("TWINE_USERNAME"), env.get("TWINE_PASSWORD")
    if user and password and origin(url) == origin(upload_url):
        return user, password
    return None


def _session(auth: tuple[str, str] | None) -> requests.Session:
    import requests

    s = requests.Session()
    s.auth = auth  # requests drops it when a redirect leaves the host
    return s


def project_files(simple_url: str, project: str, auth: tuple[str, str] | None) -> list[PublishedFile]:
    """The files the server lists for ``project`` (none when it answers 404)."""
    import requests
    from pypi_simple import ACCEPT_JSON_PREFERRED, NoSuchProjectError, PyPISimple

    try:
        with _session(auth) as s:
            page = PyPISimple(simple_url, session=s, accept=ACCEPT_JSON_PREFERRED).get_project_page(project,
                                                                                                    timeout=30)
    except NoSuchProjectError:
        return []
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else "?"
        raise PublishError(f"{simple_url} answered HTTP {code}", "check --index-url and the credentials") from None
    except (requests.RequestException, OSError) as exc:
        raise PublishError(f"could not reach {simple_url} ({type(exc).__name__})",
                           "check the URL, that the server runs, and the network") from None
    except ValueError as exc:  # pypi-simple: unsupported content type or repository version
        raise PublishError(f"{simple_url} is not a simple API page ({exc})",
                           "point --index-url at the server's .../simple/") from None
    out = []
    for pkg in page.packages:
        # PEP 503 says the link text is the filename; the href may percent-encode it (`+` as %2B). Keep both.
        from_url = unquote(PurePosixPath(urlsplit(pkg.url).path).name)
        for name in dict.fromkeys([pkg.filename, from_url]):
            out.append(PublishedFile(name, pkg.url, pkg.digests.get("sha256")))
    return out


def url_sha256(url: str, auth: tuple[str, str] | None) -> str:
    """Download ``url`` and hash it (for listings without a sha256)."""
    import requests

    h = hashlib.sha256()
    try:
        with _session(auth) as s, s.get(url, stream=True, timeout=60) as r:
            r.raise_for_status()
            for chunk in r.iter_content(1 << 20):
                h.update(chunk)
    except (requests.RequestException, OSError) as exc:
        raise PublishError(f"could not download {url} to compare hashes ({type(exc).__name__})",
                           "check the server and the network") from None
    return h.hexdigest()


def existing_folder(folder: Path, flag: str, *, create: bool) -> None:
    """A published folder must exist: a typo must not become a new, empty release target (or seed nothing).
    ``create`` (the first release) makes it."""
    if folder.is_dir():
        return
    if folder.exists():
        raise ConfigError(f"{flag} {folder} is not a folder", f"give the published index folder to {flag}")
    if not create:
        raise ConfigError(f"{flag} {folder} does not exist",
                          "check the path; for a first release pass --create to start a new published folder there")
    with storage_errors(existing_ancestor(folder)):
        folder.mkdir(parents=True)


def read_state(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not readable JSON ({exc})", "restore it from the published index") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ConfigError(f"{path} is not an index state (flavour -> [files])", "restore it from the published index")
    return {str(k): [str(n) for n in v] for k, v in data.items()}


def seed(index_root: Path, published: Path, *, create: bool = False) -> dict[str, int]:
    """Copy a published index folder's files and state into ``index_root`` (``wheelhouse/index/``).

    An empty folder is a first release; a missing one is refused unless ``create`` (then it is a first
    release too; nothing is created here: seeding only reads). A file present on both sides with other bytes
    is refused: the published one wins. Files are copied, never linked, so nothing here can write into
    ``published``.
    """
    if not published.exists() and create:
        return {"flavours": 0, "files": 0, "copied": 0}
    if not published.is_dir():
        existing_folder(published, "--seed-from", create=False)
    if not any(published.iterdir()):
        return {"flavours": 0, "files": 0, "copied": 0}
    if not (published / STATE).is_file():
        raise ConfigError(f"{published} is not empty and holds no {STATE}, so it is not a llama-wheels index",
                          "give the folder that nox -s publish -- --sync-to wrote (or an empty one)")
    theirs = read_state(published / STATE)
    files_dir = index_root / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    ours = read_state(index_root / STATE) if (index_root / STATE).exists() else {}
    copied = 0
    names = sorted({n for listed in theirs.values() for n in listed})
    for name in names:
        src, dest = published / "files" / name, files_dir / name
        if not src.is_file():
            raise ConfigError(f"{published / STATE} lists {name} but {src} is missing",
                              "restore the file, or remove it from state.json (pip would get a 404)")
        if dest.exists():
            if sha256_file(dest) != sha256_file(src):
                raise PublishedConflict(f"{name} is published in {published} with other bytes than {dest}",
                                        "a published file never changes: rebuild under a new version or label")
            continue
        for s, d in ((src, dest), (src.with_name(name + ".metadata"), dest.with_name(name + ".metadata"))):
            if s.is_file():
                copy_atomic(s, d)
        copied += 1
    merged = {f: sorted({*ours.get(f, []), *theirs.get(f, [])}) for f in sorted({*ours, *theirs})}
    tmp_state = partial_path(index_root / STATE)
    tmp_state.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_state, index_root / STATE)
    return {"flavours": len(theirs), "files": len(names), "copied": copied}
