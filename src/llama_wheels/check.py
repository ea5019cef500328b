"""``nox -s check_wheels``: the wheel check on every wheel of the wheelhouse."""

from __future__ import annotations

from pathlib import Path

from llama_wheels import manifest
from llama_wheels.config import Options
from llama_wheels.errors import DamagedWheel, WheelCheckFailed
from llama_wheels.log import Logger, fmt_bytes
from llama_wheels.wheels import check_wheel, verify


def our_wheels(wheelhouse: Path) -> list[Path]:
    return sorted(p for p in wheelhouse.glob("*/llama_cpp_python-*.whl") if p.parent.name != "index")


def other_wheels(wheelhouse: Path) -> list[Path]:
    """Every other wheel in a flavour folder: dependency wheels, or strays."""
    ours = set(our_wheels(wheelhouse))
    return sorted(p for p in wheelhouse.glob("*/*.whl") if p.parent.name != "index" and p not in ours)


def check_others(wheelhouse: Path, entries: dict[str, dict[str, object]], log: Logger) -> tuple[int, int]:
    """The dependency wheels: each recorded by a build (a stray wheel is a problem) with an intact zip, RECORD
    and the sha256 recorded for it. Read only: no lock, nothing written. Returns (checked, bad)."""
    recorded = manifest.recorded_files(wheelhouse, entries)
    checked = bad = 0
    for w in other_wheels(wheelhouse):
        checked += 1
        if w not in recorded:
            log.error(f"{wheelhouse}/{manifest.unrecorded(wheelhouse, entries, w)} (it is never indexed or published)")
            bad += 1
            continue
        try:
            verify(w, recorded[w])
        except DamagedWheel as exc:
            log.error(f"{w}: {exc.one_line()}")
            bad += 1
    return checked, bad


def run(options: Options, paths: list[Path], log: Logger) -> None:
    """Check ``paths`` (default: every wheel of the wheelhouse, dependency wheels included); raise
    WheelCheckFailed if any has a problem. Reads only: a read-only wheelhouse can be checked."""
    entries = manifest.entries(options.wheelhouse)
    wheels = paths or our_wheels(options.wheelhouse)
    if not wheels:
        raise WheelCheckFailed(f"no llama-cpp-python wheels under {options.wheelhouse}",
                               "run nox -s build_cpu or build_cuda first")
    rows, bad = [], 0
    for w in wheels:
        if not w.is_file():
            log.error(f"{w}: does not exist (or is not a file)")
            bad += 1
            rows.append([w.name, "-", "-", "missing"])
            continue
        try:
            key = w.resolve().relative_to(options.wheelhouse.resolve()).as_posix()
        except ValueError:
            key = w.name
        entry = entries.get(key, {})
        rep = check_wheel(w, cuda_runtime=entry.get("cuda_runtime") if entry.get("archs") else None,
                          nccl=entry.get("host_options", {}).get("GGML_CUDA_NCCL") == "ON")
        if entry and entry.get("sha256") != rep.sha256:
            rep.problems.append(f"sha256 {rep.sha256} differs from manifest.json's {entry.get('sha256')} "
                                "(the file changed after the build)")
        if not entry and paths == []:
            rep.problems.append("not recorded in manifest.json (an interrupted build?)")
        for p in rep.problems:
            log.error(f"{w}: {p}")
        bad += not rep.ok
        result = "ok" if rep.ok else f"{len(rep.problems)} problem(s)"
        rows.append([w.name, fmt_bytes(rep.size), rep.sha256[:12], result])
    total = len(wheels)
    if not paths:
        checked, bad_deps = check_others(options.wheelhouse, entries, log)
        if checked:
            rows.append([f"{checked} dependency wheel(s)", "-", "-", "ok" if not bad_deps else f"{bad_deps} bad"])
        bad, total = bad + bad_deps, total + checked
    log.table("wheel check", ["wheel", "size", "sha256", "result"], rows)
    if bad:
        raise WheelCheckFailed(f"{bad} of {total} wheel(s) failed the check", "see the problems listed above")
