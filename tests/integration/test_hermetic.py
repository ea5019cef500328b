"""Hermetic wheels with real tools: the plan does not change when the build host has libcuda or NCCL,
the generated libcuda stub makes a real link NEED exactly the driver's soname, and the wheel check
names an undeclared library in a real CPU wheel (patchelf --add-needed) and accepts it once declared."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from llama_wheels import toolkit, wheels
from llama_wheels.elf import patchelf_exe, read_dynamic

from .conftest import lw

KERNEL_USER = """
#include <cuda.h>
int reserve(CUdeviceptr *p, size_t n) {
    CUmemGenericAllocationHandle h; CUmemAllocationProp prop = {0};
    cuMemCreate(&h, n, &prop, 0);
    return (int)cuMemAddressReserve(p, n, 0, 0, 0);
}
"""


def _fake_host(root: Path) -> dict[str, str]:
    """A build host with a libcuda and NCCL where the usual searches look (FindNCCL's NCCL_ROOT/CUDA_HOME
    hints, the linker's LIBRARY_PATH, the loader's LD_LIBRARY_PATH, the compiler's CPATH)."""
    (root / "lib").mkdir(parents=True)
    (root / "include").mkdir()
    (root / "include" / "nccl.h").write_text("#define NCCL_MAJOR 2\n")
    for name, soname in (("libcuda.so", "libcuda.so.1"), ("libnccl.so", "libnccl.so.2")):
        src = root / f"{name}.c"
        src.write_text("int fake(void) { return 1; }\n")
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(root / "lib" / name), f"-Wl,-soname,{soname}",
                        str(src)], check=True)
        (root / "lib" / soname).symlink_to(name)
    lib, inc = str(root / "lib"), str(root / "include")
    return {"LD_LIBRARY_PATH": lib, "LIBRARY_PATH": lib, "CPATH": inc, "CUDA_HOME": str(root),
            "NCCL_ROOT": str(root), "CUDA_PATH": str(root)}


def _cmake_args(output: str) -> list[str]:
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith("CMAKE_ARGS=")]
    assert lines, output[-3000:]
    return [shlex.split(line[len("CMAKE_ARGS="):]) for line in lines]  # type: ignore[misc]


def test_plan_is_the_same_with_and_without_libcuda_and_nccl(lw_env: dict[str, str], tmp_path: Path) -> None:
    fake = _fake_host(tmp_path / "host")
    probe = "import ctypes.util; print(ctypes.util.find_library('cuda'), ctypes.util.find_library('nccl'))"
    seen = subprocess.run([sys.executable, "-c", probe], env={**lw_env, **fake}, capture_output=True, text=True,
                          check=True).stdout.split()
    assert seen[0] != "None" and seen[1] != "None", seen  # the old host probe would have seen both
    args = "build", "--dry-run", "--cuda", "pypi:13.0", "--archs", "90"
    bare, visible = lw(*args, env=lw_env), lw(*args, env={**lw_env, **fake})
    assert bare.returncode == 0 and visible.returncode == 0, bare.stdout[-2000:] + visible.stdout[-2000:]
    assert _cmake_args(bare.stdout) == _cmake_args(visible.stdout)
    (cm,) = _cmake_args(bare.stdout)
    assert "-DGGML_CUDA_NCCL=OFF" in cm and "-DGGML_CUDA_NO_VMM=OFF" in cm and "-DGGML_OPENMP=OFF" in cm
    assert any(a.startswith("-DCUDA_cuda_driver_LIBRARY=") for a in cm) and not any(str(tmp_path) in a for a in cm)
    assert "step cu130-sm90:" in bare.stdout


def _cuda_header_root() -> Path:
    options_root = Path(__file__).resolve().parents[2]
    from llama_wheels.config import resolve

    for root in (toolkit.pypi_root(resolve(options_root, {}).cache_dir, (13, 0)), Path("/usr/local/cuda")):
        if (root / "include" / "cuda.h").exists():
            return root
    pytest.skip("no cuda.h here (install the PyPI toolkit: tests/integration/test_cuda_toolchain.py)")


def test_driver_stub_makes_a_real_link_need_only_the_drivers_soname(tmp_path: Path) -> None:
    root = _cuda_header_root()
    stub_dir = tmp_path / "build" / "stubs" / "libcuda"
    stub = toolkit.make_driver_stub(root, stub_dir, dict(os.environ))
    assert read_dynamic(stub).soname == "libcuda.so.1" and sorted(p.name for p in stub_dir.glob("*.so*")) == [
        "libcuda.so"]  # no libcuda.so.1 file: the loader can never pick the stub up
    (tmp_path / "user.c").write_text(KERNEL_USER)
    lib = tmp_path / "pkg" / "llama_cpp" / "lib" / "libuser.so"
    lib.parent.mkdir(parents=True)
    # --as-needed drops a library none of whose symbols are used: the stub must export the real API.
    # -rpath <stub dir> is what CMake's INSTALL_RPATH_USE_LINK_PATH (llama-cpp-python sets it) records.
    subprocess.run(["cc", "-shared", "-fPIC", "-I", str(root / "include"), "-o", str(lib), str(tmp_path / "user.c"),
                    "-Wl,--as-needed", f"-L{stub_dir}", "-lcuda", f"-Wl,-rpath,$ORIGIN:{stub_dir}"], check=True)
    info = read_dynamic(lib)
    assert [n for n in info.needed if n.startswith("libcuda")] == ["libcuda.so.1"], info
    assert str(stub_dir) in info.runpath
    dropped = wheels.local_runpaths(tmp_path / "pkg")
    assert dropped == {"libuser.so": (str(stub_dir),)} and read_dynamic(lib).runpath == ("$ORIGIN",)


def _with(wheel: Path, dest: Path, *, add_needed: str | None = None, requires: list[str] | None = None) -> Path:
    """A copy of a real wheel, its libggml-cpu.so given one more NEEDED, repacked by the wheel tool."""
    root = wheels.unpack(wheel, dest / "unpacked")
    if add_needed:
        subprocess.run([patchelf_exe(), "--add-needed", add_needed, str(root / "llama_cpp" / "lib" / "libggml-cpu.so")],
                       check=True)
    if requires:
        wheels.add_requires(root, requires)
    return wheels.pack(root, dest / "out")


def test_undeclared_nccl_fails_the_check_and_declared_passes(cpu_build: Path, lw_env: dict[str, str],
                                                             tmp_path: Path) -> None:
    bad = _with(cpu_build, tmp_path / "a", add_needed="libnccl.so.2")
    res = lw("check-wheels", str(bad), env=lw_env)
    assert res.returncode == 9, res.stdout[-2000:]
    assert "llama_cpp/lib/libggml-cpu.so needs libnccl.so.2 (pulled in by GGML_CUDA_NCCL)" in res.stdout
    assert "Traceback" not in res.stdout
    good = _with(cpu_build, tmp_path / "b", add_needed="libnccl.so.2", requires=["nvidia-nccl-cu13>=2.32.3,<3"])
    res = lw("check-wheels", str(good), env=lw_env)
    assert res.returncode == 0, res.stdout[-2000:]
    gomp = _with(cpu_build, tmp_path / "c", add_needed="libgomp.so.1")
    assert "libgomp.so.1 (pulled in by GGML_OPENMP)" in lw("check-wheels", str(gomp), env=lw_env).stdout


def test_cpu_wheel_has_a_manylinux_tag_pip_and_auditwheel_accept(cpu_build: Path, lw_env: dict[str, str],
                                                                work: Path, tmp_path: Path) -> None:
    m = re.fullmatch(r"llama_cpp_python-0\.3\.36\+cpu-py3-none-(manylinux_(\d+)_(\d+)_x86_64)\.whl", cpu_build.name)
    assert m, cpu_build.name
    shown = subprocess.run([sys.executable, "-m", "auditwheel", "show", "--json", str(cpu_build)], capture_output=True,
                           text=True, check=True).stdout
    assert json.loads(shown)["overall_tag"] == m[1], shown
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
                          "--disable-pip-version-check", "--target", str(tmp_path / "t"), str(cpu_build)],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr  # "is not a supported wheel on this platform" otherwise
    entry = json.loads((work / "wheelhouse" / "manifest.json").read_text())["wheels"]["cpu/" + cpu_build.name]
    assert entry["platform_tag"] == m[1] and entry["glibc"] == f"{m[2]}.{m[3]}"
    assert entry["host_options"] == {"GGML_OPENMP": "OFF", "GGML_BLAS": "OFF"}
    with zipfile.ZipFile(cpu_build) as z:
        for n in z.namelist():
            if n.endswith(".so"):
                (tmp_path / "lib.so").write_bytes(z.read(n))
                info = read_dynamic(tmp_path / "lib.so")
                assert not any(x.startswith("libgomp") for x in info.needed), (n, info)  # OpenMP OFF, explicitly
                assert all(p.startswith("$ORIGIN") for p in info.runpath), (n, info)


def _so(folder: Path, name: str, soname: str, *, needs: tuple[Path, ...] = (), rpath: str = "") -> Path:
    src = folder / f"{name}.c"
    src.write_text(f"int {name.replace('-', '_').removeprefix('lib').split('.')[0]}_fn(void) {{ return 1; }}\n")
    out = folder / name
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(out), f"-Wl,-soname,{soname}", str(src),
                    "-Wl,--no-as-needed", *map(str, needs), *([f"-Wl,-rpath,{rpath}"] if rpath else [])], check=True)
    return out


def test_pip_mode_nccl_wheel_end_to_end(tmp_path: Path) -> None:
    """A CUDA-shaped wheel (real ELFs made here: libggml-cuda.so NEEDS libcudart.so.13, libcublas.so.13,
    libcuda.so.1 and libnccl.so.2, with build-host RUNPATHs) through apply_runtime, pack, the auditwheel
    tag and the wheel check, exactly as build.finish runs them."""
    host = tmp_path / "host"
    host.mkdir()
    deps = tuple(_so(host, f"lib{n}.so", s) for n, s in (("cudart", "libcudart.so.13"), ("cublas", "libcublas.so.13"),
                                                          ("cuda", "libcuda.so.1"), ("nccl", "libnccl.so.2")))
    root = tmp_path / "llama_cpp_python-0.3.36+cu130.sm90.nccl"
    lib = root / "llama_cpp" / "lib"
    lib.mkdir(parents=True)
    base = _so(lib, "libggml-base.so", "libggml-base.so")
    _so(lib, "libggml-cuda.so", "libggml-cuda.so", needs=(base, *deps), rpath=f"$ORIGIN:{host}")
    (root / "llama_cpp" / "__init__.py").write_text("")
    di = root / "llama_cpp_python-0.3.36+cu130.sm90.nccl.dist-info"
    di.mkdir()
    (di / "METADATA").write_text("Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.3.36+cu130.sm90.nccl\n\n")
    (di / "WHEEL").write_text("Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: false\nTag: py3-none-linux_x86_64\n")
    (di / "RECORD").write_text("")
    reqs = wheels.apply_runtime(root, "pip", 13, nccl_lib=host)
    assert reqs[-1] == "nvidia-nccl-cu13>=2.32.3,<3"
    assert read_dynamic(lib / "libggml-cuda.so").runpath == (
        "$ORIGIN", "$ORIGIN/../../nvidia/cu13/lib", "$ORIGIN/../../nvidia/cuda_runtime/lib",
        "$ORIGIN/../../nvidia/cublas/lib", "$ORIGIN/../../nvidia/nccl/lib")
    packed = wheels.pack(root, tmp_path / "out")
    tagged, tag = wheels.manylinux_tag(packed, cuda_runtime="pip", nccl=True)
    assert tag.tag.startswith("manylinux_") and tagged.name.endswith(f"-py3-none-{tag.tag}.whl"), tag
    assert not packed.exists()
    assert wheels.check_wheel(tagged, cuda_runtime="pip", nccl=True).problems == []
    # The same wheel without the NCCL requirement: named, with the option.
    (di / "METADATA").write_text("Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.3.36+cu130.sm90.nccl\n"
                                 "Requires-Dist: nvidia-cuda-runtime~=13.0\nRequires-Dist: nvidia-cublas~=13.0\n\n")
    bare, _ = wheels.manylinux_tag(wheels.pack(root, tmp_path / "out2"), cuda_runtime="pip", nccl=False)
    problems = wheels.check_wheel(bare, cuda_runtime="pip").problems  # auditwheel found no manylinux tag
    assert problems == ["llama_cpp/lib/libggml-cuda.so needs libnccl.so.2 (pulled in by GGML_CUDA_NCCL): not in the "
                        "wheel, not provided by a Requires-Dist, not allowed by linux_x86_64",
                        "platform tag linux_x86_64 is not a manylinux tag: it promises nothing about the system "
                        "libraries (llama-wheels tags with auditwheel's policy)"]
