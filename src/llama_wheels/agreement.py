"""Smoke measurements for numerics: GPU vs a pure-CPU reference, teacher-forced (see numerics.py), and the
control that proves the comparison can see a difference.

Each run is one ``_probe.py logits`` process that writes its logit rows to a folder; a
``_probe.py compare`` process reads two folders and returns the statistics; the verdict is
``verify.judge``'s (the one home of the judgement). The CPU reference is pure CPU twice over: the GPUs are hidden
(``CUDA_VISIBLE_DEVICES=""``) and ``op_offload=False`` (on a CUDA build ``n_gpu_layers=0`` alone
still sends batches of >= 32 tokens to the GPU).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llama_wheels import numerics
from llama_wheels.verify.judge import ModelAgreement, Sensitivity, judge

Status = Literal["pass", "fail", "skip", "warn"]
#: ``probe(venv_python, check, args, env, timeout)`` -> (result or None, output); smoke's ``probe``.
Probe = Callable[..., tuple[dict[str, Any] | None, str]]
#: Public domain: Shakespeare's Coriolanus (Act I to the start of Act II, 44 kB; from the
#: tinyshakespeare text of karpathy/char-rnn). Long enough for 8 chunks of 512 tokens with any of the
#: tokenizers measured (262k-token Gemma vocabulary: ~12k tokens).
TEXT = Path(__file__).with_name("data") / "shakespeare-coriolanus.txt"
#: 8 chunks = 2,040 scored positions: 510 (the old two chunks) left the top-1 figure +-1.5 points wide.
MAX_CHUNKS = 8
REFERENCE_HOW = 'CPU reference: CUDA_VISIBLE_DEVICES="" and op_offload=False'


def cpu_env(env: Mapping[str, str]) -> dict[str, str]:
    return {**env, "CUDA_VISIBLE_DEVICES": ""}


@dataclass(frozen=True)
class Outcome:
    status: Status
    detail: str
    numbers: dict[str, Any]


class TeacherForced:
    """Runs and compares teacher-forced logit runs of one wheel's venv; the reference of each model is
    computed once and reused by every GPU run."""

    def __init__(self, probe: Probe, venv_python: str, work: Path, env: Mapping[str, str], text: Path = TEXT,
                 max_chunks: int = MAX_CHUNKS) -> None:
        self.probe = probe
        self.venv_python = venv_python
        self.work = work
        self.env = dict(env)
        self.text = text
        self.max_chunks = max_chunks
        self._refs: dict[Path, tuple[Path | None, str]] = {}
        self._n = 0

    def run(self, model: Path, n_gpu_layers: int, env: Mapping[str, str], **extra: Any) -> tuple[Path | None, str]:
        """One teacher-forced run; returns (its folder, or None on failure, and the probe's output)."""
        self._n += 1
        out = self.work / f"run-{self._n}"
        args = {"model": str(model), "text": str(self.text), "out": str(out), "n_gpu_layers": n_gpu_layers,
                "max_chunks": self.max_chunks, **extra}
        res, text = self.probe(self.venv_python, "logits", args, env)
        if res is None:
            return None, text
        if not res["finite"]:
            return None, "the run produced non-finite logits (NaN/inf)"
        return out, text

    def reference(self, model: Path) -> tuple[Path | None, str]:
        if model not in self._refs:
            self._refs[model] = self.run(model, 0, cpu_env(self.env), op_offload=False)
        return self._refs[model]

    def compare(self, ref: Path, test: Path) -> tuple[numerics.Agreement | None, str]:
        res, out = self.probe(self.venv_python, "compare", {"ref": str(ref), "test": str(test)}, self.env)
        return (numerics.Agreement.from_dict(res), out) if res is not None else (None, out)

    def measure(self, model: Path, env: Mapping[str, str], n_gpu_layers: int = -1, test_model: Path | None = None,
                **extra: Any) -> ModelAgreement:
        """The run under test (by default every layer on the GPU) against the CPU reference of ``model``;
        ``test_model`` (default: the same file) is what the run under test loads."""
        ref, out = self.reference(model)
        if ref is None:
            return ModelAgreement(None, f"the CPU reference run failed: {out}")
        test, out = self.run(test_model or model, n_gpu_layers, env, **extra)
        if test is None:
            return ModelAgreement(None, f"the run under test failed: {out}")
        a, out = self.compare(ref, test)
        (test / "logits.npy").unlink(missing_ok=True)  # ours; 0.5 GB for a 262k vocabulary (the reference stays)
        return ModelAgreement(a, "" if a is not None else f"comparing the runs failed: {out}")

    def check(self, model: Path, env: Mapping[str, str], n_gpu_layers: int = -1, test_model: Path | None = None,
              **extra: Any) -> Outcome:
        """``measure``, judged (verify.judge)."""
        j = judge(self.measure(model, env, n_gpu_layers, test_model, **extra))
        return Outcome(j.status, j.detail, j.numbers)

    def sensitivity(self, f32: Path, quantized: Path, env: Mapping[str, str], n_gpu_layers: int) -> Outcome:
        """The control: F32 vs Q4_0 of one model must read far apart, next to the same F32 model run under
        test vs its CPU reference; otherwise the comparison cannot see a difference at all."""
        same = self.measure(f32, env, n_gpu_layers)
        control = self.measure(f32, env, n_gpu_layers, test_model=quantized)
        j = judge(Sensitivity(control.agreement, same.agreement, control.failure or same.failure))
        return Outcome(j.status, j.detail, j.numbers)


def quantized_control(probe: Probe, venv_python: str, f32: Path, env: Mapping[str, str],
                      ftype: str = "Q4_0") -> tuple[Path | None, str]:
    """``f32`` quantized by the wheel itself (llama_model_quantize), cached beside it."""
    dst = f32.with_name(f32.name.replace(".gguf", f"-{ftype}.gguf"))
    if dst.exists():
        return dst, ""
    partial = dst.with_name(dst.name + ".partial")
    res, out = probe(venv_python, "quantize", {"src": str(f32), "dst": str(partial), "ftype": ftype}, env)
    if res is None:
        return None, out
    partial.replace(dst)
    return dst, out


def cpu_and_control_checks(teacher: TeacherForced, venv_python: str, cache_dir: Path, model: Path,
                           env: Mapping[str, str], gpu_env: Mapping[str, str] | None,
                           ) -> Iterator[tuple[str, Status, str, dict[str, Any], float]]:
    """Without a GPU run: the check between two CPU runs that differ in threads and micro-batch (must
    pass). Always: the negative control, our embedded model F32 vs Q4_0 (must be rejected), with the
    quantized run on the GPU when there is one. Yields (name, status, detail, numbers, start time)."""
    from llama_wheels.model import cached_model

    if gpu_env is None:
        t0 = time.monotonic()
        o = teacher.check(model, cpu_env(env), 0, op_offload=False, threads=1, n_ubatch=128)
        yield ("CPU vs CPU agreement (1 thread, micro-batch 128 vs the defaults)", o.status,
               f"{o.detail}; {REFERENCE_HOW}", o.numbers, t0)
    t0 = time.monotonic()
    f32 = cached_model(cache_dir)
    q4, out = quantized_control(teacher.probe, venv_python, f32, env)
    name = f"control: the comparison sees F32 vs Q4_0 (embedded model, {'GPU' if gpu_env else 'CPU'})"
    if q4 is None:
        yield name, "fail", f"quantizing the control model failed: {out}", {}, t0
        return
    o = teacher.sensitivity(f32, q4, gpu_env if gpu_env is not None else cpu_env(env), -1 if gpu_env is not None else 0)
    yield name, o.status, o.detail, o.numbers, t0
