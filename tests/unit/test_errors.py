"""errors.py is the one place for error types and exit codes."""

from __future__ import annotations

import ast
from pathlib import Path

from llama_wheels import errors

SRC = Path(errors.__file__).parent


def test_each_exit_code_has_one_error_type() -> None:
    """Two types share a code only when one is a kind of the other (ArchError is a ConfigError)."""
    todo, roots = [errors.FatalError], {}
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        parent = cls.__mro__[1]
        if parent is Exception or parent.return_code != cls.return_code:
            assert cls.return_code not in roots, f"{cls.__name__} reuses {roots.get(cls.return_code)}'s code"
            roots[cls.return_code] = cls.__name__
    assert sorted(roots) == [1, *range(2, 22)]


def test_every_error_type_says_when_it_happens() -> None:
    todo = [errors.FatalError]
    while todo:
        cls = todo.pop()
        assert cls.__doc__ and cls.__doc__.strip(), cls.__name__
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} missing from the exit-code table"
        todo += cls.__subclasses__()


def test_errors_are_raised_and_defined_only_as_typed_subclasses() -> None:
    """No ``raise FatalError(...)`` (exit 1 says nothing), no error class outside errors.py, no bare exit codes."""
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                assert getattr(node.exc.func, "id", "") != "FatalError", f"{path.name}:{node.lineno}"
            if isinstance(node, ast.ClassDef) and path.name != "errors.py":
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                assert not bases & set(errors.__all__), f"{path.name}: {node.name} belongs in errors.py"


def test_one_line_with_remedy() -> None:
    e = errors.WheelCheckFailed("2 of 3 wheel(s) failed the check", "see the problems listed above")
    assert str(e) == e.one_line() == "2 of 3 wheel(s) failed the check; see the problems listed above"
    assert e.return_code == 9 and isinstance(e, errors.FatalError)


def test_error_name_is_the_class_that_owns_the_code() -> None:
    from llama_wheels.errors import error_name

    assert [error_name(c) for c in (2, 4, 9, 13, 14, 17, 130, 99)] == [
        "ConfigError", "PreflightError", "WheelCheckFailed", "IndexConflict", "PublishError", "SelectFailed",
        "interrupted", ""]


def test_the_served_selector_exits_with_select_failed_code() -> None:
    from llama_wheels.errors import SelectFailed
    from llama_wheels.selector import SELECT_FAILED

    assert SelectFailed.return_code == SELECT_FAILED


def test_readme_exit_code_table_matches_the_errors() -> None:
    """README "When something fails" lists every exit code with the classes that own it."""
    import re
    from pathlib import Path

    from llama_wheels.errors import error_name, exit_codes

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## When something fails", 1)[1].split("\n## ", 1)[0]
    rows = {int(m[1]): m[2] for m in re.finditer(r"^\| (\d+) \| ([^|]*) \|", section, re.M)}
    assert sorted(rows) == sorted([c for c in exit_codes() if c != 1] + [130])
    for code, names in rows.items():
        assert code == 130 or error_name(code) in names, (code, names)


def test_no_reference_to_a_guide_outside_the_repository() -> None:
    """The README describes the hand procedure itself; nothing points at a GUIDE.md that is not here."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = [root / "README.md", root / "noxfile.py", root / "tasks.py", *sorted((root / "src").rglob("*.py"))]
    assert [str(f.relative_to(root)) for f in files if "GUIDE.md" in f.read_text()] == []
    assert "the hand procedure this replaces, in short" in (root / "README.md").read_text().lower()
