"""A real CPU build of the pinned sdist, then what CI can prove about it: layout, slimming, the
manifest, the compiler cache, smoke (import, generate, server with streaming), and failure modes."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from llama_wheels.wheels import check_wheel

from ..wheelmaker import record_line
from .conftest import lw


def test_wheel_is_labelled_slim_and_recorded(cpu_build: Path, work: Path) -> None:
    assert re.fullmatch(r"llama_cpp_python-0\.3\.36\+cpu-py3-none-manylinux_2_\d+_x86_64\.whl", cpu_build.name)
    rep = check_wheel(cpu_build)
    assert rep.ok, rep.problems
    assert rep.libs == [f"llama_cpp/lib/{n}" for n in ("libggml-base.so", "libggml-cpu.so", "libggml.so",
                                                        "libllama.so", "libmtmd.so")]
    entry = json.loads((work / "wheelhouse" / "manifest.json").read_text())["wheels"]["cpu/" + cpu_build.name]
    assert entry["sha256"] == rep.sha256 and entry["size"] == rep.size
    assert entry["variants"] == ["default", "server"] and entry["archs"] is None
    assert entry["size"] <= 0.25 * entry["stock_size"], (entry["size"], entry["stock_size"])
    assert "lib/" in entry["slim"]["dropped"] and "include/" in entry["slim"]["dropped"]
    assert any(n.startswith("fastapi-") for n in entry["dependency_wheels"])  # the server variant's deps


def test_check_wheels_session_passes(cpu_build: Path, lw_env: dict[str, str]) -> None:
    res = lw("check-wheels", env=lw_env)
    assert res.returncode == 0, res.stdout
    assert "wheel check" in res.stdout


@pytest.mark.parametrize(("damage", "expected"), [
    ("record", "RECORD mismatch: llama_cpp/llama.py"),
    ("label", "label mismatch"),
    ("stray", "stray top-level 'lib/'"),
])
def test_check_wheels_catches_damage(cpu_build: Path, lw_env: dict[str, str], tmp_path: Path, damage: str,
                                     expected: str) -> None:
    bad = tmp_path / cpu_build.name
    with zipfile.ZipFile(cpu_build) as src:
        members = {i.filename: src.read(i.filename) for i in src.infolist()}
    record = next(n for n in members if n.endswith(".dist-info/RECORD"))
    if damage == "record":  # the file changes, RECORD does not: a stale or tampered wheel
        members["llama_cpp/llama.py"] += b"\n# tampered\n"
    else:  # a consistent RECORD, so the check must find the damage itself, not a hash mismatch
        if damage == "label":
            meta = next(n for n in members if n.endswith(".dist-info/METADATA"))
            members[meta] = members[meta].replace(b"Version: 0.3.36+cpu", b"Version: 0.3.36", 1)
        if damage == "stray":
            members["lib/libllama.so.0"] = b"copy"
        members[record] = ("\n".join(record_line(n, d) for n, d in members.items() if n != record)
                           + f"\n{record},,\n").encode()
    with zipfile.ZipFile(bad, "w") as dst:
        for name, data in members.items():
            dst.writestr(name, data)
    res = lw("check-wheels", str(bad), env=lw_env)
    assert res.returncode == 9
    assert expected in res.stdout and "Traceback" not in res.stdout


def test_rebuild_in_fresh_build_dir_hits_the_cache(cpu_build: Path, lw_env: dict[str, str], work: Path) -> None:
    env = {**lw_env, "LLAMA_WHEELS_BUILD_DIR": str(work / "build2"), "LLAMA_WHEELS_WHEELHOUSE": str(work / "wh2")}
    res = lw("build", "--cpu", "--variant", "default", env=env)
    assert res.returncode == 0, res.stdout[-3000:]
    entry = next(iter(json.loads((work / "wh2" / "manifest.json").read_text())["wheels"].values()))
    hits, misses = entry["cache"]["hits"], entry["cache"]["misses"]
    assert hits + misses > 100 and hits / (hits + misses) >= 0.9, entry["cache"]
    assert entry["sha256"] != "" and entry["variants"] == ["default"]


def test_smoke_cpu_all_non_gpu_checks(cpu_build: Path, lw_env: dict[str, str], work: Path) -> None:
    res = lw("smoke", env=lw_env)
    assert res.returncode == 0, res.stdout[-3000:]
    report = json.loads((work / "wheelhouse" / "reports" / "smoke-cpu.json").read_text())
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status["GPU offload support"] == "skip"
    for name in ("install from wheelhouse only", "import", "generate (CPU)", "server start", "server GET /v1/models",
                 "server POST /v1/completions", "server POST /v1/chat/completions", "server chat streaming",
                 "server GET /docs", "server stopped"):
        assert status[name] == "pass", (name, report)
    assert (work / "wheelhouse" / "reports" / "smoke-cpu.md").read_text().startswith("# smoke cpu: PASS")


def test_slim_and_stock_give_the_same_tokens(cpu_build: Path, lw_env: dict[str, str], work: Path) -> None:
    stock = next((work / "build" / "staging" / "cpu" / "raw").glob("*.whl"))
    assert stock.stat().st_size > 4 * cpu_build.stat().st_size
    from llama_wheels.model import cached_model
    from llama_wheels.smoke.probe import PROBE

    model = cached_model(_cache_dir())
    tokens = []
    for wheel in (stock, cpu_build):
        venv = work / f"venv-{wheel.stat().st_size}"
        subprocess.run([sys.executable, "-m", "virtualenv", "-q", str(venv)], check=True)
        subprocess.run([venv / "bin/python", "-m", "pip", "install", "-q", "--no-index", "--find-links",
                        str(cpu_build.parent), str(wheel)], check=True)
        out = subprocess.run([venv / "bin/python", str(PROBE), "generate", json.dumps(
            {"model": str(model), "prompt": "Hello", "n_tokens": 12, "n_gpu_layers": 0})], capture_output=True,
            text=True, check=True).stdout
        tokens.append(json.loads(out.splitlines()[-1][len("RESULT "):])["tokens"])
    assert tokens[0] == tokens[1] and len(tokens[0]) == 12


def _cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("llama-wheels", appauthor=False))


def test_require_gpu_fails_cleanly(cpu_build: Path, lw_env: dict[str, str]) -> None:
    res = lw("smoke", "--require-gpu", env=lw_env)
    assert res.returncode == 12
    assert "GPU offload support: no GPU found (--require-gpu)" in res.stdout
    assert "Traceback" not in res.stdout
    assert not _servers_running()


@pytest.mark.parametrize(("kind", "fragment"), [
    ("missing", "does not exist"), ("text", "is not a GGUF file"), ("truncated", "truncated")])
def test_bad_model(cpu_build: Path, lw_env: dict[str, str], tmp_path: Path, kind: str, fragment: str) -> None:
    path = tmp_path / "m.gguf"
    if kind == "text":
        path.write_text("not a model\n")
    elif kind == "truncated":
        from llama_wheels.model import cached_model

        good = cached_model(tmp_path / "c")
        path.write_bytes(good.read_bytes()[:100_000])
    res = lw("smoke", "--model", str(path), env=lw_env)
    assert res.returncode == 11, res.stdout[-2000:]
    assert fragment in res.stdout and "Traceback" not in res.stdout
    assert not _servers_running()


def test_port_in_use(cpu_build: Path, lw_env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = lw("smoke", "--port", str(port), env=lw_env)
    assert res.returncode == 2 and f"port {port} is already in use" in res.stdout
    assert not _servers_running()


def _servers_running() -> bool:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return any("llama_cpp.server" in line and "ps -eo" not in line for line in out.splitlines())


def test_bad_sha_leaves_no_wheel(lw_env: dict[str, str], work: Path) -> None:
    env = {**lw_env, "LLAMA_WHEELS_SDIST_SHA256": "0" * 64, "LLAMA_WHEELS_WHEELHOUSE": str(work / "wh-sha"),
           "LLAMA_WHEELS_BUILD_DIR": str(work / "b-sha")}
    res = lw("build", "--cpu", env=env)
    assert res.returncode == 5 and "sha256 mismatch" in res.stdout and "Traceback" not in res.stdout
    assert not list((work / "wh-sha").rglob("*.whl")) and not (work / "wh-sha" / "manifest.json").exists()


def test_offline_without_prefetch(lw_env: dict[str, str], work: Path) -> None:
    env = {**lw_env, "LLAMA_WHEELS_PREFETCH_DIR": str(work / "empty-prefetch"), "LLAMA_WHEELS_WHEELHOUSE":
           str(work / "wh-off")}
    res = lw("build", "--cpu", "--offline", env=env)
    assert res.returncode == 6 and "is not in" in res.stdout and "nox -s prefetch" in res.stdout
    assert not (work / "wh-off" / "manifest.json").exists()
