"""Do llama-cpp-python's ctypes bindings match the llama.cpp they are built with?

llama-cpp-python binds llama.cpp by hand: ``@ctypes_function("llama_x", argtypes, restype)`` looks each C
function up when ``llama_cpp`` is imported, and ``ctypes.Structure`` classes copy the C structs' fields.
A newer (or older) llama.cpp swapped in under the same bindings breaks in two ways:

- a **missing symbol**: the bindings name a function the library no longer exports (removed or renamed);
  ``import llama_cpp`` then dies with an AttributeError naming only the first one;
- a **changed struct**: a field added, removed, renamed or moved in ``llama.h``; nothing fails, the
  values land in the wrong fields (a struct passed by value can crash the process).

This module names both, without importing the wheel: the bound names are read from the Python source
(ast), the exports from the library's ELF dynamic symbol table, the structs' fields from ``llama.h``.
Struct fields are compared by name and order, not by type: a field that only changes its C type (int32 ->
int64) is not seen here.
"""

from __future__ import annotations

import ast
import io
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_wheels.elf import exported_symbols_stream

#: The binding modules and the library each binds (llama-cpp-python 0.3.x).
MODULES = {"llama_cpp/llama_cpp.py": "libllama", "llama_cpp/mtmd_cpp.py": "libmtmd"}
ANON = "<anonymous>"


def bound_functions(py_source: str) -> list[str]:
    """The C function names a binding module looks up: ``ctypes_function("name", ...)`` decorators whose
    ``enabled`` is not the literal False, in source order."""
    out: list[str] = []
    for node in ast.walk(ast.parse(py_source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id.endswith("ctypes_function") and node.args):
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        enabled = next((k.value for k in node.keywords if k.arg == "enabled"),
                       node.args[3] if len(node.args) > 3 else None)
        if isinstance(enabled, ast.Constant) and enabled.value is False:
            continue
        out.append(first.value)
    return sorted(set(out), key=out.index)


def _field_names(value: ast.expr) -> list[str] | None:
    if not isinstance(value, ast.List | ast.Tuple):
        return None
    names = []
    for elt in value.elts:
        if isinstance(elt, ast.Tuple) and elt.elts and isinstance(elt.elts[0], ast.Constant):
            names.append(str(elt.elts[0].value))
        else:
            return None
    return names


def bound_structs(py_source: str) -> dict[str, list[str]]:
    """``ctypes.Structure`` classes and their ``_fields_`` names, in order (``X._fields_ = [...]`` too)."""
    out: dict[str, list[str]] = {}
    tree = ast.parse(py_source)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("Structure") for b in node.bases):
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_fields_"
                                                        for t in stmt.targets):
                    names = _field_names(stmt.value)
                    if names is not None:
                        out[node.name] = names
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Attribute) and t.attr == "_fields_" and isinstance(t.value, ast.Name):
                    names = _field_names(node.value)
                    if names is not None:
                        out[t.value.id] = names
    return out


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _top_level(body: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in body:
        depth += (ch in "{(" and 1) or 0
        depth -= (ch in "})" and 1) or 0
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _declarator_names(decl: str) -> list[str]:
    decl = re.sub(r"\s+", " ", decl).strip()
    if re.match(r"^(union|struct)\s*\{", decl):
        tail = decl[decl.rindex("}") + 1:].strip()
        return [tail] if tail else [ANON]
    fnptr = re.search(r"\(\s*\*\s*(\w+)\s*\)\s*\(", decl)
    if fnptr:
        return [fnptr[1]]
    names = []
    for i, part in enumerate(_top_level(decl, ",")):
        part = re.sub(r"\[[^\]]*\]", "", part).strip()
        m = re.search(r"(\w+)\s*(?::\s*\d+)?$", part)
        if m and (i > 0 or " " in part or "*" in part):
            names.append(m[1])
    return names


def header_structs(header: str) -> dict[str, list[str]]:
    """``struct NAME { ... }`` in a C header and its field names, in order (anonymous unions as ANON)."""
    text = _strip_comments(header)
    out: dict[str, list[str]] = {}
    for m in re.finditer(r"\bstruct\s+(\w+)\s*\{", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        body = text[m.end():i - 1]
        out[m[1]] = [n for decl in _top_level(body, ";") for n in _declarator_names(decl)]
    return out


def header_functions(header: str, api: str = "LLAMA_API") -> list[str]:
    """Functions a header declares with ``api`` (LLAMA_API, MTMD_API: what the shared library exports),
    deprecated ones included."""
    text = re.sub(r"^\s*#.*$", "", _strip_comments(header), flags=re.M)  # the macro's own #define lines
    text = re.sub(r"\bDEPRECATED\s*\(", "", text)
    return sorted(set(re.findall(rf"\b{api}\b[^;{{]*?\b(\w+)\s*\(", text)))


@dataclass
class BindingReport:
    """What the bindings name that the library or header does not have."""

    missing: dict[str, list[str]] = field(default_factory=dict)  # library -> bound names it does not export
    structs: list[str] = field(default_factory=list)  # one line per struct whose bound fields differ
    appended: list[str] = field(default_factory=list)  # structs where llama.h only adds fields after the bound ones
    checked: dict[str, int] = field(default_factory=dict)  # library -> how many bound names were checked

    @property
    def ok(self) -> bool:
        return not self.structs and not any(self.missing.values())

    def one_line(self) -> str:
        """The first problem, naming the symbol or struct (with how many more there are)."""
        probs = [f"{lib}.so does not export {', '.join(names[:3])}" + (f" (+{len(names) - 3} more)"
                                                                       if len(names) > 3 else "")
                 + " that the bindings call" for lib, names in self.missing.items() if names]
        probs += self.structs[:1]
        more = len(self.structs) - 1 if len(self.structs) > 1 else 0
        return "; ".join(probs) + (f" (+{more} more struct(s))" if more else "") if probs else \
            "every bound function is exported" + (" and every bound struct matches llama.h" if not self.structs
                                                   else "")

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "missing": self.missing, "structs": self.structs, "appended": self.appended,
                "checked": self.checked}


def compare_structs(bound: Mapping[str, list[str]], header: Mapping[str, list[str]]) -> tuple[list[str], list[str]]:
    """(breaking, appended): one line per struct the bindings define and the header defines differently.
    Appended = the bound fields are the header's first fields (llama.h added fields at the end): harmless
    where the library allocates the struct, wrong where Python does or it is passed by value."""
    out: list[str] = []
    appended: list[str] = []
    for name, fields in bound.items():
        c = header.get(name)
        if c is None:
            continue
        if len(fields) == len(c) and all(a == b or b == ANON for a, b in zip(fields, c, strict=True)):
            continue
        i = next((k for k, (a, b) in enumerate(zip(fields, c, strict=False)) if a != b and b != ANON),
                 min(len(fields), len(c)))
        here = c[i] if i < len(c) else "(end)"
        there = fields[i] if i < len(fields) else "(end)"
        added = [f for f in c if f not in fields and f != ANON]
        gone = [f for f in fields if f not in c]
        detail = (f"; llama.h adds {', '.join(added[:3])}" if added else "") + \
                 (f"; llama.h lacks {', '.join(gone[:3])}" if gone else "")
        line = (f"struct {name}: field {i} is {here} in llama.h but {there} in the bindings "
                f"({len(c)} vs {len(fields)} fields{detail})")
        (appended if i == len(fields) else out).append(line)
    return out, appended


def check(sources: Mapping[str, str], exports: Mapping[str, Iterable[str]], header: str | None) -> BindingReport:
    """``sources``: binding module path (MODULES' keys) -> its text; ``exports``: library base name -> the
    symbols it exports; ``header``: llama.h's text, if at hand (the struct check needs it)."""
    rep = BindingReport()
    for module, lib in MODULES.items():
        if module not in sources or lib not in exports:
            continue
        names = bound_functions(sources[module])
        have = set(exports[lib])
        rep.checked[lib] = len(names)
        rep.missing[lib] = [n for n in names if n not in have]
    if header is not None and "llama_cpp/llama_cpp.py" in sources:
        rep.structs, rep.appended = compare_structs(bound_structs(sources["llama_cpp/llama_cpp.py"]),
                                                    header_structs(header))
    return rep


def _library(names: Iterable[str], base: str) -> str | None:
    """The member holding ``base`` (libllama) in a wheel's llama_cpp/lib: the .so, else a versioned one."""
    cands = sorted(n for n in names if re.fullmatch(rf"llama_cpp/lib/{base}\.so(\.[\d.]+)?", n))
    return cands[0] if cands else None


def check_wheel(wheel: Path, header: str | None = None) -> BindingReport:
    """The check on a built wheel (a zip): its binding modules against its own libraries' exports."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        sources = {m: zf.read(m).decode("utf-8") for m in MODULES if m in names}
        exports: dict[str, set[str]] = {}
        for lib in set(MODULES.values()):
            member = _library(names, lib)
            if member is not None:
                exports[lib] = exported_symbols_stream(io.BytesIO(zf.read(member)))
    return check(sources, exports, header)


def check_tree(root: Path, header: Path | None = None) -> BindingReport:
    """The same on an unpacked wheel, with ``llama.h`` of the source it was built from (the struct check)."""
    names = [p.relative_to(root).as_posix() for p in (root / "llama_cpp").rglob("*") if p.is_file()]
    sources = {m: (root / m).read_text(encoding="utf-8") for m in MODULES if m in names}
    exports = {}
    for lib in set(MODULES.values()):
        member = _library(names, lib)
        if member is not None:
            with (root / member).open("rb") as f:
                exports[lib] = exported_symbols_stream(f)
    text = header.read_text(encoding="utf-8") if header is not None and header.is_file() else None
    return check(sources, exports, text)
