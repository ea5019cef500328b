"""``nox -s index``: a static package index, one per flavour plus a combined one.

Layout under ``wheelhouse/index/``:
- ``files/<wheel>`` and ``files/<wheel>.metadata`` (PEP 658/714): the published files. A file once
  published stays (unless ``--prune``), and a different file under the same name is refused.
- ``<flavour>/index.html`` (PEP 503 root) and ``<flavour>/<project>/index.html`` with ``#sha256=``,
  ``data-requires-python``, ``data-dist-info-metadata`` and ``data-core-metadata``; ``index.json``
  next to each page is the PEP 691 JSON form (with PEP 700 ``versions`` and ``size``).
- ``all/``: the combined index. ``state.json``: which flavour each published file belongs to.
Generation is deterministic: the same files give the same bytes.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename

from llama_wheels import catalogue, manifest, provenance
from llama_wheels.digest import sha256_file as _sha
from llama_wheels.errors import ConfigError, DamagedWheel, IndexConflict
from llama_wheels.fs import copy_atomic
from llama_wheels.wheels import verify

COMBINED = "all"


@dataclass(frozen=True)
class FileInfo:
    filename: str
    project: str
    version: str
    sha256: str
    size: int
    requires_python: str
    metadata_sha256: str


def wheel_metadata(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        return z.read(name)


def _info(files_dir: Path, filename: str) -> FileInfo:
    path = files_dir / filename
    meta = (files_dir / (filename + ".metadata")).read_bytes()
    parsed = HeaderParser().parsestr(meta.decode("utf-8"))
    name, version, _, _ = parse_wheel_filename(filename)
    return FileInfo(filename, str(name), str(version), _sha(path), path.stat().st_size,
                    parsed.get("Requires-Python", "") or "", hashlib.sha256(meta).hexdigest())


def wheelhouse_flavours(wheelhouse: Path) -> dict[str, list[Path]]:
    out = {}
    for d in sorted(p for p in wheelhouse.iterdir() if p.is_dir() and p.name not in ("index", "reports")):
        wheels = sorted(d.glob("*.whl"))
        if wheels:
            out[d.name] = wheels
    return out


def _write_atomic(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, dest)


def validate(wheelhouse: Path, current: dict[str, list[Path]], files_dir: Path,
             warn: Callable[[str], object] = lambda m: print(f"warning: {m}")) -> dict[Path, str]:
    """Every wheel to publish, proven before anything is copied: recorded in manifest.json by a build (ours
    or its dependency resolution: a stray wheel dropped into a flavour folder is never indexed), intact zip
    and RECORD, the sha256 the build recorded, and no different file already published under its name.
    Without a manifest.json nothing can be checked against the build: a loud warning, then zip and RECORD.
    Returns wheel -> sha256; raises DamagedWheel (exit 9) or IndexConflict (exit 13) naming each file."""
    entries = manifest.entries_locked(wheelhouse)
    unrecorded_ok = manifest.missing(wheelhouse)
    if unrecorded_ok:
        warn(f"{wheelhouse / manifest.NAME} is missing: no wheel here can be checked against what was built "
             "(only zip and RECORD are); rebuild to record them")
    recorded = manifest.recorded_files(wheelhouse, entries)
    shas: dict[Path, str] = {}
    damaged: list[str] = []
    conflicts: list[str] = []
    for wheels in current.values():
        for wheel in wheels:
            if not unrecorded_ok and wheel not in recorded:
                damaged.append(manifest.unrecorded(wheelhouse, entries, wheel))
                continue
            try:
                shas[wheel] = verify(wheel, recorded.get(wheel))
            except DamagedWheel as exc:
                damaged.append(exc.message)
                continue
            dest = files_dir / wheel.name
            if dest.exists() and _sha(dest) != shas[wheel]:
                conflicts.append(f"{wheel.name} is already published with sha256 {_sha(dest)}, "
                                 f"the wheelhouse has {shas[wheel]}")
    if damaged:
        raise DamagedWheel(f"nothing was published: {len(damaged)} damaged or unrecorded wheel(s): "
                           f"{'; '.join(damaged)}",
                           "rebuild the damaged wheel(s), remove the unrecorded ones; nox -s check_wheels lists each "
                           "problem")
    if conflicts:
        raise IndexConflict(f"nothing was published: {'; '.join(conflicts)}",
                            "a published file never changes: rebuild under a new version or label")
    return shas


def build_index(wheelhouse: Path, *, base_url: str | None = None, prune: bool = False,
                flavours: list[str] | None = None, extra_catalogue: Path | None = None,
                warn: Callable[[str], object] = lambda m: print(f"warning: {m}"),
                signer: Any | None = None) -> dict[str, Any]:
    """Publish the wheelhouse's wheels into the index and regenerate every page. Returns a summary.

    Runs under the wheelhouse lock. Every wheel is validated first; if any is damaged or conflicts,
    nothing is copied. Each copy appears atomically. ``signer`` (provenance.signer_from_env) signs the
    provenance statements."""
    with manifest.lock(wheelhouse):
        return _build_index(wheelhouse, base_url=base_url, prune=prune, flavours=flavours,
                            extra_catalogue=extra_catalogue, warn=warn, signer=signer)


def _build_index(wheelhouse: Path, *, base_url: str | None, prune: bool, flavours: list[str] | None,
                 extra_catalogue: Path | None = None,
                 warn: Callable[[str], object] = lambda m: print(f"warning: {m}"),
                 signer: Any | None = None) -> dict[str, Any]:
    root = wheelhouse / "index"
    files_dir = root / "files"
    state_path = root / "state.json"
    state: dict[str, list[str]] = json.loads(state_path.read_text()) if state_path.exists() else {}
    current = wheelhouse_flavours(wheelhouse)
    if flavours:
        unknown = sorted(set(flavours) - set(current))
        if unknown:
            raise ConfigError(f"no wheels for flavour(s) {', '.join(unknown)} in {wheelhouse}",
                              f"built flavours: {', '.join(current) or 'none'}")
        current = {k: v for k, v in current.items() if k in flavours}
    validate(wheelhouse, current, files_dir, warn)
    files_dir.mkdir(parents=True, exist_ok=True)
    added, kept = [], 0
    for flavour, wheels in current.items():
        for wheel in wheels:
            dest = files_dir / wheel.name
            if dest.exists():
                kept += 1
            else:
                copy_atomic(wheel, dest)
                added.append(wheel.name)
            meta = files_dir / (wheel.name + ".metadata")
            if not meta.exists():
                _write_atomic(meta, wheel_metadata(dest))
            state[flavour] = sorted({*state.get(flavour, []), wheel.name})
    pruned = []
    if prune:
        present = {f: {w.name for w in ws} for f, ws in wheelhouse_flavours(wheelhouse).items()}
        for flavour in list(state):
            keep = [n for n in state[flavour] if n in present.get(flavour, set())]
            pruned += [n for n in state[flavour] if n not in present.get(flavour, set())]
            state[flavour] = keep
        for name in sorted(set(pruned)):
            if not any(name in v for v in state.values()):
                (files_dir / name).unlink(missing_ok=True)
                (files_dir / (name + ".metadata")).unlink(missing_ok=True)
                (root / provenance.FOLDER / (name + provenance.SUFFIX)).unlink(missing_ok=True)
    state = {k: v for k, v in sorted(state.items()) if v}
    _write_atomic(state_path, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())
    infos = {n: _info(files_dir, n) for listed in state.values() for n in listed}
    pages: list[tuple[str, list[str]]] = [*state.items(), (COMBINED, sorted(infos))]
    for flavour, listed in pages:
        _write_flavour(root / flavour, [infos[n] for n in listed], base_url, flavour)
    statements = write_provenance(root, wheelhouse, state, signer)  # before the catalogue, which links them
    catalogue.write(root, wheelhouse, state, base_url, extra_catalogue)  # flavours.json + selector (#18)
    return {"added": added, "kept": kept, "pruned": sorted(set(pruned)), "flavours": list(state),
            "files": len(infos), "statements": len(statements)}


def write_provenance(root: Path, wheelhouse: Path, state: dict[str, list[str]], signer: Any | None) -> list[str]:
    """``provenance/<wheel>.intoto.json`` for each published wheel the manifest knows: its in-toto statement
    (with the smoke verdict once ``reports/smoke-<flavour>.json`` is about that wheel) in a DSSE envelope,
    signed when ``signer`` is given. Outside ``files/``, whose files never change: a statement may gain a
    smoke verdict or a signature later. A wheel published earlier and unknown to this manifest keeps the
    statement it has. Deterministic (Ed25519 signatures are too). Returns the statements written."""
    built = {(e.get("flavour"), e.get("filename")): e for e in manifest.read(wheelhouse)["wheels"].values()}
    written = []
    for flavour, names in sorted(state.items()):
        for name in names:
            entry = built.get((flavour, name))
            if entry is None or not entry.get("inputs"):
                continue
            sha = _sha(root / "files" / name)
            smoke = provenance.smoke_byproduct(wheelhouse / "reports", flavour, name)
            env = provenance.envelope(provenance.statement(name, sha, entry, smoke), signer)
            dest = root / provenance.FOLDER / (name + provenance.SUFFIX)
            dest.parent.mkdir(exist_ok=True)
            _write_atomic(dest, (json.dumps(env, indent=2, sort_keys=True) + "\n").encode())
            written.append(dest.name)
    return written


def _url(info: FileInfo, base_url: str | None) -> str:
    if base_url:
        return f"{base_url.rstrip('/')}/files/{info.filename}"
    return f"../../files/{info.filename}"


def _write_flavour(folder: Path, files: list[FileInfo], base_url: str | None, flavour: str) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    projects: dict[str, list[FileInfo]] = {}
    for f in files:
        projects.setdefault(str(canonicalize_name(f.project)), []).append(f)
    folder.mkdir(parents=True)
    links = "".join(f'    <a href="{p}/">{p}</a><br/>\n' for p in sorted(projects))
    (folder / "index.html").write_text(_page(f"llama-wheels index: {flavour}", links))
    (folder / "index.json").write_text(json.dumps({
        "meta": {"api-version": "1.1"}, "projects": [{"name": p} for p in sorted(projects)]}, indent=2) + "\n")
    for project, items in sorted(projects.items()):
        items.sort(key=lambda f: f.filename)
        pdir = folder / project
        pdir.mkdir()
        rows = []
        for f in items:
            attrs = [f'href="{html.escape(_url(f, base_url))}#sha256={f.sha256}"']
            if f.requires_python:
                attrs.append(f'data-requires-python="{html.escape(f.requires_python)}"')
            attrs.append(f'data-dist-info-metadata="sha256={f.metadata_sha256}"')
            attrs.append(f'data-core-metadata="sha256={f.metadata_sha256}"')
            rows.append(f"    <a {' '.join(attrs)}>{html.escape(f.filename)}</a><br/>\n")
        (pdir / "index.html").write_text(_page(f"Links for {project}", "".join(rows)))
        (pdir / "index.json").write_text(json.dumps({
            "meta": {"api-version": "1.1"},
            "name": project,
            "versions": sorted({f.version for f in items}),
            "files": [{
                "filename": f.filename, "url": _url(f, base_url), "hashes": {"sha256": f.sha256},
                "requires-python": f.requires_python or None, "size": f.size,
                "core-metadata": {"sha256": f.metadata_sha256}, "dist-info-metadata": {"sha256": f.metadata_sha256},
            } for f in items],
        }, indent=2) + "\n")


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" content="1.1">\n'
            f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n    <h1>{html.escape(title)}</h1>\n"
            f"{body}  </body>\n</html>\n")
