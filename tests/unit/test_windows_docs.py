"""The README's Windows section and the workflow's Windows job say the same thing, and both use
scripts\\run.cmd (tools in the checkout's venv, never the runner's global Python)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def readme_windows_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## On Windows", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bat\n(.*?)```", section, re.S)
    return [line.strip() for line in block.splitlines() if line.strip()]


def windows_job_runs() -> list[str]:
    flow = yaml.safe_load((ROOT / "ci" / "workflows" / "gpu-wheels.yml").read_text(encoding="utf-8"))
    job = flow["jobs"]["windows"]
    assert not str(job.get("env", {}).get("LLAMA_WHEELS_CACHE_DIR", "C:")).startswith("/"), "a POSIX cache dir"
    return [step["run"].strip() for step in job["steps"] if "run" in step]


def _prefix(command: str) -> str:
    return command.split(" -- ")[0].split(" --")[0]


def test_readme_and_windows_job_agree() -> None:
    readme = readme_windows_commands()
    assert readme[:2] == ["scripts\\run.cmd nox -s build_cuda", "scripts\\run.cmd nox -s tests"]
    runs = windows_job_runs()
    assert runs, "the workflow has no Windows steps"
    documented = {_prefix(c) for c in readme}
    for run in runs:
        assert run.startswith("scripts\\run.cmd "), f"Windows job step not through scripts\\run.cmd: {run}"
        assert "pip install" not in run
        assert _prefix(run) in documented, f"the README's Windows section does not show: {run}"


def test_run_cmd_is_crlf_and_passes_arguments_through() -> None:
    data = (ROOT / "scripts" / "run.cmd").read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n")  # cmd.exe needs CRLF
    assert b'-m %*' in data  # every argument unchanged, ';' lists included (cmd splits %1 at ';')
