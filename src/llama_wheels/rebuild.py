"""``verify-rebuild WHEEL|URL``: rebuild a wheel in a fresh build dir and compare it with the original.

1. The wheel (a path or an http(s) URL) and its recorded inputs: the manifest entry with that sha256 in
   this wheelhouse, else its provenance statement (``--statement``, or by default the one the index
   serves for it: ``<index>/provenance/<wheel>.intoto.json``), checked against ``--key`` when given.
2. The rebuild's plan for the same arch set and variants, from this checkout's configuration
   (pyproject, ``LLAMA_WHEELS_*``, ``CMAKE_ARGS``) and this machine's tools. When its inputs differ from
   the recorded ones, the first difference is named (a CMake flag, the sdist, a tool's version) and
   nothing is compiled: those bytes could not match.
3. The build, into ``<build-dir>/rebuild`` (emptied first; the compiler cache is the usual one).
4. The two sha256s. When they differ: the first member that differs and what differs in it (a path
   string, a timestamp, a compiler's ident, or the section and offset of the first differing byte).
"""

from __future__ import annotations

import dataclasses
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from llama_wheels import manifest, pipeline, plan, provenance
from llama_wheels.clean import owned_subdir, remove_tree_within
from llama_wheels.config import Options
from llama_wheels.digest import sha256_file
from llama_wheels.errors import ProvenanceError, RebuildMismatch
from llama_wheels.log import Logger

FOLDER = "rebuild"  # <build-dir>/rebuild: the fresh build dir, ours, emptied before each rebuild


@dataclass(frozen=True)
class RebuildRequest:
    wheel: str  # a path or a URL
    statement: str | None = None  # path or URL; default: the manifest entry, else the index's statement
    key: str | None = None  # PEM public key: the statement's signature is checked first
    dry_run: bool = False  # compare the inputs only; compile nothing


def local_wheel(where: str, options: Options) -> Path:
    """A local copy of the wheel: the path itself, or a URL downloaded into the cache dir."""
    if urlsplit(where).scheme in ("http", "https", "file"):
        name = Path(urlsplit(where).path).name
        dest = options.cache_dir / "verify" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(provenance.read_source(where))
        return dest
    path = Path(where)
    if not path.is_file():
        raise ProvenanceError(f"{where} is not a file", "give the path or URL of a wheel")
    return path


def recorded_inputs(wheel: Path, request: RebuildRequest, options: Options,
                    log: Logger) -> provenance.BuildInputs:
    """The wheel's recorded inputs: its manifest entry (same sha256), else its provenance statement."""
    sha = sha256_file(wheel)
    if request.statement is None:
        for entry in manifest.entries(options.wheelhouse).values():
            if entry.get("sha256") == sha and entry.get("inputs"):
                log.info(f"recorded inputs: {options.wheelhouse / 'manifest.json'} ({entry.get('flavour')})")
                return provenance.BuildInputs.from_dict(entry["inputs"])
            if entry.get("sha256") == sha:
                raise ProvenanceError(f"{wheel.name} was built before llama-wheels recorded its inputs (its "
                                      "manifest entry has none)", "rebuild it once with this llama-wheels")
    where = request.statement or provenance.statement_location(request.wheel)
    try:
        data = provenance.read_source(where)
    except ProvenanceError:
        raise ProvenanceError(f"no recorded inputs for {wheel.name}: no entry with sha256 {sha} in "
                              f"{options.wheelhouse / 'manifest.json'} and no statement at {where}",
                              "pass --statement PATH|URL (the index serves it under provenance/)") from None
    key = provenance.read_source(request.key) if request.key else None
    verified = provenance.verify(wheel.name, sha, data, key)
    log.info(f"recorded inputs: {where} ({'signed by ' + str(verified.keyid) if verified.keyid else 'unsigned'})")
    internal = verified.predicate.get("buildDefinition", {}).get("internalParameters", {})
    return provenance.BuildInputs.from_dict({**internal.get("inputs", {}), "toolchain": internal.get("toolchain", {})})


def fresh_build_dir(options: Options) -> Path:
    """``<build-dir>/rebuild``, ours and empty."""
    path = owned_subdir(options.build_dir, FOLDER)
    remove_tree_within(path, options.build_dir)
    return owned_subdir(options.build_dir, FOLDER)


def rebuild_request(recorded: provenance.BuildInputs, dry_run: bool) -> pipeline.BuildRequest:
    return pipeline.BuildRequest(arch_specs=(recorded.archs,) if recorded.archs else (), cpu=recorded.archs is None,
                                 variants=recorded.variants, dry_run=dry_run)


def run(options: Options, request: RebuildRequest, env: Mapping[str, str], log: Logger) -> dict[str, Any]:
    """Verify that ``request.wheel`` rebuilds to the same bytes. Raises RebuildMismatch naming the first
    difference (of the inputs, before compiling; else of the bytes), ProvenanceError when the recorded
    inputs cannot be had or their statement does not verify. Returns a summary."""
    wheel = local_wheel(request.wheel, options)
    recorded = recorded_inputs(wheel, request, options, log)
    root = fresh_build_dir(options)
    here_opts = dataclasses.replace(options, build_dir=root, wheelhouse=root / "wheelhouse")
    planned = pipeline.build(here_opts, rebuild_request(recorded, dry_run=True), env, log)
    step = next((s for s in planned.steps if s.flavour == recorded.flavour), planned.steps[0])
    here = provenance.inputs_of(step, here_opts, provenance.step_toolchain(step, plan.step_env(step, env)),
                                env.get("HOME"))
    diffs = provenance.differences(recorded, here)
    for d in diffs:
        log.warning(f"differs: {d.describe()}")
    if diffs:
        more = f" (and {len(diffs) - 1} more above)" if len(diffs) > 1 else ""
        raise RebuildMismatch(f"{wheel.name} cannot be rebuilt here: the inputs differ: {diffs[0].describe()}{more}",
                              "rebuild with the recorded inputs (the same flags, sdist and tool versions); "
                              "nothing was compiled")
    log.info(f"inputs agree with {wheel.name}'s record ({len(here.cmake_args)} CMake flags, "
             f"{len(here.toolchain)} tool versions)")
    if request.dry_run:
        return {"wheel": wheel.name, "inputs": "agree", "rebuilt": None}
    built = pipeline.build(here_opts, rebuild_request(recorded, dry_run=False), env, log)
    ours = next(r.wheel for r in built.results if r.step.flavour == step.flavour and r.wheel is not None)
    a, b = sha256_file(wheel), sha256_file(ours)
    if a != b:
        raise RebuildMismatch(f"{wheel.name}: sha256 {a}, the rebuild {b}; first difference: "
                              f"{first_difference(wheel, ours)}",
                              f"compare the two wheels ({wheel} and {ours}); the build's inputs agreed")
    log.info(f"reproduced: {wheel.name} rebuilt in {root} has the same sha256 {a}")
    return {"wheel": wheel.name, "inputs": "agree", "rebuilt": str(ours), "sha256": a}


# ------------------------------------------------------------------------------ what differs ----------

_TIMESTAMP = re.compile(r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{4}\b|"
                        r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\b\d\d:\d\d:\d\d\b")


def _strings(data: bytes, least: int = 6) -> list[str]:
    return [m.decode("ascii") for m in re.findall(rb"[\x20-\x7e]{%d,}" % least, data)]


def _section_at(data: bytes, offset: int) -> str | None:
    """The ELF section holding file ``offset`` (pyelftools), or None."""
    import io

    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(io.BytesIO(data))
        for sec in elf.iter_sections():
            start, size = sec["sh_offset"], sec["sh_size"]
            if sec["sh_type"] != "SHT_NOBITS" and start <= offset < start + size:
                return str(sec.name)
    except (ELFError, ValueError, KeyError):  # a damaged or foreign ELF: the offset alone is still a clue
        return None
    return None


def describe_bytes(name: str, a: bytes, b: bytes) -> str:
    """What differs between two versions of one member, in words."""
    if a[:4] == b"\x7fELF" and b[:4] == b"\x7fELF":
        sa, sb = _strings(a), _strings(b)
        only_a = [s for s in sa if s not in set(sb)]
        only_b = [s for s in sb if s not in set(sa)]
        for kind, test in (("a path string", lambda s: "/" in s and not s.startswith("GCC:")),
                           ("a timestamp", lambda s: bool(_TIMESTAMP.search(s))),
                           ("the compiler's ident", lambda s: s.startswith(("GCC:", "clang version")))):
            x = next((s for s in only_a if test(s)), None)
            y = next((s for s in only_b if test(s)), None)
            if x or y:
                return f"{kind}: {x!r} in the wheel, {y!r} in the rebuild"
        if len(a) != len(b):
            return f"size {len(a)} vs {len(b)} bytes"
        offset = next(i for i in range(len(a)) if a[i] != b[i])
        count = sum(1 for i in range(len(a)) if a[i] != b[i])
        section = _section_at(a, offset)
        return f"{count} byte(s) differ from offset {offset:#x}" + (f" in section {section}" if section else "")
    try:
        la, lb = a.decode("utf-8").splitlines(), b.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        offset = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
        return f"bytes differ from offset {offset:#x}"
    for i, (x, y) in enumerate(zip(la, lb, strict=False), start=1):
        if x != y:
            what = "a timestamp" if _TIMESTAMP.search(x) or _TIMESTAMP.search(y) else "a path string" \
                if ("/" in x or "/" in y) and not name.endswith("RECORD") else "line"
            return f"{what} (line {i}): {x!r} in the wheel, {y!r} in the rebuild"
    return f"{len(la)} vs {len(lb)} lines"


def first_difference(a: Path, b: Path) -> str:
    """The first member of two wheels that differs (in zip order) and what differs in it."""
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
        na, nb = za.namelist(), zb.namelist()
        if na != nb:
            i = next((i for i, (x, y) in enumerate(zip(na, nb, strict=False)) if x != y), min(len(na), len(nb)))
            x, y = (na[i] if i < len(na) else "(end)"), (nb[i] if i < len(nb) else "(end)")
            return f"the member lists differ at #{i + 1}: {x} in the wheel, {y} in the rebuild"
        for name in na:
            ia, ib = za.getinfo(name), zb.getinfo(name)
            da, db = za.read(name), zb.read(name)
            if da != db:
                return f"{name}: {describe_bytes(name, da, db)}"
            if ia.date_time != ib.date_time:
                return f"{name}: a timestamp: zip time {ia.date_time} in the wheel, {ib.date_time} in the rebuild"
            if ia.external_attr != ib.external_attr:
                return (f"{name}: file mode {ia.external_attr >> 16:o} in the wheel, "
                        f"{ib.external_attr >> 16:o} in the rebuild")
            if ia.compress_type != ib.compress_type:
                return f"{name}: compression {ia.compress_type} in the wheel, {ib.compress_type} in the rebuild"
    return "every member is identical; the zip container differs (compression level or comment)"

