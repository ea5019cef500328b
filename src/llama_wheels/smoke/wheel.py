"""Smoke one wheel: install it into a fresh venv, then the checks in order, stopping where going on would
only repeat a failure (no import; a wheel that cannot run on the cards present)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_wheels.detect import Gpu
from llama_wheels.log import Logger
from llama_wheels.net import free_port
from llama_wheels.smoke import checks
from llama_wheels.smoke.report import Recorder, SmokeReport
from llama_wheels.smoke.server import PROMPT, smoke_server
from llama_wheels.smoke.splits import plan_runs
from llama_wheels.smoke.wheelenv import WheelEnv, install


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


def smoke_wheel(wheel: Path, entry: dict[str, Any], setup: SmokeSetup, log: Logger) -> SmokeReport:
    flavour = wheel.parent.name
    rep = SmokeReport(flavour, wheel.name, gpus=[f"{g.index}: {g.name} (sm_{g.compute_cap})" for g in setup.gpus])
    rec = Recorder(rep, log)
    t0 = time.monotonic()
    with log.step(f"fresh venv + install {wheel.name}"):
        wenv = install(wheel, entry, venv=setup.work / f"venv-{flavour}", python=setup.python, owner=setup.owner,
                       env=setup.env)
    rec.add("install from wheelhouse only", "pass", f"{wenv.requirement} (--no-index)", t0)
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
    # a mixed machine: split runs only when every selected card can run the wheel
    _gpu_runs(wenv, runnable, len(runnable) == len(setup.gpus), gen_args, cpu, rec)
    if "server" in wenv.extras:
        log_path = setup.work / f"server-{flavour}.log"
        env = wenv.with_gpus(",".join(str(g.index) for g in runnable)) if runnable else wenv.env
        for c in smoke_server(wenv.python, setup.model, port=setup.port or free_port(), asked=bool(setup.port),
                              n_gpu_layers=-1 if runnable else 0, n_gpus=len(runnable), log_path=log_path, env=env):
            rec.put(c)
    return rep


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
              rec: Recorder) -> None:
    support = None
    if len(runnable) > 1 and split_ok:
        check, support = checks.split_support(wenv, ",".join(str(g.index) for g in runnable))
        rec.put(check)
    runs = plan_runs(runnable, support) if split_ok else [r for g in runnable for r in plan_runs([g], None)]
    for run in runs:
        outcome = checks.gpu_run(wenv, run, gen_args, cpu)
        for c in outcome.checks:
            rec.put(c)
        if outcome.tok_per_s is not None:
            rec.report.numbers.setdefault("gpu_tok_per_s", {})[run.name] = outcome.tok_per_s
        if outcome.max_logit_diff is not None:
            rec.report.numbers.setdefault("max_logit_diff", {})[run.name] = outcome.max_logit_diff
