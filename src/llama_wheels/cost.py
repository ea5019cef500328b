"""What a plan costs before it runs: the wheel's filename, the downloads, and a compile-time estimate.

The estimate is CPU-seconds = ``base`` (the C/C++ part every build compiles) + ``per_target`` x the
number of CUDA targets (each ``-real`` SASS and each ``-virtual`` PTX entry of the arch set is one nvcc
pass), then wall time = CPU-seconds / (cores x 0.9). Both numbers come from cold builds recorded in
``wheelhouse/manifest.json`` (``cpu_seconds``, ``archs``, ``cache``) when there are any, else from the
seed below, measured on our machines (BENCHMARKS.md). A warm compiler cache makes a rebuild 5-15x faster;
the estimate is for a cold one.
"""

from __future__ import annotations

import os
import statistics
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_wheels.log import fmt_seconds
from llama_wheels.plan import BuildStep

#: Seed (measured, BENCHMARKS.md "Cold build times"): a CPU-only build, 682 CPU-s (2-core machine). Per CUDA
#: target the CPU-seconds depend on the host: on 16-core GPU hosts ~2,200 (the 'universal' set, 4 targets, 11m05s;
#: cu130-sm90, 2 targets, 5,112 CPU-s), on the 2-core machine ~1,460 (cu130-sm90: 3,624 CPU-s in 33 min; the
#: universal set took 58m56s, where the 16-core number predicted ~88 min).
SEED_BASE_CPU_S = 700.0
SEED_PER_TARGET_CPU_S = 2200.0
SEED_PER_TARGET_SMALL_CPU_S = 1460.0
SMALL_HOST_CORES = 4  # at most this many cores: the 2-core machine's seed
SEED_BASIS = ("seed from BENCHMARKS.md (CPU part 700 CPU-s, {per:,.0f} CPU-s per CUDA target on a {host} host; "
              "no cold build recorded here yet)")
PARALLEL_EFFICIENCY = 0.9
SDIST_BYTES = 76_600_000  # llama-cpp-python 0.3.36 sdist on PyPI
PYPI_TOOLKIT_BYTES = 870_000_000  # cuda-toolkit[nvcc,cudart,cublas,cccl,crt,nvvm] 13.0 installed


def mb(n: float) -> str:
    """Decimal megabytes, as PyPI shows sizes."""
    return f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


def platform_tag() -> str:
    return sysconfig.get_platform().replace("-", "_").replace(".", "_")


def wheel_filename(step: BuildStep) -> str:
    """The name the wheel will have (one wheel serves every Python 3: ``py3-none``)."""
    return f"llama_cpp_python-{step.version}-py3-none-{platform_tag()}.whl"


def cuda_targets(archs_cmake: str | None) -> int:
    """``86-real;89-real;89-virtual;120a-real`` -> 4 (each one is an nvcc pass)."""
    return len([a for a in (archs_cmake or "").split(";") if a])


@dataclass(frozen=True)
class Basis:
    base_cpu_s: float
    per_target_cpu_s: float
    why: str


def _cold(entry: Mapping[str, Any]) -> bool:
    cache = entry.get("cache") or {}
    hits, misses = int(cache.get("hits", 0) or 0), int(cache.get("misses", 0) or 0)
    return misses > 0 and hits <= 0.1 * (hits + misses) and float(entry.get("cpu_seconds") or 0) > 0


def basis(entries: Mapping[str, Mapping[str, Any]], cores: int | None = None) -> Basis:
    """Per-target CPU-seconds from the cold builds in the manifest, else the seed for a host of ``cores``
    (None: a 16-core GPU host)."""
    small = cores is not None and cores <= SMALL_HOST_CORES
    seed_per = SEED_PER_TARGET_SMALL_CPU_S if small else SEED_PER_TARGET_CPU_S
    cold = [e for e in entries.values() if _cold(e)]
    cpu = [float(e["cpu_seconds"]) for e in cold if not e.get("archs")]
    base = statistics.median(cpu) if cpu else SEED_BASE_CPU_S
    per = [(float(e["cpu_seconds"]) - base) / cuda_targets(e["archs"]) for e in cold if e.get("archs")]
    per = [p for p in per if p > 0]
    if not cpu and not per:
        return Basis(SEED_BASE_CPU_S, seed_per, SEED_BASIS.format(per=seed_per, host="2-core" if small else "16-core"))
    per_target = statistics.median(per) if per else seed_per
    why = (f"measured: {len(cpu)} cold CPU build(s) ({base:,.0f} CPU-s), {len(per)} cold CUDA build(s) "
           f"({per_target:,.0f} CPU-s per CUDA target) in the manifest"
           + ("" if per else "; per CUDA target: the BENCHMARKS.md seed"))
    return Basis(base, per_target, why)


@dataclass(frozen=True)
class Estimate:
    cpu_seconds: float
    wall_seconds: float

    def describe(self) -> str:
        return f"~{fmt_seconds(self.wall_seconds)} ({self.cpu_seconds:,.0f} CPU-s)"


def estimate(step: BuildStep, b: Basis, cores: int) -> Estimate:
    targets = cuda_targets(step.arch_set.cmake()) if step.arch_set is not None else 0
    cpu = b.base_cpu_s + b.per_target_cpu_s * targets
    return Estimate(cpu, cpu / (max(1, cores) * PARALLEL_EFFICIENCY))


def cores_for(jobs: int | None) -> int:
    n = os.cpu_count() or 1
    return min(n, jobs) if jobs else n


def downloads(steps: Sequence[BuildStep], *, cache_dir: Path, sdist_cached: bool, offline: bool) -> list[str]:
    """One line per download the run needs (or does not, and why)."""
    out = []
    if offline:
        out.append("sdist: from the prefetch folder (offline)")
    elif sdist_cached:
        out.append("sdist: cached, no download")
    else:
        out.append(f"sdist: {mb(SDIST_BYTES)} download (llama-cpp-python from PyPI; slimmed after)")
    seen = set()
    for s in steps:
        tk = s.toolkit
        if s.arch_set is None or tk.source != "pypi" or tk.version in seen:
            continue
        seen.add(tk.version)
        if tk.toolkit is not None:
            out.append(f"CUDA toolkit: NVIDIA's PyPI toolkit {tk.tag} cached, no download")
        else:
            out.append(f"CUDA toolkit: ~{mb(PYPI_TOOLKIT_BYTES)} from PyPI into {cache_dir / 'toolkits'} (once)")
    return out


def plan_lines(steps: Sequence[BuildStep], entries: Mapping[str, Mapping[str, Any]], *, cache_dir: Path,
               sdist_cached: bool, offline: bool, jobs: int | None) -> tuple[list[str], dict[str, Estimate]]:
    """The cost block of the plan, and each step's estimate (for 'estimate vs actual' after the build)."""
    cores = cores_for(jobs)
    b = basis(entries, cores)
    ests = {s.flavour: estimate(s, b, cores) for s in steps}
    lines = ["cost:"]
    for s in steps:
        lines.append(f"  {s.flavour}: {wheel_filename(s)}")
        lines.append(f"    compile {ests[s.flavour].describe()} cold on {cores} core(s)")
    lines += [f"  {d}" for d in downloads(steps, cache_dir=cache_dir, sdist_cached=sdist_cached, offline=offline)]
    total = sum(e.wall_seconds for e in ests.values())
    lines.append(f"  total ~{fmt_seconds(total)} cold; a warm compiler cache cuts this 5-15x")
    lines.append(f"  basis: {b.why}; wall = CPU-s / ({cores} cores x {PARALLEL_EFFICIENCY})")
    return lines, ests
