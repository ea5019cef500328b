"""Source kinds without git: spec parsing, the identity's PEP 440 label, the plan it gives, the upstream choice
and pin edit, and the binding comparison on small headers and binding modules written here."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename
from packaging.version import Version

from llama_wheels import bindings, source, upstream
from llama_wheels.archs import parse_arch_set
from llama_wheels.config import resolve
from llama_wheels.detect import ToolkitChoice
from llama_wheels.errors import ChecksumError, ConfigError, OfflineMissing, UpstreamError
from llama_wheels.plan import make_plan

PYPI = ToolkitChoice("pypi", (13, 0), None, "NVIDIA's PyPI cuda-toolkit 13.0")
C1 = "0123456" + "a" * 33  # a commit whose 7-digit prefix is all digits: PEP 440 would read it as a number
C2 = "5d6e7f8" + "b" * 33


def tree(commit: str, dirty: str = "", ref: str = "v1", kind: str = "tag") -> source.GitTree:
    return source.GitTree("https://example.org/x.git", ref, commit, kind, dirty)


@pytest.mark.parametrize(("text", "want"), [
    ("https://github.com/abetlen/llama-cpp-python@v0.3.36", ("https://github.com/abetlen/llama-cpp-python", "v0.3.36")),
    ("git@github.com:ggml-org/llama.cpp.git@b7000", ("git@github.com:ggml-org/llama.cpp.git", "b7000")),
    ("file:///srv/git/llama.cpp@feature/x", ("file:///srv/git/llama.cpp", "feature/x")),
])
def test_spec_is_url_at_ref(text: str, want: tuple[str, str]) -> None:
    assert source.parse_spec(text) == want


def test_spec_refusals(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="names no ref"):
        source.parse_spec("https://github.com/ggml-org/llama.cpp")
    with pytest.raises(ConfigError, match="neither a URL@ref nor a local folder"):
        source.parse_spec(str(tmp_path / "missing"))
    assert source.parse_spec(str(tmp_path)) == (str(tmp_path.resolve()), "")


@pytest.mark.parametrize(("identity", "tokens"), [
    (source.pypi_identity("0.3.36", "f" * 64), ()),
    (source.SourceIdentity("git", "0.3.37", package=tree(C1), llama_cpp=tree(C2, ref="vendor/llama.cpp",
                                                                              kind="gitlink")), ("git0123456",)),
    (source.SourceIdentity("llama", "0.3.36", sdist_sha256="f" * 64, llama_cpp=tree(C1)), ("llama0123456",)),
    (source.SourceIdentity("llama", "0.3.37", package=tree(C2), llama_cpp=tree(C1, dirty="00ab12")),
     ("git5d6e7f8", "llama0123456", "dirty00ab12")),
])
def test_label_is_a_local_version_pip_keeps(options, identity: source.SourceIdentity, tokens: tuple[str, ...]) -> None:
    assert identity.label_tokens() == tokens
    (step,) = make_plan(options(), arch_set=parse_arch_set("90"), toolkit=PYPI, variants=None, launcher=None,
                        source=identity)
    # normalisation keeps the label byte for byte (a bare 0123456 would become 123456 and no longer match)
    assert str(Version(step.version)) == step.version == f"{identity.version}+{'.'.join(('cu130', 'sm90', *tokens))}"
    name = f"llama_cpp_python-{step.version}-py3-none-linux_x86_64.whl"
    assert str(parse_wheel_filename(name)[1]) == step.version
    # each source kind compiles in its own build dir and lands in its own wheelhouse folder
    assert step.build_dir.name == step.flavour == "-".join(("cu130", "sm90", *tokens))
    assert step.source is identity and any(line.strip().startswith("source") for line in step.describe())


def test_plan_shows_branch_and_commit(options) -> None:
    ident = source.SourceIdentity("git", "0.3.37", package=tree(C2, ref="main", kind="branch"),
                                  llama_cpp=tree(C1, ref="vendor/llama.cpp", kind="gitlink"))
    (step,) = make_plan(options(), arch_set=None, toolkit=PYPI, variants=["default"], launcher=None, source=ident)
    text = "\n".join(step.describe())
    assert f"main (branch) = {C2}" in text and f"vendor/llama.cpp (gitlink) = {C1}" in text
    assert step.version == "0.3.37+cpu.git5d6e7f8"


def test_dirty_label_and_metadata(tmp_path: Path) -> None:
    ident = source.SourceIdentity("llama", "0.3.36", sdist_sha256="f" * 64,
                                  llama_cpp=source.GitTree("/src/llama.cpp", "master", C1, "head", "abc123"))
    assert ident.dirty and ident.label_tokens() == ("llama0123456", "dirtyabc123")
    meta = tmp_path / "METADATA"
    meta.write_text("Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.3.36\n\nThe description.\n")
    source.stamp_metadata(meta, ident)
    source.stamp_metadata(meta, ident)  # once only
    head, _, body = meta.read_text().partition("\n\n")
    assert head.count("Project-URL:") == 2 and body == "The description.\n"
    assert f"Project-URL: Source-llama.cpp, file:///src/llama.cpp@{C1}+dirtyabc123" in head
    assert "Project-URL: Source-sdist, https://pypi.org/project/llama-cpp-python/0.3.36/#sha256=" + "f" * 64 in head


def test_identity_round_trips_through_the_sidecar() -> None:
    ident = source.SourceIdentity("git", "0.3.37", package=tree(C2), llama_cpp=tree(C1), archive_sha256="e" * 64,
                                  spec=source.spec_key("https://example.org/x.git@v1", None))
    data = {**source.identity_json(ident), "slim_sha256": "d" * 64, "dropped": [".git"]}
    assert source.identity_from_json(json.loads(json.dumps(data))) == ident


def test_offline_finds_the_carried_archive_and_checks_it(tmp_path: Path) -> None:
    spec = "https://example.org/x.git@v1"
    with pytest.raises(OfflineMissing, match="nox -s prefetch with the same --source"):
        source.find_offline(tmp_path, spec, None)
    archive = tmp_path / "sources" / "a.tar.gz"
    archive.parent.mkdir()
    sha = source.write_archive(archive, "a", iter([("pyproject.toml", tarfile.TarInfo("x"), b"[project]\n")]))
    ident = source.SourceIdentity("git", "0.3.37", package=tree(C2), llama_cpp=tree(C1), archive_sha256=sha,
                                  spec=source.spec_key(spec, None))
    source.sidecar(archive).write_text(json.dumps(source.identity_json(ident)))
    found = source.find_offline(tmp_path, spec, None)
    assert found.identity == ident and found.path == archive and not found.slim
    archive.write_bytes(archive.read_bytes() + b"\0")
    with pytest.raises(ChecksumError, match="its sidecar says"):
        source.find_offline(tmp_path, spec, None)


def test_archive_is_deterministic(tmp_path: Path) -> None:
    def members() -> list[source.Member]:
        info = tarfile.TarInfo("x")
        info.mtime, info.uid, info.uname = 123, 1000, "someone"
        return [("b.txt", info, b"b"), ("a/c.txt", info, b"c")]

    one = source.write_archive(tmp_path / "1.tar.gz", "top", iter(members()))
    two = source.write_archive(tmp_path / "2.tar.gz", "top", iter(reversed(members())))
    assert one == two
    with tarfile.open(tmp_path / "1.tar.gz") as tar:
        assert tar.getnames() == ["top/a/c.txt", "top/b.txt"] and {m.mtime for m in tar} == {source.MTIME}


# ------------------------------------------------------------------------------------ upstream ---------

R = upstream.Release


def test_choose_newest_skips_pre_releases_and_yanked() -> None:
    found = [R("0.3.36", "a", "u", "1"), R("0.3.37", "b", "u", "2"), R("0.3.38", "c", "u", "3", yanked=True),
             R("0.3.39rc1", "d", "u", "4")]
    assert upstream.choose(found, "0.3.36") == found[1]
    assert upstream.choose(found, "0.3.36", allow_yanked=True) == found[2]
    assert upstream.choose(found, "0.3.36", pre=True) == found[3]
    assert upstream.choose(found, "0.3.37") is None
    with pytest.raises(UpstreamError, match=r"0\.3\.38 is yanked on idx \(bad build\); pin another version"):
        upstream.choose([R("0.3.38", "c", "u", "3", True, "bad build")], "0.3.36", version="0.3.38", where="idx")
    with pytest.raises(UpstreamError, match=r"has no llama-cpp-python 0\.4\.0 sdist"):
        upstream.choose(found, "0.3.36", version="0.4.0")


def test_write_pin_sets_both_keys_and_keeps_the_rest(tmp_path: Path) -> None:
    py = tmp_path / "pyproject.toml"
    py.write_text('[project]\nname = "llama-wheels"\n\n[tool.llama-wheels]\n# a comment\npython = "3.12"\n'
                  'llama-cpp-python = "0.3.36"\n\n[tool.other]\nx = 1\n')
    upstream.write_pin(py, "0.3.37", "a" * 64)
    text = py.read_text()
    assert 'llama-cpp-python = "0.3.37"' in text and f'sdist-sha256 = "{"a" * 64}"' in text
    assert "# a comment" in text and 'python = "3.12"' in text and "[tool.other]\nx = 1" in text
    o = resolve(tmp_path, {})
    assert (o.llama_cpp_python, o.sdist_sha256, o.python) == ("0.3.37", "a" * 64, "3.12")
    upstream.write_pin(py, "0.3.38", "b" * 64)  # again: replaced, not added
    assert py.read_text().count("llama-cpp-python =") == 1 and resolve(tmp_path, {}).llama_cpp_python == "0.3.38"


def test_no_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="set GITHUB_TOKEN or GH_TOKEN"):
        upstream.github_token({"HOME": "/x"})
    assert upstream.github_token({"GH_TOKEN": "t"}) == "t"


# ------------------------------------------------------------------------------------ bindings ---------

HEADER = """
#define LLAMA_API __attribute__ ((visibility ("default")))
struct llama_model_kv_override {
    enum llama_model_kv_override_type tag;
    char key[128];
    union { int64_t val_i64; double val_f64; };   // anonymous
};
typedef struct llama_batch {
    int32_t n_tokens;
    llama_token * token; /* ids */
    bool (*cb_eval)(struct ggml_tensor * t, bool ask, void * user_data);
    int8_t * logits;
} llama_batch;
struct llama_context_params {
    uint32_t n_ctx, n_batch;
    uint32_t n_rs_seq;   // new: inserted in the middle
    int32_t n_threads;
};
LLAMA_API int32_t llama_decode(struct llama_context * ctx, struct llama_batch batch);
LLAMA_API DEPRECATED(size_t llama_get_state_size(struct llama_context * ctx), "use llama_state_get_size");
"""
BINDINGS = """
import ctypes
class llama_model_kv_override(ctypes.Structure):
    _fields_ = [("tag", ctypes.c_int), ("key", ctypes.c_char * 128), ("value", ctypes.c_int64)]
class llama_batch(ctypes.Structure):
    _fields_ = [("n_tokens", ctypes.c_int32), ("token", ctypes.c_void_p), ("cb_eval", ctypes.c_void_p)]
class llama_context_params(ctypes.Structure):
    pass
llama_context_params._fields_ = [("n_ctx", ctypes.c_uint32), ("n_batch", ctypes.c_uint32),
                                 ("n_threads", ctypes.c_int32)]

@ctypes_function("llama_decode", [], ctypes.c_int32)
def llama_decode(ctx, batch): ...

@ctypes_function("llama_get_state_size", [], ctypes.c_size_t)
def llama_get_state_size(ctx): ...

@ctypes_function("llama_renamed_in_newer", [], None)
def llama_renamed_in_newer(): ...

@ctypes_function("llama_switched_off", [], None, enabled=False)
def llama_switched_off(): ...
"""


def test_bound_names_and_header_fields() -> None:
    assert bindings.bound_functions(BINDINGS) == ["llama_decode", "llama_get_state_size", "llama_renamed_in_newer"]
    assert bindings.header_functions(HEADER) == ["llama_decode", "llama_get_state_size"]
    assert bindings.header_structs(HEADER) == {
        "llama_model_kv_override": ["tag", "key", bindings.ANON],
        "llama_batch": ["n_tokens", "token", "cb_eval", "logits"],
        "llama_context_params": ["n_ctx", "n_batch", "n_rs_seq", "n_threads"]}
    assert bindings.bound_structs(BINDINGS)["llama_context_params"] == ["n_ctx", "n_batch", "n_threads"]


def test_mismatch_names_the_symbol_and_the_struct() -> None:
    rep = bindings.check({"llama_cpp/llama_cpp.py": BINDINGS},
                         {"libllama": bindings.header_functions(HEADER)}, HEADER)
    assert not rep.ok and rep.missing == {"libllama": ["llama_renamed_in_newer"]} and rep.checked == {"libllama": 3}
    assert rep.structs == ["struct llama_context_params: field 2 is n_rs_seq in llama.h but n_threads in the "
                           "bindings (4 vs 3 fields; llama.h adds n_rs_seq)"]
    assert rep.appended == ["struct llama_batch: field 3 is logits in llama.h but (end) in the bindings "
                            "(4 vs 3 fields; llama.h adds logits)"]
    assert rep.one_line().startswith("libllama.so does not export llama_renamed_in_newer that the bindings call; "
                                     "struct llama_context_params: field 2 is n_rs_seq")
    good = bindings.check({"llama_cpp/llama_cpp.py": BINDINGS},
                          {"libllama": ["llama_decode", "llama_get_state_size", "llama_renamed_in_newer"]}, None)
    assert good.ok and good.one_line() == "every bound function is exported and every bound struct matches llama.h"


def test_exports_read_from_an_elf_stream() -> None:
    assert bindings.exported_symbols_stream(io.BytesIO(b"not an elf")) == set()


def test_the_scheduled_job_runs_the_task_with_a_token_from_secrets_only() -> None:
    import yaml

    wf = yaml.safe_load((Path(__file__).resolve().parents[2] / "ci" / "workflows" / "follow-upstream.yml").read_text())
    on = wf.get("on", wf.get(True))
    assert "schedule" in on and on["schedule"][0]["cron"]
    (job,) = wf["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest" and job["timeout-minutes"] <= 30
    step = next(s for s in job["steps"] if "follow-upstream" in s.get("run", ""))
    assert step["run"] == "scripts/run invoke follow-upstream"
    assert step["env"] == {"GITHUB_TOKEN": "${{ secrets.UPSTREAM_PR_TOKEN || github.token }}"}
    assert wf["permissions"] == {"contents": "write", "pull-requests": "write"}


def test_bench_finds_the_archive_the_wheel_was_built_from(tmp_path: Path) -> None:
    archive = tmp_path / "prefetch" / "sources" / "a.slim.tar.gz"
    archive.parent.mkdir(parents=True)
    slim_sha = source.write_archive(archive, "a", iter([("pyproject.toml", tarfile.TarInfo("x"), b"[project]\n")]))
    source.sidecar(archive).write_text(json.dumps({"archive_sha256": "e" * 64, "slim_sha256": slim_sha}))
    folders = [tmp_path / "cache" / "sources", archive.parent]
    found = source.find_archive(folders, {"kind": "llama", "archive_sha256": "e" * 64})
    assert found is not None and found.path == archive and found.slim and found.original_sha256 == "e" * 64
    assert source.find_archive(folders, {"kind": "pypi", "archive_sha256": "e" * 64}) is None
    assert source.find_archive(folders, {"kind": "git", "archive_sha256": "f" * 64}) is None
