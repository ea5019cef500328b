"""Toolchain detection. Parsers are pure functions over the text the real tools print
(tested against recorded output in tests/fixtures/); the probes run the tools through cmd.run.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import platform
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from llama_wheels import cmd, selector  # selector: the nvidia-smi parsers, shared with the served script
from llama_wheels.compat import CudaVersion, visual_studio_for
from llama_wheels.errors import FatalError

# ---------------------------------------------------------------- parsers (pure) ----------------


def parse_nvcc_version(text: str) -> tuple[CudaVersion, str] | None:
    """``Cuda compilation tools, release 13.0, V13.0.88`` -> ((13, 0), "13.0.88")."""
    m = re.search(r"release (\d+)\.(\d+), V(\d+\.\d+\.\d+)", text)
    return ((int(m[1]), int(m[2])), m[3]) if m else None


@dataclass(frozen=True)
class ClBanner:
    version: str  # 19.44.35208
    msc_ver: int  # 1944
    target: str  # x64 | x86 | ARM64

    @property
    def visual_studio(self) -> str:
        return visual_studio_for(self.msc_ver)


def parse_cl_banner(text: str) -> ClBanner | None:
    """``Microsoft (R) C/C++ Optimizing Compiler Version 19.44.35208 for x64``."""
    m = re.search(r"Compiler Version (\d+)\.(\d+)\.([\d.]+) for (\S+)", text)
    if not m:
        return None
    return ClBanner(f"{m[1]}.{m[2]}.{m[3]}", int(m[1]) * 100 + int(m[2]), m[4])


@dataclass(frozen=True)
class VsInstall:
    path: str
    version: str
    name: str
    has_cl: bool  # complete, and (as VSWHERE_ARGS ask) with the x64 C++ build tools
    year: str = ""  # catalog.productLineVersion: "2022"

    @property
    def vcvars64(self) -> str:
        return self.path + r"\VC\Auxiliary\Build\vcvars64.bat"


# Installs that have the MSVC x64 C++ toolset (the component id of "Desktop development with C++").
VSWHERE_ARGS = ["-all", "-products", "*", "-requires", "Microsoft.VisualStudio.Component.VC.Tools.x86.x64",
                "-format", "json"]


def parse_vswhere(text: str) -> list[VsInstall]:
    """``vswhere <VSWHERE_ARGS>`` output (a JSON list of instances)."""
    try:
        data = json.loads(text or "[]")
    except json.JSONDecodeError:
        return []
    out = []
    for item in data if isinstance(data, list) else []:
        catalog = item.get("catalog") if isinstance(item.get("catalog"), dict) else {}
        out.append(VsInstall(
            path=item.get("installationPath", ""),
            version=item.get("installationVersion", ""),
            name=item.get("displayName", ""),
            has_cl=bool(item.get("isComplete", True)),
            year=str(catalog.get("productLineVersion", "")),
        ))
    return out


def find_visual_studio(env: Mapping[str, str]) -> list[VsInstall]:
    """Visual Studio installs with the C++ tools, from the installer's vswhere (Windows only)."""
    base = env.get("ProgramFiles(x86)") or r"C:\Program Files (x86)"
    exe = Path(base) / "Microsoft Visual Studio" / "Installer" / "vswhere.exe"
    if not exe.exists():
        return []
    return parse_vswhere(_tool_output([str(exe), *VSWHERE_ARGS], env) or "")


def parse_cc_version(text: str) -> tuple[str, str] | None:
    """gcc/clang ``--version`` -> ("gcc"|"clang", "12.2.0")."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    if "clang version" in first:
        m = re.search(r"clang version (\d+\.\d+(?:\.\d+)?)", first)
        return ("clang", m[1]) if m else None
    m = re.search(r"\)\s+(\d+\.\d+(?:\.\d+)?)", first) or re.search(r"(\d+\.\d+\.\d+)", first)
    if m and ("gcc" in first.lower() or "g++" in first.lower() or "free software" in text.lower()):
        return "gcc", m[1]
    return None


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    compute_cap: int  # 90 for 9.0
    driver: str
    memory_mib: int

    @property
    def sm(self) -> str:
        return f"sm_{self.compute_cap}"


def parse_nvidia_smi_csv(text: str) -> list[Gpu]:
    """``nvidia-smi --query-gpu=index,name,compute_cap,driver_version,memory.total --format=csv,noheader``."""
    return [Gpu(*row) for row in selector.parse_smi_csv(text)]


def parse_nvidia_smi_banner(text: str) -> tuple[str, CudaVersion] | None:
    """Plain ``nvidia-smi``: ``Driver Version: 580.159.04   CUDA Version: 13.0``."""
    return selector.parse_smi_banner(text)


# ---------------------------------------------------------------- facts -------------------------


@dataclass(frozen=True)
class Toolkit:
    root: str
    nvcc: str
    version: CudaVersion
    full_version: str
    found_via: str
    missing: tuple[str, ...] = ()  # what a complete toolkit would have but this one lacks

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def tag(self) -> str:
        return f"cu{self.version[0]}{self.version[1]}"


@dataclass(frozen=True)
class ToolkitChoice:
    """Which CUDA toolkit a build uses: a detected one, or NVIDIA's PyPI wheels of ``version``."""

    source: Literal["system", "pypi", "none"]
    version: CudaVersion | None
    toolkit: Toolkit | None = None
    why: str = ""

    @property
    def tag(self) -> str:
        return f"cu{self.version[0]}{self.version[1]}" if self.version else "cpu"


def toolkit_missing(root: Path, windows: bool) -> tuple[str, ...]:
    """What ggml-cuda needs that ``root`` lacks: cuBLAS headers and libraries, cudart."""
    missing = []
    if not (root / "include" / "cublas_v2.h").exists() and not list(root.glob("targets/*/include/cublas_v2.h")):
        missing.append("cuBLAS headers (include/cublas_v2.h)")
    if windows:
        if not (root / "lib" / "x64" / "cublas.lib").exists():
            missing.append("cuBLAS library (lib/x64/cublas.lib)")
    else:
        libs = [p for d in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib")
                for p in (root / d).glob("libcublas.so*")]
        if not libs:
            missing.append("cuBLAS library (lib64/libcublas.so)")
        if not any((root / d).glob("libcudart.so*") for d in ("lib64", "lib")):
            missing.append("CUDA runtime (lib64/libcudart.so)")
    return tuple(missing)


@dataclass
class Facts:
    """Everything the doctor found. Serialised as the --json report."""

    os: str
    machine: str
    python: str
    pythons: dict[str, str] = field(default_factory=dict)  # "3.11" -> path
    compiler: dict[str, str] = field(default_factory=dict)  # kind, path, version, msc_ver, visual_studio, target
    visual_studio: list[VsInstall] = field(default_factory=list)  # Windows: installs with the C++ tools
    toolkits: list[Toolkit] = field(default_factory=list)
    driver: str = ""
    driver_cuda: CudaVersion | None = None
    gpus: list[Gpu] = field(default_factory=list)
    tools: dict[str, str] = field(default_factory=dict)  # name -> version or ""
    disk_free_bytes: int | None = None
    disk_path: str = ""
    libcuda: str = ""  # the driver library the linker would find (ctypes.util.find_library), "" = none

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["toolkits"] = [asdict(t) | {"complete": t.complete} for t in self.toolkits]
        return data


def _tool_output(args: list[str], env: Mapping[str, str], *, stderr: bool = False) -> str | None:
    """What a tool prints (its stdout, or its stderr where it writes its banner there, as cl does); None
    if it cannot be run."""
    try:
        res = cmd.run(args, env=env, capture=True, check=False, quiet=True, timeout=30)
        return res.stderr if stderr else res.stdout
    except FatalError:
        return None


#: Run by every candidate interpreter: a pyenv shim for an inactive version exits 127 instead.
_PY_PROBE = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"


def python_runs(exe: str, version: str, env: Mapping[str, str]) -> str | None:
    """The real executable behind ``exe`` if running it gives Python ``version``, else None (a pyenv shim
    of an inactive version, a broken install, a different version under that name)."""
    out = _tool_output([exe, "-c", _PY_PROBE], env)
    lines = out.strip().splitlines() if out else []
    if len(lines) >= 2 and lines[-2].strip() == version:
        return lines[-1].strip()
    return None


def find_pythons(versions: list[str], env: Mapping[str, str], windows: bool) -> dict[str, str]:
    """Python ``major.minor`` -> its executable, for each version that was found AND runs as that version."""
    found: dict[str, str] = {}
    for v in versions:
        if f"{sys.version_info[0]}.{sys.version_info[1]}" == v:
            found[v] = sys.executable
            continue
        exe = cmd.which(f"python{v}", env)
        real = python_runs(exe, v, env) if exe else None
        if exe and real:
            found[v] = exe
        elif windows and cmd.which("py", env):
            out = _tool_output(["py", f"-{v}", "-c", "import sys; print(sys.executable)"], env)
            if out and out.strip() and "not found" not in out.lower():
                found[v] = out.strip().splitlines()[-1]
    return found


def find_compiler(env: Mapping[str, str], windows: bool) -> dict[str, str]:
    if windows:
        cl = cmd.which("cl", env)
        if cl:
            banner = parse_cl_banner(_tool_output(["cl"], env, stderr=True) or "")
            if banner:
                return {"kind": "msvc", "path": cl, "version": banner.version, "msc_ver": str(banner.msc_ver),
                        "visual_studio": banner.visual_studio, "target": banner.target}
        return {}
    for name in (env.get("CXX", ""), "g++", "c++", "clang++"):
        if not name:
            continue
        path = cmd.which(name, env)
        if path:
            parsed = parse_cc_version(_tool_output([path, "--version"], env) or "")
            if parsed:
                return {"kind": parsed[0], "path": path, "version": parsed[1]}
    return {}


def candidate_toolkit_roots(env: Mapping[str, str], windows: bool, pypi_roots: list[Path]) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    nvcc = cmd.which("nvcc", env)
    if nvcc:
        out.append((Path(os.path.realpath(nvcc)).parent.parent, "PATH"))
    for var in ("CUDA_PATH", "CUDA_HOME", "CUDA_ROOT"):
        if env.get(var):
            out.append((Path(env[var]), var))
    if windows:
        base = Path(env.get("ProgramFiles", r"C:\Program Files")) / "NVIDIA GPU Computing Toolkit" / "CUDA"
        out += [(p, str(base)) for p in sorted(base.glob("v*"))]
    else:
        out += [(p, str(p)) for p in sorted(Path("/usr/local").glob("cuda*"))]
        out += [(p, str(p)) for p in sorted(Path("/opt").glob("cuda*"))]
    out += [(p, "pypi") for p in pypi_roots]
    seen: set[str] = set()
    unique = []
    for root, via in out:
        key = os.path.realpath(root)
        if key not in seen and root.exists():
            seen.add(key)
            unique.append((root, via))
    return unique


def probe_toolkit(root: Path, via: str, env: Mapping[str, str], windows: bool) -> Toolkit | None:
    nvcc = root / "bin" / ("nvcc.exe" if windows else "nvcc")
    if not nvcc.exists():
        return None
    parsed = parse_nvcc_version(_tool_output([str(nvcc), "--version"], env) or "")
    if not parsed:
        return None
    return Toolkit(str(root), str(nvcc), parsed[0], parsed[1], via, toolkit_missing(root, windows))


def find_gpus(env: Mapping[str, str]) -> tuple[str, CudaVersion | None, list[Gpu]]:
    if not cmd.which("nvidia-smi", env):
        return "", None, []
    banner = parse_nvidia_smi_banner(_tool_output(["nvidia-smi"], env) or "")
    csv = _tool_output(["nvidia-smi", "--query-gpu=index,name,compute_cap,driver_version,memory.total",
                  "--format=csv,noheader"], env) or ""
    gpus = parse_nvidia_smi_csv(csv)
    driver = banner[0] if banner else (gpus[0].driver if gpus else "")
    return driver, banner[1] if banner else None, gpus


TOOLS = ("cmake", "ninja", "git", "ccache", "sccache", "cargo")


def tool_versions(env: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for tool in TOOLS:
        path = cmd.which(tool, env)
        if not path:
            out[tool] = ""
            continue
        text = _tool_output([path, "--version"], env) or ""
        m = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
        out[tool] = m[1] if m else "?"
    return out


def gather(env: Mapping[str, str], *, python_versions: list[str], pypi_roots: list[Path],
           disk_path: Path) -> Facts:
    windows = sys.platform == "win32"
    facts = Facts(os=f"{platform.system()} {platform.release()}", machine=platform.machine(),
                  python=platform.python_version())
    facts.pythons = find_pythons(python_versions, env, windows)
    facts.compiler = find_compiler(env, windows)
    if windows:
        facts.visual_studio = find_visual_studio(env)
    for root, via in candidate_toolkit_roots(env, windows, pypi_roots):
        tk = probe_toolkit(root, via, env, windows)
        if tk:
            facts.toolkits.append(tk)
    facts.driver, facts.driver_cuda, facts.gpus = find_gpus(env)
    facts.tools = tool_versions(env)
    if windows:  # MSVC's librarian: makes cuBLAS import libraries for NVIDIA's PyPI toolkit (windows.py)
        facts.tools["lib"] = cmd.which("lib", env) or ""
    facts.libcuda = ctypes.util.find_library("cuda") or ""
    existing = disk_path  # the build dir may not exist yet: measure the disk it will be on
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    facts.disk_path = str(disk_path)
    facts.disk_free_bytes = shutil.disk_usage(existing).free
    return facts
