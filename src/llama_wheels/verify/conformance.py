"""Op-level conformance of a wheel's own libraries, judged the way llama.cpp judges a backend.

llama.cpp's ``tests/test-backend-ops.cpp`` (in the sdist we built from, so the same source as the wheel)
is compiled against the ``libggml*.so`` inside the *installed* wheel: no second build of the kernels,
the binaries under test are the ones users get. In ``test`` mode it runs each op on the GPU backend and
on the CPU backend (in its reference mode) with random inputs, every weight type and many shapes, and
compares the two with that op's own error limit (normalized mean squared error, ``max_nmse_err`` per test
case upstream; 1e-7 unless the op says otherwise), plus NaN/inf checks. We run it for the ops a model run
uses (``DEFAULT_OPS``), and for the exact ops, shapes and types of one model's graph (prompt and token
shapes) written by ``graph_ops.cpp`` (ours) in the test-file format ``test-backend-ops --test-file`` reads.

Plan (``ConformancePlan``: what to compile, what to run) is separate from execution; the console
output is parsed into one ``OpCase`` per test case, so a failure names the op, its types and its shape.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llama_wheels import cmd
from llama_wheels.digest import sha256_file
from llama_wheels.errors import SmokeFailed, ToolNotFound

#: The ops a transformer's forward pass runs on a CUDA build (llama, gemma3, qwen2 and their kin): the
#: matmuls over every weight type, MoE matmuls, flash attention (the compiled K/V pairs; an uncompiled pair
#: is reported "not supported" by the CUDA backend itself), embeddings, rotary embeddings, softmax,
#: norms, copies into the KV cache, the element-wise and activation (unary/GLU) ops, and the fusions the
#: CUDA backend applies to a model's graph (test-backend-ops names them RMS_NORM_MUL_ADD, ROPE_SET_ROWS, ...).
DEFAULT_OPS: tuple[str, ...] = (
    "MUL_MAT", "MUL_MAT_ID", "FLASH_ATTN_EXT", "GET_ROWS", "ROPE", "SOFT_MAX", "RMS_NORM", "NORM", "CPY",
    "SET_ROWS", "ADD", "MUL", "SCALE", "CONT", "SILU", "GELU", "GELU_ERF", "SWIGLU", "GEGLU", "GEGLU_ERF",
    "SOFTCAP", "ADD_RMS_NORM", "RMS_NORM_MUL_ADD", "RMS_NORM_MUL_ROPE", "ROPE_SET_ROWS", "MUL_MAT_VEC_FUSION",
    "MUL_MAT_ID_FUSION", "TOPK_MOE",
)
#: On a CPU-only machine the CPU backend is compared with its own reference mode, which turns off what
#: differs between the two: graph fusions (RMS_NORM+MUL on this llama.cpp) and the tiled flash attention.
#: The plain ops run the same code on both sides, so only the fused paths are worth the time there.
CPU_OPS: tuple[str, ...] = ("RMS_NORM", "ADD_RMS_NORM", "RMS_NORM_MUL_ADD")
SOURCE = "tests/test-backend-ops.cpp"
GRAPH_OPS_CPP = Path(__file__).with_name("graph_ops.cpp")

Status = Literal["ok", "fail", "unsupported"]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: ``  MUL_MAT(type_a=q4_0,type_b=f32,m=16,...): OK``; a failure's details come first on the line (the
#: comparison prints them before the case's name): ``[MUL_MAT] ERR = 0.012 > 0.0005   MUL_MAT(...): FAIL``.
_CASE = re.compile(r"^(?P<pre>.*?)\s*(?<![^\s])(?P<op>[A-Z][A-Z0-9_]*)\((?P<params>.*)\): (?P<rest>.*?)\s*$")
_SUMMARY = re.compile(r"^\s*(\d+)/(\d+) tests passed\s*$")
_BACKEND = re.compile(r"^\s*Backend (\S+): (OK|FAIL)\s*$")
_BOTH_NAN = re.compile(r"\[[A-Z0-9_]+\] NaN at index \d+ \(\S+=-?nan \S+=-?nan\)")


@dataclass(frozen=True)
class OpCase:
    """One test case of test-backend-ops: the op, its parameters (types and shapes), how it ended."""

    op: str
    params: str
    status: Status
    detail: str = ""  # a failure: what the comparison printed, e.g. "[RMS_NORM] ERR = 1.2e-05 > 1e-07"

    def describe(self) -> str:
        return f"{self.op}({self.params})" + (f": {self.detail}" if self.detail else "")

    @property
    def both_nan(self) -> bool:
        """Failed only because *both* backends read NaN at the same place: the backend under test agrees
        with the reference; the inputs were NaN (seen for generic cases of a model's graph, whose random
        inputs can reach unwritten memory through views: ``[NONE] NaN at index 722 (CPU=-nan CPU=-nan)``)."""
        return self.status == "fail" and bool(_BOTH_NAN.fullmatch(self.detail))


@dataclass(frozen=True)
class OpRun:
    """One test-backend-ops invocation on one device."""

    backend: str  # e.g. CUDA0
    what: str  # "default ops" or "graph of <model>"
    argv: tuple[str, ...]
    cases: tuple[OpCase, ...]
    summary: tuple[int, int] | None  # (passed, run) as test-backend-ops printed it
    backend_ok: bool | None  # its "Backend CUDA0: OK/FAIL" line
    returncode: int
    seconds: float
    log: Path | None = None

    @property
    def failures(self) -> tuple[OpCase, ...]:
        """Failed cases; in a model's graph (generic cases) those where both backends read the same NaN are
        not counted (``inconclusive``): upstream's own cases keep upstream's verdict."""
        return tuple(c for c in self.cases if c.status == "fail" and not (self.generic and c.both_nan))

    @property
    def inconclusive(self) -> tuple[OpCase, ...]:
        return tuple(c for c in self.cases if self.generic and c.both_nan)

    @property
    def generic(self) -> bool:
        return self.what.startswith("graph of")

    def counts(self) -> Counter[str]:
        return Counter(c.status for c in self.cases)

    def per_op(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for c in self.cases:
            out.setdefault(c.op, {"ok": 0, "fail": 0, "unsupported": 0})[c.status] += 1
        return out


def parse_output(text: str) -> tuple[list[OpCase], tuple[int, int] | None, bool | None]:
    """Parse test-backend-ops' console output (``test`` mode): the cases, the "N/M tests passed" line and
    the "Backend X: OK|FAIL" line. Colours are stripped; lines that are not a case are ignored."""
    cases: list[OpCase] = []
    summary: tuple[int, int] | None = None
    backend_ok: bool | None = None
    for raw in text.splitlines():
        line = _ANSI.sub("", raw)
        if m := _SUMMARY.match(line):
            summary = (int(m[1]), int(m[2]))
            continue
        if m := _BACKEND.match(line):
            backend_ok = m[2] == "OK"
            continue
        m = _CASE.match(line)
        if m is None:
            continue
        rest, pre = m["rest"], m["pre"].strip()
        status: Status
        if rest.endswith("OK"):
            status = "ok"
        elif rest.endswith("FAIL"):
            status = "fail"
        elif rest.startswith("not supported"):
            status = "unsupported"
        else:
            continue
        detail = " ".join(p for p in (pre, rest[: -len("FAIL")].strip() if status == "fail" else "") if p)
        cases.append(OpCase(m["op"], m["params"], status, detail))
    return cases, summary, backend_ok


@dataclass(frozen=True)
class ConformancePlan:
    """What to compile and what to run, decided before anything runs (printable, unit-tested)."""

    source_root: Path  # vendor/llama.cpp of the sdist the wheel was built from
    lib_dir: Path  # llama_cpp/lib of the installed wheel
    work: Path  # where the test programs are built
    cxx: str
    ops: tuple[str, ...] = DEFAULT_OPS
    jobs: int = 1  # test-backend-ops -j (1: one case at a time; the output stays in order)

    @property
    def exe(self) -> Path:
        return self.work / "test-backend-ops"

    @property
    def graph_exe(self) -> Path:
        return self.work / "graph-ops"

    def _link(self) -> list[str]:
        return [f"-L{self.lib_dir}", f"-Wl,-rpath,{self.lib_dir}", "-pthread"]

    def compile_argv(self) -> list[str]:
        """test-backend-ops against the wheel's libggml/libggml-base (public headers only: ggml.h,
        ggml-alloc.h, ggml-backend.h, ggml-cpp.h); -O1: the kernels under test are in the wheel, not here."""
        inc = self.source_root / "ggml" / "include"
        return [self.cxx, "-std=c++17", "-O1", f"-I{inc}", str(self.source_root / SOURCE), "-o", str(self.exe),
                *self._link(), "-lggml", "-lggml-base"]

    def graph_compile_argv(self) -> list[str]:
        """Our graph-ops exporter against the wheel's libllama (llama.h, and src/llama-ext.h for
        ``llama_graph_reserve``, which libllama exports)."""
        r = self.source_root
        return [self.cxx, "-std=c++17", "-O1", f"-I{r / 'include'}", f"-I{r / 'ggml' / 'include'}", f"-I{r / 'src'}",
                str(GRAPH_OPS_CPP), "-o", str(self.graph_exe), *self._link(), "-lllama", "-lggml", "-lggml-base"]

    def run_argv(self, backend: str, test_file: Path | None = None) -> list[str]:
        argv = [str(self.exe), "test", "-b", backend]
        if test_file is not None:
            argv += ["--test-file", str(test_file)]
        else:
            argv += ["-o", ",".join(self.ops)]
        return argv + (["-j", str(self.jobs)] if self.jobs > 1 else [])

    def describe(self) -> str:
        return (f"test-backend-ops ({SOURCE} of the same source) linked against {self.lib_dir}; ops: "
                + ",".join(self.ops))


def find_cxx(env: Mapping[str, str]) -> str:
    """The host C++ compiler the build used (CXX, else c++/g++/clang++ on PATH)."""
    for name in ([env["CXX"]] if env.get("CXX") else []) + ["c++", "g++", "clang++"]:
        found = cmd.which(shlex.split(name)[0], env)
        if found:
            return found
    raise ToolNotFound("no C++ compiler (c++, g++ or clang++) on PATH for the op-level check",
                       "install the compiler the build used (e.g. apt-get install g++), or set CXX")


def compile_tools(plan: ConformancePlan, env: Mapping[str, str], graph: bool = False) -> float:
    """Compile test-backend-ops (and, with ``graph``, the graph exporter) unless already built for this
    plan (the command line is recorded beside each program). Returns the seconds spent."""
    plan.work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    todo = [(plan.exe, plan.compile_argv(), plan.source_root / SOURCE)]
    if graph:
        todo.append((plan.graph_exe, plan.graph_compile_argv(), GRAPH_OPS_CPP))
    for exe, argv, source in todo:
        stamp = exe.with_suffix(".cmdline")
        key = f"{shlex.join(argv)}\nsource sha256 {sha256_file(source)}"
        if exe.exists() and stamp.exists() and stamp.read_text() == key:
            continue
        cmd.run(argv, env=env, capture=True)
        stamp.write_text(key)
    return time.monotonic() - t0


def export_graph(plan: ConformancePlan, model: Path, out: Path, env: Mapping[str, str]) -> int:
    """Write the ops of ``model``'s graph (prompt of 512 tokens and one token, flash attention on and off)
    as a test file; returns the number of distinct cases. The model loads on the CPU (GPUs hidden)."""
    res = cmd.run([str(plan.graph_exe), str(model), str(out)], env={**env, "CUDA_VISIBLE_DEVICES": ""},
                  capture=True, check=False, quiet=True)
    if res.returncode != 0 or not out.exists():
        tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-3:])
        raise SmokeFailed(f"exporting the ops of {model.name}'s graph failed (exit {res.returncode}): {tail}",
                          "check that the model loads with this wheel (the generate checks above)")
    return sum(1 for line in out.read_text().splitlines() if line.strip())


def run_ops(plan: ConformancePlan, backend: str, env: Mapping[str, str], *, what: str = "default ops",
            test_file: Path | None = None, timeout: float = 1800, log: Path | None = None) -> OpRun:
    """One test-backend-ops run on ``backend``; its output goes to ``log`` and is parsed."""
    argv = plan.run_argv(backend, test_file)
    t0 = time.monotonic()
    res = cmd.run(argv, env=env, capture=True, check=False, quiet=True, timeout=timeout)
    text = res.stdout + ("\n" + res.stderr if res.stderr else "")
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"+ {shlex.join(argv)}\n{text}")
    cases, summary, backend_ok = parse_output(res.stdout)
    return OpRun(backend, what, tuple(argv), tuple(cases), summary, backend_ok, res.returncode,
                 time.monotonic() - t0, log)


@dataclass(frozen=True)
class OpConformance:
    """Every op-level run on one GPU: the evidence ``judge`` reads."""

    device: str  # e.g. "0: NVIDIA H200", or "CPU"
    runs: tuple[OpRun, ...] = field(default_factory=tuple)
    compile_seconds: float = 0.0


def backend_name(visible_index: int = 0) -> str:
    """test-backend-ops names the CUDA devices it sees CUDA0.. (we show it one card at a time)."""
    return f"CUDA{visible_index}"


def lib_dir_of(venv_python: str) -> Path:
    """``llama_cpp/lib`` inside the venv of ``venv_python`` (where the wheel put its libraries)."""
    venv = Path(venv_python).parent.parent
    libs = sorted(venv.glob("lib/python3*/site-packages/llama_cpp/lib")) + sorted(
        venv.glob("Lib/site-packages/llama_cpp/lib"))
    if not libs:
        raise SmokeFailed(f"no llama_cpp/lib in the venv {venv}", "reinstall the wheel into a fresh venv")
    return libs[0]


def _run_to_dict(r: OpRun) -> dict[str, object]:
    return {"backend": r.backend, "what": r.what, "argv": list(r.argv),
            "summary": list(r.summary) if r.summary else None, "backend_ok": r.backend_ok,
            "returncode": r.returncode, "seconds": r.seconds,
            "log": str(r.log) if r.log else None,
            "cases": [[c.op, c.params, c.status, c.detail] for c in r.cases]}


def _run_from_dict(d: Mapping[str, Any]) -> OpRun:
    return OpRun(d["backend"], d["what"], tuple(d["argv"]), tuple(OpCase(*c) for c in d["cases"]),
                 tuple(d["summary"]) if d["summary"] else None, d["backend_ok"], d["returncode"], d["seconds"],
                 Path(d["log"]) if d["log"] else None)


def check_device(plan: ConformancePlan, device: str, visible: str | None, env: Mapping[str, str], *,
                 model: Path | None = None, cache_key: str = "", timeout: float = 1800) -> OpConformance:
    """The op-level evidence for one device: ``visible`` = a card's index (its backend is then CUDA0), or None
    for the CPU backend. The default ops are reused from an earlier run of the same libraries on the same
    device (keyed by ``cache_key``); with ``model``, that model's graph ops run too."""
    run_env = {**env, "CUDA_VISIBLE_DEVICES": visible} if visible is not None else dict(env)
    backend = backend_name(0) if visible is not None else "CPU"
    t_compile = compile_tools(plan, env, graph=model is not None)
    runs: list[OpRun] = []
    cached = plan.work / f"ops-{cache_key}.json" if cache_key else None
    if cached is not None and cached.exists():
        runs.append(_run_from_dict(json.loads(cached.read_text())))
    else:
        r = run_ops(plan, backend, run_env, timeout=timeout, log=plan.work / f"ops-{cache_key or backend}.log")
        if cached is not None and r.returncode in (0, 1) and r.cases:
            cached.write_text(json.dumps(_run_to_dict(r)) + "\n")
        runs.append(r)
    if model is not None:
        test_file = plan.work / f"graph-{model.stem}.txt"
        export_graph(plan, model, test_file, env)
        runs.append(run_ops(plan, backend, run_env, what=f"graph of {model.name}", test_file=test_file,
                            timeout=timeout, log=plan.work / f"graph-{model.stem}-{cache_key or backend}.log"))
    return OpConformance(device, tuple(runs), t_compile)
