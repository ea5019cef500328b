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
    m = Llama(model_path=args["model"], n_gpu_layers=args["n_gpu_layers"], main_gpu=args.get("main_gpu", 0),
              n_ctx=args.get("n_ctx", 256), seed=0, logits_all=True, verbose=True)
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


CHECKS = {"import": check_import, "generate": check_generate}

if __name__ == "__main__":
    result = CHECKS[sys.argv[1]](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
    sys.stdout.flush()
    sys.stderr.flush()
    print("RESULT " + json.dumps(result), flush=True)
