"""A fleet of shard runners and the final build, each in its own build dir and HOME, through the session's real
Valkey (issue #29). No cold compile of its own: the shard runners have the session's warm local ccache
(cpu_build paid for it) with ccache's ``reshare``, so each one puts exactly its shard's objects into the remote,
as a cold compile of that shard would; the final build starts from an empty local cache and can only hit what
the shards put there. The one compile the file pays for is the missing shard's in the last test."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from pathlib import Path

from llama_wheels import shard
from llama_wheels.config import resolve

from .conftest import ROOT, lw

#: Valkey databases of their own, so the session's other fleet tests (db 0) never fill these.
TWO_SHARDS_DB, MISSING_DB = 5, 6


def runner(lw_env: dict[str, str], work: Path, name: str, remote: str, *args: str,
           warm: bool = False) -> tuple[subprocess.CompletedProcess[str], float]:
    """One runner: its own build dir, wheelhouse and HOME. ``warm``: the session's local ccache with reshare
    (a shard runner standing in for a cold one); else an empty local cache of its own."""
    shared = resolve(ROOT, lw_env)
    env = {**lw_env, "HOME": str(work / f"home-{name}"), "LLAMA_WHEELS_CACHE_DIR": str(shared.cache_dir),
           "LLAMA_WHEELS_BUILD_DIR": str(work / f"build-{name}"), "LLAMA_WHEELS_WHEELHOUSE": str(work / f"wh-{name}"),
           "LLAMA_WHEELS_CACHE_BACKEND": "ccache", "LLAMA_WHEELS_CACHE_REMOTE": remote}
    (work / f"home-{name}").mkdir(exist_ok=True)
    if warm:
        env |= {"LLAMA_WHEELS_CACHE_LOCAL_DIR": str(shared.compiler_cache.local_dir), "CCACHE_RESHARE": "true"}
    else:
        env["LLAMA_WHEELS_CACHE_LOCAL_DIR"] = str(work / f"ccache-{name}")
    t0 = time.monotonic()
    res = lw("build", "--cpu", "--variant", "default", *args, env=env)
    seconds = time.monotonic() - t0
    (work / f"{name}.log").write_text(res.stdout)
    print(f"runner {name} ({' '.join(args)}): {seconds:.1f} s, exit {res.returncode}")
    return res, seconds


def wheel_entry(work: Path, name: str) -> dict[str, object]:
    manifest = json.loads((work / f"wh-{name}" / "manifest.json").read_text())
    return dict(next(iter(manifest["wheels"].values())))


def shard_objects(res: subprocess.CompletedProcess[str], spec: str) -> int:
    m = re.search(rf"shard {spec} of cpu: (\d+) objects", res.stdout)
    assert m, res.stdout[-3000:]
    return int(m[1])


def test_two_shards_then_the_final_build_hits_every_object(redis: int, lw_env: dict[str, str], cpu_build: Path,
                                                          tmp_path: Path) -> None:
    remote = f"redis://127.0.0.1:{redis}/{TWO_SHARDS_DB}"
    objects = 0
    for spec in ("1/2", "2/2"):
        res, _ = runner(lw_env, tmp_path, f"shard{spec[0]}", remote, "--shard", spec, warm=True)
        assert res.returncode == 0, res.stdout[-3000:]
        objects += shard_objects(res, spec)
        assert not list((tmp_path / f"wh-shard{spec[0]}").glob("**/*.whl"))  # a shard makes no wheel
    final, _ = runner(lw_env, tmp_path, "final", remote, "--shards", "2")
    assert final.returncode == 0, final.stdout[-3000:]
    entry = wheel_entry(tmp_path, "final")
    cache = entry["cache"]
    assert isinstance(cache, dict)
    assert cache["misses"] == 0 and cache["hits"] == cache["remote_hits"] == objects, cache  # 100%, all remote
    assert "all 2 shards' objects came from the cache" in final.stdout
    # The same wheel bytes as the session's unsharded build: auditwheel's tag is remembered, not re-scanned.
    assert re.search(r"platform tag manylinux_\S+ \(auditwheel: .*\(remembered\)\)", final.stdout)
    assert entry["sha256"] == hashlib.sha256(cpu_build.read_bytes()).hexdigest()  # the unsharded build's wheel


def test_a_missing_shard_still_gives_the_wheel_and_is_named(redis: int, lw_env: dict[str, str], cpu_build: Path,
                                                           tmp_path: Path) -> None:
    """32 shards, the lightest one's runner never ran: the final build compiles that shard's objects itself (the
    only compile this file pays for, ~1/60 of a cold build), makes the same wheel and names that shard. The plan
    is the one every runner makes: the shipped table's objects are the configured build's (test_shard.py)."""
    table = shard.cost_table("0.3.36", "cpu")
    assert table is not None
    costs = shard.parse_ninja_log(table.read_text())
    plan = shard.plan([o for o in costs if o.endswith(".o")], costs, 32)
    missing = 1 + min(range(32), key=lambda i: plan.loads[i])
    remote = f"redis://127.0.0.1:{redis}/{MISSING_DB}"
    args = [a for i in range(1, 33) if i != missing for a in ("--shard", f"{i}/32")]
    res, _ = runner(lw_env, tmp_path, "shards", remote, *args, warm=True)
    assert res.returncode == 0, res.stdout[-3000:]
    final, _ = runner(lw_env, tmp_path, "final", remote, "--shards", "32")
    assert final.returncode == 0, final.stdout[-3000:]
    size = len(plan.shards[missing - 1])
    assert f"shard {missing}/32 is missing: compiled all its {size} objects here" in final.stdout, final.stdout[-3000:]
    assert len(re.findall(r"shard \d+/32 is missing", final.stdout)) == 1
    entry = wheel_entry(tmp_path, "final")
    assert entry["sha256"] == hashlib.sha256(cpu_build.read_bytes()).hexdigest()
