"""Issue 24 (reliability, round two), tried as the hostile battery did: a publish that must check every file
before it sends anything (real pypiserver, real twine), stray and damaged dependency wheels, a wheelhouse on
another filesystem, read-only and full folders (real tmpfs mounts, as root; skipped with the reason
otherwise), and `--offline` without a prefetch folder through real nox. The wheels come from
tests/wheelmaker.py (valid, installable, fast); the manifest is written by manifest.publish, as a build does."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llama_wheels import manifest
from tests.wheelmaker import make_wheel, record_line

from .conftest import ROOT, lw, pypi_server

LIB = {"llama_cpp/lib/libllama.so": b"\x7fELF" + bytes(range(256)) * 40}
DEAD_PID = 2**22 + 12345  # above Linux's pid_max default: no such process


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def dep_wheel(folder: Path, name: str = "depx", payload: bytes = b"x = 1\n") -> Path:
    """A small valid wheel of another project (a dependency wheel, or a stray one)."""
    di = f"{name}-1.0.dist-info"
    content = {f"{name}/__init__.py": payload, f"{di}/METADATA": f"Metadata-Version: 2.1\nName: {name}\n"
               "Version: 1.0\n\n".encode(), f"{di}/WHEEL": b"Wheel-Version: 1.0\nTag: py3-none-any\n"}
    record = "\n".join(record_line(n, d) for n, d in content.items()) + f"\n{di}/RECORD,,\n"
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for n, d in content.items():
            z.writestr(n, d)
        z.writestr(f"{di}/RECORD", record)
    return path


def recorded_house(root: Path, *, files: dict[str, bytes] | None = None) -> tuple[Path, Path, Path]:
    """A wheelhouse as a build leaves it: cpu/ with our wheel and one dependency wheel, both in manifest.json."""
    wh = root / "wheelhouse"
    (wh / "cpu").mkdir(parents=True)
    wheel = make_wheel(wh / "cpu", files={**LIB, **(files or {})})
    dep = dep_wheel(wh / "cpu")
    manifest.publish(wh, wheel, wheel, {"flavour": "cpu", "filename": wheel.name, "sha256": sha(wheel),
                                        "dependency_wheels": [dep.name], "dependencies": {dep.name: sha(dep)}},
                     say=lambda _: None)
    return wh, wheel, dep


def flip(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def env_for(lw_env: dict[str, str], wh: Path, **extra: str) -> dict[str, str]:
    return {**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(wh), "TWINE_USERNAME": "x", "TWINE_PASSWORD": "y", **extra}


def one_line_error(out: str) -> str:
    assert "Traceback" not in out, out[-3000:]
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, out[-3000:]
    return errors[0]


# ------------------------------------------------------------------ a real pypiserver, no auth -------------

@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """pypiserver on a free loopback port, uploads allowed without a password; yields (URL, its package folder)."""
    packages = tmp_path / "server-packages"
    packages.mkdir()
    with pypi_server(packages, tmp_path / "pypiserver.log") as url:
        yield url, packages


def server_files(url: str, packages: Path) -> list[str]:
    """What the server holds: its package folder, and its listing agrees."""
    try:
        with urllib.request.urlopen(f"{url}/simple/llama-cpp-python/", timeout=10) as r:
            listed = r.read().decode()
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        listed = ""
    held = sorted(p.name for p in packages.iterdir())
    for name in held:
        assert name in listed
    return held


DAMAGES: dict[str, Callable[[Path, Path], None]] = {
    # N9e: a good index, then the wheelhouse's wheel changed: it must not reach the server (the sync folder
    # would hold the good copy: one filename, two sha256 values).
    "wheel-flipped-after-index": lambda wh, wheel: flip(wheel) and None,
    # the index's own copy changed: the sync must not carry it, and nothing is uploaded either
    "index-copy-flipped": lambda wh, wheel: flip(wh / "index" / "files" / wheel.name) and None,
    # a truncated wheel is ours to refuse, not twine's crash
    "wheel-truncated": lambda wh, wheel: wheel.write_bytes(wheel.read_bytes()[: wheel.stat().st_size // 2]),
    # a damaged dependency wheel in the index
    "dependency-flipped-in-index": lambda wh, wheel: flip(wh / "index" / "files" / "depx-1.0-py3-none-any.whl")
    and None,
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_publish_checks_every_file_before_uploading_anything(server: tuple[str, Path], tmp_path: Path,
                                                             lw_env: dict[str, str], damage: str) -> None:
    url, packages = server
    wh, wheel, _ = recorded_house(tmp_path)
    env = env_for(lw_env, wh)
    assert lw("index", env=env, timeout=120).returncode == 0
    good = sha(wheel)
    shutil.copytree(wh, tmp_path / "backup")
    DAMAGES[damage](wh, wheel)
    sync = tmp_path / "sync"
    sync.mkdir()
    res = lw("publish", "--repository-url", url + "/", "--sync-to", str(sync), env=env, timeout=300)
    line = one_line_error(res.stdout)
    assert res.returncode == 9 and "nothing was uploaded or synced" in line, res.stdout[-3000:]
    assert "twine upload" not in res.stdout and "BadZipFile" not in res.stdout
    assert server_files(url, packages) == [] and list(sync.iterdir()) == []
    # Control: once the files are right again, the same command publishes, and the server holds our bytes.
    shutil.rmtree(wh)
    shutil.copytree(tmp_path / "backup", wh)
    res = lw("publish", "--repository-url", url + "/", "--sync-to", str(sync), env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]
    assert server_files(url, packages) == [wheel.name] and sha(packages / wheel.name) == good
    assert sha(sync / "files" / wheel.name) == good


def test_publish_without_an_index_refuses_before_uploading(server: tuple[str, Path], tmp_path: Path,
                                                           lw_env: dict[str, str]) -> None:
    url, packages = server
    wh, _, _ = recorded_house(tmp_path)
    (tmp_path / "sync").mkdir()
    res = lw("publish", "--repository-url", url + "/", "--sync-to", str(tmp_path / "sync"), env=env_for(lw_env, wh),
             timeout=300)
    assert res.returncode == 2 and "holds no index; run nox -s index first" in one_line_error(res.stdout)
    assert server_files(url, packages) == []


def test_publish_refuses_a_wheel_no_build_recorded(server: tuple[str, Path], tmp_path: Path,
                                                  lw_env: dict[str, str]) -> None:
    url, packages = server
    wh, _, _ = recorded_house(tmp_path)
    make_wheel(wh / "cpu", "0.3.99+cpu", files=LIB)  # valid, but never built here
    res = lw("publish", "--repository-url", url + "/", env=env_for(lw_env, wh), timeout=300)
    assert res.returncode == 9 and "not recorded in manifest.json" in one_line_error(res.stdout)
    assert server_files(url, packages) == []


# ------------------------------------------------------------------ stray and dependency wheels ------------

def test_a_stray_wheel_is_reported_and_never_indexed(tmp_path: Path, lw_env: dict[str, str]) -> None:
    wh, _, _ = recorded_house(tmp_path)
    evil = dep_wheel(wh / "cpu", "evil")
    env = env_for(lw_env, wh)
    res = lw("check-wheels", env=env, timeout=120)
    assert res.returncode == 9 and f"{evil}: not recorded in manifest.json: no build of ours" in res.stdout, res.stdout
    assert "Traceback" not in res.stdout
    res = lw("index", env=env, timeout=120)
    assert res.returncode == 9 and "cpu/evil-1.0-py3-none-any.whl: not recorded" in one_line_error(res.stdout)
    assert not list(wh.glob("index/**/evil*"))
    evil.unlink()
    assert lw("check-wheels", env=env, timeout=120).returncode == 0
    assert lw("index", env=env, timeout=120).returncode == 0


def test_a_damaged_dependency_wheel_fails_check_wheels(tmp_path: Path, lw_env: dict[str, str]) -> None:
    wh, _, dep = recorded_house(tmp_path)
    env = env_for(lw_env, wh)
    assert lw("check-wheels", env=env, timeout=120).returncode == 0
    flip(dep)
    res = lw("check-wheels", env=env, timeout=120)
    assert res.returncode == 9 and f"{dep}: " in res.stdout and "recorded at build time" in res.stdout, res.stdout
    res = lw("index", env=env, timeout=120)  # index agrees with check_wheels now
    assert res.returncode == 9 and dep.name in res.stdout


def test_a_missing_manifest_is_a_loud_warning(tmp_path: Path, lw_env: dict[str, str]) -> None:
    wh, _, _ = recorded_house(tmp_path)
    (wh / "manifest.json").unlink()
    res = lw("index", env=env_for(lw_env, wh), timeout=120)
    assert res.returncode == 0, res.stdout
    assert f"warning: {wh / 'manifest.json'} is missing: no wheel here can be checked" in res.stdout
    # smoke says so too, before anything else (a missing model then stops it, cheaply)
    res = lw("smoke", "--model", str(tmp_path / "no-model.gguf"), env=env_for(lw_env, wh), timeout=120)
    assert res.returncode == 11 and f"warning: {wh / 'manifest.json'} is missing" in res.stdout, res.stdout


# ------------------------------------------------------------------ real mounts (root) ---------------------

@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """mount -t tmpfs at a fresh folder (size, ro); unmounted afterwards. Needs root and mount rights."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("real tmpfs mounts need root on Linux (the battery ran them as root)")
    mounted: list[Path] = []

    def mount(name: str, size: str = "64m", *, ro: bool = False, fill: Callable[[Path], None] | None = None) -> Path:
        where = tmp_path / name
        where.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True, check=False)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
        mounted.append(where)
        if fill is not None:
            fill(where)
        if ro:
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_wheelhouse_on_another_filesystem_takes_the_wheel(tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    """EXDEV: the staged wheel (build dir, on disk) and the wheelhouse (a tmpfs) are on two filesystems."""
    wh = tmpfs("wh")
    (tmp_path / "staging").mkdir()
    staged = make_wheel(tmp_path / "staging", files=LIB)
    dep = dep_wheel(tmp_path / "staging")
    assert os.stat(staged).st_dev != os.stat(wh).st_dev
    good = sha(staged)
    final = wh / "cpu" / staged.name
    manifest.publish(wh, staged, final, {"flavour": "cpu", "filename": staged.name, "sha256": good},
                     say=lambda _: None)
    from llama_wheels.fs import move_into

    move_into(dep, wh / "cpu" / dep.name)  # what build.gather_dependency_wheels does with each new one
    assert sha(final) == good and not staged.exists() and not dep.exists()
    assert json.loads((wh / "manifest.json").read_text())["wheels"][f"cpu/{staged.name}"]["sha256"] == good
    assert not list(wh.rglob("*.partial")) and not (wh / ".publishing.json").exists()


def test_a_read_only_wheelhouse_is_checked_and_refused_in_one_line(tmp_path: Path, lw_env: dict[str, str],
                                                                     tmpfs: Callable[..., Path]) -> None:
    def fill(where: Path) -> None:
        recorded_house(where)

    ro = tmpfs("ro", ro=True, fill=fill)
    wh = ro / "wheelhouse"
    env = env_for(lw_env, wh)
    res = lw("check-wheels", env=env, timeout=120)  # reads only: no lock to write
    assert res.returncode == 0, res.stdout
    res = lw("index", env=env, timeout=120)
    line = one_line_error(res.stdout)
    assert res.returncode == 18 and f"{wh} is not writable (Read-only file system)" in line, line
    assert "Errno" not in line and ".llama-wheels.lock" not in line


def test_sync_to_a_read_only_folder_is_refused_before_anything(server: tuple[str, Path], tmp_path: Path,
                                                              lw_env: dict[str, str],
                                                              tmpfs: Callable[..., Path]) -> None:
    url, packages = server
    wh, _, _ = recorded_house(tmp_path)
    env = env_for(lw_env, wh)
    assert lw("index", env=env, timeout=120).returncode == 0
    ro = tmpfs("ro-sync", ro=True)
    res = lw("publish", "--repository-url", url + "/", "--sync-to", str(ro), env=env, timeout=300)
    line = one_line_error(res.stdout)
    assert res.returncode == 18 and f"{ro} is not writable" in line, line
    assert server_files(url, packages) == []  # refused before the upload too


def test_sync_to_a_full_folder_names_the_space_and_leaves_no_partial(tmp_path: Path, lw_env: dict[str, str],
                                                                       tmpfs: Callable[..., Path]) -> None:
    big = {"llama_cpp/lib/libbig.so": os.urandom(3 << 20)}  # 3 MB that do not compress
    wh, _, _ = recorded_house(tmp_path, files=big)
    env = env_for(lw_env, wh)
    assert lw("index", env=env, timeout=120).returncode == 0
    small = tmpfs("small", "2m")
    res = lw("publish", "--sync-to", str(small), env=env, timeout=300)
    line = one_line_error(res.stdout)
    assert res.returncode == 18 and f"{small} has " in line and " MB needed" in line, line
    assert list(small.iterdir()) == []
    # a later run onto a folder with room removes a .partial a killed sync of ours left (and nothing else)
    roomy = tmpfs("roomy", "64m")
    (roomy / "files").mkdir()
    stale = roomy / "files" / f".{next(wh.glob('cpu/llama_cpp_python-*.whl')).name}.{DEAD_PID}.partial"
    stale.write_bytes(b"half a wheel")
    (roomy / "files" / "notes.txt").write_text("kept")
    res = lw("publish", "--sync-to", str(roomy), env=env, timeout=300)
    assert res.returncode == 0, res.stdout
    assert not stale.exists() and (roomy / "files" / "notes.txt").exists() and not list(roomy.rglob("*.partial"))


def test_a_full_build_dir_refuses_the_source_extract_in_one_line(tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    """The sdist is extracted into the build dir: on a 50 MB tmpfs a 60 MB tree is refused before writing."""
    from llama_wheels.errors import StorageError
    from llama_wheels.sdist import Source, extract

    tree = tmp_path / "llama_cpp_python-0.3.36"
    (tree / "vendor").mkdir(parents=True)
    (tree / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    for i in range(6):
        (tree / "vendor" / f"blob{i}.bin").write_bytes(os.urandom(10 << 20))
    sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    with tarfile.open(sdist, "w:gz", compresslevel=1) as tar:
        tar.add(tree, arcname=tree.name)
    bd = tmpfs("bd", "50m")
    (bd / "src").mkdir()
    with pytest.raises(StorageError) as exc:
        extract(Source(sdist, "ab" * 32, False), bd / "src")
    assert f"{bd / 'src'} has " in exc.value.message and "60.0 MB needed" in exc.value.message
    assert "\n" not in exc.value.one_line()
    assert [p.name for p in (bd / "src").iterdir()] == []  # nothing half-extracted stays


# ------------------------------------------------------------------ --offline without .prefetch/ -----------

def test_offline_without_a_prefetch_folder_names_the_prefetch_session(tmp_path: Path) -> None:
    """#30b: the noxfile's install step ran before the tool and pip said 'No matching distribution'."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA_WHEELS_", "NOX_", "CI"))}
    env["LLAMA_WHEELS_PREFETCH_DIR"] = str(tmp_path / "no-prefetch")
    res = subprocess.run([sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), "--envdir",
                          str(tmp_path / "envs"), "-s", "build_cuda", "--", "--offline"], cwd=ROOT, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600, check=False)
    assert res.returncode != 0
    assert f"{tmp_path / 'no-prefetch' / 'wheels'} does not exist; run nox -s prefetch" in res.stdout, res.stdout
    assert "No matching distribution" not in res.stdout and "pip install" not in res.stdout


def test_a_build_into_a_wheelhouse_on_another_filesystem(cpu_build: Path, lw_env: dict[str, str],
                                                         tmpfs: Callable[..., Path]) -> None:
    """The battery's N3d: the session's build dir on disk, the wheelhouse on a tmpfs (the compile is warm)."""
    wh = tmpfs("wh-build", "300m")
    env = {**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(wh)}
    res = lw("build", "--cpu", env=env)
    assert res.returncode == 0 and "Invalid cross-device link" not in res.stdout, res.stdout[-3000:]
    assert os.stat(cpu_build).st_dev != os.stat(wh).st_dev
    (entry,) = json.loads((wh / "manifest.json").read_text())["wheels"].values()
    deps = entry["dependencies"]
    assert any(n.startswith("fastapi-") for n in deps)  # the server variant's dependency wheels, recorded
    assert {p.name for p in (wh / "cpu").glob("*.whl")} == {entry["filename"], *deps}
    assert all(sha(wh / "cpu" / n) == h for n, h in deps.items())
    assert not list(wh.rglob("*.partial"))
    assert lw("check-wheels", env=env, timeout=300).returncode == 0


def test_a_read_only_wheelhouse_with_an_interrupted_publish_is_read(tmpfs: Callable[..., Path]) -> None:
    """A kill between the move and the manifest write left a journal; on a read-only mount it is rolled forward
    in memory (no lock, no write), where a writable wheelhouse completes it."""
    def fill(where: Path) -> None:
        wh, _, _ = recorded_house(where)
        late = make_wheel(wh / "cpu", "0.3.37+cpu", files=LIB)
        (wh / manifest.JOURNAL).write_text(json.dumps({"key": f"cpu/{late.name}", "entry": {
            "flavour": "cpu", "filename": late.name, "sha256": sha(late)}}))

    wh = tmpfs("ro-journal", ro=True, fill=fill) / "wheelhouse"
    got = manifest.entries(wh)
    assert sorted(e["filename"] for e in got.values()) == sorted(p.name for p in wh.glob("cpu/llama_cpp_python-*"))
    assert (wh / manifest.JOURNAL).exists()
