"""hosttools on this machine's real PATH: the tools it has are used (their --version is run)."""

from __future__ import annotations

import re
import subprocess

import pytest

from llama_wheels import hosttools


def test_host_tools_are_used_when_present() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    cmake = hosttools.cmd.which("cmake", env)
    if cmake is None or hosttools.cmd.which("ninja", env) is None:
        pytest.skip("this host has no cmake/ninja in /usr/bin")
    out = subprocess.run([cmake, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+)\.(\d+)", out)
    assert m, out
    version = (int(m[1]), int(m[2]))
    expected = [] if version >= hosttools.CACHE_CMAKE else [hosttools.CMAKE_WHEEL]  # Debian 12: 3.25 -> the wheel
    assert hosttools.pypi_requirements(env) == expected
    assert hosttools.pypi_requirements(env, offline=True) == ([] if version >= hosttools.MIN_CMAKE
                                                              else [hosttools.CMAKE_WHEEL])
