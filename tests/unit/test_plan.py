from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from llama_wheels.archs import parse_arch_set
from llama_wheels.detect import ToolkitChoice
from llama_wheels.errors import ConfigError
from llama_wheels.plan import extra_hash, make_plan

MAPS = "-ffile-prefix-map={c}=/lw-cache -ffile-prefix-map={b}=.. -ffile-prefix-map={b}/{f}/="
PYPI = ToolkitChoice("pypi", (13, 0), None, "NVIDIA's PyPI cuda-toolkit 13.0")


def test_one_compile_serves_both_variants(options) -> None:
    o = options()
    (step,) = make_plan(o, arch_set=parse_arch_set("90"), toolkit=PYPI, variants=None, launcher="/v/bin/ccache")
    root = o.cache_dir / "toolkits" / "cu130" / "nvidia" / "cu13"
    assert step.flavour == "cu130-sm90" and step.label == "cu130.sm90" and step.version == "0.3.36+cu130.sm90"
    assert step.variants == ("default", "server") and step.extras == ("server",)
    assert step.cmake_args == (
        "-DGGML_NATIVE=OFF", "-DGGML_CCACHE=OFF", "-DCMAKE_UNITY_BUILD_RELOCATABLE=ON",
        "-DGGML_CUDA=on", "-DCMAKE_CUDA_ARCHITECTURES=90-real;90-virtual",
        f"-DCUDAToolkit_ROOT={root}", f"-DCMAKE_CUDA_COMPILER={root}/bin/nvcc",
        "-DGGML_CUDA_NCCL=OFF", "-DGGML_CUDA_NO_VMM=OFF", "-DGGML_OPENMP=OFF", "-DGGML_BLAS=OFF",
        "-DGGML_CUDA_GRAPHS=ON", "-DGGML_CUDA_FA_QUANTS=q4_0-q4_0;q8_0-q8_0;f16-f16;bf16-bf16",
        "-DGGML_CUDA_COMPRESSION_MODE=size", f"-DCUDA_cuda_driver_LIBRARY={o.build_dir}/stubs/libcuda/libcuda.so",
        "-DCMAKE_C_COMPILER_LAUNCHER=/v/bin/ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=/v/bin/ccache",
        "-DCMAKE_CUDA_COMPILER_LAUNCHER=/v/bin/ccache",
        f"-DCMAKE_C_FLAGS={MAPS.format(c=o.cache_dir, b=o.build_dir, f='cu130-sm90')}",
        f"-DCMAKE_CXX_FLAGS={MAPS.format(c=o.cache_dir, b=o.build_dir, f='cu130-sm90')}",
        f"-DCMAKE_CUDA_FLAGS=-Xcompiler -ffile-prefix-map={o.cache_dir}=/lw-cache "
        f"-Xcompiler -ffile-prefix-map={o.build_dir}=.. -Xcompiler -ffile-prefix-map={o.build_dir}/cu130-sm90/=")
    assert shlex.split(step.env["CMAKE_ARGS"]) == list(step.cmake_args)
    assert step.env["TMP"] == step.env["TEMP"] == str(o.build_dir / "tmp")
    assert step.env["CCACHE_BASEDIR"] == str(o.build_dir) and step.env["CCACHE_NOHASHDIR"] == "true"
    assert "SOURCE_DATE_EPOCH" not in step.env  # it would drop AVX2 from the CPU backend
    assert step.build_dir == o.build_dir / "cu130-sm90" and step.out_dir == o.wheelhouse / "cu130-sm90"
    assert step.cuda_runtime == "pip"


def test_variant_with_own_flags_gets_own_compile(options) -> None:
    o = options('[tool.llama-wheels.variants.default]\nextras = []\n[tool.llama-wheels.variants.server]\n'
                'extras = ["server"]\n[tool.llama-wheels.variants.mmq]\ncmake-args = ["-DGGML_CUDA_FORCE_MMQ=ON"]\n')
    steps = make_plan(o, arch_set=parse_arch_set("universal", o.arch_sets), toolkit=PYPI, variants=None,
                      launcher=None)
    h = extra_hash(["-DGGML_CUDA_FORCE_MMQ=ON"])
    assert [(s.flavour, s.variants) for s in steps] == [
        ("cu130-sm86-89-120", ("default", "server")), (f"cu130-sm86-89-120-mmq-x{h}", ("mmq",))]
    assert steps[1].cmake_args[-1] == "-DGGML_CUDA_FORCE_MMQ=ON" and steps[1].label == f"cu130.sm86.89.120.mmq.x{h}"
    assert not any("LAUNCHER" in a for a in steps[0].cmake_args)


def test_system_toolkit_and_cpu_and_extra_args(options) -> None:
    o = options('cmake-args = ["-DGGML_CUDA_FA=OFF"]\ncuda-runtime = "system"\n')
    sysk = ToolkitChoice("system", (12, 9), None, "system")
    (step,) = make_plan(o, arch_set=parse_arch_set("89"), toolkit=sysk, variants=["default"], launcher=None,
                        jobs=4)
    h = extra_hash(["-DGGML_CUDA_FA=OFF"])
    assert step.flavour == f"cu129-sm89-x{h}" and step.variants == ("default",) and step.extras == ()
    assert not any(a.startswith("-DCUDAToolkit_ROOT") for a in step.cmake_args)
    assert step.cmake_args[-1] == "-DGGML_CUDA_FA=OFF" and step.env["CMAKE_BUILD_PARALLEL_LEVEL"] == "4"
    (cpu,) = make_plan(o, arch_set=None, toolkit=ToolkitChoice("none", None), variants=None, launcher=None)
    assert cpu.flavour == f"cpu-x{h}" and cpu.version == f"0.3.36+cpu.x{h}" and cpu.cuda_runtime == "none"
    assert not any(a.startswith(("-DGGML_CUDA=", "-DCMAKE_CUDA", "-DCUDAToolkit")) for a in cpu.cmake_args)


def test_unknown_variant(options) -> None:
    with pytest.raises(ConfigError, match="did you mean 'server'"):
        make_plan(options(), arch_set=None, toolkit=PYPI, variants=["servr"], launcher=None)


def test_describe_lists_env_and_archs(options) -> None:
    (step,) = make_plan(options(), arch_set=parse_arch_set("90"), toolkit=PYPI, variants=None, launcher=None)
    text = "\n".join(step.describe())
    assert "archs      90-real;90-virtual" in text and "CMAKE_ARGS=" in text and Path(step.out_dir).name in text


def test_prefix_maps_join_a_users_flags_and_stay_out_of_the_label(options) -> None:
    """The build dir and cache dir never reach the binaries; a user's CMAKE_CXX_FLAGS adds to the maps
    (CMake's last -D would otherwise drop them), and the maps do not change the flavour's label."""
    o = options()
    (plain,) = make_plan(o, arch_set=None, toolkit=ToolkitChoice("none", None), variants=["default"], launcher=None)
    assert plain.flavour == "cpu" and not any(a.startswith("-DCMAKE_CUDA_FLAGS") for a in plain.cmake_args)
    (step,) = make_plan(o, arch_set=None, toolkit=ToolkitChoice("none", None), variants=["default"], launcher=None,
                        user_args=["-DCMAKE_CXX_FLAGS=-O2 -g0"])
    cxx = [a for a in step.cmake_args if a.startswith("-DCMAKE_CXX_FLAGS=")]
    flavour = f"cpu-x{extra_hash(['-DCMAKE_CXX_FLAGS=-O2 -g0'])}"
    assert cxx == [f"-DCMAKE_CXX_FLAGS={MAPS.format(c=o.cache_dir, b=o.build_dir, f=flavour)} -O2 -g0"]
    assert step.flavour == flavour
    (win,) = make_plan(o, arch_set=parse_arch_set("90"), toolkit=PYPI, variants=["default"], launcher=None,
                       windows=True)
    assert not any("prefix-map" in a for a in win.cmake_args)  # MSVC has no -ffile-prefix-map


def test_sccache_builds_go_without_prefix_maps(options) -> None:
    """sccache 0.16 hashes the arguments as written: a map naming the build dir would miss on every runner
    (the sccache fleet's second runner did); ccache keeps the maps and its hits."""
    o = options()
    for launcher, maps in (("/x/bin/sccache", False), ("/x/bin/ccache", True), (None, True)):
        (step,) = make_plan(o, arch_set=None, toolkit=ToolkitChoice("none", None), variants=["default"],
                            launcher=launcher)
        assert any("prefix-map" in a for a in step.cmake_args) is maps, launcher
