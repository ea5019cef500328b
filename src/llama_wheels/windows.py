"""Windows specifics, tested on Linux against recorded Windows data (tests/fixtures/windows/).

- NVIDIA's PyPI toolkit on Windows (``cuda-toolkit[...]`` win_amd64 wheels) puts nvcc.exe in ``bin/``,
  every DLL in ``bin/x86_64/`` and the import libraries in ``lib/x64/``, but ships **no import library for
  cuBLAS** (only ``cublas64_13.dll``/``cublasLt64_13.dll``). ggml-cuda links cuBLAS, so we make
  ``cublas.lib``/``cublasLt.lib`` from the DLLs' export tables with MSVC's own ``lib /def`` (the prompt
  that has cl.exe has lib.exe).
- A ``pip``-runtime wheel has no RUNPATH on Windows: a small module added to ``llama_cpp`` puts the
  NVIDIA wheels' DLL folder on the DLL search path (``os.add_dll_directory`` and PATH, because
  llama-cpp-python loads its DLLs with ``winmode=0``, the classic PATH search) before the libraries load.
- The DLL import policy: every import of every DLL in a wheel is inside the wheel, a Windows system DLL
  (delvewheel's own list, not a copy), the Visual C++ runtime, the driver (``nvcuda.dll``), the CUDA
  runtime in ``system`` mode, or shipped by a declared requirement in ``pip`` mode.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePath

from llama_wheels import cmd
from llama_wheels.errors import BuildFailed, ToolNotFound
from llama_wheels.pe import AMD64, PeInfo, module_definition, read_pe

PYPI_DLL_DIR = PurePath("bin", "x86_64")  # every DLL of NVIDIA's win_amd64 wheels
PYPI_LIB_DIR = PurePath("lib", "x64")  # cudart.lib, cuda.lib, ... (recorded file list)
#: Import libraries NVIDIA's win_amd64 wheels lack, and the DLL each one is made from.
MISSING_IMPORT_LIBS = {"cublas.lib": "cublas64_{major}.dll", "cublasLt.lib": "cublasLt64_{major}.dll"}
#: Which DLLs each NVIDIA runtime wheel installs (into site-packages/nvidia/cu13/bin/x86_64).
WHEEL_DLLS = {"nvidia-cuda-runtime": ("cudart64_{major}.dll",),
              "nvidia-cublas": ("cublas64_{major}.dll", "cublasLt64_{major}.dll")}
DRIVER_DLLS = ("nvcuda.dll",)
#: The option that pulls in a DLL nothing provides, for the error message.
PULLED_IN_BY = {"libopenblas": "GGML_BLAS", "openblas": "GGML_BLAS", "mkl_": "GGML_BLAS", "libomp": "GGML_OPENMP",
                "nccl": "GGML_CUDA_NCCL"}
HOOK_MODULE = "_llama_wheels_dlls"
HOOK = '''"""Added by llama-wheels (cuda-runtime pip): let Windows find the CUDA runtime DLLs that the
nvidia-cuda-runtime and nvidia-cublas wheels install into site-packages/nvidia/cu{major}/bin/x86_64."""
import os
import sys

_DIRS = []


def _add():
    if os.name != "nt":
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for base in [here, *sys.path]:
        d = os.path.join(base, "nvidia", "cu{major}", "bin", "x86_64")
        if os.path.isfile(os.path.join(d, "cudart64_{major}.dll")):
            _DIRS.append(os.add_dll_directory(d))
            os.environ["PATH"] = d + os.pathsep + os.environ.get("PATH", "")  # llama_cpp loads with winmode=0
            return


_add()
'''


def tool_dirs(root: Path) -> list[Path]:
    """Folders of a PyPI toolkit root that go on PATH for a Windows build (nvcc.exe, then the DLLs)."""
    return [root / "bin", root / PYPI_DLL_DIR]


def import_lib_command(def_file: Path, out: Path, dll_name: str) -> list[str]:
    return ["lib", "/nologo", "/machine:x64", f"/def:{def_file}", f"/out:{out}", f"/name:{dll_name}"]


def fix_pypi_layout(root: Path, major: int, env: Mapping[str, str] | None = None) -> list[Path]:
    """Make NVIDIA's win_amd64 toolkit wheels usable by CMake: the cuBLAS import libraries. Idempotent."""
    if not (root / "bin" / "nvcc.exe").exists():
        raise ToolNotFound(f"{root} has no bin\\nvcc.exe", "delete the toolkit cache dir and run again")
    made = []
    for lib_name, dll_pattern in MISSING_IMPORT_LIBS.items():
        out = root / PYPI_LIB_DIR / lib_name
        if out.exists():
            continue
        dll_name = dll_pattern.format(major=major)
        dll = root / PYPI_DLL_DIR / dll_name
        if not dll.exists():
            raise ToolNotFound(f"{dll} is missing", "delete the toolkit cache dir and run again")
        def_file = out.with_suffix(".def")
        def_file.parent.mkdir(parents=True, exist_ok=True)
        def_file.write_text(module_definition(dll_name, read_pe(dll).exports), encoding="ascii")
        cmd.run(import_lib_command(def_file, out, dll_name), env=env)
        made.append(out)
    return made


def add_dll_hook(root: Path, package: str, major: int) -> Path:
    """Add the DLL-search module to ``root/package`` and import it first thing in ``__init__.py``."""
    hook = root / package / f"{HOOK_MODULE}.py"
    hook.write_text(HOOK.replace("{major}", str(major)), encoding="utf-8")
    init = root / package / "__init__.py"
    text = init.read_text(encoding="utf-8") if init.exists() else ""
    line = f"from . import {HOOK_MODULE}  # noqa: F401  (llama-wheels: CUDA DLL search path)\n"
    if line not in text:
        init.write_text(line + text, encoding="utf-8")
    return hook


def delvewheel_command(wheel: Path, out_dir: Path, toolkit_root: Path) -> list[str]:
    """``bundle`` mode on Windows: delvewheel copies the CUDA runtime DLLs in, never the driver."""
    return [sys.executable, "-m", "delvewheel", "repair", "--add-path", str(toolkit_root / PYPI_DLL_DIR),
            "--add-path", str(toolkit_root / "bin"), "--exclude", ";".join(DRIVER_DLLS), "--wheel-dir", str(out_dir),
            str(wheel)]


def bundle(wheel: Path, out_dir: Path, toolkit_root: Path, env: Mapping[str, str]) -> Path:
    """Run delvewheel on a packed wheel; returns the repaired wheel."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd.run(delvewheel_command(wheel, out_dir, toolkit_root), env=env)
    found = sorted(out_dir.glob("*.whl"))
    if len(found) != 1:
        raise BuildFailed(f"delvewheel left {len(found)} wheels in {out_dir}", "see its output above")
    return found[0]


def _system_dll(name: str) -> bool:
    from delvewheel import _dll_list  # noqa: PLC2701  (delvewheel's own table of DLLs every Windows has, not a copy)

    lower = name.lower()
    return lower in _dll_list.ignore_names[_dll_list.MachineType.AMD64] or \
        any(r.fullmatch(lower) for r in _dll_list.ignore_regexes)


def _vc_runtime(name: str) -> bool:
    from delvewheel import _dll_list  # noqa: PLC2701  (as above)

    return bool(_dll_list.vc_redist.fullmatch(name.lower()))


def provided_by_requirements(requires: Iterable[str], major: int) -> dict[str, str]:
    """DLL name (lowercase) -> the requirement that ships it."""
    out = {}
    for req in requires:
        name = re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0].lower()
        for dist, dlls in WHEEL_DLLS.items():
            if name == dist:
                out.update({d.format(major=major).lower(): req for d in dlls})
    return out


def _cuda_runtime_dll(name: str) -> bool:
    return bool(re.fullmatch(r"(cudart|cublas|cublaslt)64_\d+\.dll", name.lower()))


def dll_problems(dlls: Mapping[str, PeInfo], *, cuda_runtime: str | None, requires: Sequence[str],
                 cuda_major: int | None) -> list[str]:
    """Every import of every DLL in the wheel, accounted for. ``dlls``: wheel path -> its PE tables."""
    inside = {PurePath(p).name.lower() for p in dlls}
    provided = provided_by_requirements(requires, cuda_major) if cuda_runtime == "pip" and cuda_major else {}
    problems = []
    for path, info in sorted(dlls.items()):
        if info.machine != AMD64:
            problems.append(f"{path} is not an x64 DLL (machine 0x{info.machine:x})")
        for imp in (*info.imports, *info.delay_imports):
            low = imp.lower()
            if low in inside or _system_dll(low) or _vc_runtime(low):
                continue
            if low in DRIVER_DLLS:
                continue
            if _cuda_runtime_dll(low) and (cuda_runtime == "system" or low in provided):
                continue
            option = next((o for k, o in PULLED_IN_BY.items() if low.startswith(k)), None)
            why = f" (pulled in by {option})" if option else ""
            where = {"pip": "a declared requirement", "system": "the system CUDA runtime",
                     "bundle": "the wheel"}.get(cuda_runtime or "", "the wheel or Windows")
            problems.append(f"{PurePath(path).name} imports {imp}{why}, which neither the wheel, Windows, the driver "
                            f"nor {where} provides")
    return problems


def wheel_dlls(members: Mapping[str, bytes]) -> dict[str, PeInfo]:
    """The PE tables of every .dll/.pyd among a wheel's members."""
    return {n: read_pe(data) for n, data in members.items() if n.lower().endswith((".dll", ".pyd"))}
