"""Rebuild wheels from installed distributions (their RECORD lists every file), for an offline GPU
machine whose Python already holds NVIDIA's runtime wheels: the pip-mode builds and installs there need
the wheel files, and the cuBLAS/NCCL wheels (0.4-0.6 GB) cannot be carried. Stored, not deflated: fast.
Usage: python3 ci/repack_installed.py DEST NAME..."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import sys
import zipfile
from pathlib import Path


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack(name: str, dest: Path) -> Path:
    dist = md.distribution(name)
    files = [f for f in dist.files or [] if not str(f).endswith((".pyc", "RECORD", "INSTALLER", "REQUESTED"))
             and "__pycache__" not in str(f) and not str(f).startswith("..")]
    wheel_meta = next(f for f in files if str(f).endswith(".dist-info/WHEEL"))
    tag = next(ln.split(":", 1)[1].strip() for ln in dist.locate_file(wheel_meta).read_text().splitlines()
               if ln.startswith("Tag:"))
    dist_info = str(wheel_meta).split("/")[0]
    norm = dist.metadata["Name"].replace("-", "_")
    out = dest / f"{norm}-{dist.version}-{tag}.whl"
    record = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for f in files:
            data = Path(dist.locate_file(f)).read_bytes()
            z.writestr(str(f), data)
            record.append(f"{f},{record_hash(data)},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        z.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    print(f"{out.name}: {out.stat().st_size / 1e6:.0f} MB from {len(files)} installed files")
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1])
    for n in sys.argv[2:]:
        repack(n, target)
