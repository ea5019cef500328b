from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"

pytest_plugins = ["pytester"]  # tests/unit/test_hermetic.py runs a test file under the unit guard


@pytest.fixture
def fixture_text():
    def read(name: str) -> str:
        return (FIXTURES / "tools" / name).read_text(encoding="utf-8")

    return read
