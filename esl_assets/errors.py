"""Exceptions raised by esl-assets.

Every exception derives from ``EslAssetsError``, so a caller can catch all of
them at once::

    EslAssetsError
    ├── ConfigurationError   invalid option, retired model, missing key (exit 2)
    ├── DictionaryError      unreadable or unknown dictionary file (exit 2)
    ├── QueueError           Redis unreachable or queue state invalid (exit 2)
    ├── ResumeError          nothing to resume, or an option changes its jobs (exit 2)
    └── AccountError         401, 403, unknown model, exhausted quota (exit 3)

Failures of one job (a refused prompt, a server error after the last attempt)
are not exceptions: they become the job's ``error`` result.
"""

from __future__ import annotations


class EslAssetsError(Exception):
    """Base class of every error this package raises on purpose."""

    #: Process exit code the CLI uses for this error.
    exit_code = 2


class ConfigurationError(EslAssetsError):
    """Raised when an option or environment variable is invalid or missing."""


class DictionaryError(EslAssetsError):
    """Raised when a dictionary file cannot be read as any supported format."""


class QueueError(EslAssetsError):
    """Raised when the Redis queue is unreachable or in an unexpected state."""


class ResumeError(EslAssetsError):
    """Raised when ``--resume`` has no run to continue or an option changes its jobs."""


class AccountError(EslAssetsError):
    """Raised when the API refuses the account itself, so no job can succeed.

    Examples are an invalid key (401), a forbidden project (403), an unknown
    model (404) and an exhausted quota (429 ``insufficient_quota``).
    """

    exit_code = 3

    def __init__(self, message: str, *, report: object | None = None) -> None:
        super().__init__(message)
        #: The ``BuildReport`` of the stopped run, when there is one.
        self.report = report
