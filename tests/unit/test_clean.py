from __future__ import annotations

from pathlib import Path

import pytest

from llama_wheels.clean import (
    MARKER,
    claim,
    clean_temp,
    created_entries,
    owned_subdir,
    refuse_reason,
    remove_tree_within,
)
from llama_wheels.errors import CleanRefused


@pytest.fixture
def owned(tmp_path: Path) -> tuple[Path, Path]:
    """A build dir of ours holding files, a nested dir and a symlink to an outside canary."""
    root = tmp_path / "build"
    (owned_subdir(root, "tmp") / "deep").mkdir(parents=True)
    (root / "tmp" / "deep" / "obj.o").write_bytes(b"x" * 1000)
    owned_subdir(root, "cu130-sm90")
    owned_subdir(root, "staging")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary.txt").write_text("alive")
    (root / "tmp" / "link-out").symlink_to(outside, target_is_directory=True)
    (root / "staging" / "file-link").symlink_to(outside / "canary.txt")
    return root, outside


def test_symlinks_are_not_followed(owned) -> None:
    root, outside = owned
    report = clean_temp(root, {}, dry_run=False, purge_pip=False)
    assert (outside / "canary.txt").read_text() == "alive"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(MARKER)) == []
    assert root.is_dir()  # the root itself stays
    assert report.freed >= 1000 and not report.failed


def test_dry_run_removes_nothing(owned) -> None:
    root, _ = owned
    def tree() -> list[str]:
        return sorted(str(p) for p in root.rglob("*") if not p.name.startswith(MARKER))

    before = tree()
    report = clean_temp(root, {}, dry_run=True, purge_pip=False)
    assert tree() == before
    assert {Path(p).name for p, _ in report.removed} == {"tmp", "cu130-sm90", "staging"}


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


def test_locked_files_are_listed_not_fatal(owned, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = owned
    real_unlink = Path.unlink

    def busy(self: Path, missing_ok: bool = False) -> None:
        if self.name == "obj.o":
            raise PermissionError(13, "The process cannot access the file because it is being used")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", busy)
    report = clean_temp(root, {}, dry_run=False, purge_pip=False)
    assert [Path(p).name for p, _ in report.failed] == ["obj.o"]
    assert (root / "tmp" / "deep" / "obj.o").exists() and not (root / "cu130-sm90").exists()


def test_claim_refuses_a_non_empty_folder_and_stamps_nothing(tmp_path: Path) -> None:
    theirs = tmp_path / "x"
    (theirs / "photos").mkdir(parents=True)
    (theirs / "thesis.txt").write_text("years of work")
    with pytest.raises(CleanRefused, match="already holds files that llama-wheels did not create") as e:
        owned_subdir(theirs, "src")
    assert e.value.return_code == 10 and "new or empty folder" in e.value.remedy
    assert sorted(p.name for p in theirs.iterdir()) == ["photos", "thesis.txt"]  # no marker, no src


def test_claim_takes_an_empty_or_new_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    claim(tmp_path / "empty")
    claim(tmp_path / "new" / "deeper")
    assert (tmp_path / "empty" / MARKER).is_file() and (tmp_path / "new" / "deeper" / MARKER).is_file()
    claim(tmp_path / "empty")  # ours already: fine


def test_only_created_entries_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "build"
    (owned_subdir(root, "src") / "a.c").write_text("ours")
    (root / "thesis.txt").write_text("theirs, dropped in later")
    (root / "photos").mkdir()
    report = clean_temp(root, {}, dry_run=False, purge_pip=False)
    assert (root / "thesis.txt").read_text() == "theirs, dropped in later" and (root / "photos").is_dir()
    assert not (root / "src").exists()
    assert {Path(p).name for p, _ in report.skipped} == {"thesis.txt", "photos"}


def test_legacy_marker_only_known_names(tmp_path: Path) -> None:
    root = tmp_path / "build"
    for name in ("src", "cu130-sm90", "tmp", "thesis.txt", "cute"):
        (root / name).mkdir(parents=True)
    (root / MARKER).write_text("This folder is owned by llama-wheels; `invoke clean-temp` empties it.\n")
    assert created_entries(root) == {"src", "cu130-sm90", "tmp"}


def test_refuses_roots_holding_home_project_or_repos(tmp_path: Path) -> None:
    home = tmp_path / "users" / "me"
    home.mkdir(parents=True)
    assert "contains the home directory" in (refuse_reason(tmp_path / "users", {"HOME": str(home)}) or "")
    (tmp_path / "work" / "proj" / ".git").mkdir(parents=True)
    assert "contains the repository" in (refuse_reason(tmp_path / "work", {}) or "")
    assert "contains the project" in (refuse_reason(tmp_path, {}, project_root=tmp_path / "work" / "proj") or "")
    with pytest.raises(CleanRefused, match="contains the home directory"):
        clean_temp(tmp_path / "users", {"HOME": str(home)}, dry_run=False, purge_pip=False)
    assert home.is_dir()
