from __future__ import annotations

import os
from pathlib import Path

import pytest

from llama_wheels.clean import MARKER, clean_temp, mark_owned, refuse_reason, remove_tree_within, stale_pip_dirs
from llama_wheels.errors import CleanRefused


@pytest.fixture
def owned(tmp_path: Path) -> tuple[Path, Path]:
    """A build dir of ours holding files, a nested dir and a symlink to an outside canary."""
    root = tmp_path / "build"
    mark_owned(root)
    (root / "tmp" / "deep").mkdir(parents=True)
    (root / "tmp" / "deep" / "obj.o").write_bytes(b"x" * 1000)
    (root / "cu130-sm90").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary.txt").write_text("alive")
    (root / "tmp" / "link-out").symlink_to(outside, target_is_directory=True)
    (root / "file-link").symlink_to(outside / "canary.txt")
    return root, outside


def test_symlinks_are_not_followed(owned) -> None:
    root, outside = owned
    report = clean_temp(root, {}, dry_run=False, purge_pip=False, system_tmp=root.parent / "no-tmp")
    assert (outside / "canary.txt").read_text() == "alive"
    assert sorted(p.name for p in root.iterdir()) == [MARKER]
    assert root.is_dir()  # the root itself stays
    assert report.freed >= 1000 and not report.failed


def test_dry_run_removes_nothing(owned) -> None:
    root, _ = owned
    before = sorted(str(p) for p in root.rglob("*"))
    report = clean_temp(root, {}, dry_run=True, purge_pip=False, system_tmp=root.parent / "no-tmp")
    assert sorted(str(p) for p in root.rglob("*")) == before
    assert {Path(p).name for p, _ in report.removed} == {"tmp", "cu130-sm90", "file-link"}


def test_refuses_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "filesystem or drive root" in (refuse_reason(Path("/"), {}) or "")
    home = tmp_path / "home"
    home.mkdir()
    assert "home directory" in (refuse_reason(home, {"HOME": str(home)}) or "")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    assert "repository root" in (refuse_reason(repo, {}) or "")
    link = tmp_path / "link"
    link.symlink_to(repo)
    assert "symlink" in (refuse_reason(link, {}) or "")
    for bad, env in ((Path("/"), {}), (home, {"HOME": str(home)})):
        with pytest.raises(CleanRefused) as e:
            clean_temp(bad, env, dry_run=True, purge_pip=False)
        assert "\n" not in e.value.one_line() and e.value.return_code == 10


def test_refuses_a_folder_we_did_not_create(tmp_path: Path) -> None:
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "precious").write_text("keep")
    with pytest.raises(CleanRefused, match="did not create it"):
        clean_temp(tmp_path / "theirs", {}, dry_run=False, purge_pip=False)
    assert (tmp_path / "theirs" / "precious").exists()


def test_remove_within_refuses_outside(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(CleanRefused):
        remove_tree_within(tmp_path / "b", tmp_path / "a")
    assert (tmp_path / "b").exists()


def test_stale_pip_dirs_only_old_own_real_dirs(tmp_path: Path) -> None:
    old, new, other = tmp_path / "pip-build-env-old", tmp_path / "pip-req-build-new", tmp_path / "not-pip"
    for d in (old, new, other):
        d.mkdir()
    (tmp_path / "pip-link").symlink_to(other)
    os.utime(old, (1, 1))
    assert stale_pip_dirs(tmp_path) == [old]


def test_locked_files_are_listed_not_fatal(owned, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = owned
    real_unlink = Path.unlink

    def busy(self: Path, missing_ok: bool = False) -> None:
        if self.name == "obj.o":
            raise PermissionError(13, "The process cannot access the file because it is being used")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", busy)
    report = clean_temp(root, {}, dry_run=False, purge_pip=False, system_tmp=root.parent / "no-tmp")
    assert [Path(p).name for p, _ in report.failed] == ["obj.o"]
    assert (root / "tmp" / "deep" / "obj.o").exists() and not (root / "cu130-sm90").exists()
