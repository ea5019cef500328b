from __future__ import annotations

from pathlib import Path

import pytest

from llama_wheels.errors import ModelError
from llama_wheels.model import SMOKE, cached_model, validate, vocabulary


def test_smoke_model_is_deterministic_and_valid(tmp_path: Path) -> None:
    a = cached_model(tmp_path / "a")
    b = cached_model(tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    assert validate(a) == 3 + 9 * SMOKE.n_layer


def test_vocabulary_has_bytes_and_unique_pieces() -> None:
    tokens, scores, types = vocabulary(512)
    assert len(tokens) == len(set(tokens)) == len(scores) == len(types) == 3 + 256 + 512
    assert tokens[3] == "<0x00>" and types[3] == 6 and "▁the" in tokens


def test_bad_models(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        validate(tmp_path / "missing.gguf")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ModelError, match="not a GGUF file"):
        validate(text)
    good = cached_model(tmp_path)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelError, match="truncated"):
        validate(cut)
