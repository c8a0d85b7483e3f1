"""Create the ``AsyncOpenAI`` client of a run.

One client per run, created inside the running event loop and closed at its
end. The SDK's own retries are off (``max_retries=0``) because the executor's
policy decides what to retry, and a second layer would multiply requests.
"""

from __future__ import annotations

import os

import httpx2
from openai import AsyncOpenAI

from .errors import ConfigurationError
from .http_backend import install_backend
from .settings import Settings, environment_source

LOCAL_BASE_URL = "http://local.invalid/v1"
MISSING_KEY_MESSAGE = (
    "OPENAI_API_KEY is not set. Put your key in the environment or in a .env "
    "file in this folder (see .env.example), or try the tool offline with "
    "--provider local."
)


def resolve_api_key(settings: Settings) -> str:
    """Return the API key from the settings or the environment, or raise."""
    key = settings.api_key or os.environ.get("OPENAI_API_KEY", "").strip()
    if not key:
        raise ConfigurationError(MISSING_KEY_MESSAGE)
    return key


def rejected_key_action(settings: Settings) -> str:
    """Say what to do about a rejected key, naming where the key came from.

    The key is the ``api_key`` setting (an argument of ``build()`` or of a
    worker), else OPENAI_API_KEY from the environment or a .env file. The
    message never contains the key.
    """
    if settings.api_key:
        return (
            "The key came from the api_key argument; pass a valid key, or leave "
            "api_key out to use OPENAI_API_KEY, then run again."
        )
    source = environment_source("OPENAI_API_KEY")
    return f"The key came from {source}; set it to a valid key and run again."


def create_client(settings: Settings) -> AsyncOpenAI:
    """Return a client for the configured provider; call it inside the loop."""
    # A few spare connections cover connections that are closing while new
    # ones open; the semaphores bound the requests in flight.
    connections = settings.concurrency + 4
    limits = httpx2.Limits(
        max_connections=connections, max_keepalive_connections=connections
    )
    if settings.provider == "local":
        from .local_provider import LocalTransport

        http_client = httpx2.AsyncClient(transport=LocalTransport(), limits=limits)
        return AsyncOpenAI(
            api_key="local",
            base_url=LOCAL_BASE_URL,
            max_retries=0,
            http_client=http_client,
        )
    transport = httpx2.AsyncHTTPTransport(limits=limits)
    install_backend(transport)
    # A mount, not transport=..., so that httpx2 still routes through the
    # proxies named in HTTPS_PROXY and ALL_PROXY (more specific mounts win).
    http_client = httpx2.AsyncClient(limits=limits, mounts={"all://": transport})
    return AsyncOpenAI(
        api_key=resolve_api_key(settings),
        base_url=settings.base_url or None,
        max_retries=0,
        http_client=http_client,
    )
