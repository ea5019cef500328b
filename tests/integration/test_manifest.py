"""The manifest and the wheelhouse locks, with real processes: kill -9 inside a publish, a second holder."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from llama_wheels import manifest

SRC = str(Path(__file__).resolve().parents[2] / "src")

# A child that publishes one wheel and kills itself (SIGKILL, as kill -9) at the named point.
CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from llama_wheels import manifest
    point, wh = sys.argv[1], Path(sys.argv[2])
    real_replace, real_write = os.replace, manifest._write
    def replace(src, dst):
        if point == "before-move" and str(dst).endswith(".whl"):
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
    def write(wheelhouse, data):
        if point == "after-move":
            os.kill(os.getpid(), signal.SIGKILL)
        real_write(wheelhouse, data)
    manifest.os.replace, manifest._write = replace, write
    staged = wh.parent / "staged.whl"
    manifest.publish(wh, staged, wh / "cpu" / "w.whl", {"sha256": sys.argv[3], "filename": "w.whl"})
""")


def _child_publish(point: str, wh: Path, payload: bytes) -> int:
    (wh.parent / "staged.whl").write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-c", CHILD, point, str(wh), sha], env=env, check=False).returncode


def test_kill_between_move_and_manifest_write_rolls_forward(tmp_path: Path) -> None:
    wh = tmp_path / "wheelhouse"
    assert _child_publish("after-move", wh, b"new wheel") == -signal.SIGKILL
    assert (wh / "cpu" / "w.whl").read_bytes() == b"new wheel"  # moved in whole, then killed
    entry = manifest.entries(wh)["cpu/w.whl"]  # the next locked call completes the publish
    assert entry["sha256"] == hashlib.sha256(b"new wheel").hexdigest()
    assert not (wh / manifest.JOURNAL).exists()


def test_kill_before_the_move_leaves_the_old_state(tmp_path: Path) -> None:
    wh = tmp_path / "wheelhouse"
    assert _child_publish("before-move", wh, b"new wheel") == -signal.SIGKILL
    assert manifest.entries(wh) == {} and not (wh / "cpu" / "w.whl").exists()
    assert not (wh / manifest.JOURNAL).exists()
    assert _child_publish("none", wh, b"new wheel") == 0  # the next run works
    assert manifest.entries(wh)["cpu/w.whl"]["filename"] == "w.whl"


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from llama_wheels import manifest
    with manifest.flavour_lock(Path(sys.argv[1]), "cpu"):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def test_second_build_of_a_flavour_waits_and_names_the_holder(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), "60"], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        said: list[str] = []
        with pytest.raises(manifest.InUse, match=rf"in use by PID {holder.pid} since "), \
                manifest.held(tmp_path / ".build-cpu.lock", "flavour 'cpu'", say=said.append, timeout=0.5):
            pass
        assert said and f"PID {holder.pid}" in said[0] and "waiting" in said[0]
        holder.kill()  # kill -9: the OS releases the lock with the process
        holder.wait()
        t0 = time.monotonic()
        with manifest.flavour_lock(tmp_path, "cpu", say=said.append):
            assert time.monotonic() - t0 < 5
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout:
            holder.stdout.close()


PUBLISHER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from llama_wheels import manifest
    wh, tag = Path(sys.argv[1]), sys.argv[2]
    for i in range(15):
        staged = wh.parent / f"staged-{tag}-{i}.whl"
        staged.write_bytes(f"{tag}{i}".encode())
        manifest.publish(wh, staged, wh / tag / f"w{i}.whl", {"n": i}, say=lambda _: None)
""")


def test_concurrent_publishers_lose_no_entry(tmp_path: Path) -> None:
    wh = tmp_path / "wheelhouse"
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [subprocess.Popen([sys.executable, "-c", PUBLISHER, str(wh), tag], env=env) for tag in ("a", "b", "c")]
    assert [p.wait() for p in procs] == [0, 0, 0]
    data = json.loads((wh / manifest.NAME).read_text())
    assert sorted(data["wheels"]) == sorted(f"{t}/w{i}.whl" for t in "abc" for i in range(15))


def test_a_damaged_manifest_is_one_line(tmp_path: Path) -> None:
    (tmp_path / manifest.NAME).write_text('{"wheels": {')
    with pytest.raises(manifest.ManifestDamaged, match=r"manifest\.json is not valid JSON"):
        manifest.entries(tmp_path)
