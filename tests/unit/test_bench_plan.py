"""Bench planning: the cases per GPU count, the native command line, and KV cache types limited to the
flash-attention pairs the wheel compiled (FA_QUANTS as a 0.3.36 CUDA wheel reports it, shared FACTS.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_wheels.bench import BenchCase, BenchSetup, bench_cases, check_kv_pair, compiled_kv_pairs
from llama_wheels.detect import Gpu
from llama_wheels.errors import ConfigError
from llama_wheels.smoke.wheelenv import WheelEnv

#: ``llama_print_system_info()`` of a cu130-sm90 0.3.36 wheel (H100 runner, FACTS.md "Kernels compiled by default").
CUDA_INFO = ("CUDA : ARCHS = 900 | FA_QUANTS = q4_0-q4_0,q8_0-q8_0,f16-f16,bf16-bf16 | USE_GRAPHS = 1 | "
             "PEER_MAX_BATCH_SIZE = 128 | CPU : SSE3 = 1 | AVX2 = 1 | ")


def gpus(n: int) -> list[Gpu]:
    return [Gpu(i, "NVIDIA H100 80GB HBM3", 90, "580.159.04", 81559) for i in range(n)]


def test_cases_per_gpu_count() -> None:
    assert bench_cases([]) == [BenchCase("CPU", None)]
    assert bench_cases(gpus(1)) == [BenchCase("GPU 0", "0")]
    assert [(c.name, c.visible, c.split_mode, c.sm) for c in bench_cases(gpus(2))] == [
        ("GPU 0", "0", None, None), ("layer split over GPUs 0,1", "0,1", 1, "layer"),
        ("tensor split over GPUs 0,1", "0,1", 3, "tensor")]
    assert bench_cases(gpus(4))[2].visible == "0,1,2,3"


def test_native_and_wheel_get_the_same_settings() -> None:
    setup = BenchSetup(WheelEnv("/v/bin/python", "llama-cpp-python==0.3.36", (), {"PATH": "/bin"}), Path("/m.gguf"),
                       99, 16, 10, "q8_0", "q8_0", Path("/b/llama-bench"))
    case = bench_cases(gpus(2))[2]
    assert setup.native_args(case) == [
        "/b/llama-bench", "-m", "/m.gguf", "-p", "512", "-n", "128", "-ngl", "99", "-fa", "1", "-t", "16", "-r", "10",
        "-ctk", "q8_0", "-ctv", "q8_0", "-sm", "tensor", "-o", "json"]
    args = setup.probe_args(case, "on")
    assert (args["split_mode"], args["type_k"], args["type_v"], args["n_prompt"], args["n_gen"]) == (3, 8, 8, 512, 128)
    assert setup.case_env(case) == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0,1"}
    assert "-sm" not in setup.native_args(bench_cases(gpus(1))[0])


def test_kv_pairs_from_system_info() -> None:
    assert compiled_kv_pairs(CUDA_INFO) == {("q4_0", "q4_0"), ("q8_0", "q8_0"), ("f16", "f16"), ("bf16", "bf16")}
    assert compiled_kv_pairs("CUDA : ARCHS = 900 | FA_QUANTS = q8_0-q8_0 | ") == {("q8_0", "q8_0"), ("f16", "f16")}
    assert len(compiled_kv_pairs("CUDA : FA_QUANTS = all | ") or ()) == 49
    assert compiled_kv_pairs("CPU : SSE3 = 1 | AVX2 = 1 | ") is None


def test_uncompiled_pair_is_refused_with_the_compiled_ones() -> None:
    check_kv_pair("q8_0", "q8_0", CUDA_INFO)
    check_kv_pair("q4_1", "q5_0", "CPU : AVX2 = 1 | ")  # a CPU build: every pair has a kernel
    with pytest.raises(ConfigError) as e:
        check_kv_pair("q8_0", "f16", CUDA_INFO)
    line = e.value.one_line()
    assert "no flash-attention kernel for K=q8_0 V=f16" in line and "--ctk q8_0 --ctv q8_0" in line
