"""verify.judge, the one home of the GPU gate's verdicts: op-level runs decide, real-model agreement is
information with a gross-failure guard, and the control must see a difference. The op-level evidence is
parsed from test-backend-ops output recorded on real machines (tests/fixtures/test-backend-ops/README.md)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from llama_wheels import numerics as nm
from llama_wheels.verify import conformance as cf
from llama_wheels.verify.judge import GROSS_MEAN_KLD, ModelAgreement, Sensitivity, judge

FIX = Path(__file__).parent.parent / "fixtures" / "test-backend-ops"


def _run(text: str, what: str = "default ops", rc: int = 0) -> cf.OpRun:
    cases, summary, ok = cf.parse_output(text)
    return cf.OpRun("CUDA0", what, ("test-backend-ops",), tuple(cases), summary, ok, rc, 12.0)


def _agreement(**kw: object) -> nm.Agreement:
    base = nm.Agreement(positions=2040, kld=nm.Summary(0.016, 0.2, 0.9), top1=0.923, top5=0.9, ppl_ref=20.0,
                        ppl_test=20.1, kld_err=3e-4, top1_err=0.004)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_ops_pass_names_counts_per_run() -> None:
    run = _run((FIX / "cpu-rms_norm-add.txt").read_text())
    assert run.summary == (205, 205) and run.backend_ok is True and run.counts() == {"ok": 205}
    assert {c.op for c in run.cases} == {"ADD", "RMS_NORM"}
    assert run.cases[0] == cf.OpCase("ADD", "type=f16,ne=[1,1,8,1],nr=[1,1,1,1],nf=1,perm1=0,src_overlap=0", "ok")
    j = judge(cf.OpConformance("CPU", (run,)))
    assert j.status == "pass", j.detail
    assert "default ops: 205 OK, 0 failed" in j.detail
    assert j.numbers["default ops"]["per_op"]["RMS_NORM"]["ok"] > 10


def test_ops_failure_names_op_types_shape_and_error() -> None:
    # a deliberately broken build: the CPU backend's fused RMS_NORM*MUL scaled by 1.001 (BENCHMARKS.md)
    run = _run((FIX / "cpu-rms_norm-fused-broken.txt").read_text(), rc=1)
    assert run.summary == (86, 112) and run.backend_ok is False
    assert len(run.failures) == 26 and run.counts()["ok"] == 86
    j = judge(cf.OpConformance("CPU", (run,)))
    assert j.status == "fail"
    first = "RMS_NORM_MUL_ADD(type=f32,ne=[64,5,4,3],eps=0.000000,broadcast=0,multi_add=0,post_mul=0,"
    assert first in j.detail and "[ADD] ERR = 0.000000562 > 0.000000100" in j.detail, j.detail
    assert "26 op case(s)" in j.detail and "(and 23 more)" in j.detail
    assert {f.split("(")[0] for f in j.numbers["failed"]} <= {"RMS_NORM_MUL_ADD", "ADD_RMS_NORM"}


def test_ops_crash_or_empty_run_fails() -> None:
    crashed = _run("Testing 2 devices\n\nBackend 1/2: CUDA0\n  Device description: NVIDIA H200\n", rc=-6)
    j = judge(cf.OpConformance("0: GPU", (crashed,)))
    assert j.status == "fail" and "exit code -6" in j.detail
    assert judge(cf.OpConformance("0: GPU", (_run("", rc=0),))).status == "fail"
    assert judge(cf.OpConformance("0: GPU", ())).status == "fail"


def test_model_numbers_are_information_until_gross() -> None:
    info = judge(ModelAgreement(_agreement()))
    assert info.status == "pass" and "information" in info.detail and "±" in info.detail
    # the measured worst correct case and the old control are no longer failures: they are information
    assert judge(ModelAgreement(_agreement(kld=nm.Summary(0.09, 0.3, 0.4), top1=0.85))).status == "pass"
    gross = judge(ModelAgreement(_agreement(kld=nm.Summary(GROSS_MEAN_KLD * 2, 9.0, 20.0), top1=0.1)))
    assert gross.status == "fail" and "another model" in gross.detail
    nan = judge(ModelAgreement(_agreement(ppl_test=math.nan)))
    assert nan.status == "fail" and "non-finite" in nan.detail
    crashed = judge(ModelAgreement(None, "the run under test failed: crashed with SIGSEGV"))
    assert crashed.status == "fail" and "SIGSEGV" in crashed.detail


@pytest.mark.parametrize(("same", "ok"), [(2e-9, True), (0.0, True), (0.05, False)])
def test_control_must_read_far_above_the_same_model(same: float, ok: bool) -> None:
    control = _agreement(kld=nm.Summary(0.0897, 0.27, 0.40))
    j = judge(Sensitivity(control, _agreement(kld=nm.Summary(same, 0.0, 0.0))))
    assert (j.status == "pass") is ok, j.detail
    assert judge(Sensitivity(None, None, "quantizing failed")).status == "fail"


def test_both_backends_nan_in_a_generic_graph_case_is_inconclusive_not_a_failure() -> None:
    text = (FIX / "cpu-graph-embedded-both-nan.txt").read_text()
    graph = _run(text, what="graph of embedded.gguf", rc=1)
    (case,) = graph.inconclusive
    assert case.op == "SWIGLU" and case.detail == "[NONE] NaN at index 722 (CPU=-nan CPU=-nan)"
    assert graph.failures == ()
    j = judge(cf.OpConformance("CPU", (graph,)))
    assert j.status == "warn" and "1 generic case(s) inconclusive" in j.detail, j.detail
    # upstream's own cases keep upstream's verdict: the same line in a default-ops run is a failure
    default = _run(text, rc=1)
    assert len(default.failures) == 1 and judge(cf.OpConformance("CPU", (default,))).status == "fail"
    # one NaN side only is a real failure everywhere
    one_side = text.replace("(CPU=-nan CPU=-nan)", "(CUDA0=-nan CPU=0.125000)")
    assert judge(cf.OpConformance("GPU", (_run(one_side, what="graph of m", rc=1),))).status == "fail"
