"""Doctor verdicts on facts built from recorded tool output (Windows/MSVC and GPUs are faked here)."""

from __future__ import annotations

import json

import pytest

from llama_wheels.detect import Facts, Toolkit, parse_cl_banner, parse_nvidia_smi_banner, parse_nvidia_smi_csv
from llama_wheels.doctor import diagnose, preflight, render, report_json
from llama_wheels.errors import PreflightError


def facts(fixture_text, *, compiler="gxx12", toolkits=("13.0",), gpu=None, python="3.11") -> Facts:
    f = Facts(os="Linux", machine="x86_64", python="3.11", pythons={python: "/usr/bin/python" + python},
              tools={"cmake": "3.25.1", "ninja": "1.11.1", "git": "2.39", "ccache": "4.14", "sccache": "", "cargo": ""},
              disk_free_bytes=50 * 1024**3, disk_path="/b")
    if compiler == "gxx12":
        f.compiler = {"kind": "gcc", "path": "/usr/bin/g++", "version": "12.2.0"}
    elif compiler == "gcc16":
        f.compiler = {"kind": "gcc", "path": "/usr/bin/g++", "version": "16.1.0"}
    elif compiler.startswith("cl-"):
        b = parse_cl_banner(fixture_text(compiler))
        assert b
        f.compiler = {"kind": "msvc", "path": "cl.exe", "version": b.version, "msc_ver": str(b.msc_ver),
                      "visual_studio": b.visual_studio, "target": b.target}
    for tk in toolkits:
        complete = not tk.endswith("-nocublas")
        v = tk.removesuffix("-nocublas")
        major, minor = (int(x) for x in v.split("."))
        f.toolkits.append(Toolkit(f"/usr/local/cuda-{v}", f"/usr/local/cuda-{v}/bin/nvcc", (major, minor), v + ".0",
                                  "PATH", () if complete else ("cuBLAS headers (include/cublas_v2.h)",)))
    if gpu:
        f.driver, f.driver_cuda = parse_nvidia_smi_banner(fixture_text(gpu[0]))  # type: ignore[misc]
        f.gpus = parse_nvidia_smi_csv(fixture_text(gpu[1]))
    return f


def topics(diag, level: str) -> list[str]:
    return [v.topic for v in diag.verdicts if v.level == level]


def test_clean_linux_cpu_machine(options, fixture_text) -> None:
    d = diagnose(options(), facts(fixture_text), arch_spec=None, cuda=None)
    assert d.ok, render(facts(fixture_text), d)
    assert d.arch_set is not None and "no GPU found" in d.arch_set.source
    assert d.toolkit.source == "system"
    preflight(d)


def test_incomplete_nvcc_auto_falls_back_to_pypi(options, fixture_text) -> None:
    d = diagnose(options(), facts(fixture_text, toolkits=("13.0-nocublas",)), arch_spec="90", cuda=None)
    assert d.ok and d.toolkit.source == "pypi" and "lacks cuBLAS" in d.toolkit.why


def test_incomplete_nvcc_with_system_fails(options, fixture_text) -> None:
    d = diagnose(options(), facts(fixture_text, toolkits=("13.0-nocublas",)), arch_spec="90", cuda="system")
    assert topics(d, "fail") == ["cuda toolkit"]
    with pytest.raises(PreflightError, match="lacks cuBLAS") as e:
        preflight(d)
    assert "pypi:13.0" in e.value.remedy


def test_sm120_needs_cuda_12_8(options, fixture_text) -> None:
    d = diagnose(options(), facts(fixture_text, toolkits=("12.4",)), arch_spec="universal", cuda="system")
    fails = [v for v in d.verdicts if v.level == "fail"]
    assert fails and "sm_120" in fails[0].message and "12.8" in fails[0].message


def test_sm61_below_cuda13_floor(options, fixture_text) -> None:
    d = diagnose(options(), facts(fixture_text), arch_spec="61", cuda="system")
    assert any("lowest is sm_75" in v.message for v in d.failures())


def test_gcc_too_new(options, fixture_text) -> None:
    d = diagnose(options(), facts(fixture_text, compiler="gcc16"), arch_spec="90", cuda="system")
    (v,) = d.failures()
    assert v.topic == "host compiler" and "gcc <= 15" in v.message and "gcc-15" in v.fix


def test_msvc_x86_prompt_is_refused(options, fixture_text) -> None:
    d = diagnose(options(), facts(fixture_text, compiler="cl-19.44-x86.txt"), arch_spec="90", cuda="system")
    (v,) = d.failures()
    assert "targets x86" in v.message and "x64 Native Tools" in v.fix


def test_msvc_2026_too_new_for_cuda13(options, fixture_text) -> None:
    d = diagnose(options(), facts(fixture_text, compiler="cl-19.50-x64.txt"), arch_spec="90", cuda="system")
    (v,) = d.failures()
    assert "1920-1949" in v.message and "Visual Studio 2026" in v.message


def test_msvc_2022_ok(options, fixture_text) -> None:
    d = diagnose(options(), facts(fixture_text, compiler="cl-19.44-x64.txt"), arch_spec="90", cuda="system")
    assert d.ok


def test_gpu_auto_and_driver(options, fixture_text) -> None:
    f = facts(fixture_text, gpu=("nvidia-smi-h100.txt", "nvidia-smi-query-h100.csv"))
    d = diagnose(options(), f, arch_spec="auto", cuda="system")
    assert d.ok and d.arch_set is not None and d.arch_set.cmake() == "90-real;90-virtual"
    assert "H100" in d.arch_set.source
    assert any(v.topic == "driver" and v.level == "ok" for v in d.verdicts)
    assert any(v.topic == "gpu" and "native" in v.message for v in d.verdicts)


def test_old_driver_fails_for_cuda13(options, fixture_text) -> None:
    f = facts(fixture_text, gpu=("nvidia-smi-windows-rtx4090.txt", "nvidia-smi-query-rtx4090.csv"))
    d = diagnose(options(), f, arch_spec="auto", cuda="system")
    assert [v.topic for v in d.failures()] == ["driver"]


def test_missing_python_and_cargo(options, fixture_text) -> None:
    d = diagnose(options(), facts(fixture_text, python="3.12"), arch_spec="90", cuda="system", all_from_source=True)
    assert sorted(v.topic for v in d.failures()) == ["cargo", "python"]


def test_json_report_fields(options, fixture_text) -> None:
    f = facts(fixture_text, gpu=("nvidia-smi-h100.txt", "nvidia-smi-query-h100.csv"))
    data = json.loads(report_json(f, diagnose(options(), f, arch_spec=None, cuda=None)))
    assert {k: v for k, v in data.items() if k not in ("facts", "verdicts")} == {
        "arch_set": "90-real;90-virtual", "arch_set_source": "auto: GPUs present: NVIDIA H100 80GB HBM3 (sm_90)",
        "toolkit": {"source": "system", "version": "13.0",
                    "why": "auto: complete system toolkit 13.0.0 at /usr/local/cuda-13.0"},
        "ok": True}
    assert [(v["level"], v["topic"]) for v in data["verdicts"]] == [
        ("ok", "python"), ("ok", "cuda toolkit"), ("info", "arch set"), ("info", "arch set"), ("ok", "arch set"),
        ("ok", "host compiler"), ("ok", "driver"), ("ok", "gpu"), ("ok", "cmake"), ("ok", "ninja"),
        ("ok", "compiler cache"), ("ok", "disk")]
    assert data["facts"]["gpus"] == [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "compute_cap": 90,
                                      "driver": "580.159.04", "memory_mib": 81559}]
    assert data["facts"]["toolkits"][0] | {"complete": None} == {
        "root": "/usr/local/cuda-13.0", "nvcc": "/usr/local/cuda-13.0/bin/nvcc", "version": [13, 0],
        "full_version": "13.0.0", "found_via": "PATH", "missing": [], "complete": None}
    f.toolkits[0] = Toolkit("/opt/cuda", "/opt/cuda/bin/nvcc", (13, 0), "13.0.0", "PATH", ("cuBLAS headers",))
    broken = json.loads(report_json(f, diagnose(options(), f, arch_spec=None, cuda="system")))
    assert broken["ok"] is False and broken["facts"]["toolkits"][0]["complete"] is False
    assert broken["toolkit"] == {"source": "none", "version": None, "why": "no complete system toolkit"}


def test_cmake_that_prints_no_version_is_a_failure_not_a_traceback(options, fixture_text) -> None:
    f = facts(fixture_text)
    f.tools["cmake"] = "?"  # what detect records when `cmake --version` prints no version (a broken wrapper)
    d = diagnose(options(), f, arch_spec=None, cuda=None)
    (v,) = [v for v in d.verdicts if v.topic == "cmake"]
    assert v.level == "fail" and "does not run" in v.message and "pip install -U cmake" in v.fix
    f.tools["cmake"] = "3.20.6"
    (v,) = [v for v in diagnose(options(), f, arch_spec=None, cuda=None).verdicts if v.topic == "cmake"]
    assert v.level == "fail" and "older than 3.21" in v.message


# --- drivers older than 580 and cards older than Ampere-86 (issue #26) -----------------------------------


def test_system_version_picks_cuda12_next_to_cuda13(options, fixture_text) -> None:
    f = facts(fixture_text, toolkits=("13.0", "12.4"), gpu=("nvidia-smi-a100-535.txt", "nvidia-smi-query-a100-535.csv"))
    assert diagnose(options(), f, arch_spec="auto", cuda="system").toolkit.version == (13, 0)  # the newest
    d = diagnose(options(), f, arch_spec="auto", cuda="system:12.4")
    assert d.ok, render(f, d)
    assert d.toolkit.version == (12, 4) and d.toolkit.why == "system toolkit 12.4.0 at /usr/local/cuda-12.4"
    assert d.arch_set is not None and d.arch_set.cmake() == "80-real;80-virtual"
    (drv,) = [v for v in d.verdicts if v.topic == "driver"]  # a 12.2 driver runs a 12.4 wheel (minor-version compat)
    assert drv.level == "warn" and "runs by minor-version compatibility" in drv.message
    assert drv.fix.startswith("give every GPU native code")


def test_system_version_not_installed_names_what_is(options, fixture_text) -> None:
    d = diagnose(options(), facts(fixture_text, toolkits=("13.0",)), arch_spec="80", cuda="system:12.4")
    (v,) = d.failures()
    assert v.message == "no complete system CUDA 12.4 toolkit (complete ones: 13.0.0 at /usr/local/cuda-13.0)"
    assert "Drivers older than 580" in v.fix


def test_535_driver_and_cuda13_points_at_the_cuda12_route(options, fixture_text) -> None:
    f = facts(fixture_text, gpu=("nvidia-smi-a100-535.txt", "nvidia-smi-query-a100-535.csv"))
    d = diagnose(options(), f, arch_spec="auto", cuda="system")
    (v,) = d.failures()
    assert v.topic == "driver" and "CUDA 12.2 only" in v.message
    assert v.fix == ("update the NVIDIA driver (>= 580.65.06 for CUDA 13), or build a CUDA 12 flavour for this driver "
                     "(CUDA 12.2): --cuda system:12.4 with that toolkit installed (README: Drivers older than 580)")


def test_universal_does_not_run_on_a_t4(options, fixture_text) -> None:
    f = facts(fixture_text, gpu=("nvidia-smi-t4-550.txt", "nvidia-smi-query-t4-550.csv"))
    d = diagnose(options(), f, arch_spec="universal", cuda="pypi:13.0")
    gpu = [v for v in d.verdicts if v.topic == "gpu"]
    assert gpu and gpu[0].level == "warn" and "none of which runs on sm_75" in gpu[0].message
    d = diagnose(options(), f, arch_spec="turing", cuda="pypi:13.0")
    assert any(v.topic == "gpu" and v.level == "ok" and "sm_75 cubin" in v.message for v in d.verdicts)


def test_cuda_system_version_is_a_valid_option(options) -> None:
    assert options('cuda = "system:12.4"\n').cuda == "system:12.4"


def test_cmake_line_says_which_cmake_the_build_uses(options, fixture_text) -> None:
    f = facts(fixture_text)
    f.tools["cmake"] = "3.25.1"  # Debian 12's: the nox build sessions add the CMake 4.4.4 wheel over it
    (v,) = [v for v in diagnose(options(), f, arch_spec=None, cuda=None).verdicts if v.topic == "cmake"]
    assert v.level == "ok" and v.message.startswith("cmake 3.25.1 on PATH;") and "cmake 4.4.4 wheel" in v.message
    f.tools["cmake"] = "4.4.4"
    (v,) = [v for v in diagnose(options(), f, arch_spec=None, cuda=None).verdicts if v.topic == "cmake"]
    assert v.message == "cmake 4.4.4"
