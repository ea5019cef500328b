"""What to smoke: wheels from the wheelhouse (with their manifest entries) and the GPUs to run on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llama_wheels import manifest
from llama_wheels.archs import Arch, ArchSet, finish, parse_arch_set
from llama_wheels.check import our_wheels
from llama_wheels.detect import Gpu
from llama_wheels.errors import ConfigError


def select_wheels(wheelhouse: Path, wheel: str | None, flavour: str | None) -> list[tuple[Path, dict[str, Any]]]:
    entries = manifest.entries(wheelhouse)
    if wheel:
        p = Path(wheel)
        if not p.is_file():
            raise ConfigError(f"wheel {wheel} does not exist", "pass a .whl path, or --flavour NAME")
        key = next((k for k, e in entries.items() if e.get("filename") == p.name), None)
        return [(p, entries.get(key, {}) if key else {})]
    found = our_wheels(wheelhouse)
    if flavour:
        found = [w for w in found if w.parent.name == flavour]
        if not found:
            flavours = sorted({w.parent.name for w in our_wheels(wheelhouse)})
            raise ConfigError(f"no wheel for flavour '{flavour}' in {wheelhouse}",
                              f"built flavours: {', '.join(flavours) or 'none (run nox -s build_cuda)'}")
    if not found:
        raise ConfigError(f"no wheels in {wheelhouse}", "run nox -s build_cuda (or build_cpu) first")
    return [(w, entries.get(w.relative_to(wheelhouse).as_posix(), {})) for w in found]


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


def entry_arch_set(entry: Mapping[str, Any], reported: list[int]) -> ArchSet | None:
    if entry.get("archs"):
        return parse_arch_set(str(entry["archs"]), ptx="none", source="manifest")
    if reported:  # no manifest: trust the binary's ARCHS as SASS
        return finish([Arch(n // 10, "", "real") for n in reported], ptx="none",  # finish() applies 12X -> 12Xa
                      source="ARCHS reported by the library")
    return None
