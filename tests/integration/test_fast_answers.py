"""Answers that must come at once: every session's `-- --help`, argument errors and missing inputs, through
real nox runs with an envdir of their own (nothing may be created in it), and the remote compiler cache
probed by doctor, cache-stats and the build's dry run against a real Valkey and a closed port."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, free_port, lw

#: Every session of the noxfile (test_every_session_is_covered keeps this complete).
SESSIONS = ["tests", "lint", "unit", "build_cuda", "build_cpu", "prefetch", "check_wheels", "index",
            "index_variants", "publish", "cibuildwheel", "smoke", "bench", "serve", "verify_rebuild"]
#: A user expects an instant answer; measured 0.4-1.6 s on the loaded 2-core CI machine (the issue's
#: "< 2 s"). The envdir check below is what proves no venv was made; this bound only catches an install.
SECONDS = 4.0


def nox(tmp_path: Path, *args: str,
        env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), "--envdir",
                          str(tmp_path / "envs"), *args], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=120, check=False)
    return res, time.monotonic() - t0


def no_venv_made(tmp_path: Path) -> bool:
    envs = tmp_path / "envs"
    return not envs.exists() or not [p for p in envs.iterdir() if p.is_dir()]


def test_every_session_is_covered() -> None:
    import ast

    tree = ast.parse((ROOT / "noxfile.py").read_text())
    sessions = [f.name for f in tree.body if isinstance(f, ast.FunctionDef)
                and any("nox.session" in ast.unparse(d) for d in f.decorator_list)]
    assert sorted(sessions) == sorted(SESSIONS)


def test_help_of_every_session_answers_without_a_venv(tmp_path: Path) -> None:
    res, seconds = nox(tmp_path, "-s", *SESSIONS, "--", "--help")
    assert res.returncode == 0, res.stdout[-3000:]
    for name in SESSIONS:
        assert f"Session {name} was successful" in res.stdout, name
        assert f"usage: nox -s {name}" in res.stdout, name  # its own usage line
    assert "uv binary not found" not in res.stdout
    assert no_venv_made(tmp_path), list((tmp_path / "envs").iterdir())
    print(f"{len(SESSIONS)} sessions' --help in one nox run: {seconds:.2f} s")
    assert seconds < SECONDS * 3


@pytest.mark.parametrize(("args", "code", "fragment"), [
    (["publish"], "2 (ConfigError)", "error: nothing to publish to"),
    (["smoke"], "2 (ConfigError)", "error: no wheels in"),
    (["bench", "--", "--flavour", "cu130-sm90"], "2 (ConfigError)", "error: no wheel for flavour 'cu130-sm90'"),
    (["build_cuda", "--", "--bogus"], "2 (ConfigError)", "unrecognized arguments: --bogus"),
    (["index_variants", "--", "--bogus"], "2 (ConfigError)", "unrecognized arguments: --bogus"),
    (["cibuildwheel", "--", "--platform", "mac"], "2 (ConfigError)", "invalid choice: 'mac'"),
    (["build_cpu", "--", "--dry-run", "--cache-remote", "redis://127.0.0.1:{closed}", "--require-remote-cache"],
     "4 (PreflightError)", "is unreachable"),
    (["unit", "--", "tests/unit/test_nope.py"], "", "tests/unit/test_nope.py: no such file or folder"),
    (["lint", "--", "src"], "", "lint takes no arguments"),
])
def test_argument_errors_answer_without_a_venv(tmp_path: Path, lw_env: dict[str, str], args: list[str], code: str,
                                               fragment: str) -> None:
    args = [a.replace("{closed}", str(free_port())) for a in args]
    env = {**lw_env, "LLAMA_WHEELS_WHEELHOUSE": str(tmp_path / "empty-wheelhouse")}
    res, seconds = nox(tmp_path, "-s", *args, env=env)
    assert res.returncode == 1 and fragment in res.stdout, res.stdout[-3000:]
    if code:  # nox exits 1 for every failure; the session's line names the tool's own code
        assert f"Session {args[0]} aborted: llama-wheels exit code {code}" in res.stdout
        assert len([ln for ln in res.stdout.splitlines() if ln.startswith("error:")]) == 1
    assert "Traceback" not in res.stdout
    assert no_venv_made(tmp_path), list((tmp_path / "envs").iterdir())
    print(f"nox -s {' '.join(args)}: {seconds:.2f} s")
    assert seconds < SECONDS


def test_remote_cache_is_probed_by_doctor_cache_stats_and_dry_run(redis: int, lw_env: dict[str, str]) -> None:
    up, down = f"redis://127.0.0.1:{redis}", f"redis://127.0.0.1:{free_port()}"
    for url, verdict in ((up, f"{up}: reachable (read-write)"), (down, f"{down}: unreachable (Connection refused)")):
        env = {**lw_env, "LLAMA_WHEELS_CACHE_REMOTE": url}
        doctor = lw("doctor", env=env, timeout=120)
        assert f"remote cache: {verdict}" in doctor.stdout, doctor.stdout[-3000:]
        stats = lw("cache-stats", env=env, timeout=120)
        assert stats.returncode == 0 and f"remote cache {verdict}" in stats.stdout, stats.stdout[-3000:]
    ok = lw("build", "--cpu", "--dry-run", "--cache-remote", up, "--require-remote-cache", env=lw_env, timeout=300)
    assert ok.returncode == 0 and "dry run: nothing was built" in ok.stdout, ok.stdout[-3000:]
    warned = lw("build", "--cpu", "--dry-run", "--cache-remote", down, env=lw_env, timeout=300)
    assert warned.returncode == 0 and f"warning: remote compiler cache {down} is unreachable" in warned.stdout
    t0 = time.monotonic()
    failed = lw("build", "--cpu", "--dry-run", "--cache-remote", down, "--require-remote-cache", env=lw_env,
                timeout=300)
    errors = [ln for ln in failed.stdout.splitlines() if ln.startswith("error:")]
    assert failed.returncode == 4 and len(errors) == 1 and "is unreachable" in errors[0], failed.stdout[-3000:]
    assert "[ok" not in failed.stdout  # it failed before the doctor ran a single tool
    print(f"--require-remote-cache, closed port: exit 4 in {time.monotonic() - t0:.2f} s")


def test_gpu_runner_without_a_prefetch_folder_says_how_to_make_one(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "gpu-runner.sh"
    script.write_bytes((ROOT / "scripts" / "gpu-runner.sh").read_bytes())
    res = subprocess.run(["bash", str(script), "check"], env={"PATH": "/usr/bin:/bin", "LW_TOOLS": str(tmp_path / "t")},
                         text=True, capture_output=True, timeout=60, check=False)
    assert res.returncode == 6, res.stderr  # OfflineMissing's code, before pip is ever asked
    assert ".prefetch/wheels does not exist" in res.stderr and "nox -s prefetch" in res.stderr
    assert not (tmp_path / "t").exists()
