"""Native llama-perplexity cross-check: the command line we give it and the tolerance logic.
Parsing is tested on real recorded output in tests/fixtures/numerics/ (see its README)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from llama_wheels import crosscheck, numerics

OURS = numerics.Agreement(510, numerics.Summary(0.1234, 0.9, 2.0), 0.80, 0.85, 20.0, 25.0)
NATIVE = crosscheck.NativeKld(mean_kld=0.1230, max_kld=2.0, p99_kld=0.9, same_top=0.802, ppl_test=25.01,
                              ppl_base=20.01)


def test_native_args_mirror_our_scheme() -> None:
    base = crosscheck.native_args(Path("/x/llama-perplexity"), Path("m.gguf"), Path("t.txt"), Path("b.kld"),
                                  ngl=0, test=False)
    assert base == ["/x/llama-perplexity", "-m", "m.gguf", "-f", "t.txt", "-c", "512", "-b", "512", "--chunks", "8",
                    "-ngl", "0", "--kl-divergence-base", "b.kld", "--no-op-offload"]
    test = crosscheck.native_args(Path("p"), Path("q.gguf"), Path("t.txt"), Path("b.kld"), ngl=99, test=True)
    assert test[-3:] == ["--kl-divergence-base", "b.kld", "--kl-divergence"] and "-ngl" in test and "99" in test


def test_agreement_within_tolerance() -> None:
    assert crosscheck.compare_native(OURS, NATIVE) == []


def test_each_disagreement_is_named() -> None:
    far = dataclasses.replace(NATIVE, mean_kld=0.2, same_top=0.7, ppl_base=21.0)
    diffs = crosscheck.compare_native(OURS, far)
    assert [d.split(" ")[0] for d in diffs] == ["mean", "top-1", "PPL(ref)"], diffs
    # near zero the absolute part of the tolerance decides: 6 printed decimals
    zero = dataclasses.replace(OURS, kld=numerics.Summary(3e-6, 1e-5, 1e-4))
    assert crosscheck.compare_native(zero, dataclasses.replace(NATIVE, mean_kld=0.0, same_top=0.8, ppl_base=20.0,
                                                               ppl_test=25.0)) == []


def test_clipped_base_ppl_of_a_random_model_is_not_compared() -> None:
    """Recorded on the H100 (2026-11-27), our embedded model: native PPL(base) 3073453.5210 from log-probs
    stored from -16 nats up, ours 115421632.8646; KLD and top-1 agree, PPL(test) agrees."""
    ours = dataclasses.replace(OURS, kld=numerics.Summary(2.168e-9, 1.119e-8, 1.559e-8), top1=1.0, top5=0.9996,
                               ppl_ref=115421632.8646, ppl_test=115421614.0476)
    native = dataclasses.replace(NATIVE, mean_kld=-0.000001, same_top=1.0, ppl_base=3073453.5210,
                                 ppl_test=115421617.3171)
    assert crosscheck.compare_native(ours, native) == []
    assert crosscheck.compare_native(ours, dataclasses.replace(native, ppl_test=3073453.5210))  # Q still compared
