from __future__ import annotations

import pytest

from llama_wheels.archs import parse_arch_set
from llama_wheels.fatbin import Embedded, compare, parse_cuobjdump


def test_recorded_sm90_wheel(fixture_text) -> None:
    """cuobjdump 13.5 (PyPI) on libggml-cuda.so of our cu130-sm90 wheel (archs 90 = SASS + PTX)."""
    e = parse_cuobjdump(fixture_text("cuobjdump-list-elf-sm90.txt"), fixture_text("cuobjdump-list-ptx-sm90.txt"))
    assert e == Embedded(frozenset({"sm_90"}), frozenset({"compute_90"}))
    assert compare(e, parse_arch_set("90")) == []
    assert compare(e, parse_arch_set("90", ptx="none")) == ["unrequested PTX compute_90"]
    assert compare(e, parse_arch_set("86;90")) == ["missing cubins sm_86"]


@pytest.mark.parametrize(("elf", "ptx", "spec", "expected"), [
    ("ELF file    1: x.1.sm_120a.cubin\n", "", "120", []),
    ("ELF file    1: x.1.sm_120.cubin\n", "", "120", ["missing cubins sm_120a", "unrequested cubins sm_120"]),
    ("", "cuobjdump info    : File 'x' does not contain device code\n", "90", ["missing cubins sm_90",
                                                                              "missing PTX compute_90"]),
])
def test_compare(elf: str, ptx: str, spec: str, expected: list[str]) -> None:
    assert compare(parse_cuobjdump(elf, ptx), parse_arch_set(spec)) == expected
