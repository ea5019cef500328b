"""``nox -s bench``: the wheel against native llama-bench, on the same GPU, model and flags.

Three measurements of pp512 / tg128 on one model (default: a TinyLlama-1.1B-shaped random-weight
llama, quantized to Q4_K_M by the wheel itself):
- the wheel's C API in llama-bench's own loop (``llama_decode`` + ``llama_synchronize``);
- the high-level ``Llama.eval`` API, with matched settings and with ``Llama()``'s defaults;
- native ``llama-bench`` built from the same extracted source with the same CMake flags (the
  shared compiler cache makes that a rebuild of seconds).
Runs are interleaved (native, wheel, native, wheel) so drift hits both; we report medians,
min-max and the ratios wheel/native.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llama_wheels import cmd
from llama_wheels.clean import owned_subdir
from llama_wheels.compcache import CacheProbe, CacheStats
from llama_wheels.config import Options
from llama_wheels.detect import find_gpus, find_pythons
from llama_wheels.errors import BuildFailed, ConfigError, SmokeFailed
from llama_wheels.log import Logger, fmt_seconds, render_markdown
from llama_wheels.model import BENCH, cached_model, validate
from llama_wheels.plan import ccache_env
from llama_wheels.smoke import make_venv, probe, select_wheels


def stats(values: Sequence[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
            "max": round(max(values), 1), "n": len(values)}


def parse_llama_bench(text: str) -> dict[str, list[float]]:
    """``llama-bench -o json``: a list of tests, each with n_prompt, n_gen and samples_ts."""
    start = text.index("[")
    data = json.loads(text[start:text.rindex("]") + 1])
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
                      offline: bool) -> tuple[Path, float, CacheStats]:
    from llama_wheels import sdist
    from llama_wheels.build import resolve_source

    src = sdist.extract(resolve_source(options, offline, env), owned_subdir(options.build_dir, "src"))
    bdir = owned_subdir(options.build_dir, f"bench-{entry.get('flavour', 'wheel')}")
    benv = {**env, **ccache_env(options)}
    t0 = time.monotonic()
    args = [str(a) for a in entry.get("cmake_args", [])]
    launch = next((a.split("=", 1)[1] for a in args if a.startswith("-DCMAKE_C_COMPILER_LAUNCHER=")), None)
    with CacheProbe(launch, benv, bdir) as probe:  # the launcher the wheel's build used
        benv |= probe.env
        cmd.run(["cmake", "-S", str(src / "vendor" / "llama.cpp"), "-B", str(bdir), "-G", "Ninja",
                 *native_cmake_args(args),
                 *wheel_compilers(options.build_dir / str(entry.get("flavour", "")))], env=benv, capture=True)
        cmd.run(["cmake", "--build", str(bdir), "--target", "llama-bench"], env=benv, log=bdir / "build.log")
        cache = probe.stats()
    exe = bdir / "bin" / ("llama-bench.exe" if os.name == "nt" else "llama-bench")
    if not exe.exists():
        raise BuildFailed(f"llama-bench was not built in {bdir}", f"see {bdir / 'build.log'}")
    return exe, time.monotonic() - t0, cache


def run_bench(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    from llama_wheels.cli import _options

    options = _options({}, env, log)
    targets = select_wheels(options, args.wheel, args.flavour)
    if len(targets) != 1:
        raise ConfigError(f"bench needs one wheel, found {len(targets)}", "pass --flavour NAME or --wheel PATH")
    wheel, entry = targets[0]
    _, _, gpus = find_gpus(env)
    if not gpus and args.require_gpu:
        raise SmokeFailed("no GPU found (--require-gpu)", "run bench on a GPU runner")
    ngl = 99 if gpus else 0
    python = find_pythons([options.python], env, os.name == "nt").get(options.python)
    if python is None:
        raise ConfigError(f"Python {options.python} was not found", "install it or set LLAMA_WHEELS_PYTHON")
    work = owned_subdir(options.build_dir, "bench")
    with log.step(f"fresh venv + install {wheel.name}"):
        venv_py = make_venv(work / f"venv-{wheel.parent.name}", python, options.build_dir)
        cmd.run([venv_py, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheel.parent),
                 f"llama-cpp-python=={entry.get('version') or wheel.name.split('-')[1]}"], env=env)
    run_env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if args.model:
        model = Path(args.model)
        validate(model)
    else:
        q4 = options.cache_dir / "models" / BENCH.name.replace(".gguf", "-Q4_K_M.gguf")
        if not q4.exists():
            with log.step("bench model: TinyLlama-1.1B shape, random weights, F16 -> Q4_K_M"):
                f16 = cached_model(options.cache_dir, BENCH)
                res, out = probe(venv_py, "quantize", {"src": str(f16), "dst": str(q4) + ".partial"}, run_env, 900)
                if res is None:
                    raise BuildFailed(f"quantizing the bench model failed: {out}", "see the output above")
                Path(str(q4) + ".partial").replace(q4)
        model = q4
    threads = args.threads or (os.cpu_count() or 4)
    native_exe = None
    build_s = 0.0
    if not args.no_native:
        with log.step("native llama-bench (same source, same CMake flags, compiler cache)"):
            native_exe, build_s, cache = build_llama_bench(options, entry, env, args.offline)
            log.info(f"native llama-bench built in {fmt_seconds(build_s)}; compiler cache {cache.describe()}")
    base = {"model": str(model), "ngl": ngl, "n_prompt": 512, "n_gen": 128, "threads": threads, "reps": args.reps}
    results: dict[str, dict[str, list[float]]] = {k: {"pp": [], "tg": []} for k in
                                                   ("native", "wheel_lowlevel", "wheel_highlevel", "wheel_defaults")}
    for round_ in range(args.rounds):
        if native_exe is not None:
            with log.step(f"round {round_ + 1}: native llama-bench"):
                nargs = [str(native_exe), "-m", str(model), "-p", "512", "-n", "128", "-ngl", str(ngl), "-fa", "1",
                         "-t", str(threads), "-r", str(args.reps), "-o", "json"]
                out = cmd.run(nargs, env=run_env, capture=True).stdout
                for k, v in parse_llama_bench(out).items():
                    results["native"][k] += v
        with log.step(f"round {round_ + 1}: wheel, low-level decode loop"):
            res, out = probe(venv_py, "bench_lowlevel", {**base, "flash_attn": "on"}, run_env)
            if res is None:
                raise SmokeFailed(f"the low-level bench failed: {out}", "see the output above")
            for k in ("pp", "tg"):
                results["wheel_lowlevel"][k] += res[k]
    with log.step("wheel, high-level Llama.eval (matched settings, then Llama() defaults)"):
        for key, fa in (("wheel_highlevel", "on"), ("wheel_defaults", "default")):
            res, out = probe(venv_py, "bench_highlevel", {**base, "flash_attn": fa}, run_env)
            if res is None:
                raise SmokeFailed(f"the high-level bench failed: {out}", "see the output above")
            for k in ("pp", "tg"):
                results[key][k] += res[k]
    summary = {k: {m: stats(v) for m, v in r.items() if v} for k, r in results.items() if r["pp"]}
    ratios = {}
    if "native" in summary:
        for k in ("wheel_lowlevel", "wheel_highlevel", "wheel_defaults"):
            ratios[k] = {m: round(summary[k][m]["median"] / summary["native"][m]["median"], 3) for m in ("pp", "tg")}
    report = {"flavour": wheel.parent.name, "wheel": wheel.name, "model": str(model), "gpus": [g.name for g in gpus],
              "ngl": ngl, "threads": threads, "reps": args.reps, "rounds": args.rounds,
              "llama_bench_build_seconds": round(build_s, 1), "results": summary, "ratios_vs_native": ratios,
              "raw": results, "date": time.strftime("%Y-%m-%d")}
    folder = options.wheelhouse / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"bench-{wheel.parent.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = []
    for k, r in summary.items():
        ratio = ratios.get(k, {})
        rows.append([k, f"{r['pp']['median']} ({r['pp']['min']}-{r['pp']['max']})",
                     f"{r['tg']['median']} ({r['tg']['min']}-{r['tg']['max']})",
                     f"{ratio['pp']:.3f}" if ratio else "-", f"{ratio['tg']:.3f}" if ratio else "-"])
    header = ["runner", "pp512 t/s median (min-max)", "tg128 t/s median (min-max)", "pp vs native", "tg vs native"]
    (folder / f"bench-{wheel.parent.name}.md").write_text(
        f"# bench {wheel.parent.name}\n\nGPU: {', '.join(g.name for g in gpus) or 'none'}; model {model.name}; "
        f"ngl {ngl}; threads {threads}\n\n{render_markdown(header, rows)}\n")
    log.table("bench summary", header, rows)
    return 0


def add_parser(sub: Any) -> None:
    b = sub.add_parser("bench", help="wheel vs native llama-bench on the same GPU, model and flags")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--wheel")
    g.add_argument("--flavour")
    b.add_argument("--model", help="a GGUF (default: TinyLlama-1.1B shape, random weights, Q4_K_M)")
    b.add_argument("--reps", type=int, default=5)
    b.add_argument("--rounds", type=int, default=2)
    b.add_argument("--threads", type=int)
    b.add_argument("--no-native", action="store_true", help="skip building and running llama-bench")
    b.add_argument("--require-gpu", action="store_true")
    b.add_argument("--offline", action="store_true")
    b.set_defaults(func=run_bench)
