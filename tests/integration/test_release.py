"""The release path with real tools: the static index through pip (file://), and twine against a real
pypiserver on a loopback port."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.metadata import Metadata

from llama_wheels.errors import IndexConflict
from llama_wheels.index import build_index

from .conftest import free_port, lw, pypi_server


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def house(cpu_build: Path, tmp_path: Path) -> Path:
    """A wheelhouse of two flavours (the real CPU wheel and a copy under another flavour)."""
    wh = tmp_path / "wheelhouse"
    for flavour in ("cpu", "cpu-copy"):
        (wh / flavour).mkdir(parents=True)
        shutil.copy2(cpu_build, wh / flavour / cpu_build.name)
    dep = next(p for p in cpu_build.parent.glob("*.whl") if p.name.startswith("diskcache-"))
    shutil.copy2(dep, wh / "cpu" / dep.name)
    return wh


def venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "virtualenv", "-q", str(path)], check=True)
    return path / "bin" / "python"


def test_index_is_valid_idempotent_and_installs(house: Path, tmp_path: Path, cpu_build: Path) -> None:
    summary = build_index(house)
    assert summary["flavours"] == ["cpu", "cpu-copy"] and len(summary["added"]) == 2
    root = house / "index"
    first = tree_digest(root)
    build_index(house)
    assert tree_digest(root) == first  # indexing twice gives identical output
    page = (root / "cpu" / "llama-cpp-python" / "index.html").read_text()
    sha = hashlib.sha256(cpu_build.read_bytes()).hexdigest()
    assert f'#sha256={sha}"' in page and 'data-requires-python="&gt;=3.8"' in page
    assert "data-dist-info-metadata=" in page and "data-core-metadata=" in page
    data = json.loads((root / "cpu" / "llama-cpp-python" / "index.json").read_text())
    assert data["meta"]["api-version"] == "1.1" and data["versions"] == ["0.3.36+cpu"]
    meta = (root / "files" / (cpu_build.name + ".metadata")).read_bytes()
    assert data["files"][0]["core-metadata"] == {"sha256": hashlib.sha256(meta).hexdigest()}
    parsed = Metadata.from_email(meta, validate=False)
    assert str(parsed.version) == "0.3.36+cpu" and parsed.name == "llama_cpp_python"
    assert (root / "all" / "diskcache" / "index.html").exists()
    py = venv(tmp_path / "v")
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--index-url", (root / "cpu").as_uri(),
                    "llama-cpp-python==0.3.36+cpu"], check=True)
    reqs = tmp_path / "req.txt"
    reqs.write_text(f"llama-cpp-python==0.3.36+cpu --hash=sha256:{sha}\n")
    res = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", "--require-hashes",
                          "--index-url", (root / "cpu").as_uri(), "-r", str(reqs)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    reqs.write_text(f"llama-cpp-python==0.3.36+cpu --hash=sha256:{'0' * 64}\n")
    res = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", "--require-hashes",
                          "--index-url", (root / "cpu").as_uri(), "-r", str(reqs)], capture_output=True, text=True)
    assert res.returncode != 0 and "HASHES" in res.stderr.upper()


def test_published_wheels_stay_unless_pruned(house: Path) -> None:
    build_index(house)
    shutil.rmtree(house / "cpu-copy")
    build_index(house)
    assert "cpu-copy" in json.loads((house / "index" / "state.json").read_text())
    summary = build_index(house, prune=True)
    assert "cpu-copy" not in json.loads((house / "index" / "state.json").read_text())
    assert summary["pruned"] == [next((house / "cpu").glob("llama_cpp*.whl")).name]
    assert (house / "index" / "files" / summary["pruned"][0]).exists()  # still published by flavour cpu


def test_changed_hash_under_same_name_is_refused(house: Path) -> None:
    build_index(house)
    wheel = next((house / "cpu").glob("llama_cpp*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    with pytest.raises(IndexConflict, match="already published"):
        build_index(house)


@pytest.fixture
def pypiserver(tmp_path: Path):
    from passlib.apache import HtpasswdFile

    pw = tmp_path / "htpasswd"
    ht = HtpasswdFile(str(pw), new=True)
    ht.set_password("uploader", "s3cret-pass")
    ht.save()
    (tmp_path / "packages").mkdir()
    with pypi_server(tmp_path / "packages", tmp_path / "pypiserver.log", "-P", str(pw), "-a", "update") as url:
        yield url


def test_publish_to_real_pypiserver(pypiserver: str, house: Path, lw_env: dict[str, str], tmp_path: Path) -> None:
    env = {**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(house), "TWINE_USERNAME": "uploader",
           "TWINE_PASSWORD": "s3cret-pass"}
    wrong = lw("publish", "--repository-url", pypiserver + "/", env={**env, "TWINE_PASSWORD": "nope"}, timeout=300)
    assert wrong.returncode == 14 and "upload refused" in wrong.stdout and "Traceback" not in wrong.stdout
    assert "nope" not in wrong.stdout
    res = lw("publish", "--repository-url", pypiserver + "/", "--flavour", "cpu", env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:]
    assert "published 1 file(s), skipped 0" in res.stdout and "s3cret-pass" not in res.stdout
    py = venv(tmp_path / "v")
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--index-url", pypiserver + "/simple/",
                    "llama-cpp-python==0.3.36+cpu"], check=True)
    again = lw("publish", "--repository-url", pypiserver + "/", "--flavour", "cpu", env=env, timeout=300)
    assert again.returncode == 0 and "published 0 file(s), skipped 1" in again.stdout, again.stdout[-2000:]


def test_publish_unreachable_and_bad_url(house: Path, lw_env: dict[str, str]) -> None:
    env = {**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(house), "TWINE_USERNAME": "u", "TWINE_PASSWORD": "p"}
    res = lw("publish", "--repository-url", f"http://127.0.0.1:{free_port()}/", env=env, timeout=300)
    assert res.returncode == 14 and "could not reach" in res.stdout and "Traceback" not in res.stdout
    res = lw("publish", "--repository-url", "http://u:p@127.0.0.1:1/", env=env)
    assert res.returncode == 2 and "carries credentials" in res.stdout


def test_sync_to_folder_skips_what_is_there(house: Path, lw_env: dict[str, str], tmp_path: Path) -> None:
    build_index(house)
    env = {**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(house)}
    refused = lw("publish", "--sync-to", str(tmp_path / "bucket"), env=env)  # a typo must not start a new bucket
    assert refused.returncode == 2 and "does not exist" in refused.stdout and not (tmp_path / "bucket").exists()
    first = lw("publish", "--sync-to", str(tmp_path / "bucket"), "--create", env=env)
    assert first.returncode == 0 and (tmp_path / "bucket" / "cpu" / "llama-cpp-python" / "index.html").exists()
    second = lw("publish", "--sync-to", str(tmp_path / "bucket"), env=env)
    assert second.returncode == 0 and "4 already there" in second.stdout
