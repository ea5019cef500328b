"""Step logging: start line, elapsed time, a one-line status, and a summary table at the end.

On GitHub Actions (``GITHUB_ACTIONS=true``) steps are folded with ``::group::``, failures become
``::error::`` annotations, and the summary table is appended to ``$GITHUB_STEP_SUMMARY``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


def _gha(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS") == "true"


def fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


class Logger:
    """Prints steps to stderr. One instance per run; ``env`` is injected for testability."""

    def __init__(self, env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> None:
        self.env = env if env is not None else os.environ
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def info(self, text: str) -> None:
        self._print(text)

    def warning(self, text: str) -> None:
        self._print(f"::warning::{text}" if _gha(self.env) else f"warning: {text}")

    def error(self, text: str) -> None:
        self._print(f"::error::{text}" if _gha(self.env) else f"error: {text}")

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        """``with log.step("build cu130-sm90"):`` prints start, then ``done``/``FAILED`` and the time."""
        start = time.monotonic()
        if _gha(self.env):
            self._print(f"::group::{title}")
        self._print(f"==> {title}")
        try:
            yield
        except BaseException:
            if _gha(self.env):
                self._print("::endgroup::")
            self._print(f"<== {title}: FAILED after {fmt_seconds(time.monotonic() - start)}")
            raise
        if _gha(self.env):
            self._print("::endgroup::")
        self._print(f"<== {title}: done in {fmt_seconds(time.monotonic() - start)}")

    def table(self, title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """Print a plain-text table and, on GitHub Actions, append it as Markdown to the step summary."""
        text = render_table(header, rows)
        self._print(f"\n{title} (total {fmt_seconds(time.monotonic() - self.t0)})\n{text}")
        summary = self.env.get("GITHUB_STEP_SUMMARY")
        if summary:
            with Path(summary).open("a", encoding="utf-8") as f:
                f.write(f"### {title}\n\n{render_markdown(header, rows)}\n")


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)] if rows else [
        len(h) for h in header]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, sep, *body])


def render_markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
