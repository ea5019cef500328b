"""Bad input: one line, exit != 0, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_wheels.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], capsys: pytest.CaptureFixture[str], **env: str) -> tuple[int, str]:
    code = main(argv, env={"PATH": "/usr/bin:/bin", "LLAMA_WHEELS_ROOT": str(ROOT), **env})
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize(("argv", "code", "fragment"), [
    (["build", "--archs", "banana", "--dry-run"], 4, "unknown arch set 'banana'"),
    (["build", "--archs", "sm_86x", "--dry-run"], 4, "'sm_86x' is not a CUDA architecture"),
    (["build", "--archs", "86;;", "--dry-run"], 4, "has an empty entry"),
    (["build", "--archs", "120", "--cuda", "pypi:12.4", "--dry-run"], 2, "CUDA 12 wheels on PyPI have no nvcc"),
    (["build", "--archs", "61", "--cuda", "pypi:13.0", "--dry-run"], 4, "lowest is sm_75"),
    (["build", "--arch-set", "hoper", "--dry-run"], 4, "did you mean 'hopper'"),
    (["build", "--variant", "sever", "--dry-run"], 2, "did you mean 'server'"),
    (["build", "--jobs", "many"], 2, "'many' is not a whole number"),
    (["build", "--jobs", "0", "--dry-run"], 2, "--jobs: 0 is not >= 1"),
    (["build", "--jobs", "-3", "--dry-run"], 2, "--jobs: -3 is not >= 1"),
    (["build", "--archs", "", "--dry-run"], 2, "--arch-set/--archs: an empty value is not allowed"),
    (["build", "--arch-set", " ", "--dry-run"], 2, "--arch-set/--archs: an empty value is not allowed"),
    (["doctor", "--archs", ""], 2, "--arch-set/--archs: an empty value is not allowed"),
    (["clean-temp", "--root", "/", "--dry-run"], 10, "filesystem or drive root"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_bad_input(capsys: pytest.CaptureFixture[str], argv: list[str], code: int, fragment: str) -> None:
    got, err = run(argv, capsys)
    assert got == code, err
    assert fragment in err
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1


def test_clean_temp_home_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    got, err = run(["clean-temp", "--root", str(tmp_path), "--dry-run"], capsys, HOME=str(tmp_path))
    assert got == 10 and "home directory" in err


def test_dry_run_prints_plan_fast(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["build", "--archs", "90", "--cuda", "pypi:13.0", "--dry-run"],
                env={"PATH": "/usr/bin:/bin:/usr/local/bin", "LLAMA_WHEELS_ROOT": str(ROOT)})
    err = capsys.readouterr().err
    assert code == 0, err
    assert "step cu130-sm90: llama-cpp-python 0.3.36+cu130.sm90" in err
    assert "-DCMAKE_CUDA_ARCHITECTURES=90-real;90-virtual" in err and "dry run: nothing was built" in err
