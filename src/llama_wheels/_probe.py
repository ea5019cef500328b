"""Runs inside the wheel's fresh venv, one check per process (a crash must not take the runner down).

Usage: python _probe.py CHECK JSON-ARGS. Prints ``RESULT <json>`` as its last line.
Only the standard library and what the wheel installs (llama_cpp, numpy) are used here.
"""

import json
import os
import re
import sys
import time


def check_import(_args):
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    info = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    m = re.search(r"ARCHS = ([\d,]+)", info)
    return {"version": llama_cpp.__version__, "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
            "system_info": info.strip(), "archs": [int(x) for x in m.group(1).split(",")] if m else []}


def _model_kwargs(args):
    """split_mode / main_gpu / tensor_split / flash_attn / KV cache types, only where the caller set them.

    Tensor split (split_mode 3) needs flash attention ENABLED: llama.cpp refuses the context otherwise
    ("SPLIT_MODE_TENSOR requires flash_attn to be enabled", src/llama-context.cpp), and
    ``Llama(flash_attn=False)``, the default, asks for DISABLED rather than llama.cpp's AUTO.
    """
    kw = {k: args[k] for k in ("split_mode", "main_gpu", "tensor_split", "flash_attn", "type_k", "type_v")
          if args.get(k) is not None}
    if kw.get("split_mode") == 3:
        kw["flash_attn"] = True
    return kw


def check_generate(args):
    import llama_cpp  # noqa: F401  (before numpy: on the GPU runner, numpy 2.5 first made the model load segfault)
    import numpy as np
    from llama_cpp import Llama

    t0 = time.perf_counter()
    m = Llama(model_path=args["model"], n_gpu_layers=args["n_gpu_layers"], n_ctx=args.get("n_ctx", 256), seed=0,
              logits_all=True, verbose=True, **_model_kwargs(args))
    load = time.perf_counter() - t0
    tokens = m.tokenize(args["prompt"].encode("utf-8"))
    m.eval(tokens)
    out, first = [], None
    t1 = time.perf_counter()
    for _ in range(args["n_tokens"]):
        logits = np.array(m.scores[m.n_tokens - 1], dtype=np.float64)
        if first is None:
            first = logits
        tok = int(np.argmax(logits))
        out.append(tok)
        m.eval([tok])
    gen = time.perf_counter() - t1
    return {"tokens": out, "first_logits": [round(float(x), 5) for x in first], "prompt_tokens": len(tokens),
            "text": m.detokenize(out).decode("utf-8", "replace"), "load_s": round(load, 3),
            "tok_per_s": round(len(out) / gen, 1) if gen > 0 else None}


#: Proc addresses of a backend registry that the multi-GPU split modes look up (vendored llama.cpp:
#: ``ggml_backend_split_buffer_type`` in src/llama-model.cpp for row split; ``ggml_backend_comm_*`` in
#: ggml/src/ggml-backend-meta.cpp for tensor split's AllReduce).
SPLIT_PROCS = ("ggml_backend_split_buffer_type", "ggml_backend_comm_init", "ggml_backend_comm_allreduce_tensor")


def _ggml_lib(name):
    import ctypes
    import pathlib

    import llama_cpp

    lib = pathlib.Path(llama_cpp.__file__).parent / "lib"
    for pattern in (f"lib{name}.so*", f"lib{name}.dylib", f"{name}.dll", f"lib{name}.dll"):
        for path in sorted(lib.glob(pattern)):
            return ctypes.CDLL(str(path))
    return None


def check_splits(_args):
    """Which split modes this wheel's own libraries offer, asked of its ggml backend registry (no model).

    Row split needs the CUDA registry to hand out ``ggml_backend_split_buffer_type``; tensor split needs the
    Meta device (``ggml_backend_meta_device`` in libggml-base) and, for a fast AllReduce, ``comm_init``.
    NCCL counts as linked when the loaded process maps ``libnccl`` (Linux: /proc/self/maps).
    """
    import ctypes
    import os

    import llama_cpp

    llama_cpp.llama_backend_init()
    ggml, base = _ggml_lib("ggml"), _ggml_lib("ggml-base")
    out = {"registry": "CUDA", "found": False, "devices": 0, "procs": {p: False for p in SPLIT_PROCS},
           "meta_device": bool(base is not None and hasattr(base, "ggml_backend_meta_device")),
           "llama_split_mode_tensor": getattr(llama_cpp, "LLAMA_SPLIT_MODE_TENSOR", None) == 3, "nccl": False}
    if ggml is None:
        return out
    ggml.ggml_backend_reg_by_name.restype = ctypes.c_void_p
    ggml.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
    ggml.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    ggml.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    ggml.ggml_backend_reg_dev_count.restype = ctypes.c_size_t
    ggml.ggml_backend_reg_dev_count.argtypes = [ctypes.c_void_p]
    reg = ggml.ggml_backend_reg_by_name(b"CUDA")
    if reg:
        out["found"] = True
        out["devices"] = int(ggml.ggml_backend_reg_dev_count(reg))
        out["procs"] = {p: bool(ggml.ggml_backend_reg_get_proc_address(reg, p.encode())) for p in SPLIT_PROCS}
    if os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            out["nccl"] = "libnccl" in f.read()
    return out


def check_quantize(args):
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + args.get("ftype", "Q4_K_M"))
    params.allow_requantize = bool(args.get("allow_requantize", False))  # a quantized source (real models)
    t0 = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(args["src"].encode(), args["dst"].encode(), params)
    if rc != 0:
        raise SystemExit(f"llama_model_quantize returned {rc}")
    return {"seconds": round(time.perf_counter() - t0, 1)}


def _load_numerics():
    """numerics.py from beside this file (llama_wheels is not installed in the wheel's venv)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("llama_wheels_numerics", Path(__file__).with_name("numerics.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


def check_logits(args):
    """Teacher-forced run over a fixed text, scored as llama-perplexity scores it (see numerics.py):
    chunks of n_ctx tokens, BOS first, KV cleared between chunks, logits kept for positions n_ctx/2..n_ctx-2.
    Writes <out>/logits.npy (float32 [positions, n_vocab]) and <out>/run.json (the targets and settings)."""
    import ctypes
    from pathlib import Path

    import llama_cpp as L  # before numpy: numpy 2.5 (scipy-openblas) first made model loads segfault (H100 host)
    import numpy as np

    nm = _load_numerics()
    n_ctx = args.get("n_ctx", nm.N_CTX)
    out = Path(args["out"])
    out.mkdir(parents=True, exist_ok=True)
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = args["n_gpu_layers"]
    if args.get("split_mode") is not None:
        mp.split_mode = args["split_mode"]
    if args.get("tensor_split"):
        split = (ctypes.c_float * len(args["tensor_split"]))(*args["tensor_split"])  # kept alive until load
        mp.tensor_split = split
    t0 = time.perf_counter()
    model = L.llama_model_load_from_file(args["model"].encode(), mp)
    if not model:
        raise SystemExit("model load failed")
    cp = L.llama_context_default_params()
    cp.n_ctx = n_ctx
    cp.n_batch = n_ctx  # one decode per chunk, as llama-perplexity with -b n_ctx
    cp.n_ubatch = args.get("n_ubatch", 512)
    cp.n_seq_max = 1
    if args.get("threads"):
        cp.n_threads = cp.n_threads_batch = args["threads"]
    if args.get("op_offload") is not None:
        cp.op_offload = bool(args["op_offload"])
    flash = args.get("flash_attn") or ("on" if args.get("split_mode") == 3 else None)  # tensor mode needs it
    if flash is not None:
        cp.flash_attn_type = {"on": 1, "off": 0, "auto": -1}[flash]
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise SystemExit("failed to create the llama context")
    load_s = time.perf_counter() - t0
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    text = Path(args["text"]).read_bytes()
    if text.endswith(b"\n"):  # llama-perplexity -f drops one trailing newline
        text = text[:-1]
    add_bos = bool(L.llama_vocab_get_add_bos(vocab))
    buf = (L.llama_token * (len(text) + 16))()
    n = L.llama_tokenize(vocab, text, len(text), buf, len(buf), True, False)  # add_special, as common_tokenize
    if n < 0:
        raise SystemExit(f"tokenizing the text failed ({n})")
    tokens = list(buf[:n])
    n_chunks = nm.chunk_plan(len(tokens), n_ctx, args.get("max_chunks"))
    if n_chunks < 1:
        raise SystemExit(f"the text is {len(tokens)} tokens with this model's tokenizer; need >= {n_ctx}")
    scored = nm.scored_positions(n_ctx)
    logits = np.lib.format.open_memmap(out / "logits.npy", mode="w+", dtype=np.float32,
                                       shape=(n_chunks * len(scored), n_vocab))
    targets = []
    mem = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(n_ctx, 0, 1)
    row = 0
    t1 = time.perf_counter()
    for c in range(n_chunks):
        chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
        if add_bos:
            chunk[0] = L.llama_vocab_bos(vocab)
        L.llama_memory_clear(mem, True)
        batch.n_tokens = n_ctx
        for i, tok in enumerate(chunk):
            batch.token[i] = tok
            batch.pos[i] = i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i >= scored.start
        if L.llama_decode(ctx, batch) != 0:
            raise SystemExit(f"llama_decode failed on chunk {c}")
        for i in scored:
            ptr = L.llama_get_logits_ith(ctx, i)
            logits[row] = np.ctypeslib.as_array(ptr, shape=(n_vocab,))
            targets.append(tokens[c * n_ctx + i + 1])
            row += 1
    eval_s = time.perf_counter() - t1
    logits.flush()
    finite = bool(np.isfinite(logits).all())
    del logits
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    info = {"n_vocab": n_vocab, "n_ctx": n_ctx, "n_chunks": n_chunks, "text_tokens": len(tokens),
            "positions": row, "add_bos": add_bos, "n_gpu_layers": args["n_gpu_layers"],
            "n_ubatch": cp.n_ubatch, "threads": cp.n_threads, "op_offload": bool(cp.op_offload),
            "flash_attn_type": int(cp.flash_attn_type),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "finite": finite, "load_s": round(load_s, 3), "eval_s": round(eval_s, 3)}
    (out / "run.json").write_text(json.dumps({**info, "targets": targets}) + "\n")
    return info


def check_compare(args):
    """Compare two check_logits runs (no model is loaded here)."""
    from pathlib import Path

    nm = _load_numerics()
    return nm.compare_runs(Path(args["ref"]), Path(args["test"])).to_dict()


def _tps(n, seconds):
    return n / seconds if seconds > 0 else 0.0


def _model_params(L, args):
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = args["ngl"]
    if args.get("split_mode") is not None:
        mp.split_mode = args["split_mode"]
    if args.get("tensor_split"):
        import ctypes

        split = (ctypes.c_float * len(args["tensor_split"]))(*args["tensor_split"])
        _KEEP.append(split)  # the model params hold only a pointer
        mp.tensor_split = split
    return mp


_KEEP = []


def _context(L, model, args, n_ctx):
    """llama-bench's ``to_llama_cparams()`` (tools/llama-bench/llama-bench.cpp): one context per test, sized
    for that test alone (pp512: 512, tg128: 128), n_batch 2048, n_ubatch 512, swa_full off."""
    cp = L.llama_context_default_params()
    cp.n_ctx = n_ctx
    cp.n_batch = 2048
    cp.n_ubatch = 512
    cp.type_k, cp.type_v = args.get("type_k", 1), args.get("type_v", 1)
    cp.flash_attn_type = {"on": 1, "off": 0, "auto": -1}[args["flash_attn"]]
    cp.swa_full = False
    cp.n_threads = cp.n_threads_batch = args["threads"]
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise SystemExit("llama_init_from_model failed: see llama.cpp's reason above")
    return ctx


class Counter:
    """Counts, around one call of ``fn``, what llama.cpp was asked to do: decode calls, tokens, logit rows
    requested, synchronizations and logits reads. Wraps the bindings in both the package and the module
    namespace (``Llama`` calls ``llama_cpp.llama_cpp.llama_decode``)."""

    NAMES = ("llama_decode", "llama_synchronize", "llama_get_logits", "llama_get_logits_ith")

    def __init__(self):
        self.counts = {"decode_calls": 0, "tokens": 0, "logit_rows": 0, "synchronize": 0, "logits_reads": 0}

    def _wrap(self, name, orig):
        def decode(ctx, batch):
            n = batch.n_tokens
            self.counts["decode_calls"] += 1
            self.counts["tokens"] += n
            self.counts["logit_rows"] += sum(bool(batch.logits[i]) for i in range(n)) if batch.logits else 1
            return orig(ctx, batch)

        def other(*a):
            key = "synchronize" if name == "llama_synchronize" else "logits_reads"
            self.counts[key] += 1
            return orig(*a)

        return decode if name == "llama_decode" else other

    def run(self, fn):
        import llama_cpp
        import llama_cpp.llama_cpp as lowlevel

        saved = [(mod, n, getattr(mod, n)) for mod in (llama_cpp, lowlevel) for n in self.NAMES]
        for mod, n, orig in saved:
            setattr(mod, n, self._wrap(n, orig))
        try:
            fn()
        finally:
            for mod, n, orig in saved:
                setattr(mod, n, orig)
        return dict(self.counts)


def check_bench_lowlevel(args):
    """llama-bench's own loops (test_prompt / test_gen) through the wheel's C API, with its warm-up, its
    per-test contexts and its ``llama_synchronize`` after each decode. Random tokens are drawn before the
    clock starts; the tg loop reuses one batch, so a token costs two field stores and two ctypes calls
    (``loop_overhead_us`` measures them with no-op stand-ins for decode and synchronize)."""
    import random

    import llama_cpp as L

    L.llama_backend_init()
    model = L.llama_model_load_from_file(args["model"].encode(), _model_params(L, args))
    if not model:
        raise SystemExit("model load failed: see llama.cpp's reason above")
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    bos = L.llama_vocab_bos(vocab) if L.llama_vocab_get_add_bos(vocab) else None
    rng = random.Random(42)
    n_prompt, n_gen, reps = args["n_prompt"], args["n_gen"], args["reps"]

    def prompt_tokens():
        toks = [rng.randrange(n_vocab) for _ in range(n_prompt)]
        if bos is not None:
            toks[0] = bos
        return (L.llama_token * n_prompt)(*toks)

    ctx = _context(L, model, args, n_prompt)
    mem = L.llama_get_memory(ctx)

    def pp():
        toks = prompt_tokens()
        L.llama_memory_clear(mem, False)
        batch = L.llama_batch_get_one(toks, n_prompt)
        t0 = time.perf_counter()
        if L.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed (pp)")
        L.llama_synchronize(ctx)
        return _tps(n_prompt, time.perf_counter() - t0)

    pp()  # warm-up, as llama-bench does
    pps = [pp() for _ in range(reps)]
    counts = {"pp": Counter().run(pp)}
    L.llama_free(ctx)

    ctx = _context(L, model, args, n_gen)
    mem = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(1, 0, 1)
    batch.n_tokens = 1
    batch.n_seq_id[0] = 1
    batch.seq_id[0][0] = 0
    batch.logits[0] = 1

    def tg(n, decode=L.llama_decode, sync=L.llama_synchronize):
        L.llama_memory_clear(mem, False)
        toks = [bos if bos is not None else rng.randrange(n_vocab)] + [rng.randrange(n_vocab) for _ in range(n - 1)]
        token, pos = batch.token, batch.pos
        t0 = time.perf_counter()
        for i in range(n):
            token[0] = toks[i]
            pos[0] = i
            if decode(ctx, batch) != 0:
                raise SystemExit("llama_decode failed (tg)")
            sync(ctx)
        return _tps(n, time.perf_counter() - t0)

    tg(1)  # warm-up, as llama-bench does
    tgs = [tg(n_gen) for _ in range(reps)]
    counts["tg"] = Counter().run(lambda: tg(n_gen, decode=L.llama_decode, sync=L.llama_synchronize))
    noop = L.llama_n_ctx  # a real ctypes call into libllama that does nothing
    overhead = 1e6 / tg(n_gen * 8, decode=lambda c, b: noop(c) - noop(c), sync=noop) if n_gen else 0.0
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    return {"pp": pps, "tg": tgs, "counts": counts, "loop_overhead_us": round(overhead, 2)}


def check_bench_highlevel(args):
    """The same work through ``Llama.eval`` (what most users call).

    ``Llama.eval`` does not read the logits unless ``logits_all`` (llama_cpp/llama.py: "logits are only
    needed for logprobs"), so nothing in it waits for the GPU: ``llama_decode`` returns once the graph is
    queued. Timing the return of ``eval`` measures the launch, not the work (``pp_returned``); the
    numbers we compare call ``llama_synchronize`` before the clock stops, as llama-bench does.
    """
    import random

    import llama_cpp as L
    from llama_cpp import Llama

    kw = {} if args["flash_attn"] == "default" else {"flash_attn": args["flash_attn"] == "on"}
    kw.update({k: args[k] for k in ("split_mode", "tensor_split", "type_k", "type_v") if args.get(k) is not None})
    llm = Llama(model_path=args["model"], n_gpu_layers=args["ngl"], n_ctx=args["n_prompt"] + args["n_gen"],
                n_threads=args["threads"], n_threads_batch=args["threads"], swa_full=False, verbose=True, **kw)
    rng = random.Random(42)
    n_vocab = llm.n_vocab()
    ctx = llm._ctx.ctx

    def pp(returned=None):
        llm.reset()
        toks = [rng.randrange(n_vocab) for _ in range(args["n_prompt"])]
        t0 = time.perf_counter()
        llm.eval(toks)
        t1 = time.perf_counter()
        L.llama_synchronize(ctx)
        if returned is not None:
            returned.append(_tps(len(toks), t1 - t0))
        return _tps(len(toks), time.perf_counter() - t0)

    def tg(n):  # a generation loop reads each token's logits, so it waits for each token: synchronize
        llm.reset()
        toks = [rng.randrange(n_vocab) for _ in range(n)]
        t0 = time.perf_counter()
        for tok in toks:
            llm.eval([tok])
            L.llama_synchronize(ctx)
        return _tps(n, time.perf_counter() - t0)

    def eval_only(n, batch):  # what Llama.eval itself asks of llama.cpp, without our synchronize
        llm.reset()
        toks = [rng.randrange(n_vocab) for _ in range(n)]
        return Counter().run(lambda: llm.eval(toks) if batch else [llm.eval([t]) for t in toks])

    pp()
    tg(1)
    returned = []
    pps = [pp(returned) for _ in range(args["reps"])]
    counts = {"pp": eval_only(args["n_prompt"], True), "tg": eval_only(args["n_gen"], False)}
    return {"pp": pps, "tg": [tg(args["n_gen"]) for _ in range(args["reps"])], "pp_returned": returned,
            "counts": counts}


CHECKS = {"import": check_import, "generate": check_generate, "quantize": check_quantize, "splits": check_splits,
          "logits": check_logits, "compare": check_compare,
          "bench_lowlevel": check_bench_lowlevel, "bench_highlevel": check_bench_highlevel}

if __name__ == "__main__":
    result = CHECKS[sys.argv[1]](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
    sys.stdout.flush()
    sys.stderr.flush()
    print("RESULT " + json.dumps(result), flush=True)
