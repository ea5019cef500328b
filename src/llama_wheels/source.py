"""Source kinds: what a build compiles, resolved to an immutable identity before anything is planned.

Three kinds (``--source`` / ``--llama-cpp``):

- ``pypi`` (the default): the pinned PyPI sdist, verified by its sha256 (:mod:`llama_wheels.sdist`).
- ``git``: llama-cpp-python at a git ref, ``URL@tag|commit|branch`` or a local checkout, with its
  ``vendor/llama.cpp`` submodule at the commit the superproject records (its gitlink).
- ``llama``: a llama.cpp commit (``URL@commit`` or a local checkout) swapped in for the vendored one,
  on top of the PyPI sdist or of a ``git`` source.

A branch is resolved to a commit (the plan shows both); a dirty local checkout is refused unless
``allow_dirty``, and then its label carries ``dirty<hash of the files>``. Every kind becomes one
deterministic ``.tar.gz`` in ``<cache>/sources/`` (same input, same bytes), shaped like an sdist, so the
extract, slim and prefetch steps treat it as one; its sha256 is the source's cache key, and its sidecar
``<archive>.json`` holds the identity (offline runs read it from the prefetch folder).

The wheel's version carries the identity as PEP 440 local-label segments after the flavour's:
``0.3.36+cu130.sm90.git1a2b3c4``, ``0.3.36+cu130.sm90.llama5d6e7f8``, ``....llama5d6e7f8.dirty0a1b2c``.
Each hex id has a letter prefix: a segment of digits alone is a number to PEP 440 (``0123456`` would be
normalised to ``123456`` and no longer match the filename), and the prefix says which tree it names.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from llama_wheels import cmd, sdist
from llama_wheels.digest import sha256_file
from llama_wheels.errors import ChecksumError, CommandFailed, ConfigError, OfflineMissing, SourceError

VENDOR = "vendor/llama.cpp"
#: A fixed mtime for every member: the archive's bytes depend on the trees alone.
MTIME = 1_700_000_000
_HEX = re.compile(r"[0-9a-f]{7,40}")
#: Left out of a llama.cpp tree: the tokenizer test vocabularies (models/ggml-vocab-*.gguf, up to ~12 MB each).
#: They are not built, the slim sdist drops them too, and snapshots without large files lack them.
LLAMA_EXCLUDE = ("models/*.gguf",)


@dataclass(frozen=True)
class GitTree:
    """One git tree at a commit: where it came from, what was asked, what it resolved to."""

    url: str  # as given: a URL, or the absolute path of a local checkout
    ref: str  # as asked: a branch, tag, commit, or "HEAD" of a local checkout
    commit: str  # 40 hex digits
    ref_kind: str  # branch | tag | commit | head | gitlink
    dirty: str = ""  # "" for a clean tree, else 6 hex digits of the sha256 of its files

    def token(self, prefix: str) -> list[str]:
        return [f"{prefix}{self.commit[:7]}", *([f"dirty{self.dirty}"] if self.dirty else [])]

    def describe(self) -> str:
        at = self.commit if self.ref in ("", self.commit) else f"{self.ref} ({self.ref_kind}) = {self.commit}"
        return f"{self.url} @ {at}" + (f", DIRTY working tree (files sha256 {self.dirty}...)" if self.dirty else "")


@dataclass(frozen=True)
class SourceIdentity:
    """What a wheel was built from. ``kind`` pypi | git | llama."""

    kind: str
    version: str  # llama-cpp-python's own version (the wheel's public version)
    sdist_sha256: str = ""  # the PyPI sdist (pypi kind, and a llama swap on top of it)
    package: GitTree | None = None  # llama-cpp-python from git
    llama_cpp: GitTree | None = None  # the llama.cpp tree compiled: the swapped one, or a git source's gitlink
    archive_sha256: str = ""  # the materialised source archive: the cache key
    spec: str = field(default="", compare=False)  # the --source / --llama-cpp text, to find it offline

    def label_tokens(self) -> tuple[str, ...]:
        """PEP 440 local-label segments naming the source; none for the pinned sdist."""
        out: list[str] = []
        if self.package is not None:
            out += self.package.token("git")
        if self.kind == "llama" and self.llama_cpp is not None:
            out += self.llama_cpp.token("llama")
        return tuple(out)

    @property
    def dirty(self) -> bool:
        return any(t is not None and t.dirty for t in (self.package, self.llama_cpp))

    def describe(self) -> list[str]:
        lines = [f"  source     {self.kind}: llama-cpp-python {self.version}"
                 + (f" (PyPI sdist sha256 {self.sdist_sha256[:12]}...)" if self.sdist_sha256 else "")]
        if self.package is not None:
            lines.append(f"    llama-cpp-python  {self.package.describe()}")
        if self.llama_cpp is not None:
            what = "llama.cpp (swapped in)" if self.kind == "llama" else "llama.cpp (vendored)"
            lines.append(f"    {what:<17} {self.llama_cpp.describe()}")
        if self.archive_sha256:
            lines.append(f"    archive sha256    {self.archive_sha256}")
        return lines

    def manifest(self) -> dict[str, Any]:
        """The manifest's ``source`` field."""
        return {k: v for k, v in asdict(self).items() if v not in ("", None)}

    def metadata_urls(self) -> list[str]:
        """``Project-URL`` values for the wheel's METADATA: ``label, URL`` naming each tree's commit."""
        out = []
        if self.package is not None:
            out.append(f"Source-llama-cpp-python, {_url_at(self.package)}")
        if self.llama_cpp is not None:
            out.append(f"Source-llama.cpp, {_url_at(self.llama_cpp)}")
        if self.kind == "pypi" or (self.kind == "llama" and self.package is None):
            out.append(f"Source-sdist, https://pypi.org/project/llama-cpp-python/{self.version}/"
                       f"#sha256={self.sdist_sha256}")
        return out


def _url_at(tree: GitTree) -> str:
    url = tree.url if "://" in tree.url else Path(tree.url).as_uri() if tree.url.startswith("/") else tree.url
    return f"{url}@{tree.commit}" + (f"+dirty{tree.dirty}" if tree.dirty else "")


def pypi_identity(version: str, sdist_sha256: str) -> SourceIdentity:
    return SourceIdentity("pypi", version, sdist_sha256=sdist_sha256, archive_sha256=sdist_sha256)


# ----------------------------------------------------------------------------------- specs -------------


def parse_spec(text: str) -> tuple[str, str]:
    """``URL@ref`` -> (URL, ref); a local path alone -> (absolute path, ""). ``git@host:x/y`` stays a URL."""
    text = text.strip()
    if not text:
        raise ConfigError("an empty source was given", "write URL@ref (a tag, branch or commit) or a local path")
    url, sep, ref = text.rpartition("@")
    if not sep or not url or ":" in ref or ref.startswith("/") or not ref:
        url, ref = text, ""
    if "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url):  # a path
        p = Path(url).expanduser()
        if not p.is_dir():
            raise ConfigError(f"source '{text}' is neither a URL@ref nor a local folder",
                              "give https://host/repo.git@TAG, a commit, or the path of a git checkout")
        url = str(p.resolve())
    elif not ref:
        raise ConfigError(f"source '{text}' names no ref", f"write {text}@TAG (or @COMMIT or @BRANCH)")
    return url, ref


def _local(url: str) -> bool:
    return url.startswith("/")


# ----------------------------------------------------------------------------------- git ---------------


def _git(args: Sequence[str], env: Mapping[str, str], *, cwd: Path | None = None) -> str:
    base = ["git", *(["-C", str(cwd)] if cwd else [])]
    full = {**env, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    return cmd.run([*base, *args], env=full, capture=True, quiet=True).stdout


def ls_remote(url: str, ref: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """(commit, kind) for a branch or tag name at ``url``; None if it names neither."""
    try:
        out = _git(["ls-remote", "--heads", "--tags", url, ref, f"{ref}^{{}}"], env)
    except CommandFailed as exc:
        raise SourceError(f"cannot read git refs from {url}: {exc.message.splitlines()[-1]}",
                          "check the URL and the network (offline: use a source carried by nox -s prefetch)") from None
    refs: dict[str, str] = {}
    for line in out.splitlines():
        if "\t" in line:
            sha, name = line.split("\t", 1)
            refs[name] = sha
    for name, kind in ((f"refs/tags/{ref}^{{}}", "tag"), (f"refs/tags/{ref}", "tag"), (f"refs/heads/{ref}", "branch")):
        if name in refs:
            return refs[name], kind
    return None


def cache_repo(cache_dir: Path, url: str, env: Mapping[str, str]) -> Path:
    """The bare repository caching ``url``'s objects (one per URL)."""
    repo = cache_dir / "git" / (re.sub(r"[^\w.-]+", "_", urlsplit(url).path.strip("/"))[-40:] + "-"
                                + hashlib.sha256(url.encode()).hexdigest()[:12] + ".git")
    if not (repo / "HEAD").exists():
        repo.parent.mkdir(parents=True, exist_ok=True)
        _git(["init", "--quiet", "--bare", str(repo)], env)
    return repo


def _has_commit(repo: Path, commit: str, env: Mapping[str, str]) -> str | None:
    try:
        return _git(["rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"], env, cwd=repo).strip() or None
    except CommandFailed:
        return None


def fetch_commit(repo: Path, url: str, want: str, env: Mapping[str, str]) -> str:
    """Make ``want`` (a ref name or a full/abbreviated commit) present in ``repo``; returns the full commit."""
    if _HEX.fullmatch(want) and (got := _has_commit(repo, want, env)):
        return got
    # One commit's tree is all a build needs: a shallow fetch (llama.cpp's whole history is over 1 GB). A short
    # id can't be asked for by name, so then every branch and tag is fetched and the id looked up.
    attempts = [["--depth=1", want]] if not _HEX.fullmatch(want) or len(want) == 40 else []
    attempts.append(["+refs/heads/*:refs/lw/heads/*", "+refs/tags/*:refs/lw/tags/*"])  # a short id: fetch all
    for refspecs in attempts:
        try:
            _git(["fetch", "--quiet", "--no-tags", url, *refspecs], env, cwd=repo)
        except CommandFailed:
            continue
        if _HEX.fullmatch(want) and (got := _has_commit(repo, want, env)):
            return got
        if not _HEX.fullmatch(want):
            return _git(["rev-parse", "FETCH_HEAD^{commit}"], env, cwd=repo).strip()
    raise SourceError(f"{want} is not a commit, tag or branch of {url}",
                      f"give a ref that exists there (git ls-remote {url})")


def resolve_tree(url: str, ref: str, cache_dir: Path, env: Mapping[str, str], *,
                 allow_dirty: bool) -> tuple[GitTree, Path]:
    """Resolve ``url@ref`` (or a local checkout's HEAD) to a commit; returns the tree and the repository
    holding it (the cache's bare copy, or the checkout itself for its working tree)."""
    if _local(url) and not ref:
        try:
            commit = _git(["rev-parse", "--verify", "HEAD^{commit}"], env, cwd=Path(url)).strip()
        except CommandFailed:
            raise SourceError(f"{url} is not a git checkout with a commit",
                              "give a git checkout (git init; git commit) or URL@ref") from None
        status = _git(["status", "--porcelain", "--untracked-files=normal", "--ignore-submodules=none"], env,
                      cwd=Path(url))
        dirty = ""
        if status.strip():
            if not allow_dirty:
                first = status.splitlines()[0].strip()
                raise SourceError(f"{url} has uncommitted changes ({first}"
                                  + (f" and {len(status.splitlines()) - 1} more" if len(status.splitlines()) > 1
                                     else "") + ")",
                                  "commit or stash them, or pass --allow-dirty (the wheel's label then says dirty)")
            dirty = _worktree_hash(Path(url), env)[:6]
        branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], env, cwd=Path(url)).strip()
        return GitTree(url, branch if branch != "HEAD" else "HEAD", commit, "head", dirty), Path(url)
    if _local(url):  # a local repository (a checkout or a bare one): read it in place, copy nothing
        kind = next((k for k, prefix in (("tag", "refs/tags/"), ("branch", "refs/heads/"))
                     if _has_commit(Path(url), f"{prefix}{ref}", env)), "commit")
        found_commit = _has_commit(Path(url), f"refs/tags/{ref}" if kind == "tag" else f"refs/heads/{ref}"
                                   if kind == "branch" else ref, env)
        if found_commit is None:
            raise SourceError(f"'{ref}' is not a branch, tag or commit of {url}",
                              f"give a ref that exists there (git -C {url} show-ref)")
        return GitTree(url, ref, found_commit, kind), Path(url)
    found = ls_remote(url, ref, env)
    repo = cache_repo(cache_dir, url, env)
    if found is not None:
        commit, kind = found
        fetch_commit(repo, url, commit if kind == "tag" else f"refs/{'heads' if kind == 'branch' else 'tags'}/{ref}",
                     env)
        if not _has_commit(repo, commit, env):
            fetch_commit(repo, url, commit, env)
        return GitTree(url, ref, commit, kind), repo
    if not _HEX.fullmatch(ref.lower()):
        raise SourceError(f"'{ref}' is not a branch or tag of {url}, nor a commit id",
                          f"give a ref that exists there (git ls-remote {url})")
    commit = fetch_commit(repo, url, ref.lower(), env)
    return GitTree(url, ref, commit, "commit"), repo


def _worktree_files(root: Path, env: Mapping[str, str]) -> list[str]:
    out = _git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], env, cwd=root)
    return sorted(p for p in dict.fromkeys(out.split("\0")) if p and ((root / p).is_file() or (root / p).is_symlink()))


def _worktree_hash(root: Path, env: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for rel in _worktree_files(root, env):
        p = root / rel
        h.update(rel.encode() + b"\0" + (p.readlink().as_posix().encode() if p.is_symlink() else p.read_bytes()))
    return h.hexdigest()


def gitlink(repo: Path, commit: str, path: str, env: Mapping[str, str]) -> str | None:
    """The commit a superproject records for the submodule at ``path`` (None if there is none)."""
    out = _git(["ls-tree", commit, path], env, cwd=repo).split()
    return out[2] if len(out) >= 3 and out[0] == "160000" else None


def submodule_url(repo: Path, commit: str, base_url: str, path: str, env: Mapping[str, str]) -> str:
    """The submodule's URL from ``.gitmodules`` at ``commit``; a relative one is resolved against ``base_url``."""
    try:
        out = _git(["config", "--blob", f"{commit}:.gitmodules", "--get-regexp", r"submodule\..*\.path"], env,
                   cwd=repo)
        name = next(line.split()[0][len("submodule."):-len(".path")] for line in out.splitlines()
                    if line.split()[1] == path)
        url = _git(["config", "--blob", f"{commit}:.gitmodules", "--get", f"submodule.{name}.url"], env,
                   cwd=repo).strip()
    except (CommandFailed, StopIteration, IndexError):
        raise SourceError(f"{base_url}@{commit[:12]} records {path} but .gitmodules has no URL for it",
                          "fix .gitmodules in that commit, or pass --llama-cpp URL@COMMIT") from None
    if url.startswith(("./", "../")):
        base = base_url.rstrip("/")
        for part in url.split("/"):
            base = base.rsplit("/", 1)[0] if part == ".." else base if part in (".", "") else f"{base}/{part}"
        url = base
    return url


# ------------------------------------------------------------------------------- archives --------------


def _git_tar_bytes(repo: Path, commit: str, env: Mapping[str, str], dest: Path,
                   exclude: Sequence[str] = ()) -> Path:
    """``git archive`` written to a file (binary-safe: cmd.run captures text), without the ``exclude`` globs."""
    spec = ["--", ".", *(f":(exclude){g}" for g in exclude)] if exclude else []
    cmd.run(["git", "-C", str(repo), "archive", "--format=tar", "-o", str(dest), commit, *spec], env=env,
            quiet=True, capture=True)
    return dest


Member = tuple[str, tarfile.TarInfo, bytes | None]


def _tar_members(path: Path, strip: int) -> Iterator[Member]:
    """(path without its first ``strip`` components, info, data) of each file, folder and link."""
    with tarfile.open(path, "r:*") as tar:
        for m in tar:
            if m.type in (tarfile.XGLTYPE, tarfile.XHDTYPE) or not (m.isfile() or m.isdir() or m.issym()):
                continue
            parts = PurePosixPath(m.name).parts[strip:]
            if not parts:
                continue
            f = tar.extractfile(m) if m.isfile() else None
            yield "/".join(parts), m, f.read() if f else None


def _worktree_members(root: Path, env: Mapping[str, str]) -> Iterator[Member]:
    for rel in _worktree_files(root, env):
        p = root / rel
        info = tarfile.TarInfo(rel)
        if p.is_symlink():
            info.type, info.linkname = tarfile.SYMTYPE, p.readlink().as_posix()
            yield rel, info, None
        else:
            info.mode = 0o755 if p.stat().st_mode & 0o100 else 0o644
            yield rel, info, p.read_bytes()


def write_archive(dest: Path, top: str, members: Iterator[Member]) -> str:
    """A deterministic .tar.gz of ``members`` under ``top/``; returns its sha256."""
    buf = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out:
        for rel, m, data in sorted(members, key=lambda x: x[0]):
            if rel in seen:
                continue
            seen.add(rel)
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.type, info.linkname = m.type, m.linkname
            info.mode = (0o755 if m.isdir() or m.mode & 0o100 else 0o644)
            info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
            info.size = len(data) if data is not None else 0
            out.addfile(info, io.BytesIO(data) if data is not None else None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=6) as gz:
        gz.write(buf.getvalue())
    tmp.replace(dest)
    return sha256_file(dest)


def archive_name(identity: SourceIdentity) -> str:
    tokens = identity.label_tokens()
    return f"llama_cpp_python-{identity.version}" + (f"+{'.'.join(tokens)}" if tokens else "")


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def package_version(text: str) -> str:
    m = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.M)
    if m is None:
        raise SourceError("the source has no llama_cpp/__init__.py with __version__",
                          "point --source at a llama-cpp-python repository")
    return m[1]


def _read(repo: Path, tree: GitTree, rel: str, env: Mapping[str, str]) -> str:
    if tree.dirty:
        p = repo / rel
        return p.read_text(encoding="utf-8") if p.is_file() else ""
    try:
        return _git(["show", f"{tree.commit}:{rel}"], env, cwd=repo)
    except CommandFailed:
        return ""


@dataclass(frozen=True)
class Materialised:
    identity: SourceIdentity
    path: Path | None  # the archive (cache, or the prefetch folder offline); None when only resolved
    slim: bool = False


@dataclass(frozen=True)
class Resolved:
    identity: SourceIdentity
    package_repo: Path | None
    llama_repo: Path | None


def resolve(options_version: str, sdist_sha256: str, package: str | None, llama_cpp: str | None,
            cache_dir: Path, env: Mapping[str, str], allow_dirty: bool) -> Resolved:
    """The specs resolved to commits (git objects fetched into the cache, nothing else written)."""
    pkg_tree = llama_tree = None
    repo = lrepo = None
    version = options_version
    if package:
        url, ref = parse_spec(package)
        pkg_tree, repo = resolve_tree(url, ref, cache_dir, env, allow_dirty=allow_dirty)
        version = package_version(_read(repo, pkg_tree, "llama_cpp/__init__.py", env))
        link = gitlink(repo, pkg_tree.commit, VENDOR, env)
        if link is None:
            raise SourceError(f"{pkg_tree.describe()} has no {VENDOR} submodule",
                              "point --source at llama-cpp-python (it vendors llama.cpp as a submodule)")
        if not llama_cpp:
            sub_url = submodule_url(repo, pkg_tree.commit, url, VENDOR, env)
            lrepo = cache_repo(cache_dir, sub_url, env)
            llama_tree = GitTree(sub_url, VENDOR, fetch_commit(lrepo, sub_url, link, env), "gitlink")
    if llama_cpp:
        url, ref = parse_spec(llama_cpp)
        llama_tree, lrepo = resolve_tree(url, ref, cache_dir, env, allow_dirty=allow_dirty)
        if not _read(lrepo, llama_tree, "include/llama.h", env):
            raise SourceError(f"{llama_tree.describe()} has no include/llama.h",
                              "point --llama-cpp at a llama.cpp repository")
    identity = SourceIdentity("llama" if llama_cpp else "git", version,
                              sdist_sha256="" if package else sdist_sha256, package=pkg_tree,
                              llama_cpp=llama_tree, spec=spec_key(package, llama_cpp))
    return Resolved(identity, repo, lrepo)


def _members(repo: Path, tree: GitTree, env: Mapping[str, str], tar: Path,
             exclude: Sequence[str] = ()) -> list[Member]:
    if tree.dirty:
        return [m for m in _worktree_members(repo, env)
                if not any(PurePosixPath(m[0]).match(g) for g in exclude)]
    return list(_tar_members(_git_tar_bytes(repo, tree.commit, env, tar, exclude), 0))


def materialise(*, options_version: str, sdist_path: Path | None, sdist_sha256: str, package: str | None,
                llama_cpp: str | None, cache_dir: Path, env: Mapping[str, str], allow_dirty: bool,
                work: Path, write: bool = True) -> Materialised:
    """Resolve the specs to commits and (``write``) write the source archive into ``<cache>/sources``.
    ``sdist_path``: the verified PyPI sdist, needed to swap llama.cpp into it. ``work``: a folder of ours
    for temporary tars. Without ``write`` only git objects are fetched (a dry run's plan)."""
    r = resolve(options_version, sdist_sha256, package, llama_cpp, cache_dir, env, allow_dirty)
    identity = r.identity
    if not write:
        return Materialised(identity, None)
    work.mkdir(parents=True, exist_ok=True)
    if identity.package is not None and r.package_repo is not None:
        members = _members(r.package_repo, identity.package, env, work / "package.tar")
    elif sdist_path is not None:
        # the sdist's own .git (a pack of llama-cpp-python and the old submodule) describes another tree
        members = [m for m in _tar_members(sdist_path, 1) if m[0] != ".git" and not m[0].startswith(".git/")]
    else:
        raise SourceError("a llama.cpp swap into the PyPI sdist needs the sdist", "run once with the network")
    if identity.llama_cpp is not None and r.llama_repo is not None:
        members = [m for m in members if not m[0].startswith(VENDOR + "/") and m[0] != VENDOR]
        members += [(f"{VENDOR}/{rel}", i, d) for rel, i, d in
                    _members(r.llama_repo, identity.llama_cpp, env, work / "llama.tar", LLAMA_EXCLUDE)]
    name = archive_name(identity)
    dest = cache_dir / "sources" / f"{name}.tar.gz"
    sha = write_archive(dest, name, iter(members))
    identity = dataclasses.replace(identity, archive_sha256=sha)
    sidecar(dest).write_text(json.dumps(identity_json(identity), indent=2) + "\n")
    for tmp in work.glob("*.tar"):
        tmp.unlink()
    return Materialised(identity, dest)


def spec_key(package: str | None, llama_cpp: str | None) -> str:
    return f"source={package or 'pypi'} llama-cpp={llama_cpp or 'vendored'}"


def identity_json(identity: SourceIdentity) -> dict[str, Any]:
    return {"schema": 1, **asdict(identity)}


def identity_from_json(data: Mapping[str, Any]) -> SourceIdentity:
    def tree(key: str) -> GitTree | None:
        return GitTree(**data[key]) if data.get(key) else None

    names = {f.name for f in dataclasses.fields(SourceIdentity)} - {"package", "llama_cpp"}
    plain = {k: v for k, v in data.items() if k in names}
    return SourceIdentity(**plain, package=tree("package"), llama_cpp=tree("llama_cpp"))


def find_offline(folder: Path, package: str | None, llama_cpp: str | None) -> Materialised:
    """The carried archive for these specs (the one ``nox -s prefetch`` wrote with the same flags)."""
    key = spec_key(package, llama_cpp)
    for side in sorted((folder / "sources").glob("*.json")):
        data = json.loads(side.read_text())
        if data.get("spec") != key:
            continue
        identity = identity_from_json(data)
        archive = side.with_name(side.name.removesuffix(".json"))
        got = sha256_file(archive) if archive.exists() else "(missing)"
        expected = data.get("slim_sha256") or identity.archive_sha256
        if got != expected:
            raise ChecksumError(f"{archive.name}: sha256 {got}, its sidecar says {expected}",
                                "run nox -s prefetch again with the same --source/--llama-cpp")
        return Materialised(identity, archive, slim=bool(data.get("slim_sha256")))
    raise OfflineMissing(f"no prefetched source for {key} in {folder / 'sources'}",
                         "run nox -s prefetch with the same --source/--llama-cpp flags and carry the folder here")


def stamp_metadata(meta: Path, identity: SourceIdentity) -> None:
    """Add the identity to a wheel's METADATA as ``Project-URL`` headers (core metadata 1.2+)."""
    text = meta.read_text(encoding="utf-8")
    head, sep, body = text.partition("\n\n")
    head += "".join(f"\nProject-URL: {u}" for u in identity.metadata_urls() if f"Project-URL: {u}" not in head)
    meta.write_text(head + sep + body, encoding="utf-8")


def find_archive(folders: Sequence[Path], record: Mapping[str, Any]) -> sdist.Source | None:
    """The archive a wheel was built from, by the manifest's ``source`` record (its archive sha256), in the
    cache or the prefetch folder; None for the PyPI sdist (its own path finds it) or when none is at hand."""
    want = str(record.get("archive_sha256", ""))
    if record.get("kind", "pypi") == "pypi" or not want:
        return None
    for folder in folders:
        for side in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            data = json.loads(side.read_text())
            if data.get("archive_sha256") != want:
                continue
            archive = side.with_name(side.name.removesuffix(".json"))
            expected = data.get("slim_sha256") or want
            if archive.is_file() and sha256_file(archive) == expected:
                return sdist.Source(archive, want, slim=bool(data.get("slim_sha256")))
    return None
