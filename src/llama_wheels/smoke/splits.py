"""Multi-GPU split modes: what the wheel offers (asked of the wheel itself), which runs to plan, and what
llama.cpp's loader said when a mode is refused.

The vendored llama.cpp (0.3.36) has three split modes (``enum llama_split_mode`` in include/llama.h):
layer (1); row (2), which needs the backend registry's ``ggml_backend_split_buffer_type`` (the CUDA
backend no longer hands it out: src/llama-model.cpp then throws "device CUDA0 does not support split
buffers"); and tensor (3, EXPERIMENTAL), a Meta device over all GPUs whose AllReduce uses NCCL when the
wheel links it, else an internal kernel for exactly 2 GPUs, else a generic fallback
(``GGML_CUDA_ALLREDUCE`` = nccl | internal | none, ggml/src/ggml-cuda/ggml-cuda.cu). Tensor mode needs
flash attention enabled, or llama.cpp refuses the context (src/llama-context.cpp).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llama_wheels.detect import Gpu

LAYER, ROW, TENSOR = 1, 2, 3
NOT_OFFERED = "not offered by this llama.cpp build"


@dataclass(frozen=True)
class SplitSupport:
    """The answer of ``_probe.py splits``: the wheel's CUDA backend registry, asked through ctypes."""

    cuda: bool  # a "CUDA" backend registry exists
    row: bool  # it hands out ggml_backend_split_buffer_type
    tensor: bool  # libggml-base exports the Meta device and llama.h knows split mode 3
    comm: bool  # it hands out ggml_backend_comm_init (a backend AllReduce for tensor mode)
    nccl: bool  # the loaded process maps libnccl

    @classmethod
    def from_probe(cls, r: Mapping[str, Any]) -> SplitSupport:
        procs = r.get("procs", {})
        return cls(cuda=bool(r.get("found")), row=bool(procs.get("ggml_backend_split_buffer_type")),
                   tensor=bool(r.get("meta_device")) and bool(r.get("llama_split_mode_tensor")),
                   comm=bool(procs.get("ggml_backend_comm_init")), nccl=bool(r.get("nccl")))

    def describe(self) -> str:
        def yes(b: bool) -> str:
            return "yes" if b else "no"

        return (f"CUDA registry {yes(self.cuda)}; row split {yes(self.row)} (ggml_backend_split_buffer_type); "
                f"tensor split {yes(self.tensor)} (Meta device); backend AllReduce {yes(self.comm)}; "
                f"NCCL linked {yes(self.nccl)}")


@dataclass(frozen=True)
class GpuRun:
    """One GPU generation run: which cards are visible, and how the model is split over them."""

    name: str
    visible: str  # CUDA_VISIBLE_DEVICES
    split_mode: int | None = None  # None: llama-cpp-python's default (layer; one card makes it moot)
    tensor_split: tuple[float, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()  # e.g. GGML_CUDA_ALLREDUCE for tensor mode
    skip: str | None = None  # planned, but the wheel does not offer it: the reason

    @property
    def args(self) -> dict[str, Any]:
        """The probe's model arguments (tensor mode turns flash attention on there)."""
        return {"split_mode": self.split_mode, "tensor_split": list(self.tensor_split) if self.tensor_split else None}


def plan_runs(selected: list[Gpu], support: SplitSupport | None) -> list[GpuRun]:
    """One run per card (--main_gpu by hand, done with CUDA_VISIBLE_DEVICES); with several cards, then
    each split mode over all of them. ``support`` None (not probed) plans every mode and lets the loader's
    own message decide; a mode the probe says is missing becomes a skip with the reason."""
    runs = [GpuRun(f"GPU {g.index}", str(g.index)) for g in selected]
    if len(selected) < 2:
        return runs
    visible = ",".join(str(g.index) for g in selected)
    even = tuple(1.0 for _ in selected)
    over = f"over GPUs {visible}"
    runs.append(GpuRun(f"split by layer {over}", visible, LAYER, even))
    row_skip = None if support is None or support.row else (
        f"{NOT_OFFERED}: its CUDA backend registry has no ggml_backend_split_buffer_type")
    runs.append(GpuRun(f"split by row {over}", visible, ROW, even, skip=row_skip))
    tensor_skip = None if support is None or support.tensor else (
        f"{NOT_OFFERED}: no Meta device (ggml_backend_meta_device) in its libggml-base")
    fallback = "internal" if len(selected) == 2 else "none"  # the internal kernel does exactly 2 GPUs
    names = {"internal": "internal AllReduce", "none": "generic AllReduce"}
    runs.append(GpuRun(f"split by tensor {over}, {names[fallback]}", visible, TENSOR, even,
                       (("GGML_CUDA_ALLREDUCE", fallback),), tensor_skip))
    nccl_skip = tensor_skip or (None if support is None or support.nccl else
                                "NCCL is not linked into this wheel (GGML_CUDA_NCCL with NCCL found at build time)")
    runs.append(GpuRun(f"split by tensor {over}, NCCL", visible, TENSOR, even, (("GGML_CUDA_ALLREDUCE", "nccl"),),
                       nccl_skip))
    return runs


# llama.cpp's own words when a split mode is not there (format strings in the vendored source).
_REFUSED = (
    re.compile(r"^.*device \S+ does not support split buffers.*$", re.M),  # src/llama-model.cpp, row mode
    re.compile(r"^.*LLAMA_SPLIT_MODE_TENSOR not implemented for architecture '[^']*'.*$", re.M),  # llama-model.cpp
    re.compile(r"^.*LLAMA_SPLIT_MODE_TENSOR needs >= 1 devices.*$", re.M),  # src/llama.cpp
)
_ABORT = re.compile(r"^\S+:\d+: .*$", re.M)  # ggml_abort (ggml/src/ggml.c) prints "file:line: message"
_LLAMA_ERROR = re.compile(r"^(?:llama|ggml|load|init)\w*: .*(?:error|requires|failed|not supported|cannot).*$",
                          re.M | re.I)
_ALLREDUCE = (
    ("NCCL not compiled in", "internal (NCCL not compiled in)"),
    ("NCCL init failed", "internal (NCCL init failed)"),
    ("NCCL disabled", "internal (NCCL disabled: virtual devices)"),
    ("internal AllReduce init failed", "generic (internal AllReduce init failed)"),
)


def refusal(output: str) -> str | None:
    """The loader's line saying this build does not offer the split mode, if it said so."""
    for pattern in _REFUSED:
        m = pattern.search(output)
        if m:
            return m[0].strip()
    return None


def llama_reason(output: str) -> str | None:
    """llama.cpp's first error-like log line (e.g. ``llama_init_from_model: SPLIT_MODE_TENSOR requires
    flash_attn to be enabled``): its own reason when a context or model could not be made. The first,
    because the loader follows the cause with a generic "failed to load model"."""
    m = _LLAMA_ERROR.search(output)
    if m:
        return m[0].strip()
    aborted = [a for a in _ABORT.findall(output) if "GGML_ASSERT" in a or "ggml" in a.lower()]
    return aborted[0].strip() if aborted else None


def allreduce_note(output: str) -> str | None:
    """Which AllReduce a tensor-mode run fell back to, from ggml's warnings (none: the one asked for)."""
    return next((note for needle, note in _ALLREDUCE if needle in output), None)
