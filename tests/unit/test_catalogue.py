"""flavours.json / flavours.html / the served selector, as `build_index` writes them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from llama_wheels import catalogue, selector
from llama_wheels.compat import compression_mode, min_driver
from llama_wheels.errors import ConfigError
from llama_wheels.index import build_index

from ._catalogue_house import make_house

ALL = ["cpu", "cu130-sm90", "cu130-sm86-89-120"]


def test_catalogue_describes_each_flavour(tmp_path: Path) -> None:
    house = make_house(tmp_path, ALL)
    build_index(house, base_url="https://wheels.example/llama/")
    root = house / "index"
    cat = json.loads((root / "flavours.json").read_text())
    assert cat["schema"] == 1 and cat["project"] == "llama-cpp-python" and list(cat["flavours"]) == sorted(ALL)
    sm90 = cat["flavours"]["cu130-sm90"]
    (wheel,) = sm90["wheels"]
    path = root / "files" / wheel["filename"]
    assert wheel == {
        "filename": "llama_cpp_python-0.3.36+cu130.sm90-py3-none-linux_x86_64.whl",
        "url": f"https://wheels.example/llama/files/{wheel['filename']}",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "size": path.stat().st_size,
        "version": "0.3.36+cu130.sm90", "python_tags": ["py3"], "abi_tags": ["none"],
        "platform_tags": ["linux_x86_64"], "manylinux_floor": None}
    assert {k: v for k, v in sm90.items() if k != "wheels"} == {
        "index": "https://wheels.example/llama/cu130-sm90/", "kind": "cuda", "cuda": "13.0", "runtime": "pip",
        "sass": ["sm_90"], "ptx": [], "measured": True, "compress_mode": "size",
        "min_driver": {"cuda": "13.0", "linux": "580.65.06", "windows": "580.88"}, "size": path.stat().st_size}
    uni = cat["flavours"]["cu130-sm86-89-120"]
    assert uni["sass"] == ["sm_120a", "sm_86", "sm_89"] and uni["ptx"] == ["compute_89"]
    cpu = cat["flavours"]["cpu"]
    assert cpu["kind"] == "cpu" and cpu["cuda"] is None and cpu["min_driver"] is None
    page = (root / "flavours.html").read_text()
    assert all(f"<td>{f}</td>" in page for f in ALL) and "<td>580.65.06 / 580.88</td>" in page
    script = (root / selector.SCRIPT_NAME).read_text()
    assert 'DEFAULT_INDEX_URL = "https://wheels.example/llama/"' in script


def test_unmeasured_archs_fall_back_to_the_request_and_say_so(tmp_path: Path) -> None:
    house = make_house(tmp_path, ["cu130-sm86-89-120"])
    data = json.loads((house / "manifest.json").read_text())
    for e in data["wheels"].values():
        e["embedded"] = None  # cuobjdump was not found at build time
    (house / "manifest.json").write_text(json.dumps(data))
    build_index(house)
    f = json.loads((house / "index" / "flavours.json").read_text())["flavours"]["cu130-sm86-89-120"]
    assert (f["sass"], f["ptx"], f["measured"]) == (["sm_120a", "sm_86", "sm_89"], ["compute_89"], False)


def test_catalogue_is_deterministic_and_only_lists_our_project(tmp_path: Path) -> None:
    house = make_house(tmp_path, ALL)
    dep = house / "cpu" / "diskcache-5.6.3-py3-none-any.whl"
    dep.write_bytes((house / "cpu").joinpath(next(p.name for p in (house / "cpu").glob("*.whl"))).read_bytes())
    data = json.loads((house / "manifest.json").read_text())  # recorded as the build records dependency wheels
    cpu = next(e for e in data["wheels"].values() if e["flavour"] == "cpu")
    cpu["dependencies"] = {dep.name: hashlib.sha256(dep.read_bytes()).hexdigest()}
    (house / "manifest.json").write_text(json.dumps(data))
    build_index(house)
    first = (house / "index" / "flavours.json").read_bytes()
    build_index(house)
    assert (house / "index" / "flavours.json").read_bytes() == first
    assert "diskcache" not in first.decode()


def test_extra_catalogue_entries_are_listed_and_marked(tmp_path: Path) -> None:
    extra = Path(__file__).resolve().parents[1] / "fixtures" / "catalogue" / "extra-cpu-universal.json"
    house = make_house(tmp_path, ["cu130-sm90"])
    build_index(house, extra_catalogue=extra)
    cat = json.loads((house / "index" / "flavours.json").read_text())
    assert sorted(cat["flavours"]) == sorted(ALL) and cat["flavours"]["cpu"]["catalogue_only"] is True
    assert "catalogue_only" not in cat["flavours"]["cu130-sm90"]
    machine = selector.override(selector.Machine(()), "9.0", "13.0")
    choice = selector.choose(cat, machine, base_url="http://127.0.0.1:1/", fits=lambda w: True)
    assert choice.flavour == "cu130-sm90" and "cu130-sm86-89-120 would JIT-compile" in choice.lines[1]
    house = make_house(tmp_path / "b", ["cpu"])
    build_index(house, extra_catalogue=extra)  # the built cpu flavour wins over the extra entry
    cpu = json.loads((house / "index" / "flavours.json").read_text())["flavours"]["cpu"]
    assert "catalogue_only" not in cpu and cpu["wheels"][0]["sha256"]
    with pytest.raises(ConfigError, match="cannot read the extra catalogue"):
        build_index(house, extra_catalogue=tmp_path / "missing.json")


@pytest.mark.parametrize(("tag", "floor"), [("manylinux_2_28_x86_64", "2.28"), ("manylinux2014_x86_64", "2.17"),
                                            ("linux_x86_64", None), ("win_amd64", None)])
def test_manylinux_floor(tag: str, floor: str | None) -> None:
    assert catalogue.manylinux_floor(tag) == floor


def test_driver_floor_is_the_cuda_major_raised_to_the_compression_floor() -> None:
    assert compression_mode((13, 0), []) == "size" and compression_mode((12, 6), []) is None
    assert compression_mode((13, 0), ["-DGGML_CUDA_COMPRESSION_MODE=none"]) == "none"
    row = min_driver((13, 0), "size")
    assert row is not None and (row.cuda, row.linux_min) == ((13, 0), "580.65.06")
    row = min_driver((12, 1), "size")  # a CUDA 12 wheel, but compressed: the 12.4 driver
    assert row is not None and (row.cuda, row.linux_min, row.windows_min) == ((12, 4), "550.54.14", "551.61")
    row = min_driver((12, 1), None)
    assert row is not None and row.cuda == (12, 0)
    assert min_driver((14, 0), None) is None


def test_a_cuda_12_4_build_is_not_compressed_whatever_our_flag_says(tmp_path: Path) -> None:
    """Our plan passes -DGGML_CUDA_COMPRESSION_MODE=size on every CUDA build; llama.cpp only uses it from 12.8 on,
    so a cu124 wheel runs on every CUDA 12 driver (525.60.13) and a cu128 one needs the 12.4 driver (550.54.14)."""
    args = ["-DGGML_CUDA=on", "-DGGML_CUDA_COMPRESSION_MODE=size"]
    assert compression_mode((12, 4), args) is None and compression_mode((12, 8), args) == "size"
    entry = catalogue.flavour_entry("cu124-sm80", [], {"cuda": "12.4", "archs": "80", "embedded": ["sm_80"],
                                                       "cmake_args": args, "cuda_runtime": "pip"}, None)
    assert entry["min_driver"] == {"cuda": "12.0", "linux": "525.60.13", "windows": "527.41"}
    entry = catalogue.flavour_entry("cu128-sm80", [], {"cuda": "12.8", "archs": "80", "embedded": ["sm_80"],
                                                       "cmake_args": args, "cuda_runtime": "pip"}, None)
    assert entry["min_driver"] == {"cuda": "12.4", "linux": "550.54.14", "windows": "551.61"}


def test_variant_properties_follow_the_measured_code() -> None:
    from llama_wheels.variants import properties

    entry = {"cuda": "13.0", "sass": ["sm_120a", "sm_86", "sm_89"], "ptx": ["compute_89"]}
    assert properties(entry) == [
        "nvidia :: cuda_version_lower_bound :: 13.0", "nvidia :: cuda_version_upper_bound :: 14",
        "nvidia :: sm_arch :: 86_real", "nvidia :: sm_arch :: 89_real", "nvidia :: sm_arch :: 120_real",
        "nvidia :: sm_arch :: 89_virtual"]
