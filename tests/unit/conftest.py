"""Unit tests: no network, no compiler, no subprocess, no socket.

The autouse guard :func:`hermetic` makes any attempt to start a process (subprocess, os.system,
posix_spawn, fork) or to use the network (connect, bind, a DNS lookup) fail the test: the call
raises :class:`HermeticityError`, and even if the code under test swallows that, the test fails
at teardown. What would spawn a tool here is given recorded facts instead (see ``facts``); real
tools are for tests/integration.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from llama_wheels import config
from llama_wheels.detect import Facts, Gpu


class HermeticityError(AssertionError):
    """A unit test tried to start a process or open a network connection."""


def _guard(monkeypatch: pytest.MonkeyPatch, seen: list[str]) -> None:
    def refuse(what: str, shown: int) -> Any:
        def raiser(*args: object, **_kwargs: object) -> Any:
            detail = f"{what}({args[shown] if len(args) > shown else ''!r})"
            seen.append(detail)
            raise HermeticityError(f"a unit test tried {detail}; inject facts, or move the test to tests/integration")

        return raiser

    # Methods get self first: show the argument after it (the argv, the address).
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("subprocess.Popen", 1))
    for name in ("system", "posix_spawn", "posix_spawnp", "fork", "forkpty", "execv", "execve", "execvp", "execvpe"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse(f"os.{name}", 0))
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, refuse(f"socket.{name}", 1))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo", 0))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Fail the test if it started a process or touched the network, even if the code under test
    caught the HermeticityError (a test that already failed on it is not failed twice)."""
    seen: list[str] = []
    _guard(monkeypatch, seen)
    yield seen
    if seen and not request.node.stash.get(_CALL_FAILED, False):
        pytest.fail(f"not hermetic: {', '.join(seen)}", pytrace=False)


@pytest.fixture
def project(tmp_path: Path):
    """A project folder with a pyproject.toml holding the given [tool.llama-wheels] body."""

    def make(body: str = "") -> Path:
        (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.llama-wheels]\n' + body)
        return tmp_path

    return make


@pytest.fixture
def options(project):
    def make(body: str = "", env: dict[str, str] | None = None, cli: dict[str, object] | None = None):
        return config.resolve(project(body), env or {}, cli)

    return make


def build_host_facts(*, python: str = "3.11", gpus: list[Gpu] | None = None) -> Facts:
    """A Linux build host as ``detect.gather`` reports it (values from this project's CPU machine:
    gcc 13, cmake 3.28, ninja 1.11, no system CUDA toolkit, no driver). Unit tests inject these
    instead of probing the machine they happen to run on."""
    return Facts(
        os="Linux 6.8.0", machine="x86_64", python="3.11.7",
        pythons={python: f"/usr/bin/python{python}"},
        compiler={"kind": "gcc", "path": "/usr/bin/g++", "version": "13.3.0"},
        toolkits=[], driver="", driver_cuda=None, gpus=gpus or [],
        tools={"cmake": "3.28.3", "ninja": "1.11.1", "git": "2.43.0", "ccache": "", "sccache": "", "cargo": ""},
        disk_free_bytes=100 * 1024**3, disk_path="/tmp/build", libcuda="",
    )


@pytest.fixture
def facts() -> Facts:
    return build_host_facts()


