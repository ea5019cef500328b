"""Shard planning from a recorded cold build (tests/fixtures/shard/README.md says which): every compile job in
exactly one shard, balanced by measured cost, the same plan every time, and the final build's misses named
by shard."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from llama_wheels import shard
from llama_wheels.errors import ConfigError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "shard"
BUILD_DIR = Path("/tmp/prov/a/build/cpu")  # where the fixtures were recorded
LOG = shard.COST_TABLES / "0.3.36-cpu.ninja_log"


@pytest.fixture(scope="module")
def jobs() -> list[shard.CompileJob]:
    return shard.compile_jobs((FIX / "targets-all.txt").read_text(), (FIX / "compdb.json").read_text(), BUILD_DIR)


@pytest.fixture(scope="module")
def costs() -> dict[str, float]:
    return shard.parse_ninja_log(LOG.read_text())


def test_compile_jobs_are_the_builds_objects(jobs: list[shard.CompileJob]) -> None:
    assert len(jobs) == 178  # the cold build's stats log counts 178 compiles
    assert all(j.output.endswith(".o") and j.source.startswith("/tmp/prov/a/build/") for j in jobs)
    unity = next(j for j in jobs if j.output.endswith("unity_9_cxx.cxx.o"))
    assert unity.source == str(BUILD_DIR / "vendor/llama.cpp/src/CMakeFiles/llama.dir/Unity/unity_9_cxx.cxx")
    assert [j.output for j in jobs] == sorted(j.output for j in jobs)


def test_the_cost_table_knows_every_job(jobs: list[shard.CompileJob], costs: dict[str, float]) -> None:
    assert {j.output for j in jobs} <= set(costs)
    assert 2500 < sum(costs[j.output] for j in jobs) < 4000  # seconds summed over a 2-core cold build


@pytest.mark.parametrize("count", [1, 2, 3, 4, 8, 16])
def test_every_job_in_exactly_one_shard_and_balanced(jobs: list[shard.CompileJob], costs: dict[str, float],
                                                    count: int) -> None:
    outputs = [j.output for j in jobs]
    plan = shard.plan(outputs, costs, count)
    every = [o for s in plan.shards for o in s]
    assert sorted(every) == sorted(outputs) and len(every) == len(set(every))
    assert plan.costed == len(outputs)
    mean, biggest = sum(plan.loads) / count, max(costs[o] for o in outputs)
    # The stated tolerance: no shard above the mean plus the costliest job (the LPT bound); and up to 16 shards
    # (while the mean is above the costliest job), within 1% of the mean.
    assert max(plan.loads) <= mean + biggest
    if count <= 16:
        assert max(plan.loads) <= 1.01 * mean and min(plan.loads) >= 0.99 * mean, plan.describe()


def test_the_plan_is_deterministic(jobs: list[shard.CompileJob], costs: dict[str, float]) -> None:
    outputs = [j.output for j in jobs]
    first = shard.plan(outputs, costs, 8)
    assert shard.plan(list(reversed(outputs)), dict(reversed(costs.items())), 8) == first
    assert first.shard_of(first.shards[6][0]) == 7


def test_jobs_the_table_does_not_know_count_as_the_median(costs: dict[str, float]) -> None:
    plan = shard.plan(["new/a.o", "new/b.o", *itertools.islice(costs, 10)], costs, 2)
    assert plan.costed == 10 and sum(len(s) for s in plan.shards) == 12
    nothing = shard.plan(["a.o", "b.o", "c.o", "d.o"], {}, 2)
    assert [len(s) for s in nothing.shards] == [2, 2] and "no cost table" in nothing.describe()[0]


def test_balance_is_by_cost_not_count() -> None:
    plan = shard.plan(["z-big.o", "s1.o", "s2.o", "s3.o", "s4.o"], {"z-big.o": 40, "s1.o": 10, "s2.o": 10,
                                                                     "s3.o": 10, "s4.o": 10}, 2)
    assert plan.shards == (("z-big.o",), ("s1.o", "s2.o", "s3.o", "s4.o")) and plan.loads == (40, 40)


def test_ninja_log_later_entries_win_and_bad_input_is_refused() -> None:
    text = "# ninja log v5\n0\t100\t1\ta.o\th\n5\t2005\t2\ta.o\th\nbroken line\n"
    assert shard.parse_ninja_log(text) == {"a.o": 2.0}
    with pytest.raises(ConfigError, match=r"not a \.ninja_log"):
        shard.parse_ninja_log("a.o 1 2\n")


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "2/0", ""])
def test_bad_shard_specs(text: str) -> None:
    with pytest.raises(ConfigError, match="--shard 2/8"):
        shard.ShardSpec.parse(text)


def test_shard_spec() -> None:
    assert shard.ShardSpec.parse(" 2/8") == shard.ShardSpec(2, 8) and str(shard.ShardSpec(2, 8)) == "2/8"


def test_a_missing_shard_is_named(jobs: list[shard.CompileJob], costs: dict[str, float]) -> None:
    plan = shard.plan([j.output for j in jobs], costs, 8)
    # The recorded cold build missed nearly everything: every shard is "missing". 4 of its 178 calls hit (their
    # preprocessed text matched an object compiled moments before, e.g. llguidance.cpp with llguidance off).
    cold = shard.missed_sources((FIX / "ccache-stats-cold.log").read_text(), BUILD_DIR)
    assert len(cold) == 174
    report = shard.attribute(plan, jobs, cold)
    assert sorted(report.missed) == list(range(1, 9)) and not report.complete
    # Only shard 3's sources missed: the report names shard 3 alone, with all its objects.
    third = {j.source for j in jobs if j.output in plan.shards[2]}
    report = shard.attribute(plan, jobs, third)
    (line,) = report.lines()
    assert line.startswith(f"shard 3/8 is missing: compiled all its {len(plan.shards[2])} objects here")
    # Part of shard 5 (a runner killed midway).
    some = {j.source for j in jobs if j.output in plan.shards[4][:2]}
    line = shard.attribute(plan, jobs, some).lines()[0]
    assert line.startswith(f"shard 5/8 is missing: compiled 2 of its {len(plan.shards[4])}")
    assert shard.attribute(plan, jobs, set()).lines() == ["shards: all 8 shards' objects came from the cache"]


def test_missed_sources_reads_relative_paths_against_the_build_dir() -> None:
    log = "# ../src/x/ggml.c\ncache_miss\n# vendor/u.cxx\ndirect_cache_hit\n"
    assert shard.missed_sources(log, Path("/b/cpu")) == {"/b/src/x/ggml.c"}


def test_shipped_cost_table_lookup(tmp_path: Path) -> None:
    assert shard.cost_table("0.3.36", "cpu") == LOG
    assert shard.cost_table("0.3.36", "cu130-sm90") is None


@pytest.mark.parametrize(("argv", "at_once"), [
    (["build", "--cpu", "--shard", "3/2"], True),
    (["build", "--cpu", "--shard", "1/2", "--shard", "1/4"], True),  # two plans in one run
    (["build", "--cpu", "--shard", "1/2", "--shards", "2"], True),  # a shard runner is no final build
    (["build", "--cpu", "--shards", "0"], True),
    (["build", "--cpu", "--shard", "1/8", "--shard", "2/8", "--dry-run"], False),
    (["build", "--cpu", "--shards", "8", "--dry-run"], False),
])
def test_shard_flags_answer_at_once(tmp_path: Path, argv: list[str], at_once: bool) -> None:
    from llama_wheels import cli

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert cli.answers_at_once(argv, {"PATH": "", "LLAMA_WHEELS_ROOT": str(tmp_path)}) is at_once


def test_sccache_misses_by_output() -> None:
    """A real sccache 0.16 server's debug log (tests/fixtures/shard/README.md): sub/a.c.o hit, then sub2/a.c.o (the
    same file name) and sub/b.c.o missed."""
    log = (FIX / "sccache-server.log").read_text()
    assert shard.sccache_missed_outputs(log) == {"sub2/a.c.o", "sub/b.c.o"}
