"""How the smoke check drives its probes: a pure-CPU reference once per model, the verdict applied,
and a negative control that passes only when the check rejects it. The probe here writes logit
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


def test_a_wrong_gpu_fails_and_the_control_must_fail(tmp_path: Path) -> None:
    probe = RecordingProbe({"m.gguf": 3.0, "m-Q4_0.gguf": 3.0, "same.gguf": 0.0})
    tf = agreement.TeacherForced(probe, "py", tmp_path, {})
    bad = tf.check(Path("m.gguf"), {})
    assert bad.status == "fail" and "exceeds mean KLD" in bad.detail
    assert tf.negative_control(Path("m.gguf"), Path("m-Q4_0.gguf"), {}, -1).status == "pass"
    blind = tf.negative_control(Path("same.gguf"), Path("same.gguf"), {}, -1)
    assert blind.status == "fail" and "did NOT tell F32 from Q4_0 apart" in blind.detail


def test_the_text_is_long_enough_for_two_chunks() -> None:
    # >= 2 x 512 tokens for every tokenizer we use: ~1.3 tokens per word for real models.
    assert len(agreement.TEXT.read_text().split()) >= 1300
    assert PROBE.with_name("numerics.py").exists()  # the probe loads it from beside itself
