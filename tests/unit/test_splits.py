"""Split modes: the wheel's probe answer -> planned runs for 1/2/4 GPUs; llama.cpp's loader output -> skip
(not offered) or failure with llama.cpp's own reason. Loader lines: tests/fixtures/splits/README.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_wheels.detect import Gpu
from llama_wheels.smoke.checks import failed_run
from llama_wheels.smoke.splits import GpuRun, SplitSupport, allreduce_note, llama_reason, plan_runs, refusal

SPLITS = Path(__file__).resolve().parents[1] / "fixtures" / "splits"

#: ``_probe.py splits`` as a 0.3.36 CUDA wheel answers it per the vendored source: the CUDA registry hands
#: out comm_init/allreduce but no split buffer type; libggml-base exports the Meta device.
CUDA_NO_NCCL = {"registry": "CUDA", "found": True, "devices": 2, "meta_device": True, "llama_split_mode_tensor": True,
                "nccl": False, "procs": {"ggml_backend_split_buffer_type": False, "ggml_backend_comm_init": True,
                                         "ggml_backend_comm_allreduce_tensor": True}}


def log(name: str) -> str:
    return (SPLITS / name).read_text(encoding="utf-8")


def gpus(n: int) -> list[Gpu]:
    return [Gpu(i, "NVIDIA H100 80GB HBM3", 90, "580.159.04", 81559) for i in range(n)]


def table(runs: list[GpuRun]) -> list[tuple[str, str, int | None, str, bool]]:
    return [(r.name, r.visible, r.split_mode, dict(r.env).get("GGML_CUDA_ALLREDUCE", ""), r.skip is None)
            for r in runs]


def test_one_gpu_plans_no_split() -> None:
    assert table(plan_runs(gpus(1), SplitSupport.from_probe(CUDA_NO_NCCL))) == [("GPU 0", "0", None, "", True)]


def test_two_gpus_row_skipped_tensor_internal_nccl_skipped() -> None:
    support = SplitSupport.from_probe(CUDA_NO_NCCL)
    assert (support.row, support.tensor, support.comm, support.nccl) == (False, True, True, False)
    runs = plan_runs(gpus(2), support)
    assert table(runs) == [
        ("GPU 0", "0", None, "", True), ("GPU 1", "1", None, "", True),
        ("split by layer over GPUs 0,1", "0,1", 1, "", True),
        ("split by row over GPUs 0,1", "0,1", 2, "", False),
        ("split by tensor over GPUs 0,1, internal AllReduce", "0,1", 3, "internal", True),
        ("split by tensor over GPUs 0,1, NCCL", "0,1", 3, "nccl", False)]
    assert runs[3].skip is not None and runs[3].skip.startswith("not offered by this llama.cpp build: ")
    assert "ggml_backend_split_buffer_type" in runs[3].skip
    assert runs[5].skip is not None and "NCCL is not linked" in runs[5].skip
    assert runs[4].args == {"split_mode": 3, "tensor_split": [1.0, 1.0]}


def test_four_gpus_with_nccl_use_the_generic_fallback_not_the_two_card_kernel() -> None:
    support = SplitSupport.from_probe({**CUDA_NO_NCCL, "nccl": True})
    runs = plan_runs(gpus(4), support)
    assert [r.name for r in runs[:4]] == ["GPU 0", "GPU 1", "GPU 2", "GPU 3"]
    assert table(runs[4:]) == [
        ("split by layer over GPUs 0,1,2,3", "0,1,2,3", 1, "", True),
        ("split by row over GPUs 0,1,2,3", "0,1,2,3", 2, "", False),
        ("split by tensor over GPUs 0,1,2,3, generic AllReduce", "0,1,2,3", 3, "none", True),
        ("split by tensor over GPUs 0,1,2,3, NCCL", "0,1,2,3", 3, "nccl", True)]
    assert runs[4].tensor_split == (1.0, 1.0, 1.0, 1.0)


def test_unprobed_wheel_tries_every_mode_and_a_wheel_without_meta_device_skips_tensor() -> None:
    assert all(r.skip is None for r in plan_runs(gpus(2), None))
    old = SplitSupport.from_probe({**CUDA_NO_NCCL, "meta_device": False,
                                   "procs": {"ggml_backend_split_buffer_type": True}})
    runs = {r.name: r for r in plan_runs(gpus(2), old)}
    assert runs["split by row over GPUs 0,1"].skip is None
    assert all("no Meta device" in (r.skip or "") for n, r in runs.items() if "tensor" in n)


def test_cpu_wheel_probe_answer_offers_nothing() -> None:
    """What ``_probe.py splits`` printed for a CPU wheel of 0.3.36 on this machine (no CUDA registry)."""
    cpu = {"registry": "CUDA", "found": False, "devices": 0, "procs": {"ggml_backend_split_buffer_type": False,
           "ggml_backend_comm_init": False, "ggml_backend_comm_allreduce_tensor": False}, "meta_device": True,
           "llama_split_mode_tensor": True, "nccl": False}
    s = SplitSupport.from_probe(cpu)
    assert (s.cuda, s.row, s.comm) == (False, False, False)
    assert "CUDA registry no; row split no" in s.describe()


def test_loader_refusals_are_skips_with_llama_cpp_words() -> None:
    row = GpuRun("split by row over GPUs 0,1", "0,1", 2, (1.0, 1.0))
    c = failed_run(row.name, row, log("row-refused.log"), "exit code 1: ...")
    assert c.status == "skip"
    assert c.detail == ("not offered by this llama.cpp build: llama.cpp says 'llama_model_load: error loading model: "
                        "device CUDA0 does not support split buffers'")
    tensor = GpuRun("split by tensor over GPUs 0,1, NCCL", "0,1", 3, (1.0, 1.0))
    c = failed_run(tensor.name, tensor, log("tensor-arch-refused.log"), "exit code 1: ...")
    assert c.status == "skip" and "not implemented for architecture 'gemma3n'" in c.detail
    c = failed_run(tensor.name, tensor, log("tensor-no-devices-cpu.log"), "exit code 1: ...")  # recorded here
    assert c.status == "skip"
    assert c.detail.endswith("llama.cpp says 'llama_prepare_model_devices: LLAMA_SPLIT_MODE_TENSOR needs >= 1 devices'")


def test_context_failure_is_a_failure_with_llama_cpp_reason() -> None:
    tensor = GpuRun("split by tensor over GPUs 0,1, internal AllReduce", "0,1", 3, (1.0, 1.0))
    c = failed_run(tensor.name, tensor, log("tensor-no-flash-attn.log"), "exit code 1: ValueError: Failed to create")
    assert c.status == "fail"
    assert c.detail.endswith("; llama.cpp: llama_init_from_model: SPLIT_MODE_TENSOR requires flash_attn to be enabled")
    assert refusal(log("tensor-no-flash-attn.log")) is None
    # a one-card run that fails for a row-split reason is still a failure (it asked for no split)
    one = GpuRun("GPU 0", "0")
    assert failed_run(one.name, one, log("row-refused.log"), "exit code 1").status == "fail"


def test_first_error_line_is_the_cause() -> None:
    assert llama_reason(log("row-refused.log")) == (
        "llama_model_load: error loading model: device CUDA0 does not support split buffers")
    assert llama_reason(log("tensor-offered.log")) is None
    assert llama_reason("") is None
    # ggml_abort's format (ggml/src/ggml.c): "file:line: message", here a GGML_ASSERT
    crash = ("load_tensors: offloaded 5/5 layers to GPU\n"
             "/b/ggml/src/ggml-backend-meta.cpp:812: GGML_ASSERT(n > 0) failed\n")
    assert llama_reason(crash) == "/b/ggml/src/ggml-backend-meta.cpp:812: GGML_ASSERT(n > 0) failed"


@pytest.mark.parametrize(("text", "note"), [
    ("NCCL not compiled in; falling back to internal AllReduce.", "internal (NCCL not compiled in)"),
    ("NCCL init failed (unhandled system error); falling back to internal AllReduce", "internal (NCCL init failed)"),
    ("internal AllReduce init failed (n_devices != 2?); falling back to meta-backend butterfly",
     "generic (internal AllReduce init failed)"),
    ("load_tensors: offloaded 5/5 layers to GPU", None)])
def test_allreduce_note(text: str, note: str | None) -> None:
    assert allreduce_note(text) == note
    assert allreduce_note(log("tensor-offered.log")) == "internal (NCCL not compiled in)"


def test_probe_turns_flash_attention_on_for_tensor_mode() -> None:
    """llama.cpp refuses a tensor-split context without flash attention; Llama()'s default asks for none."""
    import importlib.util

    from llama_wheels.smoke.probe import PROBE

    spec = importlib.util.spec_from_file_location("probe_script", PROBE)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script._model_kwargs({"split_mode": 3, "tensor_split": [1.0, 1.0]}) == {
        "split_mode": 3, "tensor_split": [1.0, 1.0], "flash_attn": True}
    assert script._model_kwargs({"split_mode": 1, "tensor_split": None, "main_gpu": None}) == {"split_mode": 1}


def test_tensor_mode_that_cannot_split_the_model_is_llama_cpp_s_limit() -> None:
    """Recorded on 2x H100: llama.cpp's experimental Meta backend aborts on Gemma 3 270M (and on our
    4-layer model), while the 1.1B and 8B llama shapes run in tensor mode. A warning with its own words."""
    tensor = GpuRun("split by tensor over GPUs 0,1, internal AllReduce", "0,1", 3, (1.0, 1.0))
    c = failed_run(tensor.name, tensor, log("tensor-meta-abort-h100.log"), "crashed with SIGABRT: ...")
    assert c.status == "warn"
    assert c.detail.startswith("llama.cpp's experimental tensor mode cannot split this model: ")
    assert c.detail.endswith("ggml-backend-meta.cpp:543: GGML_ASSERT(src_ss[0].axis != "
                             "GGML_BACKEND_SPLIT_AXIS_0) failed")
    layer = GpuRun("split by layer over GPUs 0,1", "0,1", 1, (1.0, 1.0))  # the same abort elsewhere still fails
    assert failed_run(layer.name, layer, log("tensor-meta-abort-h100.log"), "crashed").status == "fail"
