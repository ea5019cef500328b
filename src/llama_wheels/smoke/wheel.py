"""Smoke one wheel: install it into a fresh venv, then the checks in order, stopping where going on would
only repeat a failure (no import; a wheel that cannot run on the cards present)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_wheels import agreement
from llama_wheels.detect import Gpu
from llama_wheels.errors import FatalError
from llama_wheels.log import Logger
from llama_wheels.net import free_port
from llama_wheels.smoke import checks
from llama_wheels.smoke.probe import probe
from llama_wheels.smoke.report import Recorder, SmokeReport
from llama_wheels.smoke.server import PROMPT, smoke_server
from llama_wheels.smoke.splits import plan_runs
from llama_wheels.smoke.wheelenv import WheelEnv, install
from llama_wheels.verify import conformance
from llama_wheels.verify.judge import judge


@dataclass(frozen=True)
class SmokeSetup:
    """What every wheel of one smoke run shares."""

    work: Path  # venvs and server logs go here
    owner: Path  # our build dir: the only place we remove things from
    model: Path
    python: str
    gpus: list[Gpu]
    require_gpu: bool
    port: int | None
    env: dict[str, str]
    cache_dir: Path | None = None  # where the embedded model (the control's) is cached
    source: Path | None = None  # vendor/llama.cpp of the wheel's source, for the op-level check
    source_note: str = ""  # why there is no source (the op-level check then fails under --require-gpu)
    ops: tuple[str, ...] = conformance.DEFAULT_OPS


def smoke_wheel(wheel: Path, entry: dict[str, Any], setup: SmokeSetup, log: Logger) -> SmokeReport:
    flavour = wheel.parent.name
    rep = SmokeReport(flavour, wheel.name, gpus=[f"{g.index}: {g.name} (sm_{g.compute_cap})" for g in setup.gpus])
    rec = Recorder(rep, log)
    t0 = time.monotonic()
    with log.step(f"fresh venv + install {wheel.name}"):
        wenv = install(wheel, entry, venv=setup.work / f"venv-{flavour}", python=setup.python, owner=setup.owner,
                       env=setup.env)
    rec.add("install from wheelhouse only", "pass", f"{wenv.requirement} (--no-index)", t0)
    rec.put(checks.bindings_check(wheel, entry))
    check, imp = checks.import_check(wenv)
    rec.put(check)
    if imp is None:
        return rep
    rep.numbers["system_info"] = imp["system_info"]
    runnable = _gpu_checks(entry, imp, setup, rec)
    if runnable is None:
        log.error("refusing to load a model: this wheel cannot run on the GPU(s) present")
        return rep
    gen_args = {"model": str(setup.model), "prompt": PROMPT, "n_tokens": 16}
    check, cpu = checks.cpu_generate(wenv, gen_args)
    rec.put(check)
    if cpu is None:
        return rep
    rep.numbers["cpu_tok_per_s"] = cpu["tok_per_s"]
    devices: list[Gpu | None] = list(runnable) or [None]  # no usable card: the CPU backend
    for card in devices:
        _op_conformance(wenv, entry, card, setup, rec)
    # a mixed machine: split runs only when every selected card can run the wheel
    teacher = agreement.TeacherForced(probe, wenv.python, setup.work / f"numerics-{flavour}", wenv.env)
    _gpu_runs(wenv, runnable, len(runnable) == len(setup.gpus), gen_args, cpu, rec, teacher, setup.model)
    if setup.cache_dir is not None:
        gpu_env = wenv.with_gpus(str(runnable[0].index)) if runnable else None
        for name, status, detail, numbers, t_start in agreement.cpu_and_control_checks(
                teacher, wenv.python, setup.cache_dir, setup.model, wenv.env, gpu_env):
            rec.add(name, status, detail, t_start)
            rep.numbers.setdefault("agreement", {})[name] = numbers
    if "server" in wenv.extras:
        log_path = setup.work / f"server-{flavour}.log"
        env = wenv.with_gpus(",".join(str(g.index) for g in runnable)) if runnable else wenv.env
        for c in smoke_server(wenv.python, setup.model, port=setup.port or free_port(), asked=bool(setup.port),
                              n_gpu_layers=-1 if runnable else 0, n_gpus=len(runnable), log_path=log_path, env=env):
            rec.put(c)
    return rep


def _op_conformance(wenv: WheelEnv, entry: dict[str, Any], g: Gpu | None, setup: SmokeSetup, rec: Recorder) -> None:
    """llama.cpp's test-backend-ops from the same source, linked against this venv's wheel libraries: on card
    ``g`` the default ops (once per wheel and card) and the ops of the smoke model's graph, against the CPU
    backend; without a card, the CPU backend's fused paths against its own reference mode."""
    where = f"GPU {g.index}" if g is not None else "CPU"
    name = f"op-level conformance {where} (test-backend-ops vs the CPU {'backend' if g else 'reference mode'})"
    t0 = time.monotonic()
    if setup.source is None:
        rec.add(name, "fail" if setup.require_gpu and g is not None else "skip", f"not run: {setup.source_note}", t0)
        return
    flavour = str(entry.get("flavour") or "wheel")
    ops = setup.ops if g is not None else conformance.CPU_OPS
    device = f"{g.index}: {g.name}" if g is not None else "CPU"
    key = "-".join([str(entry.get("sha256", ""))[:16]] + ([g.name.replace(" ", "_"), g.driver] if g else ["cpu"]))
    try:
        plan = conformance.ConformancePlan(setup.source, conformance.lib_dir_of(wenv.python),
                                           setup.work / f"ops-{flavour}", conformance.find_cxx(setup.env), ops)
        evidence = conformance.check_device(plan, device, str(g.index) if g else None, wenv.env,
                                            model=setup.model if g is not None else None, cache_key=key)
    except FatalError as exc:
        rec.add(name, "fail", exc.one_line(), t0)
        return
    j = judge(evidence)
    rec.add(name, j.status, j.detail, t0)
    rec.report.numbers.setdefault("op_conformance", {})[where] = j.numbers


def _gpu_checks(entry: dict[str, Any], imp: dict[str, Any], setup: SmokeSetup, rec: Recorder) -> list[Gpu] | None:
    """Offload support and arch coverage. Returns the cards to run on ([] for none), or None when the wheel
    cannot run on the GPUs present and no model should be loaded."""
    cuda_build = bool(imp["archs"]) or entry.get("archs") is not None
    rec.put(checks.offload_support(imp, setup.gpus, cuda_build, setup.require_gpu))
    if not setup.gpus or not cuda_build:
        return []
    coverage, runnable = checks.arch_coverage(entry, imp, setup.gpus)
    for c in coverage:
        rec.put(c)
    if (not imp["gpu_offload"] or not runnable) and rec.report.failed:
        return None
    return runnable if imp["gpu_offload"] else []


def _gpu_runs(wenv: WheelEnv, runnable: list[Gpu], split_ok: bool, gen_args: dict[str, Any], cpu: dict[str, Any],
              rec: Recorder, teacher: agreement.TeacherForced | None = None, model: Path | None = None) -> None:
    support = None
    if len(runnable) > 1 and split_ok:
        check, support = checks.split_support(wenv, ",".join(str(g.index) for g in runnable))
        rec.put(check)
    runs = plan_runs(runnable, support) if split_ok else [r for g in runnable for r in plan_runs([g], None)]
    for run in runs:
        outcome = checks.gpu_run(wenv, run, gen_args, cpu)
        for c in outcome.checks:
            rec.put(c)
        if teacher is not None and model is not None and outcome.ran:
            # teacher-forced, as llama-perplexity --kl-divergence measures it; judged by verify.judge
            t0 = time.monotonic()
            o = teacher.check(model, wenv.with_gpus(run.visible, dict(run.env)), **run.args)
            rec.add(f"GPU vs CPU agreement ({run.name})", o.status,
                    f"{o.detail}; {agreement.REFERENCE_HOW}; greedy: {outcome.greedy}", t0)
            rec.report.numbers.setdefault("agreement", {})[run.name] = o.numbers
        if outcome.tok_per_s is not None:
            rec.report.numbers.setdefault("gpu_tok_per_s", {})[run.name] = outcome.tok_per_s
        if outcome.max_logit_diff is not None:
            rec.report.numbers.setdefault("max_logit_diff", {})[run.name] = outcome.max_logit_diff
