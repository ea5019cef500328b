"""The sharded cold build in gpu-wheels.yml (issue #29): opt-in by LW_SHARDS, one plan for shards and the final
build, never on a pull request (the cache is read-only there), and the final build never waits on a dead shard."""

from __future__ import annotations

import copy
import re
from typing import Any

from .test_workflow_policy import load, runs, squash

Workflow = dict[str, Any]


def shard_problems(wf: Workflow) -> list[str]:
    jobs = wf["jobs"]
    out = []
    shard, build = jobs.get("build-shard"), jobs["build"]
    if shard is None:
        return ["no build-shard job"]
    cond = squash(shard.get("if", ""))
    if "vars.LW_SHARDS != ''" not in cond or "github.event_name != 'pull_request' &&" not in cond:
        out.append("build-shard must be opt-in (vars.LW_SHARDS) and never run for a pull request (read-only cache)")
    if not re.search(r"--shard \"\$\{\{ matrix\.shard \}\}/\$\{\{ vars\.LW_SHARDS \}\}\"", runs(shard)):
        out.append("build-shard must pass --shard <matrix.shard>/<LW_SHARDS>")
    if "--require-remote-cache" not in runs(shard):
        out.append("a shard without the remote cache is wasted: --require-remote-cache")
    if shard["strategy"]["matrix"]["arch-set"] != build["strategy"]["matrix"]["arch-set"]:
        out.append("build-shard and build must cover the same arch sets")
    if "build-shard" not in build.get("needs", []) or not squash(build.get("if", "")).startswith("!cancelled()"):
        out.append("build must wait for the shards and run whatever they did (!cancelled())")
    env = str([s.get("env", {}) for s in build["steps"]])
    if "--shards" not in runs(build) or "vars.LW_SHARDS" not in env:
        out.append("build must pass --shards LW_SHARDS")
    if "needs.build.result == 'success'" not in squash(jobs["smoke"].get("if", "")):
        out.append("smoke must check build's result (a skipped build-shard would skip it otherwise)")
    return out


def test_the_workflow_shards_as_documented() -> None:
    assert shard_problems(load("gpu-wheels.yml")) == []


def test_the_rule_catches_each_mistake() -> None:
    def broken(edit: Any) -> Workflow:
        wf = copy.deepcopy(load("gpu-wheels.yml"))
        edit(wf)
        return wf

    assert shard_problems(broken(lambda wf: wf["jobs"]["build-shard"].update({"if": "vars.LW_SHARDS != ''"})))
    assert shard_problems(broken(lambda wf: wf["jobs"]["build"].update({"if": "true"})))
    assert shard_problems(broken(lambda wf: wf["jobs"]["smoke"].update({"if": "true"})))
    assert shard_problems(broken(lambda wf: wf["jobs"]["build-shard"]["strategy"]["matrix"].update(
        {"arch-set": ["hopper"]})))
    assert shard_problems(broken(lambda wf: wf["jobs"]["build-shard"]["steps"][1].update({"run": "true"})))
    assert shard_problems(broken(lambda wf: wf["jobs"].pop("build-shard")))
