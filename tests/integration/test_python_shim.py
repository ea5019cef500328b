"""Finding a build Python runs each candidate (a pyenv shim of an inactive version exits 127)."""

from __future__ import annotations

from pathlib import Path


def test_python_shim_that_does_not_run_is_not_a_python(tmp_path: Path) -> None:
    """A pyenv shim of an inactive version is on PATH but exits 127 (pyenv's message, verbatim); a name
    that runs another version is not that version either. The doctor runs what it names."""
    import sys

    from llama_wheels.detect import find_pythons, python_runs

    shim = tmp_path / "python3.12"
    shim.write_text("#!/bin/sh\necho \"pyenv: python3.12: command not found\n\nThe \\`python3.12' command exists in "
                    "these Python versions:\n  3.12.1\n\" >&2\nexit 127\n")
    shim.chmod(0o755)
    (tmp_path / "python3.13").symlink_to(sys.executable)  # runs, but as this interpreter's version
    env = {"PATH": str(tmp_path)}
    assert find_pythons(["3.12", "3.13"], env, windows=False) == {}
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert python_runs(str(wrapper), mine, env) == sys.executable  # runs and is that version: found
    assert python_runs(str(shim), "3.12", env) is None
