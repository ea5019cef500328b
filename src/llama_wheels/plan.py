"""Plan, then execute. :func:`make_plan` is pure: resolved options in, frozen BuildSteps out.

One step = one compile: an arch set x a CMake-flag set. Variants that differ only in extras share
a step (and its wheel); a variant with its own CMake flags gets a step of its own.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llama_wheels.archs import ArchSet
from llama_wheels.config import Options, Variant, redact
from llama_wheels.doctor import ToolkitChoice
from llama_wheels.toolkit import pypi_root
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
    no_vmm: bool = False
    windows: bool = False

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
            f"  build-dir  {self.build_dir}",
            f"  output     {self.out_dir}",
            "  env:",
        ]
        lines += [f"    {k}={redact(v) if 'REMOTE' in k or 'REDIS' in k else v}" for k, v in sorted(self.env.items())]
        return [line for line in lines if line]


def ccache_env(options: Options) -> dict[str, str]:
    """The compiler cache's environment (see compcache.env_for)."""
    from llama_wheels.compcache import env_for

    return env_for(options)


def flavour_name(toolkit: ToolkitChoice, arch_set: ArchSet | None, suffix: str = "") -> str:
    base = "cpu" if arch_set is None else f"{toolkit.tag}-{arch_set.token}"
    return f"{base}-{suffix}" if suffix else base


def compile_groups(variants: Sequence[Variant]) -> list[tuple[tuple[str, ...], list[Variant]]]:
    """Variants grouped by their CMake flags, in configured order."""
    groups: dict[tuple[str, ...], list[Variant]] = {}
    for v in variants:
        groups.setdefault(tuple(v.cmake_args), []).append(v)
    return list(groups.items())


def cmake_args_for(arch_set: ArchSet | None, toolkit_root: Path | None, *, launcher: str | None,
                   no_vmm: bool, windows: bool) -> list[str]:
    args = ["-DGGML_NATIVE=OFF", "-DGGML_CCACHE=OFF"]
    if arch_set is not None:
        args += ["-DGGML_CUDA=on", f"-DCMAKE_CUDA_ARCHITECTURES={arch_set.cmake()}"]
        if toolkit_root is not None:
            nvcc = toolkit_root / "bin" / ("nvcc.exe" if windows else "nvcc")
            args += [f"-DCUDAToolkit_ROOT={toolkit_root}", f"-DCMAKE_CUDA_COMPILER={nvcc}"]
        if no_vmm:
            args.append("-DGGML_CUDA_NO_VMM=ON")
    if launcher:
        langs = ["C", "CXX"] + (["CUDA"] if arch_set is not None else [])
        args += [f"-DCMAKE_{lang}_COMPILER_LAUNCHER={launcher}" for lang in langs]
    return args


def make_plan(
    options: Options,
    *,
    arch_set: ArchSet | None,
    toolkit: ToolkitChoice,
    variants: Sequence[str] | None,
    launcher: str | None,
    no_vmm: bool,
    jobs: int | None = None,
    cuda_runtime: str | None = None,
    windows: bool = False,
) -> list[BuildStep]:
    """The build steps for ``arch_set`` (None = CPU) and the chosen variants (None = all)."""
    chosen = [options.variant(n) for n in variants] if variants else list(options.variants)
    root = None
    if arch_set is not None and toolkit.source == "pypi" and toolkit.version:
        root = pypi_root(options.cache_dir, toolkit.version)
    elif toolkit.toolkit is not None:
        root = Path(toolkit.toolkit.root)
    groups = compile_groups(chosen)
    steps = []
    for flags, members in groups:
        suffix = "-".join(v.name for v in members) if flags and len(groups) > 1 else ""
        flavour = flavour_name(toolkit, arch_set, suffix)
        label = flavour.replace("-", ".")
        args = cmake_args_for(arch_set, root if toolkit.source == "pypi" else None, launcher=launcher,
                              no_vmm=no_vmm, windows=windows)
        args += [*flags, *options.cmake_args]
        tmp = options.build_dir / "tmp"
        env = {
            "CMAKE_ARGS": shlex.join(args),
            "CMAKE_GENERATOR": "Ninja",
            "TMP": str(tmp), "TEMP": str(tmp), "TMPDIR": str(tmp),
            **ccache_env(options),
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
            flavour=flavour, label=label, version=f"{options.llama_cpp_python}+{label}", arch_set=arch_set,
            variants=tuple(v.name for v in members), extras=extras, python=options.python, toolkit=toolkit,
            toolkit_root=root, cmake_args=tuple(args), env=env,
            build_dir=options.build_dir / flavour, out_dir=options.wheelhouse / flavour, jobs=jobs,
            cuda_runtime=(cuda_runtime or options.cuda_runtime) if arch_set is not None else "none",
            no_vmm=no_vmm and arch_set is not None, windows=windows,
        ))
    return steps


def env_for(step: BuildStep, base: Mapping[str, str]) -> dict[str, str]:
    env = {**base, **step.env}
    if step.toolkit_root is not None and step.arch_set is not None:
        dirs = tool_dirs(step.toolkit_root) if step.windows else [step.toolkit_root / "bin"]
        env["PATH"] = (";" if step.windows else os.pathsep).join([*(str(d) for d in dirs), base.get("PATH", "")])
    return env
