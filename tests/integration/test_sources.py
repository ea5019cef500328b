"""Source kinds and following upstream, with real git, local git remotes, a real pypiserver holding two fake
releases, a real HTTP server for a PEP 691 index with a yanked file and a wrong hash, and a loopback stand-in
for GitHub's REST API (GitHub itself can't be reached here) that checks each request. Nothing compiles:
the builds stop at their --dry-run plan."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from llama_wheels import pipeline, prefetch, sdist
from llama_wheels.config import resolve
from llama_wheels.log import Logger

from .conftest import lw, pypi_server

TOKEN = "test-token-0123456789"
REPO = "acme/llama-wheels"
GIT_ID = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
          "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_NOSYSTEM": "1"}


def git(*args: str | Path, cwd: Path | None = None) -> str:
    env = {**GIT_ID, "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(cwd or Path.cwd())}
    return subprocess.run(["git", *map(str, args)], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


# ------------------------------------------------------------------------------ source kinds ------------


@pytest.fixture
def remotes(tmp_path: Path) -> dict[str, Any]:
    """Bare remotes: llama.git (two commits) and lcp.git (llama-cpp-python 0.3.99 whose vendor/llama.cpp is a
    submodule at llama's first commit, by a relative URL), tag v0.3.99 and branch main."""
    bare = tmp_path / "remotes"
    llama = bare / "llama-work"
    llama.mkdir(parents=True)
    git("init", "-q", "-b", "master", cwd=llama)
    (llama / "include").mkdir()
    (llama / "include" / "llama.h").write_text("LLAMA_API int llama_one(void);\n")
    git("add", "-A", cwd=llama)
    git("commit", "-qm", "one", cwd=llama)
    first = git("rev-parse", "HEAD", cwd=llama)
    (llama / "include" / "llama.h").write_text("LLAMA_API int llama_two(void);\n")
    git("commit", "-qam", "two", cwd=llama)
    second = git("rev-parse", "HEAD", cwd=llama)
    git("clone", "-q", "--bare", llama, bare / "llama.git")
    lcp = bare / "lcp-work"  # ../llama.git from here is the bare remote, as it is from lcp.git
    (lcp / "llama_cpp").mkdir(parents=True)
    (lcp / "llama_cpp" / "__init__.py").write_text('__version__ = "0.3.99"\n')
    (lcp / "pyproject.toml").write_text('[project]\nname = "llama_cpp_python"\n')
    git("init", "-q", "-b", "main", cwd=lcp)
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q", "../llama.git", "vendor/llama.cpp", cwd=lcp)
    git("-C", lcp / "vendor" / "llama.cpp", "checkout", "-q", first)
    git("add", "-A", cwd=lcp)
    git("commit", "-qm", "lcp", cwd=lcp)
    git("tag", "-a", "-m", "release", "v0.3.99", cwd=lcp)
    git("clone", "-q", "--bare", lcp, bare / "lcp.git")
    return {"lcp": f"file://{bare / 'lcp.git'}", "llama": f"file://{bare / 'llama.git'}", "first": first,
            "second": second, "lcp_commit": git("rev-parse", "HEAD", cwd=lcp), "bare": bare, "llama_dir": llama}


@pytest.fixture
def src_env(lw_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**lw_env, "LLAMA_WHEELS_CACHE_DIR": str(tmp_path / "cache"), "LLAMA_WHEELS_BUILD_DIR":
            str(tmp_path / "build"), "LLAMA_WHEELS_PREFETCH_DIR": str(tmp_path / "prefetch")}


def test_git_source_plan_shows_branch_commit_and_gitlink(remotes: dict[str, Any], src_env: dict[str, str]) -> None:
    c = remotes["lcp_commit"]
    res = lw("build", "--cpu", "--dry-run", "--source", f"{remotes['lcp']}@main", env=src_env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    assert f"main (branch) = {c}" in res.stdout
    assert f"vendor/llama.cpp (gitlink) = {remotes['first']}" in res.stdout
    assert f"step cpu-git{c[:7]}: llama-cpp-python 0.3.99+cpu.git{c[:7]}" in res.stdout
    swap = lw("build", "--cpu", "--dry-run", "--source", f"{remotes['lcp']}@v0.3.99", "--llama-cpp",
              f"{remotes['llama']}@{remotes['second'][:9]}", env=src_env, timeout=600)
    assert swap.returncode == 0, swap.stdout[-3000:]
    assert f"v0.3.99 (tag) = {c}" in swap.stdout and f"(swapped in) {remotes['llama']} @ {remotes['second'][:9]} " \
        f"(commit) = {remotes['second']}" in swap.stdout
    assert f"0.3.99+cpu.git{c[:7]}.llama{remotes['second'][:7]}" in swap.stdout


def test_source_refusals_dirty_and_unresolvable(remotes: dict[str, Any], src_env: dict[str, str]) -> None:
    checkout = remotes["llama_dir"]
    (checkout / "local-change.c").write_text("int x;\n")
    dirty = lw("build", "--cpu", "--dry-run", "--llama-cpp", str(checkout), env=src_env, timeout=600)
    assert dirty.returncode == 15, dirty.stdout[-2000:]
    assert "has uncommitted changes (?? local-change.c)" in dirty.stdout
    assert "--allow-dirty" in dirty.stdout and "Traceback" not in dirty.stdout
    allowed = lw("build", "--cpu", "--dry-run", "--llama-cpp", str(checkout), "--allow-dirty", env=src_env,
                 timeout=600)
    assert allowed.returncode == 0, allowed.stdout[-2000:]
    assert f"0.3.36+cpu.llama{remotes['second'][:7]}.dirty" in allowed.stdout and "DIRTY working tree" in allowed.stdout
    for spec, words in ((f"{remotes['lcp']}@no-such-ref", "is not a branch or tag"),
                        (f"{remotes['lcp']}@deadbeef1", "is not a commit, tag or branch")):
        res = lw("build", "--cpu", "--dry-run", "--source", spec, env=src_env, timeout=600)
        assert res.returncode == 15 and words in res.stdout and "Traceback" not in res.stdout, res.stdout[-2000:]


def test_prefetched_source_builds_its_plan_offline(remotes: dict[str, Any], src_env: dict[str, str]) -> None:
    """The archive carries the submodule; offline, the plan finds it with the remotes gone."""
    spec = f"{remotes['lcp']}@v0.3.99"
    options = resolve(Path(__file__).resolve().parents[2], src_env)
    log = Logger({})
    chosen = pipeline.resolve_source(options, pipeline.BuildRequest(source=spec), src_env, log)
    assert chosen is not None and chosen.path is not None
    carried = prefetch.carry_source(chosen, options.prefetch_dir / "sources", slim=True, log=log)
    assert carried["file"] == f"sources/llama_cpp_python-0.3.99+git{remotes['lcp_commit'][:7]}.slim.tar.gz"
    shutil.rmtree(remotes["bare"])  # no remote, no network: only the carried archive
    res = lw("build", "--cpu", "--dry-run", "--offline", "--source", spec, env=src_env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    assert f"v0.3.99 (tag) = {remotes['lcp_commit']}" in res.stdout and "archive sha256" in res.stdout
    archive = options.prefetch_dir / carried["file"]
    src = sdist.extract(sdist.Source(archive, chosen.identity.archive_sha256, slim=True), options.build_dir / "src")
    assert (src / "vendor" / "llama.cpp" / "include" / "llama.h").read_text() == "LLAMA_API int llama_one(void);\n"
    assert (src / "llama_cpp" / "__init__.py").exists() and not (src / ".git").exists()
    missing = lw("build", "--cpu", "--dry-run", "--offline", "--source", f"{remotes['lcp']}@main", env=src_env)
    assert missing.returncode == 6 and "no prefetched source" in missing.stdout


# ------------------------------------------------------------------------------ follow upstream ---------


def fake_sdist(folder: Path, version: str) -> Path:
    name = f"llama_cpp_python-{version}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = f"Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: {version}\n".encode()
        info = tarfile.TarInfo(f"{name}/PKG-INFO")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path = folder / f"{name}.tar.gz"
    path.write_bytes(buf.getvalue())
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def two_releases(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real pypiserver with llama-cpp-python 0.3.37 and 0.3.38rc1 (a pre-release, ignored by default)."""
    pkgs = tmp_path / "packages"
    pkgs.mkdir()
    newer = fake_sdist(pkgs, "0.3.37")
    fake_sdist(pkgs, "0.3.38rc1")
    with pypi_server(pkgs, tmp_path / "pypiserver.log", "-P", ".", "-a", ".", "--disable-fallback") as url:
        yield f"{url}/simple/", newer


class GitHub:
    """A loopback stand-in for GitHub's pull request API. It answers only requests shaped as GitHub wants them
    (token, Accept, API version, JSON body naming head/base/title) and records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.pulls: list[dict[str, Any]] = []
        gh = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, code: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_any(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                req = {"method": method, "path": url.path, "query": parse_qs(url.query),
                       "auth": self.headers.get("Authorization"), "accept": self.headers.get("Accept"),
                       "version": self.headers.get("X-GitHub-Api-Version"), "body": json.loads(raw) if raw else None}
                gh.requests.append(req)
                if req["auth"] != f"Bearer {TOKEN}":
                    return self.reply(401, {"message": "Bad credentials"})
                if req["accept"] != "application/vnd.github+json" or req["version"] != "2022-11-28":
                    return self.reply(415, {"message": "wrong media type or API version"})
                if url.path != f"/repos/{REPO}/pulls":
                    return self.reply(404, {"message": "Not Found"})
                if method == "GET":
                    head = req["query"].get("head", [""])[0]
                    return self.reply(200, [p for p in gh.pulls if f"{REPO.split('/')[0]}:{p['head']['ref']}" == head])
                body = req["body"] or {}
                if not all(isinstance(body.get(k), str) and body[k] for k in ("title", "head", "base")):
                    return self.reply(422, {"message": "Validation Failed"})
                pr = {"number": len(gh.pulls) + 1, "state": "open", "head": {"ref": body["head"]},
                      "html_url": f"https://github.example/{REPO}/pull/{len(gh.pulls) + 1}"}
                gh.pulls.append(pr)
                return self.reply(201, pr)

            def do_GET(self) -> None:
                self.handle_any("GET")

            def do_POST(self) -> None:
                self.handle_any("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]


@pytest.fixture
def github() -> Iterator[GitHub]:
    gh = GitHub()
    yield gh
    gh.server.shutdown()
    gh.server.server_close()


@pytest.fixture
def project(tmp_path: Path) -> dict[str, Path]:
    """A llama-wheels project (pinned to the default 0.3.36) in a checkout of a local bare origin."""
    origin = tmp_path / "origin.git"
    git("init", "-q", "--bare", "-b", "main", origin)
    checkout = tmp_path / "checkout"
    git("clone", "-q", origin, checkout)
    (checkout / "pyproject.toml").write_text('[project]\nname = "llama-wheels"\n\n[tool.llama-wheels]\n'
                                             '# the pin follows upstream\n')
    git("add", "-A", cwd=checkout)
    git("commit", "-qm", "project", cwd=checkout)
    git("push", "-q", "origin", "HEAD:main", cwd=checkout)
    return {"origin": origin, "checkout": checkout}


def follow(project: dict[str, Path], env: dict[str, str], index: str, api: str, *extra: str,
           token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    e = {**env, "LLAMA_WHEELS_ROOT": str(project["checkout"]), "GITHUB_TOKEN": token, **GIT_ID}
    return lw("follow-upstream", "--index-url", index, "--repo", REPO, "--api-url", api, *extra, env=e, timeout=600)


def test_follow_upstream_pins_on_a_branch_and_opens_one_pull_request(
        two_releases: tuple[str, Path], github: GitHub, project: dict[str, Path], lw_env: dict[str, str],
        tmp_path: Path) -> None:
    index, newer = two_releases
    checkout = project["checkout"]
    branch = "llama-wheels/llama-cpp-python-0.3.37"
    (checkout / "scratch.txt").write_text("not committed\n")
    dirty = follow(project, lw_env, index, github.url)
    assert dirty.returncode == 19 and "uncommitted changes (?? scratch.txt)" in dirty.stdout, dirty.stdout[-2000:]
    (checkout / "scratch.txt").unlink()
    nobase = follow(project, lw_env, index, github.url, "--base", "no-such-branch")
    assert nobase.returncode == 19 and "'no-such-branch' cannot be resolved on the remote 'origin'" in nobase.stdout
    assert github.requests == [] and git("ls-remote", "--heads", project["origin"], cwd=checkout).count("\n") == 0

    res = follow(project, lw_env, index, github.url)
    assert res.returncode == 0, res.stdout[-4000:]
    assert f"newer: 0.3.37 (llama_cpp_python-0.3.37.tar.gz, sha256 {sha(newer)}" in res.stdout
    assert "0.3.38rc1" not in res.stdout.split("newer:")[1].splitlines()[0]  # the pre-release is ignored
    assert "step cpu: llama-cpp-python 0.3.37+cpu" in res.stdout  # the plan check on the branch
    assert f"opened https://github.example/{REPO}/pull/1" in res.stdout and TOKEN not in res.stdout
    # the branch holds the pin (version + the index's sha256), one commit on main; the checkout is untouched
    git("fetch", "-q", "origin", cwd=checkout)
    pinned = git("show", f"origin/{branch}:pyproject.toml", cwd=checkout)
    assert 'llama-cpp-python = "0.3.37"' in pinned and f'sdist-sha256 = "{sha(newer)}"' in pinned
    assert git("rev-parse", f"origin/{branch}~1", cwd=checkout) == git("rev-parse", "origin/main", cwd=checkout)
    assert git("status", "--porcelain", cwd=checkout) == "" and git("branch", "--show-current", cwd=checkout) == "main"
    assert git("worktree", "list", cwd=checkout).count("\n") == 0  # our temporary worktree is gone
    # the request as GitHub wants it
    (get, post) = github.requests
    assert (get["method"], get["path"], get["query"]["head"]) == ("GET", f"/repos/{REPO}/pulls", [f"acme:{branch}"])
    assert post["method"] == "POST" and post["path"] == f"/repos/{REPO}/pulls" and post["auth"] == f"Bearer {TOKEN}"
    assert post["body"]["head"] == branch and post["body"]["base"] == "main"
    assert post["body"]["title"] == "Pin llama-cpp-python 0.3.37" and sha(newer) in post["body"]["body"]
    # a passing --dry-run plan on the branch, as its CI would run it
    branch_co = tmp_path / "branch"
    git("clone", "-q", "-b", branch, project["origin"], branch_co)
    plan = lw("build", "--cpu", "--dry-run", env={**lw_env, "LLAMA_WHEELS_ROOT": str(branch_co)}, timeout=600)
    assert plan.returncode == 0 and "llama-cpp-python 0.3.37+cpu" in plan.stdout, plan.stdout[-3000:]

    again = follow(project, lw_env, index, github.url)
    assert again.returncode == 0, again.stdout[-3000:]
    assert f"branch {branch} is already on origin: not pushed again" in again.stdout
    assert f"a pull request for {branch} exists (open)" in again.stdout and len(github.posts()) == 1


def test_invoke_task_dry_run_says_what_it_would_do(two_releases: tuple[str, Path], github: GitHub,
                                                   project: dict[str, Path], lw_env: dict[str, str]) -> None:
    """`invoke follow-upstream --dry-run`, as the scheduled job runs the task: no token needed, nothing pushed."""
    index, newer = two_releases
    env = {**lw_env, "LLAMA_WHEELS_ROOT": str(project["checkout"]), **GIT_ID}
    res = subprocess.run([sys.executable, "-m", "invoke", "follow-upstream", "--index-url", index, "--repo", REPO,
                          "--api-url", github.url, "--dry-run"], cwd=Path(__file__).resolve().parents[2], env=env,
                         capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert (f"dry run: would pin 0.3.37 (sha256 {sha(newer)}) on llama-wheels/llama-cpp-python-0.3.37 from main"
            in out) and f"open a pull request on {REPO}" in out
    assert github.requests == [] and git("ls-remote", "--heads", project["origin"], cwd=project["checkout"]) \
        .count("\n") == 0


class StaticIndex:
    """A PEP 691 JSON project page on a real loopback HTTP server, with the files it links."""

    def __init__(self, files: dict[str, bytes], listing: list[dict[str, Any]],
                 json_api: dict[str, Any] | None = None) -> None:
        page = json.dumps({"meta": {"api-version": "1.1"}, "name": "llama-cpp-python", "files": listing}).encode()
        api = json.dumps(json_api or {}).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/simple/llama-cpp-python":
                    body, ctype = page, "application/vnd.pypi.simple.v1+json"
                elif self.path == "/pypi/llama-cpp-python/json" and json_api is not None:
                    body, ctype = api, "application/json"
                elif self.path.startswith("/files/") and self.path[7:] in files:
                    body, ctype = files[self.path[7:]], "application/octet-stream"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_follow_upstream_refuses_a_yanked_release_and_a_wrong_sha256(
        github: GitHub, project: dict[str, Path], lw_env: dict[str, str], tmp_path: Path) -> None:
    yanked, bad = fake_sdist(tmp_path, "0.3.37"), fake_sdist(tmp_path, "0.3.38")
    index = StaticIndex({p.name: p.read_bytes() for p in (yanked, bad)}, [
        {"filename": yanked.name, "url": f"../../files/{yanked.name}", "hashes": {"sha256": sha(yanked)},
         "yanked": "broken build"},
        {"filename": bad.name, "url": f"../../files/{bad.name}", "hashes": {"sha256": "0" * 64}}])
    try:
        res = follow(project, lw_env, index.url, github.url)
        assert res.returncode == 5, res.stdout[-3000:]
        assert f"the index says sha256 {'0' * 64}, the download has {sha(bad)}" in res.stdout
        asked = follow(project, lw_env, index.url, github.url, "--version", "0.3.37")
        assert asked.returncode == 19 and "0.3.37 is yanked on" in asked.stdout and "(broken build)" in asked.stdout
        assert "--allow-yanked" in asked.stdout and "Traceback" not in asked.stdout + res.stdout
        assert github.requests == [] and git("ls-remote", "--heads", project["origin"], cwd=tmp_path) == \
            git("ls-remote", "--heads", project["origin"], "main", cwd=tmp_path)
    finally:
        index.server.shutdown()
        index.server.server_close()


# ------------------------------------------------------------------------------ binding mismatches -------


def test_bindings_check_on_the_built_wheel_names_a_missing_symbol(cpu_build: Path, work: Path,
                                                                   tmp_path: Path) -> None:
    """The session's wheel: every function llama_cpp.py binds is in libllama.so's ELF exports. A copy whose
    bindings call a function this llama.cpp does not have (as after a rename upstream) is named by the smoke
    check before any import; a struct field the build recorded as changed is named too. The build recorded its
    source (the pinned sdist) in the manifest and METADATA, and the binding check against the sdist's llama.h."""
    import zipfile

    from llama_wheels.bindings import check_wheel
    from llama_wheels.config import DEFAULTS
    from llama_wheels.smoke.checks import bindings_check

    entry = json.loads((work / "wheelhouse" / "manifest.json").read_text())["wheels"]["cpu/" + cpu_build.name]
    pin = DEFAULTS["sdist-sha256"]
    assert entry["source"] == {"kind": "pypi", "version": "0.3.36", "sdist_sha256": pin, "archive_sha256": pin}
    assert entry["bindings"]["ok"] and entry["bindings"]["structs"] == [], entry["bindings"]
    assert entry["bindings"]["checked"]["libllama"] > 200
    with zipfile.ZipFile(cpu_build) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert f"Project-URL: Source-sdist, https://pypi.org/project/llama-cpp-python/0.3.36/#sha256={pin}" in meta

    rep = check_wheel(cpu_build)
    assert rep.ok and rep.checked["libllama"] > 200, rep.as_dict()
    assert bindings_check(cpu_build, {}).status == "pass"
    bad = tmp_path / cpu_build.name
    with zipfile.ZipFile(cpu_build) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "llama_cpp/llama_cpp.py":
                data += (b'\n\n@ctypes_function("llama_renamed_upstream", [], None)\n'
                         b"def llama_renamed_upstream() -> None: ...\n")
            out.writestr(info, data)
    check = bindings_check(bad, {})
    assert check.status == "fail" and "libllama.so does not export llama_renamed_upstream" in check.detail
    recorded = {"bindings": {"structs": ["struct llama_context_params: field 5 is n_rs_seq in llama.h but "
                                         "n_threads in the bindings (33 vs 32 fields; llama.h adds n_rs_seq)"]}}
    check = bindings_check(cpu_build, recorded)
    assert check.status == "fail" and "struct llama_context_params: field 5 is n_rs_seq" in check.detail


def test_pypi_json_api_is_read_like_pypi_answers(tmp_path: Path) -> None:
    """The default reader, on PyPI's JSON API shape (releases -> files with packagetype, digests, yanked):
    wheels are skipped, the newest sdist above the pin that is neither yanked nor a pre-release is chosen."""
    from llama_wheels import upstream

    def f(name: str, kind: str = "sdist", yanked: bool = False) -> dict[str, Any]:
        return {"filename": name, "url": f"http://files/{name}", "packagetype": kind, "yanked": yanked,
                "yanked_reason": "oops" if yanked else None, "digests": {"sha256": hashlib.sha256(name.encode())
                                                                         .hexdigest()}}

    api = {"info": {"version": "0.3.39"}, "releases": {
        "0.3.36": [f("llama_cpp_python-0.3.36.tar.gz")],
        "0.3.37": [f("llama_cpp_python-0.3.37.tar.gz"), f("llama_cpp_python-0.3.37-py3-none-any.whl", "bdist_wheel")],
        "0.3.38": [f("llama_cpp_python-0.3.38.tar.gz", yanked=True)],
        "0.3.39b1": [f("llama_cpp_python-0.3.39b1.tar.gz")]}}
    index = StaticIndex({}, [], api)
    try:
        base = index.url.removesuffix("/simple/")
        found = upstream.releases_from_json_api(base + "/pypi/{project}/json")
        assert sorted(r.filename for r in found) == ["llama_cpp_python-0.3.36.tar.gz", "llama_cpp_python-0.3.37.tar.gz",
                                                     "llama_cpp_python-0.3.38.tar.gz",
                                                     "llama_cpp_python-0.3.39b1.tar.gz"]
        chosen = upstream.choose(found, "0.3.36")
        assert chosen is not None and chosen.version == "0.3.37"
        assert chosen.sha256 == hashlib.sha256(b"llama_cpp_python-0.3.37.tar.gz").hexdigest()
        assert next(r for r in found if r.version == "0.3.38").yanked_reason == "oops"
    finally:
        index.server.shutdown()
        index.server.server_close()
