from __future__ import annotations

import pytest

from llama_wheels.archs import Arch, check_toolkit, parse_arch, parse_arch_set
from llama_wheels.compat import ARCH_SUPPORT, arch_floor
from llama_wheels.errors import ArchError, ConfigError

NAMED = {"universal": "86;89;120", "hopper": "90"}


@pytest.mark.parametrize(("text", "expected"), [
    ("86", Arch(86, "", "real")),
    ("8.6", Arch(86, "", "real")),
    ("sm_86", Arch(86, "", "real")),
    ("compute_86", Arch(86, "", "virtual")),
    ("86-real", Arch(86, "", "real")),
    ("86-virtual", Arch(86, "", "virtual")),
    ("90a", Arch(90, "a", "real")),
    ("sm_90a", Arch(90, "a", "real")),
    ("120a", Arch(120, "a", "real")),
    ("12.0", Arch(120, "", "real")),
    ("100f", Arch(100, "f", "real")),
])
def test_parse_one(text: str, expected: Arch) -> None:
    assert parse_arch(text) == [expected]


@pytest.mark.parametrize(("bad", "kind", "line"), [
    ("banana", ConfigError,
     "unknown arch set 'banana' (and not a CUDA architecture); configured: auto, hopper, universal"),
    ("sm_86x", ArchError,
     "'sm_86x' is not a CUDA architecture; write it like 86, 8.6, sm_86, 86-real, 86-virtual or 90a"),
    ("86;;", ArchError, "'86;;' has an empty entry; separate archs with one ';' or ',' and no trailing separator"),
    ("86;", ArchError, "'86;' has an empty entry; separate archs with one ';' or ',' and no trailing separator"),
    (";86", ArchError, "';86' has an empty entry; separate archs with one ';' or ',' and no trailing separator"),
    ("", ArchError, "the arch list is empty; give at least one arch, e.g. --archs 86"),
    ("85", ArchError, "'85' is not a known compute capability; known: 35, 37, 50, 52, 53, 60, 61, 62, 70, 72, 75, 80, "
     "86, 87, 88, 89, 90, 100, 101, 103, 110, 120, 121"),
    ("86-fake", ArchError, "'86-fake' is not a CUDA architecture; write it like 86, 8.6, sm_86, 86-real, 86-virtual "
     "or 90a"),
    ("compute_86-real", ArchError, "'compute_86-real' mixes compute_ with -real; write compute_86 or 86-virtual"),
])
def test_bad_arch_is_one_clear_error(bad: str, kind: type[ConfigError], line: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_arch_set(bad, NAMED)
    assert type(e.value) is kind and e.value.return_code == 2
    assert e.value.one_line() == line


def test_unknown_set_name_suggests() -> None:
    with pytest.raises(ConfigError) as e:
        parse_arch_set("univrsal", NAMED)
    assert "did you mean 'universal'" in e.value.remedy


def test_universal_becomes_120a_and_gets_portable_ptx() -> None:
    s = parse_arch_set("universal", NAMED)
    assert s.cmake() == "86-real;89-real;89-virtual;120a-real"
    assert s.sass == ("sm_86", "sm_89", "sm_120a")
    assert s.ptx == ("compute_89",)
    assert any("becomes 120a" in n for n in s.notes)
    assert s.token == "sm86-89-120"
    assert s.arch_list == (860, 890, 1200)


def test_ptx_none_and_explicit_kinds_are_kept() -> None:
    assert parse_arch_set("90", ptx="none").cmake() == "90-real"
    assert parse_arch_set("90").cmake() == "90-real;90-virtual"
    assert parse_arch_set("86-real;90-virtual").cmake() == "86-real;90-virtual"
    assert parse_arch_set("86,86-real,8.6").cmake() == "86-real;86-virtual"  # merged, PTX added once
    s = parse_arch_set("86-real;89;120")
    assert parse_arch_set(s.cmake(), ptx="none") == type(s)(s.archs, source=s.cmake())  # round trip


def test_120_alone_has_no_portable_ptx() -> None:
    s = parse_arch_set("120")
    assert s.cmake() == "120a-real" and s.ptx == ()


@pytest.mark.parametrize(("spec", "cuda", "fragment"), [
    ("120", (12, 4), "sm_120 (Blackwell (RTX 50xx, RTX PRO)) needs CUDA >= 12.8"),
    ("61", (13, 0), "its lowest is sm_75"),
    ("90", (11, 7), "needs CUDA >= 11.8"),
    ("90a", (11, 8), "90a needs CUDA >= 12.0 for the 'a' suffix; the toolkit is 11.8"),  # 90 alone is ok on 11.8
    ("121", (12, 8), "needs CUDA >= 12.9"),
    ("101", (13, 0), "not supported by CUDA 13.0"),
])
def test_toolkit_rejects(spec: str, cuda: tuple[int, int], fragment: str) -> None:
    problems = check_toolkit(parse_arch_set(spec, ptx="none"), cuda)
    assert fragment in problems[0]
    assert all("; " in p for p in problems)  # every problem names its fix


@pytest.mark.parametrize("number", sorted(ARCH_SUPPORT))
def test_every_arch_row(number: int) -> None:
    s = ARCH_SUPPORT[number]
    arch = parse_arch_set(str(number), ptx="none")
    assert check_toolkit(arch, s.first) == []
    assert check_toolkit(arch, (s.first[0], s.first[1] - 1) if s.first[1] else (s.first[0] - 1, 9))
    if s.last_exclusive:
        assert check_toolkit(arch, s.last_exclusive)


def test_cuda13_floor_is_75() -> None:
    assert arch_floor((13, 0)) == 75
    assert arch_floor((12, 4)) == 50


# --- labels: every difference in what is compiled shows in the token (issue #26, item 4) -----------------


@pytest.mark.parametrize(("spec", "token"), [
    ("86;89;120", "sm86-89-120"),  # universal: published as cu130-sm86-89-120, unchanged
    ("90", "sm90"), ("86", "sm86"), ("89", "sm89"), ("120", "sm120"),  # hopper, ampere, ada, blackwell
    ("75", "sm75"), ("80", "sm80"),  # turing, ampere-dc
    ("90a", "sm90a"),  # arch-specific SASS, and no PTX: `a` code has no portable PTX
    ("90-real", "sm90"),  # ptx = 'highest' adds 90-virtual to it: the same code as 90
    ("90a;90", "sm90-90a"),
    ("100f", "sm100f"),
    ("86-real;89-real;90-virtual", "sm86-89-ptx90"),  # kept from before: PTX above the SASS
    ("compute_89", "ptx89"),
    ("86;89-real", "sm86-89"),
    ("86-real;89;compute_86", "sm86-89-ptx86"),  # an explicit PTX turns the policy off: no 89 PTX
    ("120;compute_120", "sm120-ptx120"),  # llama.cpp makes both 120a
])
def test_token_says_what_is_compiled(spec: str, token: str) -> None:
    assert parse_arch_set(spec).token == token


def test_missing_ptx_shows() -> None:
    assert parse_arch_set("90", ptx="none").token == "sm90-noptx"
    assert parse_arch_set("86;89;120", ptx="none").token == "sm86-89-120-noptx"
    assert parse_arch_set("120", ptx="none").token == "sm120"  # 120a has no portable PTX either way


SPECS = ["86;89;120", "90", "90a", "90-real", "90a;90", "90-virtual", "90a-virtual", "90;compute_80", "100", "100f",
         "100f-real", "100a", "120", "120f", "121", "121f", "86;89", "86-real;89-real", "86;89-real", "86-real;89",
         "86-real;89-real;90-virtual", "compute_89", "75", "75;80", "80;86", "80-real;86", "86-real;compute_75",
         "86;compute_86;compute_75", "89;90", "89-real;90-real", "89-real;90"]


def test_distinct_arch_lists_give_distinct_tokens() -> None:
    """Two specs compile different code exactly when their tokens differ: no two builds share a filename."""
    by_code: dict[str, str] = {}
    for ptx in ("highest", "none"):
        for spec in SPECS:
            s = parse_arch_set(spec, ptx=ptx)
            by_code.setdefault(s.cmake(), s.token)
    assert len(set(by_code.values())) == len(by_code), by_code
    assert parse_arch_set("90-real;90-virtual", ptx="none").token == parse_arch_set("90").token  # same code
