"""CUDA toolkits: NVIDIA's PyPI wheels made usable by CMake.

``pypi:<major.minor>`` installs ``cuda-toolkit[...]`` into a cache dir once. The wheels lack what
CMake's FindCUDAToolkit and nvcc's link line expect, so we add (measured, shared/FACTS.md):
``lib64 -> lib`` and unversioned ``libcudart.so``/``libcublas.so``/``libcublasLt.so`` links.
There is no libcuda stub on PyPI, so without a driver library the build sets GGML_CUDA_NO_VMM.
"""

from __future__ import annotations

import ctypes.util
import sys
from pathlib import Path

from llama_wheels import cmd, windows
from llama_wheels.compat import Version, parse_version, vstr
from llama_wheels.errors import ConfigError, FatalError

#: cuda major.minor -> (cuda-toolkit meta-package version, cuobjdump wheel pin). CUDA 12 wheels
#: ship ptxas but no nvcc (research/tech.md §5), so only CUDA 13+ can come from PyPI. No 13.0
#: cuobjdump wheel exists; a newer cuobjdump reads older fatbins.
PYPI_TOOLKITS: dict[Version, tuple[str, str]] = {
    (13, 0): ("13.0.2", "nvidia-cuda-cuobjdump==13.5.37"),
}
TOOLKIT_EXTRAS = "nvcc,cudart,cublas,cccl,crt,nvvm"
UNVERSIONED_LINKS = ("libcudart.so", "libcublas.so", "libcublasLt.so")


def pypi_version(spec: str) -> Version:
    v = parse_version(spec.split(":", 1)[1])
    if v not in PYPI_TOOLKITS:
        if v[0] < 13:
            raise ConfigError(f"--cuda {spec}: NVIDIA's CUDA {v[0]} wheels on PyPI have no nvcc",
                              "install a CUDA 12 toolkit and use --cuda system, or use --cuda pypi:13.0")
        raise ConfigError(f"--cuda {spec} is not a known PyPI toolkit",
                          "known: " + ", ".join(f"pypi:{vstr(k)}" for k in PYPI_TOOLKITS))
    return v


def pypi_target(cache_dir: Path, version: Version) -> Path:
    return cache_dir / "toolkits" / f"cu{version[0]}{version[1]}"


def pypi_root(cache_dir: Path, version: Version) -> Path:
    """Where nvcc's ``bin/`` will be: ``<target>/nvidia/cu13``."""
    return pypi_target(cache_dir, version) / "nvidia" / f"cu{version[0]}"


def pypi_requirements(version: Version) -> list[str]:
    meta, cuobjdump = PYPI_TOOLKITS[version]
    return [f"cuda-toolkit[{TOOLKIT_EXTRAS}]=={meta}", cuobjdump]


def install_pypi_toolkit(cache_dir: Path, version: Version, *, find_links: Path | None = None,
                         env: dict[str, str] | None = None) -> Path:
    """Install (once) and fix up the PyPI toolkit; return its root. ``find_links`` = offline."""
    target = pypi_target(cache_dir, version)
    root = pypi_root(cache_dir, version)
    stamp = target / ".complete"
    if not stamp.exists():
        tmp = target.with_name(target.name + ".partial")
        if tmp.exists():
            _rmtree_owned(tmp, cache_dir)
        args = [sys.executable, "-m", "pip", "install", "--no-compile", "--disable-pip-version-check", "--quiet",
                "--target", str(tmp)]
        args += ["--no-index", "--find-links", str(find_links)] if find_links else []
        cmd.run([*args, *pypi_requirements(version)], env=env)
        if target.exists():
            _rmtree_owned(target, cache_dir)
        tmp.rename(target)
    if sys.platform == "win32":
        windows.fix_pypi_layout(root, version[0], env)
    else:
        fix_layout(root)
    stamp.touch()
    return root


def fix_layout(root: Path) -> None:
    """Make the wheel layout look like a toolkit to CMake and nvcc (Linux; Windows: windows.fix_pypi_layout)."""
    if not (root / "bin" / "nvcc").exists():
        raise FatalError(f"{root} has no bin/nvcc", "delete the toolkit cache dir and run again")
    lib64 = root / "lib64"
    if not lib64.exists():
        lib64.symlink_to("lib", target_is_directory=True)
    for name in UNVERSIONED_LINKS:
        link = root / "lib" / name
        if link.exists() or link.is_symlink():
            continue
        versioned = sorted((root / "lib").glob(name + ".*"), key=lambda p: len(p.name))
        if versioned:
            link.symlink_to(versioned[0].name)
    for exe in (root / "bin").iterdir():
        if exe.is_file() and not exe.suffix:
            exe.chmod(exe.stat().st_mode | 0o111)
    nvvm_bin = root / "nvvm" / "bin"
    if nvvm_bin.is_dir():
        for exe in nvvm_bin.iterdir():
            exe.chmod(exe.stat().st_mode | 0o111)


def has_linkable_libcuda(toolkit_root: Path | None) -> bool:
    """Is there a libcuda the linker can use (stub or driver)? If not, build with GGML_CUDA_NO_VMM."""
    if toolkit_root is not None:
        for d in ("lib64/stubs", "lib/stubs", "targets/x86_64-linux/lib/stubs"):
            if (toolkit_root / d / "libcuda.so").exists():
                return True
    return ctypes.util.find_library("cuda") is not None


def _rmtree_owned(path: Path, owner: Path) -> None:
    """Delete ``path`` only if it lies inside ``owner`` (our cache), never following links out."""
    from llama_wheels.clean import remove_tree_within

    remove_tree_within(path, owner)

