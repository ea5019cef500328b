"""Runs inside the wheel's fresh venv, one check per process (a crash must not take the runner down).

Usage: python _probe.py CHECK JSON-ARGS. Prints ``RESULT <json>`` as its last line.
Only the standard library and what the wheel installs (llama_cpp, numpy) are used here.
"""

import json
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


def check_generate(args):
    import llama_cpp  # noqa: F401  (imported before numpy: see FACTS.md, numpy-first can crash the loader)
    import numpy as np
    from llama_cpp import Llama

    t0 = time.perf_counter()
    split = {k: args[k] for k in ("split_mode", "tensor_split") if args.get(k) is not None}
    m = Llama(model_path=args["model"], n_gpu_layers=args["n_gpu_layers"], main_gpu=args.get("main_gpu", 0),
              n_ctx=args.get("n_ctx", 256), seed=0, logits_all=True, verbose=True, **split)
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


def check_quantize(args):
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    t0 = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(args["src"].encode(), args["dst"].encode(), params)
    if rc != 0:
        raise SystemExit(f"llama_model_quantize returned {rc}")
    return {"seconds": round(time.perf_counter() - t0, 1)}


def _tps(n, seconds):
    return n / seconds if seconds > 0 else 0.0


def check_bench_lowlevel(args):
    """llama-bench's loop through the wheel's C API: pp = one batch of n_prompt tokens, tg = n_gen
    single-token decodes, each followed by llama_synchronize; memory cleared between repetitions."""
    import random

    import llama_cpp as L

    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = args["ngl"]
    model = L.llama_model_load_from_file(args["model"].encode(), mp)
    if not model:
        raise SystemExit("model load failed")
    cp = L.llama_context_default_params()
    cp.n_ctx = args["n_prompt"] + args["n_gen"]
    cp.n_batch = 2048
    cp.n_ubatch = 512
    cp.flash_attn_type = {"on": 1, "off": 0, "auto": -1}[args["flash_attn"]]
    cp.n_threads = cp.n_threads_batch = args["threads"]
    ctx = L.llama_init_from_model(model, cp)
    mem = L.llama_get_memory(ctx)
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    rng = random.Random(42)

    def pp():
        toks = (L.llama_token * args["n_prompt"])(*[rng.randrange(n_vocab) for _ in range(args["n_prompt"])])
        L.llama_memory_clear(mem, False)
        t0 = time.perf_counter()
        if L.llama_decode(ctx, L.llama_batch_get_one(toks, args["n_prompt"])) != 0:
            raise SystemExit("llama_decode failed (pp)")
        L.llama_synchronize(ctx)
        return _tps(args["n_prompt"], time.perf_counter() - t0)

    def tg(n):
        L.llama_memory_clear(mem, False)
        tok = (L.llama_token * 1)(rng.randrange(n_vocab))
        t0 = time.perf_counter()
        for _ in range(n):
            if L.llama_decode(ctx, L.llama_batch_get_one(tok, 1)) != 0:
                raise SystemExit("llama_decode failed (tg)")
            L.llama_synchronize(ctx)
            tok[0] = rng.randrange(n_vocab)
        return _tps(n, time.perf_counter() - t0)

    pp()
    tg(1)  # warm-up, as llama-bench does
    pps = [pp() for _ in range(args["reps"])]
    tgs = [tg(args["n_gen"]) for _ in range(args["reps"])]
    L.llama_free(ctx)
    L.llama_model_free(model)
    return {"pp": pps, "tg": tgs}


def check_bench_highlevel(args):
    """The same work through ``Llama.eval`` (what most users call)."""
    import random

    from llama_cpp import Llama

    kw = {} if args["flash_attn"] == "default" else {"flash_attn": args["flash_attn"] == "on"}
    llm = Llama(model_path=args["model"], n_gpu_layers=args["ngl"], n_ctx=args["n_prompt"] + args["n_gen"] + 1,
                n_threads=args["threads"], verbose=False, **kw)
    rng = random.Random(42)
    n_vocab = llm.n_vocab()

    def pp():
        llm.reset()
        toks = [rng.randrange(n_vocab) for _ in range(args["n_prompt"])]
        t0 = time.perf_counter()
        llm.eval(toks)
        return _tps(len(toks), time.perf_counter() - t0)

    def tg(n):
        llm.reset()
        t0 = time.perf_counter()
        for _ in range(n):
            llm.eval([rng.randrange(n_vocab)])
        return _tps(n, time.perf_counter() - t0)

    pp()
    tg(1)
    return {"pp": [pp() for _ in range(args["reps"])], "tg": [tg(args["n_gen"]) for _ in range(args["reps"])]}


CHECKS = {"import": check_import, "generate": check_generate, "quantize": check_quantize,
          "bench_lowlevel": check_bench_lowlevel, "bench_highlevel": check_bench_highlevel}

if __name__ == "__main__":
    result = CHECKS[sys.argv[1]](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
    sys.stdout.flush()
    sys.stderr.flush()
    print("RESULT " + json.dumps(result), flush=True)
