"""The hand procedure's habits (README), read instead of dropped: ``CMAKE_ARGS``, ``FORCE_CMAKE`` and ``GGML_CUDA``.

The hand procedure sets ``CMAKE_ARGS=-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=86;89;120`` before pip. Here:

- ``CMAKE_CUDA_ARCHITECTURES`` becomes the arch set (the plan says "from CMAKE_ARGS"), unless
  ``--arch-set``/``--archs`` is given, which wins with a note.
- Flags we set ourselves are dropped with a note when they agree (``GGML_CUDA=on`` in a CUDA build)
  and refused with the reason when they conflict (``GGML_NATIVE=ON``, ``GGML_CUDA=off`` in a CUDA build).
- Every other flag is passed through to CMake, shown in the plan, and changes the wheel's label.
- ``FORCE_CMAKE`` and ``GGML_CUDA`` as environment variables do nothing; a one-line note says so.

The same conflict rules apply to the configured ``cmake-args`` (pyproject, LLAMA_WHEELS_CMAKE_ARGS,
a variant's ``cmake-args``): :func:`check_extra`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llama_wheels.errors import ConfigError

_DEFINE = re.compile(r"^-D(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z]+)?=(?P<value>.*)$")
_TRUE = {"1", "on", "yes", "true", "y"}
_FALSE = {"0", "off", "no", "false", "n", ""}

#: Flags we own: the message says what to use instead.
OWNED = {
    "CMAKE_CUDA_COMPILER": "the toolkit is chosen with --cuda (system/pypi:13.0), not CMAKE_CUDA_COMPILER",
    "CUDAToolkit_ROOT": "the toolkit is chosen with --cuda (system/pypi:13.0), not CUDAToolkit_ROOT",
    "CMAKE_C_COMPILER_LAUNCHER": "the compiler cache is ours: use --cache-backend or [tool.llama-wheels.cache]",
    "CMAKE_CXX_COMPILER_LAUNCHER": "the compiler cache is ours: use --cache-backend or [tool.llama-wheels.cache]",
    "CMAKE_CUDA_COMPILER_LAUNCHER": "the compiler cache is ours: use --cache-backend or [tool.llama-wheels.cache]",
}


def _bool(value: str) -> bool | None:
    v = value.strip().lower()
    return True if v in _TRUE else False if v in _FALSE else None


@dataclass(frozen=True)
class UserCMakeArgs:
    """What CMAKE_ARGS asked for: an arch list, flags to pass through, notes for the run's output."""

    archs: str | None = None
    passthrough: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def check_extra(args: Sequence[str], *, cuda: bool, where: str) -> tuple[list[str], list[str]]:
    """``(kept, notes)``: the flags to pass on, minus those that repeat ours; a conflict is a ConfigError."""
    kept: list[str] = []
    notes: list[str] = []
    build = "CUDA" if cuda else "CPU"
    for arg in args:
        m = _DEFINE.match(arg)
        if not m:
            if arg.startswith(("-G", "-A", "-T")):
                raise ConfigError(f"{where}: {arg}: the generator is ours (Ninja, for the compiler cache)",
                                  f"remove {arg} from {where}")
            kept.append(arg)
            continue
        name, value = m["name"], m["value"]
        flag = _bool(value)
        if name in OWNED:
            raise ConfigError(f"{where}: {arg}: {OWNED[name]}", f"remove -D{name} from {where}")
        if name == "GGML_NATIVE":
            if flag is not False:
                raise ConfigError(f"{where}: {arg}: GGML_NATIVE=ON builds for this machine's CPU and GPUs only, "
                                  "so the wheel would crash or fail elsewhere; wheels here are built portable "
                                  "(-DGGML_NATIVE=OFF)", f"remove -D{name} from {where}")
            notes.append(f"{where}: {arg} is already set (portable wheels); dropped")
            continue
        if name == "GGML_CCACHE":
            if flag is not False:
                raise ConfigError(f"{where}: {arg}: ggml's own ccache lookup would race ours; the compiler "
                                  "cache is set with --cache-backend or [tool.llama-wheels.cache]",
                                  f"remove -D{name} from {where}")
            notes.append(f"{where}: {arg} is already set; dropped")
            continue
        if name in ("GGML_CUDA", "LLAMA_CUBLAS", "GGML_CUBLAS"):
            if flag is None or flag != cuda:
                fix = "use nox -s build_cpu" if cuda else "use nox -s build_cuda"
                raise ConfigError(f"{where}: {arg} contradicts this {build} build", f"{fix}, or remove -D{name}")
            notes.append(f"{where}: {arg} is already set by this {build} build; dropped")
            continue
        if name == "CMAKE_CUDA_ARCHITECTURES":
            raise ConfigError(f"{where}: {arg}: the archs come from --arch-set/--archs (or CMAKE_ARGS)",
                              f"remove -D{name} from {where}")
        kept.append(arg)
    return kept, notes


def from_environment(env: Mapping[str, str], *, cuda: bool, arch_flag_given: bool) -> UserCMakeArgs:
    """Read the hand procedure's environment variables. Conflicts raise ConfigError; the rest comes back with notes."""
    notes: list[str] = []
    if env.get("FORCE_CMAKE"):
        notes.append(f"FORCE_CMAKE={env['FORCE_CMAKE']} does nothing (llama-cpp-python ignores it since 2023): "
                     "every build here compiles from source")
    if env.get("GGML_CUDA"):
        notes.append(f"GGML_CUDA={env['GGML_CUDA']} in the environment does nothing: build_cuda builds with CUDA, "
                     "build_cpu without")
    raw = env.get("CMAKE_ARGS", "").strip()
    if not raw:
        return UserCMakeArgs(notes=tuple(notes))
    try:
        words = shlex.split(raw, posix=True)
    except ValueError as exc:
        raise ConfigError(f"CMAKE_ARGS cannot be split into flags: {exc}", "check its quotes") from None
    archs = None
    rest = []
    for w in words:
        m = _DEFINE.match(w)
        if m and m["name"] == "CMAKE_CUDA_ARCHITECTURES":
            archs = m["value"].strip().strip('"')
        else:
            rest.append(w)
    if archs is not None and not cuda:
        raise ConfigError(f"CMAKE_ARGS sets CMAKE_CUDA_ARCHITECTURES={archs} but this is a CPU build",
                          "use nox -s build_cuda, or unset CMAKE_ARGS")
    if archs is not None and arch_flag_given:
        notes.append(f"CMAKE_ARGS: CMAKE_CUDA_ARCHITECTURES={archs} ignored: --arch-set/--archs was given")
        archs = None
    kept, more = check_extra(rest, cuda=cuda, where="CMAKE_ARGS")
    notes += more
    if kept:
        notes.append(f"CMAKE_ARGS: passing {shlex.join(kept)} to CMake (the wheel's label gets a hash of them)")
    return UserCMakeArgs(archs=archs, passthrough=tuple(kept), notes=tuple(notes))
