"""``nox -s bench``: the wheel against native llama-bench, on the same GPU(s), model, flags and work.

pp512 / tg128 on one model (default: a TinyLlama-1.1B-shaped random-weight llama, quantized to Q4_K_M by
the wheel itself; ``--model 8b``: a Llama-3-8B-shaped random Q4_K model, big enough for splitting to pay),
for one card and, with ``--gpus all`` on several cards, for layer split and tensor split, each measured by:
- native ``llama-bench -sm ...`` built from the same extracted source with the same CMake flags (the
  shared compiler cache makes that a rebuild of seconds);
- the wheel's C API in llama-bench's own loops (same contexts, warm-up and ``llama_synchronize``);
- the high-level ``Llama.eval`` API (one card only), with matched settings and with ``Llama()``'s
  defaults, the clock stopped after ``llama_synchronize``: ``Llama.eval`` reads no logits, so without it
  the clock stops when the GPU work is queued, not done (reported apart as ``pp_returned``).
Runs are interleaved (native, wheel, native, wheel) so drift hits both; we report medians, min-max,
the spread (max-min)/median and the ratios wheel/native, plus the decode calls, tokens, logit rows and
synchronizations each runner asked of llama.cpp.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_wheels import cmd
from llama_wheels.clean import owned_subdir
from llama_wheels.compcache import CacheSession, CacheStats, env_for
from llama_wheels.config import Options
from llama_wheels.detect import Gpu, find_gpus
from llama_wheels.errors import BuildFailed, ConfigError, SmokeFailed
from llama_wheels.log import Logger, fmt_seconds, render_markdown
from llama_wheels.smoke import find_python
from llama_wheels.smoke.probe import run_probe
from llama_wheels.smoke.splits import LAYER, TENSOR, llama_reason
from llama_wheels.smoke.targets import select_gpus, select_wheels
from llama_wheels.smoke.wheelenv import WheelEnv, install

#: ``enum ggml_type`` (ggml/include/ggml.h) for the KV cache types llama-bench's -ctk/-ctv accept.
KV_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20, "bf16": 30}
#: The types CUDA flash attention can be compiled for (``FA_TYPES`` in ggml/cmake/common.cmake).
FA_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "bf16", "f16")
UNQUANTIZED = ("f32", "f16", "bf16")  # a quantized V cache needs flash attention (src/llama-context.cpp)
SPREAD_LIMIT = 0.10


@dataclass(frozen=True)
class BenchRequest:
    wheel: str | None = None
    flavour: str | None = None
    model: str = "1b"  # "1b", "8b" or a GGUF path
    reps: int = 10
    rounds: int = 3
    threads: int | None = None
    native: bool = True
    require_gpu: bool = False
    offline: bool = False
    gpus: str = "first"  # "first", "all" or nvidia-smi indices "0,1"
    ctk: str = "f16"
    ctv: str = "f16"


@dataclass(frozen=True)
class BenchCase:
    """One configuration measured by every runner."""

    name: str
    visible: str | None  # CUDA_VISIBLE_DEVICES; None: as it is
    split_mode: int | None = None  # the wheel's llama_model_params.split_mode
    sm: str | None = None  # llama-bench -sm


def bench_cases(gpus: Sequence[Gpu]) -> list[BenchCase]:
    """One card; with several, layer split and tensor split over all of them (row split is gone from the
    CUDA backend of this llama.cpp: smoke probes and reports it)."""
    if not gpus:
        return [BenchCase("CPU", None)]
    cases = [BenchCase(f"GPU {gpus[0].index}", str(gpus[0].index))]
    if len(gpus) > 1:
        visible = ",".join(str(g.index) for g in gpus)
        cases += [BenchCase(f"layer split over GPUs {visible}", visible, LAYER, "layer"),
                  BenchCase(f"tensor split over GPUs {visible}", visible, TENSOR, "tensor")]
    return cases


def compiled_kv_pairs(system_info: str) -> set[tuple[str, str]] | None:
    """The K-V cache type pairs with compiled CUDA flash-attention kernels (``FA_QUANTS = ...`` in
    ``llama_print_system_info``; ``all`` = every pair of FA_TYPES). None: no CUDA FA list (a CPU build)."""
    m = re.search(r"FA_QUANTS = ([^|]+)", system_info)
    if not m:
        return None
    value = m[1].strip()
    if value == "all":
        return {(k, v) for k in FA_TYPES for v in FA_TYPES}
    pairs = {tuple(p.strip().split("-", 1)) for p in value.split(",") if "-" in p}
    return {(k, v) for k, v in pairs} | {("f16", "f16")}  # f16-f16 is always compiled (common.cmake)


def check_kv_pair(ctk: str, ctv: str, system_info: str) -> None:
    """Refuse a K/V cache pair the wheel has no flash-attention kernel for: it would silently fall back to
    a path ~30x slower in prefill and the bench would measure that."""
    pairs = compiled_kv_pairs(system_info)
    if pairs is not None and (ctk, ctv) not in pairs:
        have = ", ".join(f"--ctk {k} --ctv {v}" for k, v in sorted(pairs))
        raise ConfigError(f"this wheel has no flash-attention kernel for K={ctk} V={ctv} (FA_QUANTS)",
                          f"use one of: {have}; or build with GGML_CUDA_FA_QUANTS including {ctk}-{ctv}")


def stats(values: Sequence[float]) -> dict[str, float]:
    med = statistics.median(values)
    return {"median": round(med, 1), "min": round(min(values), 1), "max": round(max(values), 1), "n": len(values),
            "spread": round((max(values) - min(values)) / med, 3) if med else 0.0}


def parse_llama_bench(text: str) -> dict[str, list[float]]:
    """``llama-bench -o json``: a list of tests, each with n_prompt, n_gen and samples_ts. The output may hold
    the loader's log too (a ``[`` in a log line is not the start): the first line-initial ``[`` that decodes
    to a list of tests is."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"^\[", text, re.M):
        try:
            data, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(data, list) and all(isinstance(t, dict) and "n_prompt" in t for t in data):
            break
    else:
        raise ValueError("no llama-bench JSON in the output")
    out: dict[str, list[float]] = {"pp": [], "tg": []}
    for test in data:
        key = "pp" if test["n_prompt"] > 0 and test["n_gen"] == 0 else "tg"
        out[key] += [float(x) for x in test.get("samples_ts", [test["avg_ts"]])]
    return out


def native_cmake_args(wheel_args: Sequence[str]) -> list[str]:
    """The wheel's CMake flags, for a standalone llama.cpp build of llama-bench.

    (Building inside the wheel's own tree is impossible: llama-cpp-python adds tools/mtmd itself,
    which collides with LLAMA_BUILD_TOOLS=ON.) Same flags + the shared ccache = a fast rebuild.
    """
    return [*wheel_args, "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON", "-DLLAMA_BUILD_TOOLS=ON",
            "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_CURL=OFF"]


def wheel_compilers(build_tree: Path) -> list[str]:
    """The compilers the wheel's CMake run chose, so the native build hashes the same (ccache hits).

    nvcc matters most: reached through another path (``/usr/local/cuda`` vs ``/usr/local/cuda-13.0``)
    its ``-isystem`` dirs differ too, and every CUDA compile misses (measured on the H100: 4 min 49 s).
    """
    cache = build_tree / "CMakeCache.txt"
    out = []
    if cache.exists():
        for line in cache.read_text(errors="replace").splitlines():
            for var in ("CMAKE_C_COMPILER", "CMAKE_CXX_COMPILER", "CMAKE_CUDA_COMPILER", "CMAKE_CUDA_HOST_COMPILER"):
                if line.startswith(f"{var}:") and "=" in line and line.split("=", 1)[1]:
                    out.append(f"-D{var}={line.split('=', 1)[1]}")
    return out


def build_llama_bench(options: Options, entry: Mapping[str, Any], env: Mapping[str, str],
                      offline: bool, target: str = "llama-bench") -> tuple[Path, float, CacheStats]:
    from llama_wheels import sdist, source
    from llama_wheels.build import resolve_source

    # the source the wheel was built from (a git or llama.cpp swap: its archive), else the pinned sdist
    built_from = source.find_archive([options.cache_dir / "sources", options.prefetch_dir / "sources"],
                                     entry.get("source") or {})
    src = sdist.extract(built_from or resolve_source(options, offline, env), owned_subdir(options.build_dir, "src"))
    bdir = owned_subdir(options.build_dir, f"bench-{entry.get('flavour', 'wheel')}")
    benv = {**env, **env_for(options)}
    t0 = time.monotonic()
    args = [str(a) for a in entry.get("cmake_args", [])]
    launch = next((a.split("=", 1)[1] for a in args if a.startswith("-DCMAKE_C_COMPILER_LAUNCHER=")), None)
    with CacheSession(launch, benv, bdir) as session:  # the launcher the wheel's build used
        benv |= session.env
        cmd.run(["cmake", "-S", str(src / "vendor" / "llama.cpp"), "-B", str(bdir), "-G", "Ninja",
                 *native_cmake_args(args),
                 *wheel_compilers(options.build_dir / str(entry.get("flavour", "")))], env=benv, capture=True)
        cmd.run(["cmake", "--build", str(bdir), "--target", target], env=benv, log=bdir / "build.log")
        cache = session.stats()
    exe = bdir / "bin" / (f"{target}.exe" if os.name == "nt" else target)
    if not exe.exists():
        raise BuildFailed(f"{target} was not built in {bdir}", f"see {bdir / 'build.log'}")
    return exe, time.monotonic() - t0, cache


@dataclass(frozen=True)
class BenchSetup:
    """What every runner of one bench shares."""

    wenv: WheelEnv
    model: Path
    ngl: int
    threads: int
    reps: int
    ctk: str
    ctv: str
    native: Path | None

    def case_env(self, case: BenchCase) -> dict[str, str]:
        return {**self.wenv.env, "CUDA_VISIBLE_DEVICES": case.visible} if case.visible is not None else dict(
            self.wenv.env)

    def probe_args(self, case: BenchCase, flash_attn: str) -> dict[str, Any]:
        return {"model": str(self.model), "ngl": self.ngl, "n_prompt": 512, "n_gen": 128, "threads": self.threads,
                "reps": self.reps, "flash_attn": flash_attn, "split_mode": case.split_mode,
                "type_k": KV_TYPES[self.ctk], "type_v": KV_TYPES[self.ctv]}

    def native_args(self, case: BenchCase) -> list[str]:
        assert self.native is not None
        return [str(self.native), "-m", str(self.model), "-p", "512", "-n", "128", "-ngl", str(self.ngl), "-fa", "1",
                "-t", str(self.threads), "-r", str(self.reps), "-ctk", self.ctk, "-ctv", self.ctv,
                *(["-sm", case.sm] if case.sm else []), "-o", "json"]


Samples = dict[str, dict[str, list[float]]]  # runner -> pp/tg -> tokens per second


def _wheel_run(setup: BenchSetup, check: str, case: BenchCase, flash_attn: str) -> dict[str, Any]:
    run = run_probe(setup.wenv.python, check, setup.probe_args(case, flash_attn), setup.case_env(case), 1800)
    if run.result is None:
        reason = llama_reason(run.output)
        raise SmokeFailed(f"{check} ({case.name}) failed: {run.summary}" + (f"; llama.cpp: {reason}" if reason else ""),
                          "see the output above")
    return run.result


def measure_case(setup: BenchSetup, case: BenchCase, rounds: int, highlevel: bool, log: Logger
                 ) -> tuple[Samples, dict[str, Any]]:
    """Interleaved rounds of native and wheel low-level, then (one card) the high-level API once."""
    samples: Samples = {}
    evidence: dict[str, Any] = {}

    def add(runner: str, res: Mapping[str, list[float]]) -> None:
        for k, v in res.items():
            samples.setdefault(runner, {}).setdefault(k, []).extend(v)

    for round_ in range(rounds):
        if setup.native is not None:
            with log.step(f"{case.name}, round {round_ + 1}: native llama-bench"):
                out = cmd.run(setup.native_args(case), env=setup.case_env(case), capture=True).stdout
                add("native", parse_llama_bench(out))
        with log.step(f"{case.name}, round {round_ + 1}: wheel, low-level decode loop"):
            res = _wheel_run(setup, "bench_lowlevel", case, "on")
            add("wheel_lowlevel", {"pp": res["pp"], "tg": res["tg"]})
            evidence["wheel_lowlevel"] = {"counts": res["counts"], "loop_overhead_us": res["loop_overhead_us"]}
    if highlevel:
        with log.step(f"{case.name}: wheel, high-level Llama.eval (matched settings, then Llama() defaults)"):
            for runner, fa in (("wheel_highlevel", "on"), ("wheel_defaults", "default")):
                if fa == "default" and setup.ctv not in UNQUANTIZED:
                    evidence[runner] = {"skipped": f"V cache {setup.ctv} needs flash attention, which Llama() "
                                        "leaves off (llama.cpp refuses the context)"}
                    continue
                res = _wheel_run(setup, "bench_highlevel", case, fa)
                add(runner, {"pp": res["pp"], "tg": res["tg"]})
                evidence[runner] = {"counts": res["counts"], "pp_returned": stats(res["pp_returned"])}
    return samples, evidence


def summarize(samples: Samples) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, dict[str, float]]]:
    summary = {k: {m: stats(v) for m, v in r.items() if v} for k, r in samples.items()}
    ratios = {}
    if "native" in summary:
        for k in summary:
            if k != "native":
                ratios[k] = {m: round(summary[k][m]["median"] / summary["native"][m]["median"], 3)
                             for m in ("pp", "tg")}
    return summary, ratios


def _rows(case: str, summary: Mapping[str, Any], ratios: Mapping[str, Any]) -> list[list[str]]:
    def cell(s: Mapping[str, float]) -> str:
        flag = " !" if s["spread"] > SPREAD_LIMIT else ""
        return f"{s['median']} ({s['min']}-{s['max']}, {s['spread']:.0%}{flag})"

    rows = []
    for k, r in summary.items():
        ratio = ratios.get(k, {})
        rows.append([case, k, cell(r["pp"]), cell(r["tg"]), f"{ratio['pp']:.3f}" if ratio else "-",
                     f"{ratio['tg']:.3f}" if ratio else "-"])
    return rows


HEADER = ["case", "runner", "pp512 t/s median (min-max, spread)", "tg128 t/s median (min-max, spread)",
          "pp vs native", "tg vs native"]


def bench_model(spec: str, options: Options, wenv: WheelEnv, log: Logger) -> Path:
    """``1b`` (F16 written, then Q4_K_M by the wheel's own quantizer), ``8b`` (random Q4_K blocks written
    directly) or a path; all cached."""
    from llama_wheels.model import BENCH, cached_model, validate

    if spec == "8b":
        from llama_wheels.randquant import cached_random_q4k

        with log.step("bench model: Llama-3-8B shape, random Q4_K weights (cached)"):
            path = cached_random_q4k(options.cache_dir)
    elif spec == "1b":
        path = options.cache_dir / "models" / BENCH.name.replace(".gguf", "-Q4_K_M.gguf")
        if not path.exists():
            with log.step("bench model: TinyLlama-1.1B shape, random weights, F16 -> Q4_K_M"):
                f16 = cached_model(options.cache_dir, BENCH)
                part = Path(str(path) + ".partial")
                run = run_probe(wenv.python, "quantize", {"src": str(f16), "dst": str(part)}, wenv.env, 900)
                if run.result is None:
                    raise BuildFailed(f"quantizing the bench model failed: {run.summary}", "see the output above")
                part.replace(path)
    else:
        path = Path(spec)
    validate(path)
    return path


def _gpus(request: BenchRequest, env: Mapping[str, str]) -> list[Gpu]:
    _, _, present = find_gpus(env)
    if not present and request.require_gpu:
        raise SmokeFailed("no GPU found (--require-gpu)", "run bench on a GPU runner")
    return present[:1] if request.gpus == "first" else select_gpus(request.gpus, present)


def run(options: Options, request: BenchRequest, env: Mapping[str, str], log: Logger) -> dict[str, Any]:
    """Bench one wheel; the report goes to wheelhouse/reports/bench-<flavour>.{json,md} and is returned."""
    targets = select_wheels(options.wheelhouse, request.wheel, request.flavour)
    if len(targets) != 1:
        raise ConfigError(f"bench needs one wheel, found {len(targets)}", "pass --flavour NAME or --wheel PATH")
    wheel, entry = targets[0]
    gpus = _gpus(request, env)
    work = owned_subdir(options.build_dir, "bench")
    with log.step(f"fresh venv + install {wheel.name}"):
        wenv = install(wheel, entry, venv=work / f"venv-{wheel.parent.name}", python=find_python(options, env),
                       owner=options.build_dir, env=env, extras=())
    imp = run_probe(wenv.python, "import", {}, wenv.env)
    if imp.result is None:
        raise SmokeFailed(f"the wheel does not import: {imp.summary}", "run nox -s smoke for the details")
    check_kv_pair(request.ctk, request.ctv, imp.result["system_info"])
    model = bench_model(request.model, options, wenv, log)
    native, build_s = None, 0.0
    if request.native:
        with log.step("native llama-bench (same source, same CMake flags, compiler cache)"):
            native, build_s, cache = build_llama_bench(options, entry, env, request.offline)
            log.info(f"native llama-bench built in {fmt_seconds(build_s)}; compiler cache {cache.describe()}")
    setup = BenchSetup(wenv, model, 99 if gpus else 0, request.threads or (os.cpu_count() or 4), request.reps,
                       request.ctk, request.ctv, native)
    cases = {}
    for i, case in enumerate(bench_cases(gpus)):
        samples, evidence = measure_case(setup, case, request.rounds, highlevel=i == 0, log=log)
        summary, ratios = summarize(samples)
        cases[case.name] = {"split_mode": case.sm or "none", "results": summary, "ratios_vs_native": ratios,
                            "evidence": evidence, "raw": samples}
    report = {"flavour": wheel.parent.name, "wheel": wheel.name, "model": str(model), "gpus": [g.name for g in gpus],
              "ngl": setup.ngl, "threads": setup.threads, "reps": request.reps, "rounds": request.rounds,
              "kv_cache": f"{request.ctk}-{request.ctv}", "llama_bench_build_seconds": round(build_s, 1),
              "cases": cases, "date": time.strftime("%Y-%m-%d")}
    write_report(options.wheelhouse / "reports", report, log)
    return report


def write_report(folder: Path, report: Mapping[str, Any], log: Logger) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"bench-{report['flavour']}.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = [row for name, c in report["cases"].items() for row in _rows(name, c["results"], c["ratios_vs_native"])]
    (folder / f"bench-{report['flavour']}.md").write_text(
        f"# bench {report['flavour']}\n\nGPU: {', '.join(report['gpus']) or 'none'}; model "
        f"{Path(report['model']).name}; ngl {report['ngl']}; threads {report['threads']}; KV cache "
        f"{report['kv_cache']}; spread = (max-min)/median, ! above {SPREAD_LIMIT:.0%}\n\n"
        f"{render_markdown(HEADER, rows)}\n")
    log.table("bench summary", HEADER, rows)


def request_from_args(args: argparse.Namespace) -> BenchRequest:
    return BenchRequest(wheel=args.wheel, flavour=args.flavour, model=args.model, reps=args.reps, rounds=args.rounds,
                        threads=args.threads, native=not args.no_native, require_gpu=args.require_gpu,
                        offline=args.offline, gpus=args.gpus, ctk=args.ctk, ctv=args.ctv)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``bench`` subcommand's arguments; the caller sets its handler."""
    b: argparse.ArgumentParser = sub.add_parser("bench", help="wheel vs native llama-bench on the same GPU(s), model "
                                                "and flags")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--wheel", help="one wheel file")
    g.add_argument("--flavour", help="one flavour folder of the wheelhouse, e.g. cu130-sm90")
    b.add_argument("--model", default="1b", help="1b (default: TinyLlama-1.1B shape, random weights, Q4_K_M), 8b "
                   "(Llama-3-8B shape, random Q4_K, ~4.6 GB, written once and cached), or a GGUF path")
    b.add_argument("--reps", type=int, default=10, help="repetitions per test and round, after one warm-up "
                   "(llama-bench -r; default 10)")
    b.add_argument("--rounds", type=int, default=3, help="interleaved native/wheel rounds (default 3)")
    b.add_argument("--threads", type=int, help="CPU threads for both sides (default: all cores)")
    b.add_argument("--gpus", default="first", help="first (default: one card), all, or nvidia-smi indices like "
                   "0,1: one card, then layer and tensor split over all of them")
    b.add_argument("--ctk", default="f16", choices=sorted(KV_TYPES), help="K cache type (llama-bench -ctk); only "
                   "pairs the wheel compiled flash-attention kernels for (its FA_QUANTS) are accepted")
    b.add_argument("--ctv", default="f16", choices=sorted(KV_TYPES), help="V cache type (llama-bench -ctv); see --ctk")
    b.add_argument("--no-native", action="store_true", help="skip building and running llama-bench")
    b.add_argument("--require-gpu", action="store_true", help="no GPU is an error, not a CPU bench")
    b.add_argument("--offline", action="store_true", help="take the sdist from the prefetch folder, never the network")
    return b
