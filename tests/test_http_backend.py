"""The asyncio network backend under httpx2, against real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpcore2
import httpx2
import pytest
import trustme

from esl_assets.client import create_client
from esl_assets.generate import AssetApi
from esl_assets.http_backend import (
    COALESCE_LIMIT,
    HIGH_WATER,
    AsyncioBackend,
    _Protocol,
    _Stream,
    install_backend,
)
from esl_assets.jobs import AssetKind, Job
from esl_assets.settings import Settings

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Server:
    """A tiny HTTP/1.1 server that counts the connections it accepted."""

    url: str
    connections: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """Read one request (headers and Content-Length body); None at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length)


def response(body: bytes, *, close: bool = False) -> bytes:
    connection = b"close" if close else b"keep-alive"
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: " + connection + b"\r\n\r\n" + body
    )


def echo_handler(server: Server) -> Handler:
    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        server.connections += 1
        server.writers.append(writer)
        try:
            while (body := await read_request(reader)) is not None:
                writer.write(response(b"echo:" + body))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return handle


async def start(
    handler_for: Callable[[Server], Handler],
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[Server, asyncio.Server]:
    server = Server(url="")
    listener = await asyncio.start_server(
        handler_for(server), "127.0.0.1", 0, ssl=ssl_context
    )
    port = listener.sockets[0].getsockname()[1]
    scheme = "https" if ssl_context is not None else "http"
    host = "localhost" if ssl_context is not None else "127.0.0.1"
    server.url = f"{scheme}://{host}:{port}/"
    return server, listener


def fast_client(**transport_options: object) -> httpx2.AsyncClient:
    transport = httpx2.AsyncHTTPTransport(**transport_options)  # type: ignore[arg-type]
    assert install_backend(transport)
    return httpx2.AsyncClient(transport=transport)


@pytest.fixture
async def echo_server() -> AsyncIterator[Server]:
    server, listener = await start(echo_handler)
    async with listener:
        yield server


async def test_requests_reuse_one_keep_alive_connection(echo_server: Server) -> None:
    async with fast_client() as client:
        for number in range(20):
            reply = await client.post(echo_server.url, content=f"n{number}".encode())
            assert reply.status_code == 200
            assert reply.content == f"echo:n{number}".encode()
    assert echo_server.connections == 1


async def test_concurrent_requests_get_their_own_answers(echo_server: Server) -> None:
    async with fast_client(limits=httpx2.Limits(max_connections=8)) as client:
        replies = await asyncio.gather(
            *(
                client.post(echo_server.url, content=f"job{n}".encode())
                for n in range(64)
            )
        )
    assert [reply.content for reply in replies] == [
        f"echo:job{n}".encode() for n in range(64)
    ]
    assert 1 < echo_server.connections <= 8


async def test_connection_closed_by_server_while_idle_is_replaced(
    echo_server: Server,
) -> None:
    async with fast_client() as client:
        assert (await client.post(echo_server.url, content=b"a")).content == b"echo:a"
        # The server ends the idle keep-alive connection; the pool must see
        # that without a request failing.
        echo_server.writers[0].close()
        await asyncio.sleep(0.05)
        assert (await client.post(echo_server.url, content=b"b")).content == b"echo:b"
    assert echo_server.connections == 2


async def test_large_body_passes_the_high_water_mark_intact() -> None:
    body = bytes(range(256)) * ((3 * HIGH_WATER) // 256 + 7)

    def handler_for(server: Server) -> Handler:
        async def handle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            server.connections += 1
            await read_request(reader)
            writer.write(response(body))
            await writer.drain()
            writer.close()

        return handle

    server, listener = await start(handler_for)
    async with listener, fast_client() as client:
        async with client.stream("POST", server.url, content=b"x") as reply:
            # While nothing reads, the buffer fills past the mark and the
            # socket's reader pauses; reading must start it again.
            await asyncio.sleep(0.3)
            received = await reply.aread()
    assert len(received) == len(body)
    assert received == body


async def test_large_request_body_is_sent_whole(echo_server: Server) -> None:
    payload = b"p" * (4 * HIGH_WATER)
    async with fast_client() as client:
        reply = await client.post(echo_server.url, content=payload)
    assert reply.content == b"echo:" + payload


async def test_slow_server_raises_read_timeout() -> None:
    def handler_for(server: Server) -> Handler:
        async def handle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await read_request(reader)
            await asyncio.sleep(5)
            writer.close()

        return handle

    server, listener = await start(handler_for)
    async with listener, fast_client() as client:
        with pytest.raises(httpx2.ReadTimeout):
            await client.post(server.url, content=b"x", timeout=0.2)


async def test_server_closing_mid_response_raises_a_transport_error() -> None:
    def handler_for(server: Server) -> Handler:
        async def handle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nshort")
            await writer.drain()
            writer.close()

        return handle

    server, listener = await start(handler_for)
    async with listener, fast_client() as client:
        with pytest.raises(httpx2.TransportError):
            await client.post(server.url, content=b"x")


async def test_refused_connection_raises_connect_error() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    async with fast_client() as client:
        with pytest.raises(httpx2.ConnectError):
            await client.post(f"http://127.0.0.1:{port}/", content=b"x")


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


async def test_tls_request_verifies_the_server(
    certificate_authority: trustme.CA,
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    certificate_authority.configure_trust(client_context)

    server, listener = await start(echo_handler, server_context)
    async with listener, fast_client(verify=client_context) as client:
        for number in range(3):
            reply = await client.post(server.url, content=f"tls{number}".encode())
            assert reply.content == f"echo:tls{number}".encode()
    assert server.connections == 1


async def test_tls_with_an_unknown_authority_fails_to_connect(
    certificate_authority: trustme.CA,
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("localhost").configure_cert(server_context)

    server, listener = await start(echo_handler, server_context)
    async with listener, fast_client(verify=ssl.create_default_context()) as client:
        with pytest.raises(httpx2.ConnectError):
            await client.post(server.url, content=b"x")


async def test_client_of_a_run_uses_this_backend() -> None:
    # A later httpx2 could rename the pool attribute; the fallback is silent
    # at run time, so this test is what notices.
    client = create_client(
        Settings(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    )
    async with client:
        url = httpx2.URL("http://127.0.0.1:9/v1/audio/speech")
        transport = client._client._transport_for_url(url)
        pool = transport._pool  # type: ignore[attr-defined]
        assert isinstance(pool, httpcore2.AsyncConnectionPool)
        assert isinstance(pool._network_backend, AsyncioBackend)


def test_install_backend_refuses_a_transport_without_a_pool() -> None:
    class NoPool(httpx2.AsyncHTTPTransport):
        def __init__(self) -> None:
            pass

    assert install_backend(NoPool()) is False


class RecordingTransport(asyncio.Transport):
    """A transport that keeps what it was given to send."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return False


def recording_stream() -> tuple[_Stream, _Protocol, RecordingTransport]:
    transport = RecordingTransport()
    protocol = _Protocol()
    protocol.connection_made(transport)
    return _Stream(transport, protocol), protocol, transport


async def test_stream_sends_request_once() -> None:
    stream, protocol, transport = recording_stream()
    await stream.write(b"POST / HTTP/1.1\r\n\r\n")
    await stream.write(b"body")
    assert transport.sent == []
    protocol.data_received(b"HTTP/1.1 200 OK\r\n")
    assert await stream.read(1024) == b"HTTP/1.1 200 OK\r\n"
    assert transport.sent == [b"POST / HTTP/1.1\r\n\r\nbody"]


async def test_stream_sends_large_write_early() -> None:
    stream, _, transport = recording_stream()
    await stream.write(b"h" * 10)
    await stream.write(b"b" * COALESCE_LIMIT)
    assert transport.sent == [b"h" * 10 + b"b" * COALESCE_LIMIT]


async def test_client_of_a_run_honours_the_proxy_variables(
    echo_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", echo_server.url)
    settings = Settings(api_key="sk-test", base_url="http://api.invalid/v1")
    client = create_client(settings)
    job = Job(
        kind=AssetKind.WORD,
        uuid="u",
        definition_id="0",
        file="word_u_0.aac",
        text="apple",
        params={"model": "tts-1", "voice": "alloy"},
    )
    async with client:
        generated = await AssetApi(client).generate(
            job, http_timeout=httpx2.Timeout(5.0)
        )
    # The echo server played the proxy: it got the request for api.invalid.
    assert echo_server.connections == 1
    assert generated.data.startswith(b'echo:{"input": "apple"')
