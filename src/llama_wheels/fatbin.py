"""Which GPU code a library really holds, read with cuobjdump (system toolkit or NVIDIA's wheel)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from llama_wheels import cmd
from llama_wheels.archs import ArchSet
from llama_wheels.errors import WheelCheckFailed

_ENTRY = re.compile(r"^(ELF|PTX) file\s+\d+:\s+\S*?\.(sm_\d+[af]?)\.(?:cubin|ptx)\s*$", re.M)


@dataclass(frozen=True)
class Embedded:
    sass: frozenset[str]  # sm_90, sm_120a
    ptx: frozenset[str]  # compute_90

    def describe(self) -> str:
        return ", ".join(sorted(self.sass) + sorted(self.ptx)) or "no GPU code"


def parse_cuobjdump(elf_listing: str, ptx_listing: str) -> Embedded:
    """Parse ``cuobjdump --list-elf`` and ``--list-ptx`` output."""
    sass = {m[2] for m in _ENTRY.finditer(elf_listing) if m[1] == "ELF"}
    ptx = {"compute_" + m[2][3:] for m in _ENTRY.finditer(ptx_listing) if m[1] == "PTX"}
    return Embedded(frozenset(sass), frozenset(ptx))


def read_embedded(lib: Path, cuobjdump: str) -> Embedded:
    # cuobjdump exits non-zero when a library holds no PTX (or no ELF); that is an answer, not an error.
    elf = cmd.run([cuobjdump, "--list-elf", str(lib)], capture=True, check=False, quiet=True).stdout
    ptx = cmd.run([cuobjdump, "--list-ptx", str(lib)], capture=True, check=False, quiet=True).stdout
    return parse_cuobjdump(elf, ptx)


def compare(embedded: Embedded, requested: ArchSet) -> list[str]:
    """Mismatches between the binary and the request; empty when they agree exactly."""
    want_sass, want_ptx = set(requested.sass), set(requested.ptx)
    problems = []
    if missing := want_sass - embedded.sass:
        problems.append(f"missing cubins {', '.join(sorted(missing))}")
    if extra := embedded.sass - want_sass:
        problems.append(f"unrequested cubins {', '.join(sorted(extra))}")
    if missing_ptx := want_ptx - embedded.ptx:
        problems.append(f"missing PTX {', '.join(sorted(missing_ptx))}")
    if extra_ptx := embedded.ptx - want_ptx:
        problems.append(f"unrequested PTX {', '.join(sorted(extra_ptx))}")
    return problems


def verify(lib: Path, requested: ArchSet, cuobjdump: str) -> Embedded:
    embedded = read_embedded(lib, cuobjdump)
    problems = compare(embedded, requested)
    if problems:
        raise WheelCheckFailed(f"{lib.name} does not hold the requested archs ({requested.cmake()}): "
                               f"{'; '.join(problems)}; it holds {embedded.describe()}",
                               "check CMAKE_CUDA_ARCHITECTURES in the build log")
    return embedded
