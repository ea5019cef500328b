"""A real build farm on loopback: an sccache-dist scheduler and two build servers (bubblewrap
sandboxes, as root), and a cold CPU build of the pinned sdist whose compiles run on them (the session's
`sccache_cold_build`, which also fills the Redis that the sccache fleet tests read). The wheel matches a
local build (same files, same exported ELF symbols) and passes the smoke. Then the farm goes away: the
build warns and compiles locally; with --require-dist it is a one-line error."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from .conftest import SccacheColdBuild, farm_env, lw


def _exported(wheel: Path) -> dict[str, set[str]]:
    out = {}
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.endswith(".so"):
                with z.open(name) as fh:
                    elf = ELFFile(fh)
                    dynsym = elf.get_section_by_name(".dynsym")
                    out[name] = {s.name for s in dynsym.iter_symbols() if s.name and s["st_shndx"] != "SHN_UNDEF"}
    return out


def test_cold_cpu_build_on_the_farm(sccache_cold_build: SccacheColdBuild, cpu_build: Path) -> None:
    cold = sccache_cold_build
    if cold.farm is None:
        pytest.skip("sccache-dist build servers need Linux and root (overlay sandboxes)")
    res = cold.result
    assert res.returncode == 0, res.stdout[-4000:]
    assert f"build farm: {cold.farm.url}/: 2 build server(s)" in res.stdout
    assert "parallel compile jobs (local cores + farm cores; --jobs sets them)" in res.stdout
    entry = cold.entry()
    per_server = entry["cache"]["farm_compiles"]
    assert sorted(per_server) == sorted(cold.farm.servers), per_server  # both servers compiled
    assert all(n > 0 for n in per_server.values()) and entry["cache"]["farm_errors"] == 0
    assert "compiled on the farm" in res.stdout
    (wheel,) = (cold.work / "wheelhouse" / "cpu").glob("llama_cpp_python-*.whl")
    with zipfile.ZipFile(wheel) as a, zipfile.ZipFile(cpu_build) as b:
        assert sorted(a.namelist()) == sorted(b.namelist())  # same files as the local build
    assert _exported(wheel) == _exported(cpu_build)  # and the same exported symbols in every library
    smoke = lw("smoke", "--wheel", str(wheel), env=cold.env)
    assert smoke.returncode == 0, smoke.stdout[-3000:]


def test_farm_down_compiles_locally_or_fails_with_require(sccache_cold_build: SccacheColdBuild,
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    cold = sccache_cold_build
    if cold.farm is None:
        pytest.skip("sccache-dist build servers need Linux and root (overlay sandboxes)")
    cold.farm.stop("scheduler")
    work = tmp_path_factory.mktemp("farm-down")
    env = {**farm_env(cold.farm, work), "LLAMA_WHEELS_CACHE_REMOTE": cold.env["LLAMA_WHEELS_CACHE_REMOTE"]}
    res = lw("build", "--cpu", "--require-dist", env=env)
    assert res.returncode == 4 and "the build farm is not usable" in res.stdout, res.stdout[-3000:]
    assert "Traceback" not in res.stdout and not (work / "wheelhouse").exists()
    res = lw("build", "--cpu", "--variant", "default", env=env)  # the Redis is warm from the farm build
    assert res.returncode == 0, res.stdout[-3000:]
    assert "warning: the build farm is not usable" in res.stdout and "compiling locally" in res.stdout
