"""One error type for everything a user can cause; converted to text only at the CLI/TUI edge."""

from __future__ import annotations


class PadaError(Exception):
    """A problem the user can fix: `message` says what and where, `hint` says what to do."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"


class ConfigError(PadaError):
    """The configuration is invalid."""


class DataError(PadaError):
    """A dataset file is missing or malformed."""


class ModelError(PadaError):
    """A model file is missing, corrupt or not loadable."""


class BackendUnavailable(PadaError):
    """A backend cannot run on this machine (package missing, no suitable device)."""


class Cancelled(PadaError):
    """The user stopped the run; finished work is kept and the run can be resumed."""

    exit_code = 130
