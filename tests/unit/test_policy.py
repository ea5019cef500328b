"""The host policy (explicit ggml options, labels) and the NEEDED closure rules, fed facts directly."""

from __future__ import annotations

import shlex

import pytest

from llama_wheels import policy
from llama_wheels.archs import parse_arch_set
from llama_wheels.detect import ToolkitChoice
from llama_wheels.errors import ConfigError
from llama_wheels.plan import make_plan
from llama_wheels.policy import Binary, closure_problems, manylinux_whitelist, resolve

PYPI = ToolkitChoice("pypi", (13, 0), None, "NVIDIA's PyPI cuda-toolkit 13.0")
NCCL_VARIANT = '[tool.llama-wheels.variants.default]\nextras = []\n[tool.llama-wheels.variants.multigpu]\n' \
               'ggml = { nccl = true }\n'


def test_every_host_option_is_passed_explicitly() -> None:
    cuda = resolve({}, {}, (), cuda=True)
    assert cuda.cmake_args() == [
        "-DGGML_CUDA_NCCL=OFF", "-DGGML_CUDA_NO_VMM=OFF", "-DGGML_OPENMP=OFF", "-DGGML_BLAS=OFF",
        "-DGGML_CUDA_GRAPHS=ON", "-DGGML_CUDA_FA_QUANTS=q4_0-q4_0;q8_0-q8_0;f16-f16;bf16-bf16",
        "-DGGML_CUDA_COMPRESSION_MODE=size"]
    assert cuda.label_tokens() == [] and cuda.vmm and not cuda.nccl
    assert resolve({}, {}, (), cuda=False).cmake_args() == ["-DGGML_OPENMP=OFF", "-DGGML_BLAS=OFF"]


@pytest.mark.parametrize(("table", "tokens", "arg"), [
    ({"nccl": True}, ["nccl"], "-DGGML_CUDA_NCCL=ON"),
    ({"vmm": False}, ["novmm"], "-DGGML_CUDA_NO_VMM=ON"),
    ({"openmp": True}, ["omp"], "-DGGML_OPENMP=ON"),
    ({"blas": True}, ["blas"], "-DGGML_BLAS=ON"),
    ({"cuda-graphs": False}, ["nographs"], "-DGGML_CUDA_GRAPHS=OFF"),
    ({"fa-quants": "all"}, ["faall"], "-DGGML_CUDA_FA_QUANTS=all"),
    ({"compression-mode": "none"}, ["cmnone"], "-DGGML_CUDA_COMPRESSION_MODE=none"),
    ({"nccl": True, "vmm": False}, ["nccl", "novmm"], "-DGGML_CUDA_NO_VMM=ON"),
])
def test_non_default_values_show_in_the_label(table: dict[str, bool | str], tokens: list[str], arg: str) -> None:
    host = resolve(policy.check_table(table, "test"), {}, (), cuda=True)
    assert host.label_tokens() == tokens and arg in host.cmake_args()


def test_custom_fa_list_gets_a_stable_token() -> None:
    a = resolve({"fa-quants": "q8_0-q8_0;f16-f16"}, {}, (), cuda=True).label_tokens()
    assert a == resolve({"fa-quants": "q8_0-q8_0;f16-f16"}, {}, (), cuda=True).label_tokens()
    assert len(a) == 1 and a[0].startswith("fa") and a[0].isalnum() and a != ["faall"]


def test_precedence_table_variant_then_user_cmake_args() -> None:
    assert resolve({"nccl": True}, {"nccl": False}, (), cuda=True).nccl is False
    host = resolve({}, {}, ("-DGGML_CUDA_NCCL:BOOL=ON", "-DGGML_CUDA_NO_VMM=1"), cuda=True)
    assert host.nccl and not host.vmm and host.label_tokens() == ["nccl", "novmm"]


@pytest.mark.parametrize(("table", "fragment"), [
    ({"ncl": True}, "did you mean 'nccl'"), ({"nccl": "maybe"}, "is not a boolean"),
    ({"fa-quants": "q8_0-q9_9"}, "is not a list of K-V pairs"), ({"compression-mode": "max"}, "is not valid"),
])
def test_bad_values_name_the_fix(table: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        policy.check_table(table, "pyproject.toml")


def test_config_table_env_and_variant(options) -> None:
    o = options('[tool.llama-wheels.ggml]\nopenmp = true\n', env={"LLAMA_WHEELS_GGML_CUDA_GRAPHS": "false"})
    assert dict(o.ggml) == {"openmp": True, "cuda-graphs": False}
    with pytest.raises(ConfigError, match=r"unknown ggml option 'nccll'.*variant multigpu"):
        options('[tool.llama-wheels.variants.multigpu]\nggml = { nccll = true }\n')
    with pytest.raises(ConfigError, match="unknown environment variable LLAMA_WHEELS_GGML_NCL"):
        options(env={"LLAMA_WHEELS_GGML_NCL": "1"})


def test_nccl_variant_is_its_own_flavour_with_pypi_nccl(options) -> None:
    o = options(NCCL_VARIANT)
    plain, multi = make_plan(o, arch_set=parse_arch_set("90"), toolkit=PYPI, variants=None, launcher=None)
    assert (plain.flavour, plain.label) == ("cu130-sm90", "cu130.sm90")
    assert (multi.flavour, multi.label) == ("cu130-sm90-nccl", "cu130.sm90.nccl")
    assert multi.version == "0.3.36+cu130.sm90.nccl"
    nccl = o.cache_dir / "toolkits" / "nccl-cu13-2.32.3" / "nvidia" / "nccl"
    assert multi.nccl_root == nccl and plain.nccl_root is None
    assert "-DGGML_CUDA_NCCL=ON" in multi.cmake_args and "-DGGML_CUDA_NCCL=OFF" in plain.cmake_args
    assert f"-DNCCL_INCLUDE_DIR={nccl}/include" in multi.cmake_args
    assert f"-DNCCL_LIBRARY={nccl}/lib/libnccl.so.2" in multi.cmake_args
    assert not any("NCCL_" in a for a in plain.cmake_args if not a.startswith("-DGGML_CUDA_NCCL"))
    assert shlex.split(multi.env["CMAKE_ARGS"]) == list(multi.cmake_args)


def test_no_vmm_is_a_setting_not_a_host_fact(options) -> None:
    (step,) = make_plan(options('[tool.llama-wheels.ggml]\nvmm = false\n'), arch_set=parse_arch_set("90"),
                        toolkit=PYPI, variants=["default"], launcher=None)
    assert step.no_vmm and step.label == "cu130.sm90.novmm" and step.driver_stub is None
    assert "-DGGML_CUDA_NO_VMM=ON" in step.cmake_args and not any("cuda_driver" in a for a in step.cmake_args)


def test_nccl_without_a_pinned_wheel(options) -> None:
    with pytest.raises(ConfigError, match="nvidia-nccl-cu12"):
        make_plan(options('[tool.llama-wheels.ggml]\nnccl = true\n'), arch_set=parse_arch_set("89"),
                  toolkit=ToolkitChoice("system", (12, 9), None, "system"), variants=None, launcher=None)


def test_cpu_plan_ignores_cuda_options(options) -> None:
    (cpu,) = make_plan(options('[tool.llama-wheels.ggml]\nnccl = true\nopenmp = true\n'), arch_set=None,
                       toolkit=ToolkitChoice("none", None), variants=None, launcher=None)
    assert cpu.flavour == "cpu-omp" and cpu.nccl_root is None and cpu.driver_stub is None
    assert "-DGGML_OPENMP=ON" in cpu.cmake_args and not any("NCCL" in a for a in cpu.cmake_args)


# ------------------------------------------------------------------ closure -------------------------

LIB = "llama_cpp/lib/libggml-cuda.so"
BASE = ("libggml-base.so", "libstdc++.so.6", "libm.so.6", "libgcc_s.so.1", "libc.so.6")
NAMES = [LIB, "llama_cpp/lib/libggml-base.so"]
PIP_REQS = ["nvidia-cuda-runtime~=13.0", "nvidia-cublas~=13.0"]
TAG = "manylinux_2_28_x86_64"


def _closure(needed: tuple[str, ...], requires: list[str], **kw: object) -> list[str]:
    return closure_problems([Binary(LIB, (*BASE, *needed), ("$ORIGIN",))], all_names=NAMES, requires=requires,
                            platform_tag=str(kw.pop("tag", TAG)), **kw)  # type: ignore[arg-type]


def test_closure_accounts_for_wheel_requires_policy_and_driver() -> None:
    assert _closure(("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcuda.so.1"), PIP_REQS) == []


def test_undeclared_nccl_is_named_with_its_option() -> None:
    (p,) = _closure(("libcudart.so.13", "libnccl.so.2"), PIP_REQS)
    assert "needs libnccl.so.2 (pulled in by GGML_CUDA_NCCL)" in p and p.startswith(LIB)
    assert _closure(("libcudart.so.13", "libnccl.so.2"), [*PIP_REQS, "nvidia-nccl-cu13>=2.32.3,<3"]) == []


def test_runtime_mode_decides_the_cuda_runtime() -> None:
    (p,) = _closure(("libcudart.so.13",), [])
    assert "libcudart.so.13 (pulled in by GGML_CUDA)" in p
    assert _closure(("libcudart.so.13",), [], cuda_runtime="system") == []
    assert len(_closure(("libnccl.so.2",), [], cuda_runtime="system")) == 1
    assert _closure(("libnccl.so.2",), [], cuda_runtime="system", nccl=True) == []


def test_libgomp_is_not_manylinux_and_build_host_runpaths_are_named() -> None:
    (p,) = _closure(("libgomp.so.1",), [])
    assert "libgomp.so.1 (pulled in by GGML_OPENMP)" in p
    bins = [Binary(LIB, BASE, ("$ORIGIN", "/root/.cache/llama-wheels/toolkits/cu130/nvidia/cu13/lib"))]
    (p,) = closure_problems(bins, all_names=NAMES, requires=[], platform_tag=TAG)
    assert "RUNPATH /root/.cache" in p


def test_linux_tag_promises_nothing() -> None:
    (problem,) = _closure((), [], tag="linux_x86_64")  # libc & co. are judged by the newest policy
    assert problem.startswith("platform tag linux_x86_64 is not a manylinux tag")
    (named, _) = _closure(("libgomp.so.1",), [], tag="linux_x86_64")
    assert "libgomp.so.1 (pulled in by GGML_OPENMP)" in named


def test_whitelist_comes_from_auditwheel() -> None:
    from auditwheel.policy import WheelPolicies  # the data we must not copy

    wl = manylinux_whitelist("manylinux_2_28_x86_64")
    assert wl is not None and "libstdc++.so.6" in wl and "libgomp.so.1" not in wl
    assert wl == manylinux_whitelist("manylinux_2_28_x86_64") and manylinux_whitelist("linux_x86_64") is None
    assert manylinux_whitelist("manylinux2014_x86_64") == manylinux_whitelist("manylinux_2_17_x86_64")
    assert WheelPolicies.__module__ == "auditwheel.policy"


def test_windows_files_wait_for_a_pe_reader() -> None:
    assert policy.IMPORT_READERS.get(b"MZ") is None  # DLLs: windows.dll_problems in check_wheel
    assert policy.binaries({"llama_cpp/lib/ggml.dll": b"MZ\x90\x00" + b"\x00" * 100}) == []


def test_excluded_for_audit_is_what_requires_and_driver_provide() -> None:
    bins = [Binary(LIB, (*BASE, "libcudart.so.13", "libcuda.so.1", "libgomp.so.1"))]
    assert policy.excluded_for_audit(bins, requires=PIP_REQS, cuda_runtime="pip", nccl=False) == {
        "libcudart.so.13", "libcuda.so.1"}
