"""CUDA architectures: parse what users write, emit CMake's syntax, check against a toolkit.

Accepted forms, separated by ``;`` or ``,``: ``86``, ``8.6``, ``sm_86``, ``compute_86`` (PTX),
``86-real`` (SASS only), ``86-virtual`` (PTX only), ``90a``, ``120a``, ``sm_90a``, ``120f``,
or the name of a configured arch set.

A bare number means SASS for that GPU. The ``ptx`` policy then adds PTX for the highest portable
arch (``highest``, as upstream's own wheels do) or none. llama.cpp turns 120/121 into 120a/121a,
whose code runs on that GPU only and whose PTX is not forward-compatible; we emit that form
ourselves so the plan says what will really be compiled.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from llama_wheels.compat import (
    ARCH_SUPPORT,
    FEATURE_MIN_CUDA,
    LLAMA_CPP_REWRITES_TO_A,
    CudaVersion,
    arch_floor,
    supports,
    vstr,
)
from llama_wheels.errors import ArchError, ConfigError

Kind = Literal["real", "virtual", "both"]
_TOKEN = re.compile(
    r"^(?:(?P<prefix>sm_|compute_))?(?P<num>\d{1,3})(?:\.(?P<minor>\d))?(?P<feature>[af])?"
    r"(?:-(?P<suffix>real|virtual))?$"
)
SPECIAL_SETS = ("auto",)


@dataclass(frozen=True, order=True)
class Arch:
    """One compute capability with the code kind to embed: SASS (real), PTX (virtual) or both."""

    number: int
    feature: str = ""  # "", "a" or "f"
    kind: Kind = "real"

    @property
    def name(self) -> str:
        return f"{self.number}{self.feature}"

    def cmake(self) -> str:
        # "both" is written out, never as a bare number: in our syntax a bare number means SASS only,
        # so what we print parses back to the same set.
        return f"{self.name}-real;{self.name}-virtual" if self.kind == "both" else f"{self.name}-{self.kind}"

    @property
    def has_sass(self) -> bool:
        return self.kind in ("real", "both")

    @property
    def has_ptx(self) -> bool:
        return self.kind in ("virtual", "both")


@dataclass(frozen=True)
class ArchSet:
    """An ordered, de-duplicated set of archs, as CMake will receive it."""

    archs: tuple[Arch, ...]
    source: str = ""  # how it was chosen: "--archs 90", "arch set 'universal'", "auto: GPUs present"
    notes: tuple[str, ...] = ()

    def cmake(self) -> str:
        return ";".join(a.cmake() for a in self.archs)

    @property
    def sass(self) -> tuple[str, ...]:
        """cubin targets as cuobjdump names them: ``sm_90``, ``sm_120a``."""
        return tuple(f"sm_{a.name}" for a in self.archs if a.has_sass)

    @property
    def ptx(self) -> tuple[str, ...]:
        return tuple(f"compute_{a.name}" for a in self.archs if a.has_ptx)

    @property
    def arch_list(self) -> tuple[int, ...]:
        """What llama.cpp reports as ``ARCHS =`` (nvcc's __CUDA_ARCH_LIST__): one entry per arch."""
        return tuple(sorted({a.number * 10 for a in self.archs}))

    @property
    def token(self) -> str:
        """Short id for flavour names: what is compiled, and nothing else.

        ``sm`` + the SASS archs, with their ``a``/``f`` suffix (``sm90a``; 120/121 are always built as
        120a/121a, see :data:`LLAMA_CPP_REWRITES_TO_A`, so their ``a`` is not written: ``sm120``). The PTX
        is not written when it is what ``ptx = 'highest'`` gives (the highest portable SASS arch, as in
        ``sm90``, ``sm86-89-120``); otherwise ``-noptx`` (none at all) or ``-ptx`` + the PTX archs
        (``sm86-89-ptx90``, ``ptx89``). Distinct arch sets give distinct tokens."""
        sass = sorted({(a.number, a.feature) for a in self.archs if a.has_sass})
        ptx = sorted({(a.number, a.feature) for a in self.archs if a.has_ptx})
        portable = [n for n, f in sass if f == ""]
        expected = [(max(portable), "")] if portable else []
        tok = "sm" + "-".join(_token_name(n, f) for n, f in sass) if sass else ""
        if ptx != expected:
            tail = "ptx" + "-".join(_token_name(n, f) for n, f in ptx) if ptx else "noptx"
            tok += ("-" if tok else "") + tail
        return tok


def _token_name(number: int, feature: str) -> str:
    """``90a`` -> "90a"; ``120a`` -> "120" (llama.cpp builds no other 120, so the suffix says nothing)."""
    return str(number) if feature == "a" and number in LLAMA_CPP_REWRITES_TO_A else f"{number}{feature}"


def parse_arch(token: str) -> list[Arch]:
    """Parse one token. ``86`` -> [86-real]; ``compute_86`` -> [86-virtual]; ``86-real`` as written."""
    raw = token.strip()
    m = _TOKEN.match(raw.lower())
    if not m:
        raise ArchError(f"'{raw}' is not a CUDA architecture",
                        "write it like 86, 8.6, sm_86, 86-real, 86-virtual or 90a")
    number = int(m["num"]) * 10 + int(m["minor"]) if m["minor"] is not None else int(m["num"])
    if number not in ARCH_SUPPORT:
        close = difflib.get_close_matches(str(number), [str(n) for n in ARCH_SUPPORT], n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ArchError(f"'{raw}' is not a known compute capability",
                        f"{hint}known: {', '.join(str(n) for n in ARCH_SUPPORT)}")
    if m["prefix"] == "compute_" and m["suffix"]:
        raise ArchError(f"'{raw}' mixes compute_ with -{m['suffix']}", "write compute_86 or 86-virtual")
    kind: Kind = "virtual" if m["prefix"] == "compute_" else (m["suffix"] or "real")  # type: ignore[assignment]
    return [Arch(number, m["feature"] or "", kind)]


def split_spec(spec: str) -> list[str]:
    tokens = re.split(r"[;,]", spec.strip())
    if not spec.strip():
        raise ArchError("the arch list is empty", "give at least one arch, e.g. --archs 86")
    if any(not t.strip() for t in tokens):
        raise ArchError(f"'{spec}' has an empty entry", "separate archs with one ';' or ',' and no trailing separator")
    return [t.strip() for t in tokens]


def resolve_named(name: str, named: Mapping[str, str]) -> str:
    if name in named:
        return named[name]
    options = [*named, *SPECIAL_SETS]
    close = difflib.get_close_matches(name, options, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(f"unknown arch set '{name}' (and not a CUDA architecture)",
                      f"{hint}configured: {', '.join(sorted(options))}")


def parse_arch_set(spec: str, named: Mapping[str, str] | None = None, *, ptx: str = "highest",
                   source: str = "") -> ArchSet:
    """Parse a spec (a list, or the name of a configured set) into the archs CMake will get."""
    named = named or {}
    text = spec.strip()
    if text in named:
        source = source or f"arch set '{text}' = {named[text]}"
        text = named[text]
    elif not re.search(r"\d", text) and text:
        resolve_named(text, named)  # a name, not an arch: raises with did-you-mean
    archs: list[Arch] = []
    for tok in split_spec(text):
        archs.extend(parse_arch(tok))
    return finish(archs, ptx=ptx, source=source or text)


def finish(archs: Sequence[Arch], *, ptx: str = "highest", source: str = "") -> ArchSet:
    """Apply the llama.cpp 12X -> 12Xa rewrite and the PTX policy; de-duplicate and sort."""
    if ptx not in ("highest", "none"):
        raise ConfigError(f"ptx = '{ptx}' is not valid", "use 'highest' or 'none'")
    notes: list[str] = []
    out: list[Arch] = []
    for a in archs:
        if a.number in LLAMA_CPP_REWRITES_TO_A and a.feature == "":
            notes.append(f"{a.cmake()} becomes {a.number}a "
                         f"(llama.cpp rewrites it; the code runs on sm_{a.number} only)")
            a = Arch(a.number, "a", a.kind)
        out.append(a)
    explicit_ptx = any(a.has_ptx for a in out)
    if ptx == "highest" and not explicit_ptx:
        portable = [a for a in out if a.feature == ""]
        if portable:
            top = max(portable)
            out.append(Arch(top.number, "", "virtual"))
            notes.append(f"adds {top.number}-virtual: PTX so newer GPUs can JIT-compile (ptx = 'highest')")
    merged: dict[tuple[int, str], set[str]] = {}
    for a in out:
        merged.setdefault((a.number, a.feature), set()).add(a.kind)
    final: list[Arch] = []
    for (num, feat), kinds in sorted(merged.items()):
        if "both" in kinds or {"real", "virtual"} <= kinds:
            final.append(Arch(num, feat, "both"))
        else:
            final.append(Arch(num, feat, next(iter(kinds))))  # type: ignore[arg-type]
    return ArchSet(tuple(final), source=source, notes=tuple(notes))


def check_toolkit(archs: ArchSet, cuda: CudaVersion) -> list[str]:
    """Problems compiling ``archs`` with CUDA ``cuda``; each names the fix. Empty: all fine."""
    problems: list[str] = []
    for a in archs.archs:
        s = ARCH_SUPPORT[a.number]
        if not supports(s, cuda):
            if cuda < s.first:
                problems.append(f"sm_{a.number} ({s.gpus}) needs CUDA >= {vstr(s.first)}, the toolkit is "
                                f"{vstr(cuda)}; install CUDA {vstr(s.first)}+ or use --cuda pypi:13.0")
            elif s.last_exclusive is not None:
                floor = arch_floor(cuda)
                problems.append(f"sm_{a.number} ({s.gpus}) is not supported by CUDA {vstr(cuda)} (its lowest is "
                                f"sm_{floor}); build it with CUDA < {vstr(s.last_exclusive)} or drop {a.number}")
            continue
        need = FEATURE_MIN_CUDA.get(a.feature)
        if need and cuda < need:
            problems.append(f"{a.name} needs CUDA >= {vstr(need)} for the '{a.feature}' suffix; "
                            f"the toolkit is {vstr(cuda)}")
    return problems
