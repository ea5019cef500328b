"""The one home of the GPU gate's judgement: ``judge(evidence)`` turns what was measured into a verdict.

How a wheel is judged, and why (the measurements are in BENCHMARKS.md, issue #25):

1. **Op-level conformance decides numerics** (``OpConformance``), the way llama.cpp judges a backend:
   test-backend-ops, from the same source, linked against the wheel's own libraries, compares every op
   on the GPU with the CPU backend on random inputs with upstream's own per-op error limit. Any failed
   case fails the wheel and is named (op, types, shape, the error against its limit). A deliberately
   broken kernel fails it by orders of magnitude; a correct wheel passes every case.
2. **Real-model agreement is information, with a guard against gross failure** (``ModelAgreement``).
   GPU vs CPU statistics on a real model depend on the model, its weight type and the text far more than on
   the wheel: correct wheels measured mean KLD 0.009-0.048 and top-1 87-95%, and the old F32-vs-Q4_0
   control (0.090 / 85.9%) lay inside that spread. A deliberately broken build (the CPU backend's fused
   RMS_NORM*MUL off by 0.1%) differs from the correct wheel on SmolLM2 135M by mean KLD 0.0035 and top-1
   95.6%: closer than a correct GPU wheel is to the CPU (0.0163, 92.3%), while test-backend-ops fails it at
   2.8-11.5x upstream's limit. No absolute limit separates correct from broken there, so none is applied;
   the numbers are reported with their ± (the standard error, as llama-perplexity prints it). What fails is
   what no correct wheel produces: a run that crashes, non-finite logits, or a GPU whose predictions are a
   different model from the CPU's, mean KLD above ``GROSS_MEAN_KLD`` (1 nat: on average a factor e in
   likelihood; the worst correct model measured is ~20x below it).
3. **A control shows the comparison can see a difference** (``Sensitivity``): the same measurement
   between two quantizations of one model (F32 vs Q4_0) must read far larger than GPU vs CPU of that
   F32 model; otherwise the measurement itself is broken (comparing a run with itself, say).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from llama_wheels.numerics import Agreement, describe
from llama_wheels.verify.conformance import OpConformance

Status = Literal["pass", "fail", "warn", "skip"]

#: Mean KLD (nats) above which the GPU's distributions are another model's, not a rounding of the CPU's.
GROSS_MEAN_KLD = 1.0
#: The control's KLD must exceed GPU-vs-CPU of the same model by this factor (measured: ~10^7).
MIN_SENSITIVITY = 10.0
#: How many failed cases a verdict line names (all are in the report).
NAMED_FAILURES = 3


@dataclass(frozen=True)
class Judgement:
    status: Status
    detail: str
    numbers: dict[str, Any]


@dataclass(frozen=True)
class ModelAgreement:
    """Teacher-forced GPU (or second CPU) run vs the pure-CPU reference on one model."""

    agreement: Agreement | None
    failure: str = ""  # why no agreement could be measured (a run crashed, non-finite logits, ...)


@dataclass(frozen=True)
class Sensitivity:
    """The control pair (two quantizations of one model) against GPU vs CPU of the same model."""

    control: Agreement | None
    same_model: Agreement | None
    failure: str = ""


Evidence = OpConformance | ModelAgreement | Sensitivity


def judge(evidence: Evidence) -> Judgement:
    """The verdict for one piece of evidence (see the module docstring for the rules)."""
    if isinstance(evidence, OpConformance):
        return _ops(evidence)
    if isinstance(evidence, ModelAgreement):
        return _model(evidence)
    return _sensitivity(evidence)


def _ops(e: OpConformance) -> Judgement:
    if not e.runs:
        return Judgement("fail", "no op-level run was made", {})
    failures = [c for r in e.runs for c in r.failures]
    parts: list[str] = []
    numbers: dict[str, Any] = {}
    for r in e.runs:
        n = r.counts()
        numbers[r.what] = {"ok": n["ok"], "fail": len(r.failures), "unsupported": n["unsupported"],
                           "inconclusive": len(r.inconclusive), "seconds": round(r.seconds, 1),
                           "per_op": r.per_op()}
        parts.append(f"{r.what}: {n['ok']} OK, {len(r.failures)} failed, {n['unsupported']} not supported by "
                     f"{r.backend} ({r.seconds:.0f} s)")
    unsure = [c for r in e.runs for c in r.inconclusive]
    if unsure:
        parts.append(f"{len(unsure)} generic case(s) inconclusive, both backends read NaN: {unsure[0].describe()}")
        numbers["inconclusive"] = [c.describe() for c in unsure]
    broken = [r for r in e.runs if r.returncode != 0 and not r.failures and not r.inconclusive]
    if broken:  # exit != 0 without a failed case: it crashed or printed nothing we could read
        r = broken[0]
        return Judgement("fail", f"test-backend-ops ({r.what}) ended with exit code {r.returncode} and no "
                         f"failed case in its output" + (f"; see {r.log}" if r.log else ""), numbers)
    empty = [r for r in e.runs if not any(c.status == "ok" for c in r.cases)]
    if empty:
        return Judgement("fail", f"test-backend-ops ({empty[0].what}) ran no case on {empty[0].backend}"
                         + (f"; see {empty[0].log}" if empty[0].log else ""), numbers)
    if failures:
        named = "; ".join(c.describe() for c in failures[:NAMED_FAILURES])
        more = f" (and {len(failures) - NAMED_FAILURES} more)" if len(failures) > NAMED_FAILURES else ""
        ops = sorted({c.op for c in failures})
        return Judgement("fail", f"{len(failures)} op case(s) differ from the CPU backend beyond upstream's limit, "
                         f"ops {','.join(ops)}: {named}{more}", numbers | {"failed": [c.describe() for c in failures]})
    return Judgement("warn" if unsure else "pass", "; ".join(parts), numbers)


def _model(e: ModelAgreement) -> Judgement:
    a = e.agreement
    if a is None:
        return Judgement("fail", e.failure or "no agreement was measured", {})
    numbers = a.to_dict() | {"gross_mean_kld": GROSS_MEAN_KLD}
    if not all(math.isfinite(x) for x in (a.kld.mean, a.ppl_ref, a.ppl_test)):
        return Judgement("fail", f"non-finite statistics: {describe(a)}", numbers)
    if a.kld.mean > GROSS_MEAN_KLD:
        return Judgement("fail", f"the GPU computes another model: mean KLD {a.kld.mean:.3g} > {GROSS_MEAN_KLD:g} nat; "
                         + describe(a), numbers)
    return Judgement("pass", describe(a) + " (information: op-level conformance judges the kernels)", numbers)


def _sensitivity(e: Sensitivity) -> Judgement:
    c, s = e.control, e.same_model
    if c is None or s is None:
        return Judgement("fail", e.failure or "the control was not measured", {})
    floor = max(s.kld.mean, 1e-12)
    ratio = c.kld.mean / floor
    numbers = {"control": c.to_dict(), "same_model": s.to_dict(), "ratio": ratio, "min_ratio": MIN_SENSITIVITY}
    line = (f"F32 vs Q4_0 mean KLD {c.kld.mean:.3g} is {ratio:.3g}x GPU vs CPU of the F32 model "
            f"({s.kld.mean:.3g}); must be >= {MIN_SENSITIVITY:g}x")
    if ratio < MIN_SENSITIVITY:
        return Judgement("fail", "the comparison cannot see a real difference: " + line, numbers)
    return Judgement("pass", "the comparison sees a real difference: " + line, numbers)
