"""Options resolve in one place: defaults -> [tool.llama-wheels] -> LLAMA_WHEELS_* env -> CLI.

The environment is passed in as a mapping (tests never patch ``os.environ``). Unknown keys fail
with "did you mean". The result is frozen and printed at the start of every run.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import platformdirs
from packaging.version import InvalidVersion, Version

from llama_wheels.archs import parse_arch_set
from llama_wheels.errors import ConfigError
from llama_wheels.log import Logger

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_PREFIX = "LLAMA_WHEELS_"
#: The oldest build Python: the package itself runs inside the build sessions.
MIN_PYTHON = (3, 10)
TABLE = "tool.llama-wheels"

#: The one set of defaults. [tool.llama-wheels] in pyproject.toml holds only what a project changes.
DEFAULTS: dict[str, Any] = {
    "llama-cpp-python": "0.3.36",
    "sdist-sha256": "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
    "python": "3.11",
    "default-arch-set": "universal",
    "cuda": "auto",
    "cuda-runtime": "pip",
    "ptx": "highest",
    "build-dir": "",
    "cache-dir": "",
    "wheelhouse": "wheelhouse",
    "prefetch-dir": ".prefetch",
    "cmake-args": [],
    # Named arch sets. A project's [tool.llama-wheels.arch-sets] adds to these (a same name replaces that
    # one set); replace-default-arch-sets = true keeps only the project's. What each runs on: the README.
    "arch-sets": {"universal": "86;89;120", "ampere": "86", "ada": "89", "hopper": "90", "blackwell": "120",
                  "turing": "75", "ampere-dc": "80"},
    "replace-default-arch-sets": False,
    "variants": {"default": {"extras": []}, "server": {"extras": ["server"]}},
    # The compiler cache: a local dir per runner, optionally a remote shared by a fleet.
    "cache": {"backend": "ccache", "local-dir": "", "size": "10G", "remote": "", "read-only": False,
              "dist-scheduler": ""},
    # ggml options llama.cpp would decide by looking at the build host (policy.HOST_OPTIONS); empty = ours.
    "ggml": {},
}
CACHE_KEYS: dict[str, type] = {"backend": str, "local-dir": str, "size": str, "remote": str, "read-only": bool,
                               "dist-scheduler": str}
SCALAR_KEYS = tuple(k for k, v in DEFAULTS.items() if not isinstance(v, dict))
#: Environment variables with our prefix that are not options.
ENV_NON_OPTIONS = frozenset({"LLAMA_WHEELS_DEBUG", "LLAMA_WHEELS_ROOT", "LLAMA_WHEELS_PROG",
                             # build farm secrets: read from the environment only, never from a file of ours
                             "LLAMA_WHEELS_DIST_TOKEN", "LLAMA_WHEELS_DIST_SERVER_TOKEN",
                             # provenance signing (a secret) and the runner's labels (provenance.py)
                             "LLAMA_WHEELS_SIGNING_KEY", "LLAMA_WHEELS_SIGNING_KEY_PASSWORD",
                             "LLAMA_WHEELS_RUNNER_LABELS"})
VARIANT_KEYS = frozenset({"extras", "cmake-args", "ggml"})
_CUDA_RE = re.compile(r"^(auto|system|system:\d+\.\d+|pypi:\d+\.\d+)$")


@dataclass(frozen=True)
class Variant:
    """A named build variant: extras to install with the wheel and CMake flags to add."""

    name: str
    extras: tuple[str, ...] = ()
    cmake_args: tuple[str, ...] = ()
    ggml: Mapping[str, bool | str] = field(default_factory=lambda: MappingProxyType({}))  # policy.HOST_OPTIONS


@dataclass(frozen=True)
class CompilerCache:
    """``backend`` ccache | sccache | none; ``remote``: see REMOTE_FORMS (sccache puts it behind its
    local disk in a two-level chain); ``read_only``: use the remote without writing to it."""

    backend: str
    local_dir: Path
    size: str
    remote: str
    read_only: bool
    dist_scheduler: str = ""  # sccache-dist scheduler URL: compile on a build farm (farm.py)

    @property
    def remote_display(self) -> str:
        return redact(self.remote) or "(none)"


def redact(url: str) -> str:
    """A URL with any password or token replaced, for printing."""
    return re.sub(r"(?<=://)[^/@]*@", "***@", url)


@dataclass(frozen=True)
class Options:
    project_root: Path
    llama_cpp_python: str
    sdist_sha256: str
    python: str
    default_arch_set: str
    arch_sets: Mapping[str, str]
    variants: tuple[Variant, ...]
    cuda: str
    cuda_runtime: str
    ptx: str
    build_dir: Path
    cache_dir: Path
    wheelhouse: Path
    prefetch_dir: Path
    cmake_args: tuple[str, ...]
    compiler_cache: CompilerCache = field(default_factory=lambda: CompilerCache("none", Path(), "", "", False))
    ggml: Mapping[str, bool | str] = field(default_factory=lambda: MappingProxyType({}))  # policy.HOST_OPTIONS
    origin: Mapping[str, str] = field(default_factory=dict)  # key -> "default" | "pyproject" | "env" | "cli"

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        names = [v.name for v in self.variants]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"unknown variant '{name}'", f"{hint}configured: {', '.join(names)}")

    def describe(self) -> list[str]:
        """The resolved options, one per line, each with where it came from."""
        rows = [
            ("llama-cpp-python", self.llama_cpp_python), ("sdist-sha256", self.sdist_sha256),
            ("python", self.python), ("default-arch-set", self.default_arch_set), ("cuda", self.cuda),
            ("cuda-runtime", self.cuda_runtime), ("ptx", self.ptx), ("build-dir", str(self.build_dir)),
            ("cache-dir", str(self.cache_dir)), ("wheelhouse", str(self.wheelhouse)),
            ("prefetch-dir", str(self.prefetch_dir)), ("cmake-args", shlex.join(self.cmake_args) or "(none)"),
            ("arch-sets", ", ".join(f"{k}={v}" for k, v in self.arch_sets.items())),
            ("variants", ", ".join(f"{v.name}[{','.join(v.extras)}]" if v.extras else v.name for v in self.variants)),
            ("ggml", ", ".join(f"{k}={v}" for k, v in self.ggml.items()) or "(llama-wheels defaults)"),
            ("cache", f"{self.compiler_cache.backend} at {self.compiler_cache.local_dir} ({self.compiler_cache.size}), "
                      f"remote {self.compiler_cache.remote_display}"
                      + (" read-only" if self.compiler_cache.read_only else "")
                      + (f", farm {redact(self.compiler_cache.dist_scheduler)}" if self.compiler_cache.dist_scheduler
                         else "")),
        ]
        return [f"  {k:<17} {v}  ({self.origin.get(k, 'default')})" for k, v in rows]


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"


def load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "fix the syntax at that line") from None


def load_pyproject(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    data = load_toml(path)
    table = data.get("tool", {}).get("llama-wheels", {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{TABLE}] in {path} must be a table", f"write it as a [{TABLE}] section")
    return table


def _check_table(table: Mapping[str, Any], where: str) -> None:
    known = list(DEFAULTS)
    for key, value in table.items():
        if key not in DEFAULTS:
            raise ConfigError(f"unknown key '{key}' in [{TABLE}] ({where})", _did_you_mean(key, known))
        expected = type(DEFAULTS[key])
        if not isinstance(value, expected):
            raise ConfigError(f"[{TABLE}] {key} must be a {expected.__name__}, got {type(value).__name__} ({where})",
                              f"see the README's configuration section for {key}")
    for name, spec in table.get("arch-sets", {}).items():
        if not isinstance(spec, str):
            raise ConfigError(f"[{TABLE}.arch-sets] {name} must be a string like \"86;89\" ({where})",
                              "quote the arch list")
    for key, value in table.get("cache", {}).items():
        if key not in CACHE_KEYS:
            raise ConfigError(f"unknown key '{key}' in [{TABLE}.cache] ({where})", _did_you_mean(key, list(CACHE_KEYS)))
        if not isinstance(value, CACHE_KEYS[key]):
            raise ConfigError(f"[{TABLE}.cache] {key} must be a {CACHE_KEYS[key].__name__} ({where})",
                              "see the README's configuration section")
    for name, body in table.get("variants", {}).items():
        if not isinstance(body, dict):
            raise ConfigError(f"[{TABLE}.variants.{name}] must be a table ({where})",
                              f"write [{TABLE}.variants.{name}] with extras = [...]")
        for k in body:
            if k not in VARIANT_KEYS:
                raise ConfigError(f"unknown key '{k}' in [{TABLE}.variants.{name}] ({where})",
                                  _did_you_mean(k, sorted(VARIANT_KEYS)))
        if not isinstance(body.get("ggml", {}), dict):
            raise ConfigError(f"[{TABLE}.variants.{name}] ggml must be a table ({where})",
                              "write ggml = { nccl = true }")
        check_ggml(body.get("ggml", {}), f"variant {name}, {where}")
    check_ggml(table.get("ggml", {}), where)


def check_default_set(name: str, arch_sets: Mapping[str, str], ptx: str, where: str) -> None:
    """``default-arch-set`` names a configured set, or is itself an arch list ("86;89"); else one line
    that names the key and both fixes."""
    if re.search(r"\d", name):
        parse_arch_set(name, ptx=ptx)  # a literal list ("86;89"): its own errors name the bad arch
        return
    close = difflib.get_close_matches(name, list(arch_sets), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(f"default-arch-set = '{name}' ({where}) is not among arch-sets ({', '.join(arch_sets)})",
                      f"{hint}set default-arch-set to one of them, or add {name} to [{TABLE}.arch-sets]")


def check_ggml(table: Mapping[str, Any], where: str) -> dict[str, bool | str]:
    from llama_wheels.policy import check_table

    return check_table(table, where)


def session_python(root: Path, env: Mapping[str, str]) -> str:
    """The build Python for nox's ``python=``, read at import without resolving anything else.

    Never raises: a value that is missing, unreadable or invalid gives the default, and the session
    then reports the real configuration error in one line when it resolves the options."""
    value: object = env.get(ENV_PREFIX + "PYTHON")
    if value is None:
        try:
            value = load_pyproject(root).get("python")
        except (ConfigError, OSError, UnicodeDecodeError):
            value = None
    text = value if isinstance(value, str) else ""
    m = re.fullmatch(r"(\d+)\.(\d+)", text)
    if m is None or (int(m[1]), int(m[2])) < MIN_PYTHON:
        return str(DEFAULTS["python"])
    return text


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (``--jobs 0`` or ``-3`` is an error naming the fix)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number; give a count >= 1, e.g. 4") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1; give a count >= 1, e.g. 4, or leave the flag out "
                                         "for the default")
    return value


def non_empty(text: str) -> str:
    """argparse type: a value that is not blank (``--archs ""`` must not mean 'the default set')."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty value is not allowed; give a value (e.g. \"86;89\") or leave "
                                         "the flag out for the default")
    return text


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1-65535; 0 means "a free one", as leaving the flag out does."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port: give 1-65535, or 0 (or leave the flag out) "
                                         "for a free one")
    return value


def not_blank(example: str) -> Callable[[str], str]:
    """argparse type: a value that is not blank, for flags whose absence means a default (``--model ""``
    must not quietly mean the default model)."""
    def check(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"an empty value is not allowed; give {example}, or leave the flag out "
                                             "for the default")
        return text
    return check


def env_values(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    known = [ENV_PREFIX + k.upper().replace("-", "_") for k in SCALAR_KEYS]
    cache_env = {ENV_PREFIX + "CACHE_" + k.upper().replace("-", "_"): k for k in CACHE_KEYS}
    from llama_wheels.policy import BY_KEY

    ggml_env = {ENV_PREFIX + "GGML_" + k.upper().replace("-", "_"): k for k in BY_KEY}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_NON_OPTIONS:
            continue
        if name in cache_env:
            key = cache_env[name]
            parsed: Any = value.lower() in ("1", "true", "yes") if CACHE_KEYS[key] is bool else value
            out.setdefault("cache", {})[key] = parsed
            continue
        if name in ggml_env:
            out.setdefault("ggml", {})[ggml_env[name]] = value
            continue
        if name not in known:
            raise ConfigError(f"unknown environment variable {name}",
                              _did_you_mean(name, [*known, *cache_env, *ggml_env]))
        key = name[len(ENV_PREFIX):].lower().replace("_", "-")
        out[key] = shlex.split(value) if isinstance(DEFAULTS[key], list) else value
    return out


def default_build_dir(root: Path, windows: bool) -> Path:
    # The hand procedure's `set TEMP=D:\temp`: short, because MSVC + CUDA + CMake paths overflow MAX_PATH.
    return Path(r"C:\lwb") if windows else root / "build"


# Remote URL schemes each backend understands, and how to write them.
REMOTE_SCHEMES = {"ccache": ("redis", "rediss", "http", "https", "file"),
                  "sccache": ("redis", "rediss", "s3", "gs", "http", "https")}
REMOTE_FORMS = {"ccache": "redis://host:port, http(s)://host/path or file:/shared/dir",
                "sccache": "redis://host:port, s3://bucket/prefix, gs://bucket/prefix or http(s)://webdav/path"}


def remote_scheme(remote: str) -> str:
    return "file" if remote.startswith("file:") else urlsplit(remote).scheme


def check_remote_url(backend: str, remote: str) -> None:
    """A remote URL the chosen backend can use, else a ConfigError naming the forms it takes."""
    if backend == "none":
        return
    scheme = remote_scheme(remote)
    ok = scheme in REMOTE_SCHEMES[backend] and (scheme == "file" or "://" in remote)
    if ok and scheme in ("s3", "gs") and not urlsplit(remote).netloc:
        ok = False
    if not ok:
        other = next((b for b, schemes in REMOTE_SCHEMES.items() if b != backend and scheme in schemes), "")
        hint = f" (that is a {other} remote: set backend = \"{other}\")" if other else ""
        raise ConfigError(f"cache remote '{redact(remote)}' is not a URL {backend} knows{hint}",
                          f"use {REMOTE_FORMS[backend]}")


def resolve(root: Path, env: Mapping[str, str], cli: Mapping[str, Any] | None = None,
            *, windows: bool | None = None) -> Options:
    """Resolve options for the project at ``root``. ``cli`` holds only flags the user gave."""
    windows = sys.platform == "win32" if windows is None else windows
    root = root.resolve()  # every derived path is absolute (ccache rejects a relative CCACHE_BASEDIR)
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
    origin: dict[str, str] = {}
    own_sets: dict[str, Any] = {}  # the arch sets the project names itself (pyproject, env, CLI)
    table = load_pyproject(root)
    _check_table(table, "pyproject.toml")
    for layer_name, layer in (("pyproject", table), ("env", env_values(env)), ("cli", dict(cli or {}))):
        for key, value in layer.items():
            if value is None:
                continue
            if key not in DEFAULTS:
                raise ConfigError(f"unknown option '{key}' ({layer_name})", _did_you_mean(key, list(DEFAULTS)))
            if key in ("cache", "ggml", "arch-sets"):  # merged key by key: env/CLI may set only the remote, say
                merged[key] = {**merged[key], **{k: v for k, v in value.items() if v is not None}}
                if key == "arch-sets":
                    own_sets.update(value)
            else:
                merged[key] = value
            origin[key] = layer_name
    version, sha = str(merged["llama-cpp-python"]), str(merged["sdist-sha256"]).lower()
    try:
        Version(version)
    except InvalidVersion:
        raise ConfigError(f"llama-cpp-python = '{version}' is not a version", "write it like 0.3.36") from None
    if origin.get("llama-cpp-python", "default") != origin.get("sdist-sha256", "default") and \
            version != DEFAULTS["llama-cpp-python"]:
        raise ConfigError(f"llama-cpp-python {version} is set without its sdist sha256",
                          "set sdist-sha256 next to it (sha256 of the .tar.gz on PyPI)")
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ConfigError(f"sdist-sha256 '{sha}' is not a sha256", "give the 64 hex digits of the sdist's sha256")
    if not re.fullmatch(r"\d+\.\d+", str(merged["python"])):
        raise ConfigError(f"python = '{merged['python']}' is not a major.minor version", "write it like 3.11")
    if tuple(int(x) for x in str(merged["python"]).split(".")) < MIN_PYTHON:
        raise ConfigError(f"python = '{merged['python']}' is too old for the build sessions",
                          f"use {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer, e.g. 3.11 (the wheel serves every Python 3)")
    if not _CUDA_RE.match(str(merged["cuda"])):
        raise ConfigError(f"cuda = '{merged['cuda']}' is not valid",
                          "use auto, system, system:<major.minor> (e.g. system:12.4) or pypi:<major.minor>, "
                          "e.g. pypi:13.0")
    if merged["cuda-runtime"] not in ("pip", "system", "bundle"):
        raise ConfigError(f"cuda-runtime = '{merged['cuda-runtime']}' is not valid", "use pip, system or bundle")
    replace_sets = merged["replace-default-arch-sets"]
    if isinstance(replace_sets, str):  # from LLAMA_WHEELS_REPLACE_DEFAULT_ARCH_SETS
        replace_sets = replace_sets.strip().lower() in ("1", "true", "yes")
    if replace_sets and not own_sets:
        raise ConfigError("replace-default-arch-sets = true, but no arch set is configured",
                          f"add [{TABLE}.arch-sets] with at least one set, e.g. turing = \"75\", "
                          "or drop replace-default-arch-sets")
    arch_sets = {str(k): str(v) for k, v in (own_sets if replace_sets else merged["arch-sets"]).items()}
    if "auto" in arch_sets:
        raise ConfigError("an arch set may not be named 'auto'", "auto means 'the GPUs present'; rename yours")
    for name, spec in arch_sets.items():
        parse_arch_set(spec, ptx=str(merged["ptx"]), source=name)  # validates each set now, not mid-build
    default_set = str(merged["default-arch-set"])
    if default_set not in arch_sets:
        check_default_set(default_set, arch_sets, str(merged["ptx"]), origin.get("default-arch-set", "default"))
    variants = tuple(
        Variant(name, tuple(body.get("extras", ())), tuple(body.get("cmake-args", ())),
                MappingProxyType(check_ggml(body.get("ggml", {}), f"variant {name}")))
        for name, body in merged["variants"].items()
    )
    if not variants:
        raise ConfigError("no variants are configured", f"add [{TABLE}.variants.default] with extras = []")

    def path_opt(key: str, fallback: Path) -> Path:
        raw = str(merged[key])
        if not raw:
            return fallback
        p = Path(raw).expanduser()
        return p if p.is_absolute() else root / p

    cache = merged["cache"]
    if cache["backend"] not in ("ccache", "sccache", "none"):
        raise ConfigError(f"cache backend '{cache['backend']}' is not valid", "use ccache, sccache or none")
    remote = str(cache["remote"])
    if remote:
        check_remote_url(str(cache["backend"]), remote)
    cache_root = path_opt("cache-dir", Path(platformdirs.user_cache_dir("llama-wheels", appauthor=False)))
    local = Path(str(cache["local-dir"])).expanduser() if cache["local-dir"] else cache_root / "ccache"
    scheduler = str(cache["dist-scheduler"])
    if scheduler:
        if cache["backend"] != "sccache":
            raise ConfigError(f"dist-scheduler is set, but the cache backend is '{cache['backend']}'",
                              'a build farm is sccache-dist: set [tool.llama-wheels.cache] backend = "sccache" '
                              "(or LLAMA_WHEELS_CACHE_BACKEND=sccache)")
        if urlsplit(scheduler).scheme not in ("http", "https") or not urlsplit(scheduler).hostname:
            raise ConfigError(f"dist-scheduler '{redact(scheduler)}' is not an http(s) URL",
                              "write it like https://farm.internal:10600")
    compiler_cache = CompilerCache(str(cache["backend"]), local if local.is_absolute() else root / local,
                                   str(cache["size"]), remote, bool(cache["read-only"]), scheduler)
    return Options(
        compiler_cache=compiler_cache,
        project_root=root,
        llama_cpp_python=version,
        sdist_sha256=sha,
        python=str(merged["python"]),
        default_arch_set=default_set,
        arch_sets=MappingProxyType(arch_sets),
        variants=variants,
        cuda=str(merged["cuda"]),
        cuda_runtime=str(merged["cuda-runtime"]),
        ptx=str(merged["ptx"]),
        build_dir=path_opt("build-dir", default_build_dir(root, windows)),
        cache_dir=path_opt("cache-dir", Path(platformdirs.user_cache_dir("llama-wheels", appauthor=False))),
        wheelhouse=path_opt("wheelhouse", root / "wheelhouse"),
        prefetch_dir=path_opt("prefetch-dir", root / ".prefetch"),
        cmake_args=tuple(str(a) for a in merged["cmake-args"]),
        ggml=MappingProxyType(check_ggml(merged["ggml"], origin.get("ggml", "default"))),
        origin=MappingProxyType(origin),
    )


def project_root(env: Mapping[str, str], cwd: Path | None = None) -> Path:
    """LLAMA_WHEELS_ROOT, else the nearest folder up from ``cwd`` whose pyproject.toml is llama-wheels'."""
    if env.get("LLAMA_WHEELS_ROOT"):
        return Path(env["LLAMA_WHEELS_ROOT"]).resolve()
    here = (cwd or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").exists() and "llama-wheels" in (p / "pyproject.toml").read_text(encoding="utf-8"):
            return p
    return here


def load_options(env: Mapping[str, str], cli: Mapping[str, Any] | None = None, log: Logger | None = None) -> Options:
    """The options of the project around us (see :func:`project_root`): :func:`resolve` with the flags
    the user gave (``None`` values are dropped). With ``log``, every value is printed with its origin."""
    options = resolve(project_root(env), env, {k: v for k, v in (cli or {}).items() if v is not None})
    if log is not None:
        log.info("llama-wheels options:")
        for line in options.describe():
            log.info(line)
    return options
