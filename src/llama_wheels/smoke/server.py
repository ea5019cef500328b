"""The OpenAI-compatible server as it is started by hand (``python -m llama_cpp.server``), on a free loopback
port: start, wait until ready, the five HTTP checks (streaming included), and always stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from llama_wheels import cmd
from llama_wheels.errors import SmokeFailed
from llama_wheels.smoke.report import Check, Status

PROMPT = "Hello, the capital of France is"


def http(method: str, url: str, body: Mapping[str, Any] | None = None, timeout: float = 60) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    """``python -m llama_cpp.server`` as started by hand, on a loopback port; always stopped."""

    def __init__(self, venv_python: str, model: Path, port: int, n_gpu_layers: int, log_path: Path,
                 env: Mapping[str, str], extra: tuple[str, ...] = ()) -> None:
        self.args = [venv_python, "-m", "llama_cpp.server", "--model", str(model), "--n_gpu_layers", str(n_gpu_layers),
                     "--main_gpu", "0", "--chat_format", "chatml", "--host", "127.0.0.1", "--port", str(port),
                     "--n_ctx", "256", *extra]
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.proc = cmd.start(self.args, env=self.env, log=self.log_path)
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise SmokeFailed(f"the server exited with code {self.proc.returncode} before it was ready: "
                                  + " | ".join(tail), f"see {self.log_path}")
            try:
                status, _ = http("GET", self.base + "/v1/models", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise SmokeFailed(f"the server was not ready within {timeout:.0f} s", f"see {self.log_path}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except (ProcessLookupError, AttributeError):
                self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)

    @property
    def stopped(self) -> bool:
        return self.proc is None or self.proc.poll() is not None


def server_checks(srv: Server) -> list[Check]:
    out: list[Check] = []

    def timed(name: str, fn: Callable[[], tuple[Status, str]]) -> None:
        t0 = time.monotonic()
        try:
            status, detail = fn()
        except (OSError, ValueError, KeyError) as exc:
            status, detail = "fail", f"{type(exc).__name__}: {exc}"
        out.append(Check(name, status, detail, time.monotonic() - t0))

    def models() -> tuple[Status, str]:
        code, body = http("GET", srv.base + "/v1/models")
        ids = [m["id"] for m in json.loads(body)["data"]] if code == 200 else []
        return ("pass", f"200, models: {', '.join(ids)}") if ids else ("fail", f"HTTP {code}: {body[:200]!r}")

    def completions() -> tuple[Status, str]:
        code, body = http("POST", srv.base + "/v1/completions", {"prompt": PROMPT, "max_tokens": 8, "temperature": 0})
        if code != 200:
            return "fail", f"HTTP {code}: {body[:200]!r}"
        data = json.loads(body)
        n = data["usage"]["completion_tokens"]
        return ("pass" if n > 0 else "fail"), f"200, {n} tokens: {data['choices'][0]['text']!r}"

    def chat() -> tuple[Status, str]:
        msg = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8, "temperature": 0}
        code, body = http("POST", srv.base + "/v1/chat/completions", msg)
        if code != 200:
            return "fail", f"HTTP {code}: {body[:200]!r}"
        data = json.loads(body)
        return "pass", f"200, {data['usage']['completion_tokens']} tokens, role {data['choices'][0]['message']['role']}"

    def stream() -> tuple[Status, str]:
        msg = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8, "temperature": 0, "stream": True}
        code, body = http("POST", srv.base + "/v1/chat/completions", msg)
        events = [ln[5:].strip() for ln in body.decode("utf-8", "replace").splitlines() if ln.startswith("data:")]
        chunks = [json.loads(e) for e in events if e and e != "[DONE]"]
        if code != 200 or not chunks or events[-1] != "[DONE]":
            return "fail", f"HTTP {code}, {len(chunks)} chunks, last event {events[-1] if events else None!r}"
        return "pass", f"200, {len(chunks)} SSE chunks ending in [DONE]"

    def docs() -> tuple[Status, str]:
        code, body = http("GET", srv.base + "/docs")
        ok = code == 200 and b"swagger" in body.lower()
        return ("pass" if ok else "fail"), f"HTTP {code}" + (", Swagger UI" if ok else "")

    for name, fn in (("server GET /v1/models", models), ("server POST /v1/completions", completions),
                     ("server POST /v1/chat/completions", chat), ("server chat streaming", stream),
                     ("server GET /docs", docs)):
        timed(name, fn)
    return out


def split_args(n_gpus: int) -> tuple[str, ...]:
    """Server flags that spread the model over ``n_gpus`` cards by layer (none for one card)."""
    if n_gpus < 2:
        return ()
    return ("--split_mode", "1", "--tensor_split", *(["1"] * n_gpus))


def smoke_server(venv_python: str, model: Path, *, port: int, asked: bool, n_gpu_layers: int, n_gpus: int,
                 log_path: Path, env: Mapping[str, str]) -> list[Check]:
    """Start the server, run the HTTP checks, stop it, and check that it is gone and the port is free.
    ``asked``: the user chose the port (a busy one is then a failure, not a reason to pick another)."""
    from llama_wheels.net import port_in_use

    t0 = time.monotonic()
    if asked and port_in_use(port):
        return [Check("server start", "fail", f"port {port} is already in use; pass another --port or omit it")]
    srv = Server(venv_python, model, port, n_gpu_layers, log_path, env, split_args(n_gpus))
    out: list[Check] = []
    try:
        with srv:
            srv.wait_ready()
            out.append(Check("server start", "pass", f"ready on {srv.base} in {time.monotonic() - t0:.1f}s"
                             + (f", {' '.join(split_args(n_gpus))}" if n_gpus > 1 else ""), time.monotonic() - t0))
            out += server_checks(srv)
    except SmokeFailed as exc:
        out.append(Check("server start", "fail", exc.one_line(), time.monotonic() - t0))
    t1 = time.monotonic()
    gone = srv.stopped and not port_in_use(port)
    out.append(Check("server stopped", "pass" if gone else "fail",
                     f"process {srv.proc.pid if srv.proc else '-'} gone, port {port} free", time.monotonic() - t1))
    return out
