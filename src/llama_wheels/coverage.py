"""Can this GPU run this binary? native SASS, PTX JIT, or not at all.

Rules (CUDA compatibility guides for Ampere/Hopper/Blackwell): a cubin for sm_X.y runs on sm_X.z
with z >= y (same major); an arch-specific cubin (``90a``, ``120a``) runs only on exactly that
capability; a family cubin (``100f``) runs within its major. PTX for compute_N JIT-compiles on any
GPU with capability >= N, except arch-specific PTX (``compute_120a``), which runs only on 120.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llama_wheels.archs import ArchSet
from llama_wheels.selector import ptx_runs, sass_runs  # the rules: one copy, in the stdlib-only selector

CoverageKind = Literal["native", "ptx-jit", "cannot-run"]


@dataclass(frozen=True)
class Coverage:
    kind: CoverageKind
    message: str


def coverage_verdict(gpu_cc: int, archs: ArchSet) -> Coverage:
    sass = [a for a in archs.archs if a.has_sass and sass_runs(a.number, a.feature, gpu_cc)]
    if sass:
        best = max(sass)
        return Coverage("native", f"native code (sm_{best.name} cubin)")
    ptx = [a for a in archs.archs if a.has_ptx and ptx_runs(a.number, a.feature, gpu_cc)]
    if ptx:
        best = max(ptx)
        return Coverage("ptx-jit", f"no sm_{gpu_cc} cubin; runs by JIT-compiling compute_{best.name} PTX "
                                   "(slow first load, some kernels may be missing)")
    have = ", ".join(archs.sass + archs.ptx) or "nothing"
    return Coverage("cannot-run", f"cannot run: the binary holds {have}, none of which runs on sm_{gpu_cc}; "
                                  f"rebuild with --archs {gpu_cc}")
