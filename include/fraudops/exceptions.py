"""The small error hierarchy every fraudops module raises from.

Callers (the CLI, Airflow tasks, the scoring service) catch ``FraudopsError`` to turn a problem
into a clear message; ``PermanentError`` subclasses mark failures a retry cannot fix, so Airflow
tasks convert them into fail-without-retry.
"""

from __future__ import annotations


class FraudopsError(Exception):
    """Base class of every error fraudops raises on purpose."""


class PermanentError(FraudopsError):
    """A failure that retrying will not fix (bad input, broken contract, invalid artifact)."""


class ConfigError(PermanentError):
    """A setting is missing or malformed."""


class ServiceError(FraudopsError):
    """A local or remote service could not be started, reached or stopped."""

    def __init__(self, service: str, message: str, log_file: str | None = None) -> None:
        self.service = service
        self.log_file = log_file
        detail = f"{service}: {message}"
        if log_file:
            detail += f" (see log: {log_file})"
        super().__init__(detail)


class WarehouseError(FraudopsError):
    """A warehouse (BigQuery) operation failed."""


class WarehouseUnavailable(WarehouseError):
    """The warehouse could not be reached; writers spool and replay."""


class DataValidationError(PermanentError):
    """Input data broke a contract (schema, nulls, ranges, volume)."""


class FeatureSpecError(PermanentError):
    """A model asked for features the store cannot produce exactly (missing or mismatched)."""


class ArtifactError(PermanentError):
    """A model artifact is broken, inconsistent or too slow to serve."""


class LatencyBudgetError(ArtifactError):
    """The artifact's single-row p99 latency exceeded its budget where it was measured.

    Unlike the other artifact errors, this one depends on the machine's load at the time of the
    measurement: a busy host can make a fine model look slow. Callers that measure on a shared,
    busy host (the scoring service at load time) measure again later before refusing it for good.
    """

    def __init__(self, p99_ms: float, budget_ms: float, rounds: int = 1) -> None:
        self.p99_ms = p99_ms
        self.budget_ms = budget_ms
        self.rounds = rounds
        within = "" if rounds <= 1 else f" (best of {rounds} rounds)"
        super().__init__(
            f"single-row p99 latency {p99_ms:.4f} ms exceeds the budget of {budget_ms:g} ms{within}"
        )


class IntakeError(PermanentError):
    """An uploaded model was refused by model intake; ``check`` names the check that refused it."""

    def __init__(self, check: str, message: str) -> None:
        self.check = check
        self.reason = message
        super().__init__(f"{check}: {message}")
