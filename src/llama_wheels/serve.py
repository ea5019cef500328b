"""The hand procedure's last step with the built wheel: ``nox -s serve -- --model GGUF``.

A fresh venv, the wheel (with ``[server]``) installed from the wheelhouse alone, then
``python -m llama_cpp.server --model M --n_gpu_layers N --main_gpu 0 --host H --port P`` in the
foreground. Once it answers, the URL of its ``/docs`` is printed; Ctrl-C (or SIGTERM) stops the
server and its process group and exits 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_wheels import cmd
from llama_wheels.config import Options, not_blank, port_number
from llama_wheels.errors import ConfigError, SmokeFailed
from llama_wheels.log import Logger

SERVER_EXTRA = "server"


def server_command(venv_python: str, model: Path, *, host: str, port: int, n_gpu_layers: int,
                   extra: tuple[str, ...] = ()) -> list[str]:
    """The hand procedure's server line (``--n_gpu_layers -1``: every layer on the GPU)."""
    return [venv_python, "-m", "llama_cpp.server", "--model", str(model), "--n_gpu_layers", str(n_gpu_layers),
            "--main_gpu", "0", "--host", host, "--port", str(port), *extra]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status) == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_ready(proc: subprocess.Popen[bytes], base: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise SmokeFailed(f"the server exited with code {proc.returncode} before it answered: "
                              + " | ".join(tail), f"see {log_path}")
        if _answers(base + "/v1/models"):
            return
        time.sleep(0.3)
    raise SmokeFailed(f"the server did not answer within {timeout:.0f} s", f"see {log_path}")


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM the server's process group, SIGKILL after 15 s; its exit code."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, AttributeError):
            proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
    return int(proc.returncode)


def install_wheel(wheel: Path, entry: Mapping[str, Any], venv_dir: Path, python: str, owner: Path,
                  env: Mapping[str, str], log: Logger) -> str:
    """A fresh venv with the wheel and its [server] extra, from the wheel's folder alone."""
    from llama_wheels.smoke.wheelenv import make_venv

    version = entry.get("version") or wheel.name.split("-")[1]
    req = f"llama-cpp-python[{SERVER_EXTRA}]=={version}"
    with log.step(f"fresh venv + {req} from {wheel.parent}"):
        venv_py = make_venv(venv_dir, python, owner)
        cmd.run([venv_py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
                 "--find-links", str(wheel.parent), req], env=env)
    return venv_py


@dataclass(frozen=True)
class ServeRequest:
    model: Path  # the GGUF file to serve
    wheel: str | None = None
    flavour: str | None = None  # needed when several flavours are built
    port: int | None = None  # None: a free one
    host: str = "127.0.0.1"
    n_gpu_layers: int = -1
    server_args: tuple[str, ...] = ()  # more arguments for llama_cpp.server
    ready_timeout: float = 300


def request_from_args(args: argparse.Namespace) -> ServeRequest:
    return ServeRequest(model=Path(args.model).expanduser(), wheel=args.wheel, flavour=args.flavour, port=args.port,
                        host=args.host, n_gpu_layers=args.n_gpu_layers, server_args=tuple(args.server_arg or ()),
                        ready_timeout=args.ready_timeout)


def run(options: Options, args: ServeRequest, env: Mapping[str, str], log: Logger) -> None:
    """Install the chosen wheel with [server] into a fresh venv and serve ``args.model`` until Ctrl-C
    (or SIGTERM); SmokeFailed if the server exits by itself."""
    from llama_wheels.clean import owned_subdir
    from llama_wheels.detect import find_pythons
    from llama_wheels.model import validate
    from llama_wheels.net import free_port, port_in_use
    from llama_wheels.smoke.targets import select_wheels

    model = args.model
    if not model.is_file():
        raise ConfigError(f"model {model} does not exist", "pass the path of a .gguf file: --model PATH")
    validate(model)
    targets = select_wheels(options.wheelhouse, args.wheel, args.flavour)
    if len(targets) > 1:
        raise ConfigError(f"{len(targets)} flavours are built: {', '.join(sorted(w.parent.name for w, _ in targets))}",
                          "choose one with --flavour NAME")
    wheel, entry = targets[0]
    if args.port and port_in_use(args.port):
        raise ConfigError(f"port {args.port} is already in use", "pass another --port, or omit it for a free one")
    port = args.port or free_port()
    python = find_pythons([options.python], env, os.name == "nt").get(options.python) or sys.executable
    work = owned_subdir(options.build_dir, "serve")
    run_env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LLAMA_WHEELS_PROG")}
    venv_py = install_wheel(wheel, entry, work / f"venv-{wheel.parent.name}", python, options.build_dir, run_env, log)
    argv = server_command(venv_py, model, host=args.host, port=port, n_gpu_layers=args.n_gpu_layers,
                          extra=args.server_args)
    log_path = work / f"server-{wheel.parent.name}.log"
    base = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{port}"
    log.info(f"server log: {log_path}")
    proc = cmd.start(argv, env=run_env, log=log_path)
    stopping: list[int] = []

    def on_term(signum: int, _frame: object) -> None:
        stopping.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        wait_ready(proc, base, log_path, args.ready_timeout)
        log.info(f"{wheel.name} is serving {model.name}")
        log.info(f"API docs: {base}/docs   (OpenAI-compatible API at {base}/v1; Ctrl-C stops it)")
        while proc.poll() is None:
            time.sleep(0.5)
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise SmokeFailed(f"the server exited with code {proc.returncode}: " + " | ".join(tail), f"see {log_path}")
    except KeyboardInterrupt:
        code = stop(proc)
        log.info(f"server stopped (exit code {code})")
    finally:
        stop(proc)
        signal.signal(signal.SIGTERM, previous)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The subcommand's arguments; the caller sets its handler."""
    s: argparse.ArgumentParser
    s = sub.add_parser("serve", help="serve a GGUF model with a built wheel (the last step by hand)",
                       description="A fresh venv with the wheel and [server] from the wheelhouse, then "
                                   "python -m llama_cpp.server on your model; prints the URL of /docs; Ctrl-C "
                                   "stops it.")
    s.add_argument("--model", required=True, metavar="GGUF", type=not_blank("the path of a .gguf file"),
                   help="the model file to serve")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--flavour", type=not_blank("a flavour name, e.g. cu130-sm90"),
                   help="which built flavour, e.g. cu130-sm86-89-120 (needed when several are built)")
    g.add_argument("--wheel", type=not_blank("the path of a .whl file"),
                   help="one wheel file (its folder must hold its dependency wheels)")
    s.add_argument("--port", type=port_number, help="port, 1-65535 (default, or 0: a free one)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for all)")
    s.add_argument("--n-gpu-layers", type=int, default=-1, metavar="N",
                   help="layers to put on the GPU (default: -1, all; 0 keeps the weights on the CPU)")
    s.add_argument("--server-arg", action="append", metavar="ARG",
                   help="one more argument for llama_cpp.server, e.g. --server-arg=--n_ctx=4096 (repeatable)")
    s.add_argument("--ready-timeout", type=float, default=300, metavar="S",
                   help="seconds to wait for the model to load (default: 300)")
    s.add_argument("--offline", action="store_true", help="accepted for symmetry; it installs from local folders only")
    return s
