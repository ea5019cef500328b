"""One error hierarchy. Every error the package raises on purpose is a subclass here, with its own
exit code, a docstring that says when it happens, and a remedy that says what to do.

Entry points catch :class:`FatalError`, print ``error: <message>; <remedy>`` on one line and exit
with :attr:`FatalError.return_code`; a traceback is shown only with ``--debug``.

Exit codes (``llama-wheels``, the nox sessions and the invoke tasks alike):

==== =====================  ==========================================================
code class                  when
==== =====================  ==========================================================
1    FatalError             never raised itself; the base of everything below
2    ConfigError            a bad option: pyproject table, LLAMA_WHEELS_* variable, flag
2    ArchError              an arch or arch set that cannot be parsed or built
3    ToolNotFound           a program is missing (remedy: how to get it)
4    PreflightError         the doctor found a problem that would doom the build
5    ChecksumError          a file's sha256 differs from its pin
6    OfflineMissing         an offline run needs a file the prefetch folder lacks
7    CommandFailed          a program exited non-zero, timed out or could not start
8    BuildFailed            a build step produced no good wheel
9    WheelCheckFailed       a wheel failed the check (label, RECORD, layout, runtime)
10   CleanRefused           a removal outside what we own was refused
11   ModelError             the GGUF model is missing or unreadable
12   SmokeFailed            a wheel failed its smoke test
13   IndexConflict          a published index file would change
14   PublishError           an upload or sync was refused or failed
13   PublishedConflict      (an IndexConflict) a file in the published index has other bytes
9    ManifestDamaged        (a WheelCheckFailed) wheelhouse/manifest.json cannot be read
9    DamagedWheel           (a WheelCheckFailed) a wheel's bytes are not what was built
15   SourceError            the llama-cpp-python sdist could not be had or is unusable
16   InUse                  another run holds the lock, and waiting for it timed out
14   VariantError           (a PublishError) variantlib's variant copies are not what we asked for
17   SelectFailed           select found no flavour that runs here, or could not read the catalogue
18   StorageError           a folder is read-only or full (names the folder and the space needed)
19   UpstreamError          follow-upstream: the index, the pin branch or the pull request failed
20   ProvenanceError        a provenance statement is unsigned, tampered with, or about another wheel
21   RebuildMismatch        verify-rebuild: the rebuild's inputs or bytes differ from the wheel's
130  (KeyboardInterrupt)    interrupted
==== =====================  ==========================================================

``FatalError`` derives from :class:`Exception`, not ``BaseException`` as in cibuildwheel: our
``except`` clauses are narrow, and an interrupt (130) stays distinguishable from a user error.
"""

from __future__ import annotations


class FatalError(Exception):
    """Base class: something the user can fix. ``remedy`` says how. Raise a subclass, never this."""

    return_code: int = 1

    def __init__(self, message: str, remedy: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy

    def one_line(self) -> str:
        return f"{self.message}; {self.remedy}" if self.remedy else self.message

    def __str__(self) -> str:
        return self.one_line()


class ConfigError(FatalError):
    """Bad configuration: pyproject table, environment variable or CLI flag."""

    return_code = 2


class ArchError(ConfigError):
    """An arch or arch set that cannot be parsed or is not supported by the toolkit."""


class ToolNotFound(FatalError):
    """A program the step needs is not installed (or not where the configuration says)."""

    return_code = 3


class PreflightError(FatalError):
    """The doctor found a problem that would doom the build."""

    return_code = 4


class ChecksumError(FatalError):
    """A downloaded or carried file does not have the sha256 it is pinned to."""

    return_code = 5


class OfflineMissing(FatalError):
    """An offline run needs a file that is not in the prefetch folder."""

    return_code = 6


class CommandFailed(FatalError):
    """A program exited non-zero, was killed, timed out, or could not be started."""

    return_code = 7


class BuildFailed(FatalError):
    """A build step produced no wheel, or a wheel that post-processing or the check rejected."""

    return_code = 8


class WheelCheckFailed(FatalError):
    """``check-wheels`` found a problem in at least one wheel (each problem is logged above)."""

    return_code = 9


class CleanRefused(FatalError):
    """A removal was refused: a root, the home or a repository folder, or something we do not own."""

    return_code = 10


class ModelError(FatalError):
    """The GGUF model for the smoke test or bench is missing or unreadable."""

    return_code = 11


class SmokeFailed(FatalError):
    """A wheel failed a smoke-test check (the report names which)."""

    return_code = 12


class IndexConflict(FatalError):
    """A wheel is already in the index with other contents: a published file never changes."""

    return_code = 13


class PublishError(FatalError):
    """An upload or a folder sync was refused, failed, or would replace a different file."""

    return_code = 14


class DamagedWheel(WheelCheckFailed):
    """A wheel whose bytes are not what was built: not a zip, truncated, a member that fails its CRC or
    RECORD hash, or a sha256 other than the manifest's."""


class VariantError(PublishError):
    """``index --variants``: variantlib made no copy, or its copy or index lists other properties than ours."""


class SelectFailed(FatalError):
    """``select``: no flavour of the catalogue runs on this machine, or the catalogue cannot be read.
    (The served selector script, stdlib only, exits with the same code: selector.SELECT_FAILED.)"""

    return_code = 17


class PublishedConflict(IndexConflict):
    """A file the published index already lists (the --seed-from or --sync-to folder) has other bytes."""


class ManifestDamaged(WheelCheckFailed):
    """wheelhouse/manifest.json cannot be read (not JSON, or not our layout)."""


class InUse(FatalError):
    """Another llama-wheels run holds the wheelhouse or build-dir lock, and waiting for it timed out."""

    return_code = 16


class SourceError(FatalError):
    """The llama-cpp-python sdist could not be downloaded, or is not a usable source tree."""

    return_code = 15


class StorageError(FatalError):
    """A folder the step writes to is read-only, or its filesystem is full; names the folder and the space needed."""

    return_code = 18


class ProvenanceError(FatalError):
    """A provenance statement cannot be read, is not signed by the given key, was changed after signing,
    or its subject is another wheel (the message says which, in one line)."""

    return_code = 20


class UpstreamError(FatalError):
    """``follow-upstream``: the index cannot be read, a release is yanked or missing, the checkout is dirty, a
    branch cannot be resolved, or GitHub's API refused the pull request."""

    return_code = 19


class RebuildMismatch(FatalError):
    """``verify-rebuild``: the rebuild's inputs differ from the wheel's recorded ones (the first differing
    flag or tool is named), or the rebuilt wheel's bytes differ (the first differing member is named)."""

    return_code = 21


__all__ = [
    "ArchError", "BuildFailed", "ChecksumError", "CleanRefused", "CommandFailed", "ConfigError", "FatalError",
    "IndexConflict", "ModelError", "OfflineMissing", "PreflightError", "ProvenanceError", "PublishError",
    "RebuildMismatch", "SelectFailed", "SmokeFailed",
    "SourceError", "StorageError",
    "ToolNotFound", "UpstreamError", "WheelCheckFailed", "error_name", "exit_codes",
]


def exit_codes() -> dict[int, list[str]]:
    """Every error class by exit code (for the docs and the test that keeps codes distinct)."""
    out: dict[int, list[str]] = {}
    todo: list[type[FatalError]] = [FatalError]
    while todo:
        cls = todo.pop()
        out.setdefault(cls.return_code, []).append(cls.__name__)
        todo += cls.__subclasses__()
    return out



def error_name(code: int) -> str:
    """The class that owns exit ``code`` (the one that sets it, not a subclass that inherits it), e.g.
    2 -> ConfigError; "" for a code that is not ours. nox reports every failure as exit 1, so the
    sessions print this next to the tool's own code."""
    if code == 130:
        return "interrupted"
    todo: list[type[FatalError]] = [FatalError]
    while todo:
        cls = todo.pop(0)
        if "return_code" in vars(cls) and cls.return_code == code:
            return cls.__name__
        todo += cls.__subclasses__()
    return ""
