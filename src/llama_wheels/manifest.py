"""wheelhouse/manifest.json: one entry per wheel. Writes are atomic and serialised by a file lock."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

NAME = "manifest.json"


def lock(wheelhouse: Path) -> FileLock:
    wheelhouse.mkdir(parents=True, exist_ok=True)
    return FileLock(str(wheelhouse / ".manifest.lock"), timeout=600)


def read(wheelhouse: Path) -> dict[str, Any]:
    path = wheelhouse / NAME
    if not path.exists():
        return {"wheels": {}}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("wheels", {})
    return data


def _write(wheelhouse: Path, data: Mapping[str, Any]) -> None:
    path = wheelhouse / NAME
    tmp = path.with_name(f".{NAME}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def publish(wheelhouse: Path, staged: Path, final: Path, entry: Mapping[str, Any]) -> None:
    """Move a checked wheel into place and record it, as one step under the lock."""
    key = final.relative_to(wheelhouse).as_posix()
    with lock(wheelhouse):
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
        data = read(wheelhouse)
        data["wheels"][key] = dict(entry)
        _write(wheelhouse, data)


def entries(wheelhouse: Path) -> dict[str, dict[str, Any]]:
    return dict(read(wheelhouse)["wheels"])
