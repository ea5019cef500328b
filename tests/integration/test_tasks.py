"""The invoke tasks, run as a user runs them."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INVOKE = [sys.executable, "-m", "invoke"]


def test_invoke_list_shows_tasks_with_help() -> None:
    out = subprocess.run([*INVOKE, "--list"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "doctor" in out and "clean-temp" in out and "check-wheels" in out
    helptext = subprocess.run([*INVOKE, "--help", "clean-temp"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout
    assert "--dry-run" in helptext and "list what would be removed" in helptext


def test_doctor_json_reports_this_machine() -> None:
    """The JSON agrees with what this test finds by itself: the running Python, the tools on PATH,
    the exit code that matches the verdicts, and a toolkit choice that names its source."""
    res = subprocess.run([*INVOKE, "doctor", "--json"], cwd=ROOT, capture_output=True, text=True, check=False)
    data = json.loads(res.stdout)
    assert res.returncode == (0 if data["ok"] else 4)
    assert data["ok"] is not any(v["level"] == "fail" for v in data["verdicts"])
    assert data["facts"]["python"] == platform.python_version()
    for tool in ("cmake", "ninja", "git"):
        assert bool(data["facts"]["tools"][tool]) is bool(shutil.which(tool)), tool
    compiler = data["facts"]["compiler"]
    assert compiler["path"] == next(filter(None, map(shutil.which, ("g++", "c++", "clang++"))), None)
    assert data["toolkit"]["source"] in ("system", "pypi")
    assert data["toolkit"]["why"] and data["toolkit"]["version"]


def test_doctor_bad_arch_set_one_line() -> None:
    res = subprocess.run([*INVOKE, "doctor", "--arch-set", "banana"], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    assert res.returncode == 4 and "FAIL] arch set: unknown arch set 'banana'" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


def test_clean_temp_dry_run_refuses_home(tmp_path: Path) -> None:
    res = subprocess.run([*INVOKE, "clean-temp", "--dry-run", "--root", str(Path.home())], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    assert res.returncode == 10 and "home directory" in res.stderr and "Traceback" not in res.stderr
