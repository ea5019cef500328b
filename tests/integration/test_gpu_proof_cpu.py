"""What the GPU proof's new probes do on the real CPU wheel: the split-mode probe asks the wheel's own
backend registry (no CUDA registry here), and the bench's runners ask llama.cpp for the same work (the
counts that explain the high-level pp ratio on a GPU: Llama.eval never synchronizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llama_wheels.smoke.probe import PROBE
from llama_wheels.smoke.splits import SplitSupport

from .conftest import lw


@pytest.fixture(scope="module")
def venv_python(cpu_build: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    venv = tmp_path_factory.mktemp("proof") / "venv"
    subprocess.run([sys.executable, "-m", "virtualenv", "-q", str(venv)], check=True)
    subprocess.run([venv / "bin/python", "-m", "pip", "install", "-q", "--no-index", "--find-links",
                    str(cpu_build.parent), str(cpu_build)], check=True)
    return str(venv / "bin/python")


def probe(python: str, check: str, args: dict[str, object]) -> dict[str, object]:
    out = subprocess.run([python, str(PROBE), check, json.dumps(args)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1][len("RESULT "):])  # type: ignore[no-any-return]


def test_split_probe_on_a_cpu_wheel(venv_python: str) -> None:
    res = probe(venv_python, "splits", {})
    assert res["found"] is False and res["devices"] == 0 and res["nccl"] is False
    assert res["meta_device"] is True and res["llama_split_mode_tensor"] is True  # tensor mode is in this llama.cpp
    support = SplitSupport.from_probe(res)
    assert not support.cuda and not support.row


def test_bench_runners_do_the_same_work(venv_python: str) -> None:
    from llama_wheels.model import cached_model

    from .test_build_cpu import _cache_dir

    args = {"model": str(cached_model(_cache_dir())), "ngl": 0, "n_prompt": 512, "n_gen": 16, "threads": 2,
            "reps": 2, "flash_attn": "on", "type_k": 1, "type_v": 1}
    low = probe(venv_python, "bench_lowlevel", args)
    assert low["counts"] == {"pp": {"decode_calls": 1, "tokens": 512, "logit_rows": 1, "synchronize": 1,
                                    "logits_reads": 0},
                             "tg": {"decode_calls": 16, "tokens": 16, "logit_rows": 16, "synchronize": 16,
                                    "logits_reads": 0}}
    assert 0 < low["loop_overhead_us"] < 100  # per token; a GPU token of a 270M model is ~1000 us
    high = probe(venv_python, "bench_highlevel", args)
    # Llama.eval: the same decode, tokens and logit rows, but no synchronize and no logits read
    assert high["counts"]["pp"] == {"decode_calls": 1, "tokens": 512, "logit_rows": 1, "synchronize": 0,
                                    "logits_reads": 0}
    assert high["counts"]["tg"] == {"decode_calls": 16, "tokens": 16, "logit_rows": 16, "synchronize": 0,
                                    "logits_reads": 0}
    assert len(high["pp"]) == len(high["pp_returned"]) == 2


def test_bench_cli_on_cpu(cpu_build: Path, lw_env: dict[str, str], work: Path) -> None:
    from llama_wheels.model import cached_model

    from .test_build_cpu import _cache_dir

    res = lw("bench", "--no-native", "--model", str(cached_model(_cache_dir())), "--reps", "2", "--rounds", "1",
             "--threads", "2", env=lw_env)
    assert res.returncode == 0, res.stdout[-3000:]
    report = json.loads((work / "wheelhouse" / "reports" / "bench-cpu.json").read_text())
    case = report["cases"]["CPU"]
    assert set(case["results"]) == {"wheel_lowlevel", "wheel_highlevel", "wheel_defaults"}
    assert case["evidence"]["wheel_highlevel"]["counts"]["pp"]["synchronize"] == 0
    bad = lw("bench", "--no-native", "--ctk", "nope", env=lw_env)
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stdout and "Traceback" not in bad.stdout
