"""Detection that runs a program: found where the installer puts it, called with the arguments we mean."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from llama_wheels.detect import VSWHERE_ARGS, find_visual_studio

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tools"


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in vswhere is a POSIX shell script")
def test_vswhere_found_where_the_installer_puts_it(tmp_path: Path) -> None:
    """vswhere is the installer's own tool; here a script that records its arguments and prints the
    recorded JSON (tests/fixtures/tools/vswhere.json)."""
    inst_dir = tmp_path / "Microsoft Visual Studio" / "Installer"
    inst_dir.mkdir(parents=True)
    exe = inst_dir / "vswhere.exe"
    exe.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'args'}\ncat {FIXTURES / 'vswhere.json'}\n")
    exe.chmod(0o755)
    (vs,) = find_visual_studio({"ProgramFiles(x86)": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert (tmp_path / "args").read_text().split() == VSWHERE_ARGS
    assert vs.year == "2022" and vs.has_cl
    assert find_visual_studio({"ProgramFiles(x86)": str(tmp_path / "none")}) == []
