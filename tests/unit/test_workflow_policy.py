"""The workflows' safety and routing rules, read from the YAML (issue 16). Each rule is a function that returns
the problems it finds; every rule is run on the real workflows (no problems) and on a broken copy (the problem
is found), so none of these tests can pass by accident."""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

if sys.version_info >= (3, 11):
    pass
else:
    pass

from llama_wheels.config import resolve

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = {p.name: p for p in sorted((ROOT / "ci" / "workflows").glob("*.yml"))}
GUARD = ("github.event_name != 'pull_request' || "
         "github.event.pull_request.head.repo.full_name == github.repository")
HOSTED = re.compile(r"(ubuntu|windows|macos)-[\w.-]+")
ARCH_SETS = dict(resolve(ROOT, {}).arch_sets)  # the resolved sets: defaults plus this project's table

Workflow = dict[str, Any]


def load(name: str) -> Workflow:
    wf: Workflow = yaml.safe_load(WORKFLOWS[name].read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as True
    return wf


def runs(job: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) for s in job.get("steps", []))


def squash(text: object) -> str:
    return " ".join(str(text).split())


def self_hosted(job: dict[str, Any]) -> bool:
    """Anything but a literal GitHub-hosted label counts as self-hosted (an expression may name any runner)."""
    return not HOSTED.fullmatch(str(job.get("runs-on", "")).strip())


def fork_pr_problems(wf: Workflow) -> list[str]:
    out = []
    triggers = wf["on"] if isinstance(wf["on"], dict) else {t: None for t in ([wf["on"]] if isinstance(wf["on"], str)
                                                                                 else wf["on"])}
    for t in ("pull_request_target", "workflow_run"):
        if t in triggers:
            out.append(f"trigger {t} runs with this repository's secrets and runners for forks")
    for name, job in wf["jobs"].items():
        if not self_hosted(job):
            continue
        cond = squash(job.get("if", ""))
        conjuncts = [c.strip() for c in re.split(r"\s&&\s", cond)]
        if GUARD not in conjuncts and f"({GUARD})" not in conjuncts:
            out.append(f"self-hosted job {name} can run for a fork's pull request (if: {cond or 'none'})")
    return out


def timeout_problems(wf: Workflow) -> list[str]:
    return [f"job {n} has no timeout-minutes" for n, j in wf["jobs"].items() if not j.get("timeout-minutes")]


def concurrency_problems(wf: Workflow) -> list[str]:
    out = []
    for name, job in wf["jobs"].items():
        if not re.search(r"nox -s (build_\w+|tests)\b", runs(job)):
            continue
        conc = job.get("concurrency") or wf.get("concurrency") or {}
        if "github.ref" not in str(conc.get("group", "")):
            out.append(f"build job {name} has no concurrency group per ref")
        elif conc.get("cancel-in-progress") in (None, False):
            out.append(f"build job {name}: a superseded run is not cancelled")
    return out


def default_labels(expr: str) -> tuple[str | None, list[str]]:
    """``${{ fromJSON(vars.X || '[...]') }}`` or ``${{ vars.X || '[...]' }}`` -> (X, labels)."""
    m = re.search(r"(?:vars\.(\w+)\s*\|\|\s*)?'(\[[^']*\])'", expr)
    if not m:
        return None, []
    return m[1], json.loads(m[2])


def native(cc: int, arch_set: str) -> bool:
    return any(int(re.match(r"\d+", a)[0]) == cc for a in ARCH_SETS[arch_set].split(";"))  # type: ignore[index]


def smoke_label_problems(wf: Workflow) -> list[str]:
    """A job that smokes an arch set must run on labels naming a GPU (sm<cc>) that runs that set natively."""
    out = []
    for name, job in wf["jobs"].items():
        if "nox -s smoke" not in runs(job):
            continue
        runs_on = str(job.get("runs-on", ""))
        m = re.search(r"fromJSON\(matrix\.([\w-]+)\)", runs_on)
        if m:
            targets = [(e.get("arch-set"), str(e.get(m[1], ""))) for e in job["strategy"]["matrix"].get("include", [])]
            if not targets or "arch-set" in job["strategy"]["matrix"]:
                out.append(f"job {name}: each arch set needs its own runner (matrix include: arch-set + {m[1]})")
        else:
            sets = re.findall(r"--arch-set ([\w-]+)", runs(job))  # names like ampere-dc
            targets = [(s, runs_on) for s in sets] or [(None, runs_on)]
        for arch_set, expr in targets:
            _, labels = default_labels(expr)
            ccs = [int(x) for x in re.findall(r"^sm(\d+)$", "\n".join(labels), re.M)]
            if arch_set not in ARCH_SETS:
                out.append(f"job {name}: smoke of an unknown arch set {arch_set!r}")
            elif not any(native(cc, arch_set) for cc in ccs):
                out.append(f"job {name}: {arch_set} smokes on {labels}, no sm<cc> label in {ARCH_SETS[arch_set]}")
    return out


def label_default_problems(wf: Workflow) -> list[str]:
    """Labels are configured in one place (a repository variable); every default of one variable agrees."""
    seen: dict[str, list[str]] = {}
    out = []
    for m in re.finditer(r"vars\.(LW_\w+_RUNNER\w*)\s*\|\|\s*'(\[[^']*\])'", json.dumps(wf["jobs"])):
        seen.setdefault(m[1], []).append(m[2])
    for var, defaults in seen.items():
        if len({squash(d) for d in defaults}) > 1:
            out.append(f"{var} has different defaults: {sorted(set(defaults))}")
    for name, job in wf["jobs"].items():
        if self_hosted(job) and "vars." not in str(job.get("runs-on")) and "matrix." not in str(job.get("runs-on")):
            out.append(f"job {name}: its runner labels are not a repository variable")
    return out


def needs_closure(wf: Workflow, name: str) -> set[str]:
    todo, seen = [name], set()
    while todo:
        needs = wf["jobs"][todo.pop()].get("needs", [])
        for n in [needs] if isinstance(needs, str) else needs:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def windows_blocking_problems(wf: Workflow) -> list[str]:
    windows = {n for n, j in wf["jobs"].items() if "windows" in str(j.get("runs-on", "")).lower()}
    out = []
    for name, job in wf["jobs"].items():
        linux = "nox -s publish" in runs(job) and "wheelhouse-windows" not in json.dumps(job)
        if linux and (blocking := needs_closure(wf, name) & windows):
            out.append(f"job {name} publishes Linux wheels but waits for {sorted(blocking)}")
    return out


RULES: list[Callable[[Workflow], list[str]]] = [fork_pr_problems, timeout_problems, concurrency_problems,
                                                 smoke_label_problems, label_default_problems,
                                                 windows_blocking_problems]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_follows_the_rule(name: str, rule: Callable[[Workflow], list[str]]) -> None:
    assert rule(load(name)) == []


def broken(edit: Callable[[Workflow], None]) -> Workflow:
    wf = copy.deepcopy(load("gpu-wheels.yml"))
    edit(wf)
    return wf


def test_rules_catch_a_self_hosted_job_open_to_forks() -> None:
    assert fork_pr_problems(broken(lambda wf: wf["jobs"]["smoke"].pop("if")))
    # A condition that only mentions the guard without requiring it is not enough.
    assert fork_pr_problems(broken(lambda wf: wf["jobs"]["build"].update({"if": f"({GUARD}) || true"})))
    assert fork_pr_problems(broken(lambda wf: wf["on"].update({"pull_request_target": None})))
    hosted = broken(lambda wf: wf["jobs"]["build"].update({"runs-on": "ubuntu-latest", "if": "true"}))
    assert not fork_pr_problems(hosted)


def test_rules_catch_a_job_without_timeout() -> None:
    assert timeout_problems(broken(lambda wf: wf["jobs"]["publish-windows"].pop("timeout-minutes"))) == [
        "job publish-windows has no timeout-minutes"]


def test_rules_catch_a_build_without_concurrency() -> None:
    assert concurrency_problems(broken(lambda wf: wf.pop("concurrency")))
    assert concurrency_problems(broken(lambda wf: wf["concurrency"].update({"cancel-in-progress": False})))


def test_rules_catch_smoke_on_a_label_of_another_arch() -> None:
    def swap(wf: Workflow) -> None:
        inc = wf["jobs"]["smoke"]["strategy"]["matrix"]["include"]
        inc[0]["runner"], inc[1]["runner"] = inc[1]["runner"], inc[0]["runner"]

    assert len(smoke_label_problems(broken(swap))) == 2
    generic = broken(lambda wf: wf["jobs"]["smoke"].update({"runs-on": '${{ fromJSON(\'["self-hosted", "gpu"]\') }}'}))
    assert smoke_label_problems(generic)
    assert smoke_label_problems(broken(lambda wf: wf["jobs"]["windows"]["steps"][3].update(
        {"run": "scripts\\run.cmd nox -s build_cuda -- --arch-set hopper"})))


def test_rules_catch_labels_hard_coded_or_disagreeing() -> None:
    assert label_default_problems(broken(lambda wf: wf["jobs"]["publish"].update(
        {"runs-on": ["self-hosted", "linux", "x64"]})))
    assert label_default_problems(broken(lambda wf: wf["jobs"]["publish"].update(
        {"runs-on": "${{ fromJSON(vars.LW_BUILD_RUNNER || '[\"self-hosted\", \"linux\"]') }}"})))


def test_rules_catch_publish_waiting_for_windows() -> None:
    assert windows_blocking_problems(broken(lambda wf: wf["jobs"]["publish"].update({"needs": ["smoke", "windows"]})))


def test_pull_requests_only_read_the_compiler_cache() -> None:
    assert load("gpu-wheels.yml")["env"]["LLAMA_WHEELS_CACHE_READ_ONLY"] == "${{ github.event_name == 'pull_request' }}"


def test_windows_tools_go_into_a_venv() -> None:
    script = runs(load("gpu-wheels.yml")["jobs"]["windows"])
    tools = [ln.strip() for ln in script.splitlines() if re.search(r"\b(pip|nox|invoke)\b", ln)]
    assert tools and all(ln.startswith((".tools\\Scripts\\", "scripts\\run.cmd ")) for ln in tools), tools
    for uses in re.findall(r"uses: (\S+)", WORKFLOWS["gpu-wheels.yml"].read_text()):  # third-party: pinned
        assert uses.startswith("actions/") or re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), uses


def build_log_problems(wf: Workflow) -> list[str]:
    """Every job that compiles (a build session, or the suite through .ci/run) uploads its build log when it
    fails, with an action pinned by SHA."""
    out = []
    for name, job in wf["jobs"].items():
        if not re.search(r"nox -s build_(cuda|cpu)|\.ci/run", runs(job)):
            continue
        ups = [s for s in job.get("steps", []) if str(s.get("uses", "")).startswith("actions/upload-artifact@")
               and "failure()" in str(s.get("if", "")) and "build.log" in str(s.get("with", {}).get("path", ""))]
        if not ups:
            out.append(f"job {name} compiles but uploads no build.log on failure")
        out += [f"job {name}: {s['uses']} is not pinned by SHA" for s in ups
                if not re.fullmatch(r"actions/upload-artifact@[0-9a-f]{40}", str(s["uses"]))]
    return out


def test_build_logs_are_uploaded_on_failure() -> None:
    for name in WORKFLOWS:
        assert build_log_problems(load(name)) == [], name
    broken = load("ci.yml")
    steps = broken["jobs"]["tests"]["steps"]
    broken["jobs"]["tests"]["steps"] = [s for s in steps if "upload" not in str(s.get("uses"))]
    assert build_log_problems(broken) == ["job tests compiles but uploads no build.log on failure"]
    unpinned = load("gpu-wheels.yml")
    for s in unpinned["jobs"]["build"]["steps"]:
        if "failure()" in str(s.get("if", "")):
            s["uses"] = "actions/upload-artifact@v4"
    assert build_log_problems(unpinned) == ["job build: actions/upload-artifact@v4 is not pinned by SHA"]
