"""Compatibility knowledge as data. Every table cites its source; nothing else hard-codes these facts.

Versions are ``(major, minor)`` tuples.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A CUDA version as (major, minor): toolkits, drivers, the arch tables. (Package versions are
#: packaging.version.Version.)
CudaVersion = tuple[int, int]


def vstr(v: CudaVersion) -> str:
    return f"{v[0]}.{v[1]}"


def parse_version(text: str) -> CudaVersion:
    parts = text.strip().split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


# --- Compute capability -> CUDA toolkits that can compile SASS for it ------------------------------
# Source: `ptxas --help` / `nvcc --list-gpu-arch` of NVIDIA's PyPI wheels 11.8.89, 12.4.131, 12.8.93,
# 12.9.86, 13.0.88 (read from the wheels themselves), llama.cpp ggml-cuda/CMakeLists.txt comments
# ("86 needs 11.1, 89/90 need 11.8, 120 needs 12.8"), and NVIDIA's "Navigating GPU architecture
# support" blog: CUDA 12.0 dropped Kepler (sm_3x), CUDA 13.0 dropped < sm_75 and renamed sm_101 to sm_110.
# The hand procedure's table said sm_120 works from CUDA 12.5: wrong, it needs 12.8.
# Measured: `nvcc --list-gpu-arch` of 12.4.131 (50-90) and 13.0.88 (75, 80, 86-90, 100, 103, 110, 120, 121),
# kept in tests/fixtures/tools/nvcc-*-list-gpu-arch.txt; tests/unit/test_compat.py checks this table against them.
# The rows a fleet meets, with their first toolkit: 75 T4 (10.0), 80 A100/A30 (11.0), 86 (11.1), 89 (11.8),
# 90 (11.8), 100 (12.8), 120 (12.8); CUDA 13 builds nothing below 75.
@dataclass(frozen=True)
class ArchSupport:
    first: CudaVersion  # first toolkit that compiles it
    last_exclusive: CudaVersion | None  # first toolkit that no longer does (None: still supported)
    gpus: str


ARCH_SUPPORT: dict[int, ArchSupport] = {
    35: ArchSupport((5, 0), (12, 0), "Kepler (K20/K40)"),
    37: ArchSupport((6, 5), (12, 0), "Kepler (K80)"),
    50: ArchSupport((6, 0), (13, 0), "Maxwell"),
    52: ArchSupport((7, 0), (13, 0), "Maxwell (GTX 9xx)"),
    53: ArchSupport((7, 0), (13, 0), "Jetson TX1"),
    60: ArchSupport((8, 0), (13, 0), "Pascal (P100)"),
    61: ArchSupport((8, 0), (13, 0), "Pascal (GTX 10xx)"),
    62: ArchSupport((8, 0), (13, 0), "Jetson TX2"),
    70: ArchSupport((9, 0), (13, 0), "Volta (V100)"),
    72: ArchSupport((10, 0), (13, 0), "Jetson Xavier"),
    75: ArchSupport((10, 0), None, "Turing (T4, RTX 20xx)"),
    80: ArchSupport((11, 0), None, "Ampere (A100, A30)"),
    86: ArchSupport((11, 1), None, "Ampere (RTX 30xx, A10, A40)"),
    87: ArchSupport((11, 4), None, "Jetson Orin"),
    88: ArchSupport((13, 0), None, "Thor-class (CUDA 13)"),
    89: ArchSupport((11, 8), None, "Ada (RTX 40xx, L4, L40)"),
    90: ArchSupport((11, 8), None, "Hopper (H100, H200)"),
    100: ArchSupport((12, 8), None, "Blackwell (B200, GB200)"),
    101: ArchSupport((12, 8), (13, 0), "Thor (renamed sm_110 in CUDA 13)"),
    103: ArchSupport((12, 9), None, "Blackwell (B300)"),
    110: ArchSupport((13, 0), None, "Thor"),
    120: ArchSupport((12, 8), None, "Blackwell (RTX 50xx, RTX PRO)"),
    121: ArchSupport((12, 9), None, "Blackwell (DGX Spark)"),
}
#: The arch-specific suffix `a` needs CUDA 12.0 (sm_90a); the family suffix `f` needs 12.9.
FEATURE_MIN_CUDA: dict[str, CudaVersion] = {"a": (12, 0), "f": (12, 9)}
#: llama.cpp (ggml/src/ggml-cuda/CMakeLists.txt) rewrites plain 12X, 12X-real and 12X-virtual to 12Xa:
#: "12X is forwards-compatible, 12Xa is not ... Blackwell FP4 tensor core instructions need 12Xa".
LLAMA_CPP_REWRITES_TO_A = frozenset({120, 121})


def arch_floor(cuda: CudaVersion) -> int:
    """Lowest compute capability that ``cuda`` can compile (CUDA 13: 75)."""
    return min(n for n, s in ARCH_SUPPORT.items() if supports(s, cuda))


def supports(s: ArchSupport, cuda: CudaVersion) -> bool:
    return s.first <= cuda and (s.last_exclusive is None or cuda < s.last_exclusive)


# --- CUDA toolkit -> host compilers it accepts -----------------------------------------------------
# Source: crt/host_config.h inside NVIDIA's nvcc/crt wheels of each version (the #error checks on
# __GNUC__, __clang_major__ and _MSC_VER).
# A toolkit between two rows uses the lower row (conservative). `-allow-unsupported-compiler`
# only skips the check; it does not make the headers work.
@dataclass(frozen=True)
class HostCompilerLimits:
    cuda: CudaVersion
    gcc_max: int  # highest major accepted
    clang_below: int  # clang major must be < this
    msc_min: int  # _MSC_VER range, inclusive
    msc_max: int


HOST_COMPILER_LIMITS: tuple[HostCompilerLimits, ...] = (
    HostCompilerLimits((11, 8), 11, 15, 1910, 1939),
    HostCompilerLimits((12, 4), 13, 18, 1910, 1949),
    HostCompilerLimits((12, 8), 14, 20, 1910, 1949),
    HostCompilerLimits((12, 9), 14, 20, 1910, 1949),
    HostCompilerLimits((13, 0), 15, 21, 1920, 1949),
    HostCompilerLimits((13, 5), 16, 23, 1920, 1959),
)


def host_limits(cuda: CudaVersion) -> HostCompilerLimits | None:
    rows = [r for r in HOST_COMPILER_LIMITS if r.cuda <= cuda]
    return rows[-1] if rows else None


# --- MSVC _MSC_VER -> Visual Studio release --------------------------------------------------------
# Source: Microsoft Learn, "Predefined macros" (_MSC_VER table) and the VS 2026 (v18.0) release notes.
MSVC_TO_VS: dict[int, str] = {
    1900: "Visual Studio 2015 (14.0)",
    1910: "Visual Studio 2017 (15.0)", 1911: "Visual Studio 2017 (15.3)", 1912: "Visual Studio 2017 (15.5)",
    1913: "Visual Studio 2017 (15.6)", 1914: "Visual Studio 2017 (15.7)", 1915: "Visual Studio 2017 (15.8)",
    1916: "Visual Studio 2017 (15.9)",
    1920: "Visual Studio 2019 (16.0)", 1921: "Visual Studio 2019 (16.1)", 1922: "Visual Studio 2019 (16.2)",
    1923: "Visual Studio 2019 (16.3)", 1924: "Visual Studio 2019 (16.4)", 1925: "Visual Studio 2019 (16.5)",
    1926: "Visual Studio 2019 (16.6)", 1927: "Visual Studio 2019 (16.7)", 1928: "Visual Studio 2019 (16.8-16.9)",
    1929: "Visual Studio 2019 (16.10-16.11)",
    1930: "Visual Studio 2022 (17.0)", 1931: "Visual Studio 2022 (17.1)", 1932: "Visual Studio 2022 (17.2)",
    1933: "Visual Studio 2022 (17.3)", 1934: "Visual Studio 2022 (17.4)", 1935: "Visual Studio 2022 (17.5)",
    1936: "Visual Studio 2022 (17.6)", 1937: "Visual Studio 2022 (17.7)", 1938: "Visual Studio 2022 (17.8)",
    1939: "Visual Studio 2022 (17.9)", 1940: "Visual Studio 2022 (17.10)", 1941: "Visual Studio 2022 (17.11)",
    1942: "Visual Studio 2022 (17.12)", 1943: "Visual Studio 2022 (17.13)", 1944: "Visual Studio 2022 (17.14)",
    1950: "Visual Studio 2026 (18.0)",
}


def visual_studio_for(msc_ver: int) -> str:
    if msc_ver in MSVC_TO_VS:
        return MSVC_TO_VS[msc_ver]
    lower = [k for k in MSVC_TO_VS if k <= msc_ver]
    return f"{MSVC_TO_VS[max(lower)]} or newer" if lower else "unknown Visual Studio"


# --- Driver -> highest CUDA runtime ----------------------------------------------------------------
# Source: CUDA Toolkit Release Notes, "CUDA Toolkit and Corresponding Driver Versions" (GA drivers),
# Linux x86_64 and Windows columns. Minor-version compatibility lets a runtime of major M run on any
# driver that supports M.0, except for JIT of PTX newer than the driver.
@dataclass(frozen=True)
class DriverRow:
    cuda: CudaVersion
    linux_min: str
    windows_min: str


DRIVER_TABLE: tuple[DriverRow, ...] = (
    DriverRow((11, 8), "520.61.05", "520.06"),
    DriverRow((12, 0), "525.60.13", "527.41"),
    DriverRow((12, 1), "530.30.02", "531.14"),
    DriverRow((12, 2), "535.54.03", "536.25"),
    DriverRow((12, 3), "545.23.06", "545.84"),
    DriverRow((12, 4), "550.54.14", "551.61"),
    DriverRow((12, 5), "555.42.02", "555.85"),
    DriverRow((12, 6), "560.28.03", "560.76"),
    DriverRow((12, 8), "570.26", "570.65"),
    DriverRow((12, 9), "575.51.03", "576.02"),
    DriverRow((13, 0), "580.65.06", "580.88"),
)


def _dv(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def highest_cuda_for_driver(driver: str, windows: bool = False) -> CudaVersion | None:
    """The newest CUDA whose GA driver is <= ``driver`` (None: older than every row)."""
    got = _dv(driver)
    ok = [r.cuda for r in DRIVER_TABLE if _dv(r.windows_min if windows else r.linux_min) <= got]
    return max(ok) if ok else None


def driver_verdict(driver_cuda: CudaVersion, runtime: CudaVersion) -> tuple[str, str]:
    """('ok'|'warn'|'fail', reason) for running a wheel built with ``runtime`` on this driver."""
    if driver_cuda >= runtime:
        return "ok", f"driver supports CUDA {vstr(driver_cuda)} >= runtime {vstr(runtime)}"
    if driver_cuda[0] == runtime[0]:
        return "warn", (f"driver supports CUDA {vstr(driver_cuda)} < runtime {vstr(runtime)}: runs by minor-version "
                        "compatibility, but PTX from the newer toolkit cannot be JIT-compiled")
    return "fail", (f"driver supports CUDA {vstr(driver_cuda)} only; a CUDA {runtime[0]}.x wheel needs a driver "
                    f"for CUDA >= {runtime[0]}.0")


# --- Fatbin compression -> driver floor ----------------------------------------------------------
# Source: nvcc documentation, --compress-mode (new in CUDA 12.8): "This option is not compatible with
# drivers released before CUDA Toolkit's 12.4 Release" (quoted in ml-explore/mlx#2407; ollama#12258 saw
# "device kernel image is invalid" on older drivers). llama.cpp passes -compress-mode=
# ${GGML_CUDA_COMPRESSION_MODE} (default "size") when the toolkit is >= 12.8 (ggml-org/llama.cpp#12029);
# our compile lines show -compress-mode=size (the nvcc lines of our CUDA builds).
COMPRESS_MODE_MIN_CUDA: dict[str, CudaVersion] = {"size": (12, 4), "speed": (12, 4), "balance": (12, 4)}
LLAMA_CPP_COMPRESSION = ("size", (12, 8))  # (default mode, first toolkit that gets the flag)


def compression_mode(cuda: CudaVersion, cmake_args: list[str]) -> str | None:
    """The -compress-mode a llama.cpp CUDA build used: from GGML_CUDA_COMPRESSION_MODE, else the default.
    None before CUDA 12.8, whatever the flag says: llama.cpp passes -compress-mode only from 12.8 on (our plan
    sets GGML_CUDA_COMPRESSION_MODE on every CUDA build, so a cu124 wheel would otherwise claim a 12.4-driver floor)."""
    mode, since = LLAMA_CPP_COMPRESSION
    if cuda < since:
        return None
    for arg in cmake_args:
        if arg.startswith("-DGGML_CUDA_COMPRESSION_MODE="):
            return arg.split("=", 1)[1] or None
    return mode


def min_driver(runtime: CudaVersion, compress_mode: str | None) -> DriverRow | None:
    """The oldest driver that runs a wheel of CUDA ``runtime``: its major's first release, raised to the
    compression mode's floor."""
    floor = max((runtime[0], 0), COMPRESS_MODE_MIN_CUDA.get(compress_mode or "", (0, 0)))
    rows = [r for r in DRIVER_TABLE if r.cuda >= floor]
    return rows[0] if rows else None  # newer than the table: unknown
