from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import pytest

from llama_wheels.wheels import DamagedWheel, check_wheel, slim, unversioned, verify

from ..wheelmaker import make_wheel

LIB = b"\x7fELF-not-really" + b"x" * 5000


def test_good_wheel_passes(tmp_path: Path) -> None:
    rep = check_wheel(make_wheel(tmp_path, files={"llama_cpp/lib/libllama.so": LIB}))
    assert rep.ok, rep.problems
    assert rep.libs == ["llama_cpp/lib/libllama.so"]


def test_tampered_record(tmp_path: Path) -> None:
    rep = check_wheel(make_wheel(tmp_path, tamper="llama_cpp/__init__.py"))
    assert rep.problems == ["RECORD mismatch: llama_cpp/__init__.py (tampered or stale RECORD)"]


def test_label_mismatch(tmp_path: Path) -> None:
    rep = check_wheel(make_wheel(tmp_path, "0.3.36+cu130.sm90", meta_version="0.3.36"))
    assert rep.problems == ["label mismatch: filename says 0.3.36+cu130.sm90, METADATA says 0.3.36"]


def test_stray_top_level_lib_and_duplicates(tmp_path: Path) -> None:
    rep = check_wheel(make_wheel(tmp_path, files={"llama_cpp/lib/libllama.so": LIB, "lib/libllama.so.0": LIB}))
    assert "stray top-level 'lib/' (would install into site-packages/lib)" in rep.problems
    assert "duplicate payload: lib/libllama.so.0, llama_cpp/lib/libllama.so" in rep.problems


def test_runtime_policy_consistency(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    plain = make_wheel(tmp_path / "a")
    assert check_wheel(plain, cuda_runtime="pip").problems == [
        "cuda-runtime pip, but METADATA has no nvidia-cuda-runtime/nvidia-cublas requirement"]
    (tmp_path / "b").mkdir()
    with_nv = make_wheel(tmp_path / "b", requires=("nvidia-cuda-runtime~=13.0", "nvidia-cublas~=13.0"))
    assert check_wheel(with_nv, cuda_runtime="pip").ok
    assert check_wheel(with_nv, cuda_runtime="system").problems == [
        "cuda-runtime system, but METADATA requires NVIDIA runtime wheels"]
    (tmp_path / "c").mkdir()
    driver = make_wheel(tmp_path / "c", files={"llama_cpp/lib/libcuda.so.1": b"d"})
    assert any("driver library" in p for p in check_wheel(driver).problems)


def test_unversioned() -> None:
    assert unversioned("libggml-base.so.0.25.3") == "libggml-base.so"
    assert unversioned("libllama.so.0") == "libllama.so"
    assert unversioned("ggml.dll") == "ggml.dll"


def test_slim_drops_top_level_install_folders_of_a_windows_layout(tmp_path: Path) -> None:
    """A Windows wheel from llama.cpp's install rules: DLLs in bin/ and llama_cpp/lib/, import libs,
    headers and CMake files at the top. Only llama_cpp/ and the dist-info stay. (The DLLs are not
    ELF, so this covers only the dropping of top-level folders, not deduplication or the runtime.)"""
    root = tmp_path / "llama_cpp_python-0.3.36"
    files = ["llama_cpp/lib/ggml.dll", "llama_cpp/lib/llama.dll", "llama_cpp/lib/ggml-cuda.dll", "bin/ggml.dll",
             "bin/llama.dll", "bin/ggml-cuda.dll", "lib/ggml.lib", "lib/cmake/ggml/ggml-config.cmake",
             "include/llama.h", "llama_cpp/__init__.py", "llama_cpp_python-0.3.36.dist-info/METADATA"]
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_bytes(b"MZ" + f.encode())
    rep = slim(root)
    assert sorted(rep.dropped) == ["bin/", "include/", "lib/"]
    left = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert left == ["llama_cpp/__init__.py", "llama_cpp/lib/ggml-cuda.dll", "llama_cpp/lib/ggml.dll",
                    "llama_cpp/lib/llama.dll", "llama_cpp_python-0.3.36.dist-info/METADATA"]


# ---------------------------------------------------------------- damaged wheels ----------------

def _flip(path: Path, offset: int) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def test_truncated_wheel_is_named_not_raised(tmp_path: Path) -> None:
    w = make_wheel(tmp_path, files={"llama_cpp/lib/libllama.so": LIB})
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    rep = check_wheel(w)
    assert len(rep.problems) == 1 and rep.problems[0].startswith("truncated: ")
    with pytest.raises(DamagedWheel, match=rf"^{re.escape(w.name)}: truncated"):
        verify(w)


def test_not_a_zip(tmp_path: Path) -> None:
    w = tmp_path / "llama_cpp_python-0.3.36+cpu-py3-none-linux_x86_64.whl"
    w.write_bytes(b"<html>404 Not Found</html>")
    assert check_wheel(w).problems == ["not a wheel: not a zip archive"]


def test_flipped_byte_names_the_member(tmp_path: Path) -> None:
    w = make_wheel(tmp_path, files={"llama_cpp/lib/libllama.so": LIB})
    with zipfile.ZipFile(w) as z:
        info = z.getinfo("llama_cpp/lib/libllama.so")
    _flip(w, info.header_offset + 30 + len(info.filename) + 10)  # inside that member's data
    (problem,) = check_wheel(w).problems
    assert problem.startswith("RECORD mismatch: llama_cpp/lib/libllama.so is damaged"), problem


def test_member_rewritten_with_a_valid_zip_is_caught_by_record(tmp_path: Path) -> None:
    w = make_wheel(tmp_path, tamper="llama_cpp/__init__.py")  # zip CRCs fine, RECORD hash wrong
    with pytest.raises(DamagedWheel, match=r"RECORD mismatch: llama_cpp/__init__\.py"):
        verify(w)


def test_verify_against_expected_sha256_shows_both_full_hashes(tmp_path: Path) -> None:
    w = make_wheel(tmp_path)
    good = hashlib.sha256(w.read_bytes()).hexdigest()
    assert verify(w, good) == good
    with pytest.raises(DamagedWheel) as exc:
        verify(w, "0" * 64)
    assert good in exc.value.message and "0" * 64 in exc.value.message


# ---------------------------------------------------------------- reproducible repack -----------




def test_cuda12_runtime_wheels_have_their_cu12_names() -> None:
    """A cu12x flavour (README: Drivers older than 580) must require wheels that exist: NVIDIA's CUDA 12 runtime
    wheels are nvidia-cuda-runtime-cu12 / nvidia-cublas-cu12 (the unsuffixed names start at 13.0, `pip index
    versions`, 2026-12-04), installed where PIP_RUNPATH looks (nvidia/cuda_runtime/lib, nvidia/cublas/lib)."""
    from llama_wheels.wheels import PIP_RUNPATH, runtime_requirements

    assert runtime_requirements(13) == ["nvidia-cuda-runtime~=13.0", "nvidia-cublas~=13.0"]
    assert runtime_requirements(12) == ["nvidia-cuda-runtime-cu12~=12.0", "nvidia-cublas-cu12~=12.0"]
    assert "$ORIGIN/../../nvidia/cuda_runtime/lib" in PIP_RUNPATH and "$ORIGIN/../../nvidia/cublas/lib" in PIP_RUNPATH
