"""The PyPI toolkit's Windows fix-up run for real on the recorded win_amd64 layout, with a stand-in for
MSVC's lib.exe (no MSVC here) that records its arguments and writes the import library."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from llama_wheels import windows
from llama_wheels.detect import toolkit_missing

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "windows"
LIB_STANDIN = """#!/bin/sh
# stands in for MSVC's lib.exe: record the call, write the /out: file
echo "$@" >> "$(dirname "$0")/calls.txt"
for a in "$@"; do case "$a" in /out:*) echo "import library" > "${a#/out:}";; esac; done
"""


def test_fix_pypi_layout_makes_cublas_import_libs(tmp_path: Path) -> None:
    for line in (FIX / "cuda-13.0.2-win_amd64-files.txt").read_text().splitlines():
        if line and not line.startswith("#") and not line.endswith("/..."):
            member = tmp_path / line.split(" ", 1)[1]
            member.parent.mkdir(parents=True, exist_ok=True)
            member.touch()
    root = tmp_path / "nvidia" / "cu13"
    for dll in ("cublas64_13.dll", "cublasLt64_13.dll"):  # real PE files with an export table
        shutil.copy(FIX / "ggml-base.dll", root / "bin" / "x86_64" / dll)
    tools = tmp_path / "msvc"
    tools.mkdir()
    (tools / "lib").write_text(LIB_STANDIN)
    (tools / "lib").chmod(0o755 | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    made = windows.fix_pypi_layout(root, 13, env)
    assert sorted(p.name for p in made) == ["cublas.lib", "cublasLt.lib"]
    assert (root / "lib" / "x64" / "cublas.def").read_text().startswith("LIBRARY cublas64_13.dll\nEXPORTS\n")
    calls = (tools / "calls.txt").read_text().splitlines()
    assert calls[0].split()[-1] == "/name:cublas64_13.dll" and "/machine:x64" in calls[0]
    assert toolkit_missing(root, windows=True) == ()  # the doctor now sees a complete toolkit
    assert windows.fix_pypi_layout(root, 13, env) == []  # idempotent: nothing made twice
