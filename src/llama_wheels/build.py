"""Execute a build plan: source -> toolkit -> compile -> post-process -> check -> wheelhouse."""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename

from llama_wheels import (
    bindings,
    cmd,
    compcache,
    farm,
    fatbin,
    manifest,
    provenance,
    sdist,
    shard,
    source,
    toolkit,
    wheels,
    windows,
)
from llama_wheels.clean import in_use, owned_subdir, remove_tree_within
from llama_wheels.compcache import CacheStats
from llama_wheels.config import Options
from llama_wheels.digest import sha256_file
from llama_wheels.errors import BuildFailed, FatalError, OfflineMissing
from llama_wheels.fs import move_into
from llama_wheels.log import Logger, fmt_bytes, fmt_seconds
from llama_wheels.plan import BuildStep, step_env


@dataclass
class StepResult:
    step: BuildStep
    ok: bool
    wheel: Path | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    cache: CacheStats = field(default_factory=CacheStats)
    error: str = ""
    entry: dict[str, Any] = field(default_factory=dict)
    shard: str = ""  # "i/K" for a shard run: objects into the cache, no wheel


def resolve_source(options: Options, offline: bool, env: Mapping[str, str]) -> sdist.Source:
    if offline:
        return sdist.find_offline(options.prefetch_dir, options.llama_cpp_python, options.sdist_sha256)
    return sdist.fetch(options.cache_dir, options.llama_cpp_python, options.sdist_sha256, dict(env))


def offline_wheels(options: Options) -> Path:
    folder = options.prefetch_dir / "wheels"
    if not folder.is_dir():
        raise OfflineMissing(f"{folder} does not exist", "run nox -s prefetch and carry the folder here")
    return folder


def frontend_command(src: Path, out: Path, build_dir: Path, frontend: str, settings: Sequence[str] = ()) -> list[str]:
    """The frontend's command line; ``settings``: more scikit-build-core config settings (``key=value``)."""
    every = [f"build-dir={build_dir}", *settings]
    if frontend == "pip":
        return [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-binary",
                "llama-cpp-python", "--wheel-dir", str(out), *(a for s in every for a in ("--config-settings", s)),
                str(src)]
    return [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
            *(f"-C{s}" for s in every), str(src)]


#: A shard's configure: scikit-build-core configures exactly as for the wheel (its CMake command does not
#: depend on these two settings), builds a target that compiles nothing and installs a component nothing
#: belongs to. The wheel it still packs (the Python files alone) stays in staging and is removed.
SHARD_CONFIGURE = ("build.targets=list_install_components", "install.components=llama-wheels-shard-none")


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def _staging(step: BuildStep, options: Options) -> Path:
    owned_subdir(options.build_dir, "tmp")
    owned_subdir(options.build_dir, step.build_dir.name)
    staging = owned_subdir(options.build_dir, "staging") / step.flavour
    if staging.exists():
        remove_tree_within(staging, options.build_dir)
    staging.mkdir(parents=True)
    return staging


def shard_plan(step: BuildStep, options: Options, env: Mapping[str, str], count: int,
               costs: Path | None) -> tuple[list[shard.CompileJob], shard.ShardPlan]:
    """The configured build dir's compile jobs (ninja's own listing) and their plan in ``count`` shards,
    costed by ``costs`` (a .ninja_log), else the table shipped for this version and flavour."""
    ninja = _ninja(step.build_dir, env)
    listing = cmd.run([ninja, "-C", str(step.build_dir), "-t", "targets", "all"], env=env, capture=True, quiet=True)
    compdb = cmd.run([ninja, "-C", str(step.build_dir), "-t", "compdb"], env=env, capture=True, quiet=True)
    jobs = shard.compile_jobs(listing.stdout, compdb.stdout, step.build_dir)
    table = costs or shard.cost_table(options.llama_cpp_python, step.flavour)
    known = shard.parse_ninja_log(table.read_text()) if table else {}
    where = (f"{table.name}" + ("" if costs else " (shipped)")) if table else \
        f"no cost table for {options.llama_cpp_python}-{step.flavour}: every job counted the same"
    return jobs, shard.plan([j.output for j in jobs], known, count, source=where)


def _ninja(build_dir: Path, env: Mapping[str, str]) -> str:
    """The ninja CMake configured this build dir with (CMAKE_MAKE_PROGRAM), else the one on PATH."""
    cache = build_dir / "CMakeCache.txt"
    text = cache.read_text(errors="replace") if cache.exists() else ""
    m = re.search(r"^CMAKE_MAKE_PROGRAM:[A-Z]+=(.+)$", text, re.MULTILINE)
    return m[1].strip() if m else (cmd.which("ninja", env) or "ninja")


def run_shard(step: BuildStep, options: Options, *, src: Path, base_env: Mapping[str, str], log: Logger,
              launcher: str | None, specs: Sequence[shard.ShardSpec], costs: Path | None,
              frontend: str = "build") -> StepResult:
    """Compile shards ``specs`` (of one plan) of the flavour's compile jobs into the compiler cache; no wheel. The
    configure is the wheel build's own (the same frontend and settings), so every compile command is the final
    build's."""
    spec = ", ".join(map(str, specs))
    env = step_env(step, base_env)
    staging = _staging(step, options)
    result = StepResult(step, ok=False, shard=spec)
    t0, c0 = time.monotonic(), _children_cpu()
    with compcache.CacheSession(launcher, env, staging) as session:  # as run_step: configure and compile inside
        with log.step(f"configure {step.flavour} for shard {spec}"):
            cmd.run(frontend_command(src, staging / "raw", step.build_dir, frontend, SHARD_CONFIGURE),
                    env={**env, **session.env}, log=staging / "build.log")
            remove_tree_within(staging / "raw", options.build_dir)  # the Python-only wheel: never a result
            jobs, plan = shard_plan(step, options, env, specs[0].count, costs)
            for line in plan.describe():
                log.info(line)
        mine = sorted(o for s in specs for o in plan.shards[s.index - 1])
        with log.step(f"compile shard {spec} of {step.flavour}: {len(mine)} of {len(jobs)} objects into the cache"):
            jobs_flag = ["-j", str(step.jobs)] if step.jobs else []
            if mine:
                cmd.run([_ninja(step.build_dir, env), "-C", str(step.build_dir), *jobs_flag, *mine],
                        env={**env, **session.env}, log=staging / "build.log")
        result.cache = session.stats()
    result.seconds, result.cpu_seconds = time.monotonic() - t0, _children_cpu() - c0
    result.ok = True
    result.entry = {"shard": str(spec), "objects": len(mine), "jobs": len(jobs), "cache": result.cache.as_dict()}
    log.info(f"shard {spec} of {step.flavour}: {len(mine)} objects, {fmt_seconds(result.seconds)}, "
             f"cache {result.cache.describe()}; no wheel (the final build collects them)")
    return result


def run_step(step: BuildStep, options: Options, *, src: Path, base_env: Mapping[str, str], log: Logger,
             launcher: str | None, offline: bool, frontend: str = "build", all_from_source: bool = False,
             shards: int | None = None, costs: Path | None = None) -> StepResult:
    env = step_env(step, base_env)
    staging = _staging(step, options)
    result = StepResult(step, ok=False)
    t0, c0 = time.monotonic(), _children_cpu()
    with compcache.CacheSession(launcher, env, staging) as session, \
            log.step(f"compile {step.flavour} ({', '.join(step.variants)})"):
        cmd.run(frontend_command(src, staging / "raw", step.build_dir, frontend), env={**env, **session.env},
                log=staging / "build.log")
        result.cache = session.stats()
    if shards:
        report_shards(step, options, env, staging, shards, costs, result, log)
    raw = next((staging / "raw").glob("*.whl"), None)
    if raw is None:
        raise BuildFailed(f"the build of {step.flavour} produced no wheel", f"see {staging / 'build.log'}")
    return finish(step, options, raw=raw, staging=staging, env=env, log=log, result=result, t0=t0, c0=c0,
                  offline=offline, all_from_source=all_from_source, src=src)


def report_shards(step: BuildStep, options: Options, env: Mapping[str, str], staging: Path, count: int,
                  costs: Path | None, result: StepResult, log: Logger) -> None:
    """After a final build of ``count`` shards: name each shard whose objects this build had to compile
    (its misses, by source, from ccache's stats log), from the same plan the shards made."""
    stats_log, server_log = staging / "ccache-stats.log", staging / "sccache-server.log"
    if not stats_log.exists() and not server_log.exists():
        log.warning(f"shards: {result.cache.misses} compile(s) missed the cache; naming their shard needs a "
                    "compiler cache's per-call log")
        return
    jobs, plan = shard_plan(step, options, env, count, costs)
    if stats_log.exists():  # ccache: each call's source and counters
        missed = shard.missed_sources(stats_log.read_text(errors="replace"), step.build_dir)
    else:  # sccache: our server's debug log, each call by its output
        outputs = shard.sccache_missed_outputs(server_log.read_text(errors="replace"))
        missed = {j.source for j in jobs if j.output in outputs}
    report = shard.attribute(plan, jobs, missed)
    for line in report.lines():
        (log.info if report.complete else log.warning)(line)
    result.entry["shards"] = {"count": count, "missing": {str(i): len(v) for i, v in report.missed.items()}}


def finish(step: BuildStep, options: Options, *, raw: Path, staging: Path, env: Mapping[str, str], log: Logger,
           result: StepResult, t0: float, c0: float, offline: bool, all_from_source: bool = False,
           src: Path | None = None) -> StepResult:
    """The one post-processing path for a compiled wheel (ours or cibuildwheel's): relabel, slim, runtime
    policy, arch verification, manylinux tag, the wheel check, dependency wheels, then the manifest.
    ``src``: the source tree compiled (its llama.h lets the binding check compare struct fields too)."""
    stock_size = raw.stat().st_size
    with log.step(f"post-process {step.flavour}"):
        root = wheels.unpack(raw, staging / "unpacked")
        wheels.relabel(root, step.version)
        identity = step.source or source.pypi_identity(options.llama_cpp_python, options.sdist_sha256)
        source.stamp_metadata(wheels.dist_info(root) / "METADATA", identity)
        slim = wheels.slim(root)
        bound = bindings.check_tree(root, src / "vendor" / "llama.cpp" / "include" / "llama.h" if src else None)
        if not bound.ok:
            log.warning(f"binding mismatch: {bound.one_line()} (the smoke fails on it)")
        requires: list[str] = []
        if step.arch_set is not None and step.toolkit.version:
            tk_lib = step.toolkit_root / "lib" if step.toolkit_root else None
            requires = wheels.apply_runtime(root, step.cuda_runtime, step.toolkit.version[0], toolkit_lib=tk_lib,
                                            nccl_lib=step.nccl_root / "lib" if step.nccl_root else None)
        else:
            wheels.local_runpaths(root)
        problems = wheels.elf_closure_problems(root)
        if problems:
            raise BuildFailed(f"slimming broke library links: {problems[0]}", "report this with the build log")
        embedded = None
        if step.arch_set is not None:
            libs = [root / "llama_cpp" / "lib" / n for n in ("libggml-cuda.so", "ggml-cuda.dll")]
            lib = next((p for p in libs if p.exists()), None)
            if lib is None:
                raise BuildFailed(f"the CUDA build of {step.flavour} has no ggml-cuda library in llama_cpp/lib",
                                  f"see {staging / 'build.log'}")
            cuobjdump = _cuobjdump(step, env)
            if cuobjdump:
                embedded = fatbin.verify(lib, step.arch_set, cuobjdump)
                log.info(f"archs verified: {embedded.describe()}")
            else:
                log.warning(f"cuobjdump not found: the archs in {lib.name} are NOT verified (manifest: "
                            "archs_verified false); pip install nvidia-cuda-cuobjdump")
        final_staged = wheels.pack(root, staging / "final")
        if step.windows and step.cuda_runtime == "bundle" and step.toolkit_root is not None:
            final_staged = windows.bundle(final_staged, staging / "bundled", step.toolkit_root, env)
        if not step.windows:
            final_staged, tag = wheels.manylinux_tag(final_staged, cuda_runtime=step.cuda_runtime
                                                     if step.arch_set else None, nccl=step.host.nccl,
                                                     memo=options.cache_dir / "auditwheel-tags")
            log.info(f"platform tag {tag.tag} (auditwheel: {tag.why})")
    report = wheels.check_wheel(final_staged, cuda_runtime=step.cuda_runtime if step.arch_set else None,
                                nccl=step.host.nccl)
    if not report.ok:
        raise BuildFailed(f"wheel check failed for {final_staged.name}: {report.problems[0]}",
                          "see nox -s check_wheels")
    deps_added = gather_dependency_wheels(step, options, final_staged, env, offline, all_from_source)
    result.seconds = time.monotonic() - t0
    result.cpu_seconds = _children_cpu() - c0
    final = step.out_dir / final_staged.name
    entry: dict[str, Any] = {
        "flavour": step.flavour, "filename": final.name, "sha256": report.sha256, "size": report.size,
        "stock_size": stock_size, "llama_cpp_python": identity.version, "sdist_sha256": identity.sdist_sha256,
        "source": identity.manifest(), "bindings": bound.as_dict(),
        "version": step.version, "variants": list(step.variants), "extras": list(step.extras),
        "archs": step.arch_set.cmake() if step.arch_set else None,
        "embedded": sorted(embedded.sass | embedded.ptx) if embedded else None,
        "archs_verified": embedded is not None if step.arch_set else None,
        "cuda": ".".join(map(str, step.toolkit.version)) if step.toolkit.version else None,
        "toolkit": step.toolkit.why, "cuda_runtime": step.cuda_runtime, "requires_added": requires,
        "host_compiler": _compiler_id(env), "cmake_args": list(step.cmake_args),
        "host_options": step.host.manifest(), "platform_tag": sorted(
            t.platform for t in parse_wheel_filename(final_staged.name)[3])[0],
        "glibc": _glibc_floor(final_staged.name),
        "build_seconds": round(result.seconds, 1), "cpu_seconds": round(result.cpu_seconds, 1),
        "cache": result.cache.as_dict(),
        "slim": {"dropped": slim.dropped, "deduplicated": slim.deduplicated, "renamed": slim.renamed},
        "dependency_wheels": sorted(deps_added), "dependencies": deps_added, "platform": platform.platform(),
        **result.entry,
        "inputs": provenance.record(step, options, env),  # what verify-rebuild and the statement read
    }
    previous = manifest.publish(options.wheelhouse, final_staged, final, entry, say=log.info)
    if previous and previous.get("sha256") != report.sha256:
        log.info(f"replaced {final.name}: sha256 {previous.get('sha256')} -> {report.sha256}")
    result.ok, result.wheel, result.entry = True, final, entry
    log.info(f"{final.name}: {fmt_bytes(report.size)} (stock {fmt_bytes(stock_size)}), "
             f"{fmt_seconds(result.seconds)}, cache {result.cache.describe()}")
    return result


def cibuildwheel(step: BuildStep, options: Options, *, src: Path, base_env: Mapping[str, str], log: Logger,
                 platform: str, offline: bool, print_only: bool = False) -> list[StepResult]:
    """The container/Windows route: cibuildwheel compiles (and auditwheel/delvewheel repair) into our
    staging folder, never the wheelhouse; each wheel then takes the same :func:`finish` as a local build."""
    staging = owned_subdir(options.build_dir, "staging") / f"cibw-{step.flavour}"
    if staging.exists():
        remove_tree_within(staging, options.build_dir)
    staging.mkdir(parents=True)
    cibw_env = {**base_env, "CMAKE_ARGS": step.env["CMAKE_ARGS"], "CIBW_PLATFORM": platform}
    extra = ["--print-build-identifiers"] if print_only else ["--output-dir", str(staging / "raw")]
    t0, c0 = time.monotonic(), _children_cpu()
    cmd.run([sys.executable, "-m", "cibuildwheel", "--config-file", str(options.project_root / "pyproject.toml"),
             *extra, str(src)], env=cibw_env)
    if print_only:
        return []
    raws = sorted((staging / "raw").glob("*.whl"))
    if not raws:
        raise BuildFailed(f"cibuildwheel produced no wheel for {step.flavour}", "see its output above")
    results = []
    for raw in raws:  # one Python is configured, so one wheel per platform
        sub = staging / raw.name.split("-")[-1].removesuffix(".whl")
        sub.mkdir()
        results.append(finish(step, options, raw=raw, staging=sub, env=cibw_env, log=log,
                              result=StepResult(step, ok=False), t0=t0, c0=c0, offline=offline))
    return results


def _glibc_floor(filename: str) -> str | None:
    """manylinux_2_28_x86_64 -> "2.28" (the oldest glibc the wheel runs on)."""
    m = re.search(r"-manylinux_(\d+)_(\d+)_", filename)
    return f"{m[1]}.{m[2]}" if m else None


def _cuobjdump(step: BuildStep, env: Mapping[str, str]) -> str | None:
    """The step's toolkit's cuobjdump (cuobjdump.exe on Windows), else the one on PATH."""
    return cmd.find_tool("cuobjdump", env, dirs=[step.toolkit_root / "bin"] if step.toolkit_root else [])


def _compiler_id(env: Mapping[str, str]) -> str:
    for name in (env.get("CXX", ""), "c++", "g++", "clang++", "cl"):
        if name and cmd.which(name, env):
            res = cmd.run([name, "--version"], env=env, capture=True, check=False, quiet=True)
            out = res.stdout.strip() or res.stderr.strip()  # cl writes its banner to stderr
            return out.splitlines()[0] if out else name
    return "unknown"


def gather_dependency_wheels(step: BuildStep, options: Options, wheel: Path, env: Mapping[str, str], offline: bool,
                 all_from_source: bool) -> dict[str, str]:
    """Put the wheels the flavour's variants need next to it, and prove the install resolves offline.

    Everything lands in the step's staging folder first; only new dependency wheels move into the
    wheelhouse (a rename, or copy + rename on the wheelhouse's filesystem when it is another one), so a
    failure here leaves the published flavour exactly as it was. Returns every dependency wheel of the
    resolution -> the sha256 of the file in the wheelhouse: the manifest records them, and only recorded
    wheels are checked, indexed and published.
    """
    out = step.out_dir
    out.mkdir(parents=True, exist_ok=True)
    deps = wheel.parent.parent / "deps"
    deps.mkdir(exist_ok=True)
    extras = f"[{','.join(step.extras)}]" if step.extras else ""
    req = f"llama-cpp-python{extras}=={step.version}"
    index = ["--no-index", "--find-links", str(offline_wheels(options))] if offline else []
    links = ["--find-links", str(wheel.parent), "--find-links", str(out)]
    if all_from_source:
        cmd.run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-binary", ":all:",
                 "--only-binary", "llama-cpp-python", "--wheel-dir", str(deps), *links, *index, req], env=env)
    else:
        cmd.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary", ":all:",
                 "--dest", str(deps), *links, *index, req], env=env)
    (deps / wheel.name).unlink(missing_ok=True)  # pip copied our wheel too; manifest.publish moves the real one
    # Resolve exactly as a user would, from these folders alone.
    resolves = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index",
             "--disable-pip-version-check", "--find-links", str(deps), "--find-links", str(wheel.parent), req]
    cmd.run(resolves, env=env, capture=True)
    recorded = {}
    for dep in sorted(deps.glob("*.whl")):
        if not (out / dep.name).exists():
            move_into(dep, out / dep.name)
        recorded[dep.name] = sha256_file(out / dep.name)
    return recorded


def summary_rows(results: Sequence[StepResult]) -> list[list[str]]:
    rows = []
    for r in results:
        e = r.entry
        if r.ok and r.shard:
            rows.append([r.step.flavour, f"shard {r.shard}: {e['objects']} objects into the cache, no wheel", "-", "-",
                         r.step.arch_set.cmake() if r.step.arch_set else "cpu", fmt_seconds(r.seconds),
                         r.cache.describe(), ", ".join(r.step.variants)])
            continue
        rows.append([
            r.step.flavour, e.get("filename", "-") if r.ok else "FAILED",
            fmt_bytes(e["size"]) if r.ok else "-", e.get("sha256", "")[:12] if r.ok else "-",
            (r.step.arch_set.cmake() + ("" if e.get("archs_verified", True) else " (NOT verified)"))
            if r.step.arch_set else "cpu", fmt_seconds(r.seconds),
            r.cache.describe(), ", ".join(r.step.variants),
        ])
    return rows


SUMMARY_HEADER = ["flavour", "wheel", "size", "sha256", "archs", "time", "cache hits", "variants"]


@dataclass(frozen=True)
class Sharding:
    """A shard run (``specs``: compile those shards into the cache, no wheel) or a final build after ``count``
    shards (name the shards whose objects missed); ``costs``: a .ninja_log instead of the shipped table."""

    specs: tuple[shard.ShardSpec, ...] = ()
    count: int | None = None
    costs: Path | None = None


def execute(steps: Sequence[BuildStep], options: Options, *, base_env: Mapping[str, str], log: Logger,
            launcher: str | None, offline: bool, keep_going: bool, frontend: str = "build",
            all_from_source: bool = False, archive: sdist.Source | None = None,
            sharding: Sharding | None = None) -> list[StepResult]:
    """``archive``: the archive of a git / llama.cpp source (None: the pinned PyPI sdist)."""
    with in_use(options.build_dir, "build", wait=True, log=log.info):
        return _execute(steps, options, base_env=base_env, log=log, launcher=launcher, offline=offline,
                        keep_going=keep_going, frontend=frontend, all_from_source=all_from_source, archive=archive,
                        sharding=sharding or Sharding())


def _execute(steps: Sequence[BuildStep], options: Options, *, base_env: Mapping[str, str], log: Logger,
             launcher: str | None, offline: bool, keep_going: bool, frontend: str,
             all_from_source: bool, archive: sdist.Source | None = None,
             sharding: Sharding) -> list[StepResult]:
    results: list[StepResult] = []
    base_env = {**base_env, **farm.client_env(options, base_env)}  # SCCACHE_CONF when a build farm is set
    try:
        with log.step("source"):
            chosen = archive or resolve_source(options, offline, base_env)
            src = sdist.extract(chosen, owned_subdir(options.build_dir, "src"))
            what = "the PyPI sdist" if archive is None else "the source archive"
            log.info(f"{chosen.path.name} (sha256 of {what} {chosen.original_sha256[:12]}..., "
                     f"{'slim' if chosen.slim else 'full'}) -> {src}")
        pypi_versions = {s.toolkit.version for s in steps if s.arch_set is not None and s.toolkit.source == "pypi"}
        for v in sorted(v for v in pypi_versions if v is not None):
            with log.step(f"CUDA {v[0]}.{v[1]} toolkit from PyPI"):
                root = toolkit.install_pypi_toolkit(options.cache_dir, v, find_links=offline_wheels(options)
                                                    if offline else None, env=dict(base_env))
                log.info(f"toolkit ready at {root}")
        for major in sorted({s.toolkit.version[0] for s in steps if s.nccl_root and s.toolkit.version}):
            with log.step(f"NCCL for CUDA {major} from PyPI"):
                root = toolkit.install_nccl(options.cache_dir, major, find_links=offline_wheels(options)
                                            if offline else None, env=dict(base_env))
                log.info(f"NCCL ready at {root}")
        for step in steps:
            if step.driver_stub is not None:
                if step.toolkit_root is None:
                    raise BuildFailed("a VMM build needs the toolkit's cuda.h for its libcuda link stub",
                                      "pass --cuda pypi:13.0 or a system toolkit, or set ggml option vmm = false")
                owned_subdir(options.build_dir, "stubs")
                with log.step("libcuda link stub (VMM) from cuda.h"):
                    stub = toolkit.make_driver_stub(step.toolkit_root, step.driver_stub, dict(base_env))
                    log.info(f"{stub}: SONAME libcuda.so.1, link-time only")
                break
        for step in steps:
            try:
                with manifest.flavour_lock(options.wheelhouse, step.flavour, say=log.info):
                    if sharding.specs:
                        results.append(run_shard(step, options, src=src, base_env=base_env, log=log,
                                                 launcher=launcher, specs=sharding.specs, costs=sharding.costs,
                                                 frontend=frontend))
                        continue
                    results.append(run_step(step, options, src=src, base_env=base_env, log=log, launcher=launcher,
                                            offline=offline, frontend=frontend, all_from_source=all_from_source,
                                            shards=sharding.count, costs=sharding.costs))
            except FatalError as exc:
                log.error(f"{step.flavour}: {exc.one_line()}")
                results.append(StepResult(step, ok=False, error=exc.message))
                if not keep_going:
                    break
    finally:
        ran = {id(r.step) for r in results}
        rows = summary_rows(results) + [[s.flavour, "not run", "-", "-", s.arch_set.cmake() if s.arch_set else "cpu",
                                         "-", "-", ", ".join(s.variants)] for s in steps if id(s) not in ran]
        log.table("build summary", SUMMARY_HEADER, rows)
    failed = [r for r in results if not r.ok]
    if failed or len(results) < len(steps):
        first = failed[0] if failed else None
        raise BuildFailed(f"{len(failed) or len(steps) - len(results)} of {len(steps)} build step(s) failed"
                          + (f": {first.step.flavour}: {first.error.splitlines()[0]}" if first else ""),
                          "fix the first error above and run again (the wheelhouse holds only good wheels)")
    return results

