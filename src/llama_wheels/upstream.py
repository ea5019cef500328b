"""Follow upstream: find a newer llama-cpp-python on the index, pin it on a branch, open one pull request.

1. The index: PyPI's JSON API by default (``https://pypi.org/pypi/<project>/json``), or any simple index
   by URL (PEP 691 JSON, else PEP 503 HTML, read by the kept ``pypi-simple`` client). Only sdists count;
   pre-releases and yanked files are ignored unless asked for. A version asked for by name that is yanked
   is refused unless ``allow_yanked``.
2. The sdist is downloaded and hashed: the pin is the index's sha256, and a download with another sha256
   is refused (nothing is written).
3. The pin goes into ``[tool.llama-wheels]`` of pyproject.toml (the documented override of the defaults) on
   the branch ``llama-wheels/llama-cpp-python-<version>``, made in a git worktree of our own next to the
   checkout (the user's checkout is never switched), checked by a ``build --cpu --dry-run`` plan there,
   committed and pushed.
4. The pull request goes through GitHub's REST API with a token from the environment only
   (``GITHUB_TOKEN`` or ``GH_TOKEN``), sent to the API host alone. A pull request for that branch, open or
   closed, means nothing new is opened: running twice opens no second one.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename
from packaging.version import InvalidVersion, Version

from llama_wheels import cmd
from llama_wheels.config import resolve as resolve_options
from llama_wheels.errors import ChecksumError, CommandFailed, ConfigError, UpstreamError
from llama_wheels.log import Logger

PROJECT = "llama-cpp-python"
PYPI_JSON = "https://pypi.org/pypi/{project}/json"
GITHUB_API = "https://api.github.com"
BRANCH = "llama-wheels/llama-cpp-python-{version}"
TOKEN_VARS = ("GITHUB_TOKEN", "GH_TOKEN")


@dataclass(frozen=True)
class Release:
    """One sdist of one version on the index."""

    version: str
    filename: str
    url: str
    sha256: str | None
    yanked: bool = False
    yanked_reason: str = ""


@dataclass(frozen=True)
class FollowRequest:
    index_url: str | None = None  # a simple index (PEP 691/503); None: PyPI's JSON API
    json_api: str = PYPI_JSON  # the JSON API URL template ({project})
    version: str | None = None  # this version, not the newest
    pre: bool = False  # consider pre-releases
    allow_yanked: bool = False  # consider (and accept) yanked files
    remote: str = "origin"
    base: str | None = None  # the pull request's base branch; None: the checkout's current branch
    repo: str | None = None  # owner/name on GitHub; None: GITHUB_REPOSITORY
    api_url: str | None = None  # None: GITHUB_API_URL, else https://api.github.com
    dry_run: bool = False  # print what would be pinned, pushed and opened; change nothing
    plan_check: bool = True  # run `build --cpu --dry-run` on the branch before pushing


@dataclass(frozen=True)
class FollowResult:
    current: str
    release: Release | None  # None: up to date
    branch: str = ""
    pushed: bool = False
    pull_request: str = ""  # its URL
    opened: bool = False


# ----------------------------------------------------------------------------------- index ------------


def _http_json(url: str, headers: Mapping[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        raise UpstreamError(f"{url} answered HTTP {exc.code}", "check the index URL and the project name") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UpstreamError(f"could not read {url} ({type(exc).__name__})",
                            "check the URL, the network and that the server runs") from None


def _sdist_version(filename: str, project: str) -> str | None:
    try:
        name, version = parse_sdist_filename(filename)
    except (InvalidSdistFilename, InvalidVersion):
        return None
    return str(version) if name == canonicalize_name(project) else None


def releases_from_json_api(url: str, project: str = PROJECT) -> list[Release]:
    """The sdists PyPI's JSON API lists (``releases``: version -> files with ``digests`` and ``yanked``)."""
    data = _http_json(url.format(project=project))
    out = []
    for files in (data.get("releases") or {}).values():
        for f in files:
            version = _sdist_version(f.get("filename", ""), project) if f.get("packagetype", "sdist") == "sdist" \
                else None
            if version:
                out.append(Release(version, f["filename"], f["url"], (f.get("digests") or {}).get("sha256"),
                                   bool(f.get("yanked")), f.get("yanked_reason") or ""))
    return out


def releases_from_simple(index_url: str, project: str = PROJECT) -> list[Release]:
    """The sdists a simple index lists (PEP 691 JSON preferred, PEP 503 HTML read too)."""
    try:
        import requests
        from pypi_simple import ACCEPT_JSON_PREFERRED, NoSuchProjectError, PyPISimple
    except ImportError:
        raise ConfigError("--index-url needs the pypi-simple client", "pip install pypi-simple==1.8.0 "
                          "(the publish dependency group), or leave --index-url out for PyPI's JSON API") from None
    try:
        with PyPISimple(index_url, accept=ACCEPT_JSON_PREFERRED) as client:
            page = client.get_project_page(project, timeout=60)
    except NoSuchProjectError:
        raise UpstreamError(f"{index_url} lists no {project}", "check --index-url (its .../simple/ URL)") from None
    except (requests.RequestException, OSError, ValueError) as exc:
        raise UpstreamError(f"could not read {index_url} ({type(exc).__name__})",
                            "check --index-url, the network and that the server runs") from None
    out = []
    for pkg in page.packages:
        version = _sdist_version(pkg.filename, project) if pkg.package_type == "sdist" else None
        if version:
            out.append(Release(version, pkg.filename, pkg.url, pkg.digests.get("sha256"), pkg.is_yanked,
                               pkg.yanked_reason or ""))
    return out


def choose(found: Sequence[Release], current: str, *, version: str | None = None, pre: bool = False,
           allow_yanked: bool = False, where: str = "the index") -> Release | None:
    """The release to pin: ``version`` if given (refused when yanked unless ``allow_yanked``), else the newest
    sdist above ``current`` that is not a pre-release (unless ``pre``) nor yanked (unless ``allow_yanked``)."""
    if version is not None:
        hits = [r for r in found if Version(r.version) == Version(version)]
        if not hits:
            raise UpstreamError(f"{where} has no {PROJECT} {version} sdist",
                                "check the version (or leave --version out for the newest)")
        good = [r for r in hits if allow_yanked or not r.yanked]
        if not good:
            why = f" ({hits[0].yanked_reason})" if hits[0].yanked_reason else ""
            raise UpstreamError(f"{PROJECT} {version} is yanked on {where}{why}",
                                "pin another version, or pass --allow-yanked if you really mean it")
        return good[0]
    cands = [r for r in found if (allow_yanked or not r.yanked) and (pre or not Version(r.version).is_prerelease)
             and Version(r.version) > Version(current)]
    return max(cands, key=lambda r: Version(r.version)) if cands else None


def download_sha256(release: Release, dest: Path) -> str:
    """Download the sdist to ``dest`` and return its sha256."""
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(release.url, timeout=300) as resp, dest.open("wb") as f:
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                f.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise UpstreamError(f"could not download {release.url} ({type(exc).__name__})",
                            "check the index and the network") from None
    return h.hexdigest()


# ----------------------------------------------------------------------------------- the pin ----------


def write_pin(pyproject: Path, version: str, sha256: str) -> None:
    """Set ``llama-cpp-python`` and ``sdist-sha256`` in [tool.llama-wheels], keeping every other line."""
    lines = pyproject.read_text(encoding="utf-8").splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "[tool.llama-wheels]")
    except StopIteration:
        lines += ["\n[tool.llama-wheels]\n"]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    values = {"llama-cpp-python": version, "sdist-sha256": sha256}
    for key, value in values.items():
        pat = re.compile(rf'^\s*"?{re.escape(key)}"?\s*=')
        hit = next((i for i in range(start + 1, end) if pat.match(lines[i])), None)
        line = f'{key} = "{value}"\n'
        if hit is None:
            lines.insert(start + 1, line)
            end += 1
            start += 1  # keep the keys in this order
        else:
            lines[hit] = line
    pyproject.write_text("".join(lines), encoding="utf-8")


# ----------------------------------------------------------------------------------- git --------------


def _git(args: Sequence[str], cwd: Path, env: Mapping[str, str], *, check: bool = True) -> str:
    full = {**env, "GIT_TERMINAL_PROMPT": "0"}
    res = cmd.run(["git", "-C", str(cwd), *args], env=full, capture=True, quiet=True, check=check)
    return res.stdout if res.returncode == 0 else ""


def require_clean(root: Path, env: Mapping[str, str]) -> None:
    try:
        status = _git(["status", "--porcelain", "--untracked-files=normal"], root, env)
    except CommandFailed:
        raise UpstreamError(f"{root} is not a git checkout", "run it in a clone of this repository") from None
    if status.strip():
        raise UpstreamError(f"the checkout has uncommitted changes ({status.splitlines()[0].strip()})",
                            "commit or stash them first: the pin branch starts from the committed state")


def resolve_base(root: Path, remote: str, base: str | None, env: Mapping[str, str]) -> tuple[str, str]:
    """(base branch name, its commit on ``remote``)."""
    name = base or _git(["rev-parse", "--abbrev-ref", "HEAD"], root, env).strip()
    if not name or name == "HEAD":
        raise UpstreamError("the checkout is on no branch", "pass --base BRANCH")
    out = _git(["ls-remote", "--heads", remote, name], root, env, check=False)
    commit = next((line.split("\t")[0] for line in out.splitlines() if line.endswith(f"refs/heads/{name}")), "")
    if not commit:
        raise UpstreamError(f"branch '{name}' cannot be resolved on the remote '{remote}'",
                            f"push it first, or pass --base with a branch that exists there (git ls-remote {remote})")
    return name, commit


def remote_branch(root: Path, remote: str, branch: str, env: Mapping[str, str]) -> str:
    out = _git(["ls-remote", "--heads", remote, branch], root, env, check=False)
    return next((line.split("\t")[0] for line in out.splitlines() if line.endswith(f"refs/heads/{branch}")), "")


def make_branch(root: Path, remote: str, base_commit: str, branch: str, release: Release, sha256: str,
                env: Mapping[str, str], log: Logger, *, plan_check: bool) -> None:
    """The pin commit on ``branch`` (from ``base_commit``), made in a temporary worktree, checked, pushed."""
    tmp = Path(tempfile.mkdtemp(prefix="lw-pin-"))
    work = tmp / "checkout"
    try:
        _git(["fetch", "--quiet", remote, base_commit], root, env)
        _git(["worktree", "add", "--quiet", "--detach", str(work), base_commit], root, env)
        write_pin(work / "pyproject.toml", release.version, sha256)
        opts = resolve_options(work, {})
        if (opts.llama_cpp_python, opts.sdist_sha256) != (release.version, sha256):
            raise UpstreamError("the pin written to pyproject.toml does not resolve to itself",
                                "report this with the pyproject.toml")
        if plan_check:
            with log.step(f"plan check on the pin: build --cpu --dry-run ({release.version})"):
                clean = {k: v for k, v in env.items() if not k.startswith("LLAMA_WHEELS_")}
                res = cmd.run([sys.executable, "-m", "llama_wheels", "build", "--cpu", "--dry-run"], cwd=work,
                              env={**clean, "LLAMA_WHEELS_ROOT": str(work)}, capture=True, check=False, quiet=True)
                out = res.stdout + res.stderr  # the log may go to either stream
                step = next((line for line in out.splitlines() if line.startswith("step ")), "")
                if res.returncode != 0 or f"{release.version}+cpu" not in step:
                    last = out.strip().splitlines()[-1:] or ["(no output)"]
                    raise UpstreamError(f"the dry-run plan fails with the new pin: {last[0]}",
                                        "fix the project for the new release by hand")
                log.info(step)
        _git(["add", "pyproject.toml"], work, env)
        msg = (f"Pin llama-cpp-python {release.version}\n\nsdist {release.filename}\nsha256 {sha256} "
               f"(from the index, matched by the download)\n")
        _git(["-c", "user.name=llama-wheels", "-c", "user.email=llama-wheels@users.noreply.github.com",
              "commit", "--quiet", "-m", msg], work, env)
        _git(["push", "--quiet", remote, f"HEAD:refs/heads/{branch}"], work, env)
    finally:
        if work.exists():
            _git(["worktree", "remove", "--force", str(work)], root, env, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        _git(["worktree", "prune"], root, env, check=False)


# ------------------------------------------------------------------------------ GitHub API ------------


def github_token(env: Mapping[str, str]) -> str:
    for var in TOKEN_VARS:
        if env.get(var):
            return env[var]
    raise ConfigError("no GitHub token in the environment", f"set {' or '.join(TOKEN_VARS)} "
                      "(in a workflow: env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }})")


def _api(method: str, url: str, token: str, body: Mapping[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Accept": "application/vnd.github+json", "Authorization": f"Bearer {token}",
        "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "llama-wheels",
        **({"Content-Type": "application/json"} if data is not None else {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:200]
        raise UpstreamError(f"GitHub API {method} {urlsplit(url).path} answered HTTP {exc.code}: {detail}",
                            "check the token's permissions (contents and pull requests: write) and --repo") from None
    except (urllib.error.URLError, OSError) as exc:
        raise UpstreamError(f"could not reach the GitHub API at {url} ({type(exc).__name__})",
                            "check --api-url / GITHUB_API_URL and the network") from None


def existing_pull(api: str, repo: str, branch: str, token: str) -> dict[str, Any] | None:
    owner = repo.split("/")[0]
    _, pulls = _api("GET", f"{api}/repos/{repo}/pulls?state=all&head={quote(f'{owner}:{branch}')}", token)
    return pulls[0] if isinstance(pulls, list) and pulls else None


def open_pull(api: str, repo: str, branch: str, base: str, release: Release, sha256: str, current: str,
              token: str) -> dict[str, Any]:
    body = {"title": f"Pin llama-cpp-python {release.version}", "head": branch, "base": base,
            "body": f"llama-cpp-python {current} -> {release.version}, found on the index by `invoke "
                    f"follow-upstream`.\n\n- sdist: `{release.filename}`\n- sha256: `{sha256}` (the index's, "
                    f"matched by the download)\n\nThis PR's CI runs the build and smoke matrix; publishing "
                    f"happens only on a release tag after the smoke passes.",
            "maintainer_can_modify": True}
    status, pr = _api("POST", f"{api}/repos/{repo}/pulls", token, body)
    if status != 201 or not isinstance(pr, dict):
        raise UpstreamError(f"GitHub API answered {status} to the pull request", "see the API's answer above")
    return pr


# ----------------------------------------------------------------------------------- follow -----------


def follow(root: Path, request: FollowRequest, env: Mapping[str, str], log: Logger) -> FollowResult:
    """Check the index; when there is a newer release, pin it on a branch and open one pull request."""
    current = resolve_options(root, {}).llama_cpp_python
    where = request.index_url or request.json_api.format(project=PROJECT)
    with log.step(f"releases of {PROJECT} on {where}"):
        found = releases_from_simple(request.index_url) if request.index_url \
            else releases_from_json_api(request.json_api)
        release = choose(found, current, version=request.version, pre=request.pre,
                         allow_yanked=request.allow_yanked, where=where)
    if release is None:
        log.info(f"up to date: the pin is {current}, and the index has nothing newer"
                 + ("" if request.pre else " (pre-releases ignored)") + ("" if request.allow_yanked
                                                                         else " (yanked files ignored)"))
        return FollowResult(current, None)
    log.info(f"newer: {release.version} ({release.filename}, sha256 {release.sha256} on the index); pin {current}")
    if not release.sha256:
        raise ChecksumError(f"the index lists no sha256 for {release.filename}",
                            "use an index that publishes hashes (PEP 503 #sha256= or PEP 691 hashes)")
    with tempfile.TemporaryDirectory(prefix="lw-sdist-") as tmp:
        got = download_sha256(release, Path(tmp) / release.filename)
    if got != release.sha256:
        raise ChecksumError(f"{release.filename}: the index says sha256 {release.sha256}, the download has {got}",
                            "nothing was pinned; check the index (or a proxy in between) before trying again")
    require_clean(root, env)
    branch = BRANCH.format(version=release.version)
    base, base_commit = resolve_base(root, request.remote, request.base, env)
    repo = request.repo or env.get("GITHUB_REPOSITORY", "")
    api = (request.api_url or env.get("GITHUB_API_URL") or GITHUB_API).rstrip("/")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise ConfigError(f"the GitHub repository '{repo}' is not owner/name", "pass --repo OWNER/NAME "
                          "(GITHUB_REPOSITORY in a workflow)")
    if request.dry_run:
        log.info(f"dry run: would pin {release.version} (sha256 {got}) on {branch} from {base} "
                 f"({base_commit[:12]}), push it to {request.remote} and open a pull request on {repo}")
        return FollowResult(current, release, branch)
    token = github_token(env)
    result = FollowResult(current, release, branch)
    if remote_branch(root, request.remote, branch, env):
        log.info(f"branch {branch} is already on {request.remote}: not pushed again")
    else:
        with log.step(f"branch {branch}"):
            make_branch(root, request.remote, base_commit, branch, release, got, env, log,
                        plan_check=request.plan_check)
        result = FollowResult(current, release, branch, pushed=True)
    pr = existing_pull(api, repo, branch, token)
    if pr is not None:
        log.info(f"a pull request for {branch} exists ({pr.get('state')}): {pr.get('html_url')}; none opened")
        return FollowResult(current, release, branch, result.pushed, str(pr.get("html_url", "")))
    pr = open_pull(api, repo, branch, base, release, got, current, token)
    log.info(f"opened {pr.get('html_url')}")
    return FollowResult(current, release, branch, result.pushed, str(pr.get("html_url", "")), opened=True)


__all__ = ["FollowRequest", "FollowResult", "Release", "choose", "follow", "write_pin"]
