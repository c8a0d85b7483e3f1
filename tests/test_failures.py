"""The failure policy: which errors retry, fail one job, or stop the run."""

from __future__ import annotations

import httpx2
import openai
import pytest

from esl_assets.failures import (
    FailureKind,
    classify,
    parse_reset_duration,
    parse_retry_after,
)

REQUEST = httpx2.Request("POST", "https://api.test/v1/audio/speech")


def status_error(
    status: int, code: str | None, message: str, headers: dict[str, str] | None = None
) -> openai.APIStatusError:
    body = {"message": message, "type": "x", "param": None, "code": code}
    response = httpx2.Response(
        status, request=REQUEST, headers=headers or {}, json={"error": body}
    )
    return openai.APIStatusError(message, response=response, body=body)


@pytest.mark.parametrize(
    ("status", "code", "message", "kind", "reason"),
    [
        (
            429,
            "rate_limit_exceeded",
            "Rate limit reached",
            FailureKind.TRANSIENT,
            "rate_limited",
        ),
        (
            429,
            "insufficient_quota",
            "You exceeded your current quota",
            FailureKind.FATAL,
            "insufficient_quota",
        ),
        (
            429,
            "rate_limit_exceeded",
            "Limit: 0 / min. Please try again",
            FailureKind.FATAL,
            "rate_limit_zero",
        ),
        (500, None, "server error", FailureKind.TRANSIENT, "http_500"),
        (503, None, "overloaded", FailureKind.TRANSIENT, "http_503"),
        (408, None, "timeout", FailureKind.TRANSIENT, "http_408"),
        (409, None, "conflict", FailureKind.TRANSIENT, "http_409"),
        (
            400,
            "moderation_blocked",
            "Your request was rejected by the safety system",
            FailureKind.JOB,
            "moderation_blocked",
        ),
        (
            400,
            "content_policy_violation",
            "blocked",
            FailureKind.JOB,
            "content_policy_violation",
        ),
        (400, "invalid_value", "Invalid value for size", FailureKind.JOB, "http_400"),
        (413, None, "too large", FailureKind.JOB, "http_413"),
        (401, "invalid_api_key", "Incorrect API key", FailureKind.FATAL, "http_401"),
        (403, None, "Project may not use this model", FailureKind.FATAL, "http_403"),
        (
            404,
            "model_not_found",
            "The model 'x' does not exist",
            FailureKind.FATAL,
            "model_not_found",
        ),
        (
            404,
            None,
            "Invalid URL (POST /v1/nope)",
            FailureKind.FATAL,
            "endpoint_not_found",
        ),
    ],
)
def test_status_policy(
    status: int, code: str | None, message: str, kind: FailureKind, reason: str
) -> None:
    failure = classify(status_error(status, code, message))
    assert failure.kind is kind
    assert failure.reason == reason
    assert failure.status_code == status
    assert failure.message == message


def test_transport_errors_are_transient() -> None:
    timeout = classify(openai.APITimeoutError(request=REQUEST))
    assert timeout.kind is FailureKind.TRANSIENT
    assert timeout.reason == "timeout"
    dropped = classify(httpx2.RemoteProtocolError("peer closed connection"))
    assert dropped.kind is FailureKind.TRANSIENT
    assert dropped.reason == "connection"
    pool = classify(httpx2.PoolTimeout("no connection"))
    assert pool.reason == "timeout"


def test_unknown_errors_are_not_swallowed() -> None:
    with pytest.raises(TypeError):
        classify(ValueError("a bug"))


def test_retry_after_headers() -> None:
    assert parse_retry_after(httpx2.Headers({"retry-after-ms": "1500"})) == 1.5
    assert parse_retry_after(httpx2.Headers({"retry-after": "2"})) == 2.0
    both = httpx2.Headers({"retry-after-ms": "250", "retry-after": "9"})
    assert parse_retry_after(both) == 0.25
    assert parse_retry_after(httpx2.Headers({"retry-after": "soon"})) is None
    assert parse_retry_after(httpx2.Headers()) is None
    failure = classify(
        status_error(429, "rate_limit_exceeded", "slow", {"retry-after": "3"})
    )
    assert failure.retry_after_s == 3.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("120ms", 0.12),
        ("1m1.5s", 61.5),
        ("", None),
        ("x", None),
    ],
)
def test_reset_durations(text: str, seconds: float | None) -> None:
    assert parse_reset_duration(text) == seconds
