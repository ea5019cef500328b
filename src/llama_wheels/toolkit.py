"""CUDA toolkits: NVIDIA's PyPI wheels made usable by CMake.

``pypi:<major.minor>`` installs ``cuda-toolkit[...]`` into a cache dir once. The wheels lack what
CMake's FindCUDAToolkit and nvcc's link line expect (nvcc links from ``lib64``; the runtime wheels ship
only versioned libraries such as ``libcudart.so.13``), so we add, as measured building llama.cpp with
cuda-toolkit 13.0.2:
``lib64 -> lib`` and unversioned ``libcudart.so``/``libcublas.so``/``libcublasLt.so`` links.

There is no libcuda stub on PyPI, and a system toolkit's ``lib64/stubs`` may or may not be there, so
VMM builds link a stub we generate from the toolkit's own ``cuda.h`` (:func:`make_driver_stub`): what
NVIDIA ships in ``lib64/stubs``, an ELF with SONAME ``libcuda.so.1`` exporting the driver API, so the
wheel NEEDS exactly the driver's ``libcuda.so.1`` on every build host.

NCCL (ggml option ``nccl``) comes from NVIDIA's ``nvidia-nccl-cu<major>`` wheel, installed into the
cache like the toolkit (:func:`install_nccl`), never from whatever the build host has.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

from llama_wheels import cmd, windows
from llama_wheels.compat import CudaVersion, parse_version, vstr
from llama_wheels.errors import ConfigError, ToolNotFound

#: cuda major.minor -> (cuda-toolkit meta-package version, cuobjdump wheel pin). CUDA 12 wheels
#: ship ptxas but no nvcc (nvidia-cuda-nvcc-cu12 12.4-12.9 and -cu11 11.8 hold only ptxas, libnvvm
#: and crt headers), so only CUDA 13+ can come from PyPI. No 13.0
#: cuobjdump wheel exists; a newer cuobjdump reads older fatbins.
PYPI_TOOLKITS: dict[CudaVersion, tuple[str, str]] = {
    (13, 0): ("13.0.2", "nvidia-cuda-cuobjdump==13.5.37"),
}
TOOLKIT_EXTRAS = "nvcc,cudart,cublas,cccl,crt,nvvm"
UNVERSIONED_LINKS = ("libcudart.so", "libcublas.so", "libcublasLt.so")


def pypi_version(spec: str) -> CudaVersion:
    v = parse_version(spec.split(":", 1)[1])
    if v not in PYPI_TOOLKITS:
        if v[0] < 13:
            raise ConfigError(f"--cuda {spec}: NVIDIA's CUDA {v[0]} wheels on PyPI have no nvcc",
                              "install a CUDA 12 toolkit and use --cuda system, or use --cuda pypi:13.0")
        raise ConfigError(f"--cuda {spec} is not a known PyPI toolkit",
                          "known: " + ", ".join(f"pypi:{vstr(k)}" for k in PYPI_TOOLKITS))
    return v


def pypi_target(cache_dir: Path, version: CudaVersion) -> Path:
    return cache_dir / "toolkits" / f"cu{version[0]}{version[1]}"


def pypi_root(cache_dir: Path, version: CudaVersion) -> Path:
    """Where nvcc's ``bin/`` will be: ``<target>/nvidia/cu13``."""
    return pypi_target(cache_dir, version) / "nvidia" / f"cu{version[0]}"


def pypi_requirements(version: CudaVersion) -> list[str]:
    meta, cuobjdump = PYPI_TOOLKITS[version]
    return [f"cuda-toolkit[{TOOLKIT_EXTRAS}]=={meta}", cuobjdump]


def _pip_install_into(cache_dir: Path, target: Path, requirements: list[str], *, find_links: Path | None,
                      env: dict[str, str] | None, no_deps: bool = False) -> None:
    """``pip install --target`` into ``<target>.partial``, then moved into place: a killed install never
    leaves a half-filled ``target``. ``find_links`` = offline (the prefetch folder)."""
    tmp = target.with_name(target.name + ".partial")
    if tmp.exists():
        _rmtree_owned(tmp, cache_dir)
    args = [sys.executable, "-m", "pip", "install", "--no-compile", *(["--no-deps"] if no_deps else []),
            "--disable-pip-version-check", "--quiet", "--target", str(tmp)]
    args += ["--no-index", "--find-links", str(find_links)] if find_links else []
    cmd.run([*args, *requirements], env=env)
    if target.exists():
        _rmtree_owned(target, cache_dir)
    tmp.rename(target)


def install_pypi_toolkit(cache_dir: Path, version: CudaVersion, *, find_links: Path | None = None,
                         env: dict[str, str] | None = None) -> Path:
    """Install (once) and fix up the PyPI toolkit; return its root. ``find_links`` = offline."""
    target = pypi_target(cache_dir, version)
    root = pypi_root(cache_dir, version)
    stamp = target / ".complete"
    if not stamp.exists():
        _pip_install_into(cache_dir, target, pypi_requirements(version), find_links=find_links, env=env)
    if sys.platform == "win32":
        windows.fix_pypi_layout(root, version[0], env)
    else:
        fix_layout(root)
    stamp.touch()
    return root


def fix_layout(root: Path) -> None:
    """Make the wheel layout look like a toolkit to CMake and nvcc (Linux; Windows: windows.fix_pypi_layout)."""
    if not (root / "bin" / "nvcc").exists():
        raise ToolNotFound(f"{root} has no bin/nvcc", "delete the toolkit cache dir and run again")
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


#: cuda major -> the pinned nvidia-nccl-cu<major> wheel (2.32.3 ships nvidia/nccl/{include,lib/libnccl.so.2}).
NCCL_WHEELS: dict[int, str] = {13: "2.32.3"}


def nccl_requirement(cuda_major: int) -> str:
    """The Requires-Dist a pip-mode wheel built with NCCL carries (libnccl.so.2: any later 2.x works)."""
    return f"nvidia-nccl-cu{cuda_major}>={NCCL_WHEELS[cuda_major]},<3"


def nccl_target(cache_dir: Path, cuda_major: int) -> Path:
    return cache_dir / "toolkits" / f"nccl-cu{cuda_major}-{NCCL_WHEELS[cuda_major]}"


def nccl_root(cache_dir: Path, cuda_major: int) -> Path:
    """Where ``include/nccl.h`` and ``lib/libnccl.so.2`` will be."""
    return nccl_target(cache_dir, cuda_major) / "nvidia" / "nccl"


def install_nccl(cache_dir: Path, cuda_major: int, *, find_links: Path | None = None,
                 env: dict[str, str] | None = None) -> Path:
    """Install (once) NVIDIA's NCCL wheel into the cache; return its root. ``find_links`` = offline."""
    target = nccl_target(cache_dir, cuda_major)
    root = nccl_root(cache_dir, cuda_major)
    stamp = target / ".complete"
    if not stamp.exists():
        _pip_install_into(cache_dir, target, [f"nvidia-nccl-cu{cuda_major}=={NCCL_WHEELS[cuda_major]}"],
                          find_links=find_links, env=env, no_deps=True)
    if not (root / "include" / "nccl.h").exists() or not (root / "lib" / "libnccl.so.2").exists():
        raise ToolNotFound(f"{root} has no include/nccl.h or lib/libnccl.so.2", f"delete {target} and run again")
    stamp.touch()
    return root


def driver_stub_dir(build_dir: Path) -> Path:
    """Where the generated link-time ``libcuda.so`` goes (inside our build dir: the same path on every host)."""
    return build_dir / "stubs" / "libcuda"


_DRIVER_API = re.compile(r"\bCUresult\s+(?:CUDAAPI\s+)?(cu[A-Za-z0-9_]+)\s*\(")


def driver_api_names(header: str, preprocessed: str) -> list[str]:
    """The driver API functions declared in cuda.h: as written (cuMemAlloc) and as compiled code
    references them after cuda.h's own renames (cuMemAlloc_v2)."""
    return sorted(set(_DRIVER_API.findall(header)) | set(_DRIVER_API.findall(preprocessed)))


def make_driver_stub(toolkit_root: Path, dest: Path, env: Mapping[str, str]) -> Path:
    """Generate ``dest/libcuda.so`` (SONAME libcuda.so.1) from ``toolkit_root/include/cuda.h``. Link-time only:
    the file is never copied into a wheel, and the loader looks for ``libcuda.so.1``, which is not here."""
    header = toolkit_root / "include" / "cuda.h"
    if not header.exists():
        raise ToolNotFound(f"{header} does not exist: cannot make the libcuda link stub a VMM build needs",
                         "use a complete CUDA toolkit, or set ggml option vmm = false (labels the wheel .novmm)")
    cc = env.get("CC") or "cc"
    dest.mkdir(parents=True, exist_ok=True)
    pre = cmd.run([cc, "-E", "-P", "-I", str(header.parent), str(header)], env=env, capture=True, quiet=True).stdout
    names = driver_api_names(header.read_text(encoding="utf-8", errors="replace"), pre)
    if len(names) < 100:
        raise ToolNotFound(f"found only {len(names)} driver API functions in {header}", "is it NVIDIA's cuda.h?")
    source = dest / "libcuda_stub.c"
    source.write_text("/* generated by llama-wheels from cuda.h: link-time stub, never loaded */\n"
                      + "".join(f"int {n}(void) {{ return 999; }}\n" for n in names), encoding="utf-8")
    lib = dest / "libcuda.so"
    cmd.run([cc, "-shared", "-fPIC", "-o", str(lib), "-Wl,-soname,libcuda.so.1", str(source)], env=env, quiet=True)
    return lib


def _rmtree_owned(path: Path, owner: Path) -> None:
    """Delete ``path`` only if it lies inside ``owner`` (our cache), never following links out."""
    from llama_wheels.clean import remove_tree_within

    remove_tree_within(path, owner)

