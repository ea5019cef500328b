"""``llama-wheels numerics``: measure teacher-forced agreement per model, and cross-check it with native
``llama-perplexity --kl-divergence`` built from the same source and CMake flags.

For each model (``embedded``, a path, or a PyPI model id): a pure-CPU reference run, then the run under
test (every layer on the GPU; with no GPU, a second CPU run with 1 thread and micro-batch 128), then
the embedded model's F32 vs Q4_0 negative control. With ``--native``: llama-perplexity writes its
``--kl-divergence-base`` on the CPU (GPUs hidden, ``--no-op-offload``), then ``--kl-divergence``
under the same conditions as our run under test, on the same model and text, with our scheme
(``-c 512 -b 512 --chunks 2``). Its "Mean KLD", "Same top p" and PPLs are parsed from stdout (the
final statistics; progress and "Final estimate" go to stderr) and compared with ours.
The numbers are printed and written to ``wheelhouse/reports/numerics-<flavour>.json``; each model's verdict
is ``verify.judge``'s (the real-model numbers are information with a gross-failure guard; see there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llama_wheels import agreement, cmd, numerics
from llama_wheels.config import Options
from llama_wheels.errors import ConfigError, SmokeFailed
from llama_wheels.log import Logger, render_markdown
from llama_wheels.verify.judge import GROSS_MEAN_KLD, MIN_SENSITIVITY


@dataclass(frozen=True)
class NativeKld:
    """What llama-perplexity --kl-divergence prints at the end (stdout)."""

    mean_kld: float
    max_kld: float
    p99_kld: float
    same_top: float  # fraction, 0..1
    ppl_test: float  # "Mean PPL(Q)"
    ppl_base: float  # "Mean PPL(base)"
    kld_err: float = math.nan  # the ± llama-perplexity prints after the mean KLD
    same_top_err: float = math.nan  # and after "Same top p" (fraction)


_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|nan|inf)"


def parse_native_kld(stdout: str) -> NativeKld:
    """Parse the final statistics block of ``llama-perplexity --kl-divergence``; ValueError names what is missing."""
    def grab(label: str) -> float:
        m = re.search(re.escape(label) + r"\s*:\s*" + _NUM, stdout)
        if m is None:
            raise ValueError(f"no '{label}' line in the llama-perplexity output")
        return float(m[1])

    def optional(label: str) -> float:  # the tail statistics are information; not every run prints them
        try:
            return grab(label)
        except ValueError:
            return math.nan

    def err(label: str) -> float:  # "Mean    KLD:   0.048049 ±   0.001234"
        m = re.search(re.escape(label) + r"\s*:\s*" + _NUM + r"\s*(?:±|\+/-)\s*" + _NUM, stdout)
        return float(m[2]) if m else math.nan

    return NativeKld(grab("Mean    KLD"), optional("Maximum KLD"), optional("99.0%   KLD"), grab("Same top p") / 100,
                     grab("Mean PPL(Q)"), grab("Mean PPL(base)"), err("Mean    KLD"), err("Same top p") / 100)


def parse_final_ppl(stderr: str) -> float:
    """``Final estimate: PPL = 12.3456 +/- 0.12345`` (the --kl-divergence-base run, on stderr)."""
    m = re.search(r"Final estimate: PPL = " + _NUM, stderr)
    if m is None:
        raise ValueError("no 'Final estimate: PPL' line in the llama-perplexity output")
    return float(m[1])


@dataclass(frozen=True)
class Tolerance:
    """How close our numbers must be to native llama-perplexity's on the same model, text and devices.

    The two are not bit-identical by construction: llama-perplexity keeps the base run's log-probs as
    16-bit steps of 16/65535 nats and drops tokens below -16 nats; it prints KLD with 6 decimals; and
    GPU kernels may pick other reduction orders from run to run. Top-1 can also differ on exact ties.
    """

    kld_rel: float = 0.10
    kld_abs: float = 5e-6
    top1_abs: float = 0.01  # one percentage point
    ppl_rel: float = 0.005
    max_ln_ppl_for_base: float = 8.0  # PPL(base) is compared only below e^8 (see compare_native)


def compare_native(ours: numerics.Agreement, native: NativeKld, tol: Tolerance = Tolerance()) -> list[str]:
    """Each disagreement beyond ``tol``, as a line; empty = ours agrees with native llama-perplexity."""
    out = []
    if abs(ours.kld.mean - native.mean_kld) > tol.kld_abs + tol.kld_rel * native.mean_kld:
        out.append(f"mean KLD {ours.kld.mean:.6g} vs native {native.mean_kld:.6g}")
    if abs(ours.top1 - native.same_top) > tol.top1_abs:
        out.append(f"top-1 {100 * ours.top1:.3f}% vs native 'Same top p' {100 * native.same_top:.3f}%")
    pairs = [("PPL(test)", ours.ppl_test, native.ppl_test)]
    # The base run's log-probs are stored from -16 nats up: a model whose mean NLL nears that (our random
    # embedded model: ln PPL 18.6; measured on the H100, native PPL(base) 3.07e6 against 1.15e8) gets a
    # clipped PPL(base) there. Compare it only where the clip cannot matter (KLD and top-1 always).
    if math.log(max(ours.ppl_ref, 1.0)) < tol.max_ln_ppl_for_base:
        pairs.insert(0, ("PPL(ref)", ours.ppl_ref, native.ppl_base))
    for name, a, b in pairs:
        if not math.isclose(a, b, rel_tol=tol.ppl_rel):
            out.append(f"{name} {a:.4f} vs native {b:.4f}")
    return out


def native_args(exe: Path, model: Path, text: Path, base_file: Path, *, ngl: int, test: bool,
                extra: tuple[str, ...] = ()) -> list[str]:
    """llama-perplexity with our scheme: chunks of 512, one sequence per decode, the first two chunks."""
    args = [str(exe), "-m", str(model), "-f", str(text), "-c", str(numerics.N_CTX), "-b", str(numerics.N_CTX),
            "--chunks", str(agreement.MAX_CHUNKS), "-ngl", str(ngl), "--kl-divergence-base", str(base_file)]
    return args + (["--kl-divergence"] if test else ["--no-op-offload"]) + list(extra)


#: llama-perplexity runs per step before "printed no statistics" is an error (its log can lose its tail)
NATIVE_ATTEMPTS = 3


def run_native(exe: Path, model: Path, work: Path, env: Mapping[str, str], *, gpu: bool,
               test_model: Path | None = None) -> dict[str, Any]:
    """Base on the pure CPU, then the test run (GPU, or 1 thread / micro-batch 128 without one) on
    ``test_model`` (default: the same model). Both outputs are kept in ``work``, stdout and stderr apart."""
    work.mkdir(parents=True, exist_ok=True)
    test_model = test_model or model
    base = work / f"{model.stem}.kld-base"
    extra = () if gpu else ("-t", "1", "-ub", "128")
    runs = (("base", native_args(exe, model, agreement.TEXT, base, ngl=0, test=False), agreement.cpu_env(env)),
            ("kld", native_args(exe, test_model, agreement.TEXT, base, ngl=99 if gpu else 0, test=True, extra=extra),
             env if gpu else agreement.cpu_env(env)))
    def parse(name: str, r: cmd.Completed) -> dict[str, Any]:
        if name == "base":
            return {"base_ppl": parse_final_ppl(r.stderr or "")}
        return asdict(parse_native_kld(r.stdout))

    found: dict[str, Any] = {}
    for name, argv, run_env in runs:
        for attempt in range(1, NATIVE_ATTEMPTS + 1):
            r = cmd.run(argv, env=run_env, capture=True, check=False)
            out = work / f"{test_model.stem}.{name}.stdout"
            out.write_text(r.stdout)
            out.with_suffix(".stderr").write_text(r.stderr or "")
            if r.returncode != 0:
                raise SmokeFailed(f"llama-perplexity ({name} run) failed with exit code {r.returncode}",
                                  f"see {out.with_suffix('.stderr')}")
            try:
                found |= parse(name, r)
                break
            except ValueError as exc:
                # llama.cpp logs through a queue drained by a thread, and the last lines can be lost when the
                # process exits (seen on the CPU machine: exit 0 and no statistics, the same run fine again)
                if attempt == NATIVE_ATTEMPTS:
                    raise SmokeFailed(f"llama-perplexity printed no statistics in {attempt} runs: {exc}",
                                      f"see {out}") from None
    return found


def judge_doc() -> str:
    """The rules the verdicts follow, for the report."""
    return (f"op-level conformance decides; real-model agreement is information, failing only on non-finite "
            f"values or mean KLD > {GROSS_MEAN_KLD:g} nat; the control must read >= {MIN_SENSITIVITY:g}x the "
            f"same model's GPU vs CPU (llama_wheels.verify.judge)")


def _native_entry(o: agreement.Outcome, nat: dict[str, Any]) -> dict[str, Any]:
    ours = numerics.Agreement.from_dict(o.numbers.get("control", o.numbers))
    diffs = compare_native(ours, NativeKld(**{k: nat[k] for k in NativeKld.__dataclass_fields__}))
    return nat | {"agrees": not diffs, "differences": diffs, "tolerance": asdict(Tolerance())}


@dataclass(frozen=True)
class NumericsRequest:
    wheel: str | None = None  # the wheel to measure; else the one wheel (or --flavour) of the wheelhouse
    flavour: str | None = None
    models: tuple[str, ...] = ("embedded",)  # embedded, a GGUF path, or a PyPI model id
    native: bool = False  # also build and run native llama-perplexity
    cpu: bool = False  # CPU vs CPU even where a GPU is present
    strict: bool = False  # SmokeFailed when a check does not pass
    offline: bool = False


def request_from_args(args: argparse.Namespace) -> NumericsRequest:
    return NumericsRequest(wheel=args.wheel, flavour=args.flavour, models=tuple(args.model or ["embedded"]),
                           native=args.native, cpu=args.cpu, strict=args.strict, offline=args.offline)


def run(options: Options, args: NumericsRequest, env: Mapping[str, str], log: Logger) -> dict[str, Any]:
    """Teacher-forced agreement per model, the negative control and (``native``) llama-perplexity's numbers;
    the report goes to wheelhouse/reports/numerics-<flavour>.{json,md} and is returned."""
    from llama_wheels.bench import build_llama_bench
    from llama_wheels.clean import owned_subdir
    from llama_wheels.detect import find_gpus, find_pythons
    from llama_wheels.model import cached_model, resolve_model
    from llama_wheels.smoke.probe import probe
    from llama_wheels.smoke.targets import select_wheels
    from llama_wheels.smoke.wheelenv import make_venv

    targets = select_wheels(options.wheelhouse, args.wheel, args.flavour)
    if len(targets) != 1:
        raise ConfigError(f"numerics needs one wheel, found {len(targets)}", "pass --flavour NAME or --wheel PATH")
    wheel, entry = targets[0]
    _, _, gpus = find_gpus(env)
    gpu = bool(gpus) and not args.cpu
    models = {spec: resolve_model(spec, options.cache_dir, options.prefetch_dir, args.offline, env)
              for spec in args.models}
    python = find_pythons([options.python], env, os.name == "nt").get(options.python)
    if python is None:
        raise ConfigError(f"Python {options.python} was not found", "install it or set LLAMA_WHEELS_PYTHON")
    work = owned_subdir(options.build_dir, "numerics")
    with log.step(f"fresh venv + install {wheel.name}"):
        venv_py = make_venv(work / f"venv-{wheel.parent.name}", python, options.build_dir)
        cmd.run([venv_py, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheel.parent),
                 f"llama-cpp-python=={entry.get('version') or wheel.name.split('-')[1]}"], env=env)
    run_env = {**{k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
               "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    test_env = {**run_env, "CUDA_VISIBLE_DEVICES": str(gpus[0].index)} if gpu else agreement.cpu_env(run_env)
    teacher = agreement.TeacherForced(probe, venv_py, work / f"runs-{wheel.parent.name}", run_env)
    exe = None
    if args.native:
        with log.step("native llama-perplexity (same source, same CMake flags, compiler cache)"):
            exe, build_s, cache = build_llama_bench(options, entry, env, args.offline, target="llama-perplexity")
            log.info(f"llama-perplexity built in {build_s:.0f} s; compiler cache {cache.describe()}")
    report: dict[str, Any] = {"flavour": wheel.parent.name, "wheel": wheel.name, "gpu": gpus[0].name if gpu else None,
                              "reference": agreement.REFERENCE_HOW, "judge": judge_doc(),
                              "models": {}, "date": time.strftime("%Y-%m-%d")}
    rows = []
    for spec, path in models.items():
        with log.step(f"{spec}: CPU reference vs {'GPU' if gpu else 'CPU (1 thread, micro-batch 128)'}"):
            t0 = time.monotonic()
            extra: dict[str, Any] = {} if gpu else {"op_offload": False, "threads": 1, "n_ubatch": 128}
            o = teacher.check(path, test_env, -1 if gpu else 0, **extra)
            entry_ = {"model": str(path), "status": o.status, "detail": o.detail, **o.numbers,
                      "seconds": round(time.monotonic() - t0, 1)}
            log.info(f"[{o.status}] {o.detail}")
        if exe is not None and o.numbers:
            with log.step(f"{spec}: native llama-perplexity --kl-divergence"):
                entry_["native"] = _native_entry(o, run_native(exe, path, work / "native", test_env, gpu=gpu))
                log.info(_native_line(entry_["native"]))
        report["models"][spec] = entry_
        rows.append(_row(spec, o.numbers, entry_.get("native")))
    with log.step("control: embedded model F32 vs Q4_0 (the comparison must see it)"):
        f32 = cached_model(options.cache_dir)
        q4, out = agreement.quantized_control(probe, venv_py, f32, run_env)
        if q4 is None:
            raise SmokeFailed(f"quantizing the control model failed: {out}", "see the output above")
        o = teacher.sensitivity(f32, q4, test_env, -1 if gpu else 0)
        ctl: dict[str, Any] = {"status": o.status, "detail": o.detail, **o.numbers.get("control", {})}
        log.info(f"[{o.status}] {o.detail}")
        if exe is not None and o.numbers.get("control"):
            try:
                ctl["native"] = _native_entry(o, run_native(exe, f32, work / "native", test_env, gpu=gpu,
                                                            test_model=q4))
            except SmokeFailed as exc:  # seen on the CPU machine: no KLD block for the Q4_0 control (H100: yes)
                log.warning(f"negative control, native: {exc.one_line()}")
                ctl["native"] = {"agrees": False, "error": exc.one_line()}
            log.info(_native_line(ctl["native"]))
        report["negative_control"] = ctl
        rows.append(_row("control F32 vs Q4_0", o.numbers.get("control", {}), ctl.get("native")))
    folder = options.wheelhouse / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"numerics-{wheel.parent.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    header = ["model", "KLD mean", "KLD p99", "KLD max", "top-1 %", "top-5 %", "PPL ref", "PPL test",
              "native KLD", "native top-1 %"]
    log.table(f"numerics {wheel.parent.name} ({'GPU ' + gpus[0].name if gpu else 'CPU vs CPU'})", header, rows)
    (folder / f"numerics-{wheel.parent.name}.md").write_text(
        f"# numerics {wheel.parent.name}\n\n{agreement.REFERENCE_HOW}; test: {'GPU ' + gpus[0].name if gpu else 'CPU'}"
        f"\n\n{render_markdown(header, rows)}\n")
    bad = [s for s, e in report["models"].items() if e["status"] != "pass"]
    if report.get("negative_control", {}).get("status") != "pass":
        bad.append("negative control")
    if bad and args.strict:
        raise SmokeFailed("numerics: " + ", ".join(bad) + " did not pass", f"see {folder}/numerics-*.md")
    return report


def _native_line(nat: Mapping[str, Any]) -> str:
    if "error" in nat:
        return f"native: {nat['error']}"
    return (f"native: mean KLD {nat['mean_kld']:.6f}, same top {100 * nat['same_top']:.3f}%, PPL {nat['ppl_base']:.4f}"
            f" / {nat['ppl_test']:.4f}; " + ("agrees with ours" if nat["agrees"] else
                                              "DIFFERS: " + "; ".join(nat["differences"])))


def _row(name: str, n: Mapping[str, Any], native: Mapping[str, Any] | None) -> list[str]:
    if not n:
        return [name, "failed", "", "", "", "", "", "", "", ""]
    return [name, f"{n['kld']['mean']:.3e}", f"{n['kld']['p99']:.3e}", f"{n['kld']['max']:.3e}",
            f"{100 * n['top1']:.2f}", f"{100 * n['top5']:.2f}", f"{n['ppl_ref']:.4f}", f"{n['ppl_test']:.4f}",
            f"{native['mean_kld']:.6f}" if native and "mean_kld" in native else "-",
            f"{100 * native['same_top']:.2f}" if native and "same_top" in native else "-"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The subcommand's arguments; the caller sets its handler."""
    s: argparse.ArgumentParser
    s = sub.add_parser("numerics", help="teacher-forced GPU vs CPU numbers per model (KLD, top-1/5, PPL), the "
                                        "negative control, and native llama-perplexity's numbers beside ours")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--wheel", help="the wheel to measure (default: the one wheel in the wheelhouse)")
    g.add_argument("--flavour", help="the flavour folder of the wheelhouse to measure")
    s.add_argument("--model", action="append", help="embedded (default), a GGUF path, or a PyPI model id; repeatable")
    s.add_argument("--native", action="store_true", help="also build and run native llama-perplexity")
    s.add_argument("--cpu", action="store_true", help="CPU vs CPU even where a GPU is present")
    s.add_argument("--strict", action="store_true", help="exit non-zero when a check does not pass")
    s.add_argument("--offline", action="store_true", help="models and wheels from the prefetch folder only")
    return s
