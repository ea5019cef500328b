"""``nox -s smoke``: install each wheel from the wheelhouse into a fresh venv and prove it works.

Checks, each in its own process: import and GPU offload support; arch coverage of every GPU present
(native / PTX JIT / cannot run; a wheel that cannot run is refused before any model loads); full
offload with every layer on the GPU; GPU vs CPU agreement (greedy tokens and first-step logits);
and the OpenAI-compatible server on a free loopback port, streaming included, with nothing left
running afterwards. Without a GPU, the GPU checks are skipped unless --require-gpu.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from llama_wheels import cmd, manifest
from llama_wheels.archs import Arch, ArchSet, finish, parse_arch_set
from llama_wheels.check import our_wheels
from llama_wheels.clean import owned_subdir, remove_tree_within
from llama_wheels.config import Options
from llama_wheels.coverage import coverage_verdict
from llama_wheels.detect import Gpu, find_gpus, find_pythons
from llama_wheels.errors import ConfigError, FatalError, SmokeFailed
from llama_wheels.log import Logger, fmt_seconds, render_markdown
from llama_wheels.wheels import verify

Status = Literal["pass", "fail", "skip", "warn"]
PROBE = Path(__file__).with_name("_probe.py")
PROMPT = "Hello, the capital of France is"
AGREE_STEPS = 8
LOGIT_TOL = 0.1  # max |logit_gpu - logit_cpu| on the first step, absolute


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    seconds: float = 0.0


@dataclass
class SmokeReport:
    flavour: str
    wheel: str
    gpus: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)


@dataclass(frozen=True)
class GpuRun:
    """One GPU generation run: which cards are visible, and how the model is split over them."""

    name: str
    visible: str  # CUDA_VISIBLE_DEVICES
    split_mode: int | None = None  # llama.cpp: 1 = layer, 2 = row; None = the default
    tensor_split: tuple[float, ...] | None = None


def select_gpus(spec: str, gpus: list[Gpu]) -> list[Gpu]:
    """``all`` or a list like ``0,1`` (nvidia-smi indices) -> the GPUs to check."""
    if spec.strip() == "all":
        return list(gpus)
    present = {g.index: g for g in gpus}
    chosen: list[Gpu] = []
    for tok in spec.split(","):
        tok = tok.strip()
        if not tok.isdigit():
            raise ConfigError(f"--gpus '{spec}' is not 'all' or a list of GPU indices",
                              "write --gpus all or --gpus 0,1")
        if int(tok) not in present:
            raise ConfigError(f"GPU {tok} is not present", "present: " + (", ".join(map(str, present)) or "none"))
        if present[int(tok)] not in chosen:
            chosen.append(present[int(tok)])
    return chosen


def gpu_runs(selected: list[Gpu]) -> list[GpuRun]:
    """One run per card (the guide's --main_gpu, done with CUDA_VISIBLE_DEVICES), then, with several
    cards, the model split over all of them by layer and by row (peer copies a single card never does)."""
    runs = [GpuRun(f"GPU {g.index}", str(g.index)) for g in selected]
    if len(selected) > 1:
        visible = ",".join(str(g.index) for g in selected)
        even = tuple(1.0 for _ in selected)
        runs += [GpuRun(f"split by layer over GPUs {visible}", visible, 1, even),
                 GpuRun(f"split by row over GPUs {visible}", visible, 2, even)]
    return runs


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def probe(venv_python: str, check: str, args: Mapping[str, Any], env: Mapping[str, str],
          timeout: float = 600) -> tuple[dict[str, Any] | None, str]:
    """Run one probe check in its own process. Returns (result or None, output)."""
    res = cmd.run([venv_python, str(PROBE), check, json.dumps(dict(args))], env=env, capture=True, check=False,
                  quiet=True, timeout=timeout)
    line = next((ln for ln in reversed(res.stdout.splitlines()) if ln.startswith("RESULT ")), None)
    if res.returncode != 0 or line is None:
        if res.returncode < 0:
            why = f"crashed with {signal.Signals(-res.returncode).name}"
        else:
            why = f"exit code {res.returncode}"
        tail = " | ".join(res.stdout.strip().splitlines()[-3:])
        return None, f"{why}: {tail}"
    return json.loads(line[len("RESULT "):]), res.stdout


def offloaded(output: str) -> tuple[int, int] | None:
    """``load_tensors: offloaded 5/5 layers to GPU`` -> (5, 5)."""
    m = re.search(r"offloaded (\d+)/(\d+) layers to GPU", output)
    return (int(m[1]), int(m[2])) if m else None


def entry_arch_set(entry: Mapping[str, Any], reported: list[int]) -> ArchSet | None:
    if entry.get("archs"):
        return parse_arch_set(str(entry["archs"]), ptx="none", source="manifest")
    if reported:  # no manifest: trust the binary's ARCHS as SASS
        return finish([Arch(n // 10, "", "real") for n in reported], ptx="none",  # finish() applies 12X -> 12Xa
                      source="ARCHS reported by the library")
    return None


def make_venv(path: Path, python: str, owner: Path) -> str:
    from virtualenv import cli_run

    if path.exists():
        remove_tree_within(path, owner)
    cli_run([str(path), "--python", python, "--no-periodic-update", "--quiet"])
    return str(path / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))


def http(method: str, url: str, body: Mapping[str, Any] | None = None, timeout: float = 60) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    """``python -m llama_cpp.server`` as the guide starts it, on a loopback port; always stopped."""

    def __init__(self, venv_python: str, model: Path, port: int, n_gpu_layers: int, log_path: Path,
                 env: Mapping[str, str], extra: tuple[str, ...] = ()) -> None:
        self.args = [venv_python, "-m", "llama_cpp.server", "--model", str(model), "--n_gpu_layers", str(n_gpu_layers),
                     "--main_gpu", "0", "--chat_format", "chatml", "--host", "127.0.0.1", "--port", str(port),
                     "--n_ctx", "256", *extra]
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.proc = cmd.start(self.args, env=self.env, log=self.log_path)
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise SmokeFailed(f"the server exited with code {self.proc.returncode} before it was ready: "
                                  + " | ".join(tail), f"see {self.log_path}")
            try:
                status, _ = http("GET", self.base + "/v1/models", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise SmokeFailed(f"the server was not ready within {timeout:.0f} s", f"see {self.log_path}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except (ProcessLookupError, AttributeError):
                self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)

    @property
    def stopped(self) -> bool:
        return self.proc is None or self.proc.poll() is not None


def server_checks(srv: Server) -> list[Check]:
    out: list[Check] = []

    def timed(name: str, fn: Any) -> None:
        t0 = time.monotonic()
        try:
            status, detail = fn()
        except (OSError, ValueError, KeyError) as exc:
            status, detail = "fail", f"{type(exc).__name__}: {exc}"
        out.append(Check(name, status, detail, time.monotonic() - t0))

    def models() -> tuple[Status, str]:
        code, body = http("GET", srv.base + "/v1/models")
        ids = [m["id"] for m in json.loads(body)["data"]] if code == 200 else []
        return ("pass", f"200, models: {', '.join(ids)}") if ids else ("fail", f"HTTP {code}: {body[:200]!r}")

    def completions() -> tuple[Status, str]:
        code, body = http("POST", srv.base + "/v1/completions", {"prompt": PROMPT, "max_tokens": 8, "temperature": 0})
        if code != 200:
            return "fail", f"HTTP {code}: {body[:200]!r}"
        data = json.loads(body)
        n = data["usage"]["completion_tokens"]
        return ("pass" if n > 0 else "fail"), f"200, {n} tokens: {data['choices'][0]['text']!r}"

    def chat() -> tuple[Status, str]:
        msg = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8, "temperature": 0}
        code, body = http("POST", srv.base + "/v1/chat/completions", msg)
        if code != 200:
            return "fail", f"HTTP {code}: {body[:200]!r}"
        data = json.loads(body)
        return "pass", f"200, {data['usage']['completion_tokens']} tokens, role {data['choices'][0]['message']['role']}"

    def stream() -> tuple[Status, str]:
        msg = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8, "temperature": 0, "stream": True}
        code, body = http("POST", srv.base + "/v1/chat/completions", msg)
        events = [ln[5:].strip() for ln in body.decode("utf-8", "replace").splitlines() if ln.startswith("data:")]
        chunks = [json.loads(e) for e in events if e and e != "[DONE]"]
        if code != 200 or not chunks or events[-1] != "[DONE]":
            return "fail", f"HTTP {code}, {len(chunks)} chunks, last event {events[-1] if events else None!r}"
        return "pass", f"200, {len(chunks)} SSE chunks ending in [DONE]"

    def docs() -> tuple[Status, str]:
        code, body = http("GET", srv.base + "/docs")
        ok = code == 200 and b"swagger" in body.lower()
        return ("pass" if ok else "fail"), f"HTTP {code}" + (", Swagger UI" if ok else "")

    for name, fn in (("server GET /v1/models", models), ("server POST /v1/completions", completions),
                     ("server POST /v1/chat/completions", chat), ("server chat streaming", stream),
                     ("server GET /docs", docs)):
        timed(name, fn)
    return out


def smoke_one(wheel: Path, entry: Mapping[str, Any], *, options: Options, model: Path, python: str,
              gpus: list[Gpu], require_gpu: bool, port: int | None, env: Mapping[str, str], log: Logger,
              ) -> SmokeReport:
    flavour = wheel.parent.name
    rep = SmokeReport(flavour, wheel.name, gpus=[f"{g.index}: {g.name} (sm_{g.compute_cap})" for g in gpus])
    work = owned_subdir(options.build_dir, "smoke")

    def add(name: str, status: Status, detail: str, t0: float) -> None:
        rep.checks.append(Check(name, status, detail, time.monotonic() - t0))
        (log.error if status == "fail" else log.warning if status == "warn" else log.info)(
            f"[{status}] {name}: {detail}")

    t0 = time.monotonic()
    with log.step(f"fresh venv + install {wheel.name}"):
        venv_py = make_venv(work / f"venv-{flavour}", python, options.build_dir)
        extras = ",".join(entry.get("extras") or (["server"] if "server" in entry.get("variants", []) else []))
        version = entry.get("version") or wheel.name.split("-")[1]
        req = f"llama-cpp-python{f'[{extras}]' if extras else ''}=={version}"
        cmd.run([venv_py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
                 "--find-links", str(wheel.parent), req], env=env)
    add("install from wheelhouse only", "pass", f"{req} (--no-index)", t0)
    # nvidia-smi numbers cards in PCI bus order; make CUDA_VISIBLE_DEVICES mean the same cards.
    run_env = {**{k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
               "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    t0 = time.monotonic()
    imp, out = probe(venv_py, "import", {}, run_env)
    if imp is None:
        add("import", "fail", out, t0)
        return rep
    archs = ",".join(map(str, imp["archs"])) or "none (CPU build)"
    add("import", "pass", f"llama_cpp {imp['version']}, ARCHS = {archs}", t0)
    rep.numbers["system_info"] = imp["system_info"]
    cuda_build = bool(imp["archs"]) or entry.get("archs") is not None
    gpu_ok = bool(gpus) and cuda_build
    t0 = time.monotonic()
    if not gpus:
        add("GPU offload support", "fail" if require_gpu else "skip", "no GPU found" +
            (" (--require-gpu)" if require_gpu else ": skipped"), t0)
    elif not cuda_build:
        add("GPU offload support", "fail" if require_gpu else "skip", "this is a CPU build", t0)
    else:
        add("GPU offload support", "pass" if imp["gpu_offload"] else "fail",
            f"llama_supports_gpu_offload() = {imp['gpu_offload']}", t0)
        gpu_ok = imp["gpu_offload"]
    runnable: list[Gpu] = []
    if gpus and cuda_build:
        arch_set = entry_arch_set(entry, imp["archs"])
        for g in gpus:
            t0 = time.monotonic()
            if arch_set is None:
                add(f"arch coverage GPU {g.index}", "fail", "the wheel reports no CUDA archs", t0)
                continue
            cov = coverage_verdict(g.compute_cap, arch_set)
            status: Status = {"native": "pass", "ptx-jit": "warn", "cannot-run": "fail"}[cov.kind]  # type: ignore[assignment]
            add(f"arch coverage GPU {g.index} ({g.name}, sm_{g.compute_cap})", status, f"{cov.kind}: {cov.message}", t0)
            if cov.kind != "cannot-run":
                runnable.append(g)
        if not runnable:
            gpu_ok = False
        if not gpu_ok and any(c.status == "fail" for c in rep.checks):
            log.error("refusing to load a model: this wheel cannot run on the GPU(s) present")
            return rep
    gen_args = {"model": str(model), "prompt": PROMPT, "n_tokens": 16}
    t0 = time.monotonic()
    cpu, out = probe(venv_py, "generate", {**gen_args, "n_gpu_layers": 0}, run_env)
    if cpu is None:
        add("generate (CPU)", "fail", out, t0)
        return rep
    add("generate (CPU)", "pass" if cpu["tokens"] else "fail",
        f"{len(cpu['tokens'])} tokens at {cpu['tok_per_s']} tok/s: {cpu['text']!r}", t0)
    rep.numbers["cpu_tok_per_s"] = cpu["tok_per_s"]
    runs = gpu_runs(runnable) if gpu_ok else []
    if len(runnable) < len(gpus):  # a mixed machine: split runs only over cards that can all run the wheel
        runs = [r for r in runs if r.split_mode is None]
    for run in runs:
        t0 = time.monotonic()
        args = {**gen_args, "n_gpu_layers": -1, "split_mode": run.split_mode,
                "tensor_split": list(run.tensor_split) if run.tensor_split else None}
        gpu, out = probe(venv_py, "generate", args, {**run_env, "CUDA_VISIBLE_DEVICES": run.visible})
        if gpu is None:
            add(f"full offload ({run.name})", "fail", out, t0)
            continue
        off = offloaded(out)
        full = off is not None and off[0] == off[1]
        add(f"full offload ({run.name})", "pass" if full else "fail",
            f"offloaded {off[0]}/{off[1]} layers to GPU" if off
            else "no 'offloaded N/M layers' line in the log", t0)
        rep.numbers.setdefault("gpu_tok_per_s", {})[run.name] = gpu["tok_per_s"]
        t0 = time.monotonic()
        same = cpu["tokens"][:AGREE_STEPS] == gpu["tokens"][:AGREE_STEPS]
        diff = max(abs(a - b) for a, b in zip(cpu["first_logits"], gpu["first_logits"], strict=True))
        ok = same and diff <= LOGIT_TOL
        add(f"GPU vs CPU agreement ({run.name})", "pass" if ok else "fail",
            f"first {AGREE_STEPS} greedy tokens {'equal' if same else 'DIFFER'}; max |Δlogit| = {diff:.4f} "
            f"(tolerance {LOGIT_TOL}); {gpu['tok_per_s']} tok/s", t0)
        rep.numbers.setdefault("max_logit_diff", {})[run.name] = diff
    if extras and "server" in extras.split(","):
        port_ = port or free_port()
        t0 = time.monotonic()
        if port and port_in_use(port):
            add("server start", "fail", f"port {port} is already in use; pass another --port or omit it", t0)
            return rep
        srv_env = {**run_env, "CUDA_VISIBLE_DEVICES": ",".join(str(g.index) for g in runnable)} if runnable else run_env
        split = ("--tensor_split", *(["1"] * len(runnable))) if len(runnable) > 1 else ()
        srv = Server(venv_py, model, port_, -1 if gpu_ok else 0, work / f"server-{flavour}.log", srv_env, split)
        try:
            with srv:
                srv.wait_ready()
                add("server start", "pass", f"ready on {srv.base} in {fmt_seconds(time.monotonic() - t0)}", t0)
                for c in server_checks(srv):
                    add(c.name, c.status, c.detail, time.monotonic() - c.seconds)
        except SmokeFailed as exc:
            add("server start", "fail", exc.one_line(), t0)
        t0 = time.monotonic()
        add("server stopped", "pass" if srv.stopped and not port_in_use(port_) else "fail",
            f"process {srv.proc.pid if srv.proc else '-'} gone, port {port_} free", t0)
    return rep


def write_reports(folder: Path, rep: SmokeReport) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    j = folder / f"smoke-{rep.flavour}.json"
    j.write_text(json.dumps(asdict(rep) | {"ok": rep.ok}, indent=2) + "\n")
    rows = [[c.name, c.status.upper() if c.status == "fail" else c.status, c.detail.replace("|", "/"),
             fmt_seconds(c.seconds)] for c in rep.checks]
    md = folder / f"smoke-{rep.flavour}.md"
    md.write_text(f"# smoke {rep.flavour}: {'PASS' if rep.ok else 'FAIL'}\n\n{rep.wheel}; GPUs: "
                  f"{', '.join(rep.gpus) or 'none'}\n\n"
                  f"{render_markdown(['check', 'result', 'detail', 'time'], rows)}\n")
    return j, md


def select_wheels(options: Options, wheel: str | None, flavour: str | None) -> list[tuple[Path, dict[str, Any]]]:
    entries = manifest.entries(options.wheelhouse)
    if wheel:
        p = Path(wheel)
        if not p.is_file():
            raise ConfigError(f"wheel {wheel} does not exist", "pass a .whl path, or --flavour NAME")
        key = next((k for k, e in entries.items() if e.get("filename") == p.name), None)
        return [(p, entries.get(key, {}) if key else {})]
    found = our_wheels(options.wheelhouse)
    if flavour:
        found = [w for w in found if w.parent.name == flavour]
        if not found:
            flavours = sorted({w.parent.name for w in our_wheels(options.wheelhouse)})
            raise ConfigError(f"no wheel for flavour '{flavour}' in {options.wheelhouse}",
                              f"built flavours: {', '.join(flavours) or 'none (run nox -s build_cuda)'}")
    if not found:
        raise ConfigError(f"no wheels in {options.wheelhouse}", "run nox -s build_cuda (or build_cpu) first")
    out = []
    for w in found:
        key = w.relative_to(options.wheelhouse).as_posix()
        out.append((w, entries.get(key, {})))
    return out


def cmd_smoke(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    from llama_wheels.cli import _options
    from llama_wheels.model import cached_model, validate

    options = _options({}, env, log)
    targets = select_wheels(options, args.wheel, args.flavour)
    if args.model:
        model = Path(args.model)
        validate(model)
    else:
        with log.step("smoke model (written with gguf, cached)"):
            model = cached_model(options.cache_dir)
            validate(model)
        log.info(f"model: {model}")
    if args.port and port_in_use(args.port):
        raise ConfigError(f"port {args.port} is already in use", "pass another --port, or omit it for a free one")
    pythons = find_pythons([options.python], env, os.name == "nt")
    python = pythons.get(options.python)
    if python is None:
        raise ConfigError(f"Python {options.python} was not found for the smoke venvs",
                          f"install Python {options.python} or set LLAMA_WHEELS_PYTHON")
    _, _, present = find_gpus(env)
    gpus = select_gpus(args.gpus, present)
    log.info("GPUs: " + (", ".join(f"{g.index}: {g.name} sm_{g.compute_cap}" for g in gpus) or "none")
             + (f" (selected from {len(present)})" if len(gpus) != len(present) else ""))
    reports = []
    for wheel, entry in targets:
        with log.step(f"smoke {wheel.parent.name}"):
            try:
                verify(wheel, entry.get("sha256"))  # RECORD and the manifest's sha256, before any install
                rep = smoke_one(wheel, entry, options=options, model=model, python=python, gpus=gpus,
                                require_gpu=args.require_gpu, port=args.port, env=env, log=log)
            except FatalError as exc:
                rep = SmokeReport(wheel.parent.name, wheel.name, checks=[Check("smoke", "fail", exc.one_line())])
                log.error(exc.one_line())
        _, md = write_reports(options.wheelhouse / "reports", rep)
        summary = env.get("GITHUB_STEP_SUMMARY")
        if summary:
            with Path(summary).open("a", encoding="utf-8") as f:
                f.write(md.read_text() + "\n")
        reports.append(rep)
    rows = [[r.flavour, "PASS" if r.ok else "FAIL", str(sum(c.status == "pass" for c in r.checks)),
             str(sum(c.status == "fail" for c in r.checks)), str(sum(c.status in ("skip", "warn") for c in r.checks))]
            for r in reports]
    log.table("smoke summary", ["flavour", "result", "passed", "failed", "skipped/warned"], rows)
    bad = [r for r in reports if not r.ok]
    if bad:
        first = next(c for c in bad[0].checks if c.status == "fail")
        raise SmokeFailed(f"smoke failed for {bad[0].flavour}: {first.name}: {first.detail.splitlines()[0]}",
                          f"see wheelhouse/reports/smoke-{bad[0].flavour}.md")
    return 0


def add_parser(sub: Any) -> None:
    s = sub.add_parser("smoke", help="install from the wheelhouse into fresh venvs and prove each wheel works")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--wheel", help="one wheel file")
    g.add_argument("--flavour", help="one flavour folder of the wheelhouse, e.g. cu130-sm90")
    s.add_argument("--model", help="a GGUF model (default: a small one written by llama-wheels)")
    s.add_argument("--require-gpu", action="store_true", help="a missing GPU is a failure, not a skip")
    s.add_argument("--offline", action="store_true", help="install only from local folders (always the case)")
    s.add_argument("--port", type=int, help="server port (default: a free one)")
    s.add_argument("--gpus", default="all", help="all, or nvidia-smi indices like 0,1: checks run per card, "
                                                 "then split over all of them")
    s.set_defaults(func=cmd_smoke)
