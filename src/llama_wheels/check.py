"""``nox -s check_wheels``: the wheel check on every wheel of the wheelhouse."""

from __future__ import annotations

from pathlib import Path

from llama_wheels import manifest
from llama_wheels.config import Options
from llama_wheels.errors import WheelCheckFailed
from llama_wheels.log import Logger, fmt_bytes
from llama_wheels.wheels import check_wheel


def our_wheels(wheelhouse: Path) -> list[Path]:
    return sorted(p for p in wheelhouse.glob("*/llama_cpp_python-*.whl") if p.parent.name != "index")


def run(options: Options, paths: list[Path], log: Logger) -> None:
    """Check ``paths`` (default: every wheel of the wheelhouse); raise WheelCheckFailed if any has a problem."""
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
    log.table("wheel check", ["wheel", "size", "sha256", "result"], rows)
    if bad:
        raise WheelCheckFailed(f"{bad} of {len(wheels)} wheel(s) failed the check", "see the problems listed above")
