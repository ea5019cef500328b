"""Read a Windows DLL's PE tables with pefile: the imports the loader resolves, and the exports.

The counterpart of :mod:`llama_wheels.elf` (NEEDED / SONAME) for DLLs; delvewheel reads the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pefile

AMD64 = 0x8664


@dataclass(frozen=True)
class PeInfo:
    machine: int
    imports: tuple[str, ...]  # DLL names as written in the import table (case as stored)
    delay_imports: tuple[str, ...]
    exports: tuple[str, ...]


def is_pe(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(2) == b"MZ"
    except OSError:
        return False


def read_pe(source: Path | bytes) -> PeInfo:
    """The import, delay-import and export tables of a DLL (a path, or its bytes as read from a wheel)."""
    pe = pefile.PE(data=source, fast_load=True) if isinstance(source, bytes) else pefile.PE(str(source), fast_load=True)
    try:
        entries = pefile.DIRECTORY_ENTRY
        pe.parse_data_directories(directories=[entries["IMAGE_DIRECTORY_ENTRY_IMPORT"],
                                               entries["IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT"],
                                               entries["IMAGE_DIRECTORY_ENTRY_EXPORT"]])
        imports = tuple(e.dll.decode("ascii", "replace") for e in getattr(pe, "DIRECTORY_ENTRY_IMPORT", []))
        delay = tuple(e.dll.decode("ascii", "replace") for e in getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", []))
        exp = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
        exports = tuple(s.name.decode("ascii", "replace") for s in exp.symbols if s.name) if exp else ()
        return PeInfo(pe.FILE_HEADER.Machine, imports, delay, exports)
    finally:
        pe.close()


def module_definition(dll_name: str, exports: tuple[str, ...]) -> str:
    """A module-definition (.def) file for ``lib /def`` (MSVC) to make an import library from a DLL."""
    return "\n".join([f"LIBRARY {dll_name}", "EXPORTS", *(f"    {name}" for name in exports)]) + "\n"
