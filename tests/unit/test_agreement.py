"""How the smoke check drives its probes: a pure-CPU reference once per model, verify.judge's verdict
applied (real-model numbers are information, a gross disagreement fails), and the control that passes only
when the comparison sees a real difference. The probe here writes logit
files as the real one does (the real one runs in tests/integration/test_numerics_cpu.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from llama_wheels import agreement, numerics
from llama_wheels.smoke.probe import PROBE


class RecordingProbe:
    """Stands in for ``smoke.probe``: records each call; ``logits`` writes rows (noise per model name)."""

    def __init__(self, noise: dict[str, float]) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.noise = noise

    def __call__(self, venv_python: str, check: str, args: dict[str, Any], env: dict[str, str],
                 timeout: float = 600) -> tuple[dict[str, Any] | None, str]:
        self.calls.append((check, dict(args), dict(env)))
        if check == "compare":
            return numerics.compare_runs(Path(args["ref"]), Path(args["test"])).to_dict(), ""
        out = Path(args["out"])
        out.mkdir(parents=True)
        rng = np.random.default_rng(0)
        rows = rng.standard_normal((300, 40)) * 4
        if args["n_gpu_layers"] != 0:
            rows = rows + np.random.default_rng(1).standard_normal(rows.shape) * self.noise[Path(args["model"]).name]
        np.save(out / "logits.npy", rows.astype(np.float32))
        (out / "run.json").write_text(json.dumps({"targets": rng.integers(0, 40, 300).tolist()}))
        return {"finite": True}, ""


def test_reference_is_pure_cpu_and_computed_once(tmp_path: Path) -> None:
    probe = RecordingProbe({"m.gguf": 1e-3})
    tf = agreement.TeacherForced(probe, "py", tmp_path, {"PATH": "/bin"})
    for visible in ("0", "1"):
        o = tf.check(Path("m.gguf"), {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": visible})
        assert o.status == "pass", o.detail
    logits = [c for c in probe.calls if c[0] == "logits"]
    assert len(logits) == 3  # one reference, two runs under test
    _, args, env = logits[0]
    assert env["CUDA_VISIBLE_DEVICES"] == "" and args["op_offload"] is False and args["n_gpu_layers"] == 0
    assert [c[2]["CUDA_VISIBLE_DEVICES"] for c in logits[1:]] == ["0", "1"]
    assert all(c[1]["n_gpu_layers"] == -1 and "op_offload" not in c[1] for c in logits[1:])
    assert all(Path(c[1]["text"]) == agreement.TEXT for c in logits)


def test_gross_disagreement_fails_small_noise_is_information(tmp_path: Path) -> None:
    probe = RecordingProbe({"m.gguf": 0.3, "wrong.gguf": 40.0})
    tf = agreement.TeacherForced(probe, "py", tmp_path, {})
    ok = tf.check(Path("m.gguf"), {})
    assert ok.status == "pass" and "information" in ok.detail and "±" in ok.detail, ok.detail
    bad = tf.check(Path("wrong.gguf"), {})
    assert bad.status == "fail" and "computes another model" in bad.detail, bad.detail


def test_the_control_must_see_a_difference(tmp_path: Path) -> None:
    probe = RecordingProbe({"m.gguf": 1e-4, "m-Q4_0.gguf": 1.0, "same.gguf": 1e-4})
    tf = agreement.TeacherForced(probe, "py", tmp_path, {})
    seen = tf.sensitivity(Path("m.gguf"), Path("m-Q4_0.gguf"), {}, -1)
    assert seen.status == "pass" and "sees a real difference" in seen.detail, seen.detail
    assert seen.numbers["ratio"] > 1e3
    blind = tf.sensitivity(Path("same.gguf"), Path("same.gguf"), {}, -1)
    assert blind.status == "fail" and "cannot see a real difference" in blind.detail, blind.detail


def test_the_text_is_long_enough_for_eight_chunks() -> None:
    # >= 8 x 512 tokens (2,040 scored positions) for every tokenizer measured: Gemma's 262k vocabulary
    # gives ~1.3 tokens per word of this text, so 8 x 512 / 1.3 ~ 3,200 words are needed.
    assert agreement.MAX_CHUNKS == 8
    assert len(agreement.TEXT.read_text().split()) >= 6000
    assert PROBE.with_name("numerics.py").exists()  # the probe loads it from beside itself
