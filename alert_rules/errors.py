"""The one root error of the alert rules."""

from __future__ import annotations


class AlertRulesError(Exception):
    """Root of every error raised by :mod:`alert_rules`."""


class RuleFileError(AlertRulesError):
    """A rule or routing file that does not validate: names the file, line and field."""

    def __init__(self, message: str, *, file: str, line: int | None = None, field: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class ThresholdError(AlertRulesError):
    """A threshold override that does not fit its rule (unknown field, wrong order)."""
