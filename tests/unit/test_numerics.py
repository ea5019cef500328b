"""KLD, top-k, perplexity and the verdict on distributions small enough to compute by hand."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from llama_wheels import numerics as nm


def logits_of(*probs: list[float]) -> np.ndarray:
    """Rows of logits whose softmax is exactly ``probs`` (log p, plus an offset softmax ignores)."""
    return np.log(np.array(probs, dtype=np.float64)) + 3.0


def test_kld_by_hand() -> None:
    # KL(p||q), p = (1/2, 1/2), q = (9/10, 1/10): 1/2 ln(5/9) + 1/2 ln 5 = 0.5108256...
    s = nm.position_stats(logits_of([0.5, 0.5]), logits_of([0.9, 0.1]), [0])
    assert s.kld[0] == pytest.approx(0.5 * math.log(5 / 9) + 0.5 * math.log(5), rel=1e-12)
    assert s.kld[0] == pytest.approx(0.5108256, abs=1e-7)
    # the other direction differs (KL is not symmetric): 0.9 ln 1.8 + 0.1 ln 0.2 = 0.3680642
    s2 = nm.position_stats(logits_of([0.9, 0.1]), logits_of([0.5, 0.5]), [0])
    assert s2.kld[0] == pytest.approx(0.9 * math.log(1.8) + 0.1 * math.log(0.2), rel=1e-12)


def test_same_distribution_is_zero_whatever_the_offset() -> None:
    ref = logits_of([0.7, 0.2, 0.1], [0.25, 0.25, 0.5])
    s = nm.position_stats(ref, ref + 17.5, [0, 2])
    assert max(s.kld) < 1e-15
    assert s.top1_same == [True, True] and s.top5_overlap == [1.0, 1.0]
    assert s.nll_ref == pytest.approx([-math.log(0.7), -math.log(0.5)])
    assert s.nll_test == pytest.approx(s.nll_ref)


def test_top1_and_top5_by_hand() -> None:
    vocab = 8
    ref = np.arange(vocab, dtype=np.float64)[None, :]  # ranking 7 > 6 > 5 > 4 > 3 > ...
    test = ref.copy()
    test[0, 7], test[0, 0] = -5.0, 100.0  # argmax moves from 7 to 0; top-5 {7,6,5,4,3} -> {0,6,5,4,3}
    s = nm.position_stats(ref, test, [1])
    assert s.top1_same == [False]
    assert s.top5_overlap == [pytest.approx(4 / 5)]
    disjoint = np.array([[9.0, 9, 9, 9, 9, 0, 0, 0, 0, 0]])
    s2 = nm.position_stats(disjoint, disjoint[:, ::-1].copy(), [0])
    assert s2.top5_overlap == [0.0] and s2.top1_same == [False]


def test_perplexity_by_hand() -> None:
    assert nm.perplexity([math.log(4)] * 10) == pytest.approx(4.0)  # uniform over 4 tokens
    # targets with p = 1/2 and 1/8: exp((ln 2 + ln 8) / 2) = 4
    s = nm.position_stats(logits_of([0.5, 0.5], [0.125, 0.875]), logits_of([0.5, 0.5], [0.125, 0.875]), [1, 0])
    assert nm.perplexity(s.nll_ref) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        nm.perplexity([])


def test_percentile_matches_llama_perplexity() -> None:
    # perplexity.cpp: p = f*(n-1), linear between neighbours
    assert nm.percentile([5, 1, 4, 2, 3], 0.99) == pytest.approx(4.96)
    assert nm.percentile([3.0], 0.99) == 3.0
    assert nm.percentile([1, 2], 0.0) == 1 and nm.percentile([1, 2], 1.0) == 2
    s = nm.summarize([0.0, 0.0, 0.0, 1.0])
    assert (s.mean, s.max) == (0.25, 1.0) and s.p99 == pytest.approx(0.97)


def test_bad_inputs_are_refused() -> None:
    a = logits_of([0.5, 0.5])
    with pytest.raises(ValueError, match="shape"):
        nm.position_stats(a, logits_of([0.2, 0.3, 0.5]), [0])
    with pytest.raises(ValueError, match="targets"):
        nm.position_stats(a, a, [0, 1])
    with pytest.raises(ValueError, match="non-finite logits at position 1"):
        nm.position_stats(np.vstack([a, a]), np.vstack([a, [[np.nan, 0.0]]]), [0, 1])


def test_blocks_give_the_same_answer_as_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((70, 50)) * 3
    test = ref + rng.standard_normal((70, 50)) * 0.1
    targets = rng.integers(0, 50, 70).tolist()
    whole = nm.position_stats(ref, test, targets)
    monkeypatch.setattr(nm, "ROW_BLOCK", 7)
    blocked = nm.position_stats(ref, test, targets)
    assert blocked.kld == pytest.approx(whole.kld, rel=1e-12) and blocked.top1_same == whole.top1_same
    assert blocked.top5_overlap == whole.top5_overlap and blocked.nll_test == pytest.approx(whole.nll_test)
    assert len(whole.kld) == 70 and min(whole.kld) > 0


def test_scheme_mirrors_llama_perplexity() -> None:
    assert list(nm.scored_positions(512)) == list(range(256, 511))  # n_ctx - 1 - n_ctx/2 = 255 positions
    assert nm.chunk_plan(1100, 512) == 2 and nm.chunk_plan(5000, 512, max_chunks=2) == 2
    assert nm.chunk_plan(1000, 512) == 1


def _agreement(**kw: object) -> nm.Agreement:
    base = nm.Agreement(positions=510, kld=nm.Summary(2e-4, 3e-3, 0.02), top1=0.985, top5=0.97,
                        ppl_ref=10.0, ppl_test=10.01)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_uncertainty_is_llama_perplexity_s() -> None:
    # mean_and_uncertainty in tools/perplexity/perplexity.cpp: sqrt((E[x^2] - E[x]^2) / (n - 1)), 0 for n <= 10
    xs = [float(i % 7) for i in range(100)]
    mean, err = nm.mean_and_uncertainty(xs)
    assert mean == pytest.approx(float(np.mean(xs)))
    assert err == pytest.approx(float(np.std(xs)) / math.sqrt(99), rel=1e-12)
    assert nm.mean_and_uncertainty([1.0, 2.0, 3.0]) == (2.0, 0.0)
    assert nm.mean_and_uncertainty([]) == (0.0, 0.0)


def test_agreement_reports_each_mean_with_its_uncertainty() -> None:
    rng = np.random.default_rng(3)
    n = 400
    kld = list(rng.exponential(0.02, n))
    nll_ref = rng.exponential(2.5, n)
    nll_test = nll_ref + rng.normal(0.0, 0.05, n)
    top1 = [bool(x) for x in rng.random(n) < 0.9]
    a = nm.agreement(nm.PositionStats(kld, top1, [1.0] * n, list(nll_ref), list(nll_test)))
    p = sum(top1) / n
    assert a.top1_err == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)))
    assert a.kld_err == pytest.approx(float(np.std(kld)) / math.sqrt(n - 1), rel=1e-9)
    d = nll_test - nll_ref  # ln(PPL(Q)/PPL(base)) is the mean of the difference; its error the difference's
    assert a.ln_ppl_ratio == pytest.approx(float(np.mean(d)), abs=1e-12)
    assert a.ln_ppl_ratio_err == pytest.approx(float(np.std(d)) / math.sqrt(n - 1), rel=1e-6)
    assert a.ppl_ref == pytest.approx(math.exp(float(np.mean(nll_ref))))
    assert a.ppl_ref_err == pytest.approx(a.ppl_ref * float(np.std(nll_ref)) / math.sqrt(n - 1), rel=1e-9)
    line = nm.describe(a)
    assert f"top-1 {100 * p:.2f} ± {100 * a.top1_err:.2f}%" in line and "ln ratio" in line and "±" in line


def test_agreement_round_trips_and_describes() -> None:
    a = _agreement(first_top1_difference=17)
    assert nm.Agreement.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    assert "top-1 98.50 ± 0.00%" in nm.describe(a) and "KLD mean 2.00e-04 ± " in nm.describe(a)


def test_compare_runs_reads_probe_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((40, 30)).astype(np.float32) * 4
    targets = rng.integers(0, 30, 40).tolist()
    for name, arr in (("ref", ref), ("same", ref.copy()), ("other", ref[::-1].copy())):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "logits.npy", arr)
        (tmp_path / name / "run.json").write_text(json.dumps({"targets": targets}))
    same = nm.compare_runs(tmp_path / "ref", tmp_path / "same")
    assert same.kld.max < 1e-9 and same.top1 == 1.0 and same.ln_ppl_ratio == 0.0
    other = nm.compare_runs(tmp_path / "ref", tmp_path / "other")
    assert other.kld.mean > 1.0 and other.top1 < 0.5
    (tmp_path / "other" / "run.json").write_text(json.dumps({"targets": targets[::-1]}))
    with pytest.raises(ValueError, match="same tokens"):
        nm.compare_runs(tmp_path / "ref", tmp_path / "other")
