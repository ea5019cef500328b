"""`nox -s serve`: the last step by hand with the CPU wheel of the shared fixture, a real server, real HTTP."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from .conftest import ROOT, free_port


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line)
        q.put("")  # EOF

    threading.Thread(target=pump, daemon=True).start()
    return q


def _wait_for(q: queue.Queue[str], needle: str, timeout: float, seen: list[str]) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = q.get(timeout=1)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return line
        assert line, "serve exited early:\n" + "".join(seen[-30:])
    raise AssertionError(f"no '{needle}' within {timeout} s:\n" + "".join(seen[-30:]))


def _port_free(port: int) -> bool:
    """Nothing listens there any more (a connect is refused; TIME_WAIT left by our own requests is fine)."""
    with socket.socket() as s:
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_serve_as_the_readme_says_answers_docs_and_a_completion_and_stops_on_ctrl_c(
        cpu_build: Path, lw_env: dict[str, str], work: Path) -> None:
    """The README's line, run as a user runs it: `scripts/run nox -s serve -- --model <gguf>` from the checkout,
    so serve runs in the .tools Python (which has no gguf: issue 24), then /docs, a completion and Ctrl-C."""
    from llama_wheels.model import cached_model

    model = cached_model(work / "model-cache")
    port = free_port()
    env = {k: v for k, v in lw_env.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != str(Path(sys.executable).parent))
    proc = subprocess.Popen(["scripts/run", "nox", "-s", "serve", "--", "--model", str(model), "--flavour", "cpu",
                             "--port", str(port), "--n-gpu-layers", "0"], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            # as from a terminal: a run started in the background (`cmd &`) inherits SIGINT
                            # ignored, and Python then keeps ignoring Ctrl-C
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen: list[str] = []
    try:
        q = _lines(proc)
        line = _wait_for(q, "API docs: ", 900, seen)
        url = line.split("API docs: ", 1)[1].split()[0]
        assert url == f"http://127.0.0.1:{port}/docs"
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200 and b"swagger" in resp.read().lower()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", method="POST",
                                     data=json.dumps({"prompt": "Hello", "max_tokens": 4}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            body = json.loads(resp.read())
        assert body["object"] == "text_completion" and body["usage"]["completion_tokens"] >= 1, body
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole foreground group
        proc.wait(timeout=60)
        _wait_for(q, "server stopped", 10, seen)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    text = "".join(seen)
    assert "Traceback" not in text and "ModuleNotFoundError" not in text, text[-3000:]
    deadline = time.monotonic() + 10
    while not _port_free(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _port_free(port), "the server still listens after Ctrl-C"


def test_serve_needs_a_real_model(lw_env: dict[str, str], tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "llama_wheels", "serve", "--model", str(tmp_path / "nope.gguf")],
                         env={**lw_env, "LLAMA_WHEELS_PROG": "nox -s serve --"}, cwd=ROOT, text=True,
                         capture_output=True, check=False)
    assert res.returncode == 2 and "nope.gguf does not exist" in res.stderr + res.stdout
    assert "Traceback" not in res.stderr


def test_build_ends_with_estimate_vs_actual_and_the_pip_line(cpu_build: Path, work: Path) -> None:
    log = (work / "build_cpu.log").read_text()
    tail = log[log.index("build summary"):]
    # the plan named the wheel before it existed (its platform tag is settled by auditwheel after the build)
    assert "cost:" in log and f"cpu: {cpu_build.name.split('-py3-none-')[0]}-py3-none-" in log
    assert "cpu: estimate ~" in tail and ", actual " in tail
    line = next(ln for ln in tail.splitlines() if "install it: " in ln)
    assert f'pip install --no-index --find-links {cpu_build.parent} "llama-cpp-python[server]==' in line
