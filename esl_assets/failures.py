"""Decide what a failed request means: retry it, fail the job, or stop the run.

This is the only place that maps API and transport errors to a policy, so the
retry loop, the queue worker and the tests all agree:

- ``TRANSIENT``: 408, 409, 429 ``rate_limit_exceeded``, 5xx, timeouts,
  connection errors and bodies cut off mid-stream. Retried with backoff.
- ``JOB``: 400, 413, 422 and content-policy refusals. The job ends in
  ``error`` with the API's message; other jobs go on.
- ``FATAL``: 401, 403, 404 (unknown model), 429 ``insufficient_quota`` and a
  429 whose limit is 0. No request can succeed, so the run stops.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from dataclasses import dataclass
from enum import StrEnum

import httpx2
import openai


class FailureKind(StrEnum):
    """Policy for a failed request."""

    #: Worth another attempt after a delay.
    TRANSIENT = "transient"
    #: This job cannot succeed as asked; other jobs can.
    JOB = "job"
    #: No job can succeed until the user acts (key, billing, model).
    FATAL = "fatal"


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified failure of one request."""

    kind: FailureKind
    #: Short code for results and counters: ``http_503``, ``timeout``,
    #: ``moderation_blocked``, ``insufficient_quota``, ...
    reason: str
    message: str
    status_code: int | None = None
    error_code: str | None = None
    #: Delay the server asked for, in seconds, if any.
    retry_after_s: float | None = None

    @property
    def is_rate_limit(self) -> bool:
        return self.status_code == 429 and self.kind is FailureKind.TRANSIENT


_BLOCKED_CODES = {"moderation_blocked", "content_policy_violation", "content_filter"}
_QUOTA_CODES = {
    "insufficient_quota",
    "billing_hard_limit_reached",
    "billing_not_active",
}
_LIMIT_ZERO = re.compile(r"\blimit:?\s*0\b|\blimit of 0\b", re.IGNORECASE)


def classify(error: BaseException) -> Failure:
    """Return the policy for ``error`` raised by an API call or a write."""
    if isinstance(error, openai.APIStatusError):
        return _classify_status(error)
    if isinstance(error, openai.APITimeoutError | httpx2.TimeoutException):
        return Failure(FailureKind.TRANSIENT, "timeout", "The request timed out.")
    if isinstance(error, openai.APIConnectionError | httpx2.TransportError):
        cause = error.__cause__ or error
        return Failure(
            FailureKind.TRANSIENT,
            "connection",
            f"Connection failed: {type(cause).__name__}: {cause}".rstrip(": "),
        )
    if isinstance(error, httpx2.StreamError):
        return Failure(FailureKind.TRANSIENT, "connection", f"Stream failed: {error}")
    if isinstance(error, openai.APIResponseValidationError):
        return Failure(FailureKind.TRANSIENT, "bad_response", str(error))
    raise TypeError(f"classify() got an unexpected error type: {error!r}")


def _classify_status(error: openai.APIStatusError) -> Failure:
    status = error.status_code
    code = error.code or _body_value(error.body, "code")
    message = _api_message(error)
    retry_after = parse_retry_after(error.response.headers)

    def failure(kind: FailureKind, reason: str) -> Failure:
        return Failure(kind, reason, message, status, code, retry_after)

    if status == 429:
        if code in _QUOTA_CODES or _body_value(error.body, "type") in _QUOTA_CODES:
            return failure(FailureKind.FATAL, "insufficient_quota")
        if _LIMIT_ZERO.search(message):
            return failure(FailureKind.FATAL, "rate_limit_zero")
        return failure(FailureKind.TRANSIENT, "rate_limited")
    if status in (401, 403):
        return failure(FailureKind.FATAL, f"http_{status}")
    if status == 404:
        # A wrong --base-url also gives 404, with no model in the message.
        if code == "model_not_found" or "model" in message.lower():
            return failure(FailureKind.FATAL, "model_not_found")
        return failure(FailureKind.FATAL, "endpoint_not_found")
    if code in _BLOCKED_CODES or "safety system" in message.lower():
        return failure(FailureKind.JOB, code or "moderation_blocked")
    if status in (408, 409) or status >= 500:
        return failure(FailureKind.TRANSIENT, f"http_{status}")
    return failure(FailureKind.JOB, f"http_{status}")


def _body_value(body: object, key: str) -> str | None:
    if isinstance(body, dict):
        value = body.get(key)
        if value is None and isinstance(body.get("error"), dict):
            value = body["error"].get(key)
        return str(value) if value is not None else None
    return None


def _api_message(error: openai.APIStatusError) -> str:
    """Return the API's own message, without the SDK's 'Error code' prefix."""
    message = _body_value(error.body, "message")
    if message:
        return message
    return f"HTTP {error.status_code} from the API."


def parse_retry_after(headers: httpx2.Headers) -> float | None:
    """Read ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        value = email.utils.mktime_tz(parsed) - time.time()
    if not math.isfinite(value):
        return None
    return max(0.0, value)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset_duration(value: str | None) -> float | None:
    """Parse an ``x-ratelimit-reset-*`` duration such as ``6m0s`` or ``120ms``."""
    if not value:
        return None
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
