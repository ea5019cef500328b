"""Hermetic wheels: what llama.cpp would decide by looking at the build host is decided here instead,
and everything a built wheel loads at run time is accounted for.

Two halves, both pure (facts in, answers out):

* :data:`HOST_OPTIONS`: every CMake option of the vendored ggml whose effective value depends on the
  build host (a library found or not, a default that differs by platform). Each is passed explicitly,
  recorded in the manifest, and a value other than ours shows in the local label, so ``+cu130.sm90``
  means the same code wherever it was built. Read from ggml 0.3.36's ``ggml/CMakeLists.txt`` and
  ``ggml/src/{,ggml-cuda/}CMakeLists.txt``.
* :func:`closure_problems`: for every ELF in a wheel, every NEEDED entry is inside the wheel, provided
  by a declared Requires-Dist, allowed by the manylinux policy of the wheel's tag (auditwheel's policy
  data), the driver, or the CUDA runtime in ``system`` mode. Anything else is named, with the option
  that pulled it in.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from llama_wheels.errors import ConfigError

#: ggml's own default list (``set(GGML_CUDA_FA_QUANTS ...)`` in ggml/CMakeLists.txt).
FA_QUANTS_DEFAULT = "q4_0-q4_0;q8_0-q8_0;f16-f16;bf16-bf16"
FA_TYPES = ("f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0")
COMPRESSION_MODES = ("none", "speed", "balance", "size")

Value = bool | str


@dataclass(frozen=True)
class HostOption:
    """One ggml option we always pass. ``key`` is ours ([tool.llama-wheels.ggml] / a variant's ``ggml``)."""

    key: str
    cmake: str
    default: Value  # our default (what an unlabelled flavour means)
    cuda_only: bool
    host_rule: str  # what ggml does when the option is not given: why it must be explicit
    invert: bool = False  # vmm = true  <->  GGML_CUDA_NO_VMM=OFF
    pulls: tuple[str, ...] = ()  # sonames (globs) the option may add to NEEDED
    label: Callable[[Value], str] = field(default=lambda v: "", compare=False)

    def cmake_value(self, value: Value) -> str:
        if isinstance(value, bool):
            return "ON" if value != self.invert else "OFF"
        return value


def _fa_label(value: Value) -> str:
    return "faall" if value == "all" else "fa" + hashlib.sha256(str(value).encode()).hexdigest()[:8]


HOST_OPTIONS: tuple[HostOption, ...] = (
    HostOption("nccl", "GGML_CUDA_NCCL", False, True,
               "default ON, then linked whenever find_package(NCCL) finds nccl.h + libnccl on the host",
               pulls=("libnccl.so*",), label=lambda v: "nccl"),
    HostOption("vmm", "GGML_CUDA_NO_VMM", True, True,
               "VMM links the driver (CUDA::cuda_driver); we used to turn it off on hosts without libcuda",
               invert=True, pulls=("libcuda.so*",), label=lambda v: "novmm"),
    HostOption("openmp", "GGML_OPENMP", False, False,
               "default ON, then used only if find_package(OpenMP) succeeds (libgomp is not in manylinux)",
               pulls=("libgomp.so*", "libomp.so*", "libiomp5.so*"), label=lambda v: "omp"),
    HostOption("blas", "GGML_BLAS", False, False,
               "default ON on Apple, OFF elsewhere; the vendor library is whatever the host has",
               pulls=("libopenblas*.so*", "libblas.so*", "libcblas.so*", "libmkl*.so*", "libblis*.so*",
                      "libflexiblas.so*"), label=lambda v: "blas"),
    HostOption("cuda-graphs", "GGML_CUDA_GRAPHS", True, True,
               "ON only when built inside llama.cpp's tree (GGML_CUDA_GRAPHS_DEFAULT), OFF for ggml alone",
               label=lambda v: "nographs"),
    HostOption("fa-quants", "GGML_CUDA_FA_QUANTS", FA_QUANTS_DEFAULT, True,
               "a cache string: a stale build tree keeps whatever an earlier configure set",
               label=_fa_label),
    HostOption("compression-mode", "GGML_CUDA_COMPRESSION_MODE", "size", True,
               "a cache string, applied only with CUDA >= 12.8", label=lambda v: f"cm{v}"),
)
BY_KEY: Mapping[str, HostOption] = MappingProxyType({o.key: o for o in HOST_OPTIONS})
BY_CMAKE: Mapping[str, HostOption] = MappingProxyType({o.cmake: o for o in HOST_OPTIONS})

_TRUE = {"on", "1", "true", "yes", "y"}
_FALSE = {"off", "0", "false", "no", "n", ""}
_DEFINE = re.compile(r"^-D([A-Za-z0-9_]+)(?::[A-Za-z]+)?=(.*)$")


def _parse(opt: HostOption, raw: Any, where: str, *, cmake: bool = False) -> Value:
    """A value from TOML/env (bool/str, our sense) or a CMake -D (``cmake``: the CMake option's sense)."""
    if isinstance(opt.default, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE or text in _FALSE:
            on = text in _TRUE
            return on != opt.invert if cmake else on
        raise ConfigError(f"ggml option {opt.key} = {raw!r} ({where}) is not a boolean", "use true or false")
    value = str(raw).strip()
    if opt.key == "fa-quants" and value != "all":
        pairs = [p for p in value.split(";") if p]
        bad = [p for p in pairs if not (len(p.split("-")) == 2 and all(t in FA_TYPES for t in p.split("-")))]
        if bad or not pairs:
            raise ConfigError(f"ggml option fa-quants = {value!r} ({where}) is not a list of K-V pairs",
                              f"write \"all\" or pairs like \"q8_0-q8_0;f16-f16\" from {', '.join(FA_TYPES)}")
        value = ";".join(pairs)
    if opt.key == "compression-mode" and value not in COMPRESSION_MODES:
        raise ConfigError(f"ggml option compression-mode = {value!r} ({where}) is not valid",
                          f"use one of {', '.join(COMPRESSION_MODES)}")
    return value


def check_table(table: Mapping[str, Any], where: str) -> dict[str, Value]:
    """Validate a ``ggml`` table (pyproject, variant or environment); unknown keys get did-you-mean."""
    import difflib

    out: dict[str, Value] = {}
    for key, raw in table.items():
        opt = BY_KEY.get(key)
        if opt is None:
            close = difflib.get_close_matches(key, list(BY_KEY), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(BY_KEY)}"
            raise ConfigError(f"unknown ggml option '{key}' ({where})", hint)
        out[key] = _parse(opt, raw, where)
    return out


@dataclass(frozen=True)
class HostSettings:
    """The resolved host options of one compile. ``cuda``: a CUDA build (else the CUDA options are moot)."""

    values: Mapping[str, Value]
    cuda: bool

    @property
    def options(self) -> list[HostOption]:
        return [o for o in HOST_OPTIONS if self.cuda or not o.cuda_only]

    def cmake_args(self) -> list[str]:
        return [f"-D{o.cmake}={o.cmake_value(self.values[o.key])}" for o in self.options]

    def label_tokens(self) -> list[str]:
        """One token per value that differs from our default, in table order (valid label segments)."""
        return [o.label(self.values[o.key]) for o in self.options if self.values[o.key] != o.default]

    def manifest(self) -> dict[str, str]:
        return {o.cmake: o.cmake_value(self.values[o.key]) for o in self.options}

    @property
    def nccl(self) -> bool:
        return self.cuda and bool(self.values["nccl"])

    @property
    def vmm(self) -> bool:
        return self.cuda and bool(self.values["vmm"])


def resolve(table: Mapping[str, Value], variant: Mapping[str, Value], cmake_args: Sequence[str], *,
            cuda: bool) -> HostSettings:
    """Defaults <- [tool.llama-wheels.ggml] <- the variant's ``ggml`` <- any ``-D<option>=`` in cmake-args.

    A user's own ``-DGGML_CUDA_NCCL=ON`` in cmake-args is honoured (CMake's last -D wins), and so the
    label, the manifest and the runtime requirements follow it too.
    """
    values: dict[str, Value] = {o.key: o.default for o in HOST_OPTIONS}
    values.update(table)
    values.update(variant)
    for arg in cmake_args:
        m = _DEFINE.match(arg)
        if m and m[1] in BY_CMAKE:
            opt = BY_CMAKE[m[1]]
            values[opt.key] = _parse(opt, m[2], f"cmake-args {arg}", cmake=True)
    return HostSettings(MappingProxyType(values), cuda)


def option_for(soname: str) -> str | None:
    """The CMake option that pulls ``soname`` into NEEDED, if we know one."""
    for opt in HOST_OPTIONS:
        if any(fnmatch(soname, p) for p in opt.pulls):
            return opt.cmake
    if any(fnmatch(soname, p) for p in CUDA_RUNTIME):
        return "GGML_CUDA"
    return None


# ------------------------------------------------------------------ the NEEDED closure -----------

#: The driver: the machine's, never the wheel's (and no wheel provides it).
DRIVER = ("libcuda.so.1",)
#: What a CUDA build links from the toolkit; in ``system`` mode the machine provides them.
CUDA_RUNTIME = ("libcudart.so.*", "libcublas.so.*", "libcublasLt.so.*")
#: NVIDIA's PyPI wheels and the sonames each ships (distribution name regex -> soname globs).
#: cuda-toolkit 13 meta wheels: nvidia-cuda-runtime, nvidia-cublas (files under nvidia/cu13/lib);
#: CUDA 12: the -cu12 names; NCCL: nvidia-nccl-cu13 (nvidia/nccl/lib/libnccl.so.2, 2.32.3, measured).
PROVIDERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"nvidia-cuda-runtime(-cu\d+)?", ("libcudart.so.*",)),
    (r"nvidia-cublas(-cu\d+)?", ("libcublas.so.*", "libcublasLt.so.*")),
    (r"nvidia-nccl-cu\d+", ("libnccl.so.*",)),
)


def provided_by(requires: Iterable[str]) -> dict[str, str]:
    """soname glob -> the Requires-Dist that provides it (markers and extras ignored)."""
    out: dict[str, str] = {}
    for line in requires:
        try:
            name = canonicalize_name(Requirement(line).name)
        except InvalidRequirement:
            continue
        for pattern, sonames in PROVIDERS:
            if re.fullmatch(pattern, name):
                out.update({s: line for s in sonames})
    return out


@functools.cache
def manylinux_whitelist(tag: str) -> frozenset[str] | None:
    """The libraries the manylinux policy of ``tag`` lets a wheel take from the system (auditwheel's
    policy JSON, not a copy). None: ``tag`` is not a manylinux tag auditwheel knows."""
    from auditwheel.architecture import Architecture
    from auditwheel.libc import Libc
    from auditwheel.policy import WheelPolicies

    if not tag.startswith("manylinux"):
        return None
    arch = tag.split("_", 3)[-1] if tag.startswith("manylinux_") else tag.split("_", 1)[-1]
    try:
        policies = WheelPolicies(libc=Libc.GLIBC, arch=Architecture(arch))
        return frozenset(policies.get_policy_by_name(tag).whitelist)
    except (ValueError, LookupError):
        return None


@functools.cache
def loosest_whitelist(tag: str) -> frozenset[str]:
    """For a wheel with no manylinux tag (linux_x86_64): the newest manylinux policy's whitelist, so the
    check names the libraries that kept it from any manylinux tag rather than libc itself."""
    from auditwheel.architecture import Architecture
    from auditwheel.libc import Libc
    from auditwheel.policy import WheelPolicies

    try:
        return frozenset(WheelPolicies(libc=Libc.GLIBC, arch=Architecture(tag.split("_", 1)[-1])).highest.whitelist)
    except ValueError:
        return frozenset()


@dataclass(frozen=True)
class Binary:
    """One native file of a wheel: its path in the wheel and the libraries it loads."""

    path: str
    needed: tuple[str, ...]
    runpath: tuple[str, ...] = ()


#: Readers of a native file's imports by magic: ELF here. Windows DLLs (PE, "MZ") are checked by
#: windows.dll_problems (pefile) inside wheels.check_wheel; a PE reader registered here would join this rule.
ImportReader = Callable[[str, bytes], Binary | None]
IMPORT_READERS: dict[bytes, ImportReader] = {}


def _read_elf(path: str, data: bytes) -> Binary | None:
    import io

    from llama_wheels.elf import read_dynamic_stream

    info = read_dynamic_stream(io.BytesIO(data))
    if info is None:
        return None
    return Binary(path, info.needed, info.runpath)


IMPORT_READERS[b"\x7fELF"] = _read_elf


def binaries(files: Mapping[str, bytes]) -> list[Binary]:
    out = []
    for path, data in sorted(files.items()):
        reader = IMPORT_READERS.get(data[:4]) or IMPORT_READERS.get(data[:2])
        b = reader(path, data) if reader else None
        if b is not None:
            out.append(b)
    return out


def accounted(soname: str, *, in_wheel: set[str], providers: Mapping[str, str], whitelist: frozenset[str],
              cuda_runtime: str | None, nccl: bool) -> str | None:
    """Why ``soname`` may be NEEDED (a short reason), or None."""
    if soname in in_wheel:
        return "in the wheel"
    for pattern, req in providers.items():
        if fnmatch(soname, pattern):
            return f"Requires-Dist {req}"
    if soname in whitelist or "ld-linux" in soname:
        return "manylinux policy"
    if soname in DRIVER:
        return "the driver"
    if cuda_runtime == "system" and (any(fnmatch(soname, p) for p in CUDA_RUNTIME)
                                     or (nccl and fnmatch(soname, "libnccl.so*"))):
        return "the system CUDA runtime (cuda-runtime system)"
    return None


def closure_problems(bins: Sequence[Binary], *, all_names: Iterable[str], requires: Iterable[str],
                     platform_tag: str, cuda_runtime: str | None = None, nccl: bool = False) -> list[str]:
    """One line per NEEDED that nothing accounts for, and per RUNPATH entry that leaves the wheel's
    relative layout (a build-host path). Windows DLLs are windows.dll_problems' part."""
    in_wheel = {Path(n).name for n in all_names}
    providers = provided_by(requires)
    elves = [b for b in bins if not b.path.lower().endswith((".dll", ".pyd", ".exe"))]
    problems: list[str] = []
    if not elves:
        return problems
    whitelist = manylinux_whitelist(platform_tag)
    for b in elves:
        for soname in b.needed:
            if accounted(soname, in_wheel=in_wheel, providers=providers,
                         whitelist=loosest_whitelist(platform_tag) if whitelist is None else whitelist,
                         cuda_runtime=cuda_runtime, nccl=nccl):
                continue
            option = option_for(soname)
            by = f"pulled in by {option}" if option else "not from an option we know"
            problems.append(f"{b.path} needs {soname} ({by}): not in the wheel, not provided by a Requires-Dist, "
                            f"not allowed by {platform_tag}")
        for entry in b.runpath:
            if not entry.startswith("$ORIGIN"):
                problems.append(f"{b.path} has RUNPATH {entry}, a build-host path (use $ORIGIN-relative entries)")
    if whitelist is None and any(b.needed for b in elves):
        problems.append(f"platform tag {platform_tag} is not a manylinux tag: it promises nothing about the "
                        "system libraries (llama-wheels tags with auditwheel's policy)")
    return problems


def excluded_for_audit(bins: Sequence[Binary], *, requires: Iterable[str], cuda_runtime: str | None,
                       nccl: bool) -> frozenset[str]:
    """The NEEDED sonames auditwheel must not look for on this host: provided by a Requires-Dist, the
    driver, or the system CUDA runtime (what ``auditwheel repair --exclude`` gets in the cibuildwheel route)."""
    providers = provided_by(requires)
    out = set()
    for b in bins:
        for soname in b.needed:
            reason = accounted(soname, in_wheel=set(), providers=providers, whitelist=frozenset(),
                               cuda_runtime=cuda_runtime, nccl=nccl)
            if reason is not None:
                out.add(soname)
    return frozenset(out)


@dataclass(frozen=True)
class PlatformTag:
    tag: str  # manylinux_2_28_x86_64, or linux_x86_64 when no manylinux policy fits
    glibc: str | None  # "2.28"
    why: str  # what held it back (auditwheel's verdicts), for the log


def audit_platform_tag(wheel: Path, exclude: frozenset[str]) -> PlatformTag:
    """The best manylinux tag auditwheel finds for ``wheel`` with ``exclude`` left out of its search
    (what ``auditwheel show`` says when nothing is excluded). Never grafts."""
    from auditwheel.wheel_abi import analyze_wheel_abi

    info = analyze_wheel_abi(None, None, wheel, exclude, disable_isa_ext_check=False, allow_graft=False)
    tag = info.overall_policy.name
    m = re.match(r"^manylinux_(\d+)_(\d+)_", tag)
    external = sorted(info.external_refs[info.policies.highest.name].libs)
    why = f"symbols allow {info.sym_policy.name}" + (f"; external libraries {', '.join(external)}" if external else "")
    return PlatformTag(tag, f"{m[1]}.{m[2]}" if m else None, why)
