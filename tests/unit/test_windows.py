"""Windows behaviour, tested on Linux against recorded Windows data (tests/fixtures/windows/README.md):
the file lists of NVIDIA's win_amd64 toolkit wheels, the PE tables of their DLLs, and real DLLs built
with mingw-w64 against import libraries of the real export names."""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from pathlib import Path, PureWindowsPath

import pytest

from llama_wheels import windows
from llama_wheels.archs import parse_arch_set
from llama_wheels.detect import ToolkitChoice, toolkit_missing
from llama_wheels.pe import module_definition, read_pe
from llama_wheels.plan import make_plan, step_env
from llama_wheels.wheels import apply_runtime, check_wheel

from ..wheelmaker import make_wheel

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "windows"
PYPI = ToolkitChoice("pypi", (13, 0), None, "NVIDIA's PyPI cuda-toolkit 13.0")


def recorded_members() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (FIX / "cuda-13.0.2-win_amd64-files.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            wheel, member = line.split(" ", 1)
            out.setdefault(wheel, []).append(member)
    return out


@pytest.fixture
def win_toolkit(tmp_path: Path) -> Path:
    """The PyPI toolkit as `pip install --target` lays it out on Windows, from the recorded file lists."""
    for members in recorded_members().values():
        for m in members:
            if not m.endswith("/..."):
                (tmp_path / m).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / m).touch()
    return tmp_path / "nvidia" / "cu13"


def test_recorded_layout_matches_our_tables(win_toolkit: Path) -> None:
    assert (win_toolkit / "bin" / "nvcc.exe").exists() and (win_toolkit / "nvvm" / "bin" / "cicc.exe").exists()
    dlls = {p.name for p in (win_toolkit / windows.PYPI_DLL_DIR).iterdir()}
    assert {"cudart64_13.dll", "cublas64_13.dll", "cublasLt64_13.dll"} <= dlls
    members = recorded_members()
    for dist, names in windows.WHEEL_DLLS.items():  # which wheel ships which DLL
        (wheel,) = [w for w in members if w.startswith(dist.replace("-", "_") + "-")]
        for n in names:
            assert f"nvidia/cu13/{windows.PYPI_DLL_DIR.as_posix()}/{n.format(major=13)}" in members[wheel]
    libs = {p.name for p in (win_toolkit / windows.PYPI_LIB_DIR).iterdir()}
    assert "cudart.lib" in libs and not set(windows.MISSING_IMPORT_LIBS) & libs  # NVIDIA ships no cublas.lib
    # ... which is exactly what the doctor reports for this layout before our fix-up.
    assert toolkit_missing(win_toolkit, windows=True) == ("cuBLAS library (lib/x64/cublas.lib)",)


def test_import_library_from_a_real_dll(win_toolkit: Path, tmp_path: Path) -> None:
    exports = read_pe(FIX / "ggml-base.dll").exports
    assert exports == ("ggml_base_version",)
    text = module_definition("cublas64_13.dll", exports)
    assert text.splitlines() == ["LIBRARY cublas64_13.dll", "EXPORTS", "    ggml_base_version"]
    out = win_toolkit / "lib" / "x64" / "cublas.lib"
    assert windows.import_lib_command(out.with_suffix(".def"), out, "cublas64_13.dll") == [
        "lib", "/nologo", "/machine:x64", f"/def:{out.with_suffix('.def')}", f"/out:{out}", "/name:cublas64_13.dll"]


def test_real_nvidia_dll_tables_recorded() -> None:
    import json

    tables = json.loads((FIX / "pe-tables.json").read_text())["dlls"]
    assert tables["cublas64_13.dll"]["imports"] == ["cublasLt64_13.dll", "KERNEL32.dll"]
    assert tables["cublas64_13.dll"]["exports_count"] == 756  # what cublas.lib must import
    for name, t in tables.items():  # every import of NVIDIA's own DLLs is a Windows system DLL or theirs
        for imp in t["imports"]:
            assert windows._system_dll(imp) or imp.lower() in {n.lower() for n in tables}, (name, imp)


def _pe_wheel(folder: Path, dlls: list[str], requires: tuple[str, ...] = ()) -> Path:
    files = {f"llama_cpp/lib/{n}": (FIX / n).read_bytes() for n in dlls}
    return make_wheel(folder, "0.3.36+cu130.sm90", files=files, requires=requires)


def test_check_wheels_reads_dll_imports(tmp_path: Path) -> None:
    (tmp_path / "pip").mkdir()
    good = _pe_wheel(tmp_path / "pip", ["ggml-base.dll", "ggml-cuda.dll"],
                     ("nvidia-cuda-runtime~=13.0", "nvidia-cublas~=13.0"))
    assert check_wheel(good, cuda_runtime="pip").problems == []
    (tmp_path / "undeclared").mkdir()
    bare = _pe_wheel(tmp_path / "undeclared", ["ggml-base.dll", "ggml-cuda.dll"])
    problems = check_wheel(bare, cuda_runtime="system").problems
    assert problems == []  # system mode: the toolkit's DLLs on PATH
    problems = check_wheel(bare, cuda_runtime=None).problems
    assert any("imports cudart64_13.dll" in p for p in problems) and any("cublas64_13.dll" in p for p in problems)
    (tmp_path / "blas").mkdir()
    blas = _pe_wheel(tmp_path / "blas", ["ggml-base.dll", "ggml-cpu-openblas.dll"])
    (p,) = check_wheel(blas, cuda_runtime="system").problems
    assert "ggml-cpu-openblas.dll imports libopenblas.dll (pulled in by GGML_BLAS)" in p
    (tmp_path / "lonely").mkdir()
    lonely = _pe_wheel(tmp_path / "lonely", ["ggml-cuda.dll"], ("nvidia-cuda-runtime~=13.0", "nvidia-cublas~=13.0"))
    assert any("imports ggml-base.dll" in p for p in check_wheel(lonely, cuda_runtime="pip").problems)


def test_pip_mode_hook_finds_the_nvidia_dlls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "unpacked"
    (root / "llama_cpp" / "lib").mkdir(parents=True)
    (root / "llama_cpp" / "__init__.py").write_text("from .llama_cpp import *\n")
    (root / "llama_cpp" / "lib" / "ggml-cuda.dll").write_bytes((FIX / "ggml-cuda.dll").read_bytes())
    di = root / "llama_cpp_python-0.3.36.dist-info"
    di.mkdir()
    (di / "METADATA").write_text("Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.3.36\n\n")
    reqs = apply_runtime(root, "pip", 13)
    assert reqs == ["nvidia-cuda-runtime~=13.0", "nvidia-cublas~=13.0"]
    init = (root / "llama_cpp" / "__init__.py").read_text()
    assert init.startswith("from . import _llama_wheels_dlls") and init.endswith("from .llama_cpp import *\n")
    # Run the hook as Windows would: site-packages holding nvidia/cu13/bin/x86_64/cudart64_13.dll.
    site = tmp_path / "site-packages"
    dll_dir = site / "nvidia" / "cu13" / "bin" / "x86_64"
    dll_dir.mkdir(parents=True)
    (dll_dir / "cudart64_13.dll").touch()
    added: list[str] = []
    monkeypatch.setattr(os, "name", "nt")
    monkeypatch.setattr(os, "add_dll_directory", added.append, raising=False)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "elsewhere"), str(site)])
    monkeypatch.setenv("PATH", "C:\\Windows")
    spec = importlib.util.spec_from_file_location("hook", root / "llama_cpp" / "_llama_wheels_dlls.py")
    assert spec and spec.loader
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert added == [str(dll_dir)] and os.environ["PATH"].startswith(str(dll_dir) + os.pathsep)


def test_bundle_uses_delvewheel_never_the_driver(tmp_path: Path) -> None:
    argv = windows.delvewheel_command(tmp_path / "w.whl", tmp_path / "out", tmp_path / "tk")
    assert argv[1:4] == ["-m", "delvewheel", "repair"]
    assert argv[argv.index("--exclude") + 1] == "nvcuda.dll"
    assert str(tmp_path / "tk" / "bin" / "x86_64") in argv


USER_ROOTS = [r"C:\Users\José Müller\AppData\Local\llama-wheels\Cache", r"C:\Program Files\llama wheels",
              "C:\\" + "a" * 120 + "\\cache"]


@pytest.mark.parametrize("cache", USER_ROOTS)
def test_windows_paths_survive_cmake_args(options, cache: str) -> None:
    o = options("", env={"LLAMA_WHEELS_CACHE_DIR": cache})
    (step,) = make_plan(o, arch_set=parse_arch_set("86;89;120"), toolkit=PYPI, variants=["default"], launcher=None,
                        windows=True)
    args = shlex.split(step.env["CMAKE_ARGS"])  # how scikit-build-core reads CMAKE_ARGS, on Windows too
    assert args == list(step.cmake_args)
    archs = next(a for a in args if a.startswith("-DCMAKE_CUDA_ARCHITECTURES="))
    assert archs.endswith("=86-real;89-real;89-virtual;120a-real")
    nvcc = next(a.split("=", 1)[1] for a in args if a.startswith("-DCMAKE_CUDA_COMPILER="))
    assert PureWindowsPath(nvcc).name == "nvcc.exe" and PureWindowsPath(cache).parts[-1] in nvcc
    path = step_env(step, {"PATH": r"C:\Windows"})["PATH"].split(";")  # Windows' PATH separator
    assert path[0].endswith("bin") and path[1].endswith("x86_64")  # nvcc.exe, then NVIDIA's DLLs


def test_doctor_on_windows_needs_lib_exe_for_the_pypi_toolkit() -> None:
    from llama_wheels.detect import Facts
    from llama_wheels.doctor import windows_pypi_verdicts

    facts = Facts(os="Windows 11", machine="AMD64", python="3.11.9", tools={"lib": ""})
    (v,) = windows_pypi_verdicts(facts, PYPI)
    assert v.level == "fail" and "lib.exe" in v.message and "x64 Native Tools" in v.fix
    facts.tools["lib"] = r"C:\VS\VC\Tools\MSVC\14.44.35207\bin\Hostx64\x64\lib.exe"
    (v,) = windows_pypi_verdicts(facts, PYPI)
    assert v.level == "info" and "cublas.lib" in v.message
    assert windows_pypi_verdicts(Facts(os="Linux 6.1", machine="x86_64", python="3.11"), PYPI) == []
