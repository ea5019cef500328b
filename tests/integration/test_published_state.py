"""The published state decides (issue 16): two releases from fresh wheelhouses both stay listed, a changed file is
refused however the server writes its links, and credentials go only to the upload host. Real pypiserver, real
twine, real pip; the small wheels come from tests/wheelmaker.py (valid, installable, fast)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..wheelmaker import make_wheel
from .conftest import ROOT, lw, pypi_server

USER, PASSWORD = "uploader", "s3cret-pass"
WORKFLOW = (ROOT / "ci" / "workflows" / "gpu-wheels.yml").read_text()
# What the workflow's publish job runs (its nox sessions run exactly `python -m llama_wheels <args>`).
INDEX_CMD = 'scripts/run nox -s index -- --base-url "$INDEX_BASE_URL" --seed-from "$INDEX_SYNC_DIR"'
PUBLISH_CMD = 'scripts/run nox -s publish -- "${args[@]}"'


def test_the_workflow_runs_these_commands() -> None:
    assert INDEX_CMD in WORKFLOW and PUBLISH_CMD in WORKFLOW
    assert 'args+=(--repository-url "$UPLOAD_URL")' in WORKFLOW and 'args+=(--sync-to "$INDEX_SYNC_DIR")' in WORKFLOW


@pytest.fixture
def pypiserver(tmp_path: Path) -> Iterator[str]:
    from passlib.apache import HtpasswdFile

    ht = HtpasswdFile(str(tmp_path / "htpasswd"), new=True)
    ht.set_password(USER, PASSWORD)
    ht.save()
    (tmp_path / "packages").mkdir()
    with pypi_server(tmp_path / "packages", tmp_path / "pypiserver.log",
                     "-P", str(tmp_path / "htpasswd"), "-a", "update") as url:
        yield url


class Recorder(http.server.ThreadingHTTPServer):
    """A loopback server that records every request's headers; answers from ``respond``."""

    def __init__(self, respond):  # type: ignore[no-untyped-def]
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.respond = respond
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.seen.append((self.command, self.path, dict(self.headers)))
                code, ctype, data = recorder.respond(self.command, self.path, dict(self.headers), body)
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _any

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def serve() -> Iterator[type[Recorder]]:
    started: list[Recorder] = []

    def start(respond):  # type: ignore[no-untyped-def]
        r = Recorder(respond)
        started.append(r)
        return r

    yield start  # type: ignore[misc]
    for r in started:
        r.shutdown()
        r.server_close()


def encoding_proxy(upstream: str, *, strip_hashes: bool = False):  # type: ignore[no-untyped-def]
    """Forward GETs to ``upstream`` asking for HTML, and percent-encode `+` in every href (as some servers do);
    with ``strip_hashes`` also drop the #sha256= fragments (a listing without hashes)."""
    def respond(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        req = urllib.request.Request(upstream + path, headers={"Accept": "text/html"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                data, ctype = r.read(), r.headers.get("Content-Type", "text/html")
        except urllib.error.HTTPError as exc:
            return exc.code, "text/plain", b""
        if not ctype.startswith("text/html"):
            return 200, ctype, data  # a file download passes through
        def fix(m: re.Match[str]) -> str:
            href = m[1].replace("+", "%2B")
            return 'href="' + (href.split("#")[0] if strip_hashes else href) + '"'
        return 200, ctype, re.sub(r'href="([^"]*)"', fix, data.decode()).encode()
    return respond


def house(tmp_path: Path, name: str, version: str, **kw: object) -> tuple[Path, Path]:
    """A fresh wheelhouse (a fresh checkout's) with one wheel in flavour ``cpu``."""
    (tmp_path / name / "wheelhouse" / "cpu").mkdir(parents=True)
    wheel = make_wheel(tmp_path / name / "wheelhouse" / "cpu", version, **kw)  # type: ignore[arg-type]
    return tmp_path / name / "wheelhouse", wheel


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def pip_install_both(tmp_path: Path, index_url: str, a: Path, b: Path) -> None:
    subprocess.run([sys.executable, "-m", "virtualenv", "-q", str(tmp_path / "v")], check=True)
    py = tmp_path / "v" / "bin" / "python"
    for version, wheel in (("0.3.36+cpu", a), ("0.3.37+cpu", b)):
        req = tmp_path / "req.txt"
        req.write_text(f"llama-cpp-python=={version} --hash=sha256:{sha(wheel)}\n")
        res = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--require-hashes", "--index-url",
                              index_url, "-r", str(req)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        out = subprocess.run([py, "-m", "pip", "show", "llama_cpp_python"], capture_output=True, text=True).stdout
        assert f"Version: {version}" in out


def test_two_releases_to_a_sync_folder_list_both(tmp_path: Path, lw_env: dict[str, str]) -> None:
    sync = tmp_path / "published"
    sync.mkdir()  # the published folder (a web root, a mounted bucket) exists; a missing one is refused
    wheels = []
    for n, version in ((1, "0.3.36+cpu"), (2, "0.3.37+cpu")):
        wh, wheel = house(tmp_path, f"release{n}", version)
        wheels.append(wheel)
        env = {**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(wh)}
        # INDEX_CMD and PUBLISH_CMD with INDEX_SYNC_DIR set and no UPLOAD_URL
        res = lw("index", "--base-url", sync.as_uri(), "--seed-from", str(sync), env=env)
        assert res.returncode == 0, res.stdout
        res = lw("publish", "--sync-to", str(sync), env=env)
        assert res.returncode == 0, res.stdout
    a, b = wheels
    page = (sync / "cpu" / "llama-cpp-python" / "index.html").read_text()
    assert f"{a.name}#sha256={sha(a)}" in page and f"{b.name}#sha256={sha(b)}" in page
    data = json.loads((sync / "all" / "llama-cpp-python" / "index.json").read_text())
    assert {f["filename"]: f["hashes"]["sha256"] for f in data["files"]} == {a.name: sha(a), b.name: sha(b)}
    assert json.loads((sync / "state.json").read_text()) == {"cpu": sorted([a.name, b.name])}
    pip_install_both(tmp_path, (sync / "cpu").as_uri(), a, b)


def test_a_release_that_changes_a_published_file_is_refused_before_anything_moves(
        tmp_path: Path, lw_env: dict[str, str]) -> None:
    sync = tmp_path / "published"
    sync.mkdir()  # the published folder (a web root, a mounted bucket) exists; a missing one is refused
    wh, _ = house(tmp_path, "release1", "0.3.36+cpu")
    env = {**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(wh)}
    assert lw("index", "--seed-from", str(sync), env=env).returncode == 0
    assert lw("publish", "--sync-to", str(sync), env=env).returncode == 0
    before = {p: p.read_bytes() for p in sync.rglob("*") if p.is_file()}
    wh2, _ = house(tmp_path, "release2", "0.3.36+cpu", files={"llama_cpp/extra.py": b"x = 1\n"})
    res = lw("index", "--seed-from", str(sync), env={**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(wh2)})
    assert res.returncode == 13 and "already published" in res.stdout and "Traceback" not in res.stdout
    assert {p: p.read_bytes() for p in sync.rglob("*") if p.is_file()} == before


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_sync_that_would_unlist_a_release_is_refused(tmp_path: Path, lw_env: dict[str, str]) -> None:
    """Forgetting --seed-from, or two releases that read the folder before either wrote it: refused, nothing written."""
    sync = tmp_path / "published"
    sync.mkdir()  # the published folder (a web root, a mounted bucket) exists; a missing one is refused
    envs = []
    for n, version in ((1, "0.3.36+cpu"), (2, "0.3.37+cpu")):
        wh, _ = house(tmp_path, f"release{n}", version)
        envs.append({**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(wh)})
    assert lw("index", "--seed-from", str(sync), env=envs[0]).returncode == 0
    assert lw("publish", "--sync-to", str(sync), env=envs[0]).returncode == 0
    before = snapshot(sync)
    assert lw("index", env=envs[1]).returncode == 0  # no --seed-from
    res = lw("publish", "--sync-to", str(sync), env=envs[1])
    assert res.returncode == 14 and "syncing would unlist them" in res.stdout and "--seed-from" in res.stdout
    assert snapshot(sync) == before
    # A third release seeds now; release 2 seeds too and publishes first: the third must seed again.
    wh3, _ = house(tmp_path, "release3", "0.3.38+cpu")
    env3 = {**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(wh3)}
    assert lw("index", "--seed-from", str(sync), env=env3).returncode == 0
    assert lw("index", "--seed-from", str(sync), env=envs[1]).returncode == 0
    assert lw("publish", "--sync-to", str(sync), env=envs[1]).returncode == 0
    assert lw("publish", "--sync-to", str(sync), env=env3).returncode == 14
    assert lw("index", "--seed-from", str(sync), env=env3).returncode == 0
    assert lw("publish", "--sync-to", str(sync), env=env3).returncode == 0
    listed = json.loads((sync / "state.json").read_text())["cpu"]
    assert [n.split("-")[1] for n in listed] == ["0.3.36+cpu", "0.3.37+cpu", "0.3.38+cpu"]


def test_seed_from_a_folder_that_is_not_an_index(tmp_path: Path, lw_env: dict[str, str]) -> None:
    wh, _ = house(tmp_path, "r", "0.3.36+cpu")
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "index.html").write_text("hello")
    res = lw("index", "--seed-from", str(tmp_path / "web"), env={**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(wh)})
    assert res.returncode == 2 and "holds no state.json" in res.stdout and "Traceback" not in res.stdout
    res = lw("index", "--seed-from", str(tmp_path / "web"), "--prune",
             env={**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(wh)})
    assert res.returncode == 2 and "would unlist every earlier release" in res.stdout


def publish_env(lw_env: dict[str, str], wh: Path) -> dict[str, str]:
    return {**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(wh), "TWINE_USERNAME": USER, "TWINE_PASSWORD": PASSWORD}


def test_two_releases_to_a_pypiserver_list_both(pypiserver: str, tmp_path: Path, lw_env: dict[str, str]) -> None:
    wheels = []
    for n, version in ((1, "0.3.36+cpu"), (2, "0.3.37+cpu")):
        wh, wheel = house(tmp_path, f"release{n}", version)
        wheels.append(wheel)
        env = publish_env(lw_env, wh)
        # INDEX_CMD without INDEX_SYNC_DIR is a plain index; PUBLISH_CMD with UPLOAD_URL set
        assert lw("index", env=env).returncode == 0
        res = lw("publish", "--repository-url", pypiserver + "/", env=env, timeout=300)
        assert res.returncode == 0 and "published 1 file(s), skipped 0" in res.stdout, res.stdout[-2000:]
    a, b = wheels
    with urllib.request.urlopen(pypiserver + "/simple/llama-cpp-python/") as r:
        page = r.read().decode()
    assert f"{a.name}#sha256={sha(a)}" in page and f"{b.name}#sha256={sha(b)}" in page
    pip_install_both(tmp_path, pypiserver + "/simple/", a, b)


def test_encoded_plus_in_links_does_not_hide_a_changed_file(pypiserver: str, serve, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                            lw_env: dict[str, str]) -> None:
    proxy = serve(encoding_proxy(pypiserver))
    wh, _ = house(tmp_path, "release1", "0.3.36+cpu")
    assert lw("publish", "--repository-url", pypiserver + "/", env=publish_env(lw_env, wh), timeout=300).returncode == 0
    with urllib.request.urlopen(proxy.url + "/simple/llama-cpp-python/") as r:
        assert "0.3.36%2Bcpu" in r.read().decode()  # the proxy does encode
    same = lw("publish", "--repository-url", pypiserver + "/", "--index-url", proxy.url + "/simple/",
              env=publish_env(lw_env, wh), timeout=300)
    assert same.returncode == 0 and "published 0 file(s), skipped 1" in same.stdout, same.stdout[-2000:]
    wh2, _ = house(tmp_path, "release2", "0.3.36+cpu", files={"llama_cpp/extra.py": b"x = 1\n"})
    changed = lw("publish", "--repository-url", pypiserver + "/", "--index-url", proxy.url + "/simple/",
                 env=publish_env(lw_env, wh2), timeout=300)
    assert changed.returncode == 14 and "already on the server with sha256" in changed.stdout, changed.stdout[-2000:]
    # A listing without hashes: the server's bytes are downloaded and hashed, so the change is still refused.
    bare = serve(encoding_proxy(pypiserver, strip_hashes=True))
    with urllib.request.urlopen(bare.url + "/simple/llama-cpp-python/") as r:
        assert "sha256" not in r.read().decode()
    changed = lw("publish", "--repository-url", pypiserver + "/", "--index-url", bare.url + "/simple/",
                 env=publish_env(lw_env, wh2), timeout=300)
    assert changed.returncode == 14 and "already on the server with sha256" in changed.stdout, changed.stdout[-2000:]
    same = lw("publish", "--repository-url", pypiserver + "/", "--index-url", bare.url + "/simple/",
              env=publish_env(lw_env, wh), timeout=300)
    assert same.returncode == 0 and "skipped 1" in same.stdout, same.stdout[-2000:]
    assert any(p.endswith(".whl") for _, p, _ in bare.seen)  # it did download the file to hash it


def test_changed_file_refused_through_pep691_json(serve, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                   lw_env: dict[str, str]) -> None:
    """A server that answers JSON when asked (our own static index's index.json, served with negotiation)."""
    sync = tmp_path / "published"
    sync.mkdir()  # the published folder (a web root, a mounted bucket) exists; a missing one is refused
    wh, _ = house(tmp_path, "release1", "0.3.36+cpu")
    env = {**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(wh)}
    assert lw("index", "--seed-from", str(sync), env=env).returncode == 0
    assert lw("publish", "--sync-to", str(sync), env=env).returncode == 0

    def respond(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        if method == "POST":
            return 200, "text/plain", b"OK"
        page = sync / "all" / path.removeprefix("/simple/").strip("/")
        if "application/vnd.pypi.simple.v1+json" in headers.get("Accept", "") and (page / "index.json").exists():
            return 200, "application/vnd.pypi.simple.v1+json", (page / "index.json").read_bytes()
        return 404, "text/plain", b""

    server = serve(respond)
    wh2, _ = house(tmp_path, "release2", "0.3.36+cpu", files={"llama_cpp/extra.py": b"x = 1\n"})
    res = lw("publish", "--repository-url", server.url + "/", env=publish_env(lw_env, wh2), timeout=300)
    assert res.returncode == 14 and "already on the server with sha256" in res.stdout, res.stdout[-2000:]
    assert not [s for s in server.seen if s[0] == "POST"]  # refused before any upload


def test_credentials_go_only_to_the_upload_host(pypiserver: str, serve, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                lw_env: dict[str, str]) -> None:
    def respond(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        return (200, "text/plain", b"OK") if method == "POST" else (404, "text/plain", b"")

    other = serve(respond)
    wh, _ = house(tmp_path, "release1", "0.3.36+cpu")
    res = lw("publish", "--repository-url", pypiserver + "/", "--index-url", other.url + "/simple/",
             env=publish_env(lw_env, wh), timeout=300)
    assert res.returncode == 0, res.stdout[-2000:]
    assert [s[0] for s in other.seen] == ["GET"]
    assert not any(k.lower() == "authorization" for k in other.seen[0][2])
    assert "without credentials: it is not the upload host" in res.stdout
    # The control: the same server as the upload host does get them (so the check above can fail).
    res = lw("publish", "--repository-url", other.url + "/", env=publish_env(lw_env, wh), timeout=300)
    assert res.returncode == 0, res.stdout[-2000:]
    gets = [s for s in other.seen[1:] if s[0] == "GET"]
    assert gets and all(s[2].get("Authorization", "").startswith("Basic ") for s in gets)
    assert PASSWORD not in res.stdout


def fresh_checkout(dest: Path) -> Path:
    """The working tree as a fresh clone has it: tracked and untracked-but-not-ignored files, nothing built."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def publish_job_script() -> tuple[str, set[str]]:
    """The publish job's own steps after the downloads (index, publish, summary), as one bash script."""
    import yaml

    steps = [s for s in yaml.safe_load(WORKFLOW)["jobs"]["publish"]["steps"] if "run" in s]
    assert [s["name"].split(" ")[0] for s in steps] == ["Index", "Publish", "Step"]
    script = "\n".join(f"(\n{s['run']}\n)" for s in steps)
    return script, {k for s in steps for k in s.get("env", {})}


def test_two_releases_from_fresh_checkouts_run_the_workflows_own_steps(pypiserver: str, tmp_path: Path) -> None:
    """Both routes at once (INDEX_UPLOAD_URL and INDEX_SYNC_DIR set), through scripts/run and nox as on a runner."""
    script, names = publish_job_script()
    assert names == {"INDEX_BASE_URL", "INDEX_SYNC_DIR", "UPLOAD_URL", "SIMPLE_URL", "TWINE_USERNAME",
                     "TWINE_PASSWORD"}
    sync = tmp_path / "sync"
    sync.mkdir()  # INDEX_SYNC_DIR: a web root or mounted bucket that exists (a missing one is refused)
    wheels = []
    for n, version in ((1, "0.3.36+cpu"), (2, "0.3.37+cpu")):
        clone = fresh_checkout(tmp_path / f"clone{n}")
        (clone / "wheelhouse" / "cpu").mkdir(parents=True)  # what download-artifact leaves
        wheels.append(make_wheel(clone / "wheelhouse" / "cpu", version))
        (clone / "reports").mkdir()
        (clone / "reports" / "build-cpu.md").write_text(f"| build summary of release {n} |\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA_WHEELS_", "TWINE_", "NOX"))}
        env.update({"INDEX_BASE_URL": sync.as_uri(), "INDEX_SYNC_DIR": str(sync), "UPLOAD_URL": pypiserver + "/",
                    "SIMPLE_URL": "", "TWINE_USERNAME": USER, "TWINE_PASSWORD": PASSWORD,
                    "GITHUB_STEP_SUMMARY": str(tmp_path / f"summary{n}.md"), "PYTHON": sys.executable,
                    "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])})
        res = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=clone, env=env,
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
        assert res.returncode == 0, res.stdout[-3000:]
        assert PASSWORD not in res.stdout
    a, b = wheels
    with urllib.request.urlopen(pypiserver + "/simple/llama-cpp-python/") as r:
        server_page = r.read().decode()
    static_page = (sync / "cpu" / "llama-cpp-python" / "index.html").read_text()
    for page in (server_page, static_page):
        assert f"{a.name}#sha256={sha(a)}" in page and f"{b.name}#sha256={sha(b)}" in page
    assert "build summary of release 2" in (tmp_path / "summary2.md").read_text()
    pip_install_both(tmp_path, (sync / "cpu").as_uri(), a, b)
