"""A real build farm on loopback: an sccache-dist scheduler and two build servers (bubblewrap
sandboxes, as root), and a cold CPU build of the pinned sdist whose compiles run on them. The wheel
matches a local build (same files, same exported ELF symbols) and passes the smoke. Then the farm goes
away: the build warns and compiles locally; with --require-dist it is a one-line error."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from llama_wheels import farm

from .conftest import lw


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"sccache-dist exited: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port}: {log.read_text()[-2000:]}")


class Farm:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env, self.procs = root, env, {}  # type: ignore[var-annotated]
        self.sched_port = _port()
        self.url = f"http://127.0.0.1:{self.sched_port}"
        self.servers: list[str] = []

    def start(self, name: str, argv: list[str], port: int) -> None:
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, env={**self.env, "SCCACHE_NO_DAEMON": "1"}, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        _wait_port(port, proc, log)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def running_farm(tmp_path_factory: pytest.TempPathFactory, lw_env: dict[str, str]) -> Iterator[Farm]:
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("sccache-dist build servers need Linux and root (overlay sandboxes)")
    if not shutil.which("bwrap"):
        pytest.fail("bubblewrap is missing: apt-get install bubblewrap (nox -s tests installs it as root)")
    root = tmp_path_factory.mktemp("farm")
    env = {**lw_env, farm.TOKEN_ENV: secrets.token_hex(32), farm.SERVER_TOKEN_ENV: secrets.token_hex(32)}
    f = Farm(root, env)
    argv, _ = farm.scheduler_plan(root / "scheduler", env, f"127.0.0.1:{f.sched_port}")
    f.start("scheduler", argv, f.sched_port)
    for name in ("server-a", "server-b"):
        port = _port()
        argv, _ = farm.server_plan(root / name, env, f.url, f"127.0.0.1:{port}", name)
        f.start(name, argv, port)
        f.servers.append(f"127.0.0.1:{port}")
    yield f
    for name in list(f.procs):
        f.stop(name)


def _farm_env(f: Farm, work: Path) -> dict[str, str]:
    return {**f.env, "LLAMA_WHEELS_BUILD_DIR": str(work / "build"), "LLAMA_WHEELS_WHEELHOUSE": str(work / "wheelhouse"),
            "LLAMA_WHEELS_CACHE_BACKEND": "sccache", "LLAMA_WHEELS_CACHE_DIST_SCHEDULER": f.url,
            "LLAMA_WHEELS_CACHE_LOCAL_DIR": str(f.root / "sccache-local")}  # cold: every compile is new


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


def test_cold_cpu_build_on_the_farm(running_farm: Farm, cpu_build: Path,
                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    work = tmp_path_factory.mktemp("farm-build")
    env = _farm_env(running_farm, work)
    res = lw("build", "--cpu", "--require-dist", env=env)
    (work / "build.log").write_text(res.stdout)
    assert res.returncode == 0, res.stdout[-4000:]
    assert f"build farm: {running_farm.url}/: 2 build server(s)" in res.stdout
    assert "parallel compile jobs (local cores + farm cores; --jobs sets them)" in res.stdout
    entry = next(iter(json.loads((work / "wheelhouse" / "manifest.json").read_text())["wheels"].values()))
    per_server = entry["cache"]["farm_compiles"]
    assert sorted(per_server) == sorted(running_farm.servers), per_server  # both servers compiled
    assert all(n > 0 for n in per_server.values()) and entry["cache"]["farm_errors"] == 0
    assert "compiled on the farm" in res.stdout
    (wheel,) = (work / "wheelhouse" / "cpu").glob("llama_cpp_python-*.whl")
    with zipfile.ZipFile(wheel) as a, zipfile.ZipFile(cpu_build) as b:
        assert sorted(a.namelist()) == sorted(b.namelist())  # same files as the local build
    assert _exported(wheel) == _exported(cpu_build)  # and the same exported symbols in every library
    smoke = lw("smoke", "--wheel", str(wheel), env=env)
    assert smoke.returncode == 0, smoke.stdout[-3000:]


def test_farm_down_compiles_locally_or_fails_with_require(running_farm: Farm,
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    running_farm.stop("scheduler")
    work = tmp_path_factory.mktemp("farm-down")
    env = _farm_env(running_farm, work)
    res = lw("build", "--cpu", "--require-dist", env=env)
    assert res.returncode == 4 and "the build farm is not usable" in res.stdout, res.stdout[-3000:]
    assert "Traceback" not in res.stdout and not (work / "wheelhouse").exists()
    res = lw("build", "--cpu", "--variant", "default", env=env)  # the local sccache dir is warm from the farm build
    assert res.returncode == 0, res.stdout[-3000:]
    assert "warning: the build farm is not usable" in res.stdout and "compiling locally" in res.stdout
