"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_openai import FakeOpenAI


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started fake OpenAI server on 127.0.0.1 that accepts the key "sk-test"."""
    with FakeOpenAI() as server:
        yield server


# Real redis-server processes for the queue tests (see redis_server.py).
from redis_server import durable_redis_server, redis_server  # noqa: E402, F401
