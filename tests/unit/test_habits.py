"""The hand procedure's habits (CMAKE_ARGS, FORCE_CMAKE, several arch sets) and the plan's cost, through the real CLI.

The build host is injected (recorded facts, see conftest.build_host_facts): no g++/nvcc/cmake is spawned.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llama_wheels import cost, pipeline
from llama_wheels.archs import parse_arch_set
from llama_wheels.cli import main
from llama_wheels.cmakeargs import check_extra, from_environment
from llama_wheels.detect import Facts, ToolkitChoice
from llama_wheels.errors import ConfigError
from llama_wheels.plan import extra_hash, make_plan

from .conftest import build_host_facts

ROOT = Path(__file__).resolve().parents[2]
PYPI = ToolkitChoice("pypi", (13, 0), None, "NVIDIA's PyPI cuda-toolkit 13.0")


@pytest.fixture(autouse=True)
def host(monkeypatch: pytest.MonkeyPatch) -> Facts:
    facts = build_host_facts()
    monkeypatch.setattr(pipeline, "gather_facts", lambda options, env: facts)
    return facts


def dry_run(capsys: pytest.CaptureFixture[str], *argv: str, **env: str) -> tuple[int, str]:
    code = main(["build", "--cuda", "pypi:13.0", "--dry-run", *argv],
                env={"PATH": "/usr/bin:/bin:/usr/local/bin", "LLAMA_WHEELS_ROOT": str(ROOT), **env})
    return code, capsys.readouterr().err


def steps(err: str) -> list[str]:
    return re.findall(r"^step (\S+): llama-cpp-python (\S+)$", err, re.M)


def test_guide_cmake_args_archs_become_the_arch_set(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = dry_run(capsys, CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=86;89;120")
    assert code == 0, err
    assert [s[0] for s in steps(err)] == ["cu130-sm86-89-120"]  # GGML_CUDA=on is ours already: no hash
    assert "archs      86-real;89-real;89-virtual;120a-real  (from CMAKE_ARGS: CMAKE_CUDA_ARCHITECTURES=86;89;120)" \
        in err
    assert "note: CMAKE_ARGS: -DGGML_CUDA=on is already set by this CUDA build; dropped" in err


def test_cli_arch_flag_wins_over_cmake_args_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = dry_run(capsys, "--archs", "90", CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=86")
    assert code == 0, err
    assert [s[0] for s in steps(err)] == ["cu130-sm90"]
    assert "CMAKE_CUDA_ARCHITECTURES=86 ignored: --arch-set/--archs was given" in err


def test_other_cmake_args_pass_through_and_change_the_label(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = dry_run(capsys, "--archs", "90", CMAKE_ARGS="-DGGML_CUDA_FORCE_MMQ=ON")
    assert code == 0, err
    h = extra_hash(["-DGGML_CUDA_FORCE_MMQ=ON"])
    assert steps(err) == [(f"cu130-sm90-x{h}", f"0.3.36+cu130.sm90.x{h}")]
    assert re.search(r"CMAKE_ARGS=.*-DGGML_CUDA_FORCE_MMQ=ON", err)
    assert f"llama_cpp_python-0.3.36+cu130.sm90.x{h}-py3-none-" in err  # the wheel's filename in the cost block
    code, other = dry_run(capsys, "--archs", "90", CMAKE_ARGS="-DGGML_CUDA_FORCE_MMQ=OFF")
    assert steps(other)[0][0] != steps(err)[0][0]  # different flags, different filename


def test_extra_cmake_args_from_config_change_the_label(options) -> None:
    plain = make_plan(options(), arch_set=parse_arch_set("90"), toolkit=PYPI, variants=None, launcher=None)
    extra = make_plan(options('cmake-args = ["-DGGML_CUDA_F16=ON"]\n'), arch_set=parse_arch_set("90"),
                      toolkit=PYPI, variants=None, launcher=None)
    env = make_plan(options(env={"LLAMA_WHEELS_CMAKE_ARGS": "-DGGML_CUDA_F16=ON"}), arch_set=parse_arch_set("90"),
                    toolkit=PYPI, variants=None, launcher=None)
    assert plain[0].label == "cu130.sm90"
    assert extra[0].label == env[0].label == f"cu130.sm90.x{extra_hash(['-DGGML_CUDA_F16=ON'])}" != plain[0].label


@pytest.mark.parametrize(("cmake_args", "fragment"), [
    ("-DGGML_NATIVE=ON", "GGML_NATIVE=ON builds for this machine's CPU and GPUs only"),
    ("-DGGML_CUDA=off", "-DGGML_CUDA=off contradicts this CUDA build"),
    ("-DGGML_CCACHE=ON", "ggml's own ccache lookup"),
    ("-DCMAKE_CUDA_COMPILER_LAUNCHER=sccache", "the compiler cache is ours"),
    ("-DCMAKE_CUDA_COMPILER=/opt/cuda/bin/nvcc", "the toolkit is chosen with --cuda"),
    ("-G 'Visual Studio 17 2022'", "the generator is ours"),
])
def test_conflicting_cmake_args_are_refused(capsys: pytest.CaptureFixture[str], cmake_args: str,
                                            fragment: str) -> None:
    code, err = dry_run(capsys, "--archs", "90", CMAKE_ARGS=cmake_args)
    assert code == 2 and fragment in err, err
    assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1 and "Traceback" not in err
    assert "plan:" not in err  # refused before any plan


def test_cuda_flags_refused_in_a_cpu_build(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = dry_run(capsys, "--cpu", CMAKE_ARGS="-DGGML_CUDA=on")
    assert code == 2 and "contradicts this CPU build" in err and "nox -s build_cuda" in err
    code, err = dry_run(capsys, "--cpu", CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90")
    assert code == 2 and "this is a CPU build" in err


def test_configured_conflict_is_refused_too(options) -> None:
    with pytest.raises(ConfigError, match="GGML_NATIVE=ON"):
        make_plan(options('cmake-args = ["-DGGML_NATIVE=ON"]\n'), arch_set=None, toolkit=PYPI, variants=None,
                  launcher=None)


def test_force_cmake_and_ggml_cuda_env_get_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = dry_run(capsys, "--archs", "90", FORCE_CMAKE="1", GGML_CUDA="1")
    assert code == 0, err
    notes = [ln for ln in err.splitlines() if ln.startswith("note:")]
    assert any("FORCE_CMAKE=1 does nothing" in n for n in notes) and any("GGML_CUDA=1" in n for n in notes)
    assert steps(err)[0][0] == "cu130-sm90"  # nothing changes the build


def test_repeated_arch_sets_build_every_set_in_one_run(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = dry_run(capsys, "--arch-set", "hopper", "--archs", "86;89", "--arch-set", "90")
    assert code == 0, err
    assert [s[0] for s in steps(err)] == ["cu130-sm90", "cu130-sm86-89"]  # hopper = 90: asked twice, built once
    assert "plan: 2 compile(s) for 4 variant(s)" in err and "cu130-sm90 is asked for twice" in err


def test_check_extra_keeps_what_is_not_ours() -> None:
    kept, notes = check_extra(["-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF", "--log-level=VERBOSE"], cuda=True, where="x")
    assert kept == ["-DLLAMA_CURL=OFF", "--log-level=VERBOSE"] and len(notes) == 1


def test_from_environment_unbalanced_quotes() -> None:
    with pytest.raises(ConfigError, match="cannot be split"):
        from_environment({"CMAKE_ARGS": "-DX='a"}, cuda=True, arch_flag_given=False)


def test_cost_basis_seed_then_measured() -> None:
    seed = cost.basis({})
    assert seed.why.startswith("seed from BENCHMARKS.md") and seed.per_target_cpu_s == cost.SEED_PER_TARGET_CPU_S
    entries = {
        "cpu/a.whl": {"archs": None, "cpu_seconds": 600.0, "cache": {"hits": 0, "misses": 300}},
        "cu130-sm90/b.whl": {"archs": "90-real;90-virtual", "cpu_seconds": 3600.0, "cache": {"hits": 3, "misses": 320}},
        "cu130-sm89/c.whl": {"archs": "89-real", "cpu_seconds": 40.0, "cache": {"hits": 320, "misses": 2}},  # warm
    }
    b = cost.basis(entries)
    assert b.base_cpu_s == 600.0 and b.per_target_cpu_s == 1500.0 and b.why.startswith("measured: 1 cold CPU")
    (step,) = make_plan_for("86;89;120")
    est = cost.estimate(step, b, cores=2)
    assert est.cpu_seconds == 600 + 4 * 1500 and est.wall_seconds == pytest.approx(6600 / 1.8)


def test_cost_seed_matches_the_measured_cold_builds() -> None:
    """BENCHMARKS.md "Cold build times": universal 58m56s on 2 cores (the old seed said ~88 min), 11m05s on 16;
    cu130-sm90 33 min on 2 cores. The seed's estimates stay within 10% of each."""
    universal, = make_plan_for("86;89;120")
    sm90, = make_plan_for("90")
    for step, cores, measured in ((universal, 2, 58 * 60 + 56), (universal, 16, 11 * 60 + 5), (sm90, 2, 33 * 60)):
        est = cost.estimate(step, cost.basis({}, cores), cores)
        assert est.wall_seconds == pytest.approx(measured, rel=0.10), (step.flavour, cores, est.describe())


def make_plan_for(spec: str):
    from llama_wheels import config

    o = config.resolve(ROOT, {})
    return make_plan(o, arch_set=parse_arch_set(spec, o.arch_sets), toolkit=PYPI, variants=["default"],
                     launcher=None)


def test_plan_shows_cost(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = dry_run(capsys, "--archs", "90", LLAMA_WHEELS_CACHE_DIR=str(tmp_path))
    assert code == 0, err
    assert "sdist: 76.6 MB download" in err and "CUDA toolkit: ~870.0 MB from PyPI" in err
    assert re.search(r"compile ~\S+ \([\d,]+ CPU-s\) cold on \d+ core", err) and "basis: " in err


def test_usage_names_the_command_typed(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["build", "--bogus"], env={"PATH": "/usr/bin:/bin", "LLAMA_WHEELS_ROOT": str(ROOT),
                                           "LLAMA_WHEELS_PROG": "nox -s build_cuda --"})
    err = capsys.readouterr().err
    assert code == 2 and "nox -s build_cuda --: unrecognized arguments: --bogus" in err
    assert "see nox -s build_cuda -- --help" in err
    with pytest.raises(SystemExit):
        main(["build", "--help"], env={"LLAMA_WHEELS_PROG": "nox -s build_cuda --"})
    out = capsys.readouterr().out
    assert out.startswith("usage: nox -s build_cuda -- ")


def test_every_flag_has_help() -> None:
    import argparse

    from llama_wheels.cli import make_parser

    parser = make_parser({})
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, p in sub.choices.items()
               for a in p._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert missing == []
