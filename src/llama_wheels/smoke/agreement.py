"""Greedy decoding of one GPU run against the CPU run: information beside the judged, teacher-forced
agreement (verify.judge). Free-running greedy tokens diverge at the first near-tie, so they never decide."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AGREE_STEPS = 8


def greedy_summary(cpu: Mapping[str, Any], gpu: Mapping[str, Any]) -> tuple[str, float]:
    """One line on the first greedy tokens and the first step's logits, and the max |Δlogit| it saw."""
    same = cpu["tokens"][:AGREE_STEPS] == gpu["tokens"][:AGREE_STEPS]
    diff = max(abs(a - b) for a, b in zip(cpu["first_logits"], gpu["first_logits"], strict=True))
    return (f"first {AGREE_STEPS} greedy tokens {'equal' if same else 'differ'}; max |Δlogit| first step = "
            f"{diff:.4f}; {gpu['tok_per_s']} tok/s"), diff
