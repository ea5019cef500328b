"""The flavour catalogue at the index root: ``flavours.json`` for the selector, ``flavours.html`` for people,
and the selector itself (``llama-wheels-select.py``, a copy of :mod:`llama_wheels.selector`).

Per flavour: its llama-cpp-python wheels (URL, sha256, size, version, Python/ABI/platform tags, the
manylinux glibc floor when the tag has one), the SASS and PTX the wheel holds (measured from the binary
with cuobjdump at build time: the manifest's ``embedded``; the requested archs only when it was not
measured, and then ``measured`` is false), the CUDA runtime version and how it is provided, the fatbin
compression mode, and the oldest driver that runs it. Generated from the index state and
``wheelhouse/manifest.json``; deterministic (no times), like the rest of the index.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from llama_wheels import manifest, selector
from llama_wheels.archs import parse_arch_set
from llama_wheels.compat import compression_mode, min_driver, parse_version
from llama_wheels.digest import sha256_file
from llama_wheels.errors import ConfigError

SCHEMA = 1
HTML = "flavours.html"
_LEGACY_MANYLINUX = {"manylinux1": "2.5", "manylinux2010": "2.12", "manylinux2014": "2.17"}


def manylinux_floor(platform_tag: str) -> str | None:
    """``manylinux_2_28_x86_64`` -> "2.28"; ``manylinux2014_x86_64`` -> "2.17"; ``linux_x86_64`` -> None."""
    m = re.match(r"manylinux_(\d+)_(\d+)_", platform_tag)
    if m:
        return f"{m[1]}.{m[2]}"
    return next((v for k, v in _LEGACY_MANYLINUX.items() if platform_tag.startswith(k + "_")), None)


def _url(base_url: str | None, rel: str) -> str:
    return f"{base_url.rstrip('/')}/{rel}" if base_url else rel


def wheel_record(path: Path, base_url: str | None, sha256: str | None = None) -> dict[str, Any]:
    _, version, _, tags = parse_wheel_filename(path.name)
    plats = sorted({t.platform for t in tags})
    floors = [f for f in map(manylinux_floor, plats) if f]
    return {
        "filename": path.name, "url": _url(base_url, f"files/{path.name}"),
        "sha256": sha256 or sha256_file(path), "size": path.stat().st_size, "version": str(version),
        "python_tags": sorted({t.interpreter for t in tags}), "abi_tags": sorted({t.abi for t in tags}),
        "platform_tags": plats, "manylinux_floor": min(floors, key=parse_version) if floors else None,
        **provenance_link(path, base_url),
    }


def provenance_link(path: Path, base_url: str | None) -> dict[str, Any]:
    """``{"provenance": {url, sha256, signed}}`` when the index serves the wheel's statement
    (index.write_provenance)."""
    stmt = path.parent.parent / "provenance" / f"{path.name}.intoto.json"
    if not stmt.is_file():
        return {}
    signed = bool(json.loads(stmt.read_text(encoding="utf-8")).get("signatures"))
    return {"provenance": {"url": _url(base_url, f"provenance/{stmt.name}"), "sha256": sha256_file(stmt),
                           "signed": signed}}


def code_of(entry: Mapping[str, Any]) -> tuple[list[str], list[str], bool]:
    """(sass, ptx, measured) of a manifest entry: cuobjdump's names, as the binary holds them."""
    if entry.get("embedded") is not None:
        names = list(entry["embedded"])
        sass, ptx = (sorted(n for n in names if n.startswith(p)) for p in ("sm_", "compute_"))
        return sass, ptx, True
    if entry.get("archs"):
        archs = parse_arch_set(str(entry["archs"]), ptx="none")
        return sorted(archs.sass), sorted(archs.ptx), False
    return [], [], False


def flavour_entry(flavour: str, wheels: list[dict[str, Any]], built: Mapping[str, Any] | None,
                  base_url: str | None) -> dict[str, Any]:
    newest = max(wheels, key=lambda w: Version(w["version"])) if wheels else None
    out: dict[str, Any] = {"index": _url(base_url, f"{flavour}/"), "wheels": wheels,
                           "size": newest["size"] if newest else 0}
    if built is None:  # published, but the manifest no longer knows how it was built
        cpu = newest is not None and Version(newest["version"]).local == "cpu"
        out.update(kind="cpu" if cpu else "unknown", cuda=None, runtime=None, sass=[], ptx=[], measured=False,
                   compress_mode=None, min_driver=None)
        return out
    if not built.get("cuda"):
        out.update(kind="cpu", cuda=None, runtime=None, sass=[], ptx=[], measured=True, compress_mode=None,
                   min_driver=None)
        return out
    cuda = parse_version(str(built["cuda"]))
    sass, ptx, measured = code_of(built)
    mode = compression_mode(cuda, list(built.get("cmake_args") or []))
    row = min_driver(cuda, mode)
    out.update(kind="cuda", cuda=f"{cuda[0]}.{cuda[1]}", runtime=built.get("cuda_runtime"), sass=sass, ptx=ptx,
               measured=measured, compress_mode=mode,
               min_driver={"cuda": f"{row.cuda[0]}.{row.cuda[1]}", "linux": row.linux_min,
                           "windows": row.windows_min} if row else {"cuda": f"{cuda[0]}.0"})
    return out


def build_catalogue(root: Path, wheelhouse: Path, state: Mapping[str, list[str]], base_url: str | None,
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The catalogue for the published ``state`` (flavour -> file names under ``root/files``)."""
    entries = manifest.read(wheelhouse)["wheels"]  # build_index holds the wheelhouse lock
    by_file = {(e.get("flavour"), e.get("filename")): e for e in entries.values()}
    flavours: dict[str, Any] = {}
    for flavour, names in sorted(state.items()):
        ours = [n for n in sorted(names) if canonicalize_name(parse_wheel_filename(n)[0]) == selector.PROJECT]
        if not ours:
            continue
        built = {n: by_file.get((flavour, n)) for n in ours}
        wheels = [wheel_record(root / "files" / n, base_url, (built[n] or {}).get("sha256")) for n in ours]
        newest = max(ours, key=lambda n: parse_wheel_filename(n)[1])
        flavours[flavour] = flavour_entry(flavour, wheels, built[newest], base_url)
    for flavour, entry in sorted((extra or {}).get("flavours", {}).items()):
        if flavour not in flavours:  # a flavour built here is described from its manifest, never from the extra
            flavours[flavour] = {**entry, "catalogue_only": True}
    return {"schema": SCHEMA, "project": selector.PROJECT, "selector": selector.SCRIPT_NAME,
            "flavours": flavours}


def render_html(cat: Mapping[str, Any]) -> str:
    rows = []
    for name, f in cat["flavours"].items():
        newest = max(f.get("wheels") or [{}], key=lambda w: Version(w.get("version", "0")))
        driver = f.get("min_driver") or {}
        code = ", ".join([*f.get("sass", []), *f.get("ptx", [])]) or "-"
        rows.append("      <tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            name, f.get("kind", ""), newest.get("version", "-"), code + ("" if f.get("measured") else " (requested)"),
            f.get("cuda") or "-", f.get("runtime") or "-",
            f"{driver.get('linux', '-')} / {driver.get('windows', '-')}" if driver else "-",
            f"{int(f.get('size') or 0) / 1e6:.1f} MB")) + "</tr>\n")
    cmd = f"python3 {selector.SCRIPT_NAME} --index URL-OF-THIS-FOLDER"
    return ("<!DOCTYPE html>\n<html>\n  <head>\n    <title>llama-cpp-python flavours</title>\n  </head>\n  <body>\n"
            "    <h1>llama-cpp-python flavours</h1>\n"
            f"    <p>Let <a href=\"{selector.SCRIPT_NAME}\">{selector.SCRIPT_NAME}</a> (Python only) pick one: "
            f"<code>{html.escape(cmd)}</code> prints the pip command, <code>--install</code> runs it. "
            f"The same data for programs: <a href=\"{selector.CATALOGUE}\">{selector.CATALOGUE}</a>.</p>\n"
            "    <table>\n      <tr><th>flavour</th><th>kind</th><th>version</th><th>GPU code (cubins, PTX)</th>"
            "<th>CUDA</th><th>runtime</th><th>min driver (Linux / Windows)</th><th>size</th></tr>\n"
            f"{''.join(rows)}    </table>\n  </body>\n</html>\n")


def selector_script(base_url: str | None) -> str:
    """The selector's own source; with a base URL, that URL as its default index."""
    text = Path(selector.__file__).read_text(encoding="utf-8")
    if base_url:
        line = 'DEFAULT_INDEX_URL = ""\n'
        assert text.count(line) == 1, "selector.DEFAULT_INDEX_URL moved"
        text = text.replace(line, f"DEFAULT_INDEX_URL = {json.dumps(base_url.rstrip('/') + '/')}\n")
    return text


def write(root: Path, wheelhouse: Path, state: Mapping[str, list[str]], base_url: str | None,
          extra_path: Path | None = None) -> dict[str, Any]:
    """Write flavours.json, flavours.html and the selector script into the index root."""
    extra = None
    if extra_path is not None:
        try:
            extra = json.loads(extra_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the extra catalogue {extra_path}: {exc}",
                              "give a JSON file shaped like flavours.json ({\"flavours\": {...}})") from None
    cat = build_catalogue(root, wheelhouse, state, base_url, extra)
    (root / selector.CATALOGUE).write_text(json.dumps(cat, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (root / HTML).write_text(render_html(cat), encoding="utf-8")
    (root / selector.SCRIPT_NAME).write_text(selector_script(base_url), encoding="utf-8")
    return cat
