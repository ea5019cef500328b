"""The selector's choice on recorded nvidia-smi / NVML output, against a catalogue that `build_index` wrote
from small real wheels and build-shaped manifest entries."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from llama_wheels import catalogue, selector
from llama_wheels.index import build_index

from ._catalogue_house import make_house

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tools"
LINUX = ("linux", "x86_64", (2, 36))


def fits(wheel: dict[str, Any]) -> bool:
    return selector.wheel_fits(wheel, machine_tags=LINUX)


def smi(query: str | None, banner: str | None = None) -> selector.Runner:
    """nvidia-smi as recorded: the query CSV and the plain banner; None = the tool is not there."""
    def run(argv: list[str]) -> str | None:
        if argv == selector.SMI_QUERY:
            return (FIXTURES / query).read_text() if query else None
        if argv == ["nvidia-smi"]:
            return (FIXTURES / banner).read_text() if banner else None
        raise AssertionError(f"unexpected command {argv}")
    return run


def index(tmp_path: Path, flavours: list[str]) -> tuple[dict[str, Any], str]:
    house = make_house(tmp_path, flavours)
    build_index(house)
    path = house / "index" / selector.CATALOGUE
    return json.loads(path.read_text()), path.as_uri()


def pick(tmp_path: Path, flavours: list[str], machine: selector.Machine) -> selector.Choice:
    cat, url = index(tmp_path, flavours)
    return selector.choose(cat, machine, base_url=url, fits=fits)


ALL = ["cpu", "cu130-sm90", "cu130-sm86-89-120"]


def test_h100_gets_native_sm90_over_universal_ptx(tmp_path: Path) -> None:
    machine = selector.detect(smi("nvidia-smi-query-h100.csv", "nvidia-smi-h100.txt"), nvml=None, env={})
    assert machine.driver == "580.159.04" and machine.driver_cuda == (13, 0)
    assert [(g.name, g.cc) for g in machine.gpus] == [("NVIDIA H100 80GB HBM3", 90)]
    choice = pick(tmp_path, ALL, machine)
    assert choice.flavour == "cu130-sm90" and choice.version == "0.3.36+cu130.sm90" and not choice.jit
    assert choice.lines[0] == "GPU 0 NVIDIA H100 80GB HBM3 (sm_90): native (sm_90 cubin) in cu130-sm90"
    assert "cu130-sm86-89-120 would JIT-compile" in choice.lines[1]
    universal = next(c for c in choice.candidates if c.flavour == "cu130-sm86-89-120")
    assert universal.tier == 1  # it would run, by JIT of compute_89: ranked below native
    assert choice.index_url.endswith("/index/cu130-sm90/")


def test_nvml_is_read_first(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "nvml-h100.json").read_text())

    class Nvml:  # nvidia-ml-py's functions, answering with the recorded values
        shut = False

        def nvmlInit(self) -> None: ...
        def nvmlShutdown(self) -> None: self.shut = True
        def nvmlSystemGetDriverVersion(self) -> str: return str(data["nvmlSystemGetDriverVersion"])
        def nvmlSystemGetCudaDriverVersion(self) -> int: return int(data["nvmlSystemGetCudaDriverVersion"])
        def nvmlDeviceGetCount(self) -> int: return len(data["devices"])
        def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]: return dict(data["devices"][i])
        def nvmlDeviceGetName(self, h: dict[str, Any]) -> str: return str(h["nvmlDeviceGetName"])
        def nvmlDeviceGetCudaComputeCapability(self, h: dict[str, Any]) -> tuple[int, int]:
            major, minor = h["nvmlDeviceGetCudaComputeCapability"]
            return major, minor

    nvml = Nvml()
    machine = selector.detect(smi(None), nvml=nvml, env={})
    assert machine.source == "NVML" and nvml.shut
    assert machine == selector.Machine((selector.Gpu(0, "NVIDIA H100 80GB HBM3", 90),), "580.159.04", (13, 0),
                                       machine.windows, "NVML")
    assert pick(tmp_path, ALL, machine).flavour == "cu130-sm90"


def test_nvml_that_cannot_start_falls_back_to_nvidia_smi() -> None:
    class Broken:
        def nvmlInit(self) -> None:
            raise RuntimeError("NVML Shared Library Not Found")

    machine = selector.detect(smi("nvidia-smi-query-h100.csv", "nvidia-smi-h100.txt"), nvml=Broken(), env={})
    assert machine.source == "nvidia-smi" and machine.gpus[0].cc == 90


def test_rtx4090_gets_universal(tmp_path: Path) -> None:
    detected = selector.detect(smi("nvidia-smi-query-rtx4090.csv", "nvidia-smi-windows-rtx4090.txt"),
                               nvml=None, env={}, windows=True)
    machine = selector.override(detected, None, "13.0")  # the recorded driver is 12.9: see the next test
    choice = pick(tmp_path, ALL, machine)
    assert choice.flavour == "cu130-sm86-89-120"
    assert choice.lines == ["GPU 0 NVIDIA GeForce RTX 4090 (sm_89): native (sm_89 cubin) in cu130-sm86-89-120"]


def test_driver_too_old_for_cuda13_gets_cpu_only_when_allowed_and_names_the_driver(tmp_path: Path) -> None:
    machine = selector.detect(smi("nvidia-smi-query-rtx4090.csv", "nvidia-smi-windows-rtx4090.txt"),
                              nvml=None, env={}, windows=True)
    assert machine.driver == "576.52" and machine.driver_cuda == (12, 9)
    cat, url = index(tmp_path, ALL)
    choice = selector.choose(cat, machine, base_url=url, fits=fits, allow_cpu=True)
    assert choice.flavour == "cpu"
    assert choice.lines == ["GPU 0 NVIDIA GeForce RTX 4090 (sm_89): not used, cu130-sm86-89-120, cu130-sm90: needs "
                            "a driver for CUDA >= 13.0 (Linux >= 580.65.06, Windows >= 580.88); "
                            "this driver supports CUDA 12.9",
                            "warning: the CPU flavour on a machine with NVIDIA GPUs (--allow-cpu)"]
    with pytest.raises(selector.SelectError) as err:
        selector.choose(cat, machine, base_url=url, fits=fits)
    assert err.value.return_code == selector.SELECT_FAILED
    assert "cu124-sm89 would serve GPU 0 NVIDIA GeForce RTX 4090 (sm_89): build it with --archs 89 " \
           "--cuda system:12.4 and that toolkit installed" in err.value.remedy


def test_driver_too_old_and_no_cpu_flavour_is_a_clear_refusal(tmp_path: Path) -> None:
    machine = selector.detect(smi("nvidia-smi-query-rtx4090.csv", "nvidia-smi-windows-rtx4090.txt"),
                              nvml=None, env={}, windows=True)
    with pytest.raises(selector.SelectError) as err:
        pick(tmp_path, ["cu130-sm90", "cu130-sm86-89-120"], machine)
    assert "580.88" in err.value.one_line() and err.value.return_code == selector.SELECT_FAILED
    assert err.value.remedy == ("cu124-sm89 would serve GPU 0 NVIDIA GeForce RTX 4090 (sm_89): build it with "
                                "--archs 89 --cuda system:12.4 and that toolkit installed (README: Drivers older than "
                                "580), or update the driver to >= 580 for the CUDA 13 flavours")
    old = selector.override(machine, "8.9", "11.8")
    with pytest.raises(selector.SelectError) as err:
        pick(tmp_path / "2", ["cu130-sm90", "cu130-sm86-89-120"], old)
    assert err.value.remedy.startswith("this driver (CUDA 11.8) is too old for any flavour we build; update the NVIDIA "
                                       "driver (>= 525.60.13 for CUDA 12, >= 580.65.06 for CUDA 13)")


def test_driver_version_alone_is_checked_against_the_floor(tmp_path: Path) -> None:
    # the mixed host's recorded driver (570.133.07, no banner): older than CUDA 13's 580.65.06
    machine = selector.detect(smi("nvidia-smi-query-mixed.csv"), nvml=None, env={}, windows=False)
    assert machine.driver == "570.133.07" and machine.driver_cuda is None
    cat, url = index(tmp_path, ALL)
    choice = selector.choose(cat, machine, base_url=url, fits=fits, allow_cpu=True)
    assert choice.flavour == "cpu" and "this driver is 570.133.07" in choice.lines[0]


def test_blackwell_with_only_sm89_ptx_gets_it_with_the_jit_warning(tmp_path: Path) -> None:
    machine = selector.override(selector.Machine(()), "12.0", "13.0")
    choice = pick(tmp_path, ["cpu", "cu130-sm90", "cu130-sm86-89"], machine)
    assert choice.flavour == "cu130-sm86-89" and choice.jit
    assert choice.lines[0] == "GPU 0 (given) (sm_120): ptx-jit (compute_89 PTX, JIT-compiled) in cu130-sm86-89"
    assert choice.lines[1] == f"warning: {selector.JIT_WARNING}"


def test_blackwell_prefers_the_120a_cubin(tmp_path: Path) -> None:
    machine = selector.override(selector.Machine(()), "12.0", "13.0")
    assert pick(tmp_path, ["cpu", "cu130-sm86-89", "cu130-sm86-89-120"], machine).flavour == "cu130-sm86-89-120"


def test_mixed_host_gets_a_flavour_native_for_both(tmp_path: Path) -> None:
    detected = selector.detect(smi("nvidia-smi-query-mixed.csv"), nvml=None, env={})
    machine = selector.override(detected, None, "13.0")
    choice = pick(tmp_path, [*ALL, "cu130-sm86-90"], machine)
    assert choice.flavour == "cu130-sm86-90"
    assert choice.lines[:2] == ["GPU 0 NVIDIA GeForce RTX 3090 (sm_86): native (sm_86 cubin) in cu130-sm86-90",
                                "GPU 1 NVIDIA H100 80GB HBM3 (sm_90): native (sm_90 cubin) in cu130-sm86-90"]


def test_mixed_host_without_a_native_flavour_takes_the_one_that_runs_everywhere(tmp_path: Path) -> None:
    machine = selector.override(selector.Machine(()), "8.6,9.0", "13.0")
    choice = pick(tmp_path, ALL, machine)  # sm90 cannot run on the 3090; universal JITs on the H100
    assert choice.flavour == "cu130-sm86-89-120" and choice.jit
    sm90 = next(c for c in choice.candidates if c.flavour == "cu130-sm90")
    assert sm90.tier == 9 and "cannot-run" in sm90.why[0]


def test_mixed_host_with_no_common_flavour_says_why_per_gpu(tmp_path: Path) -> None:
    machine = selector.override(selector.Machine(()), "7.5,9.0", "13.0")
    cat, url = index(tmp_path, ALL)
    choice = selector.choose(cat, machine, base_url=url, fits=fits, allow_cpu=True)
    assert choice.flavour == "cpu"
    assert choice.lines[:-1] == [
        "GPU 0 (given) (sm_75): not used, cu130-sm86-89-120: holds sm_120a, sm_86, sm_89, compute_89, none of which "
        "runs on sm_75; cu130-sm90: holds sm_90, none of which runs on sm_75",
        "GPU 1 (given) (sm_90): not used, cu130-sm86-89-120, cu130-sm90: runs here but not on GPU 0"]


def test_unknown_driver_is_assumed_and_said(tmp_path: Path) -> None:
    machine = selector.override(selector.Machine(()), "9.0", None)
    choice = pick(tmp_path, ALL, machine)
    assert choice.flavour == "cu130-sm90"
    assert "the driver is unknown: assumed to support CUDA 13.0 (say --driver-cuda X.Y)" in choice.lines


def test_a_flavour_without_a_build_record_is_never_taken_for_cpu(tmp_path: Path) -> None:
    cat, url = index(tmp_path, ALL)
    cat["flavours"]["cu130-sm90"].update(kind="unknown", cuda=None, sass=[], ptx=[])  # e.g. seeded, no manifest
    del cat["flavours"]["cpu"]
    machine = selector.override(selector.Machine(()), "9.0", "13.0")
    choice = selector.choose(cat, machine, base_url=url, fits=fits)
    assert choice.flavour == "cu130-sm86-89-120"
    seeded = next(c for c in choice.candidates if c.flavour == "cu130-sm90")
    assert seeded.tier == 9 and "no build record" in seeded.reject


def test_cuda_visible_devices_limits_the_gpus_judged(tmp_path: Path) -> None:
    machine = selector.detect(smi("nvidia-smi-query-mixed.csv"), nvml=None, env={"CUDA_VISIBLE_DEVICES": "1"})
    assert [g.cc for g in machine.gpus] == [90]
    assert pick(tmp_path, ALL, selector.override(machine, None, "13.0")).flavour == "cu130-sm90"


def test_no_gpu_gets_cpu(tmp_path: Path) -> None:
    machine = selector.detect(smi(None), nvml=None, env={})
    assert machine.gpus == () and machine.source == "no GPU"
    choice = pick(tmp_path, ALL, machine)
    assert choice.flavour == "cpu" and choice.lines == ["no NVIDIA GPU (no GPU): cpu runs on the CPU"]


def test_smallest_wins_among_equals(tmp_path: Path) -> None:
    machine = selector.override(selector.Machine(()), "8.6", "13.0")  # native in sm86-89 (50 kB) and universal
    assert pick(tmp_path, [*ALL, "cu130-sm86-89"], machine).flavour == "cu130-sm86-89"


def test_newest_version_of_a_flavour_is_pinned(tmp_path: Path) -> None:
    make_house(tmp_path, ["cu130-sm90"], version="0.3.35")
    house = make_house(tmp_path, ["cu130-sm90"], version="0.3.36")
    build_index(house)
    cat = json.loads((house / "index" / selector.CATALOGUE).read_text())
    assert [w["version"] for w in cat["flavours"]["cu130-sm90"]["wheels"]] == ["0.3.35+cu130.sm90", "0.3.36+cu130.sm90"]
    machine = selector.override(selector.Machine(()), "9.0", "13.0")
    assert selector.choose(cat, machine, base_url="http://x/", fits=fits).version == "0.3.36+cu130.sm90"


def test_wheel_fits_platform_and_glibc() -> None:
    wheel = {"python_tags": ["py3"], "platform_tags": ["manylinux_2_28_x86_64"], "manylinux_floor": "2.28"}
    assert selector.wheel_fits(wheel, machine_tags=("linux", "x86_64", (2, 36)))
    assert not selector.wheel_fits(wheel, machine_tags=("linux", "x86_64", (2, 17)))
    assert not selector.wheel_fits(wheel, machine_tags=("linux", "aarch64", (2, 36)))
    assert not selector.wheel_fits(wheel, machine_tags=("windows", "amd64", None))
    assert selector.wheel_fits({"python_tags": ["py3"], "platform_tags": ["win_amd64"]},
                               machine_tags=("windows", "amd64", None))


@pytest.mark.parametrize(("argv", "expect"), [
    (["--gpus", "9.0", "--driver-cuda", "13.0"], "0.3.36+cu130.sm90"),
    (["--gpus", "8.9", "--driver-cuda", "13.0", "--extra", "server"], "[server]==0.3.36+cu130.sm86.89.120"),
    (["--gpus", "none"], "==0.3.36+cpu"),
])
def test_command_line_prints_the_exact_pip_command(tmp_path: Path, argv: list[str], expect: str) -> None:
    _cat, url = index(tmp_path, ALL)
    p = argparse.ArgumentParser()
    selector.add_arguments(p)
    out: list[str] = []
    args = p.parse_args(["--index", str(tmp_path / "wheelhouse" / "index"), *argv])
    assert selector.run(args, runner=smi(None), out=out.append) == 0
    cmd = out[-1]
    assert expect in cmd and " --extra-index-url file://" in cmd and cmd.endswith("/index/" + (
        "cpu/" if "none" in argv else "cu130-sm90/" if "9.0" in argv else "cu130-sm86-89-120/"))
    args = p.parse_args(["--index", url, "--index-only", "--json", *argv])
    out.clear()
    assert selector.run(args, runner=smi(None), out=out.append) == 0
    data = json.loads(out[0])
    assert data["command"][4].endswith(expect.split("]")[-1]) and data["command"][5] == "--index-url"


def test_install_runs_that_command(tmp_path: Path) -> None:
    index(tmp_path, ALL)
    p = argparse.ArgumentParser()
    selector.add_arguments(p)
    ran: list[list[str]] = []
    args = p.parse_args(["--index", str(tmp_path / "wheelhouse" / "index"), "--gpus", "9.0", "--driver-cuda", "13.0",
                         "--install"])
    assert selector.run(args, runner=smi(None), install=lambda c: ran.append(c) or 7, out=lambda _s: None) == 7
    assert ran[0][3:5] == ["install", "llama-cpp-python==0.3.36+cu130.sm90"]


@pytest.mark.parametrize(("argv", "code", "text"), [
    (["--gpus", "nine", "--driver-cuda", "13.0"], 2, "'nine' is not a compute capability; write it like 9.0"),
    (["--driver-cuda", "latest", "--gpus", "9.0"], 2, "'latest' is not a CUDA version"),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int,
                               text: str) -> None:
    index(tmp_path, ALL)
    assert selector.main(["--index", str(tmp_path / "wheelhouse" / "index"), *argv]) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and text in err and len(err.strip().splitlines()) == 1


def test_missing_catalogue_says_where_it_looked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert selector.main(["--index", str(tmp_path), "--gpus", "none", "--driver-cuda", "13.0"]) == 17
    assert "flavours.json" in capsys.readouterr().err


def test_gpu_verdicts_match_coverage() -> None:
    from llama_wheels.archs import parse_arch_set
    from llama_wheels.coverage import coverage_verdict

    for spec in ("90", "86;89;120", "86-real;89-virtual", "90a", "100f-real;100f-virtual"):
        archs = parse_arch_set(spec)
        for cc in (75, 80, 86, 89, 90, 100, 103, 120, 121):
            kind, _ = selector.gpu_verdict(cc, archs.sass, archs.ptx)
            assert kind == coverage_verdict(cc, archs).kind, (spec, cc)


def test_served_copy_is_the_module(tmp_path: Path) -> None:
    src = Path(selector.__file__).read_text()
    assert catalogue.selector_script(None) == src
    based = catalogue.selector_script("https://wheels.example/llama")
    assert based == src.replace('DEFAULT_INDEX_URL = ""\n', 'DEFAULT_INDEX_URL = "https://wheels.example/llama/"\n')


# --- fleets as they are (issue #26): A100 / T4 cards, 535 / 550 drivers, recorded nvidia-smi output ----------


def a100_535() -> selector.Machine:
    machine = selector.detect(smi("nvidia-smi-query-a100-535.csv", "nvidia-smi-a100-535.txt"), nvml=None, env={})
    assert machine.driver == "535.183.01" and machine.driver_cuda == (12, 2)
    assert [(g.name, g.cc) for g in machine.gpus] == [("NVIDIA A100-SXM4-80GB", 80)]
    return machine


def t4_550() -> selector.Machine:
    machine = selector.detect(smi("nvidia-smi-query-t4-550.csv", "nvidia-smi-t4-550.txt"), nvml=None, env={})
    assert machine.driver == "550.54.15" and machine.driver_cuda == (12, 4)
    assert [(g.name, g.cc) for g in machine.gpus] == [("Tesla T4", 75)]
    return machine


def test_a100_on_535_never_gets_the_cpu_flavour_silently(tmp_path: Path) -> None:
    with pytest.raises(selector.SelectError) as err:
        pick(tmp_path, ALL, a100_535())
    assert err.value.return_code == selector.SELECT_FAILED
    assert err.value.message == (
        "no GPU flavour in the catalogue runs here, only the CPU one: GPU 0 NVIDIA A100-SXM4-80GB (sm_80): "
        "cu130-sm86-89-120, cu130-sm90: needs a driver for CUDA >= 13.0 (Linux >= 580.65.06, Windows >= 580.88); "
        "this driver supports CUDA 12.2")
    assert err.value.remedy == (
        "cu124-sm80 would serve GPU 0 NVIDIA A100-SXM4-80GB (sm_80): build it with --archs 80 --cuda system:12.4 and "
        "that toolkit installed (README: Drivers older than 580), or update the driver to >= 580 for the CUDA 13 "
        "flavours; or pass --allow-cpu to install the cpu flavour")


def test_a100_on_535_gets_the_cuda12_flavour(tmp_path: Path) -> None:
    choice = pick(tmp_path, [*ALL, "cu124-sm80", "cu128-sm86-89-120"], a100_535())
    assert choice.flavour == "cu124-sm80" and choice.version == "0.3.36+cu124.sm80" and not choice.jit
    assert choice.lines == ["GPU 0 NVIDIA A100-SXM4-80GB (sm_80): native (sm_80 cubin) in cu124-sm80"]
    cu128 = next(c for c in choice.candidates if c.flavour == "cu128-sm86-89-120")
    assert cu128.reject == ("needs a driver for CUDA >= 12.4 (Linux >= 550.54.14, Windows >= 551.61); "
                            "this driver supports CUDA 12.2")  # 12.8's compressed fatbins


def test_a100_on_a_580_driver_is_told_to_build_sm80(tmp_path: Path) -> None:
    machine = selector.override(a100_535(), None, "13.0")
    with pytest.raises(selector.SelectError) as err:
        pick(tmp_path, ALL, machine)
    assert "sm_86 cubin" not in err.value.message and "none of which runs on sm_80" in err.value.message
    assert err.value.remedy.startswith("cu130-sm80 would serve GPU 0 NVIDIA A100-SXM4-80GB (sm_80): "
                                       "build it with --archs 80 (CUDA 13, the default toolkit)")


def test_t4_on_550_gets_its_cuda12_flavour_or_a_refusal_naming_it(tmp_path: Path) -> None:
    with pytest.raises(selector.SelectError) as err:
        pick(tmp_path, [*ALL, "cu124-sm80"], t4_550())
    assert "cu124-sm80: holds sm_80, compute_80, none of which runs on sm_75" in err.value.message
    assert err.value.remedy.startswith("cu124-sm75 would serve GPU 0 Tesla T4 (sm_75)")
    choice = pick(tmp_path / "2", [*ALL, "cu124-sm75"], t4_550())
    assert choice.flavour == "cu124-sm75"


def test_550_driver_runs_cuda_12_8_and_580_prefers_cuda_13(tmp_path: Path) -> None:
    machine = selector.override(t4_550(), "8.9", None)  # an RTX 4090 / L4 on the same 550 driver
    choice = pick(tmp_path, [*ALL, "cu128-sm86-89-120"], machine)
    assert choice.flavour == "cu128-sm86-89-120"
    newer = selector.override(machine, None, "13.0")
    assert pick(tmp_path / "2", [*ALL, "cu128-sm86-89-120"], newer).flavour == "cu130-sm86-89-120"


def test_command_line_exit_code_and_allow_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index(tmp_path, ALL)
    root = str(tmp_path / "wheelhouse" / "index")
    assert selector.main(["--index", root, "--gpus", "8.0", "--driver-cuda", "13.0"]) == selector.SELECT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("error: no GPU flavour") and "cu130-sm80 would serve" in err and "--allow-cpu" in err
    assert selector.main(["--index", root, "--gpus", "8.0", "--driver-cuda", "13.0", "--allow-cpu"]) == 0
    assert "llama-cpp-python==0.3.36+cpu" in capsys.readouterr().out


def test_cuda12_suggestions_agree_with_the_compat_tables() -> None:
    from llama_wheels.compat import ARCH_SUPPORT, DRIVER_TABLE, arch_floor, min_driver, supports

    for cc, support in ARCH_SUPPORT.items():
        if supports(support, (12, 9)) and support.first < (13, 0):
            assert support.first <= selector.CUDA12_BLACKWELL.get(cc, selector.CUDA12_TOOLKIT), cc
    for cc, cuda in selector.CUDA12_BLACKWELL.items():
        assert ARCH_SUPPORT[cc].first == cuda and min_driver(cuda, "size").cuda == (12, 4)
    assert min_driver(selector.CUDA12_TOOLKIT, None) == DRIVER_TABLE[1]  # 12.0's driver: any 12.x runs it
    assert arch_floor((13, 0)) == selector.CUDA13_FLOOR and arch_floor((12, 0)) == selector.CUDA12_FLOOR
    assert [n for n, s in ARCH_SUPPORT.items() if supports(s, (13, 0)) and not supports(s, (12, 9))] == \
        list(selector.CUDA13_ONLY)


@pytest.mark.parametrize(("cc", "driver", "flavour", "fragment"), [
    (80, (13, 0), "cu130-sm80", "--archs 80 (CUDA 13"),
    (80, None, "cu130-sm80", "--archs 80 (CUDA 13"),
    (61, (13, 0), "cu124-sm61", "--cuda system:12.4"),  # CUDA 13 dropped Pascal; a cu124 wheel runs on 580
    (120, (12, 8), "cu128-sm120", "--cuda system:12.8"),
    (121, (12, 9), "cu129-sm121", "--cuda system:12.9"),
    (120, (12, 2), "", "too old for any flavour"),
    (110, (12, 8), "", "needs a CUDA 13 flavour"),
    (37, (13, 0), "", "CUDA 11.8 was the last"),
    (75, (11, 4), "", "too old for any flavour"),
])
def test_the_flavour_that_would_serve(cc: int, driver: tuple[int, int] | None, flavour: str, fragment: str) -> None:
    machine = selector.Machine((selector.Gpu(0, "x", cc),), "", driver)
    name, how = selector.serving_flavour(machine.gpus[0], machine)
    assert name == flavour and fragment in how
