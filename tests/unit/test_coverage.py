"""The arch-coverage verdict for every GPU the tables know against representative binaries."""

from __future__ import annotations

import pytest

from llama_wheels.archs import parse_arch_set
from llama_wheels.compat import ARCH_SUPPORT
from llama_wheels.coverage import coverage_verdict


def kind(gpu: int, spec: str) -> str:
    return coverage_verdict(gpu, parse_arch_set(spec, ptx="none")).kind


@pytest.mark.parametrize(("gpu", "spec", "expected"), [
    (90, "90-real", "native"),
    (90, "89-real", "cannot-run"),
    (90, "89-real;89-virtual", "ptx-jit"),
    (90, "80-real;90-virtual", "ptx-jit"),
    (86, "80-real", "native"),  # sm_80 cubin runs on 8.6 (same major, lower minor)
    (80, "86-real", "cannot-run"),  # but not the other way round
    (89, "86-real;89-virtual", "native"),  # an 8.6 cubin runs on 8.9
    (89, "80-virtual", "ptx-jit"),
    (120, "120a-real", "native"),
    (121, "120a-real", "cannot-run"),  # arch-specific cubins run on exactly one capability
    (120, "120a-virtual", "ptx-jit"),
    (121, "120a-virtual", "cannot-run"),  # arch-specific PTX is not forward-compatible
    (103, "100f-real", "native"),  # family cubin runs within its major
    (120, "86-real;89-real;89-virtual;120a-real", "native"),
    # the hand procedure's universal set on an H100: JIT from compute_89
    (90, "86-real;89-real;89-virtual;120a-real", "ptx-jit"),
    (75, "86-real;89-real;89-virtual;120a-real", "cannot-run"),
])
def test_verdicts(gpu: int, spec: str, expected: str) -> None:
    assert kind(gpu, spec) == expected


@pytest.mark.parametrize("gpu", sorted(ARCH_SUPPORT))
def test_every_capability_native_ptx_and_none(gpu: int) -> None:
    assert kind(gpu, f"{gpu}-real") == "native"
    lower = [n for n in ARCH_SUPPORT if n < gpu]
    if lower:
        assert kind(gpu, f"{min(lower)}-virtual") == "ptx-jit"
    higher = [n for n in ARCH_SUPPORT if n > gpu]
    if higher:
        v = coverage_verdict(gpu, parse_arch_set(f"{max(higher)}-real", ptx="none"))
        assert v.kind == "cannot-run" and f"--archs {gpu}" in v.message


def test_manifest_free_wheel_uses_reported_archs() -> None:
    from llama_wheels.smoke.targets import entry_arch_set

    s = entry_arch_set({}, [860, 1200])
    assert s is not None and s.sass == ("sm_86", "sm_120a")
    assert entry_arch_set({"archs": "90-real;90-virtual"}, [900]).ptx == ("compute_90",)  # type: ignore[union-attr]
    assert entry_arch_set({}, []) is None


def test_gpu_selection_and_runs(fixture_text) -> None:
    from llama_wheels.detect import parse_nvidia_smi_csv
    from llama_wheels.errors import ConfigError
    from llama_wheels.smoke.splits import plan_runs
    from llama_wheels.smoke.targets import select_gpus

    gpus = parse_nvidia_smi_csv(fixture_text("nvidia-smi-query-mixed.csv"))  # sm_86 + sm_90
    assert [g.index for g in select_gpus("all", gpus)] == [0, 1]
    assert [g.index for g in select_gpus("1", gpus)] == [1]
    assert [g.index for g in select_gpus("1,0,1", gpus)] == [1, 0]
    for bad, fragment in (("2", "GPU 2 is not present; present: 0, 1"), ("0;1", "is not 'all'"), ("", "is not")):
        with pytest.raises(ConfigError) as e:
            select_gpus(bad, gpus)
        assert fragment in e.value.one_line()
    runs = plan_runs(gpus, None)  # not probed: every mode is tried, the loader decides
    assert [(r.name, r.visible, r.split_mode, r.tensor_split) for r in runs] == [
        ("GPU 0", "0", None, None), ("GPU 1", "1", None, None),
        ("split by layer over GPUs 0,1", "0,1", 1, (1.0, 1.0)), ("split by row over GPUs 0,1", "0,1", 2, (1.0, 1.0)),
        ("split by tensor over GPUs 0,1, internal AllReduce", "0,1", 3, (1.0, 1.0)),
        ("split by tensor over GPUs 0,1, NCCL", "0,1", 3, (1.0, 1.0))]
    h100 = parse_nvidia_smi_csv(fixture_text("nvidia-smi-query-h100.csv"))
    assert [(r.name, r.visible) for r in plan_runs(h100, None)] == [("GPU 0", "0")]  # one card: no split runs


def test_mixed_machine_gets_a_verdict_per_card(fixture_text) -> None:
    from llama_wheels.detect import parse_nvidia_smi_csv

    gpus = parse_nvidia_smi_csv(fixture_text("nvidia-smi-query-mixed.csv"))
    wheel = parse_arch_set("90", ptx="none")  # an H100-only wheel on an RTX 3090 + H100 host
    assert [coverage_verdict(g.compute_cap, wheel).kind for g in gpus] == ["cannot-run", "native"]
    universal = parse_arch_set("86;89;120")
    assert [coverage_verdict(g.compute_cap, universal).kind for g in gpus] == ["native", "ptx-jit"]
