"""The op-level check for real on the CPU machine: llama.cpp's test-backend-ops from the sdist we built,
compiled against the installed CPU wheel's own libraries, run on the CPU backend against its reference
mode (on a GPU runner the same program runs the CUDA backend); our graph exporter writes the embedded
model's ops and test-backend-ops runs exactly those. Parsing and the verdict run on the real output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llama_wheels.model import cached_model
from llama_wheels.verify import conformance as cf
from llama_wheels.verify.judge import judge


@pytest.fixture(scope="module")
def plan(cpu_build: Path, work: Path) -> cf.ConformancePlan:
    venv = work / "venv-conformance"
    subprocess.run([sys.executable, "-m", "virtualenv", "-q", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(cpu_build.parent),
                    str(cpu_build)], check=True)
    (src,) = (work / "build" / "src").glob("llama_cpp_python-*/llama_cpp_python-*/vendor/llama.cpp")
    return cf.ConformancePlan(src, cf.lib_dir_of(py), work / "ops", cf.find_cxx(os.environ),
                              ops=("RMS_NORM", "ADD", "SOFT_MAX", "GET_ROWS"))


def test_test_backend_ops_against_the_wheel_libraries(plan: cf.ConformancePlan) -> None:
    seconds = cf.compile_tools(plan, dict(os.environ), graph=True)
    assert plan.exe.exists() and plan.graph_exe.exists(), seconds
    needed = subprocess.run(["readelf", "-d", str(plan.exe)], capture_output=True, text=True, check=True).stdout
    assert str(plan.lib_dir) in needed  # RUNPATH into the installed wheel: its libraries are the ones tested
    assert cf.compile_tools(plan, dict(os.environ), graph=True) < 1.0  # same command line: not rebuilt
    run = cf.run_ops(plan, "CPU", dict(os.environ), log=plan.work / "cpu.log")
    assert run.returncode == 0, (plan.work / "cpu.log").read_text()[-3000:]
    counts = run.counts()
    assert counts["ok"] > 50 and counts["fail"] == 0, counts
    assert run.summary == (counts["ok"], counts["ok"])  # "N/N tests passed" agrees with the parsed cases
    assert {c.op for c in run.cases} == {"RMS_NORM", "ADD", "SOFT_MAX", "GET_ROWS"}
    assert judge(cf.OpConformance("cpu", (run,))).status == "pass"


def test_graph_ops_of_a_model(plan: cf.ConformancePlan, work: Path) -> None:
    cf.compile_tools(plan, dict(os.environ), graph=True)
    model = cached_model(work / "cache")
    test_file = plan.work / "graph-embedded.txt"
    n = cf.export_graph(plan, model, test_file, dict(os.environ))
    ops = {int(line.split()[0]) for line in test_file.read_text().splitlines()}
    assert n >= 10 and len(ops) >= 6, test_file.read_text()[:2000]  # matmuls, norms, rope, softmax/FA, ...
    log = plan.work / "graph.log"
    run = cf.run_ops(plan, "CPU", dict(os.environ), what="graph of embedded", test_file=test_file, log=log)
    # generic cases get random inputs: both backends may read the same NaN (then inconclusive, not failed)
    assert run.failures == (), log.read_text()[-3000:]
    assert run.counts()["ok"] + run.counts()["unsupported"] + len(run.inconclusive) == n
    j = judge(cf.OpConformance("cpu", (run,)))
    assert j.status in ("pass", "warn") and "graph of embedded" in j.detail, j.detail
