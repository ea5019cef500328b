"""The unit-test guard itself: starting a process or touching the network fails the test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from .conftest import HermeticityError


def _bind_loopback() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))


@pytest.mark.parametrize("attempt", [
    lambda: subprocess.run([sys.executable, "-c", "pass"], check=False),
    lambda: subprocess.check_output(["git", "--version"]),
    lambda: os.system("true"),
    lambda: os.posix_spawn(sys.executable, [sys.executable, "-c", "pass"], dict(os.environ)),
    lambda: socket.create_connection(("127.0.0.1", 9), timeout=1),
    lambda: _bind_loopback(),
    lambda: socket.getaddrinfo("pypi.org", 443),
], ids=["subprocess.run", "check_output", "os.system", "posix_spawn", "connect", "bind", "dns"])
def test_guard_refuses(attempt, hermetic: list[str]) -> None:
    with pytest.raises(HermeticityError, match="inject facts, or move the test to tests/integration"):
        attempt()
    assert len(hermetic) == 1
    hermetic.clear()  # seen and asserted: do not fail this test at teardown


def test_a_test_that_spawns_fails_even_if_it_swallows_the_error(pytester: pytest.Pytester) -> None:
    """Run a small test file under this same guard: it catches the error, and still fails."""
    pytester.makeconftest("from tests.unit.conftest import hermetic, pytest_runtest_makereport  # noqa: F401\n")
    pytester.makepyfile(test_spawns=textwrap.dedent("""
        import subprocess, sys

        def test_swallows():
            try:
                subprocess.run([sys.executable, "-c", "pass"])
            except Exception:
                pass

        def test_plain():
            subprocess.run([sys.executable, "-c", "pass"])

        def test_pure():
            assert 1 + 1 == 2
    """))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    # test_swallows passes its call and errors at teardown; test_plain fails; only test_pure is clean.
    result.assert_outcomes(passed=2, failed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["FAILED test_spawns.py::test_plain - *HermeticityError*"])
    result.stdout.fnmatch_lines(["ERROR test_spawns.py::test_swallows - Failed: not hermetic: subprocess.Popen*"])
