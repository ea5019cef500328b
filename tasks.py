"""One-shot maintainer tools. `invoke --list` is the menu; the logic lives in src/llama_wheels."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

sys.path.insert(0, str(Path(__file__).parent / "src"))
from llama_wheels.cli import main


def _run(args: list[str]) -> None:
    code = main(args, env={**os.environ, "LLAMA_WHEELS_PROG": f"invoke {args[0]}"})
    if code:
        raise Exit(code=code)


@task(help={
    "json": "print the report as JSON",
    "arch_set": "arch set to judge: a configured name, 'auto', or a list like 86;89",
    "archs": "the same as --arch-set (the build's other spelling)",
    "cuda": "toolkit to judge: auto | system | system:12.4 | pypi:13.0",
})
def doctor(c: Context, json: bool = False, arch_set: str | None = None, archs: str | None = None,
           cuda: str | None = None) -> None:
    """Check compiler, CUDA toolkits, driver, GPUs and tools against the compatibility tables.

    Exits 0 when a build can go ahead; each problem is printed with its fix.
    """
    args = ["doctor"] + (["--json"] if json else [])
    spec = arch_set if arch_set is not None else archs
    if spec is not None:  # an empty value is passed on, so the parser refuses it
        args += ["--arch-set", spec]  # the parser takes a set name, 'auto' or an arch list alike
    if cuda is not None:
        args += ["--cuda", cuda]
    _run(args)


@task(name="clean-temp", help={
    "dry_run": "list what would be removed, remove nothing",
    "root": "the build/temp dir to empty (default: build-dir from pyproject)",
    "keep_pip_cache": "do not purge pip's cache",
})
def clean_temp(c: Context, dry_run: bool = False, root: str = "", keep_pip_cache: bool = False) -> None:
    """Remove what llama-wheels created in its build/temp dir (never anything else), and purge pip's cache.

    Refuses a folder it did not create, one holding home, the project or a repository, and one in use by a build.
    """
    args = ["clean-temp"] + (["--dry-run"] if dry_run else []) + (["--root", root] if root else [])
    _run(args + (["--no-pip-cache"] if keep_pip_cache else []))


@task(name="check-wheels", help={"wheel": "a wheel to check (repeatable); default: the whole wheelhouse"},
      iterable=["wheel"])
def check_wheels(c: Context, wheel: list[str] | None = None) -> None:
    """Check wheels: label, RECORD hashes, layout, duplicate payloads, runtime dependencies."""
    _run(["check-wheels", *(wheel or [])])


@task(name="cache-stats")
def cache_stats(c: Context) -> None:
    """Show the compiler cache: local dir, size limit, remote (password hidden) and hit counters."""
    _run(["cache-stats"])


@task(name="cache-clear", help={"dry_run": "list what would be removed, remove nothing"})
def cache_clear(c: Context, dry_run: bool = False) -> None:
    """Empty the local compiler cache. The shared remote cache is never cleared from here."""
    _run(["cache-clear"] + (["--dry-run"] if dry_run else []))


@task(name="farm-scheduler", help={
    "bind": "address:port to listen on (default 0.0.0.0:10600)",
    "dry_run": "write the config and print the command, run nothing",
})
def farm_scheduler(c: Context, bind: str = "0.0.0.0:10600", dry_run: bool = False) -> None:
    """Run the build farm's scheduler (sccache-dist). Tokens: LLAMA_WHEELS_DIST_TOKEN (clients),
    LLAMA_WHEELS_DIST_SERVER_TOKEN (build servers), from the environment only."""
    _run(["farm-scheduler", "--bind", bind] + (["--dry-run"] if dry_run else []))


@task(name="farm-server", help={
    "scheduler": "the scheduler's URL, e.g. http://farm.internal:10600",
    "public_addr": "host:port where clients reach this build server",
    "name": "a name for its work folder (several servers on one host)",
    "dry_run": "write the config and print the command, run nothing",
})
def farm_server(c: Context, scheduler: str, public_addr: str, name: str = "server", dry_run: bool = False) -> None:
    """Run a build server of the farm (Linux, as root; every job sandboxed with bubblewrap)."""
    _run(["farm-server", "--scheduler", scheduler, "--public-addr", public_addr, "--name", name]
         + (["--dry-run"] if dry_run else []))


@task(name="select", help={
    "index": "the index root holding flavours.json (URL or folder; default: wheelhouse/index)",
    "gpus": "pretend these GPUs, e.g. 9.0,8.6 (or none)",
    "driver_cuda": "pretend a driver for this CUDA, e.g. 13.0",
    "install": "run the pip command instead of printing it (refused from this tool's venv: it prints the command)",
    "index_only": "--index-url instead of --extra-index-url (nothing from PyPI)",
    "json": "print the choice as JSON",
    "allow_cpu": "take the CPU flavour when no GPU flavour runs here (else an error naming the flavour to build)",
    "extra": "install with this extra, e.g. server (repeatable)",
}, iterable=["extra"])
def select_flavour(c: Context, index: str = "", gpus: str = "", driver_cuda: str = "", install: bool = False,
                   index_only: bool = False, json: bool = False, allow_cpu: bool = False,
                   extra: list[str] | None = None) -> None:
    """Pick the flavour for this machine's GPUs and driver; print the exact pip command (with your
    `python -m pip`), one line per GPU."""
    args = ["select"] + (["--index", index] if index else []) + (["--gpus", gpus] if gpus else [])
    args += [a for e in extra or [] for a in ("--extra", e)]
    args += (["--driver-cuda", driver_cuda] if driver_cuda else []) + (["--install"] if install else [])
    args += ["--allow-cpu"] if allow_cpu else []
    _run(args + (["--index-only"] if index_only else []) + (["--json"] if json else []))


ns = Collection(doctor, clean_temp, check_wheels, cache_stats, cache_clear, farm_scheduler, farm_server,
               select_flavour)


@task(name="follow-upstream", help={
    "index_url": "a simple index (PEP 691 JSON or PEP 503 HTML) by URL; default: PyPI's JSON API",
    "version": "pin this version instead of the newest",
    "pre": "consider pre-releases",
    "allow_yanked": "consider (and accept) yanked files",
    "remote": "the git remote to push the branch to",
    "base": "the pull request's base branch (default: the current branch)",
    "repo": "OWNER/NAME on GitHub (default: GITHUB_REPOSITORY)",
    "api_url": "GitHub's REST API (default: GITHUB_API_URL, else https://api.github.com)",
    "dry_run": "say what would be pinned, pushed and opened; change nothing",
    "no_plan_check": "skip the build --cpu --dry-run check on the branch",
})
def follow_upstream(c: Context, index_url: str = "", version: str = "", pre: bool = False, allow_yanked: bool = False,
                    remote: str = "origin", base: str = "", repo: str = "", api_url: str = "", dry_run: bool = False,
                    no_plan_check: bool = False) -> None:
    """A newer llama-cpp-python on the index: pin it (version + the index's sha256) on a branch, open one PR.

    The token comes from GITHUB_TOKEN or GH_TOKEN only. Running it again opens no second pull request.
    """
    args = ["follow-upstream", "--remote", remote]
    for flag, value in (("--index-url", index_url), ("--version", version), ("--base", base), ("--repo", repo),
                        ("--api-url", api_url)):
        args += [flag, value] if value else []
    for flag, on in (("--pre", pre), ("--allow-yanked", allow_yanked), ("--dry-run", dry_run),
                     ("--no-plan-check", no_plan_check)):
        args += [flag] if on else []
    _run(args)


ns.add_task(follow_upstream)
