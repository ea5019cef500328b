"""Unit tests: no network, no compiler, no real build. A real build attempted here fails loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_wheels import build, config


@pytest.fixture(autouse=True)
def no_real_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("a unit test tried to run a real build")

    monkeypatch.setattr(build, "run_step", refuse)
    monkeypatch.setattr(build, "resolve_source", refuse)


@pytest.fixture
def project(tmp_path: Path):
    """A project folder with a pyproject.toml holding the given [tool.llama-wheels] body."""

    def make(body: str = "") -> Path:
        (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.llama-wheels]\n' + body)
        return tmp_path

    return make


@pytest.fixture
def options(project):
    def make(body: str = "", env: dict[str, str] | None = None, cli: dict[str, object] | None = None):
        return config.resolve(project(body), env or {}, cli)

    return make
