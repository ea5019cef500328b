"""GPU vs CPU agreement the way ``llama-perplexity --kl-divergence`` judges it: teacher-forced distributions.

Both runs read the *same* token sequence (teacher forcing), so one near-tie cannot send them down
different paths, as free-running greedy decoding does. Per scored position we compare the two
softmax distributions over the whole vocabulary:

- KL divergence ``KL(ref || test) = sum_i p_ref(i) * (log p_ref(i) - log p_test(i))`` in nats, with the
  CPU run as the reference (llama-perplexity: the ``--kl-divergence-base`` run is ``p_base``);
- top-1 agreement: the argmax of both rows is the same token ("Same top p" in llama-perplexity);
- top-5 overlap: ``|top5(ref) & top5(test)| / 5``;
- the negative log-likelihood of the actual next token under each run, hence each run's perplexity.

The scheme mirrors llama-perplexity's (tools/perplexity/perplexity.cpp, ``perplexity()`` and
``kl_divergence()``): the text is tokenized with the model's tokenizer (BOS added if the vocabulary
says so), cut into chunks of ``n_ctx`` tokens, the first token of every chunk is replaced by BOS, the
KV cache is cleared between chunks, and only positions ``n_ctx/2 .. n_ctx-2`` of each chunk are scored
(``n_ctx - 1 - n_ctx/2`` per chunk; the model always has at least half a window of context).
Differences from the native tool, and why they are small: llama-perplexity stores the base run's
log-probabilities as 16-bit integers over the top 16 nats (step 16/65535 = 2.4e-4 nats) and skips
entries below -16 nats in the KL sum; we keep float32 logits and sum over the whole vocabulary.

This module imports nothing from llama_wheels: ``_probe.py`` loads it by path inside the wheel's venv.
The pure-Python parts (summaries, perplexity, thresholds, verdict) need only the standard library;
``position_stats`` and ``compare_runs`` import numpy when called.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: llama-perplexity's default context and ours: chunks of 512 tokens, 255 scored positions each.
N_CTX = 512
TOP_K = 5
ROW_BLOCK = 32  # rows per numpy block: 32 x 262144 (Gemma's vocab) x 8 bytes = 64 MiB per temporary


def scored_positions(n_ctx: int) -> range:
    """Positions of one chunk whose logits are scored: ``n_ctx/2 .. n_ctx-2`` (llama-perplexity's ``first``)."""
    return range(n_ctx // 2, n_ctx - 1)


def chunk_plan(n_tokens: int, n_ctx: int, max_chunks: int | None = None) -> int:
    """How many chunks of ``n_ctx`` a text of ``n_tokens`` gives (llama-perplexity: ``tokens / n_ctx``)."""
    n = n_tokens // n_ctx
    return n if max_chunks is None else min(n, max_chunks)


# ---------------------------------------------------------------------------------------------------
# Per-position statistics (numpy)


@dataclass(frozen=True)
class PositionStats:
    """Per scored position: KLD(ref||test), top-1 same, top-5 overlap, NLL of the next token in each run."""

    kld: list[float]
    top1_same: list[bool]
    top5_overlap: list[float]
    nll_ref: list[float]
    nll_test: list[float]


def position_stats(ref_logits: Any, test_logits: Any, targets: Sequence[int], k: int = TOP_K) -> PositionStats:
    """Compare two ``[n_positions, n_vocab]`` logit arrays whose row ``i`` predicts ``targets[i]``.

    Raises ValueError on mismatched shapes or non-finite logits (a NaN row is a broken kernel, not noise).
    """
    import numpy as np

    ref = np.asarray(ref_logits)
    test = np.asarray(test_logits)
    if ref.ndim != 2 or ref.shape != test.shape:
        raise ValueError(f"logit arrays differ in shape: {ref.shape} vs {test.shape}")
    if len(targets) != ref.shape[0]:
        raise ValueError(f"{len(targets)} targets for {ref.shape[0]} positions")
    tgt = np.asarray(targets, dtype=np.int64)
    kld: list[float] = []
    top1: list[bool] = []
    topk: list[float] = []
    nll_r: list[float] = []
    nll_t: list[float] = []
    k = min(k, ref.shape[1])
    for lo in range(0, ref.shape[0], ROW_BLOCK):
        r = ref[lo:lo + ROW_BLOCK].astype(np.float64)
        t = test[lo:lo + ROW_BLOCK].astype(np.float64)
        for name, a in (("reference", r), ("test", t)):
            bad = ~np.isfinite(a).all(axis=1)
            if bad.any():
                raise ValueError(f"the {name} run has non-finite logits at position {lo + int(np.argmax(bad))}")
        lr = _log_softmax(r)
        lt = _log_softmax(t)
        kld += np.sum(np.exp(lr) * (lr - lt), axis=1).clip(min=0.0).tolist()  # >= 0 in exact arithmetic
        top1 += (np.argmax(r, axis=1) == np.argmax(t, axis=1)).tolist()
        kr = np.argpartition(-r, k - 1, axis=1)[:, :k]
        kt = np.argpartition(-t, k - 1, axis=1)[:, :k]
        topk += [len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(kr, kt, strict=True)]
        rows = np.arange(r.shape[0])
        nll_r += (-lr[rows, tgt[lo:lo + ROW_BLOCK]]).tolist()
        nll_t += (-lt[rows, tgt[lo:lo + ROW_BLOCK]]).tolist()
    return PositionStats(kld, top1, topk, nll_r, nll_t)


def _log_softmax(a: Any) -> Any:
    import numpy as np

    m = a.max(axis=1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=1, keepdims=True))


# ---------------------------------------------------------------------------------------------------
# Summaries (standard library only)


@dataclass(frozen=True)
class Summary:
    mean: float
    p99: float
    max: float


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between the sorted neighbours, as llama-perplexity's ``percentile``."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    if fraction <= 0:
        return s[0]
    if fraction >= 1:
        return s[-1]
    p = fraction * (len(s) - 1)
    i = int(p)
    p -= i
    return (1 - p) * s[i] + p * s[min(i + 1, len(s) - 1)]


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        raise ValueError("no values to summarize")
    return Summary(math.fsum(values) / len(values), percentile(values, 0.99), max(values))


def perplexity(nlls: Sequence[float]) -> float:
    """``exp(mean negative log-likelihood)``, the PPL llama-perplexity prints."""
    if not nlls:
        raise ValueError("perplexity of no tokens")
    return math.exp(math.fsum(nlls) / len(nlls))


def mean_and_uncertainty(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error, exactly as llama-perplexity's ``mean_and_uncertainty``
    (tools/perplexity/perplexity.cpp): ``sqrt((E[x^2] - E[x]^2) / (n - 1))``, 0 for 10 values or fewer."""
    n = len(values)
    if n < 1:
        return 0.0, 0.0
    f = math.fsum(values) / n
    df = math.fsum(v * v for v in values) / n - f * f
    return f, (math.sqrt(df / (n - 1)) if df > 0 and n > 10 else 0.0)


def _covariance(a: Sequence[float], b: Sequence[float]) -> float:
    """llama-perplexity's ``covariance`` of two means: ``(E[ab] - E[a]E[b]) / (n - 1)``, 0 below 10 values."""
    n = len(a)
    if n < 10:
        return 0.0
    return (math.fsum(x * y for x, y in zip(a, b, strict=True)) / n - (math.fsum(a) / n) * (math.fsum(b) / n)) / (n - 1)


@dataclass(frozen=True)
class Agreement:
    """What one reference-vs-test comparison measured, with the uncertainty llama-perplexity prints (±: the
    standard error of each mean over the scored positions)."""

    positions: int
    kld: Summary
    top1: float  # fraction of positions with the same argmax
    top5: float  # mean top-5 overlap, 0..1
    ppl_ref: float
    ppl_test: float
    #: information only: first position where the argmax differs (-1: none)
    first_top1_difference: int = -1
    kld_err: float = 0.0  # ± of the mean KLD
    top1_err: float = 0.0  # ± of top-1 (sqrt(p(1-p)/(n-1)), "Same top p")
    ln_ppl_ratio: float = 0.0  # mean ln(PPL(test)/PPL(ref))
    ln_ppl_ratio_err: float = 0.0  # its ±, with the covariance of the two runs' NLLs
    ppl_ref_err: float = 0.0
    ppl_test_err: float = 0.0

    @property
    def ppl_ratio(self) -> float:
        return self.ppl_test / self.ppl_ref

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ppl_ratio": self.ppl_ratio}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Agreement:
        extra = {k: float(d.get(k, 0.0)) for k in ("kld_err", "top1_err", "ln_ppl_ratio", "ln_ppl_ratio_err",
                                                   "ppl_ref_err", "ppl_test_err")}
        return cls(int(d["positions"]), Summary(**d["kld"]), float(d["top1"]), float(d["top5"]),
                   float(d["ppl_ref"]), float(d["ppl_test"]), int(d.get("first_top1_difference", -1)), **extra)


def agreement(stats: PositionStats) -> Agreement:
    """The summary of one comparison, each mean with llama-perplexity's uncertainty."""
    first = next((i for i, same in enumerate(stats.top1_same) if not same), -1)
    n = len(stats.kld)
    kld_mean, kld_err = mean_and_uncertainty(stats.kld)
    top1 = sum(stats.top1_same) / n
    nll_t, nll_t_err = mean_and_uncertainty(stats.nll_test)
    nll_r, nll_r_err = mean_and_uncertainty(stats.nll_ref)
    cov = _covariance(stats.nll_test, stats.nll_ref)
    ratio_err = math.sqrt(max(nll_t_err ** 2 + nll_r_err ** 2 - 2.0 * cov, 0.0))
    return Agreement(n, Summary(kld_mean, percentile(stats.kld, 0.99), max(stats.kld)), top1,
                     math.fsum(stats.top5_overlap) / n, math.exp(nll_r), math.exp(nll_t), first,
                     kld_err=kld_err, top1_err=math.sqrt(top1 * (1.0 - top1) / (n - 1)) if n > 1 else 0.0,
                     ln_ppl_ratio=nll_t - nll_r, ln_ppl_ratio_err=ratio_err,
                     ppl_ref_err=math.exp(nll_r) * nll_r_err, ppl_test_err=math.exp(nll_t) * nll_t_err)


def describe(a: Agreement) -> str:
    """One line for a report, each mean with its ± as llama-perplexity prints it."""
    return (f"{a.positions} positions: KLD mean {a.kld.mean:.2e} ± {a.kld_err:.1e} / p99 {a.kld.p99:.2e} / "
            f"max {a.kld.max:.2e}; top-1 {100 * a.top1:.2f} ± {100 * a.top1_err:.2f}%, top-5 {100 * a.top5:.2f}%; "
            f"PPL {a.ppl_ref:.4f} (ref) vs {a.ppl_test:.4f} (test), ln ratio {a.ln_ppl_ratio:+.5f} ± "
            f"{a.ln_ppl_ratio_err:.5f}")


# ---------------------------------------------------------------------------------------------------
# Run files: <dir>/logits.npy (float32 [positions, vocab]) + <dir>/run.json (targets and settings)


def compare_runs(ref_dir: Path, test_dir: Path) -> Agreement:
    """Load two teacher-forced runs written by ``_probe.py logits`` and compare them."""
    import numpy as np

    ref_meta = json.loads((ref_dir / "run.json").read_text())
    test_meta = json.loads((test_dir / "run.json").read_text())
    if ref_meta["targets"] != test_meta["targets"]:
        raise ValueError("the two runs did not read the same tokens (different tokenizer or text)")
    ref = np.load(ref_dir / "logits.npy", mmap_mode="r")
    test = np.load(test_dir / "logits.npy", mmap_mode="r")
    return agreement(position_stats(ref, test, ref_meta["targets"]))
