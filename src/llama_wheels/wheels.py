"""Post-processing of built wheels: label, slim, runtime policy, and the wheel check.

Unpacking and repacking go through the ``wheel`` tool (``python -m wheel unpack/pack``), which
rewrites RECORD. Library names come from the ELF dynamic sections, never from guesses.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
import stat
import sys
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_version, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from llama_wheels import cmd, windows
from llama_wheels.digest import sha256_file
from llama_wheels.elf import is_elf, patch, read_dynamic
from llama_wheels.errors import DamagedWheel, WheelCheckFailed

PKG = "llama_cpp"
#: Libraries the CUDA runtime wheels provide, and where they install relative to llama_cpp/lib/.
PIP_RUNPATH = ("$ORIGIN", "$ORIGIN/../../nvidia/cu{major}/lib", "$ORIGIN/../../nvidia/cuda_runtime/lib",
               "$ORIGIN/../../nvidia/cublas/lib")
def runtime_requirements(cuda_major: int) -> list[str]:
    """NVIDIA's runtime wheels for ``--cuda-runtime pip``. Their PyPI names carry ``-cu12`` for CUDA 12
    (nvidia-cuda-runtime-cu12, nvidia-cublas-cu12: site-packages/nvidia/{cuda_runtime,cublas}/lib) and none
    from CUDA 13 on (nvidia/cu13/lib); the unsuffixed names have no 12.x release."""
    suffix = f"-cu{cuda_major}" if cuda_major < 13 else ""
    return [f"nvidia-cuda-runtime{suffix}~={cuda_major}.0", f"nvidia-cublas{suffix}~={cuda_major}.0"]


#: Never bundled: the driver is the machine's, not the wheel's.
DRIVER_LIBS = ("libcuda.so", "nvcuda.dll")


def unpack(wheel: Path, dest: Path) -> Path:
    """Unpack with the wheel tool; returns the unpacked root folder."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd.run([sys.executable, "-m", "wheel", "unpack", "--dest", str(dest), str(wheel)], quiet=True, capture=True)
    roots = [p for p in dest.iterdir() if p.is_dir()]
    if len(roots) != 1:
        raise WheelCheckFailed(f"unpacking {wheel.name} gave {len(roots)} folders", "the wheel is malformed")
    return roots[0]


#: The zip timestamp of every member of a wheel we write (1980-01-01, the zip minimum), so a rebuild from
#: the same inputs has the same sha256. Set for the repack only, never for the compile: SOURCE_DATE_EPOCH
#: in the compile's environment disabled AVX2 in ggml's CPU backend.
ZIP_EPOCH = "315532800"


def normalize_modes(root: Path) -> None:
    """Every file 0o644, or 0o755 if any execute bit is set: the zip's modes do not depend on the umask."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            mode = stat.S_IMODE(path.stat().st_mode)
            path.chmod(0o755 if mode & 0o111 else 0o644)


def pack(root: Path, dest: Path) -> Path:
    """Pack ``root`` reproducibly: fixed zip timestamps (ZIP_EPOCH), the wheel tool's sorted member order
    (.dist-info last, RECORD at the end) and normalized modes. Same tree, same bytes."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("*.whl"))
    normalize_modes(root)
    env = {**os.environ, "SOURCE_DATE_EPOCH": ZIP_EPOCH}
    cmd.run([sys.executable, "-m", "wheel", "pack", "--dest-dir", str(dest), str(root)], quiet=True, capture=True,
            env=env)
    new = set(dest.glob("*.whl")) - before
    if len(new) != 1:
        raise WheelCheckFailed(f"packing {root.name} made {len(new)} wheels", "see the wheel tool's output")
    return new.pop()


def dist_info(root: Path) -> Path:
    found = list(root.glob("*.dist-info"))
    if len(found) != 1:
        raise WheelCheckFailed(f"{root.name} has {len(found)} .dist-info folders", "the wheel is malformed")
    return found[0]


def relabel(root: Path, version: str) -> None:
    """Set the version (with its local label) in METADATA and the dist-info folder name alike."""
    di = dist_info(root)
    meta = di / "METADATA"
    text = meta.read_text(encoding="utf-8")
    text, n = re.subn(r"^Version: .*$", f"Version: {version}", text, count=1, flags=re.M)
    if n != 1:
        raise WheelCheckFailed(f"{meta} has no Version header", "the wheel is malformed")
    meta.write_text(text, encoding="utf-8")
    name = di.name.split("-")[0]
    di.rename(di.with_name(f"{name}-{version}.dist-info"))


def add_requires(root: Path, requirements: list[str]) -> None:
    meta = dist_info(root) / "METADATA"
    text = meta.read_text(encoding="utf-8")
    head, sep, body = text.partition("\n\n")
    existing = set(re.findall(r"^Requires-Dist: (.*)$", head, flags=re.M))
    head += "".join(f"\nRequires-Dist: {r}" for r in requirements if r not in existing)
    meta.write_text(head + sep + body, encoding="utf-8")


@dataclass
class SlimReport:
    dropped: list[str] = field(default_factory=list)
    deduplicated: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # old soname -> new


def unversioned(name: str) -> str:
    """libggml-base.so.0.25.3 -> libggml-base.so"""
    m = re.match(r"^(.*?\.so)(\.\d+)*$", name)
    return m[1] if m else name


def slim(root: Path) -> SlimReport:
    """Keep one real file per library, under the name the loader opens, and nothing outside the package.

    Linux: every library goes to ``llama_cpp/lib/lib<name>.so``; SONAME and the NEEDED entries of
    the others are rewritten to that name with patchelf, so no second copy is needed.
    Windows: DLLs have no versioned copies; the top-level ``bin/``, ``lib/``, ``include/`` go.
    """
    report = SlimReport()
    di = dist_info(root).name
    for entry in sorted(root.iterdir()):
        if entry.name not in (PKG, di):
            report.dropped.append(entry.name + ("/" if entry.is_dir() else ""))
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    libdir = root / PKG / "lib"
    if not libdir.is_dir():
        return report
    groups: dict[str, list[Path]] = defaultdict(list)
    for f in sorted(libdir.iterdir()):
        if f.is_file() and is_elf(f):
            groups[sha256_file(f)].append(f)
    keep: dict[str, Path] = {}  # old soname (or file name) -> kept path
    for files in groups.values():
        info = read_dynamic(files[0])
        canonical = unversioned(info.soname or files[0].name)
        target = libdir / canonical
        src = next((f for f in files if f.name == canonical), files[0])
        if src != target:
            src.rename(target)
        for f in files:
            if f != src and f.exists():
                report.deduplicated.append(f.name)
                f.unlink()
        for name in {info.soname, *(f.name for f in files)} - {None, canonical}:
            keep[name] = target  # type: ignore[index]
    renames = {old: path.name for old, path in keep.items()}
    for lib in sorted({p for p in keep.values()} | {f for f in libdir.iterdir() if is_elf(f)}):
        info = read_dynamic(lib)
        needed = {n: renames[n] for n in info.needed if n in renames}
        new_soname = lib.name if info.soname and info.soname != lib.name else None
        patch(lib, soname=new_soname, replace_needed=needed)
        if new_soname:
            report.renamed[info.soname] = new_soname  # type: ignore[index]
    return report


#: NVIDIA's nvidia-nccl-cu<major> wheel installs libnccl.so.2 here (measured: 2.32.3).
PIP_NCCL_RUNPATH = "$ORIGIN/../../nvidia/nccl/lib"
_RUNTIME_PREFIXES = ("libcudart", "libcublas", "libnccl")


def local_runpaths(root: Path) -> dict[str, tuple[str, ...]]:
    """Drop every RUNPATH entry that is not $ORIGIN-relative (CMake's INSTALL_RPATH_USE_LINK_PATH
    records build-host folders: the toolkit, NCCL, the driver stub). Returns what was dropped."""
    libdir = root / PKG / "lib"
    dropped = {}
    for f in sorted(libdir.iterdir()) if libdir.is_dir() else []:
        if not (f.is_file() and is_elf(f)):
            continue
        runpath = read_dynamic(f).runpath
        keep = [e for e in runpath if e.startswith("$ORIGIN")]
        if len(keep) != len(runpath):
            patch(f, runpath=":".join(keep) or "$ORIGIN")
            dropped[f.name] = tuple(e for e in runpath if e not in keep)
    return dropped


def apply_runtime(root: Path, mode: str, cuda_major: int, *, toolkit_lib: Path | None = None,
                  nccl_lib: Path | None = None) -> list[str]:
    """Make the wheel find the CUDA runtime (and NCCL when ``nccl_lib``, the folder NCCL was linked from,
    is given). Returns the Requires-Dist lines added (pip mode). Build-host RUNPATHs are dropped first."""
    from llama_wheels.toolkit import nccl_requirement

    libdir = root / PKG / "lib"
    if any(libdir.glob("*.dll")):  # a Windows wheel: no RUNPATH; see windows.py
        return _apply_runtime_windows(root, mode, cuda_major)
    local_runpaths(root)
    cuda_libs = [f for f in libdir.glob("*.so") if any(n.startswith(_RUNTIME_PREFIXES)
                                                        for n in read_dynamic(f).needed)]
    if mode == "pip":
        entries = [p.format(major=cuda_major) for p in PIP_RUNPATH] + ([PIP_NCCL_RUNPATH] if nccl_lib else [])
        for f in cuda_libs:
            patch(f, runpath=":".join(entries))
        reqs = runtime_requirements(cuda_major)
        reqs += [nccl_requirement(cuda_major)] if nccl_lib else []
        add_requires(root, reqs)
        return reqs
    if mode == "bundle":
        if toolkit_lib is None:
            raise WheelCheckFailed("--cuda-runtime bundle needs the toolkit's lib folder", "use --cuda-runtime pip")
        wanted = {n for f in cuda_libs for n in read_dynamic(f).needed if n.startswith(_RUNTIME_PREFIXES)}
        for name in sorted(wanted):
            src = (nccl_lib if name.startswith("libnccl") and nccl_lib else toolkit_lib) / name
            if not src.exists():
                raise WheelCheckFailed(f"{name} is not in {src.parent}", "bundle needs a complete toolkit")
            shutil.copy2(src.resolve(), libdir / name)
        return []
    return []


def _apply_runtime_windows(root: Path, mode: str, cuda_major: int) -> list[str]:
    """pip: the DLL-search hook + the NVIDIA runtime wheels as requirements; bundle: delvewheel, after
    packing (build.run_step); system: the toolkit's DLLs must be on PATH at run time."""
    if mode != "pip":
        return []
    windows.add_dll_hook(root, PKG, cuda_major)
    reqs = runtime_requirements(cuda_major)
    add_requires(root, reqs)
    return reqs


# ---------------------------------------------------------------- the wheel check ---------------


@dataclass
class WheelReport:
    wheel: str
    problems: list[str] = field(default_factory=list)
    size: int = 0
    sha256: str = ""
    libs: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _dist_info_of(names: list[str]) -> list[str]:
    return sorted({n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")})


def damage(path: Path) -> list[str]:
    """What is wrong with the bytes of ``path`` as a wheel, one line each; [] when it is intact.

    Checks that it is a complete zip, that every member reads back (zip CRC) and that RECORD lists
    every member with its sha256 and size, and nothing else.
    """
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        return [f"cannot be read: {exc.strerror}"]
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError):
        if head == b"PK\x03\x04":  # starts like a zip, but its end (the central directory) is missing
            return [f"truncated: {path.stat().st_size} bytes, the zip's central directory is missing"]
        return ["not a wheel: not a zip archive"]
    problems: list[str] = []
    with z:
        names = [n for n in z.namelist() if not n.endswith("/")]
        dis = _dist_info_of(names)
        if len(dis) != 1:
            return [f"not a wheel: {len(dis)} .dist-info folders"]
        record_name = f"{dis[0]}/RECORD"
        try:
            record_text = z.read(record_name).decode("utf-8")
        except KeyError:
            return [f"not a wheel: no {record_name}"]
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, UnicodeDecodeError) as exc:
            return [f"RECORD mismatch: {record_name} is damaged ({exc})"]
        listed = {row[0]: row for row in csv.reader(io.StringIO(record_text)) if row}
        for n in names:
            if n == record_name:
                continue
            row = listed.get(n)
            if row is None:
                problems.append(f"RECORD mismatch: {n} is not listed in RECORD")
                continue
            try:
                data = z.read(n)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                problems.append(f"RECORD mismatch: {n} is damaged ({exc})")
                continue
            if len(row) < 2 or row[1] != _record_hash(data) or (len(row) > 2 and row[2] and int(row[2]) != len(data)):
                problems.append(f"RECORD mismatch: {n} (tampered or stale RECORD)")
        for n in listed:
            if n not in names:
                problems.append(f"RECORD mismatch: {n} is listed but not in the wheel")
    return problems


def verify(path: Path, expected_sha256: str | None = None) -> str:
    """Prove ``path`` is the wheel that was built: its sha256 (if given, e.g. the manifest's) and its
    zip and RECORD (see :func:`damage`). Returns the sha256; raises :class:`DamagedWheel` naming the file."""
    if not path.is_file():
        raise DamagedWheel(f"{path} does not exist", "rebuild it")
    got = sha256_file(path)
    if expected_sha256 and got != expected_sha256.lower():
        raise DamagedWheel(f"{path.name}: sha256 {got} is not the {expected_sha256} recorded at build time",
                           "the file changed after the build: rebuild it")
    problems = damage(path)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DamagedWheel(f"{path.name}: {problems[0]}{more}", "delete it and rebuild; see nox -s check_wheels")
    return got


def check_wheel(path: Path, *, cuda_runtime: str | None = None, min_dup_bytes: int = 4096,
                nccl: bool = False) -> WheelReport:
    """Static checks any wheel of ours must pass. Each problem is one specific line; a damaged file
    (not a zip, truncated, RECORD mismatch) is reported, never raised.

    ``nccl``: the wheel was built with the ggml option nccl (from the manifest), so in ``system`` mode
    the machine provides libnccl.so.2 as it does the CUDA runtime.
    """
    rep = WheelReport(path.name, size=path.stat().st_size, sha256=sha256_file(path))
    try:
        name, version, _, tags = parse_wheel_filename(path.name)
    except Exception as exc:  # packaging raises InvalidWheelFilename
        rep.problems.append(f"bad wheel filename: {exc}")
        return rep
    rep.problems += damage(path)
    if rep.problems:
        return rep
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
        di = _dist_info_of(names)[0]
        if f"{di}/METADATA" not in names:
            rep.problems.append(f"not a wheel: no {di}/METADATA")
            return rep
        meta = HeaderParser().parsestr(z.read(f"{di}/METADATA").decode("utf-8"))
        try:
            meta_version = Version(meta["Version"] or "")
        except InvalidVersion:
            rep.problems.append(f"METADATA Version '{meta['Version']}' is not a version")
            return rep
        if canonicalize_version(meta_version) != canonicalize_version(version) or \
                meta_version.local != version.local:
            rep.problems.append(f"label mismatch: filename says {version}, METADATA says {meta['Version']}")
        if di != f"{name.replace('-', '_')}-{version}.dist-info":
            rep.problems.append(f"dist-info folder {di} does not match {name} {version}")
        rep.requires = meta.get_all("Requires-Dist") or []
        stray = sorted({n.split("/")[0] for n in names} - {PKG, di})
        for s in stray:
            rep.problems.append(f"stray top-level '{s}/' (would install into site-packages/{s})")
        by_hash: dict[str, list[str]] = defaultdict(list)
        for info in z.infolist():
            if info.file_size >= min_dup_bytes and not info.filename.endswith("/"):
                by_hash[hashlib.sha256(z.read(info.filename)).hexdigest()].append(info.filename)
        for dup in by_hash.values():
            if len(dup) > 1:
                rep.problems.append(f"duplicate payload: {', '.join(sorted(dup))}")
        rep.libs = sorted(n for n in names if n.startswith(f"{PKG}/lib/"))
        if any(Path(n).name.startswith(DRIVER_LIBS) for n in names):
            rep.problems.append("the NVIDIA driver library (libcuda.so / nvcuda.dll) is bundled; it must never be")
        dlls = windows.wheel_dlls({n: z.read(n) for n in names if n.lower().endswith((".dll", ".pyd"))})
        if dlls:
            major = next((int(m[1]) for d in dlls.values() for i in d.imports if (m := re.match(r"cudart64_(\d+)", i))),
                         None)
            rep.problems += windows.dll_problems(dlls, cuda_runtime=cuda_runtime, requires=rep.requires,
                                                 cuda_major=major)
        has_nv = any(r.startswith(("nvidia-cuda-runtime", "nvidia-cublas")) for r in rep.requires)
        if cuda_runtime == "pip" and not has_nv:
            rep.problems.append("cuda-runtime pip, but METADATA has no nvidia-cuda-runtime/nvidia-cublas requirement")
        if cuda_runtime in ("system", "bundle") and has_nv:
            rep.problems.append(f"cuda-runtime {cuda_runtime}, but METADATA requires NVIDIA runtime wheels")
        if cuda_runtime == "bundle" and not any(Path(n).name.lower().startswith(("libcudart", "cudart64"))
                                                for n in names):
            rep.problems.append("cuda-runtime bundle, but no libcudart is bundled")
        rep.problems += needed_closure(z, names, rep.requires, sorted(t.platform for t in tags)[0],
                                       cuda_runtime=cuda_runtime, nccl=nccl)
    return rep


def needed_closure(z: zipfile.ZipFile, names: list[str], requires: list[str], platform_tag: str, *,
                   cuda_runtime: str | None, nccl: bool) -> list[str]:
    """policy.closure_problems over the native files of an open wheel."""
    from llama_wheels import policy

    return policy.closure_problems(policy.binaries(_native_files(z, names)), all_names=names, requires=requires,
                                   platform_tag=platform_tag, cuda_runtime=cuda_runtime, nccl=nccl)


def _native_files(z: zipfile.ZipFile, names: list[str]) -> dict[str, bytes]:
    from llama_wheels import policy

    native = {}
    for n in names:
        with z.open(n) as f:
            head = f.read(4)
        if head[:4] in policy.IMPORT_READERS or head[:2] in policy.IMPORT_READERS:
            native[n] = z.read(n)
    return native


def elf_closure_problems(root: Path) -> list[str]:
    """Every NEEDED of our libs is found in llama_cpp/lib or is an outside (system/CUDA) library."""
    libdir = root / PKG / "lib"
    present = {f.name for f in libdir.iterdir()} if libdir.is_dir() else set()
    ours = {unversioned(n) for n in present}
    problems = []
    for f in sorted(libdir.glob("*")) if libdir.is_dir() else []:
        if not is_elf(f):
            continue
        for n in read_dynamic(f).needed:
            if n in present:
                continue
            if unversioned(n) in ours:
                problems.append(f"{f.name} needs {n}, but only {unversioned(n)} is in the wheel")
    return problems


def native_binaries(wheel: Path) -> list[Any]:
    """policy.Binary for every native file of ``wheel``."""
    from llama_wheels import policy

    with zipfile.ZipFile(wheel) as z:
        return policy.binaries(_native_files(z, [n for n in z.namelist() if not n.endswith("/")]))


def _memo_key(wheel: Path, exclude: frozenset[str]) -> str:
    """The wheel's bytes, the exclusions, auditwheel's version (its policy data) and this host's C library
    (auditwheel resolves external libraries on the host)."""
    import platform
    from importlib.metadata import version

    return hashlib.sha256(f"{sha256_file(wheel)}|{sorted(exclude)}|auditwheel {version('auditwheel')}|"
                          f"{platform.libc_ver()}".encode()).hexdigest()


def _memo_read(memo: Path | None, wheel: Path, exclude: frozenset[str]) -> Any:
    from llama_wheels import policy

    entry = memo / f"{_memo_key(wheel, exclude)}.json" if memo else None
    if entry is None or not entry.is_file():
        return None
    try:
        data = json.loads(entry.read_text())
        return policy.PlatformTag(str(data["tag"]), data["glibc"], f"{data['why']} (remembered)")
    except (ValueError, KeyError, TypeError):
        return None  # a damaged entry: ask auditwheel again


def _memo_write(memo: Path | None, wheel: Path, exclude: frozenset[str], tag: Any) -> None:
    if memo is None:
        return
    memo.mkdir(parents=True, exist_ok=True)
    entry = memo / f"{_memo_key(wheel, exclude)}.json"
    tmp = entry.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"tag": tag.tag, "glibc": tag.glibc, "why": tag.why}))
    os.replace(tmp, entry)


def requires_of(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return HeaderParser().parsestr(z.read(meta).decode("utf-8")).get_all("Requires-Dist") or []


def manylinux_tag(wheel: Path, *, cuda_runtime: str | None, nccl: bool, memo: Path | None = None) -> tuple[Path, Any]:
    """Retag a Linux wheel with the manylinux tag auditwheel computes for it, leaving out of its search
    what a Requires-Dist, the driver or (system mode) the machine provides. Returns the new path and
    the policy.PlatformTag. A wheel no manylinux policy fits keeps its tag (the wheel check names why).
    ``memo``: a folder of earlier answers, keyed by the wheel's sha256, the exclusions and auditwheel's
    version: a rebuild of the same bytes skips auditwheel's pure-Python symbol scan (6 s for the 3 MB CPU
    wheel on 2 busy cores; most of a warm rebuild's post-processing)."""
    from llama_wheels import policy

    bins = native_binaries(wheel)
    if not any(b.path.endswith(".so") or ".so." in b.path for b in bins):
        current = sorted(t.platform for t in parse_wheel_filename(wheel.name)[3])[0]
        return wheel, policy.PlatformTag(current, None, "no ELF files")
    exclude = policy.excluded_for_audit(bins, requires=requires_of(wheel), cuda_runtime=cuda_runtime, nccl=nccl)
    tag = _memo_read(memo, wheel, exclude)
    if tag is None:
        tag = policy.audit_platform_tag(wheel, exclude)
        _memo_write(memo, wheel, exclude, tag)
    if not tag.tag.startswith("manylinux"):
        return wheel, tag
    out = cmd.run([sys.executable, "-m", "wheel", "tags", "--platform-tag", tag.tag, "--remove", str(wheel)],
                  quiet=True, capture=True,  # the rewritten RECORD's zip time too, or rebuilds differ
                  env={**os.environ, "SOURCE_DATE_EPOCH": ZIP_EPOCH}).stdout.strip().splitlines()
    new = wheel.parent / (out[-1] if out else "")
    if not new.is_file():
        raise WheelCheckFailed(f"retagging {wheel.name} as {tag.tag} gave no wheel", "see the wheel tool's output")
    return new, tag
