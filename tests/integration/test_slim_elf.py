"""Slimming real ELF libraries: versioned copies become one file each, links rewritten, still loadable."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

from llama_wheels import wheels
from llama_wheels.elf import read_dynamic

from ..wheelmaker import make_wheel


def build_libs(d: Path) -> None:
    (d / "base.c").write_text("int base_value(void) { return 41; }\n")
    (d / "top.c").write_text("int base_value(void);\nint top_value(void) { return base_value() + 1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-soname,libbase.so.0", "-o", str(d / "libbase.so.0.1.2"),
                    str(d / "base.c")], check=True)
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-soname,libtop.so.0", "-Wl,-rpath,$ORIGIN", "-o",
                    str(d / "libtop.so.0.1.2"), str(d / "top.c"), str(d / "libbase.so.0.1.2")], check=True)


def test_slim_real_elf(tmp_path: Path) -> None:
    build_libs(tmp_path)
    files = {}
    for lib in ("base", "top"):
        data = (tmp_path / f"lib{lib}.so.0.1.2").read_bytes()
        for name in (f"lib{lib}.so", f"lib{lib}.so.0", f"lib{lib}.so.0.1.2"):  # what llama.cpp's install gives
            files[f"llama_cpp/lib/{name}"] = data
            files[f"lib/{name}"] = data
    stock = make_wheel(tmp_path, "0.3.36", files=files)
    root = wheels.unpack(stock, tmp_path / "u")
    wheels.relabel(root, "0.3.36+test")
    rep = wheels.slim(root)
    assert rep.dropped == ["lib/"]
    libdir = root / "llama_cpp" / "lib"
    assert sorted(p.name for p in libdir.iterdir()) == ["libbase.so", "libtop.so"]
    assert read_dynamic(libdir / "libtop.so").needed[0] == "libbase.so"
    assert read_dynamic(libdir / "libbase.so").soname == "libbase.so"
    assert wheels.elf_closure_problems(root) == []
    slim = wheels.pack(root, tmp_path / "out")
    assert "platform tag linux_x86_64 is not a manylinux tag" in " ".join(wheels.check_wheel(slim).problems)
    again = tmp_path / "again"
    again.mkdir()
    copy = again / slim.name
    shutil.copy2(slim, copy)
    slim, tag = wheels.manylinux_tag(slim, cuda_runtime=None, nccl=False)  # as the build does after the slim
    assert tag.tag.startswith("manylinux_"), tag
    time.sleep(2.1)  # zip times have 2 s resolution: a retag later must still give the same bytes
    retagged, _ = wheels.manylinux_tag(copy, cuda_runtime=None, nccl=False)
    assert retagged.name == slim.name and retagged.read_bytes() == slim.read_bytes()
    check = wheels.check_wheel(slim)
    assert check.ok, check.problems
    assert slim.stat().st_size < stock.stat().st_size / 3
    with zipfile.ZipFile(slim) as z:
        z.extractall(tmp_path / "site")
    lib = ctypes.CDLL(str(tmp_path / "site" / "llama_cpp" / "lib" / "libtop.so"))
    assert lib.top_value() == 42
