"""The import contracts (pyproject.toml [tool.importlinter], run by `nox -s lint`) hold for the
package, and fail on the cycle the package once had: {cli, bench, smoke, build, compcache, plan},
closed by a function-level import of the CLI from a stage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is in the lint and test dependency groups")

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run([sys.executable, "-c", LINT_IMPORTS, "--config", str(tree / "pyproject.toml"), "--no-cache",
                           "--no-logo"], cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_package_keeps_its_contracts(tree: Path) -> None:
    res = lint_imports(tree)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Contracts: 3 kept, 0 broken." in res.stdout


def test_the_old_cycle_is_refused(tree: Path) -> None:
    """smoke imported cli._options inside a function, as it did before pipeline.py: both the layers
    (a stage may not import the interface) and the acyclic contract (cli -> smoke -> cli) break."""
    smoke = tree / "src" / "llama_wheels" / "smoke" / "__init__.py"
    smoke.write_text(smoke.read_text() + "\n\ndef _old_options():\n    from llama_wheels.cli import main\n\n"
                     "    return main\n")
    res = lint_imports(tree)
    assert res.returncode == 1
    assert "llama_wheels.smoke is not allowed to import llama_wheels.cli" in res.stdout
    assert "no import cycles between modules (a function-level import counts too) BROKEN" in res.stdout


def test_a_new_module_must_be_placed_in_a_layer(tree: Path) -> None:
    (tree / "src" / "llama_wheels" / "stray.py").write_text('"""Not in any layer yet."""\n')
    res = lint_imports(tree)
    assert res.returncode == 1 and "stray" in res.stdout
