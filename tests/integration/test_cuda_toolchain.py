"""The CUDA toolchain on a machine without a GPU: NVIDIA's PyPI toolkit made usable by CMake,
llama.cpp configured with GGML_CUDA=on, and arch verification on real fatbinaries."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from llama_wheels import fatbin, toolkit
from llama_wheels.archs import parse_arch_set
from llama_wheels.build import resolve_source
from llama_wheels.config import resolve
from llama_wheels.errors import WheelCheckFailed
from llama_wheels.sdist import extract

ROOT = Path(__file__).resolve().parents[2]
KERNEL = """
extern "C" __global__ void scale(float *x, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= a;
}
extern "C" void launch(float *x, float a, int n) { scale<<<(n + 255) / 256, 256>>>(x, a, n); }
"""


@pytest.fixture(scope="module")
def cuda_root() -> Path:
    options = resolve(ROOT, {})
    root = toolkit.install_pypi_toolkit(options.cache_dir, (13, 0))
    assert (root / "lib64").is_symlink() and (root / "lib" / "libcublas.so").exists()
    return root


def test_toolkit_is_complete_for_cmake(cuda_root: Path) -> None:
    from llama_wheels.detect import probe_toolkit

    tk = probe_toolkit(cuda_root, "pypi", os.environ, windows=False)
    assert tk is not None and tk.version == (13, 0) and tk.complete, tk


def test_llama_cpp_configures_with_cuda(cuda_root: Path, tmp_path: Path) -> None:
    options = resolve(ROOT, {})
    src = extract(resolve_source(options, False, os.environ), tmp_path / "src")  # never into the checkout's build/
    args = ["cmake", "-S", str(src / "vendor" / "llama.cpp"), "-B", str(tmp_path / "b"), "-G", "Ninja",
            "-DGGML_CUDA=on", "-DGGML_NATIVE=OFF", "-DCMAKE_CUDA_ARCHITECTURES=90-real",
            f"-DCUDAToolkit_ROOT={cuda_root}", f"-DCMAKE_CUDA_COMPILER={cuda_root}/bin/nvcc", "-DGGML_CUDA_NO_VMM=ON",
            "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"]
    res = subprocess.run(args, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    cache = (tmp_path / "b" / "CMakeCache.txt").read_text()
    assert "CMAKE_CUDA_COMPILER:" in cache and "GGML_CUDA:BOOL=on" in cache
    cublas = re.search(r"^CUDA_cublas_LIBRARY:FILEPATH=(.+)$", cache, re.M)  # FindCUDAToolkit's cache entry
    assert cublas, "FindCUDAToolkit found no cuBLAS"
    found = Path(cublas[1]).resolve()
    assert found.is_relative_to(cuda_root.resolve()) and found.name.startswith("libcublas.so"), found


def test_verifier_reads_two_archs_from_a_real_fatbin(cuda_root: Path, tmp_path: Path) -> None:
    (tmp_path / "k.cu").write_text(KERNEL)
    lib = tmp_path / "libk.so"
    subprocess.run([str(cuda_root / "bin" / "nvcc"), "-shared", "-Xcompiler", "-fPIC", "-o", str(lib),
                    str(tmp_path / "k.cu"), "-gencode", "arch=compute_75,code=sm_75",
                    "-gencode", "arch=compute_90,code=[sm_90,compute_90]"], check=True, capture_output=True)
    cuobjdump = str(cuda_root / "bin" / "cuobjdump")
    embedded = fatbin.verify(lib, parse_arch_set("75;90"), cuobjdump)  # 75-real + 90-real + 90-virtual
    assert embedded.sass == {"sm_75", "sm_90"} and embedded.ptx == {"compute_90"}
    with pytest.raises(WheelCheckFailed) as e:
        fatbin.verify(lib, parse_arch_set("86;90"), cuobjdump)
    assert "missing cubins sm_86" in e.value.one_line() and "unrequested cubins sm_75" in e.value.one_line()
