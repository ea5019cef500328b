"""The smoke report: one row per check, written as JSON and Markdown, and a log line per check."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from llama_wheels.log import Logger, fmt_seconds, render_markdown

Status = Literal["pass", "fail", "skip", "warn"]


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    seconds: float = 0.0


@dataclass
class SmokeReport:
    flavour: str
    wheel: str
    gpus: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    @property
    def failed(self) -> bool:
        return not self.ok


class Recorder:
    """Appends checks to a report and logs each one as it lands."""

    def __init__(self, report: SmokeReport, log: Logger) -> None:
        self.report = report
        self.log = log

    def add(self, name: str, status: Status, detail: str, t0: float) -> None:
        self.put(Check(name, status, detail, time.monotonic() - t0))

    def put(self, check: Check) -> None:
        self.report.checks.append(check)
        say = {"fail": self.log.error, "warn": self.log.warning}.get(check.status, self.log.info)
        say(f"[{check.status}] {check.name}: {check.detail}")


def write_reports(folder: Path, rep: SmokeReport) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    j = folder / f"smoke-{rep.flavour}.json"
    j.write_text(json.dumps(asdict(rep) | {"ok": rep.ok}, indent=2) + "\n")
    rows = [[c.name, c.status.upper() if c.status == "fail" else c.status, c.detail.replace("|", "/"),
             fmt_seconds(c.seconds)] for c in rep.checks]
    md = folder / f"smoke-{rep.flavour}.md"
    md.write_text(f"# smoke {rep.flavour}: {'PASS' if rep.ok else 'FAIL'}\n\n{rep.wheel}; GPUs: "
                  f"{', '.join(rep.gpus) or 'none'}\n\n"
                  f"{render_markdown(['check', 'result', 'detail', 'time'], rows)}\n")
    return j, md


def summary_rows(reports: list[SmokeReport]) -> list[list[str]]:
    return [[r.flavour, "PASS" if r.ok else "FAIL", str(sum(c.status == "pass" for c in r.checks)),
             str(sum(c.status == "fail" for c in r.checks)), str(sum(c.status in ("skip", "warn") for c in r.checks))]
            for r in reports]
