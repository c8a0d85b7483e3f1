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
