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
