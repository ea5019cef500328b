"""The invoke tasks, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INVOKE = [sys.executable, "-m", "invoke"]


def test_invoke_list_shows_tasks_with_help() -> None:
    out = subprocess.run([*INVOKE, "--list"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "doctor" in out and "clean-temp" in out and "check-wheels" in out
    helptext = subprocess.run([*INVOKE, "--help", "clean-temp"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout
    assert "--dry-run" in helptext and "list what would be removed" in helptext


def test_doctor_json_fast_and_valid() -> None:
    t0 = time.monotonic()
    res = subprocess.run([*INVOKE, "doctor", "--json"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert time.monotonic() - t0 < 10
    data = json.loads(res.stdout)
    assert res.returncode == (0 if data["ok"] else 4)
    assert data["facts"]["compiler"]["kind"] in ("gcc", "clang")
    for tk in data["facts"]["toolkits"]:  # each nvcc found is judged complete or not, with what it lacks
        assert tk["complete"] is (not tk["missing"])
    assert data["toolkit"]["source"] in ("system", "pypi")


def test_doctor_bad_arch_set_one_line() -> None:
    res = subprocess.run([*INVOKE, "doctor", "--arch-set", "banana"], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    assert res.returncode == 4 and "FAIL] arch set: unknown arch set 'banana'" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


def test_clean_temp_dry_run_refuses_home(tmp_path: Path) -> None:
    res = subprocess.run([*INVOKE, "clean-temp", "--dry-run", "--root", str(Path.home())], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    assert res.returncode == 10 and "home directory" in res.stderr and "Traceback" not in res.stderr
