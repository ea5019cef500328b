"""The CLI: bad input is one line, exit != 0, no traceback; handlers only parse and call the pipeline.

The build host is injected (recorded facts, see conftest.build_host_facts), so these tests neither
spawn g++/nvcc/cmake nor depend on which Python or compiler the machine running them has.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from llama_wheels import cli, pipeline
from llama_wheels.cli import main
from llama_wheels.detect import Facts

from .conftest import build_host_facts

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def host(monkeypatch: pytest.MonkeyPatch) -> Facts:
    facts = build_host_facts()
    monkeypatch.setattr(pipeline, "gather_facts", lambda options, env: facts)
    return facts


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
    (["publish"], 2, "nothing to publish to"),
    # issue 24: ports, empty values, missing published folders
    (["smoke", "--port", "70000"], 2, "--port: '70000' is not a port: give 1-65535"),
    (["smoke", "--port", "-1"], 2, "--port: '-1' is not a port: give 1-65535"),
    (["serve", "--model", "m.gguf", "--port", "70000"], 2, "--port: '70000' is not a port"),
    (["smoke", "--model", ""], 2, "--model: an empty value is not allowed"),
    (["smoke", "--flavour", ""], 2, "--flavour: an empty value is not allowed"),
    (["serve", "--model", ""], 2, "--model: an empty value is not allowed"),
    (["index", "--seed-from", "/nonexistent/published"], 2, "--seed-from /nonexistent/published does not exist"),
    (["publish", "--flavour", "", "--sync-to", "x"], 2, "--flavour: an empty value is not allowed"),
    (["publish", "--sync-to", ""], 2, "--sync-to: an empty value is not allowed"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_bad_input(capsys: pytest.CaptureFixture[str], argv: list[str], code: int, fragment: str) -> None:
    got, err = run(argv, capsys)
    assert got == code, err
    assert fragment in err
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1


def test_missing_build_python_is_a_preflight_failure(capsys, host: Facts) -> None:
    host.pythons.clear()
    got, err = run(["build", "--cpu", "--dry-run"], capsys)
    assert got == 4 and "Python 3.11 (the configured build Python) was not found" in err


def test_clean_temp_home_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    got, err = run(["clean-temp", "--root", str(tmp_path), "--dry-run"], capsys, HOME=str(tmp_path))
    assert got == 10 and "home directory" in err


def test_dry_run_prints_plan(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["build", "--archs", "90", "--cuda", "pypi:13.0", "--dry-run"], capsys)
    assert code == 0, err
    assert "step cu130-sm90: llama-cpp-python 0.3.36+cu130.sm90" in err
    assert "-DCMAKE_CUDA_ARCHITECTURES=90-real;90-virtual" in err and "dry run: nothing was built" in err


def test_handlers_only_parse_and_call() -> None:
    """Every command handler is at most 15 lines: the logic lives in pipeline and the stages."""
    tree = ast.parse(Path(cli.__file__).read_text(encoding="utf-8"))
    handlers = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.startswith("cmd_")]
    assert len(handlers) >= 10
    long = {f.name: (f.end_lineno or 0) - f.lineno + 1 for f in handlers}
    assert {k: n for k, n in long.items() if n > 15} == {}


@pytest.mark.parametrize(("argv", "at_once"), [
    (["build", "--help"], True),
    (["build", "--dry-run", "-h"], True),
    (["build", "--bogus"], True),
    (["build", "--cuda-runtime", "nope"], True),
    (["build", "--cache-backend", "ccache", "--cache-remote", "redis://x:1", "--cache-read-only", "--dry-run"], False),
    (["build", "--archs", "90", "--dry-run"], False),  # arch sets are judged by the doctor, in the venv
    (["publish"], True),  # nothing to publish to
    (["publish", "--sync-to", "/srv/index"], False),
    (["smoke"], True),  # no wheels in the test wheelhouse
    (["bench", "--flavour", "cu130-sm90"], True),
    (["cibuildwheel", "--platform", "mac"], True),
    (["cibuildwheel", "--print-build-identifiers"], False),
    (["index", "--variants"], False),
])
def test_answers_at_once(tmp_path: Path, argv: list[str], at_once: bool) -> None:
    """What the nox sessions answer with nox's own Python and no venv: help, argument errors, missing inputs."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert cli.answers_at_once(argv, {"PATH": "", "LLAMA_WHEELS_ROOT": str(tmp_path)}) is at_once


def test_answers_at_once_runs_nothing(tmp_path: Path, hermetic: list[str]) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    env = {"PATH": "", "LLAMA_WHEELS_ROOT": str(tmp_path)}
    assert cli.answers_at_once(["build", "--dry-run", "--cpu"], env) is False
    assert hermetic == []


def test_select_from_the_tool_venv_names_the_users_python(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`scripts/run invoke select` runs in .tools/: its printed command names `python` (the user's), and
    --install is refused with that command, since it would install into the tool's venv."""
    from llama_wheels.index import build_index

    from ._catalogue_house import make_house

    house = make_house(tmp_path / "proj", ["cpu", "cu130-sm90"])
    build_index(house)
    (tmp_path / "proj" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    argv = ["select", "--index", str(house / "index"), "--gpus", "9.0", "--driver-cuda", "13.0"]
    env = {"PATH": "", "LLAMA_WHEELS_ROOT": str(tmp_path / "proj")}
    assert main(argv, env=env) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"{__import__('sys').executable} -m pip install ")
    monkeypatch.setattr("sys.prefix", str(tmp_path / "proj" / ".tools"))
    assert main(argv, env=env) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("python -m pip install llama-cpp-python==0.3.36+cu130.sm90 --extra-index-url ")
    assert main([*argv, "--install"], env=env) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "not yours" in err[0] and err[0].endswith(line)


def test_a_module_missing_from_the_runners_python_is_one_line(capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from llama_wheels import model

    def needs_gguf(path: Path) -> int:
        import gguf_not_installed_here  # type: ignore[import-not-found]  # noqa: F401

        return 0

    monkeypatch.setattr(model, "validate", needs_gguf)
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    got, err = run(["serve", "--model", str(tmp_path / "m.gguf")], capsys)
    assert got == 3 and "Traceback" not in err, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "has no module 'gguf_not_installed_here'" in line and "nox -s" in line
