"""GGUF models: the small deterministic smoke model, the ~1B bench model, and validation.

The smoke model is a real llama-architecture GGUF written with the ``gguf`` package: a
SentencePiece-style vocabulary with byte fallback (so any text tokenizes), fixed-seed random
weights, and every tensor the llama loader expects. It exercises the real loader, tokenizer and
kernels without a download.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llama_wheels.errors import ModelError


@dataclass(frozen=True)
class LlamaShape:
    n_vocab_words: int = 512  # pieces on top of the 3 specials and 256 byte tokens
    n_embd: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 256
    n_ctx: int = 512
    seed: int = 1234
    dtype: str = "f32"  # f32 | f16

    @property
    def name(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]
        return f"llama-{self.n_layer}L-{self.n_embd}d-{self.dtype}-{digest}.gguf"


SMOKE = LlamaShape()
#: TinyLlama-1.1B's shape (dim 2048, 22 layers, FFN 5632, 32 heads, 4 KV heads, vocab 32000).
BENCH = LlamaShape(n_vocab_words=32000 - 259, n_embd=2048, n_layer=22, n_head=32, n_head_kv=4, n_ff=5632,
                   n_ctx=2048, dtype="f16")

_WORDS = ("the", "a", "of", "to", "and", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are", "with",
          "as", "I", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "hot", "word",
          "but", "what", "some", "we", "can", "out", "other", "were", "all", "there", "when", "up", "use", "your",
          "how", "said", "an", "each", "she", "which", "do", "their", "time", "if", "will", "way", "about", "many",
          "then", "them", "write", "would", "like", "so", "these", "her", "long", "make", "thing", "see", "him",
          "two", "has", "look", "more", "day", "could", "go", "come", "did", "number", "sound", "no", "most",
          "people", "my", "over", "know", "water", "than", "call", "first", "who", "may", "down", "side", "been",
          "now", "find", "user", "assistant", "system", "Hello", "Paris", "France", "capital", "llama", "GPU")


def vocabulary(n_words: int) -> tuple[list[str], list[float], list[int]]:
    """SentencePiece-style: <unk> <s> </s>, 256 byte tokens, then pieces (unique).

    The pieces are every prefix of "▁word" for common words, so the SPM merger can build whole
    words from characters; the rest (up to ``n_words``) are numbered filler pieces.
    """
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256  # UNKNOWN, CONTROL, CONTROL, BYTE
    pieces: list[str] = []
    seen = set(tokens)
    for word in _WORDS:
        full = "▁" + word
        for end in range(1, len(full) + 1):
            for cand in (full[:end], full[end - 1]):
                if cand not in seen and len(pieces) < n_words:
                    seen.add(cand)
                    pieces.append(cand)
    k = 0
    while len(pieces) < n_words:
        cand = f"▁w{k}"
        k += 1
        if cand not in seen:
            seen.add(cand)
            pieces.append(cand)
    tokens += pieces
    types += [1] * len(pieces)  # NORMAL
    scores = [0.0] * 259 + [float(len(p)) for p in pieces]  # longer pieces merge first
    return tokens, scores, types


def write_metadata(w: Any, shape: LlamaShape, name: str, file_type: int) -> None:
    """The llama hyperparameters and SentencePiece-style vocabulary of ``shape`` (``w``: a gguf.GGUFWriter)."""
    tokens, scores, types = vocabulary(shape.n_vocab_words)
    head_dim = shape.n_embd // shape.n_head
    w.add_name(name)
    w.add_context_length(shape.n_ctx)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(file_type)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)


def tensor_plan(shape: LlamaShape) -> list[tuple[str, tuple[int, ...], float | None]]:
    """Every tensor the llama loader expects, in file order: (name, numpy dims, random scale or None for ones)."""
    n_vocab = 259 + shape.n_vocab_words
    kv = shape.n_head_kv * (shape.n_embd // shape.n_head)
    e, f = shape.n_embd, shape.n_ff
    plan: list[tuple[str, tuple[int, ...], float | None]] = [("token_embd.weight", (n_vocab, e), 1.0)]
    for i in range(shape.n_layer):
        plan += [(f"blk.{i}.attn_norm.weight", (e,), None), (f"blk.{i}.attn_q.weight", (e, e), 0.02),
                 (f"blk.{i}.attn_k.weight", (kv, e), 0.02), (f"blk.{i}.attn_v.weight", (kv, e), 0.02),
                 (f"blk.{i}.attn_output.weight", (e, e), 0.02), (f"blk.{i}.ffn_norm.weight", (e,), None),
                 (f"blk.{i}.ffn_gate.weight", (f, e), 0.02), (f"blk.{i}.ffn_up.weight", (f, e), 0.02),
                 (f"blk.{i}.ffn_down.weight", (e, f), 0.02)]
    return [*plan, ("output_norm.weight", (e,), None), ("output.weight", (n_vocab, e), 0.5)]


def write_llama(path: Path, shape: LlamaShape) -> Path:
    """Write a random-weight llama GGUF of ``shape``. Same shape and seed, same bytes."""
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    rng = np.random.default_rng(shape.seed)
    dt = np.float16 if shape.dtype == "f16" else np.float32
    w = gguf.GGUFWriter(str(tmp), "llama")
    write_metadata(w, shape, "llama-wheels smoke model" if shape == SMOKE else "llama-wheels bench model",
                   1 if shape.dtype == "f16" else 0)
    for name, dims, scale in tensor_plan(shape):
        if scale is None:  # a norm: ones
            w.add_tensor(name, np.ones(dims, dtype=np.float32))
        else:
            w.add_tensor(name, (rng.standard_normal(dims, dtype=np.float32) * scale).astype(dt))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)
    return path


def cached_model(cache_dir: Path, shape: LlamaShape = SMOKE) -> Path:
    path = cache_dir / "models" / shape.name
    return path if path.exists() else write_llama(path, shape)


def validate(path: Path) -> int:
    """Check that ``path`` is a readable GGUF; returns its tensor count. Raises ModelError."""
    if not path.exists():
        raise ModelError(f"model file {path} does not exist", "pass --model with the path of a .gguf file")
    if not path.is_file():
        raise ModelError(f"model {path} is not a file", "pass --model with the path of a .gguf file")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ModelError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')",
                         "pass a .gguf model; convert others with llama.cpp's convert_hf_to_gguf.py")
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
        n = len(reader.tensors)
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as exc:  # gguf raises ValueError/IndexError/struct errors on damage
        raise ModelError(f"{path} is truncated or corrupt: {exc}", "download or write the model again") from None
    if end > path.stat().st_size:
        raise ModelError(f"{path} is truncated: tensors need {end} bytes, the file has {path.stat().st_size}",
                         "download or write the model again")
    return n
