"""Run one check of ``_probe.py`` inside the wheel's venv, in its own process (a crash stays there)."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_wheels import cmd

PROBE = Path(__file__).resolve().parent.parent / "_probe.py"


@dataclass(frozen=True)
class ProbeRun:
    result: dict[str, Any] | None  # the ``RESULT`` line, None when the check failed
    output: str  # everything the process printed (llama.cpp's loader log included)
    summary: str  # on failure: how it ended and the last lines

    @property
    def ok(self) -> bool:
        return self.result is not None


def run_probe(venv_python: str, check: str, args: Mapping[str, Any], env: Mapping[str, str],
              timeout: float = 600) -> ProbeRun:
    res = cmd.run([venv_python, str(PROBE), check, json.dumps(dict(args))], env=env, capture=True, check=False,
                  quiet=True, timeout=timeout)
    line = next((ln for ln in reversed(res.stdout.splitlines()) if ln.startswith("RESULT ")), None)
    output = res.stdout + res.stderr  # the probe's lines on stdout; llama.cpp's log (offload counts, aborts) on stderr
    if res.returncode == 0 and line is not None:
        return ProbeRun(json.loads(line[len("RESULT "):]), output, "")
    code = res.returncode
    why = f"crashed with {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    tail = " | ".join(output.strip().splitlines()[-3:])
    return ProbeRun(None, output, f"{why}: {tail}")


def probe(venv_python: str, check: str, args: Mapping[str, Any], env: Mapping[str, str],
          timeout: float = 600) -> tuple[dict[str, Any] | None, str]:
    """(result, full output) on success, (None, how it ended + last lines) on failure."""
    run = run_probe(venv_python, check, args, env, timeout)
    return (run.result, run.output) if run.ok else (None, run.summary)


def offloaded(output: str) -> tuple[int, int] | None:
    """``load_tensors: offloaded 5/5 layers to GPU`` -> (5, 5)."""
    m = re.search(r"offloaded (\d+)/(\d+) layers to GPU", output)
    return (int(m[1]), int(m[2])) if m else None
