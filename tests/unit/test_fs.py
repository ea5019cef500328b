"""fs.py and the small refusals of issue 24: atomic copies that leave nothing behind, filesystem faults as one
typed line, the rebuild that keeps the cold build's record, build dirs in a source tree, ports and blanks.
(Real mounts, EXDEV and full disks are in tests/integration/test_reliability_faults.py.)"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
from pathlib import Path

import pytest

from llama_wheels import clean, fs, manifest
from llama_wheels.config import not_blank, port_number
from llama_wheels.errors import CleanRefused, StorageError


def test_a_failed_copy_leaves_no_partial_and_is_one_typed_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "a.whl"
    src.write_bytes(b"x" * 5000)
    (tmp_path / "dest").mkdir()

    def full(a: object, b: object) -> None:
        Path(str(b)).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(StorageError) as exc:
        fs.copy_atomic(src, tmp_path / "dest" / "a.whl")
    assert exc.value.return_code == 18
    assert exc.value.message.startswith(f"{tmp_path / 'dest'} is full: no space left on device (4.9 KB needed, ")
    assert list((tmp_path / "dest").iterdir()) == []


@pytest.mark.parametrize(("code", "fragment"), [(errno.EROFS, "is not writable (Read-only file system)"),
                                                (errno.EACCES, "is not writable (Permission denied)"),
                                                (errno.ENOSPC, "is full: no space left on device")])
def test_storage_errors(tmp_path: Path, code: int, fragment: str) -> None:
    with pytest.raises(StorageError, match=fr"^{tmp_path} {fragment.replace('(', '[(]').replace(')', '[)]')}"), \
            fs.storage_errors(tmp_path):
        raise OSError(code, os.strerror(code))
    with pytest.raises(FileNotFoundError), fs.storage_errors(tmp_path):  # anything else passes through
        raise FileNotFoundError(errno.ENOENT, "gone")


def test_need_space_names_both_numbers(tmp_path: Path) -> None:
    fs.need_space(tmp_path, 1)
    with pytest.raises(StorageError, match=fr"^{tmp_path} has .* free, 1024.0 GB needed; free space there"):
        fs.need_space(tmp_path, 1 << 40)


def test_move_into_renames_on_one_filesystem(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    fs.move_into(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == b"a" and not (tmp_path / "a").exists()


def test_move_into_copies_then_renames_across_filesystems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.replace answering EXDEV (as across two mounts; the real mount is in the integration test)."""
    (tmp_path / "a").write_bytes(b"wheel")
    real = os.replace
    calls: list[tuple[str, str]] = []

    def replace(a: str | Path, b: str | Path) -> None:
        calls.append((Path(a).name, Path(b).name))
        if Path(a).name == "a":
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real(a, b)

    monkeypatch.setattr(os, "replace", replace)
    fs.move_into(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == b"wheel" and not (tmp_path / "a").exists()
    assert calls == [("a", "b"), (f".b.{os.getpid()}.partial", "b")]  # the copy is renamed within the target


def test_stale_partials_of_dead_runs_only(tmp_path: Path) -> None:
    dead = tmp_path / ".x.whl.4194303999.partial"
    live = tmp_path / f".y.whl.{os.getpid()}.partial"
    other = tmp_path / "z.partial"
    for p in (dead, live, other):
        p.write_bytes(b"")
    assert fs.remove_stale_partials(tmp_path) == [dead]
    assert live.exists() and other.exists()


def test_a_rebuild_that_compiled_nothing_keeps_the_cold_record() -> None:
    cold = {"sha256": "a", "build_seconds": 540.0, "cpu_seconds": 680.0, "cache": {"hits": 0, "misses": 178}}
    noop = {"sha256": "a", "build_seconds": 11.0, "cpu_seconds": 7.6, "cache": {"hits": 0, "misses": 0}}
    kept = manifest.keep_cold_record(cold, noop)
    assert {k: kept[k] for k in manifest.COST_FIELDS} == {k: cold[k] for k in manifest.COST_FIELDS}
    assert kept["last_build"] == {k: noop[k] for k in manifest.COST_FIELDS}
    assert manifest.keep_cold_record(manifest.keep_cold_record(cold, noop), noop)["cpu_seconds"] == 680.0
    warm = {**noop, "cache": {"hits": 170, "misses": 8}}  # it compiled something: its own record
    assert manifest.keep_cold_record(cold, warm) == warm
    assert manifest.keep_cold_record(None, noop) == noop


def test_a_build_dir_inside_a_source_tree_or_git_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "src" / "pkg").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (project / ".git").mkdir()
    for bad, why in ((project / "src" / "build", "is inside the source folder"),
                     (project / ".git" / "build", "is inside the repository folder")):
        with pytest.raises(CleanRefused, match=why) as exc:
            clean.owned_subdir(bad, "tmp")
        assert "C:\\lwb" not in exc.value.remedy and "./build" in exc.value.remedy
        assert not bad.exists()
    assert clean.owned_subdir(project / "build", "tmp").is_dir()  # the default place is fine
    assert clean.owned_subdir(tmp_path / "src" / "b", "tmp").is_dir()  # a src/ that is no project's


def test_clean_temp_refusals_suggest_a_path_of_this_os(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with pytest.raises(CleanRefused) as exc:
        clean.clean_build_dir(tmp_path, {"HOME": str(home)}, dry_run=True, report=clean.CleanReport())
    if os.name != "nt":
        assert "C:\\lwb" not in exc.value.remedy and "./build" in exc.value.remedy


def test_port_and_blank_values() -> None:
    assert port_number("8000") == 8000 and port_number("0") == 0 and port_number("65535") == 65535
    for bad in ("70000", "-1", "http", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="is not a port: give 1-65535"):
            port_number(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="an empty value is not allowed; give a GGUF"):
        not_blank("a GGUF")("  ")
    assert not_blank("x")("m.gguf") == "m.gguf"


def test_an_unrecorded_wheel_gets_the_remedy_that_fits(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    ours = {"cpu/llama_cpp_python-0.3.36+cpu-py3-none-any.whl": {"sha256": "a", "dependencies": {"dep-1.whl": "b"}}}
    old = {"cu130-sm90/llama_cpp_python-0.3.36+cu130.sm90-py3-none-any.whl": {"sha256": "c",
                                                                              "dependency_wheels": []}}
    entries = {**ours, **old}
    assert set(manifest.recorded_files(wh, entries)) == {wh / k for k in entries} | {wh / "cpu" / "dep-1.whl"}
    assert manifest.recorded_files(wh, entries)[wh / "cpu" / "dep-1.whl"] == "b"
    stray = manifest.unrecorded(wh, entries, wh / "cpu" / "evil-1.0-py3-none-any.whl")
    assert stray.startswith("cpu/evil-1.0-py3-none-any.whl: not recorded in manifest.json: no build of ours")
    legacy = manifest.unrecorded(wh, entries, wh / "cu130-sm90" / "fastapi-1.0-py3-none-any.whl")
    assert "rebuild that flavour to record them" in legacy
