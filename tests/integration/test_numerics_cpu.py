"""The teacher-forced agreement check for real on the CPU wheel: two CPU runs that differ in threads and
micro-batch agree (KLD ~ 0, 100% top-1); the control (our model F32 vs Q4_0) reads far apart; and
native llama-perplexity, built from the same source and flags, gives the same KLD and top-1 as ours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llama_wheels import agreement, numerics
from llama_wheels.smoke.probe import PROBE

from .conftest import lw


@pytest.fixture(scope="module")
def venv_py(cpu_build: Path, work: Path) -> str:
    venv = work / "venv-numerics"
    subprocess.run([sys.executable, "-m", "virtualenv", "-q", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(cpu_build.parent),
                    str(cpu_build)], check=True)
    return py


def probe(venv_python: str, check: str, args: dict[str, Any], env: dict[str, str],
          timeout: float = 900) -> tuple[dict[str, Any] | None, str]:
    res = subprocess.run([venv_python, str(PROBE), check, json.dumps(args)], env=env, capture_output=True, text=True,
                         timeout=timeout, check=False)
    line = next((ln for ln in reversed(res.stdout.splitlines()) if ln.startswith("RESULT ")), None)
    return (json.loads(line[7:]) if line and res.returncode == 0 else None), res.stdout + res.stderr


@pytest.fixture(scope="module")
def teacher(venv_py: str, work: Path) -> agreement.TeacherForced:
    return agreement.TeacherForced(probe, venv_py, work / "numerics-runs", {"PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def embedded(work: Path) -> Path:
    from llama_wheels.model import cached_model

    return cached_model(work / "cache")


def test_two_cpu_runs_agree(teacher: agreement.TeacherForced, embedded: Path) -> None:
    o = teacher.check(embedded, agreement.cpu_env(teacher.env), 0, op_offload=False, threads=1, n_ubatch=128)
    assert o.status == "pass", o.detail
    a = numerics.Agreement.from_dict(o.numbers)
    assert a.positions == agreement.MAX_CHUNKS * 255
    assert a.top1 == 1.0 and a.top5 == 1.0
    assert a.kld.max < 1e-5, o.detail
    assert a.ppl_ref == pytest.approx(a.ppl_test, rel=1e-4)
    ref_meta = json.loads((teacher.work / "run-1" / "run.json").read_text())
    assert ref_meta["cuda_visible_devices"] == "" and ref_meta["op_offload"] is False
    assert ref_meta["n_chunks"] == agreement.MAX_CHUNKS and ref_meta["add_bos"] is True


def test_the_control_sees_a_real_difference(teacher: agreement.TeacherForced, embedded: Path, venv_py: str) -> None:
    q4, out = agreement.quantized_control(probe, venv_py, embedded, teacher.env)
    assert q4 is not None, out
    o = teacher.sensitivity(embedded, q4, agreement.cpu_env(teacher.env), 0)
    assert o.status == "pass", o.detail
    # measured 0.090 on the CPU and on the H100 for F32 vs Q4_0; a second CPU run of F32 reads ~0
    assert o.numbers["control"]["kld"]["mean"] > 0.01 and o.numbers["ratio"] > 1e3, o.detail


def test_numerics_command_with_native_llama_perplexity(cpu_build: Path, lw_env: dict[str, str], work: Path) -> None:
    res = lw("numerics", "--native", "--strict", env=lw_env, timeout=5400)
    (work / "numerics.log").write_text(res.stdout)
    assert res.returncode == 0, res.stdout[-4000:]
    report = json.loads((work / "wheelhouse" / "reports" / "numerics-cpu.json").read_text())
    emb = report["models"]["embedded"]
    assert emb["status"] == "pass" and emb["native"]["agrees"], emb
    ctl = report["negative_control"]
    assert ctl["status"] == "pass", ctl
    # On this CPU machine native llama-perplexity printed no KLD block for the Q4_0 control (exit 0; on the
    # H100 it did: 0.089652, BENCHMARKS.md): then the report says so instead of crashing.
    assert ctl["native"].get("agrees") or "printed no statistics" in ctl["native"].get("error", ""), ctl
