"""Errors of the alerting component (all under :class:`backend.errors.BackendError`)."""

from __future__ import annotations

from backend.errors import BackendError


class AlertingError(BackendError):
    """Root of the alerting errors."""


class AlertNotFound(AlertingError):
    def __init__(self, alert_id: int) -> None:
        self.alert_id = alert_id
        super().__init__(f"no alert {alert_id}")


class InvalidTransition(AlertingError):
    """E.g. kvittering on a resolved alert."""


class InvalidThreshold(AlertingError):
    """An override or programme default that does not fit its rule."""


class InvalidPlan(AlertingError):
    """A monitoring plan or passive interval that does not make sense."""
