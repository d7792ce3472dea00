"""User-facing errors: one line saying what went wrong, where, and what to do."""

from __future__ import annotations


class LvcError(Exception):
    """An error the CLI reports as a single line and a non-zero exit, never a traceback."""

    exit_code = 2

    def __init__(self, what: str, where: str | None = None, hint: str | None = None) -> None:
        self.what, self.where, self.hint = what, where, hint
        super().__init__(self.message())

    def message(self) -> str:
        parts = [f"{self.where}: {self.what}" if self.where else self.what]
        if self.hint:
            parts.append(self.hint)
        return "; ".join(parts)


class InputError(LvcError):
    """The input file is missing, unreadable or not a video/image."""


class BitstreamError(LvcError):
    """A ``.lvc`` file is corrupted, truncated, of another version or otherwise invalid."""

    exit_code = 3


class ModelError(LvcError):
    """A model is unknown, missing or does not match its recorded hash."""


class OutputError(LvcError):
    """The output cannot be written."""
