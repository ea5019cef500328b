from __future__ import annotations

import pytest

from llama_wheels.detect import (
    parse_cc_version,
    parse_cl_banner,
    parse_nvcc_version,
    parse_nvidia_smi_banner,
    parse_nvidia_smi_csv,
    parse_vswhere,
)


@pytest.mark.parametrize(("name", "version", "full"), [
    ("nvcc-13.0-linux.txt", (13, 0), "13.0.88"),
    ("nvcc-12.9-linux.txt", (12, 9), "12.9.41"),
    ("nvcc-11.8-linux.txt", (11, 8), "11.8.89"),
])
def test_nvcc(fixture_text, name: str, version: tuple[int, int], full: str) -> None:
    assert parse_nvcc_version(fixture_text(name)) == (version, full)


def test_nvcc_garbage() -> None:
    assert parse_nvcc_version("bash: nvcc: command not found") is None


@pytest.mark.parametrize(("name", "msc", "target", "vs"), [
    ("cl-19.44-x86.txt", 1944, "x86", "Visual Studio 2022 (17.14)"),
    ("cl-19.44-x64.txt", 1944, "x64", "Visual Studio 2022 (17.14)"),
    ("cl-19.29-x64.txt", 1929, "x64", "Visual Studio 2019 (16.10-16.11)"),
    ("cl-19.50-x64.txt", 1950, "x64", "Visual Studio 2026 (18.0)"),
])
def test_cl_banner(fixture_text, name: str, msc: int, target: str, vs: str) -> None:
    b = parse_cl_banner(fixture_text(name))
    assert b is not None and (b.msc_ver, b.target, b.visual_studio) == (msc, target, vs)


def test_vswhere(fixture_text) -> None:
    (inst,) = parse_vswhere(fixture_text("vswhere.json"))
    assert inst.version.startswith("17.14") and inst.name == "Visual Studio Community 2022" and inst.has_cl
    assert parse_vswhere("not json") == []


@pytest.mark.parametrize(("name", "expected"), [
    ("gxx-12-debian.txt", ("gcc", "12.2.0")),
    ("gcc-15-fedora.txt", ("gcc", "15.1.1")),
    ("clang-18-ubuntu.txt", ("clang", "18.1.3")),
])
def test_cc_version(fixture_text, name: str, expected: tuple[str, str]) -> None:
    assert parse_cc_version(fixture_text(name)) == expected


def test_nvidia_smi_h100_recorded(fixture_text) -> None:
    assert parse_nvidia_smi_banner(fixture_text("nvidia-smi-h100.txt")) == ("580.159.04", (13, 0))
    (gpu,) = parse_nvidia_smi_csv(fixture_text("nvidia-smi-query-h100.csv"))
    assert (gpu.name, gpu.compute_cap, gpu.memory_mib, gpu.sm) == ("NVIDIA H100 80GB HBM3", 90, 81559, "sm_90")


def test_nvidia_smi_windows_and_mixed(fixture_text) -> None:
    assert parse_nvidia_smi_banner(fixture_text("nvidia-smi-windows-rtx4090.txt")) == ("576.52", (12, 9))
    gpus = parse_nvidia_smi_csv(fixture_text("nvidia-smi-query-mixed.csv"))
    assert [g.compute_cap for g in gpus] == [86, 90]
    assert parse_nvidia_smi_csv("No devices were found\n") == []


def test_visual_studio_without_the_prompt(fixture_text) -> None:
    """With no cl on PATH, the doctor names the install vswhere found, its prompt and its vcvars64.bat."""
    from llama_wheels.detect import Facts
    from llama_wheels.doctor import compiler_verdict

    (vs,) = parse_vswhere(fixture_text("vswhere.json"))
    assert (vs.year, vs.vcvars64) == ("2022", r"C:\Program Files\Microsoft Visual Studio\2022\Community"
                                      r"\VC\Auxiliary\Build\vcvars64.bat")
    f = Facts(os="Windows 11", machine="AMD64", python="3.11", visual_studio=[vs])
    verdict = compiler_verdict(f, None)
    assert verdict.level == "fail" and "cl is not on PATH, but Visual Studio Community 2022 17.14" in verdict.message
    assert "x64 Native Tools Command Prompt for VS 2022" in verdict.fix and "vcvars64.bat" in verdict.fix
    assert "no C++ compiler found" in compiler_verdict(Facts(os="Windows 11", machine="AMD64", python="3.11"),
                                                        None).message
