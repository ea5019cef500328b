"""Pick the llama-cpp-python flavour for this machine and print (or run) the pip command.

This file is served at the index root as ``llama-wheels-select.py`` and is also
``python -m llama_wheels select``: the same bytes, so it imports nothing but the standard library
and nothing from llama_wheels (llama_wheels.coverage imports its code-runs-on-GPU rules from here).

    python3 llama-wheels-select.py --index https://wheels.example/llama/            # print the command
    python3 llama-wheels-select.py --index https://wheels.example/llama/ --install  # and run it
    python3 llama-wheels-select.py --index URL --gpus 9.0,8.6 --driver-cuda 13.0    # "what would X get"

What it reads: the GPUs and driver (NVML through nvidia-ml-py when importable, else nvidia-smi,
else no GPU) and ``flavours.json`` at the index root. What it prefers: native code (SASS) for every
selected GPU, then PTX JIT (the first load JIT-compiles kernels: minutes), then the CPU flavour.
A CUDA flavour needs a driver for its CUDA major (and the floor of its fatbin compression), so a
driver older than 580 gets a CUDA 12 flavour (cu124, cu128) where the index has one; among equals
the newest CUDA the driver runs wins, then the smallest wheel. A machine with an NVIDIA GPU never
gets the CPU flavour silently: that is an error naming the flavour that would serve it, unless
``--allow-cpu``. The served name has a hyphen so it can never shadow a module.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

CATALOGUE = "flavours.json"
SCRIPT_NAME = "llama-wheels-select.py"
PROJECT = "llama-cpp-python"
#: Replaced by ``nox -s index -- --base-url URL`` in the served copy, so it needs no --index.
DEFAULT_INDEX_URL = ""
JIT_WARNING = ("the first load JIT-compiles the PTX for this GPU: it can take minutes "
               "(then cached in ~/.nv/ComputeCache)")

Version = Tuple[int, int]
Runner = Callable[[List[str]], Optional[str]]  # noqa: UP045 (runs on 3.8)  argv -> stdout, or None when the tool is missing/failed


#: The exit code for "no flavour runs here" and "the catalogue cannot be read", the same as the package's
#: errors.SelectFailed (this script is stdlib only and cannot import it; a unit test keeps them equal).
SELECT_FAILED = 17


class SelectError(Exception):
    """A choice that cannot be made; ``remedy`` says what to do. Printed as one line."""

    return_code = 1

    def __init__(self, message: str, remedy: str = "", return_code: int = 1) -> None:
        super().__init__(message)
        self.message, self.remedy, self.return_code = message, remedy, return_code

    def one_line(self) -> str:
        return f"{self.message}; {self.remedy}" if self.remedy else self.message


# ------------------------------------------------------------------ which code runs on which GPU --
# CUDA compatibility guides (Ampere/Hopper/Blackwell): a cubin for sm_X.y runs on sm_X.z, z >= y, same
# major; an arch-specific cubin (90a, 120a) only on exactly that capability; a family cubin (100f)
# within its major. PTX for compute_N JIT-compiles on any capability >= N, except arch-specific PTX
# (compute_120a: that GPU only) and family PTX (its major only).


def sass_runs(number: int, feature: str, gpu: int) -> bool:
    if feature == "a":
        return number == gpu
    return number // 10 == gpu // 10 and number % 10 <= gpu % 10


def ptx_runs(number: int, feature: str, gpu: int) -> bool:
    if feature == "a":
        return number == gpu
    if feature == "f":
        return number // 10 == gpu // 10 and number <= gpu
    return number <= gpu


_CODE = re.compile(r"^(sm|compute)_(\d{2,3})([af]?)$")


def parse_code(name: str) -> Tuple[str, int, str]:
    """``sm_90`` -> ("sm", 90, ""); ``compute_120a`` -> ("compute", 120, "a") (cuobjdump's names)."""
    m = _CODE.match(name.strip())
    if not m:
        raise SelectError(f"'{name}' is not a cubin/PTX name like sm_90 or compute_89",
                          "the catalogue is damaged: rebuild it with nox -s index")
    return m[1], int(m[2]), m[3]


def gpu_verdict(gpu_cc: int, sass: Sequence[str], ptx: Sequence[str]) -> Tuple[str, str]:
    """("native" | "ptx-jit" | "cannot-run", what runs) for code listed as cuobjdump names."""
    native = [(n, f) for _, n, f in map(parse_code, sass) if sass_runs(n, f, gpu_cc)]
    if native:
        n, f = max(native)
        return "native", f"sm_{n}{f} cubin"
    jit = [(n, f) for _, n, f in map(parse_code, ptx) if ptx_runs(n, f, gpu_cc)]
    if jit:
        n, f = max(jit)
        return "ptx-jit", f"compute_{n}{f} PTX, JIT-compiled"
    have = ", ".join(list(sass) + list(ptx)) or "no GPU code"
    return "cannot-run", f"holds {have}, none of which runs on sm_{gpu_cc}"


# ------------------------------------------------------------------ the machine -----------------


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    cc: int  # 90 for 9.0

    def describe(self) -> str:
        return f"GPU {self.index} {self.name} (sm_{self.cc})"


@dataclass(frozen=True)
class Machine:
    gpus: Tuple[Gpu, ...]
    driver: str = ""  # "580.159.04"; "" when unknown
    driver_cuda: Version | None = None  # the newest CUDA the driver supports
    windows: bool = False
    source: str = "no GPU"  # "NVML", "nvidia-smi", "--gpus", "no GPU"


def parse_cc(text: str) -> int:
    """``9.0`` or ``90`` or ``sm_90`` -> 90."""
    t = text.strip().lower()
    t = t[3:] if t.startswith("sm_") else t
    m = re.fullmatch(r"(\d{1,2})\.(\d)", t) or re.fullmatch(r"(\d{1,2})(\d)", t)
    if not m:
        raise SelectError(f"'{text}' is not a compute capability", "write it like 9.0, 8.6 or 12.0", 2)
    return int(m[1]) * 10 + int(m[2])


def parse_cuda(text: str) -> Version:
    m = re.fullmatch(r"\s*(\d+)(?:\.(\d+))?\s*", text)
    if not m:
        raise SelectError(f"'{text}' is not a CUDA version", "write it like 13.0 or 12.9", 2)
    return int(m[1]), int(m[2] or 0)


def parse_smi_csv(text: str) -> List[Tuple[int, str, int, str, int]]:
    """``nvidia-smi --query-gpu=index,name,compute_cap,driver_version,memory.total --format=csv,noheader``
    -> [(index, name, cc, driver, memory MiB)]."""
    out = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5 or not parts[0].isdigit():
            continue
        cc = re.fullmatch(r"(\d+)\.(\d)", parts[2])
        mem = re.match(r"(\d+)", parts[4])
        if cc:
            out.append((int(parts[0]), parts[1], int(cc[1]) * 10 + int(cc[2]), parts[3], int(mem[1]) if mem else 0))
    return out


def parse_smi_banner(text: str) -> Tuple[str, Version] | None:
    """Plain ``nvidia-smi``: ``Driver Version: 580.159.04   CUDA Version: 13.0``."""
    m = re.search(r"Driver Version:\s*([\d.]+)\s+CUDA Version:\s*(\d+)\.(\d+)", text)
    return (m[1], (int(m[2]), int(m[3]))) if m else None


SMI_QUERY = ["nvidia-smi", "--query-gpu=index,name,compute_cap,driver_version,memory.total",
             "--format=csv,noheader"]


def from_nvidia_smi(run: Runner, windows: bool) -> Machine | None:
    csv = run(SMI_QUERY)
    if csv is None:
        return None
    rows = parse_smi_csv(csv)
    banner = parse_smi_banner(run(["nvidia-smi"]) or "")
    driver = banner[0] if banner else (rows[0][3] if rows else "")
    return Machine(tuple(Gpu(i, n, cc) for i, n, cc, _, _ in rows), driver, banner[1] if banner else None,
                   windows, "nvidia-smi")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def from_nvml(nvml: Any, windows: bool) -> Machine | None:
    """Through nvidia-ml-py (``import pynvml``). None when NVML cannot start (no driver)."""
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, _DriverNotLoaded...: no usable GPU stack
        return None
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda = int(nvml.nvmlSystemGetCudaDriverVersion())  # CUDA_VERSION form: 13000 = 13.0
        gpus = []
        for i in range(int(nvml.nvmlDeviceGetCount())):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(h)
            gpus.append(Gpu(i, _text(nvml.nvmlDeviceGetName(h)), int(major) * 10 + int(minor)))
        return Machine(tuple(gpus), driver, (cuda // 1000, (cuda % 1000) // 10), windows, "NVML")
    finally:
        nvml.nvmlShutdown()


def subprocess_runner(argv: List[str]) -> str | None:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode == 0 else None


def visible(gpus: Sequence[Gpu], env: Dict[str, str]) -> Tuple[Gpu, ...]:
    """Honour CUDA_VISIBLE_DEVICES given as indexes (the GPUs the wheel will see)."""
    sel = env.get("CUDA_VISIBLE_DEVICES")
    if sel is None or not all(p.strip().isdigit() for p in sel.split(",") if p.strip()):
        return tuple(gpus)
    want = [int(p) for p in sel.split(",") if p.strip()]
    return tuple(g for i in want for g in gpus if g.index == i)


def detect(run: Runner, *, nvml: Any = None, windows: bool | None = None,
           env: Dict[str, str] | None = None) -> Machine:
    """NVML when given (or importable), else nvidia-smi, else no GPU."""
    win = sys.platform == "win32" if windows is None else windows
    if nvml is None:
        try:
            import pynvml  # type: ignore[import-not-found]  # nvidia-ml-py, optional

            nvml = pynvml
        except ImportError:
            nvml = None
    machine = (from_nvml(nvml, win) if nvml is not None else None) or from_nvidia_smi(run, win)
    if machine is None or not machine.gpus:
        return Machine((), machine.driver if machine else "", machine.driver_cuda if machine else None, win)
    return Machine(visible(machine.gpus, dict(os.environ if env is None else env)), machine.driver,
                   machine.driver_cuda, win, machine.source)


def override(machine: Machine, gpus: str | None, driver_cuda: str | None) -> Machine:
    """``--gpus 9.0,8.6`` replaces the GPUs; ``--driver-cuda 13.0`` replaces the driver."""
    out = machine
    if gpus is not None:
        ccs = [parse_cc(t) for t in gpus.split(",") if t.strip()] if gpus.strip().lower() != "none" else []
        out = Machine(tuple(Gpu(i, "(given)", cc) for i, cc in enumerate(ccs)), out.driver, out.driver_cuda,
                      out.windows, "--gpus")
    if driver_cuda is not None:
        out = Machine(out.gpus, "", parse_cuda(driver_cuda), out.windows, out.source)
    return out


# ------------------------------------------------------------------ the catalogue ---------------


def catalogue_url(index: str) -> str:
    """An index root (URL or folder) or the catalogue itself -> the catalogue's URL."""
    if not re.match(r"^[a-z][a-z0-9+.-]*://", index):
        path = os.path.abspath(index)
        if not path.endswith(".json"):
            path = os.path.join(path, CATALOGUE)
        return "file://" + urllib.request.pathname2url(path)
    return index if index.endswith(".json") else index.rstrip("/") + "/" + CATALOGUE


def fetch_catalogue(url: str) -> Dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            data: Dict[str, Any] = json.loads(resp.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise SelectError(f"cannot read the flavour catalogue {url}: {exc}",
                          "check --index (the index root that holds flavours.json)", SELECT_FAILED) from None
    if not isinstance(data, dict) or not isinstance(data.get("flavours"), dict):
        raise SelectError(f"{url} is not a flavour catalogue", "point --index at the index root", SELECT_FAILED)
    return data


def _dv(text: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


def _pep440_key(version: str) -> Tuple[Tuple[int, ...], str]:
    public, _, local = version.partition("+")
    return _dv(public), local


def wheel_fits(wheel: Dict[str, Any], *, machine_tags: Tuple[str, str, Version | None]) -> bool:
    """Loose platform/Python check (the catalogue's tags, this interpreter), stdlib only."""
    os_name, arch, glibc = machine_tags
    py = f"{sys.version_info[0]}{sys.version_info[1]}"
    if not any(t in ("py3", f"py{py}", f"cp{py}") for t in wheel.get("python_tags", ["py3"])):
        return False
    for plat in wheel.get("platform_tags", []):
        if plat == "any":
            return True
        if os_name == "windows" and plat == {"amd64": "win_amd64", "x86_64": "win_amd64",
                                             "arm64": "win_arm64"}.get(arch):
            return True
        if os_name == "linux" and plat.endswith("_" + arch):
            floor = wheel.get("manylinux_floor")
            if plat.startswith("linux_") or not floor or glibc is None or glibc >= parse_cuda(floor):
                return True
        if os_name == "macos" and plat.startswith("macosx_") and plat.endswith(arch):
            return True
    return False


def this_platform() -> Tuple[str, str, Version | None]:
    os_name = {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux")
    libc, ver = platform.libc_ver()
    glibc = parse_cuda(ver) if libc == "glibc" and re.fullmatch(r"\d+\.\d+", ver or "") else None
    return os_name, platform.machine().lower(), glibc


# ------------------------------------------------------------------ the choice ------------------


@dataclass
class Candidate:
    flavour: str
    entry: Dict[str, Any]
    wheel: Dict[str, Any] | None
    tier: int = 9  # 0 native everywhere, 1 some PTX JIT, 2 CPU; 9 rejected
    why: List[str] = field(default_factory=list)  # one line per GPU, or the reason it was rejected
    reject: str = ""  # why the whole flavour cannot be used here (driver, platform, no GPU)
    verdicts: Dict[int, Tuple[str, str]] = field(default_factory=dict)  # GPU index -> gpu_verdict()

    @property
    def size(self) -> int:
        return int((self.wheel or {}).get("size") or self.entry.get("size") or 0)


@dataclass
class Choice:
    flavour: str
    wheel: Dict[str, Any]
    index_url: str
    lines: List[str]  # the explanation: one per GPU, then warnings
    jit: bool
    candidates: List[Candidate]

    @property
    def version(self) -> str:
        return str(self.wheel["version"])


def driver_problem(entry: Dict[str, Any], machine: Machine) -> str | None:
    """Why this machine's driver cannot run the flavour, naming the driver it needs; None when fine."""
    need = entry.get("min_driver") or {}
    cuda = parse_cuda(str(need.get("cuda") or entry.get("cuda") or "0"))
    wanted = f"a driver for CUDA >= {cuda[0]}.{cuda[1]} (Linux >= {need.get('linux', '?')}, " \
             f"Windows >= {need.get('windows', '?')})"
    if machine.driver_cuda is not None and machine.driver_cuda < cuda:
        return f"needs {wanted}; this driver supports CUDA {machine.driver_cuda[0]}.{machine.driver_cuda[1]}"
    floor = need.get("windows" if machine.windows else "linux")
    if machine.driver and floor and _dv(machine.driver) < _dv(str(floor)):
        return f"needs {wanted}; this driver is {machine.driver}"
    return None


def judge(flavour: str, entry: Dict[str, Any], machine: Machine,
          fits: Callable[[Dict[str, Any]], bool]) -> Candidate:
    wheels = sorted((w for w in entry.get("wheels", []) if fits(w)),
                    key=lambda w: _pep440_key(str(w.get("version", ""))))
    cand = Candidate(flavour, entry, wheels[-1] if wheels else None)

    def rejected(reason: str) -> Candidate:
        cand.reject, cand.why = reason, [f"{flavour}: {reason}"]
        return cand

    if cand.wheel is None:
        return rejected("no wheel for this platform and Python")
    if entry.get("kind") not in ("cpu", "cuda"):  # published, but no manifest says what it holds
        return rejected("the catalogue does not know its GPU code (no build record)")
    if not entry.get("cuda"):
        cand.tier = 2
        return cand
    if not machine.gpus:
        return rejected(f"needs an NVIDIA GPU, none found ({machine.source})")
    problem = driver_problem(entry, machine)
    if problem:
        return rejected(problem)
    for g in machine.gpus:
        cand.verdicts[g.index] = gpu_verdict(g.cc, entry.get("sass", []), entry.get("ptx", []))
    lines = [f"{g.describe()}: {cand.verdicts[g.index][0]} ({cand.verdicts[g.index][1]}) in {flavour}"
             for g in machine.gpus]
    kinds = [cand.verdicts[g.index][0] for g in machine.gpus]
    if "cannot-run" in kinds:
        cand.why = [line for line, k in zip(lines, kinds) if k == "cannot-run"]  # noqa: B905 (3.8)
        return cand
    if "ptx-jit" in kinds and machine.driver_cuda is not None and machine.driver_cuda < parse_cuda(entry["cuda"]):
        return rejected(f"its PTX is from CUDA {entry['cuda']}, newer than this driver's CUDA: "
                        "the driver cannot JIT-compile it")
    cand.tier = 1 if "ptx-jit" in kinds else 0
    cand.why = lines
    return cand


def unused(gpu: Gpu, cands: Sequence[Candidate]) -> str:
    """Why no CUDA flavour serves ``gpu``: one reason each, flavours with the same reason grouped."""
    groups: Dict[str, List[str]] = {}
    for c in cands:
        kind, what = c.verdicts.get(gpu.index, ("", ""))
        others = [str(i) for i, (k, _) in sorted(c.verdicts.items()) if k == "cannot-run" and i != gpu.index]
        text = c.reject or (what if kind == "cannot-run" else
                            f"runs here but not on GPU {', '.join(others)}" if others else "not chosen")
        groups.setdefault(text, []).append(c.flavour)
    return "; ".join(f"{', '.join(f)}: {t}" for t, f in groups.items()) or "no CUDA flavour in the catalogue"


# What would serve a GPU that no flavour serves (the selector cannot import llama_wheels.compat; a unit test
# checks these against compat.ARCH_SUPPORT and compat.min_driver).
CUDA12_TOOLKIT = (12, 4)  # the CUDA 12 we suggest: runs on every 12.x driver (>= 525.60.13), no fatbin compression
#: Blackwell needs a newer CUDA 12, whose compressed fatbins need a 12.4 driver.
CUDA12_BLACKWELL: Dict[int, Version] = {100: (12, 8), 101: (12, 8), 103: (12, 9), 120: (12, 8), 121: (12, 9)}
CUDA13_FLOOR = 75  # CUDA 13 builds nothing older: those GPUs need a CUDA 12 flavour, whatever the driver
CUDA13_ONLY = (88, 110)  # no CUDA 12 builds these
CUDA12_FLOOR = 50  # no CUDA 12 builds Kepler


def serving_flavour(gpu: Gpu, machine: Machine) -> Tuple[str, str]:
    """(flavour name, how to get it) of a build that would run natively on ``gpu`` with this driver;
    ("", what to do) when no toolkit we build with can serve it."""
    driver = machine.driver_cuda
    new_driver = driver is None or driver >= (13, 0)
    if gpu.cc < CUDA12_FLOOR:
        return "", f"sm_{gpu.cc} is built by no CUDA 12 or 13 toolkit (CUDA 11.8 was the last): use the cpu flavour"
    if new_driver and gpu.cc >= CUDA13_FLOOR:
        return f"cu130-sm{gpu.cc}", f"build it with --archs {gpu.cc} (CUDA 13, the default toolkit)"
    if gpu.cc in CUDA13_ONLY:
        return "", f"sm_{gpu.cc} needs a CUDA 13 flavour: update the NVIDIA driver to >= 580.65.06"
    cuda = CUDA12_BLACKWELL.get(gpu.cc, CUDA12_TOOLKIT)
    if driver is not None and (driver < (12, 0) or (cuda > CUDA12_TOOLKIT and driver < (12, 4))):
        return "", (f"this driver (CUDA {driver[0]}.{driver[1]}) is too old for any flavour we build; "
                    "update the NVIDIA driver (>= 525.60.13 for CUDA 12, >= 580.65.06 for CUDA 13)")
    how = (f"build it with --archs {gpu.cc} --cuda system:{cuda[0]}.{cuda[1]} and that toolkit installed "
           "(README: Drivers older than 580)")
    if not new_driver and gpu.cc >= CUDA13_FLOOR:
        how += ", or update the driver to >= 580 for the CUDA 13 flavours"
    return f"cu{cuda[0]}{cuda[1]}-sm{gpu.cc}", how


def refuse_cpu(machine: Machine, cands: Sequence[Candidate]) -> SelectError:
    """The CPU flavour would be chosen on a machine with NVIDIA GPUs: say why, and which flavour would serve."""
    cuda = [c for c in cands if c.entry.get("cuda")]
    why = "; ".join(f"{g.describe()}: {unused(g, cuda)}" for g in machine.gpus)
    return SelectError(f"no GPU flavour in the catalogue runs here, only the CPU one: {why}",
                       serving_flavours(machine) + "; or pass --allow-cpu to install the cpu flavour", SELECT_FAILED)


def serving_flavours(machine: Machine) -> str:
    """One clause per GPU: the flavour that would serve it and how to build it."""
    wants = []
    for g in machine.gpus:
        name, how = serving_flavour(g, machine)
        wants.append(f"{name} would serve {g.describe()}: {how}" if name else how)
    return "; ".join(dict.fromkeys(wants))


def cuda_rank(c: Candidate) -> Tuple[int, int]:
    """Newer CUDA first (negated for sorting): a 580 driver gets cu130, not the cu12 build of the same archs."""
    v = parse_cuda(str(c.entry.get("cuda") or "0"))
    return -v[0], -v[1]


def choose(catalogue: Dict[str, Any], machine: Machine, *, base_url: str,
           fits: Callable[[Dict[str, Any]], bool] | None = None, allow_cpu: bool = False) -> Choice:
    """The best flavour for ``machine``: native > PTX JIT > CPU, driver permitting; then the newest CUDA,
    then the smallest. The CPU flavour on a machine with GPUs only with ``allow_cpu`` (else SelectError)."""
    tags = this_platform()
    fit = fits or (lambda w: wheel_fits(w, machine_tags=tags))
    cands = [judge(name, entry, machine, fit) for name, entry in sorted(catalogue["flavours"].items())]
    ok = sorted((c for c in cands if c.tier < 9), key=lambda c: (c.tier, cuda_rank(c), c.size, c.flavour))
    if ok and ok[0].tier == 2 and machine.gpus and not allow_cpu:
        raise refuse_cpu(machine, cands)
    if not ok:
        reasons = "; ".join(w for c in cands for w in c.why[:1]) or "the catalogue is empty"
        drivers = [driver_problem(c.entry, machine) for c in cands if c.entry.get("cuda")]
        remedy = ("update the NVIDIA driver" if any(drivers) else
                  "ask for a flavour with code for these GPUs, or a cpu flavour")
        if machine.gpus:
            remedy = serving_flavours(machine)
        raise SelectError(f"no flavour in the catalogue runs here: {reasons}", remedy, SELECT_FAILED)
    best = ok[0]
    lines = list(best.why)
    if best.tier == 2 and machine.gpus:
        lines = [f"{g.describe()}: not used, {unused(g, [c for c in cands if c.entry.get('cuda')])}"
                 for g in machine.gpus]
        lines.append("warning: the CPU flavour on a machine with NVIDIA GPUs (--allow-cpu)")
    if not machine.gpus:
        lines = [f"no NVIDIA GPU ({machine.source}): {best.flavour} runs on the CPU"]
    if best.tier < 2 and machine.driver_cuda is None and not machine.driver:
        lines.append("the driver is unknown: assumed to support CUDA " + str(best.entry.get("cuda")) +
                     " (say --driver-cuda X.Y)")
    if best.tier == 1:
        lines.append(f"warning: {JIT_WARNING}")
    if best.tier == 0 and any(c.tier == 1 for c in ok):
        lines.append("native code preferred over PTX JIT: "
                     + ", ".join(c.flavour for c in ok if c.tier == 1) + " would JIT-compile")
    assert best.wheel is not None
    rel = str(best.entry.get("index") or f"{best.flavour}/")
    return Choice(best.flavour, best.wheel, urllib.parse.urljoin(base_url, rel), lines, best.tier == 1, cands)


def pip_command(choice: Choice, *, python: str, extras: Sequence[str] = (), index_only: bool = False) -> List[str]:
    req = PROJECT + (f"[{','.join(extras)}]" if extras else "") + f"=={choice.version}"
    return [python, "-m", "pip", "install", req, "--index-url" if index_only else "--extra-index-url",
            choice.index_url]


# ------------------------------------------------------------------ command line ----------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", default=None, metavar="URL",
                   help="the index root that holds flavours.json (URL or folder)")
    p.add_argument("--gpus", metavar="LIST", help="pretend these GPUs: compute capabilities like 9.0,8.6, or none")
    p.add_argument("--driver-cuda", metavar="X.Y", help="pretend a driver that supports this CUDA, e.g. 13.0")
    p.add_argument("--extra", action="append", default=[], metavar="NAME", help="install with this extra: server")
    p.add_argument("--index-only", action="store_true",
                   help="--index-url instead of --extra-index-url: nothing from PyPI (air-gapped machines)")
    p.add_argument("--install", action="store_true", help="run the pip command instead of printing it")
    p.add_argument("--allow-cpu", action="store_true",
                   help="take the CPU flavour when no GPU flavour runs here (without it, that is an error)")
    p.add_argument("--json", action="store_true", help="print the choice as JSON")


def subprocess_install(argv: List[str]) -> int:
    return subprocess.run(argv, check=False).returncode  # the user's own pip, in the foreground


def say(text: str) -> None:
    print(text, flush=True)  # before pip's own output


def run(args: argparse.Namespace, *, runner: Runner, install: Callable[[List[str]], int] = subprocess_install,
        default_index: str = "", out: Callable[[str], None] = say, nvml: Any = None, python: str = "") -> int:
    """Print (or with --install run) the pip command for the best flavour. ``python``: the interpreter the
    command names (default: this one, which is the user's when they run this script)."""
    index = args.index or DEFAULT_INDEX_URL or default_index
    if not index:
        raise SelectError("no index given", "pass --index URL (the index root that holds flavours.json)", 2)
    url = catalogue_url(index)
    detected = detect(runner, nvml=nvml) if args.gpus is None or args.driver_cuda is None else Machine(())
    machine = override(detected, args.gpus, args.driver_cuda)
    choice = choose(fetch_catalogue(url), machine, base_url=url, allow_cpu=bool(getattr(args, "allow_cpu", False)))
    cmd = pip_command(choice, python=python or sys.executable, extras=args.extra, index_only=args.index_only)
    if args.json:
        out(json.dumps({"flavour": choice.flavour, "version": choice.version, "index_url": choice.index_url,
                        "jit": choice.jit, "command": cmd, "explain": choice.lines,
                        "machine": {"source": machine.source, "driver": machine.driver,
                                    "driver_cuda": list(machine.driver_cuda) if machine.driver_cuda else None,
                                    "gpus": [[g.index, g.name, g.cc] for g in machine.gpus]}}, indent=2))
    else:
        cuda = f", driver CUDA {machine.driver_cuda[0]}.{machine.driver_cuda[1]}" if machine.driver_cuda else ""
        out(f"machine ({machine.source}): {len(machine.gpus)} GPU(s){cuda}")
        out(f"choice: {choice.flavour} ({PROJECT} {choice.version}, {choice.wheel.get('size', 0) / 1e6:.1f} MB)")
        for line in choice.lines:
            out(f"  {line}")
        out(" ".join(shlex.quote(c) for c in cmd))
    return install(cmd) if args.install else 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=SCRIPT_NAME, description=(__doc__ or "").splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args, runner=subprocess_runner)
    except SelectError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.return_code


if __name__ == "__main__":
    raise SystemExit(main())
