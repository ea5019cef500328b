"""A wheelhouse of small but valid wheels (tests/unit/_wheelmaker.py) with manifest entries shaped like the
real build's (src/llama_wheels/build.py), for the catalogue and selector tests. The GPU code lists are what
cuobjdump reports for those arch sets (FACTS.md, BENCHMARKS.md)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..wheelmaker import make_wheel

CUDA_ARGS = ["-DGGML_NATIVE=OFF", "-DGGML_CUDA=on"]
# flavour -> (local label, payload bytes (sets the size), manifest fields)
FLAVOURS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "cpu": ("cpu", 24_000, {"cuda": None, "archs": None, "embedded": None, "cuda_runtime": "pip"}),
    "cu130-sm90": ("cu130.sm90", 42_000, {
        "cuda": "13.0", "archs": "90-real", "embedded": ["sm_90"], "cuda_runtime": "pip"}),
    "cu130-sm86-89-120": ("cu130.sm86.89.120", 74_600, {
        "cuda": "13.0", "archs": "86-real;89-real;89-virtual;120a-real",
        "embedded": ["compute_89", "sm_120a", "sm_86", "sm_89"], "cuda_runtime": "pip"}),
    # built without sm_120 but with compute_89 PTX: a Blackwell card can only JIT it
    "cu130-sm86-89": ("cu130.sm86.89", 50_000, {
        "cuda": "13.0", "archs": "86-real;89-real;89-virtual",
        "embedded": ["compute_89", "sm_86", "sm_89"], "cuda_runtime": "pip"}),
    "cu130-sm86-90": ("cu130.sm86.90", 60_000, {
        "cuda": "13.0", "archs": "86-real;90-real;90-virtual",
        "embedded": ["compute_90", "sm_86", "sm_90"], "cuda_runtime": "pip"}),
    # CUDA 12 flavours (README "Drivers older than 580"): 12.4 has no fatbin compression (any 12.x driver);
    # 12.8 compresses by default, so its floor is the 12.4 driver (compat.COMPRESS_MODE_MIN_CUDA).
    "cu124-sm80": ("cu124.sm80", 30_000, {
        "cuda": "12.4", "archs": "80-real;80-virtual", "embedded": ["compute_80", "sm_80"], "cuda_runtime": "pip"}),
    "cu124-sm75": ("cu124.sm75", 28_000, {
        "cuda": "12.4", "archs": "75-real;75-virtual", "embedded": ["compute_75", "sm_75"], "cuda_runtime": "pip"}),
    "cu128-sm86-89-120": ("cu128.sm86.89.120", 70_000, {
        "cuda": "12.8", "archs": "86-real;89-real;89-virtual;120a-real",
        "embedded": ["compute_89", "sm_120a", "sm_86", "sm_89"], "cuda_runtime": "pip"}),
}


def make_house(root: Path, flavours: list[str], version: str = "0.3.36") -> Path:
    """wheelhouse/<flavour>/<wheel> for each flavour, added to wheelhouse/manifest.json."""
    house = root / "wheelhouse"
    path = house / "manifest.json"
    entries = json.loads(path.read_text())["wheels"] if path.exists() else {}
    for flavour in flavours:
        label, payload, fields = FLAVOURS[flavour]
        (house / flavour).mkdir(parents=True, exist_ok=True)
        wheel = make_wheel(house / flavour, f"{version}+{label}", files={"llama_cpp/lib/payload.bin": b"x" * payload})
        entries[f"{flavour}/{wheel.name}"] = {
            "flavour": flavour, "filename": wheel.name, "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            "size": wheel.stat().st_size, "version": f"{version}+{label}",
            "cmake_args": CUDA_ARGS if fields["cuda"] else ["-DGGML_NATIVE=OFF"], **fields}
    path.write_text(json.dumps({"wheels": entries}, indent=2))
    return house
