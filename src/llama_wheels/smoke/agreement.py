"""GPU vs CPU agreement of one generation run: greedy tokens and first-step logits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_wheels.smoke.report import Check

AGREE_STEPS = 8
LOGIT_TOL = 0.1  # max |logit_gpu - logit_cpu| on the first step, absolute


def agreement(run_name: str, cpu: Mapping[str, Any], gpu: Mapping[str, Any]) -> tuple[Check, float]:
    """The check for one GPU run against the CPU run, and the max |Δlogit| it saw."""
    same = cpu["tokens"][:AGREE_STEPS] == gpu["tokens"][:AGREE_STEPS]
    diff = max(abs(a - b) for a, b in zip(cpu["first_logits"], gpu["first_logits"], strict=True))
    ok = same and diff <= LOGIT_TOL
    return Check(f"GPU vs CPU agreement ({run_name})", "pass" if ok else "fail",
                 f"first {AGREE_STEPS} greedy tokens {'equal' if same else 'DIFFER'}; max |Δlogit| = {diff:.4f} "
                 f"(tolerance {LOGIT_TOL}); {gpu['tok_per_s']} tok/s"), diff
