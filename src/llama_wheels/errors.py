"""One error hierarchy. Every error carries an exit code and a remedy.

Entry points catch :class:`FatalError`, print ``error: <message>`` on one line (plus the remedy)
and exit with :attr:`FatalError.return_code`; a traceback is shown only with ``--debug``.
"""

from __future__ import annotations


class FatalError(Exception):
    """Base class: something the user can fix. ``remedy`` says how."""

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
    return_code = 3


class PreflightError(FatalError):
    """The doctor found a problem that would doom the build."""

    return_code = 4


class ChecksumError(FatalError):
    return_code = 5


class OfflineMissing(FatalError):
    """An offline run needs a file that is not in the prefetch folder."""

    return_code = 6


class CommandFailed(FatalError):
    return_code = 7


class BuildFailed(FatalError):
    return_code = 8


class WheelCheckFailed(FatalError):
    return_code = 9


class CleanRefused(FatalError):
    return_code = 10


class ModelError(FatalError):
    return_code = 11


class SmokeFailed(FatalError):
    return_code = 12
