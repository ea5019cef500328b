"""A big random-weight llama written straight in K-quant blocks, for multi-GPU benches.

Writing an 8B model as F16 first (16 GB) and quantizing it takes minutes; random weights need no
quantizer: a block of random bits with a fixed, small super-block scale *is* a random quantized weight.
Every matrix is Q4_K (144 bytes per 256 weights: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins,
128 bytes of 4-bit quants) and the output matrix Q6_K (210 bytes: 128 low + 64 high bits of 6-bit quants,
16 int8 scales, f16 d), the layout of ``block_q4_K``/``block_q6_K`` in ggml/src/ggml-common.h. That is
Q4_K_M's mix without its Q6_K layers, so its speed is that of a Q4_K_M model of the same shape; native
llama-bench and the wheel read the same file. The numbers in it mean nothing: it is for speed only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llama_wheels.model import LlamaShape, finish_gguf, tensor_plan, write_metadata

#: Llama-3-8B's shape (dim 4096, 32 layers, FFN 14336, 32 heads, 8 KV heads, vocab 128256).
BENCH_8B = LlamaShape(n_vocab_words=128256 - 259, n_embd=4096, n_layer=32, n_head=32, n_head_kv=8, n_ff=14336,
                      n_ctx=8192, dtype="q4_k")

QK_K = 256
#: bytes per 256 weights, offset of the f16 fields to fix, and their values: d (and dmin) chosen so the
#: weights come out about zero-mean with a standard deviation near 0.015.
_BLOCKS = {"Q4_K": (144, ((0, 1e-4), (2, 7.5e-4))), "Q6_K": (210, ((208, 2e-5),))}


def quant_name(shape: LlamaShape) -> str:
    return shape.name.replace(f"-{shape.dtype}-", "-randq4k-")


def random_blocks(rows: int, cols: int, kind: str, rng: object) -> object:
    """``rows`` x ``cols`` weights as random ``kind`` blocks (a uint8 array, one row of blocks per weight row)."""
    import numpy as np

    size, fixed = _BLOCKS[kind]
    data = rng.integers(0, 256, size=(rows * (cols // QK_K), size), dtype=np.uint8)  # type: ignore[attr-defined]
    for offset, value in fixed:
        data[:, offset:offset + 2] = np.frombuffer(np.float16(value).tobytes(), dtype=np.uint8)
    return data.reshape(rows, (cols // QK_K) * size)


def write_random_q4k(path: Path, shape: LlamaShape) -> Path:
    """Write ``shape`` with random Q4_K weights (Q6_K output, f32 norms). Same shape and seed, same bytes."""
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    rng = np.random.default_rng(shape.seed)
    w = gguf.GGUFWriter(str(tmp), "llama")
    write_metadata(w, shape, "llama-wheels random Q4_K bench model", 15)  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    for name, dims, scale in tensor_plan(shape):
        if scale is None:
            w.add_tensor(name, np.ones(dims, dtype=np.float32))
            continue
        kind = "Q6_K" if name == "output.weight" else "Q4_K"
        blocks: Any = random_blocks(dims[0], dims[1], kind, rng)  # raw uint8 blocks; gguf's stub wants floats
        w.add_tensor(name, blocks, raw_dtype=getattr(gguf.GGMLQuantizationType, kind))
    return finish_gguf(w, tmp, path)


def cached_random_q4k(cache_dir: Path, shape: LlamaShape = BENCH_8B) -> Path:
    path = cache_dir / "models" / quant_name(shape)
    return path if path.exists() else write_random_q4k(path, shape)
