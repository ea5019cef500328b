"""The wheel under test: a fresh venv with only that wheel installed from its wheelhouse folder, and the
environment its processes run in. Smoke and bench share it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_wheels import cmd
from llama_wheels.clean import remove_tree_within


@dataclass(frozen=True)
class WheelEnv:
    python: str  # the venv's interpreter
    requirement: str  # what pip installed, e.g. llama-cpp-python[server]==0.3.36
    extras: tuple[str, ...]
    env: Mapping[str, str]  # for every process that loads the wheel

    def with_gpus(self, visible: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self.env, "CUDA_VISIBLE_DEVICES": visible, **(extra or {})}


def make_venv(path: Path, python: str, owner: Path) -> str:
    from virtualenv import cli_run

    if path.exists():
        remove_tree_within(path, owner)
    cli_run([str(path), "--python", python, "--no-periodic-update", "--quiet"])
    return str(path / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))


def requirement(wheel: Path, entry: Mapping[str, Any], extras: tuple[str, ...]) -> str:
    version = entry.get("version") or wheel.name.split("-")[1]
    extra = "[" + ",".join(extras) + "]" if extras else ""
    return f"llama-cpp-python{extra}=={version}"


def default_extras(entry: Mapping[str, Any]) -> tuple[str, ...]:
    """The manifest's extras; else ``server`` for a wheel built with the server variant."""
    return tuple(entry.get("extras") or (["server"] if "server" in entry.get("variants", []) else []))


def run_env(env: Mapping[str, str]) -> dict[str, str]:
    """Our own PYTHONPATH/VIRTUAL_ENV must not leak into the wheel's venv; and nvidia-smi numbers cards in
    PCI bus order, so CUDA_VISIBLE_DEVICES must mean the same cards."""
    return {**{k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def install(wheel: Path, entry: Mapping[str, Any], *, venv: Path, python: str, owner: Path,
            env: Mapping[str, str], extras: tuple[str, ...] | None = None) -> WheelEnv:
    """A fresh venv at ``venv`` (inside ``owner``) with the wheel from its own folder, no index."""
    chosen = default_extras(entry) if extras is None else extras
    req = requirement(wheel, entry, chosen)
    venv_py = make_venv(venv, python, owner)
    cmd.run([venv_py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
             "--find-links", str(wheel.parent), req], env=env)
    return WheelEnv(venv_py, req, chosen, run_env(env))
