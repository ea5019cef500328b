"""cmd.run and cmd.start with real programs (this Python): capture, streaming, failure tail, timeout, signals."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from llama_wheels import cmd
from llama_wheels.errors import CommandFailed

PY = sys.executable


def script(body: str) -> list[str]:
    return [PY, "-c", f"import os, signal, sys, time\n{body}"]


def test_capture_keeps_stdout_and_stderr_apart(capsys: pytest.CaptureFixture[str]) -> None:
    res = cmd.run(script('print("[not json"); print("{\\"a\\": 1}"); sys.stderr.write("warn {x}\\n")'),
                  capture=True, quiet=True)
    assert (res.returncode, res.stdout, res.stderr) == (0, '[not json\n{"a": 1}\n', "warn {x}\n")
    assert capsys.readouterr().err == ""  # quiet: neither echo nor stderr
    cmd.run(script('sys.stderr.write("note\\n")'), capture=True)
    err = capsys.readouterr().err
    assert err.startswith(f"+ {PY} -c ") and err.endswith("note\n")


def test_failure_names_the_exit_code_and_ends_with_the_last_lines() -> None:
    body = 'print("out"); [sys.stderr.write(f"line {i}\\n") for i in range(30)]; sys.exit(3)'
    with pytest.raises(CommandFailed) as exc:
        cmd.run(script(body), capture=True, quiet=True)
    first, *tail = exc.value.message.splitlines()
    assert first.startswith(f"{Path(PY).name} failed (exit code 3): {PY} -c ")
    assert tail[-15:] == [f"line {i}" for i in range(15, 30)] and "out" not in tail
    assert exc.value.return_code == 7 and exc.value.remedy == "read the output above for the first error"
    assert cmd.run(script("sys.exit(3)"), capture=True, check=False, quiet=True).returncode == 3


def test_streamed_output_goes_to_stdout_and_the_log(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "build.log"
    res = cmd.run(script('print("compiling a"); sys.stderr.write("warning b\\n"); print("done")'), log=log)
    out = capfd.readouterr().out
    assert "compiling a" in out and "warning b" in out and "done" in out
    assert sorted(log.read_text().splitlines()) == ["compiling a", "done", "warning b"]
    assert res.stderr == "" and res.stdout.endswith("done\n")


def test_timeout_is_a_command_failure() -> None:
    with pytest.raises(CommandFailed, match=r"timed out after 1 s"):
        cmd.run(script("time.sleep(30)"), capture=True, quiet=True, timeout=1)
    with pytest.raises(CommandFailed, match=r"timed out after 1 s"):
        cmd.run(script("time.sleep(30)"), quiet=True, timeout=1)


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_killed_by_a_signal_says_which() -> None:
    with pytest.raises(CommandFailed, match=r"failed \(killed by signal 9\)"):
        cmd.run(script("os.kill(os.getpid(), signal.SIGKILL)"), capture=True, quiet=True)
    with pytest.raises(CommandFailed, match=r"killed by signal 15"):
        cmd.run(script("os.kill(os.getpid(), signal.SIGTERM)"), quiet=True)


def test_start_runs_a_helper_in_its_own_session(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    proc = cmd.start(script('print(os.getsid(0) == os.getpid(), flush=True); time.sleep(30)'), log=log, quiet=True)
    try:
        deadline = time.monotonic() + 10
        while not log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.read_text().strip() == "True" and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
