"""Build small wheels with a correct RECORD, for testing the wheel check."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(folder: Path, version: str = "0.3.36+cpu", *, meta_version: str | None = None,
               files: dict[str, bytes] | None = None, requires: tuple[str, ...] = (),
               tamper: str | None = None) -> Path:
    di = f"llama_cpp_python-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: {meta_version or version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires) + "\n"
    content = {"llama_cpp/__init__.py": b"__version__ = '0.3.36'\n", **(files or {}),
               f"{di}/METADATA": meta.encode(), f"{di}/WHEEL": b"Wheel-Version: 1.0\nTag: py3-none-linux_x86_64\n"}
    record = "\n".join(record_line(n, d) for n, d in content.items()) + f"\n{di}/RECORD,,\n"
    path = folder / f"llama_cpp_python-{version}-py3-none-linux_x86_64.whl"
    with zipfile.ZipFile(path, "w") as z:
        for n, d in content.items():
            z.writestr(n, d + (b"tampered" if n == tamper else b""))
        z.writestr(f"{di}/RECORD", record)
    return path
