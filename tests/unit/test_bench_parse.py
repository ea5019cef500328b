from __future__ import annotations

import pytest

from llama_wheels.bench import parse_llama_bench, stats
from llama_wheels.compcache import counted

LLAMA_BENCH_JSON = """[
  {"build_commit": "x", "n_prompt": 512, "n_gen": 0, "avg_ts": 38000.5, "stddev_ts": 10.0,
   "samples_ts": [37900.0, 38100.0]},
  {"build_commit": "x", "n_prompt": 0, "n_gen": 128, "avg_ts": 834.7, "stddev_ts": 1.0, "samples_ts": [834.0, 835.4]}
]"""


def test_llama_bench_json() -> None:
    assert parse_llama_bench("log line\n" + LLAMA_BENCH_JSON) == {"pp": [37900.0, 38100.0], "tg": [834.0, 835.4]}
    noisy = ("[CUDA0] a log line with a bracket\n[not json\nNCCL not compiled in; falling back to internal AllReduce.\n"
             + LLAMA_BENCH_JSON + "\n[trailing]")
    assert parse_llama_bench(noisy)["tg"] == [834.0, 835.4]
    with pytest.raises(ValueError, match="no llama-bench JSON"):
        parse_llama_bench("[1, 2]\nllama_model_load: error loading model\n")


def test_stats() -> None:
    assert stats([1.0, 3.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3, "spread": 1.0}
    assert stats([100.0, 104.0, 102.0])["spread"] == 0.039


def test_ccache_counters() -> None:
    d = counted({"direct_cache_hit": 20, "preprocessed_cache_hit": 2, "cache_miss": 1})
    assert (d.hits, d.misses, d.describe()) == (22, 1, "22/23 (96%)")
    r = counted({"direct_cache_hit": 9, "cache_miss": 1, "remote_storage_hit": 8, "remote_storage_error": 2,
                 "remote_storage_timeout": 1})
    assert (r.remote_hits, r.remote_errors, r.describe()) == (8, 3, "9/10 (90%), 8 remote")


def test_native_build_reuses_every_compiler_of_the_wheel_tree(tmp_path) -> None:
    """Lines as CMake 3.25 wrote them in this machine's cu130-sm90 tree (PyPI toolkit; the empty host compiler
    entry added). Without the nvcc path the native llama-bench build found /usr/local/cuda/bin/nvcc on the
    H100 while the wheel used /usr/local/cuda-13.0/bin/nvcc: other -isystem dirs, so every CUDA compile
    missed the cache (4 min 49 s vs 7 s)."""
    from llama_wheels.bench import wheel_compilers

    (tmp_path / "CMakeCache.txt").write_text(
        "//CUDA compiler\n"
        "CMAKE_CUDA_COMPILER:STRING=/root/.cache/llama-wheels/toolkits/cu130/nvidia/cu13/bin/nvcc\n"
        "CMAKE_CUDA_COMPILER_LAUNCHER:UNINITIALIZED=/work/main/.nox/build_cuda/bin/ccache\n"
        "CMAKE_CUDA_HOST_COMPILER:FILEPATH=\n"
        "CMAKE_CXX_COMPILER:FILEPATH=/usr/bin/g++\n"
        "CMAKE_CXX_COMPILER_AR:FILEPATH=/usr/bin/gcc-ar-12\n"
        "CMAKE_C_COMPILER:FILEPATH=/usr/bin/gcc\n")
    assert sorted(wheel_compilers(tmp_path)) == [
        "-DCMAKE_CUDA_COMPILER=/root/.cache/llama-wheels/toolkits/cu130/nvidia/cu13/bin/nvcc",
        "-DCMAKE_CXX_COMPILER=/usr/bin/g++", "-DCMAKE_C_COMPILER=/usr/bin/gcc"]
    assert wheel_compilers(tmp_path / "missing") == []


def test_ccache_stats_log_is_this_build_only(fixture_text) -> None:
    """ccache 4.14's stats log (recorded): a miss, a hit, a miss; only this build's calls are in it."""
    from llama_wheels.compcache import parse_stats_log

    s = parse_stats_log(fixture_text("ccache-4.14-statslog.txt"))
    assert (s.hits, s.misses, s.local_hits, s.remote_hits, s.describe()) == (1, 2, 1, 0, "1/3 (33%)")
    assert parse_stats_log("").describe() == "-"


def test_sccache_json_stats(fixture_text) -> None:
    """sccache 0.16's JSON (recorded against a real Redis): per-level counts when writing; read-only
    mode has no per-level block, so the hits are counted without a local/remote split."""
    from llama_wheels.compcache import parse_sccache_stats

    w = parse_sccache_stats(fixture_text("sccache-0.16-stats-multilevel.json"))
    assert (w.hits, w.misses, w.local_hits, w.remote_hits, w.remote_errors) == (2, 1, 0, 2, 0)
    assert w.describe() == "2/3 (67%), 2 remote"
    r = parse_sccache_stats(fixture_text("sccache-0.16-stats-readonly.json"))
    assert (r.hits, r.misses, r.local_hits, r.describe()) == (2, 0, 0, "2/2 (100%)")
    local_only = parse_sccache_stats(fixture_text("sccache-0.16-stats-readonly.json"), chained=False)
    assert local_only.local_hits == 2 and local_only.remote_hits == 0
    with pytest.raises(ValueError):  # stdout is the JSON alone (cmd.run keeps stderr apart): no hunting for "{"
        parse_sccache_stats("sccache: Starting the server...\n" + fixture_text("sccache-0.16-stats-multilevel.json"))
