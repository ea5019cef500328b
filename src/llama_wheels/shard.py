"""Sharded cold builds: K small runners each compile a balanced 1/K of a flavour's compile jobs into the
shared compiler cache, and a final build then finds every object there (issue #29).

Everything here is pure: which compile jobs a configured build dir has (ninja's own ``-t targets all`` and
``-t compdb``), what each costs (a recorded ``.ninja_log``), the shards (longest job first onto the least
loaded shard), and, after the final build, which shard the objects it had to compile belonged to. Every
runner plans from the same inputs (the configured build dir's jobs, the shipped cost table), so every
runner gets the same plan without talking to the others, and each object is in exactly one shard.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llama_wheels.errors import ConfigError

#: Recorded ``.ninja_log`` files, one per llama-cpp-python version and flavour: ``<version>-<flavour>.ninja_log``.
COST_TABLES = Path(__file__).with_name("data") / "shard-costs"
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` of ``count`` (1-based, as the workflow's matrix counts)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        """``"2/8"`` -> ShardSpec(2, 8); anything else is a ConfigError naming the form."""
        m = _SPEC.match(text)
        if not m or not 1 <= int(m[1]) <= int(m[2]):
            raise ConfigError(f"--shard {text!r} is not I/K with 1 <= I <= K", "write it like --shard 2/8")
        return cls(int(m[1]), int(m[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class CompileJob:
    """One object a build compiles: its ninja output (build-dir relative) and its source (absolute)."""

    output: str
    source: str


@dataclass(frozen=True)
class ShardPlan:
    """The shards of one flavour's compile jobs. ``shards[i]`` holds shard i+1's outputs, sorted."""

    shards: tuple[tuple[str, ...], ...]
    loads: tuple[float, ...]  # the summed cost of each shard, in the cost table's seconds
    costed: int  # jobs the cost table knew
    default_cost: float  # what an unknown job was counted as
    source: str  # where the costs came from, for the log

    @property
    def count(self) -> int:
        return len(self.shards)

    def shard_of(self, output: str) -> int:
        """The 1-based shard that compiles ``output``; ValueError for an output in no shard."""
        for i, outputs in enumerate(self.shards, 1):
            if output in outputs:
                return i
        raise ValueError(f"{output} is in no shard")

    def describe(self) -> list[str]:
        total = sum(self.loads)
        jobs = sum(len(s) for s in self.shards)
        lines = [f"shard plan: {jobs} compile jobs in {self.count} shards by measured cost ({self.source}; "
                 f"{self.costed}/{jobs} jobs costed, the others counted as {self.default_cost:.1f}s)"]
        for i, (outputs, load) in enumerate(zip(self.shards, self.loads, strict=True), 1):
            share = 100 * load / total if total else 100 / self.count
            lines.append(f"  shard {i}/{self.count}: {len(outputs)} jobs, {load:.0f}s ({share:.1f}%)")
        return lines


def parse_ninja_log(text: str) -> dict[str, float]:
    """``.ninja_log`` (v5 and later: ``start end mtime output hash``, milliseconds, tab-separated) ->
    output -> seconds of its last build. A later entry for the same output replaces an earlier one, as
    ninja itself reads the log."""
    lines = text.splitlines()
    if not lines or not re.match(r"# ninja log v\d+$", lines[0].strip()):
        raise ConfigError("not a .ninja_log (no '# ninja log vN' header)", "give the .ninja_log of a finished build")
    costs: dict[str, float] = {}
    for line in lines[1:]:
        parts = line.split("\t")
        if len(parts) < 5:
            continue
        try:
            start, end = int(parts[0]), int(parts[1])
        except ValueError:
            continue
        costs[parts[3]] = max(end - start, 0) / 1000
    return costs


def compile_jobs(targets_all: str, compdb: str, build_dir: Path) -> list[CompileJob]:
    """The compile jobs of a configured build dir, from ``ninja -t targets all`` (an output is a compile job
    when its rule is one of CMake's ``<LANG>_COMPILER__...`` rules) and ``ninja -t compdb`` (its source).
    Sorted by output, so every runner lists them in the same order."""
    compiled = set()
    for line in targets_all.splitlines():
        output, sep, rule = line.rpartition(": ")
        if sep and "_COMPILER__" in rule.strip():
            compiled.add(output.strip())
    sources = {e["output"]: e["file"] for e in json.loads(compdb) if e.get("output") in compiled}
    return sorted((CompileJob(out, normalize_source(sources.get(out, ""), build_dir)) for out in compiled),
                  key=lambda j: j.output)


def normalize_source(path: str, build_dir: Path) -> str:
    """A source path as ninja or ccache writes it (absolute, or relative to the build dir) -> absolute."""
    return os.path.normpath(os.path.join(build_dir, path)) if path else ""


def plan(outputs: Iterable[str], costs: Mapping[str, float], count: int, *, source: str = "") -> ShardPlan:
    """Split ``outputs`` into ``count`` shards of about equal summed cost: the costliest job first onto the
    least loaded shard (ties: by name, then the lower shard), the classic LPT rule. Every shard's load is
    at most the mean load plus the costliest single job. A job the table does not know is counted as
    the median known cost (all equal when nothing is known). Deterministic: the same inputs give the
    same plan on every runner."""
    if count < 1:
        raise ConfigError(f"a shard count must be at least 1, got {count}", "write it like --shard 2/8")
    jobs = sorted(set(outputs))
    known = [costs[o] for o in jobs if o in costs]
    default = statistics.median(known) if known else 1.0
    weighted = sorted(((costs.get(o, default), o) for o in jobs), key=lambda w: (-w[0], w[1]))
    heap = [(0.0, i) for i in range(count)]
    members: list[list[str]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for cost, output in weighted:
        load, i = heapq.heappop(heap)
        members[i].append(output)
        loads[i] = load + cost
        heapq.heappush(heap, (loads[i], i))
    return ShardPlan(shards=tuple(tuple(sorted(m)) for m in members), loads=tuple(loads), costed=len(known),
                     default_cost=default, source=source or "no cost table")


def cost_table(version: str, flavour: str, folder: Path = COST_TABLES) -> Path | None:
    """The shipped ``.ninja_log`` for this llama-cpp-python version and flavour, if one was recorded."""
    path = folder / f"{version}-{flavour}.ninja_log"
    return path if path.is_file() else None


def missed_sources(stats_log: str, build_dir: Path) -> set[str]:
    """The sources (absolute) that missed the cache in a ccache stats log (``CCACHE_STATSLOG``: ``# source``
    then the counters of that call)."""
    missed: set[str] = set()
    current = ""
    for line in stats_log.splitlines():
        if line.startswith("# "):
            current = normalize_source(line[2:].strip(), build_dir)
        elif line.strip() == "cache_miss" and current:
            missed.add(current)
    return missed


_SCCACHE_CALL = re.compile(r"\] \[([^\]]+)\]: get_cached_or_compile: (\[.*\])\s*$")
_SCCACHE_RESULT = re.compile(r"\] \[([^\]]+)\]: Cache (hit|miss) in ")


def sccache_missed_outputs(server_log: str) -> set[str]:
    """The outputs (as the compile command names them: build-dir relative under ninja) that missed, from the
    debug log of this build's own sccache server (``SCCACHE_LOG=sccache::compiler::compiler=debug``). sccache
    tags each line with the output's file name only, so a call is paired with the oldest open call of that name:
    exact for unique names, best effort when two objects of one name compile at the same moment."""
    open_calls: dict[str, list[str]] = {}
    missed: set[str] = set()
    for line in server_log.splitlines():
        m = _SCCACHE_CALL.search(line)
        if m:
            try:
                args = json.loads(m[2])
            except ValueError:
                continue
            out = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "-o"), None)
            if isinstance(out, str):
                open_calls.setdefault(m[1], []).append(os.path.normpath(out))
            continue
        m = _SCCACHE_RESULT.search(line)
        if m and open_calls.get(m[1]):
            out = open_calls[m[1]].pop(0)
            if m[2] == "miss":
                missed.add(out)
    return missed


@dataclass(frozen=True)
class ShardReport:
    """What the final build had to compile itself, by the shard that should have put it in the cache."""

    count: int
    missed: Mapping[int, tuple[str, ...]]  # shard -> its outputs that missed
    sizes: Mapping[int, int]  # shard -> its number of jobs
    unplanned: tuple[str, ...] = ()  # missed objects in no shard (a plan from other inputs)

    @property
    def complete(self) -> bool:
        return not self.missed and not self.unplanned

    def lines(self) -> list[str]:
        if self.complete:
            return [f"shards: all {self.count} shards' objects came from the cache"]
        out = []
        for i, outputs in sorted(self.missed.items()):
            whole = "all" if len(outputs) == self.sizes[i] else f"{len(outputs)} of"
            out.append(f"shard {i}/{self.count} is missing: compiled {whole} its {self.sizes[i]} objects here "
                       f"(e.g. {outputs[0]}); did that runner fail or get killed?")
        if self.unplanned:
            out.append(f"{len(self.unplanned)} missed object(s) are in no shard of this plan (e.g. "
                       f"{self.unplanned[0]}): the shards ran with other inputs or another --shard count")
        return out


def attribute(shard_plan: ShardPlan, jobs: Sequence[CompileJob], missed: set[str]) -> ShardReport:
    """Which shard each compile job that missed (by source, from :func:`missed_sources`) belonged to."""
    by_shard: dict[int, list[str]] = {}
    unplanned = []
    for job in jobs:
        if job.source not in missed:
            continue
        try:
            by_shard.setdefault(shard_plan.shard_of(job.output), []).append(job.output)
        except ValueError:
            unplanned.append(job.output)
    return ShardReport(count=shard_plan.count, missed={i: tuple(v) for i, v in by_shard.items()},
                       sizes={i: len(s) for i, s in enumerate(shard_plan.shards, 1)}, unplanned=tuple(unplanned))
