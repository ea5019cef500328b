"""The random Q4_K writer: valid K-quant blocks (gguf's own dequantizer reads them), finite weights of a
sane size, and the 8B shape's byte size without writing it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from llama_wheels.model import tensor_plan
from llama_wheels.randquant import BENCH_8B, quant_name, random_blocks, write_random_q4k

SMALL = dataclasses.replace(BENCH_8B, n_vocab_words=1024 - 259, n_embd=512, n_layer=2, n_head=8, n_head_kv=2,
                            n_ff=1024, n_ctx=512)


def test_written_model_reads_back_as_finite_small_weights(tmp_path: Path) -> None:
    import gguf
    from gguf.quants import dequantize

    path = write_random_q4k(tmp_path / quant_name(SMALL), SMALL)
    reader = gguf.GGUFReader(str(path))
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["output.weight"] == "Q6_K" and kinds["blk.1.ffn_down.weight"] == "Q4_K"
    assert kinds["output_norm.weight"] == "F32"
    assert [t.name for t in reader.tensors] == [n for n, _, _ in tensor_plan(SMALL)]
    for t in reader.tensors:
        if t.tensor_type.name in ("Q4_K", "Q6_K"):
            w = dequantize(t.data, t.tensor_type)
            assert np.isfinite(w).all() and abs(float(w.mean())) < 2e-3 and 0.005 < float(w.std()) < 0.05, t.name
    again = write_random_q4k(tmp_path / "again.gguf", SMALL)
    assert again.read_bytes() == path.read_bytes()


def test_block_sizes_and_8b_size() -> None:
    rng = np.random.default_rng(0)
    assert random_blocks(2, 512, "Q4_K", rng).shape == (2, 288)  # type: ignore[attr-defined]
    assert random_blocks(2, 512, "Q6_K", rng).shape == (2, 420)  # type: ignore[attr-defined]
    weights = sum(int(np.prod(d)) for _, d, s in tensor_plan(BENCH_8B) if s is not None)
    assert 8.0e9 < weights < 8.1e9  # Llama-3-8B: 8.03 B parameters
    assert quant_name(BENCH_8B).startswith("llama-32L-4096d-randq4k-")
