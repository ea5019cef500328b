"""Provenance statements, their signatures and the rebuild check's comparisons (no subprocess: keys are made
in-process with pyca/cryptography, wheels with tests/wheelmaker.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from llama_wheels import index, provenance, rebuild
from llama_wheels.errors import ConfigError, ProvenanceError

from ._catalogue_house import make_house

PASSPHRASE = "correct horse battery staple 7f3a"

INPUTS = provenance.BuildInputs(
    llama_cpp_python="0.3.36", sdist_sha256="8" * 64, flavour="cpu", archs=None, variants=("default",),
    cuda=None, cuda_runtime="none", host_options={"GGML_OPENMP": "OFF", "GGML_BLAS": "OFF"},
    cmake_args=("-DGGML_NATIVE=OFF", "-DGGML_OPENMP=OFF", "-DCMAKE_C_COMPILER_LAUNCHER=ccache",
                "-DCMAKE_C_FLAGS=-ffile-prefix-map=$BUILD_DIR=/lw-build"),
    toolchain={"c++": "g++ (Debian 12.2.0-14+deb12u1) 12.2.0", "cmake": "cmake version 4.4.4"})


def keypair(tmp_path: Path, passphrase: str | None = None) -> tuple[Path, Path, bytes]:
    key = Ed25519PrivateKey.generate()
    enc = serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "key.pem").write_bytes(private)
    (tmp_path / "key.pub").write_bytes(pub)
    return tmp_path / "key.pem", tmp_path / "key.pub", raw


def entry(filename: str, sha: str) -> dict[str, Any]:
    return {"flavour": "cpu", "filename": filename, "sha256": sha, "version": "0.3.36+cpu", "archs": None,
            "variants": ["default"], "extras": [], "cuda": None, "cuda_runtime": "none",
            "llama_cpp_python": "0.3.36", "sdist_sha256": "8" * 64, "host_options": dict(INPUTS.host_options),
            "inputs": {**INPUTS.as_dict(), "builder": {"RUNNER_NAME": "gpu-7", "ImageOS": "ubuntu24"},
                       "llama_wheels_commit": "abc123"}}


def test_normalize_replaces_host_paths_and_names_the_launcher() -> None:
    roots = provenance.path_roots(Path("/work/a/build"), Path("/home/u/.cache/llama-wheels"), Path("/work/a"),
                                  "/home/u")
    args = ["-DCMAKE_CXX_COMPILER_LAUNCHER=/work/a/.nox/build_cpu/bin/ccache",
            "-DCUDAToolkit_ROOT=/home/u/.cache/llama-wheels/toolkits/cu130",
            "-DCMAKE_C_FLAGS=-ffile-prefix-map=/work/a/build=/lw-build", "-DX=/home/u/other"]
    assert provenance.normalize(args, roots) == (
        "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache", "-DCUDAToolkit_ROOT=$CACHE_DIR/toolkits/cu130",
        "-DCMAKE_C_FLAGS=-ffile-prefix-map=$BUILD_DIR=/lw-build", "-DX=~/other")


def test_differences_name_the_flag_first_then_the_tools() -> None:
    changed = provenance.BuildInputs(**{**INPUTS.__dict__, "cmake_args": (*INPUTS.cmake_args, "-DGGML_AVX512=ON"),
                                        "toolchain": {**INPUTS.toolchain, "c++": "g++ (Ubuntu 13.3.0) 13.3.0"}})
    diffs = provenance.differences(INPUTS, changed)
    assert [d.what for d in diffs] == ["CMake flag -DGGML_AVX512", "toolchain c++"]
    assert diffs[0].describe() == "CMake flag -DGGML_AVX512: recorded (not set), this rebuild ON"
    assert provenance.differences(INPUTS, INPUTS) == []
    rec = provenance.BuildInputs.from_dict(json.loads(json.dumps(INPUTS.as_dict())))
    assert rec == INPUTS  # the record survives the manifest's JSON


def test_statement_is_slsa_provenance_about_the_wheel_and_deterministic(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "smoke-cpu.json").write_text(json.dumps({"wheel": "/x/w.whl", "ok": True}))
    smoke = provenance.smoke_byproduct(reports, "cpu", "w.whl")
    assert smoke is not None and smoke["annotations"] == {"smoke_verdict": "pass"}
    assert smoke["digest"]["sha256"] == hashlib.sha256((reports / "smoke-cpu.json").read_bytes()).hexdigest()
    assert provenance.smoke_byproduct(reports, "cpu", "other.whl") is None  # a report about another wheel
    stmt = provenance.statement("w.whl", "a" * 64, entry("w.whl", "a" * 64), smoke)
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["predicateType"] == "https://slsa.dev/provenance/v1"
    assert stmt["subject"] == [{"name": "w.whl", "digest": {"sha256": "a" * 64}}]
    build = stmt["predicate"]["buildDefinition"]
    assert build["resolvedDependencies"][0]["digest"] == {"sha256": "8" * 64}
    assert build["externalParameters"]["cmake_args"] == list(INPUTS.cmake_args)
    assert build["internalParameters"]["toolchain"] == dict(INPUTS.toolchain)
    run = stmt["predicate"]["runDetails"]
    assert run["builder"]["version"] == {"llama-wheels": "abc123", "ImageOS": "ubuntu24"}
    assert run["builder"]["id"] == "urn:llama-wheels:builder:gpu-7" and run["byproducts"] == [smoke]
    again = provenance.statement("w.whl", "a" * 64, entry("w.whl", "a" * 64), smoke)
    assert provenance.canonical(stmt) == provenance.canonical(again)


def test_signed_statement_verifies_and_every_tampering_fails_in_one_line(tmp_path: Path) -> None:
    priv, pub, _ = keypair(tmp_path)
    signer = provenance.signer_from_env({provenance.KEY_ENV: str(priv)})
    stmt = provenance.statement("w.whl", "a" * 64, entry("w.whl", "a" * 64))
    env = provenance.envelope(stmt, signer)
    assert env == provenance.envelope(stmt, signer)  # Ed25519: the same bytes every time
    good = json.dumps(env).encode()
    ok = provenance.verify("w.whl", "a" * 64, good, pub.read_bytes())
    assert ok.keyid and "signed by key" in ok.describe()
    tampered = dict(env, payload=base64.b64encode(provenance.canonical(
        {**stmt, "predicate": {**stmt["predicate"], "buildDefinition": {"buildType": "x"}}})).decode())
    cases = {
        "the signature does not verify with key": json.dumps(tampered).encode(),
        "subject mismatch: the statement is about w.whl sha256 " + "a" * 64: good,
        "the statement is not signed": json.dumps(provenance.envelope(stmt, None)).encode(),
        "not a DSSE envelope": b"{}",
    }
    for reason, data in cases.items():
        name_sha = ("w.whl", "b" * 64) if reason.startswith("subject") else ("w.whl", "a" * 64)
        with pytest.raises(ProvenanceError) as err:
            provenance.verify(*name_sha, data, pub.read_bytes())
        assert reason in err.value.one_line() and "\n" not in err.value.one_line()
    (tmp_path / "other").mkdir()
    other_pub = keypair(tmp_path / "other")[1]
    with pytest.raises(ProvenanceError, match="does not verify"):
        provenance.verify("w.whl", "a" * 64, good, other_pub.read_bytes())
    assert provenance.verify("w.whl", "a" * 64, good, None).keyid is None  # --allow-unsigned: subject only


def test_a_wrong_passphrase_is_one_line_without_the_secret(tmp_path: Path) -> None:
    priv, _, _ = keypair(tmp_path, PASSPHRASE)
    for env in ({provenance.KEY_ENV: str(priv)},
                {provenance.KEY_ENV: str(priv), provenance.PASSWORD_ENV: "Wr0ng-91d2"}):
        with pytest.raises(ConfigError) as err:
            provenance.signer_from_env(env)
        assert PASSPHRASE not in str(err.value) and "Wr0ng-91d2" not in str(err.value)
        assert "\n" not in err.value.one_line()
    assert provenance.signer_from_env({provenance.KEY_ENV: str(priv), provenance.PASSWORD_ENV: PASSPHRASE})
    with pytest.raises(ConfigError, match="not a file"):
        provenance.signer_from_env({provenance.KEY_ENV: str(tmp_path / "missing.pem")})
    assert provenance.signer_from_env({}) is None


def test_index_serves_a_signed_statement_beside_each_wheel_without_the_key(tmp_path: Path) -> None:
    house = make_house(tmp_path, ["cpu", "cu130-sm90"])
    data = json.loads((house / "manifest.json").read_text())
    cpu_key = next(k for k in data["wheels"] if k.startswith("cpu/"))
    e = data["wheels"][cpu_key]
    e["inputs"] = entry(e["filename"], e["sha256"])["inputs"]
    (house / "manifest.json").write_text(json.dumps(data))
    priv, pub, raw = keypair(tmp_path, PASSPHRASE)
    signer = provenance.signer_from_env({provenance.KEY_ENV: str(priv), provenance.PASSWORD_ENV: PASSPHRASE})
    index.build_index(house, signer=signer)
    root = house / "index"
    stmt = root / "provenance" / f"{e['filename']}.intoto.json"
    assert [p.name for p in (root / "provenance").iterdir()] == [stmt.name]  # the entry without inputs: none
    cat = json.loads((root / "flavours.json").read_text())
    link = cat["flavours"]["cpu"]["wheels"][0]["provenance"]
    assert link["url"] == f"provenance/{stmt.name}" and link["signed"] is True
    assert link["sha256"] == hashlib.sha256(stmt.read_bytes()).hexdigest()
    assert "provenance" not in cat["flavours"]["cu130-sm90"]["wheels"][0]
    wheel = root / "files" / e["filename"]
    ok = provenance.verify_wheel(str(wheel), None, str(pub))  # the statement found beside files/
    assert ok.sha256 == e["sha256"]
    secrets = [raw, raw.hex().encode(), base64.b64encode(raw), PASSPHRASE.encode(), priv.read_bytes()[40:80]]
    for f in root.rglob("*"):
        if f.is_file():
            assert not any(s in f.read_bytes() for s in secrets), f
    before = stmt.read_bytes()
    index.build_index(house, signer=signer)
    assert stmt.read_bytes() == before  # deterministic, like every page of the index


def _zip(path: Path, members: dict[str, bytes], when: tuple[int, ...] = (1980, 1, 1, 0, 0, 0)) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, when), data)  # type: ignore[arg-type]
    return path


def test_first_difference_names_the_member_and_what_differs(tmp_path: Path) -> None:
    elf = b"\x7fELF" + b"\0" * 60
    a = _zip(tmp_path / "a.whl", {"llama_cpp/lib/libggml.so": elf + b"/tmp/a/build/src/ggml.c\0rest",
                                  "x.dist-info/METADATA": b"Name: x\n"})
    b = _zip(tmp_path / "b.whl", {"llama_cpp/lib/libggml.so": elf + b"/tmp/b/build/src/ggml.c\0rest",
                                  "x.dist-info/METADATA": b"Name: x\n"})
    assert rebuild.first_difference(a, b) == ("llama_cpp/lib/libggml.so: a path string: '/tmp/a/build/src/ggml.c' in "
                                              "the wheel, '/tmp/b/build/src/ggml.c' in the rebuild")
    c = _zip(tmp_path / "c.whl", {"llama_cpp/lib/libggml.so": elf + b"built Dec  4 2026\0",
                                  "x.dist-info/METADATA": b"Name: x\n"})
    d = _zip(tmp_path / "d.whl", {"llama_cpp/lib/libggml.so": elf + b"built Dec  5 2026\0",
                                  "x.dist-info/METADATA": b"Name: x\n"})
    assert "a timestamp: 'built Dec  4 2026'" in rebuild.first_difference(c, d)
    e = _zip(tmp_path / "e.whl", {"x.dist-info/METADATA": b"Name: x\n"})
    f = _zip(tmp_path / "f.whl", {"x.dist-info/METADATA": b"Name: x\n"}, when=(2026, 12, 4, 21, 0, 0))
    assert rebuild.first_difference(e, f).startswith("x.dist-info/METADATA: a timestamp: zip time")
    g = _zip(tmp_path / "g.whl", {"x.dist-info/METADATA": b"Name: x\nVersion: 1\n"})
    h = _zip(tmp_path / "h.whl", {"x.dist-info/METADATA": b"Name: x\nVersion: 2\n"})
    assert rebuild.first_difference(g, h) == "x.dist-info/METADATA: line (line 2): 'Version: 1' in the wheel, " \
                                             "'Version: 2' in the rebuild"
    assert rebuild.first_difference(a, e).startswith("the member lists differ at #1")


def test_statement_location_is_beside_files() -> None:
    assert provenance.statement_location("https://h/llama/files/w.whl") == "https://h/llama/provenance/w.whl.intoto.json"
    assert provenance.statement_location("/srv/index/files/w.whl") == "/srv/index/provenance/w.whl.intoto.json"


def test_rebuild_reads_the_manifest_entry_else_the_signed_statement(options, tmp_path: Path) -> None:
    import io

    from llama_wheels.log import Logger

    from ..wheelmaker import make_wheel

    o = options()
    (o.wheelhouse / "cpu").mkdir(parents=True)
    wheel = make_wheel(o.wheelhouse / "cpu")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    log = Logger({}, io.StringIO())
    e = entry(wheel.name, sha)
    old = {k: v for k, v in e.items() if k != "inputs"}
    (o.wheelhouse / "manifest.json").write_text(json.dumps({"wheels": {f"cpu/{wheel.name}": old}}))
    req = rebuild.RebuildRequest(str(wheel))
    with pytest.raises(ProvenanceError, match="was built before llama-wheels recorded its inputs"):
        rebuild.recorded_inputs(wheel, req, o, log)
    (o.wheelhouse / "manifest.json").write_text(json.dumps({"wheels": {f"cpu/{wheel.name}": e}}))
    assert rebuild.recorded_inputs(wheel, req, o, log) == INPUTS
    priv, pub, _ = keypair(tmp_path)
    stmt = tmp_path / "w.intoto.json"
    signer = provenance.signer_from_env({provenance.KEY_ENV: str(priv)})
    stmt.write_text(json.dumps(provenance.envelope(provenance.statement(wheel.name, sha, e), signer)))
    signed = rebuild.RebuildRequest(str(wheel), statement=str(stmt), key=str(pub))
    assert rebuild.recorded_inputs(wheel, signed, o, log) == INPUTS  # the statement carries the same record
    (tmp_path / "k2").mkdir()
    wrong = rebuild.RebuildRequest(str(wheel), statement=str(stmt), key=str(keypair(tmp_path / "k2")[1]))
    with pytest.raises(ProvenanceError, match="does not verify"):
        rebuild.recorded_inputs(wheel, wrong, o, log)
