"""wheel unpack/pack (run as programs): a repacked wheel is byte-identical."""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from pathlib import Path

from llama_wheels.wheels import pack, unpack

from ..wheelmaker import make_wheel

LIB = b"\x7fELF-not-really" + b"x" * 5000  # as in tests/unit/test_wheels.py


def test_repack_is_byte_identical_at_another_time_and_umask(tmp_path: Path) -> None:
    raw = make_wheel(tmp_path, files={"llama_cpp/lib/libllama.so": LIB, "llama_cpp/server/app.py": b"x = 1\n"})
    shas = []
    for i, mask in enumerate((0o022, 0o077)):
        old = os.umask(mask)
        try:
            root = unpack(raw, tmp_path / f"u{i}")
        finally:
            os.umask(old)
        for f in root.rglob("*"):  # different mtimes each time, as a rebuild gives
            os.utime(f, (time.time() + 1000 * i, time.time() + 1000 * i))
        shas.append(hashlib.sha256(pack(root, tmp_path / f"p{i}").read_bytes()).hexdigest())
    assert shas[0] == shas[1]
    with zipfile.ZipFile(next((tmp_path / "p0").glob("*.whl"))) as z:
        infos = z.infolist()
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    names = [i.filename for i in infos]
    assert names[-1].endswith(".dist-info/RECORD")
    assert names[:2] == ["llama_cpp/__init__.py", "llama_cpp/lib/libllama.so"]
