"""Plan, then execute. :func:`make_plan` is pure: resolved options in, frozen BuildSteps out.

One step = one compile: an arch set x a CMake-flag set. Variants that differ only in extras share
a step (and its wheel); a variant with its own CMake flags or ggml options gets a step of its own.

Nothing here looks at the build host: every ggml option that llama.cpp would decide from the host
(policy.HOST_OPTIONS) is passed explicitly, NCCL comes from NVIDIA's PyPI wheel at a path derived
from the cache dir, and the driver library is linked from a stub at a path derived from the build
dir. The same config gives the same CMAKE_ARGS on every machine.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llama_wheels.archs import ArchSet
from llama_wheels.compcache import env_for as cache_env
from llama_wheels.config import Options, Variant, redact
from llama_wheels.detect import ToolkitChoice
from llama_wheels.errors import ConfigError
from llama_wheels.policy import HostSettings, resolve
from llama_wheels.source import SourceIdentity
from llama_wheels.toolkit import NCCL_WHEELS, driver_stub_dir, nccl_root, pypi_root
from llama_wheels.windows import tool_dirs


@dataclass(frozen=True)
class BuildStep:
    flavour: str  # cu130-sm90, cpu
    label: str  # local version label: cu130.sm90
    version: str  # 0.3.36+cu130.sm90
    arch_set: ArchSet | None
    variants: tuple[str, ...]
    extras: tuple[str, ...]
    python: str
    toolkit: ToolkitChoice
    toolkit_root: Path | None
    cmake_args: tuple[str, ...]
    env: Mapping[str, str] = field(hash=False)  # additions to the environment
    build_dir: Path = Path()  # persistent scikit-build-core build dir of this flavour
    out_dir: Path = Path()  # wheelhouse/<flavour>
    jobs: int | None = None
    cuda_runtime: str = "system"
    host: HostSettings = field(default_factory=lambda: resolve({}, {}, (), cuda=False), hash=False)
    windows: bool = False
    nccl_root: Path | None = None  # NVIDIA's nvidia-nccl-cu<major> wheel, installed into the cache
    driver_stub: Path | None = None  # the libcuda.so (SONAME libcuda.so.1) we link VMM builds against
    source: SourceIdentity | None = None  # None: the pinned PyPI sdist

    @property
    def no_vmm(self) -> bool:
        return self.arch_set is not None and not self.host.vmm

    def describe(self) -> list[str]:
        tk = self.toolkit
        lines = [
            f"step {self.flavour}: llama-cpp-python {self.version}",
            f"  variants   {', '.join(self.variants)}"
            + (f"  (extras: {', '.join(self.extras)})" if self.extras else ""),
            f"  python     {self.python}",
            f"  toolkit    {tk.why}" + (f"  root={self.toolkit_root}" if self.toolkit_root else ""),
            f"  archs      {self.arch_set.cmake()}  ({self.arch_set.source})" if self.arch_set
            else "  archs      (CPU)",
            f"  runtime    {self.cuda_runtime}" if self.arch_set else "",
            "  ggml       " + " ".join(f"{k}={v}" for k, v in self.host.manifest().items()),
            *(self.source.describe() if self.source else []),
            f"  build-dir  {self.build_dir}",
            f"  output     {self.out_dir}",
            "  env:",
        ]
        lines += [f"    {k}={redact(v) if 'REMOTE' in k or 'REDIS' in k else v}" for k, v in sorted(self.env.items())]
        return [line for line in lines if line]


def extra_hash(extra: Sequence[str]) -> str:
    """Six hex digits naming a set of extra CMake flags (order kept: CMake's last -D wins)."""
    return hashlib.sha256(shlex.join(extra).encode()).hexdigest()[:6]


def flavour_name(toolkit: ToolkitChoice, arch_set: ArchSet | None, suffix: str = "",
                 tokens: Sequence[str] = (), extra: Sequence[str] = ()) -> str:
    """cu130-sm90, cpu; non-default ggml options add tokens (cu130-sm90-nccl), then the variant suffix;
    any extra CMake flags (configured, a variant's, CMAKE_ARGS) add ``x<hash>``, so two different builds
    never share a filename."""
    base = "cpu" if arch_set is None else f"{toolkit.tag}-{arch_set.token}"
    return "-".join([base, *tokens, *([suffix] if suffix else []), *([f"x{extra_hash(extra)}"] if extra else [])])


GroupKey = tuple[tuple[str, ...], tuple[tuple[str, bool | str], ...]]


def compile_groups(variants: Sequence[Variant]) -> list[tuple[GroupKey, list[Variant]]]:
    """Variants grouped by their CMake flags and ggml options, in configured order."""
    groups: dict[GroupKey, list[Variant]] = {}
    for v in variants:
        groups.setdefault((tuple(v.cmake_args), tuple(sorted(v.ggml.items()))), []).append(v)
    return list(groups.items())


def cmake_args_for(arch_set: ArchSet | None, toolkit_root: Path | None, *, launcher: str | None,
                   host: HostSettings, windows: bool, nccl: Path | None = None,
                   driver_stub: Path | None = None) -> list[str]:
    # CMake >= 3.32: libllama's unity sources #include the model files by relative paths, so a new build
    # dir (another runner, another checkout) hits the compiler cache for them too (older CMake ignores it).
    args = ["-DGGML_NATIVE=OFF", "-DGGML_CCACHE=OFF", "-DCMAKE_UNITY_BUILD_RELOCATABLE=ON"]
    if arch_set is not None:
        args += ["-DGGML_CUDA=on", f"-DCMAKE_CUDA_ARCHITECTURES={arch_set.cmake()}"]
        if toolkit_root is not None:
            nvcc = toolkit_root / "bin" / ("nvcc.exe" if windows else "nvcc")
            args += [f"-DCUDAToolkit_ROOT={toolkit_root}", f"-DCMAKE_CUDA_COMPILER={nvcc}"]
    args += host.cmake_args()
    if driver_stub is not None:  # the cache entry FindCUDAToolkit fills for CUDA::cuda_driver: never searched
        args.append(f"-DCUDA_cuda_driver_LIBRARY={driver_stub / 'libcuda.so'}")
    if nccl is not None:  # FindNCCL's cache entries, set: a system nccl.h/libnccl can never be picked up
        args += [f"-DNCCL_INCLUDE_DIR={nccl / 'include'}", f"-DNCCL_LIBRARY={nccl / 'lib' / 'libnccl.so.2'}"]
    if launcher:
        langs = ["C", "CXX"] + (["CUDA"] if arch_set is not None else [])
        args += [f"-DCMAKE_{lang}_COMPILER_LAUNCHER={launcher}" for lang in langs]
    return args


#: The cache dir (the PyPI toolkit's and NCCL's headers) appears in the binaries as this, not as its path.
CACHE_DIR_IN_BINARIES = "/lw-cache"
FLAG_VARS = ("CMAKE_C_FLAGS", "CMAKE_CXX_FLAGS", "CMAKE_CUDA_FLAGS")


def prefix_map_args(build_dir: Path, flavour_dir: Path, cache_dir: Path, *, cuda: bool, windows: bool) -> list[str]:
    """``-DCMAKE_{C,CXX,CUDA}_FLAGS`` with ``-ffile-prefix-map`` (GCC >= 8, Clang >= 10; not MSVC), so that no
    build dir, checkout or HOME reaches the binaries (``__FILE__`` in asserts), whatever the compiler cache.

    Paths are written as ccache already writes them (it passes paths under its base dir, the build dir,
    relative to the compile's working dir, the flavour's dir): ``<build-dir>`` -> ``..`` and
    ``<build-dir>/<flavour>/`` -> "" (the last matching map wins), so a build through sccache or with no
    cache gives the same bytes as one through ccache; the cache dir becomes ``/lw-cache``. For nvcc the
    host compiler gets them as ``-Xcompiler -ffile-prefix-map=...``, two words: ccache reads that pair and
    keeps its key free of the paths, while ``-Xcompiler=-ffile-prefix-map=...`` is hashed as written and
    misses in every other build dir (measured, BENCHMARKS.md 2026-12-04)."""
    if windows:
        return []
    maps = [f"-ffile-prefix-map={cache_dir}={CACHE_DIR_IN_BINARIES}", f"-ffile-prefix-map={build_dir}=..",
            f"-ffile-prefix-map={flavour_dir}/="]
    args = [f"-DCMAKE_C_FLAGS={' '.join(maps)}", f"-DCMAKE_CXX_FLAGS={' '.join(maps)}"]
    if cuda:
        args.append("-DCMAKE_CUDA_FLAGS=" + " ".join(f"-Xcompiler {m}" for m in maps))
    return args


def merge_flag_vars(args: Sequence[str]) -> list[str]:
    """One ``-DCMAKE_<LANG>_FLAGS`` per language, where it first appears, holding every value in order:
    a user's ``-DCMAKE_CXX_FLAGS=-O2`` adds to our prefix maps instead of replacing them (CMake's last -D wins)."""
    out: list[str] = []
    where: dict[str, int] = {}
    for arg in args:
        name, eq, value = arg.partition("=")
        var = name.removeprefix("-D").split(":")[0]
        if eq and name.startswith("-D") and var in FLAG_VARS:
            if var in where:
                out[where[var]] = f"{out[where[var]]} {value}".rstrip()
                continue
            where[var] = len(out)
        out.append(arg)
    return out


def _is_sccache(launcher: str | None) -> bool:
    """sccache 0.16 (pinned) hashes the compiler arguments as written: a -ffile-prefix-map naming the build dir
    would make every runner's build dir its own cache key (measured: the second runner of the sccache fleet
    missed). Its basedirs cover arguments only from 0.19. So sccache builds go without the prefix maps: their
    bytes may carry the first builder's paths; ccache (the default) keeps both the maps and the cache hits."""
    return launcher is not None and os.path.basename(launcher).startswith("sccache")


def make_plan(
    options: Options,
    *,
    arch_set: ArchSet | None,
    toolkit: ToolkitChoice,
    variants: Sequence[str] | None,
    launcher: str | None,
    jobs: int | None = None,
    windows: bool = False,
    link_stub: bool = True,
    user_args: Sequence[str] = (),
    source: SourceIdentity | None = None,
) -> list[BuildStep]:
    """The build steps for ``arch_set`` (None = CPU) and the chosen variants (None = all).

    ``link_stub=False``: VMM builds find the driver stub in the toolkit (a pinned container image's
    ``lib64/stubs``, the cibuildwheel route) instead of the one we generate under the build dir.
    ``user_args``: flags from the user's CMAKE_ARGS, already checked (see cmakeargs.from_environment).
    ``source``: a resolved git or llama.cpp source (None: the pinned sdist); its commits end the label
    (``0.3.36+cu130.sm90.llama1a2b3c4``), so each source gets a flavour, build dir and wheel of its own.
    Configured and variant flags that conflict with ours are refused here (ConfigError).
    """
    from llama_wheels.cmakeargs import check_extra

    cuda = arch_set is not None
    configured, _ = check_extra(options.cmake_args, cuda=cuda, where="cmake-args")
    chosen = [options.variant(n) for n in variants] if variants else list(options.variants)
    root = None
    if arch_set is not None and toolkit.source == "pypi" and toolkit.version:
        root = pypi_root(options.cache_dir, toolkit.version)
    elif toolkit.toolkit is not None:
        root = Path(toolkit.toolkit.root)
    groups = compile_groups(chosen)
    steps = []
    for (flags, overrides), members in groups:
        host = resolve(options.ggml, dict(overrides), [*flags, *options.cmake_args], cuda=arch_set is not None)
        suffix = "-".join(v.name for v in members) if flags and len(groups) > 1 else ""
        own, _ = check_extra(flags, cuda=cuda, where=f"variant {members[0].name} cmake-args")
        extra = [*own, *configured, *user_args]
        flavour = flavour_name(toolkit, arch_set, suffix, host.label_tokens(), extra)
        if source is not None and source.label_tokens():
            flavour = "-".join([flavour, *source.label_tokens()])
        label = flavour.replace("-", ".")
        nccl = None
        if host.nccl:
            major = toolkit.version[0] if toolkit.version else 0
            if windows:
                raise ConfigError("ggml option nccl: NVIDIA ships NCCL for Linux only", "set nccl = false on Windows")
            if major not in NCCL_WHEELS:
                raise ConfigError(f"ggml option nccl needs NVIDIA's nvidia-nccl-cu{major} wheel, which is not pinned",
                                  f"use CUDA {', '.join(map(str, NCCL_WHEELS))} or set nccl = false")
            nccl = nccl_root(options.cache_dir, major)
        stub = driver_stub_dir(options.build_dir) if host.vmm and link_stub and not windows else None
        args = cmake_args_for(arch_set, root if toolkit.source == "pypi" else None, launcher=launcher,
                              host=host, windows=windows, nccl=nccl, driver_stub=stub)
        if not _is_sccache(launcher):
            args += prefix_map_args(options.build_dir, options.build_dir / flavour, options.cache_dir, cuda=cuda,
                                    windows=windows)
        args = merge_flag_vars([*args, *extra])
        tmp = options.build_dir / "tmp"
        env = {
            "CMAKE_ARGS": shlex.join(args),
            "CMAKE_GENERATOR": "Ninja",
            "TMP": str(tmp), "TEMP": str(tmp), "TMPDIR": str(tmp),
            **cache_env(options),
        }
        # No SOURCE_DATE_EPOCH: ggml reads it as "cross-compiling" and then drops the x86 SIMD
        # baseline (AVX/AVX2/FMA/F16C) from the CPU backend - measured 5x slower prompt processing.
        if jobs:
            env["CMAKE_BUILD_PARALLEL_LEVEL"] = str(jobs)
        if root is not None and arch_set is not None:
            env["CUDA_PATH"] = str(root)
            env["CUDACXX"] = str(root / "bin" / ("nvcc.exe" if windows else "nvcc"))
        extras = tuple(sorted({e for v in members for e in v.extras}))
        steps.append(BuildStep(
            flavour=flavour, label=label, arch_set=arch_set,
            version=f"{source.version if source else options.llama_cpp_python}+{label}",
            variants=tuple(v.name for v in members), extras=extras, python=options.python, toolkit=toolkit,
            toolkit_root=root, cmake_args=tuple(args), env=env,
            build_dir=options.build_dir / flavour, out_dir=options.wheelhouse / flavour, jobs=jobs,
            cuda_runtime=options.cuda_runtime if arch_set is not None else "none",
            host=host, nccl_root=nccl, driver_stub=stub, windows=windows, source=source,
        ))
    return steps


def step_env(step: BuildStep, base: Mapping[str, str]) -> dict[str, str]:
    """The environment one step compiles in: ``base`` + the step's additions (+ its toolkit's bin on PATH)."""
    env = {**base, **step.env}
    if step.toolkit_root is not None and step.arch_set is not None:
        dirs = tool_dirs(step.toolkit_root) if step.windows else [step.toolkit_root / "bin"]
        env["PATH"] = (";" if step.windows else os.pathsep).join([*(str(d) for d in dirs), base.get("PATH", "")])
    return env
