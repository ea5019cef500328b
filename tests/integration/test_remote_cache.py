"""Runners with separate, empty local cache dirs sharing a real Redis server: ccache, then sccache. Runner A
of each fills the Redis without a cold compile of its own (ccache: reshare from the warm session cache;
sccache: the session's one cold sccache build, shared with the farm test)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import SccacheColdBuild, free_port, lw, redis_command


def dbsize(port: int) -> int:
    reply = redis_command(port, "DBSIZE")
    assert reply.startswith(":"), reply
    return int(reply[1:].strip())


def runner(lw_env: dict[str, str], work: Path, name: str, remote: str | None, *extra: str,
           local: str | None = None, backend: str = "ccache", local_default: bool = False,
           ) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
    env = {**lw_env, "LLAMA_WHEELS_CACHE_BACKEND": backend,
           "LLAMA_WHEELS_BUILD_DIR": str(work / f"build-{name}"), "LLAMA_WHEELS_WHEELHOUSE": str(work / f"wh-{name}")}
    if not local_default:  # an empty local dir of its own: a new runner
        env["LLAMA_WHEELS_CACHE_LOCAL_DIR"] = str(work / f"{backend}-{local or name}")
    if remote:
        env["LLAMA_WHEELS_CACHE_REMOTE"] = remote
    t0 = time.monotonic()
    res = lw("build", "--cpu", "--variant", "default", *extra, env=env)
    seconds = time.monotonic() - t0
    if res.returncode != 0:
        return res, {}
    entry = next(iter(json.loads((work / f"wh-{name}" / "manifest.json").read_text())["wheels"].values()))
    print(f"{backend} runner {name}: {seconds:.1f} s (build step {entry['build_seconds']} s, "
          f"{entry['cpu_seconds']} CPU-s), cache {entry['cache']}")
    return res, entry["cache"]


@pytest.fixture(scope="module")
def warm_remote(redis: int, lw_env: dict[str, str], cpu_build: Path, tmp_path_factory: pytest.TempPathFactory):
    """Runner A fills the remote. It has the session's local ccache (warm from cpu_build, the suite's one
    cold ccache build) and ccache's `reshare`, which writes local hits to the remote as well: the same
    objects in Redis as a cold compile would put there, without a second cold compile."""
    work = tmp_path_factory.mktemp("fleet")
    before = dbsize(redis)
    res, stats = runner({**lw_env, "CCACHE_RESHARE": "true"}, work, "a", f"redis://127.0.0.1:{redis}",
                        local_default=True)
    assert res.returncode == 0, res.stdout[-3000:]
    assert stats["hits"] + stats["misses"] > 100 and dbsize(redis) - before > 100  # it filled the remote
    return work


def test_second_runner_gets_its_objects_from_the_remote(warm_remote: Path, redis: int,
                                                         lw_env: dict[str, str]) -> None:
    res, stats = runner(lw_env, warm_remote, "b", f"redis://127.0.0.1:{redis}")
    assert res.returncode == 0, res.stdout[-3000:]
    calls = stats["hits"] + stats["misses"]
    assert calls > 100 and stats["remote_hits"] >= 0.9 * calls, stats


def test_read_only_mode_hits_and_writes_nothing(warm_remote: Path, redis: int, lw_env: dict[str, str]) -> None:
    before = dbsize(redis)
    res, stats = runner(lw_env, warm_remote, "c", f"redis://127.0.0.1:{redis}", "--cache-read-only")
    assert res.returncode == 0, res.stdout[-3000:]
    assert stats["remote_hits"] > 100
    assert dbsize(redis) == before
    assert "read-only" in res.stdout


def test_unreachable_remote_warns_and_builds(warm_remote: Path, lw_env: dict[str, str]) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    res, stats = runner(lw_env, warm_remote, "d", dead, local="b")
    assert res.returncode == 0, res.stdout[-3000:]
    assert "is unreachable" in res.stdout and "using the local cache only" in res.stdout
    assert stats["local_hits"] > 100 and stats["remote_errors"] == 0  # the dead remote was left out


def test_require_remote_cache_fails_fast(warm_remote: Path, lw_env: dict[str, str]) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    res, _ = runner(lw_env, warm_remote, "e", dead, "--require-remote-cache")
    assert res.returncode == 4 and "unreachable" in res.stdout and "Traceback" not in res.stdout
    assert time.monotonic() - t0 < 60 and "==> compile" not in res.stdout


def test_cache_tasks(warm_remote: Path, lw_env: dict[str, str]) -> None:
    env = {**lw_env, "LLAMA_WHEELS_CACHE_LOCAL_DIR": str(warm_remote / "ccache-b"),
           "LLAMA_WHEELS_CACHE_REMOTE": "redis://:sekret@127.0.0.1:1"}
    stats = lw("cache-stats", env=env)
    assert stats.returncode == 0 and "sekret" not in stats.stdout and "***@127.0.0.1:1" in stats.stdout
    dry = lw("cache-clear", "--dry-run", env=env)
    assert dry.returncode == 0 and "would free" in dry.stdout
    assert any((warm_remote / "ccache-b").iterdir())


@pytest.fixture(scope="module")
def sccache_fleet(sccache_cold_build: SccacheColdBuild) -> Path:
    """Runner A: the session's one cold sccache build (on the farm where it can run), into this Redis."""
    cold = sccache_cold_build
    assert cold.result.returncode == 0, cold.result.stdout[-3000:]
    stats = cold.entry()["cache"]
    assert stats["misses"] > 100 and stats["hits"] == 0, stats
    assert cold.servers_after == cold.servers_before  # the build's own sccache server was stopped
    return cold.work


def test_sccache_second_runner_gets_its_objects_from_the_remote(sccache_fleet: Path, redis: int,
                                                                  lw_env: dict[str, str]) -> None:
    res, stats = runner(lw_env, sccache_fleet, "b", f"redis://127.0.0.1:{redis}", backend="sccache")
    assert res.returncode == 0, res.stdout[-3000:]
    calls = stats["hits"] + stats["misses"]
    assert calls > 100 and stats["remote_hits"] >= 0.9 * calls and stats["local_hits"] == 0, stats


def test_sccache_read_only_hits_and_writes_nothing(sccache_fleet: Path, redis: int, lw_env: dict[str, str]) -> None:
    before = dbsize(redis)
    res, stats = runner(lw_env, sccache_fleet, "c", f"redis://127.0.0.1:{redis}", "--cache-read-only",
                        backend="sccache")
    assert res.returncode == 0, res.stdout[-3000:]
    calls = stats["hits"] + stats["misses"]
    assert calls > 100 and stats["hits"] >= 0.9 * calls, stats  # an empty local dir: every hit is remote
    assert dbsize(redis) == before
