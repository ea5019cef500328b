from __future__ import annotations

import pytest

from llama_wheels.compat import (
    DRIVER_TABLE,
    HOST_COMPILER_LIMITS,
    MSVC_TO_VS,
    driver_verdict,
    highest_cuda_for_driver,
    host_limits,
    visual_studio_for,
)


@pytest.mark.parametrize("row", HOST_COMPILER_LIMITS)
def test_host_limits_rows(row) -> None:
    assert host_limits(row.cuda) == row


def test_host_limits_between_rows_uses_lower_and_none_before() -> None:
    assert host_limits((12, 6)).cuda == (12, 4)
    assert host_limits((13, 4)).cuda == (13, 0)
    assert host_limits((11, 0)) is None
    assert host_limits((13, 0)).gcc_max == 15 and host_limits((11, 8)).gcc_max == 11


@pytest.mark.parametrize(("msc", "vs"), sorted(MSVC_TO_VS.items()))
def test_every_msvc_row(msc: int, vs: str) -> None:
    assert visual_studio_for(msc) == vs


def test_msvc_between_rows() -> None:
    assert visual_studio_for(1945) == "Visual Studio 2022 (17.14) or newer"
    assert visual_studio_for(1800) == "unknown Visual Studio"


@pytest.mark.parametrize("row", DRIVER_TABLE)
def test_every_driver_row(row) -> None:
    assert highest_cuda_for_driver(row.linux_min) == row.cuda
    assert highest_cuda_for_driver(row.windows_min, windows=True) == row.cuda


def test_driver_table_reads() -> None:
    assert highest_cuda_for_driver("580.159.04") == (13, 0)  # the lent H100's driver
    assert highest_cuda_for_driver("576.52", windows=True) == (12, 9)  # the hand procedure's driver
    assert highest_cuda_for_driver("470.82.01") is None


def test_driver_verdicts() -> None:
    assert driver_verdict((13, 0), (13, 0))[0] == "ok"
    assert driver_verdict((12, 4), (12, 8))[0] == "warn"
    level, why = driver_verdict((12, 9), (13, 0))
    assert level == "fail" and "CUDA >= 13.0" in why


# --- compute capability -> first toolkit (issue #26: the cards runners have) ------------------------------


@pytest.mark.parametrize(("cuda", "fixture"), [((12, 4), "nvcc-12.4-list-gpu-arch.txt"),
                                                ((13, 0), "nvcc-13.0-list-gpu-arch.txt")])
def test_arch_table_agrees_with_nvcc(fixture_text, cuda: tuple[int, int], fixture: str) -> None:
    """What `nvcc --list-gpu-arch` of that toolkit printed is exactly what the table says it compiles."""
    from llama_wheels.compat import ARCH_SUPPORT, supports

    listed = {int(line.strip().removeprefix("compute_")) for line in fixture_text(fixture).split()}
    assert listed == {n for n, s in ARCH_SUPPORT.items() if supports(s, cuda)}


@pytest.mark.parametrize(("cc", "first", "gpu"), [
    (75, (10, 0), "T4"), (80, (11, 0), "A100"), (86, (11, 1), "A10"), (89, (11, 8), "L4"), (90, (11, 8), "H100"),
    (100, (12, 8), "B200"), (120, (12, 8), "RTX 50xx"),
])
def test_fleet_rows_and_their_minimum_cuda(cc: int, first: tuple[int, int], gpu: str) -> None:
    from llama_wheels.compat import ARCH_SUPPORT, arch_floor

    row = ARCH_SUPPORT[cc]
    assert row.first == first and row.last_exclusive is None and gpu in row.gpus
    assert arch_floor((13, 0)) == 75  # CUDA 13 still builds the T4
