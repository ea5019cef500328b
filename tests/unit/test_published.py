"""published.py: who gets credentials, and seeding the local index from a published folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llama_wheels.errors import ConfigError
from llama_wheels.published import PublishedConflict, credentials_for, seed

from ..wheelmaker import make_wheel

ENV = {"TWINE_USERNAME": "u", "TWINE_PASSWORD": "p"}


@pytest.mark.parametrize(("url", "upload", "sent"), [
    ("https://pypi.example/simple/", "https://pypi.example/", True),
    ("https://PYPI.example:443/simple/", "https://pypi.example/legacy/", True),   # default port, host case
    ("http://127.0.0.1:8080/simple/", "http://127.0.0.1:8080/", True),
    ("http://127.0.0.1:8081/simple/", "http://127.0.0.1:8080/", False),         # another port: another service
    ("http://pypi.example/simple/", "https://pypi.example/", False),            # downgraded to http
    ("https://mirror.example/simple/", "https://pypi.example/", False),
    ("https://pypi.example.evil.test/simple/", "https://pypi.example/", False),
])
def test_credentials_only_for_the_upload_origin(url: str, upload: str, sent: bool) -> None:
    assert (credentials_for(url, upload, ENV) == ("u", "p")) is sent
    assert credentials_for(url, upload, {}) is None


def published(tmp_path: Path, state: dict[str, list[str]], wheels: list[Path]) -> Path:
    root = tmp_path / "published"
    (root / "files").mkdir(parents=True)
    for w in wheels:
        (root / "files" / w.name).write_bytes(w.read_bytes())
    (root / "state.json").write_text(json.dumps(state))
    return root


def test_seed_merges_state_and_copies_files(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    a = make_wheel(tmp_path / "w", "0.3.36+cpu")
    pub = published(tmp_path, {"cpu": [a.name]}, [a])
    index = tmp_path / "index"
    index.mkdir()
    (index / "state.json").write_text(json.dumps({"cu130-sm90": ["x.whl"]}))
    assert seed(index, pub) == {"flavours": 1, "files": 1, "copied": 1}
    assert json.loads((index / "state.json").read_text()) == {"cpu": [a.name], "cu130-sm90": ["x.whl"]}
    assert (index / "files" / a.name).read_bytes() == a.read_bytes()
    assert seed(index, pub)["copied"] == 0  # already there with the same bytes


def test_seed_first_release_and_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--seed-from .*missing does not exist; .*--create"):  # a typo (issue 24)
        seed(tmp_path / "index", tmp_path / "missing")
    assert seed(tmp_path / "index", tmp_path / "missing", create=True) == {"flavours": 0, "files": 0, "copied": 0}
    assert not (tmp_path / "missing").exists()  # seeding only reads
    (tmp_path / "empty").mkdir()
    assert seed(tmp_path / "index", tmp_path / "empty") == {"flavours": 0, "files": 0, "copied": 0}
    (tmp_path / "w").mkdir()
    a = make_wheel(tmp_path / "w", "0.3.36+cpu")
    pub = published(tmp_path, {"cpu": [a.name, "gone.whl"]}, [a])
    with pytest.raises(ConfigError, match=r"lists gone\.whl"):
        seed(tmp_path / "index", pub)
    (pub / "state.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not an index state"):
        seed(tmp_path / "index", pub)


def test_seed_refuses_a_local_file_that_differs_from_the_published_one(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    a = make_wheel(tmp_path / "w", "0.3.36+cpu")
    pub = published(tmp_path, {"cpu": [a.name]}, [a])
    (tmp_path / "index" / "files").mkdir(parents=True)
    (tmp_path / "index" / "files" / a.name).write_bytes(a.read_bytes() + b"\0")
    with pytest.raises(PublishedConflict, match="other bytes"):
        seed(tmp_path / "index", pub)
    assert (pub / "files" / a.name).read_bytes() == a.read_bytes()  # the published side is never written


def test_sync_leaves_a_killed_runs_partial_behind_and_writes_files_before_pages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from llama_wheels.log import Logger
    from llama_wheels.publish import sync_folder

    index = tmp_path / "index"
    (index / "files").mkdir(parents=True)
    (index / "files" / "a.whl").write_bytes(b"a")
    (index / "files" / ".a.whl.4242.partial").write_bytes(b"half")
    (index / "cpu").mkdir()
    (index / "cpu" / "index.html").write_text("page")
    (index / "state.json").write_text(json.dumps({"cpu": ["a.whl"]}))
    written: list[str] = []
    real = os.replace

    def spy(src: Path, dst: Path) -> None:
        written.append(Path(dst).relative_to(tmp_path / "dest").as_posix())
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    with pytest.raises(ConfigError, match=r"--sync-to .*dest does not exist; .*--create"):
        sync_folder(index, tmp_path / "dest", Logger({}))
    assert written == [] and not (tmp_path / "dest").exists()
    assert sync_folder(index, tmp_path / "dest", Logger({}), create=True) == {"copied": 3, "skipped": 0}
    assert written == ["files/a.whl", "cpu/index.html", "state.json"]
    assert not list((tmp_path / "dest").rglob("*.partial"))


def test_sync_removes_the_partials_a_killed_sync_of_ours_left_and_nothing_else(tmp_path: Path) -> None:
    from llama_wheels.log import Logger
    from llama_wheels.publish import sync_folder

    index = tmp_path / "index"
    (index / "files").mkdir(parents=True)
    (index / "files" / "a.whl").write_bytes(b"a")
    (index / "state.json").write_text(json.dumps({"cpu": ["a.whl"]}))
    dest = tmp_path / "dest"
    (dest / "files").mkdir(parents=True)
    dead = 2**22 + 12345  # above Linux's pid_max default: no such process
    stale = dest / "files" / f".fastapi-0.165.0-py3-none-any.whl.metadata.{dead}.partial"
    stale.write_bytes(b"half")
    live = dest / "files" / f".b.whl.{os.getpid()}.partial"  # a running sync's (here: ours)
    live.write_bytes(b"x")
    theirs = dest / "files" / "notes.partial"  # not our pattern: never touched
    theirs.write_bytes(b"keep")
    sync_folder(index, dest, Logger({}))
    assert not stale.exists() and live.exists() and theirs.exists()
