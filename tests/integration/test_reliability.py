"""What the tool refuses and never does, tried as a hostile user would: real nox in a subprocess with
broken configurations, damaged wheels through check-wheels / index / smoke, and kills and concurrent runs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from llama_wheels import manifest
from tests.wheelmaker import make_wheel

from .conftest import ROOT, lw

NOX = [sys.executable, "-m", "nox"]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA_WHEELS_", "NOX_", "CI"))}
    return {**env, **extra}


@pytest.fixture(scope="module")
def mini_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This project's noxfile, pyproject.toml and package in a folder of their own, so a
    test can break pyproject.toml without touching the checkout."""
    d = tmp_path_factory.mktemp("proj")
    for name in ("noxfile.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, d / name)
    (d / "ci").mkdir()
    shutil.copy2(ROOT / "ci" / "requirements-tools.txt", d / "ci")
    shutil.copytree(ROOT / "src", d / "src", ignore=shutil.ignore_patterns("__pycache__"))  # flit refuses links
    return d


def nox(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOX, "-f", str(project / "noxfile.py"), *args], cwd=project, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600, check=False)


TABLE = "[tool.llama-wheels]\n"
PYPROJECT_BREAKS = {  # (text to replace, its replacement, the fragment of the one-line error)
    "arch-set-int": (TABLE, TABLE + "default-arch-set = 86\n",
                     "[tool.llama-wheels] default-arch-set must be a str, got int"),
    "unknown-key": (TABLE, TABLE + 'cuda = "auto"\ncuda-rutime = "pip"\n', "unknown key 'cuda-rutime'"),
    "toml-syntax": (TABLE, "[tool.llama-wheels\n", "is not valid TOML"),
}
ENV_BREAKS = {
    "env-nosuch": ({"LLAMA_WHEELS_NOSUCH": "1"}, "unknown environment variable LLAMA_WHEELS_NOSUCH"),
    "env-banana": ({"LLAMA_WHEELS_PYTHON": "banana"}, "python = 'banana' is not a major.minor version"),
    "env-2.7": ({"LLAMA_WHEELS_PYTHON": "2.7"}, "python = '2.7' is too old"),
}


@pytest.mark.parametrize("case", [*PYPROJECT_BREAKS, *ENV_BREAKS])
def test_config_errors_under_nox_are_one_line(mini_project: Path, tmp_path: Path, case: str) -> None:
    project = tmp_path / "p"
    shutil.copytree(mini_project, project, symlinks=True)
    env = _clean_env()
    if case in PYPROJECT_BREAKS:
        old, new, fragment = PYPROJECT_BREAKS[case]
        text = (project / "pyproject.toml").read_text()
        assert old in text
        (project / "pyproject.toml").write_text(text.replace(old, new, 1))
    else:
        extra, fragment = ENV_BREAKS[case]
        env.update(extra)
    listed = nox(project, "-l", env=env)
    assert listed.returncode == 0 and "build_cpu" in listed.stdout and "Traceback" not in listed.stdout, listed.stdout
    res = nox(project, "--envdir", str(tmp_path / "envs"), "-s", "check_wheels", env=env)
    assert res.returncode != 0, res.stdout
    assert "Traceback" not in res.stdout, res.stdout
    (line,) = [ln for ln in res.stdout.splitlines() if fragment in ln]
    assert line.startswith("error: "), line  # the CLI's own line; nox adds only "Command ... failed"


def test_missing_interpreter_fails_under_nox(mini_project: Path, tmp_path: Path) -> None:
    res = nox(mini_project, "--envdir", str(tmp_path / "envs"), "-s", "build_cpu",
              env=_clean_env(LLAMA_WHEELS_PYTHON="3.99"))
    assert res.returncode != 0, res.stdout
    assert "Python interpreter 3.99 not found" in res.stdout and "Traceback" not in res.stdout


def test_debug_reaches_the_package_through_nox(tmp_path: Path) -> None:
    env = _clean_env(LLAMA_WHEELS_WHEELHOUSE=str(tmp_path / "wh"))
    (tmp_path / "wh" / "cpu").mkdir(parents=True)
    make_wheel(tmp_path / "wh" / "cpu")
    args = ["--envdir", str(tmp_path / "envs"), "-s", "index", "--", "--flavour", "nosuch"]
    plain = nox(ROOT, *args, env=env)
    assert plain.returncode != 0 and "no wheels for flavour(s) nosuch" in plain.stdout
    assert "Traceback" not in plain.stdout, plain.stdout
    debug = nox(ROOT, "-R", *args, "--debug", env=env)  # -R: reuse the venv just made
    assert debug.returncode != 0 and "Traceback" in debug.stdout and "build_index" in debug.stdout, debug.stdout


def test_scripts_run_reports_a_toml_error_itself(mini_project: Path, tmp_path: Path) -> None:
    project = tmp_path / "p"
    shutil.copytree(mini_project, project, symlinks=True)
    (project / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "run", project / "scripts" / "run")
    text = (project / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(text.replace("[tool.llama-wheels]", "[tool.llama-wheels", 1))
    res = subprocess.run(["sh", str(project / "scripts" / "run"), "nox", "-l"], env=_clean_env(), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False)
    assert res.returncode == 2, res.stdout
    assert res.stdout.strip().splitlines() == [
        f"error: {project / 'pyproject.toml'} is not valid TOML: Expected ']' at the end of a table declaration "
        f"(at line {text[:text.index('[tool.llama-wheels]')].count(chr(10)) + 1}, column 19); "
        "fix the syntax at that line"]
    assert not (project / ".tools").exists()  # nothing was set up from a broken file


# ---------------------------------------------------------------- damaged wheels ----------------

def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    return path


def _flip_member(path: Path, member: str) -> Path:
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


LIB = {"llama_cpp/lib/libllama.so": b"\x7fELF" + bytes(range(256)) * 40}


def _house(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    wh = tmp_path / "wheelhouse"
    for flavour in ("good", "trunc", "flip"):
        (wh / flavour).mkdir(parents=True)
        make_wheel(wh / flavour, f"0.3.36+{flavour}", files=LIB)
    _truncate(next((wh / "trunc").glob("*.whl")))
    _flip_member(next((wh / "flip").glob("*.whl")), "llama_cpp/lib/libllama.so")
    env = _clean_env(LLAMA_WHEELS_WHEELHOUSE=str(wh), LLAMA_WHEELS_ROOT=str(ROOT))
    return wh, env


def test_check_wheels_names_each_damaged_wheel(tmp_path: Path) -> None:
    wh, env = _house(tmp_path)
    res = lw("check-wheels", *map(str, sorted(wh.glob("*/*.whl"))), env=env, timeout=120)
    assert res.returncode == 9, res.stdout
    assert "Traceback" not in res.stdout and "BadZipFile" not in res.stdout
    errors = [ln for ln in res.stdout.splitlines() if ln.startswith("error:")]
    assert errors[-1] == "error: 2 of 3 wheel(s) failed the check; see the problems listed above", errors
    errors = errors[:-1]
    assert len(errors) == 2, errors
    assert any(str(wh / "trunc") in e and ": truncated: " in e for e in errors), errors
    assert any(str(wh / "flip") in e and "RECORD mismatch: llama_cpp/lib/libllama.so is damaged" in e
               for e in errors), errors


def test_index_publishes_nothing_from_a_damaged_wheelhouse_then_takes_the_good_wheel(tmp_path: Path) -> None:
    wh, env = _house(tmp_path)
    res = lw("index", env=env, timeout=120)
    assert res.returncode == 9 and "Traceback" not in res.stdout, res.stdout
    assert "nothing was published" in res.stdout and "truncated" in res.stdout
    assert not (wh / "index" / "files").exists() or not any((wh / "index" / "files").iterdir())
    # The user rebuilds: good wheels take the damaged ones' places, and the index accepts them.
    for flavour in ("trunc", "flip"):
        next((wh / flavour).glob("*.whl")).unlink()
        make_wheel(wh / flavour, f"0.3.36+{flavour}", files=LIB)
    res = lw("index", env=env, timeout=120)
    assert res.returncode == 0, res.stdout
    assert sorted(p.name for p in (wh / "index" / "files").glob("*.whl")) == sorted(
        p.name for p in wh.glob("*/*.whl"))


def test_index_refuses_a_wheel_that_differs_from_its_manifest_entry(tmp_path: Path) -> None:
    wh = tmp_path / "wheelhouse"
    (wh / "cpu").mkdir(parents=True)
    w = make_wheel(wh / "cpu", files=LIB)
    manifest.publish(wh, w, w, {"sha256": "0" * 64, "filename": w.name}, say=lambda _: None)
    res = lw("index", env=_clean_env(LLAMA_WHEELS_WHEELHOUSE=str(wh), LLAMA_WHEELS_ROOT=str(ROOT)), timeout=120)
    sha = hashlib.sha256(w.read_bytes()).hexdigest()
    assert res.returncode == 9 and f"sha256 {sha} is not the {'0' * 64} recorded at build time" in res.stdout


def _gguf(path: Path) -> Path:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("t", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("damage", ["record", "manifest-sha"])
def test_smoke_verifies_before_installing(tmp_path: Path, damage: str) -> None:
    wh = tmp_path / "wheelhouse"
    (wh / "cpu").mkdir(parents=True)
    w = make_wheel(wh / "cpu", files=LIB, tamper="llama_cpp/__init__.py" if damage == "record" else None)
    sha = hashlib.sha256(w.read_bytes()).hexdigest()
    entry = {"sha256": sha if damage == "record" else "f" * 64, "filename": w.name, "version": "0.3.36+cpu"}
    (wh / "manifest.json").write_text(json.dumps({"wheels": {f"cpu/{w.name}": entry}}))
    env = _clean_env(LLAMA_WHEELS_WHEELHOUSE=str(wh), LLAMA_WHEELS_ROOT=str(ROOT),
                     LLAMA_WHEELS_CACHE_DIR=str(tmp_path / "cache"), LLAMA_WHEELS_BUILD_DIR=str(tmp_path / "build"))
    res = lw("smoke", "--flavour", "cpu", "--model", str(_gguf(tmp_path / "m.gguf")), env=env, timeout=300)
    assert res.returncode == 12, res.stdout
    expected = "RECORD mismatch: llama_cpp/__init__.py" if damage == "record" else f"sha256 {sha} is not the {'f' * 64}"
    assert expected in res.stdout and "pip install" not in res.stdout and "Traceback" not in res.stdout, res.stdout


# ---------------------------------------------------------------- two nox runs in one checkout --

def test_two_nox_runs_in_one_checkout_get_separate_venvs(mini_project: Path, tmp_path: Path) -> None:
    """A first nox run holds .nox/.lock for its lifetime (held here by the test, as that run would, so the
    overlap is certain); a second run in the same checkout gets venvs of its own, removed when it exits.
    Once the lock is free, runs use .nox/<session> again."""
    from filelock import FileLock

    project = tmp_path / "p"
    shutil.copytree(mini_project, project, symlinks=True)
    (project / ".nox").mkdir(exist_ok=True)
    # --help makes no venv now; a forced backend makes one (of the build Python) and still installs nothing
    args = ["-s", "publish", "--force-venv-backend", "virtualenv", "--", "--help"]
    with FileLock(str(project / ".nox" / ".lock")):
        second = nox(project, *args, env=_clean_env())
        assert second.returncode == 0, second.stdout
        assert f"in {project / '.nox' / 'pid-'}" in second.stdout, second.stdout  # a venv of its own ...
        assert [p.name for p in (project / ".nox").iterdir() if p.name.startswith("pid-")] == []  # ... removed
        assert not (project / ".nox" / "publish").exists()
    alone = nox(project, *args, env=_clean_env())
    assert alone.returncode == 0, alone.stdout
    assert "in .nox/publish" in alone.stdout, alone.stdout


# ---------------------------------------------------------------- real builds: kill -9, two at once

def _start_build(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "llama_wheels", "build", "--cpu", "--variant", "default"],
                                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        out.close()


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import time

    t0 = time.monotonic()
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() - t0 < timeout, f"'{text}' did not appear in {timeout} s"
        time.sleep(0.5)


@pytest.fixture
def build_env(lw_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(tmp_path / "wheelhouse"),
            "LLAMA_WHEELS_BUILD_DIR": str(tmp_path / "build-a")}


def _published(wh: Path) -> tuple[list[Path], dict[str, dict[str, object]]]:
    wheels = sorted(wh.glob("*/llama_cpp_python-*.whl"))
    return wheels, (json.loads((wh / "manifest.json").read_text())["wheels"] if (wh / "manifest.json").exists() else {})


@pytest.mark.parametrize("point", ["compile cpu", "post-process cpu"])
def test_kill_9_during_a_build_publishes_nothing(build_env: dict[str, str], tmp_path: Path, point: str) -> None:
    import signal
    import time

    proc = _start_build(build_env, tmp_path / "killed.log")
    try:
        _wait_for(tmp_path / "killed.log", point, proc, timeout=3000)
        time.sleep(3 if point.startswith("compile") else 0.2)  # inside the compiler / the repack
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    wh = tmp_path / "wheelhouse"
    wheels, entries = _published(wh)
    assert wheels == [] and entries == {} and not (wh / manifest.JOURNAL).exists()
    assert not list(wh.glob("**/*.partial")) and not list(wh.glob("**/*.tmp"))


def test_two_builds_at_once_in_one_wheelhouse_after_a_kill(build_env: dict[str, str], tmp_path: Path) -> None:
    """A build killed mid-compile; then two builds of the same flavour at once into one wheelhouse (one
    reusing the killed build dir, one in a fresh dir): the second waits for the first, both succeed and the
    manifest matches the wheel. Then a rebuild from the same inputs in the same build dir gives the same
    sha256, and the index accepts it."""
    import signal
    import time

    wh = tmp_path / "wheelhouse"
    proc = _start_build(build_env, tmp_path / "killed.log")
    try:
        _wait_for(tmp_path / "killed.log", "compile cpu", proc, timeout=3000)
        time.sleep(3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    a = _start_build(build_env, tmp_path / "a.log")
    _wait_for(tmp_path / "a.log", "compile cpu", a, timeout=3000)
    env_b = {**build_env, "LLAMA_WHEELS_BUILD_DIR": str(tmp_path / "build-b")}
    b = _start_build(env_b, tmp_path / "b.log")
    assert a.wait(timeout=3600) == 0, (tmp_path / "a.log").read_text()[-4000:]
    assert b.wait(timeout=3600) == 0, (tmp_path / "b.log").read_text()[-4000:]
    b_log = (tmp_path / "b.log").read_text()
    assert f"flavour 'cpu' of {wh} (another build) is in use by PID {a.pid} since " in b_log
    (wheel,), entries = _published(wh)
    sha_b = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert entries[f"cpu/{wheel.name}"]["sha256"] == sha_b  # the manifest describes the wheel that is there
    print("A vs B (other build dir):", "differ" if "replaced llama_cpp_python" in b_log else "identical")
    assert lw("index", env=build_env).returncode == 0
    c = _start_build(env_b, tmp_path / "c.log")  # the same inputs, the same build dir, later
    assert c.wait(timeout=3600) == 0, (tmp_path / "c.log").read_text()[-4000:]
    assert "replaced llama_cpp_python" not in (tmp_path / "c.log").read_text()
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == sha_b
    res = lw("index", env=build_env)
    assert res.returncode == 0, res.stdout  # a reproducible rebuild is not "already published" with other bytes
    assert lw("check-wheels", env=build_env).returncode == 0


# ---------------------------------------------------------------- doctor and rebuilds -----------

@pytest.mark.parametrize(("value", "code", "fragment"), [
    ("3.12", 4, "[FAIL] python: Python 3.12 (the configured build Python) was not found"),  # a pyenv shim
    ("3.99", 4, "[FAIL] python: Python 3.99 (the configured build Python) was not found"),
    ("2.7", 2, "error: python = '2.7' is too old"),
    ("banana", 2, "error: python = 'banana' is not a major.minor version"),
])
def test_doctor_runs_the_python_it_names(tmp_path: Path, value: str, code: int, fragment: str) -> None:
    shim = tmp_path / "python3.12"  # what pyenv puts on PATH for a version that is installed but not active
    shim.write_text("#!/bin/sh\necho \"pyenv: python3.12: command not found\" >&2\nexit 127\n")
    shim.chmod(0o755)
    env = _clean_env(LLAMA_WHEELS_PYTHON=value, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    res = subprocess.run([sys.executable, "-m", "invoke", "doctor"], cwd=ROOT, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False)
    assert res.returncode == code, res.stdout
    assert fragment in res.stdout and "Traceback" not in res.stdout, res.stdout


def test_a_rebuild_from_the_same_raw_wheel_is_accepted_by_the_index(tmp_path: Path) -> None:
    """The repack (unpack, relabel, slim, pack) of the same raw wheel at two different times gives the
    same bytes, so `nox -s index` keeps the published file instead of refusing the rebuild."""
    import time

    from llama_wheels import wheels

    raw = make_wheel(tmp_path, "0.3.36", files=LIB)
    wh = tmp_path / "wheelhouse"
    shas = []
    for attempt in range(2):
        root = wheels.unpack(raw, tmp_path / f"unpacked{attempt}")
        wheels.relabel(root, "0.3.36+cpu")
        wheels.slim(root)
        final = wheels.pack(root, tmp_path / f"final{attempt}")
        shas.append(hashlib.sha256(final.read_bytes()).hexdigest())
        (wh / "cpu").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(final, wh / "cpu" / final.name)
        res = lw("index", env=_clean_env(LLAMA_WHEELS_WHEELHOUSE=str(wh), LLAMA_WHEELS_ROOT=str(ROOT)), timeout=120)
        assert res.returncode == 0, res.stdout
        time.sleep(2.1)  # zip timestamps have 2 s resolution: the second pack is at another time
    assert shas[0] == shas[1]
