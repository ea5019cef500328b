"""The checks on one installed wheel, each from one probe process: import, GPU offload support, arch
coverage per card, a CPU generation, the split modes the wheel offers, and one generation per GPU run."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_wheels.bindings import BindingReport, check_wheel
from llama_wheels.coverage import coverage_verdict
from llama_wheels.detect import Gpu
from llama_wheels.smoke.agreement import greedy_summary
from llama_wheels.smoke.probe import offloaded, run_probe
from llama_wheels.smoke.report import Check, Status
from llama_wheels.smoke.splits import NOT_OFFERED, TENSOR, GpuRun, SplitSupport, allreduce_note, llama_reason, refusal
from llama_wheels.smoke.targets import entry_arch_set
from llama_wheels.smoke.wheelenv import WheelEnv


def _since(t0: float) -> float:
    return time.monotonic() - t0


def bindings_check(wheel: Path, entry: Mapping[str, Any]) -> Check:
    """Before the import: every C function the bindings call is exported by the wheel's own libraries, and
    (from the build's record, made against the source's llama.h) every bound struct has llama.h's fields.
    A mismatch is named: the symbol, or the struct and its first differing field."""
    t0 = time.monotonic()
    rep: BindingReport = check_wheel(wheel)
    recorded = entry.get("bindings") or {}
    rep.structs, rep.appended = list(recorded.get("structs") or []), list(recorded.get("appended") or [])
    if not rep.checked:
        return Check("C bindings", "warn", "no binding module or library found in the wheel; not checked", _since(t0))
    if not rep.ok:
        return Check("C bindings", "fail", f"the Python bindings do not match this llama.cpp: {rep.one_line()}",
                     _since(t0))
    counts = ", ".join(f"{n} in {lib}.so" for lib, n in rep.checked.items())
    structs = "; bound structs match llama.h" if "structs" in recorded else "; struct fields not checked (no record)"
    if rep.appended:
        return Check("C bindings", "warn", f"every bound function is exported ({counts}); llama.h appends fields: "
                     f"{rep.appended[0]}", _since(t0))
    return Check("C bindings", "pass", f"every bound function is exported ({counts}){structs}", _since(t0))


def import_check(wenv: WheelEnv) -> tuple[Check, dict[str, Any] | None]:
    t0 = time.monotonic()
    run = run_probe(wenv.python, "import", {}, wenv.env)
    if run.result is None:
        return Check("import", "fail", run.summary, _since(t0)), None
    archs = ",".join(map(str, run.result["archs"])) or "none (CPU build)"
    return Check("import", "pass", f"llama_cpp {run.result['version']}, ARCHS = {archs}", _since(t0)), run.result


def offload_support(imp: Mapping[str, Any], gpus: list[Gpu], cuda_build: bool, require_gpu: bool) -> Check:
    missing: Status = "fail" if require_gpu else "skip"
    if not gpus:
        why = " (--require-gpu)" if require_gpu else ": skipped"
        return Check("GPU offload support", missing, f"no GPU found{why}")
    if not cuda_build:
        return Check("GPU offload support", missing, "this is a CPU build")
    return Check("GPU offload support", "pass" if imp["gpu_offload"] else "fail",
                 f"llama_supports_gpu_offload() = {imp['gpu_offload']}")


def arch_coverage(entry: Mapping[str, Any], imp: Mapping[str, Any], gpus: list[Gpu]) -> tuple[list[Check], list[Gpu]]:
    """One check per card; returns the cards the wheel can run on."""
    arch_set = entry_arch_set(entry, imp["archs"])
    checks: list[Check] = []
    runnable: list[Gpu] = []
    for g in gpus:
        if arch_set is None:
            checks.append(Check(f"arch coverage GPU {g.index}", "fail", "the wheel reports no CUDA archs"))
            continue
        cov = coverage_verdict(g.compute_cap, arch_set)
        status: Status = {"native": "pass", "ptx-jit": "warn", "cannot-run": "fail"}[cov.kind]  # type: ignore[assignment]
        checks.append(Check(f"arch coverage GPU {g.index} ({g.name}, sm_{g.compute_cap})", status,
                            f"{cov.kind}: {cov.message}"))
        if cov.kind != "cannot-run":
            runnable.append(g)
    return checks, runnable


def cpu_generate(wenv: WheelEnv, gen_args: Mapping[str, Any]) -> tuple[Check, dict[str, Any] | None]:
    t0 = time.monotonic()
    run = run_probe(wenv.python, "generate", {**gen_args, "n_gpu_layers": 0}, wenv.env)
    if run.result is None:
        return Check("generate (CPU)", "fail", run.summary, _since(t0)), None
    cpu = run.result
    return Check("generate (CPU)", "pass" if cpu["tokens"] else "fail",
                 f"{len(cpu['tokens'])} tokens at {cpu['tok_per_s']} tok/s: {cpu['text']!r}", _since(t0)), cpu


def split_support(wenv: WheelEnv, visible: str) -> tuple[Check, SplitSupport | None]:
    """Ask the wheel's own backend registry which split modes it offers (no model loaded)."""
    t0 = time.monotonic()
    run = run_probe(wenv.python, "splits", {}, {**wenv.env, "CUDA_VISIBLE_DEVICES": visible})
    if run.result is None:
        return Check("split modes offered", "warn", f"could not ask the wheel ({run.summary}); "
                     "every mode is tried and the loader's message decides", _since(t0)), None
    support = SplitSupport.from_probe(run.result)
    return Check("split modes offered", "pass", support.describe(), _since(t0)), support


@dataclass
class RunOutcome:
    checks: list[Check] = field(default_factory=list)
    tok_per_s: float | None = None
    max_logit_diff: float | None = None
    greedy: str = ""  # greedy tokens vs the CPU run: information for the judged agreement check
    ran: bool = False  # the model ran fully offloaded: its agreement can be measured


def failed_run(name: str, run: GpuRun, output: str, summary: str, seconds: float = 0.0) -> Check:
    """A run whose process failed: a skip when llama.cpp's loader said this build has no such split mode,
    else a failure that carries llama.cpp's own last error line."""
    refused = refusal(output) if run.split_mode is not None else None
    if refused:
        return Check(name, "skip", f"{NOT_OFFERED}: llama.cpp says '{refused}'", seconds)
    reason = llama_reason(output)
    if run.split_mode == TENSOR and reason and "ggml-backend-meta" in reason:
        # llama.cpp's tensor mode (EXPERIMENTAL upstream) stops on its own assert in the Meta backend for a
        # model whose tensors it cannot split: llama.cpp's limit for that model, not a fault of the wheel.
        return Check(name, "warn", f"llama.cpp's experimental tensor mode cannot split this model: {reason}", seconds)
    return Check(name, "fail", summary + (f"; llama.cpp: {reason}" if reason else ""), seconds)


def gpu_run(wenv: WheelEnv, run: GpuRun, gen_args: Mapping[str, Any], cpu: Mapping[str, Any]) -> RunOutcome:
    """Full offload for one run, then its agreement with the CPU run. A split mode that this build does not
    offer is a skip carrying the reason (the probe's, or the loader's own line), never a failure."""
    name = f"full offload ({run.name})"
    if run.skip:
        return RunOutcome([Check(name, "skip", run.skip)])
    t0 = time.monotonic()
    probe = run_probe(wenv.python, "generate", {**gen_args, "n_gpu_layers": -1, **run.args},
                      wenv.with_gpus(run.visible, dict(run.env)))
    if probe.result is None:
        return RunOutcome([failed_run(name, run, probe.output, probe.summary, _since(t0))])
    off = offloaded(probe.output)
    full = off is not None and off[0] == off[1]
    detail = f"offloaded {off[0]}/{off[1]} layers to GPU" if off else "no 'offloaded N/M layers' line in the log"
    note = allreduce_note(probe.output) if run.split_mode == 3 else None
    out = RunOutcome([Check(name, "pass" if full else "fail",
                            f"{detail}; {probe.result['tok_per_s']} tok/s" + (f"; AllReduce: {note}" if note else ""),
                            _since(t0))], probe.result["tok_per_s"])
    out.greedy, out.max_logit_diff = greedy_summary(cpu, probe.result)
    out.ran = full
    return out
