"""hosttools on this machine's real PATH: the tools it has are used (their --version is run)."""

from __future__ import annotations

import pytest

from llama_wheels import hosttools


def test_host_tools_are_used_when_present() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    if hosttools.cmd.which("cmake", env) is None or hosttools.cmd.which("ninja", env) is None:
        pytest.skip("this host has no cmake/ninja in /usr/bin")
    assert hosttools.pypi_requirements(env) == []
