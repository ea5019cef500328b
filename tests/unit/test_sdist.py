from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from llama_wheels import sdist
from llama_wheels.errors import ChecksumError, OfflineMissing


def fake_sdist(path: Path) -> Path:
    files = {"llama_cpp_python-9.9/pyproject.toml": b"[project]\nname='x'\n",
             "llama_cpp_python-9.9/llama_cpp/__init__.py": b"",
             "llama_cpp_python-9.9/.git/objects/pack/p.pack": b"g" * 5000,
             "llama_cpp_python-9.9/docs/index.md": b"d" * 3000,
             "llama_cpp_python-9.9/vendor/llama.cpp/models/ggml-vocab-x.gguf": b"v" * 7000,
             "llama_cpp_python-9.9/vendor/llama.cpp/models/templates/t.jinja": b"keep"}
    with tarfile.open(path, "w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def test_slim_drops_git_docs_vocab_and_records_origin(tmp_path: Path) -> None:
    orig = fake_sdist(tmp_path / "llama_cpp_python-9.9.tar.gz")
    sha = sdist.sha256_file(orig)
    slim = sdist.slim_sdist(orig, tmp_path / "out" / sdist.slim_name("9.9"), sha)
    with tarfile.open(slim) as t:
        names = t.getnames()
    assert "llama_cpp_python-9.9/vendor/llama.cpp/models/templates/t.jinja" in names
    assert not any(".git" in n or "/docs/" in n or n.endswith(".gguf") for n in names)
    side = json.loads((slim.parent / (slim.name + ".json")).read_text())
    assert side["original_sha256"] == sha and side["dropped_bytes"] == 15000
    again = sdist.slim_sdist(orig, tmp_path / "again" / sdist.slim_name("9.9"), sha)
    assert sdist.sha256_file(again) == side["slim_sha256"]  # deterministic
    src = sdist.find_offline(tmp_path / "out", "9.9", sha)
    assert src.slim and src.path == slim
    project = sdist.extract(src, tmp_path / "src")
    assert (project / "pyproject.toml").exists()
    assert sdist.extract(src, tmp_path / "src") == project  # stable path, extracted once


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    orig = fake_sdist(tmp_path / "llama_cpp_python-9.9.tar.gz")
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        sdist.find_offline(tmp_path, "9.9", "0" * 64)
    slim = sdist.slim_sdist(orig, tmp_path / "p" / sdist.slim_name("9.9"), sdist.sha256_file(orig))
    with pytest.raises(ChecksumError, match="not the pinned"):
        sdist.find_offline(tmp_path / "p", "9.9", "1" * 64)
    slim.write_bytes(slim.read_bytes() + b"x")
    with pytest.raises(ChecksumError):
        sdist.find_offline(tmp_path / "p", "9.9", sdist.sha256_file(orig))


def test_offline_missing(tmp_path: Path) -> None:
    with pytest.raises(OfflineMissing, match="run nox -s prefetch"):
        sdist.find_offline(tmp_path, "0.3.36", "0" * 64)
