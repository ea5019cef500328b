"""Zero-choice install, end to end: a real index (the real CPU wheel + two CUDA flavours made of small valid
wheels with build-shaped manifest entries: no CUDA build fits this machine), served by a real HTTP server on
loopback; the served selector, run by a fresh venv's Python, picks and installs the right wheel per machine.
And the PEP 825 variant copies, made and read back by the real variantlib."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from llama_wheels import selector, variants
from llama_wheels.index import build_index
from llama_wheels.log import Logger

from ..unit._catalogue_house import make_house


@pytest.fixture
def served(tmp_path: Path, cpu_build: Path) -> Iterator[str]:
    """wheelhouse/{cpu (real, with its dependency wheels), cu130-sm90, cu130-sm86-89-120} -> index, over HTTP."""
    house = tmp_path / "wheelhouse"
    (house / "cpu").mkdir(parents=True)
    for whl in cpu_build.parent.glob("*.whl"):
        shutil.copy2(whl, house / "cpu" / whl.name)
    built = json.loads((cpu_build.parents[1] / "manifest.json").read_text())["wheels"]
    (house / "manifest.json").write_text(json.dumps({"wheels": {
        k: v for k, v in built.items() if v["filename"] == cpu_build.name}}))
    make_house(tmp_path, ["cu130-sm90", "cu130-sm86-89-120"])
    build_index(house)
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory",
                               str(house / "index")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        m = re.search(r"port (\d+)", server.stdout.readline())
        assert m, "http.server did not say its port"
        yield f"http://127.0.0.1:{m[1]}/"
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


def test_served_selector_installs_the_right_flavour_from_a_bare_venv(served: str, tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "bare")], check=True)  # stdlib venv: Python + pip
    py = tmp_path / "bare" / "bin" / "python"
    script = tmp_path / selector.SCRIPT_NAME
    with urllib.request.urlopen(served + selector.SCRIPT_NAME, timeout=30) as resp:
        script.write_bytes(resp.read())
    assert script.read_bytes() == Path(selector.__file__).read_bytes()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))},
           "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PATH": "/usr/bin:/bin"}
    for machine, flavour, version in [
        (["--gpus", "9.0", "--driver-cuda", "13.0"], "cu130-sm90", "0.3.36+cu130.sm90"),
        (["--gpus", "8.9", "--driver-cuda", "13.0"], "cu130-sm86-89-120", "0.3.36+cu130.sm86.89.120"),
        # driver too old for every GPU flavour: the CPU wheel, only when asked for (else exit 17, next)
        (["--gpus", "8.9", "--driver-cuda", "12.9", "--allow-cpu"], "cpu", "0.3.36+cpu"),
        (["--gpus", "none"], "cpu", "0.3.36+cpu"),
    ]:
        res = subprocess.run([py, str(script), "--index", served, *machine, "--index-only", "--install"], env=env,
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600, check=False)
        assert res.returncode == 0, res.stdout[-3000:]
        assert f"choice: {flavour} (llama-cpp-python {version}," in res.stdout, res.stdout[-3000:]
        assert f"--index-url {served}{flavour}/" in res.stdout
        got = subprocess.run([py, "-c", "import importlib.metadata as m; print(m.version('llama-cpp-python'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert got == version
    res = subprocess.run([py, str(script), "--index", served, "--gpus", "8.9", "--driver-cuda", "12.9"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 17 and "cu124-sm89 would serve" in res.stderr and "--allow-cpu" in res.stderr
    # the real CPU wheel, with its dependencies from the same flavour index, imports and runs
    out = subprocess.run([py, "-c", "import llama_cpp; print(llama_cpp.llama_supports_gpu_offload())"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_variant_copies_are_made_and_read_back_by_variantlib(tmp_path: Path) -> None:
    pytest.importorskip("variantlib", reason="the 'variants' dependency group (nox -s tests installs it)")
    house = make_house(tmp_path, ["cpu", "cu130-sm90", "cu130-sm86-89-120"])
    build_index(house, base_url="https://wheels.example/llama/")
    summary = variants.publish(house, base_url="https://wheels.example/llama/", env=dict(os.environ), log=Logger({}))
    files = house / "index" / "variants" / "files"
    assert summary == {"variants": ["llama_cpp_python-0.3.36-py3-none-linux_x86_64-cu130.sm86.89.120.whl",
                                    "llama_cpp_python-0.3.36-py3-none-linux_x86_64-cu130.sm90.whl"],
                       "indexes": ["llama_cpp_python-0.3.36-variants.json"]}
    listed = json.loads((files / "llama_cpp_python-0.3.36-variants.json").read_text())
    assert listed["providers"]["nvidia"]["plugin-api"] == "nvidia_variant_provider.plugin:NvidiaVariantPlugin"
    assert listed["variants"] == {
        "cu130.sm90": {"nvidia": {"cuda_version_lower_bound": ["13.0"], "cuda_version_upper_bound": ["14"],
                                  "sm_arch": ["90_real"]}},
        "cu130.sm86.89.120": {"nvidia": {"cuda_version_lower_bound": ["13.0"], "cuda_version_upper_bound": ["14"],
                                         "sm_arch": ["120_real", "86_real", "89_real", "89_virtual"]}}}
    with zipfile.ZipFile(files / summary["variants"][1]) as z:
        names = z.namelist()
        assert "llama_cpp_python-0.3.36.dist-info/variant.json" in names
        assert "Version: 0.3.36\n" in z.read("llama_cpp_python-0.3.36.dist-info/METADATA").decode()
    page = (house / "index" / "variants" / "llama-cpp-python" / "index.html").read_text()
    assert "llama_cpp_python-0.3.36-variants.json" in page and page.count("#sha256=") == 3
    plain = [p for p in (house / "index").rglob("*") if p.is_file() and "variants" not in p.relative_to(
        house / "index").parts]
    assert not any("variants.json" in p.read_text(errors="replace") or "-cu130.sm90.whl" in p.read_text(
        errors="replace") for p in plain if p.suffix in (".html", ".json"))
    before = {p.name: p.read_bytes() for p in files.iterdir()}
    variants.publish(house, base_url="https://wheels.example/llama/", env=dict(os.environ), log=Logger({}))
    assert {p.name: p.read_bytes() for p in files.iterdir()} == before  # published files never change
