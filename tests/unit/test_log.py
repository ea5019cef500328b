"""log.py: steps, annotations and the step summary, plain and on GitHub Actions."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from llama_wheels.log import Logger, fmt_bytes, fmt_seconds, render_markdown, render_table


def test_plain_step_and_messages() -> None:
    out = io.StringIO()
    log = Logger({}, out)
    with log.step("compile cpu"):
        log.warning("slow disk")
    log.error("boom")
    lines = out.getvalue().splitlines()
    assert lines[0] == "==> compile cpu" and lines[1] == "warning: slow disk"
    assert lines[2].startswith("<== compile cpu: done in ") and lines[3] == "error: boom"
    assert "::" not in out.getvalue()


def test_github_actions_groups_annotations_and_failed_step() -> None:
    out = io.StringIO()
    log = Logger({"GITHUB_ACTIONS": "true"}, out)
    with pytest.raises(RuntimeError), log.step("compile cu130-sm90"):
        log.warning("w")
        raise RuntimeError("x")
    log.error("e")
    lines = out.getvalue().splitlines()
    assert lines[:3] == ["::group::compile cu130-sm90", "==> compile cu130-sm90", "::warning::w"]
    assert lines[3] == "::endgroup::" and lines[4].startswith("<== compile cu130-sm90: FAILED after ")
    assert lines[5] == "::error::e"


def test_table_goes_to_the_step_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier\n")
    out = io.StringIO()
    Logger({"GITHUB_STEP_SUMMARY": str(summary)}, out).table("build summary", ["flavour", "size"],
                                                              [["cpu", "12.0 MB"]])
    assert summary.read_text() == "earlier\n### build summary\n\n| flavour | size |\n|---|---|\n| cpu | 12.0 MB |\n"
    assert "flavour  size" in out.getvalue() and "cpu      12.0 MB" in out.getvalue()


def test_no_summary_file_without_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Logger({}, io.StringIO()).table("t", ["a"], [["1"]])
    assert list(tmp_path.iterdir()) == []


def test_formatting() -> None:
    assert (fmt_seconds(5.25), fmt_seconds(61), fmt_seconds(3725)) == ("5.2s", "1m01s", "62m05s")
    assert (fmt_bytes(512), fmt_bytes(2048), fmt_bytes(5 * 1024**3)) == ("512 B", "2.0 KB", "5.0 GB")
    assert render_table(["a", "bb"], []) == "a  bb\n-  --"
    assert render_markdown(["a"], [["x"]]) == "| a |\n|---|\n| x |"
