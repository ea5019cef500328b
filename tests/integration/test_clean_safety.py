"""The data-loss case: a build pointed at someone's folder, then clean-temp, through the real CLI; and
clean-temp while a build holds the build dir. Nothing we did not create is ever deleted."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .conftest import lw

BOGUS = {"LLAMA_WHEELS_LLAMA_CPP_PYTHON": "0.0.0", "LLAMA_WHEELS_SDIST_SHA256": "0" * 64}


def _canaries(root: Path) -> dict[str, str]:
    (root / "photos").mkdir(parents=True)
    (root / "photos" / "cat.jpg").write_text("meow")
    (root / "thesis.txt").write_text("years of work")
    return {"thesis.txt": "years of work", "photos/cat.jpg": "meow"}


def _intact(root: Path, canaries: dict[str, str]) -> None:
    for rel, text in canaries.items():
        assert (root / rel).read_text() == text, rel


def test_build_into_someones_folder_then_clean_temp_deletes_nothing(lw_env: dict[str, str], tmp_path: Path) -> None:
    theirs = tmp_path / "x"
    canaries = _canaries(theirs)
    env = {**lw_env, **BOGUS, "LLAMA_WHEELS_BUILD_DIR": str(theirs)}
    res = lw("build", "--cpu", env=env, timeout=600)
    assert res.returncode == 10, res.stdout[-3000:]
    assert "already holds files that llama-wheels did not create" in res.stdout
    assert "Traceback" not in res.stdout
    assert sorted(p.name for p in theirs.iterdir()) == ["photos", "thesis.txt"]  # not stamped
    res = lw("clean-temp", "--no-pip-cache", env=env, timeout=120)
    assert res.returncode == 10 and "did not create it" in res.stdout, res.stdout
    _intact(theirs, canaries)


def test_clean_temp_refuses_a_parent_of_home(lw_env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "home" / "me"
    canaries = _canaries(home)
    env = {**lw_env, "HOME": str(home), "LLAMA_WHEELS_BUILD_DIR": str(tmp_path / "home")}
    res = lw("clean-temp", "--no-pip-cache", env=env, timeout=120)
    assert res.returncode == 10 and "contains the home directory" in res.stdout, res.stdout
    _intact(home, canaries)


HOLDER = """
import sys, time
from pathlib import Path
from llama_wheels.clean import in_use, owned_subdir
root = Path(sys.argv[1])
(owned_subdir(root, "src") / "object.o").write_text("in use")
with in_use(root, "build", wait=False):
    print("held", flush=True)
    time.sleep(60)
"""


def test_clean_temp_during_a_build_is_refused(lw_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "build"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], env=lw_env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        res = lw("clean-temp", "--no-pip-cache", env={**lw_env, "LLAMA_WHEELS_BUILD_DIR": str(root)}, timeout=120)
        assert res.returncode == 10, res.stdout
        assert f"in use by PID {holder.pid} (build) since" in res.stdout, res.stdout
        assert (root / "src" / "object.o").read_text() == "in use"
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    time.sleep(0.1)  # the OS lock goes with the killed holder: the next clean works
    res = lw("clean-temp", "--no-pip-cache", env={**lw_env, "LLAMA_WHEELS_BUILD_DIR": str(root)}, timeout=120)
    assert res.returncode == 0, res.stdout
    assert not (root / "src").exists()
