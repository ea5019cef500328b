"""Pure parts of the smoke package: what gets installed, the environment the wheel runs in, the server's
split flags, the report."""

from __future__ import annotations

import json
from pathlib import Path

from llama_wheels.smoke.report import Check, SmokeReport, summary_rows, write_reports
from llama_wheels.smoke.server import split_args
from llama_wheels.smoke.wheelenv import WheelEnv, default_extras, requirement, run_env

WHEEL = Path("/wh/cu130-sm90/llama_cpp_python-0.3.36+cu130.sm90-py3-none-linux_x86_64.whl")


def test_requirement_and_extras() -> None:
    assert requirement(WHEEL, {}, ()) == "llama-cpp-python==0.3.36+cu130.sm90"
    assert requirement(WHEEL, {"version": "0.3.36+cu130.sm90"}, ("server",)) == (
        "llama-cpp-python[server]==0.3.36+cu130.sm90")
    assert default_extras({"variants": ["default", "server"]}) == ("server",)
    assert default_extras({"variants": ["default"]}) == ()
    assert default_extras({"extras": ["server", "dev"], "variants": []}) == ("server", "dev")


def test_wheel_env_drops_our_python_and_pins_pci_order() -> None:
    env = run_env({"PATH": "/bin", "PYTHONPATH": "/src", "VIRTUAL_ENV": "/v", "CUDA_VISIBLE_DEVICES": "0,1"})
    assert env == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0,1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    w = WheelEnv("/venv/bin/python", "llama-cpp-python==0.3.36", (), env)
    assert w.with_gpus("1", {"GGML_CUDA_ALLREDUCE": "nccl"}) == {
        "PATH": "/bin", "CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "GGML_CUDA_ALLREDUCE": "nccl"}


def test_server_split_flags() -> None:
    assert split_args(1) == ()
    assert split_args(2) == ("--split_mode", "1", "--tensor_split", "1", "1")


def test_report_files_and_summary(tmp_path: Path) -> None:
    rep = SmokeReport("cu130-sm90", WHEEL.name, ["0: H100 (sm_90)"], [
        Check("import", "pass", "ok"), Check("full offload (split by row over GPUs 0,1)", "skip", "not offered | x"),
        Check("server start", "fail", "port busy")])
    j, md = write_reports(tmp_path, rep)
    assert json.loads(j.read_text())["ok"] is False
    text = md.read_text()
    assert text.startswith("# smoke cu130-sm90: FAIL") and "| FAIL |" in text and "not offered / x" in text
    assert summary_rows([rep]) == [["cu130-sm90", "FAIL", "1", "1", "1"]]
