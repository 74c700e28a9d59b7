"""What every HTTP provider shares: error translation and SSE parsing.

`map_transport_errors` turns httpx's exceptions into the gateway's tree
(most specific first, like httpx's own `map_httpcore_exceptions`), also
where the client's transport is aiohttp (`factory.http_client`), whose
errors httpx-aiohttp maps only in part;
`error_from_response` turns a provider's non-2xx answer into one, keeping
the provider's message but never its headers (which may echo credentials);
a 401 or 403 is the operator's key being refused, and its body is never
kept (providers quote part of the key in it): `credentials_rejected` says
which provider refused and which variable the operator must check, nothing
of the key (code `provider_auth_failed`, a 502 to the client);
`sse_batches` parses a Server-Sent Events body incrementally, the events of one read together.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp.transport import AiohttpResponseStream, AiohttpTransport, map_aiohttp_exceptions

from orchestrator.errors import (
    InvalidRequest,
    OrchestratorError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

MAX_RETRY_AFTER_S = 600.0


def json_body(body: dict[str, Any]) -> bytes:
    """The upstream request's JSON; a number JSON has no room for (1e400 parses as infinity) is the
    client's mistake, a 400, not a failure of the route."""
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        raise InvalidRequest("A number in the request is too large to send on as JSON.", code="invalid_value") from None


@contextlib.contextmanager
def map_transport_errors(provider: str) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as e:
        cause = e.__cause__
        if isinstance(cause, aiohttp.ClientError) and not isinstance(cause, TimeoutError):
            # httpx-aiohttp maps every aiohttp.ClientConnectionError (refused, reset, closed
            # before answering, DNS) to ConnectTimeout: a failed connection, not a slow one.
            raise UpstreamUnavailable(f"{provider}: connection failed ({type(cause).__name__}).") from None
        raise UpstreamTimeout(f"{provider}: timed out ({type(e).__name__}).") from None
    except (httpx.NetworkError, httpx.RemoteProtocolError) as e:
        raise UpstreamUnavailable(f"{provider}: connection failed ({type(e).__name__}).") from None
    except aiohttp.ClientError as e:
        # What httpx-aiohttp leaves unmapped: a response that is not valid HTTP (ClientResponseError), ...
        raise UpstreamUnavailable(f"{provider}: connection failed ({type(e).__name__}).") from None


class StreamedPost:
    """One provider endpoint's streamed POST: its URL, headers and timeouts made once, not merged
    anew with the client's defaults for every request.

    `send(content)` yields the response, streamed, and closes it on the way out. Where the client's
    transport for the URL is aiohttp's (`factory.http_client`) with no proxy, and the client has no
    event hooks, the request goes to the aiohttp session straight, as `httpx_aiohttp` would send it,
    without an `httpx.Request` (its URL, headers and body prepared per request) or the transport's
    conversions of them; its errors are mapped the same way (`map_aiohttp_exceptions`). Otherwise
    (a proxy from the environment, a traced gateway's `traceparent` hook, another transport) it goes
    through httpx (`sent`).
    """

    def __init__(self, client: httpx.AsyncClient, url: str, headers: Mapping[str, str]):
        self._client = client
        self._url = httpx.URL(url)
        self._headers = httpx.Headers({**client.headers, **headers})
        self._extensions = {"timeout": client.timeout.as_dict()}
        transport = client._transport_for_url(self._url)
        self._direct = transport if isinstance(transport, AiohttpTransport) and transport.proxy is None else None
        self._text_url = str(self._url)
        self._direct_headers = dict(self._headers.multi_items())
        t = client.timeout
        self._timeout = aiohttp.ClientTimeout(sock_connect=t.connect, sock_read=t.read, connect=t.pool)

    def send(
        self, content: bytes, headers: Mapping[str, str] | None = None
    ) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
        """The POST of `content`, with `headers` (this request's own: a client's betas) besides the endpoint's."""
        hooks = self._client.event_hooks
        if self._direct is None or hooks["request"] or hooks["response"]:
            merged = httpx.Headers({**self._headers, **headers}) if headers else self._headers
            request = httpx.Request("POST", self._url, content=content, headers=merged, extensions=self._extensions)
            return sent(self._client, request)
        return self._sent_direct(self._direct, content, {**self._direct_headers, **headers} if headers else None)

    @contextlib.asynccontextmanager
    async def _sent_direct(
        self, transport: AiohttpTransport, content: bytes, headers: dict[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        if self._client.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        session = transport.client
        if not isinstance(session, aiohttp.ClientSession):
            session = transport.client = transport.get_client()
        with map_aiohttp_exceptions():
            upstream = await session.request(
                "POST", self._text_url, headers=headers or self._direct_headers, data=content, allow_redirects=False,
                auto_decompress=False, compress=False, timeout=self._timeout,
            ).__aenter__()  # fmt: skip
        response = httpx.Response(upstream.status, headers=upstream.raw_headers, stream=AiohttpResponseStream(upstream))
        try:
            yield response
        finally:
            await response.aclose()


@contextlib.asynccontextmanager
async def sent(client: httpx.AsyncClient, request: httpx.Request) -> AsyncIterator[httpx.Response]:
    """`client.stream(...)` for a request built already, without the client's layers that a provider's
    request never uses (auth flows; redirects, which are never followed; cookies, which `ProviderClient`
    drops; elapsed-time bookkeeping): the transport for its URL (a proxy mounted from the environment
    included) and the client's event hooks (the `traceparent` of a traced gateway). The response is
    streamed, and closed on the way out."""
    if client.is_closed:
        raise RuntimeError("Cannot send a request, as the client has been closed.")
    for hook in client.event_hooks["request"]:
        await hook(request)
    response = await client._transport_for_url(request.url).handle_async_request(request)
    response.request = request
    try:
        for hook in client.event_hooks["response"]:
            await hook(response)
        yield response
    finally:
        await response.aclose()


def body_pieces(response: httpx.Response) -> AsyncIterator[bytes]:
    """A streamed response's body as its bytes arrive. Not content-encoded (what providers send SSE
    as), straight from the transport's stream: httpx's `aiter_bytes` would pass every piece through
    two more generators (its decoder and chunkers)."""
    encoding = response.headers.get("content-encoding")
    if (encoding is None or encoding.strip().lower() == "identity") and isinstance(
        response.stream, httpx.AsyncByteStream
    ):
        return aiter(response.stream)
    return response.aiter_bytes()


def _seconds(value: str, scale: float = 1.0) -> float | None:
    """A number of seconds a provider sent, within [0, MAX_RETRY_AFTER_S]; None if it isn't a number
    (NaN included: `min`/`max` let it through, and it broke every use of it later)."""
    try:
        seconds = float(value) * scale
    except ValueError:
        return None
    return None if math.isnan(seconds) else min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


ERROR_BODY_BYTES = 64 * 1024  # of an error answer, what is read: its message is cut to 1,000 characters anyway


async def error_body(response: httpx.Response, limit: int = ERROR_BODY_BYTES) -> bytes:
    """The start of a non-2xx answer's body, no more than `limit` bytes of it: a provider (or a proxy) that
    answers an error with megabytes costs the gateway no more memory than one that answers a line.
    The rest is left unread (the response is closed on the way out, its connection not reused)."""
    read = bytearray()
    async for piece in body_pieces(response):
        read += piece
        if len(read) >= limit:
            break
    return bytes(read[:limit])


def retry_after_s(headers: httpx.Headers) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    if (ms := headers.get("retry-after-ms")) is not None and (seconds := _seconds(ms, 0.001)) is not None:
        return seconds
    value = headers.get("retry-after")
    if value is None:
        return None
    if (seconds := _seconds(value)) is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(when - time.time(), 0.0), MAX_RETRY_AFTER_S)


def _message(body: bytes) -> tuple[str, str | None, str | None]:
    """(message, code, type) from an OpenAI- or Anthropic-shaped error body."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace").strip()
        return (text[:300] or "no details"), None, None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        code = err.get("code")
        return str(err.get("message") or "no details")[:1000], (str(code) if code else None), err.get("type")
    if isinstance(err, str):
        return err[:1000], None, None
    return "no details", None, None


def credentials_rejected(provider: str, status: int, key_env: str | None = None) -> UpstreamRejected:
    """The error for a provider refusing the operator's key: no word of the provider's own."""
    where = key_env or "the provider's API key"
    return UpstreamRejected(
        f"{provider} rejected the gateway's credentials ({status}); the operator must check {where}.",
        upstream_status=status,
        code="provider_auth_failed",
    )


def error_from_response(
    provider: str, status: int, headers: httpx.Headers, body: bytes, *, key_env: str | None = None
) -> UpstreamError:
    """The gateway's error for a provider's non-2xx answer; `key_env` names the variable holding its key."""
    if status in (401, 403):
        return credentials_rejected(provider, status, key_env)  # the body may quote the key: never read
    message, code, kind = _message(body)
    text = f"{provider} answered {status}: {message}"
    if status == 429 and (code == "insufficient_quota" or kind == "insufficient_quota"):
        return UpstreamRejected(text, upstream_status=status, code="insufficient_quota")
    if status == 429:
        return UpstreamRateLimited(text, retry_after=retry_after_s(headers))
    if status in (408, 409):
        return UpstreamUnavailable(text, retry_after=retry_after_s(headers))
    if 400 <= status < 500:
        return UpstreamRejected(text, upstream_status=status, code=code)
    return UpstreamUnavailable(text, retry_after=retry_after_s(headers))


def redact(error: OrchestratorError, secret: str) -> None:
    """The provider's key taken out of an error's message: a provider (or a proxy in front of it) may quote
    the request's headers in any error, and its text is relayed to the client. A key cut off where the
    message was shortened is taken out too (its start, 4 characters or more, at the message's end)."""
    if not secret:
        return
    message = error.message.replace(secret, "[redacted]")
    for n in range(min(len(secret) - 1, len(message)), 3, -1):
        if message.endswith(secret[:n]):
            message = message[:-n] + "[redacted]"
            break
    if message != error.message:
        error.message = message
        error.args = (message,)


@dataclass(frozen=True)
class SSEEvent:
    event: str | None
    data: str


async def sse_batches(body: AsyncIterator[bytes]) -> AsyncIterator[list[SSEEvent]]:
    """Parse a Server-Sent Events body into events, as its bytes arrive in pieces of any size: the events
    each piece completes, together (a piece that completes none yields nothing).

    Lines end in LF, CRLF or CR (a CR at the end of one piece and an LF at the start of the
    next are one line end); `data:` lines of one event are joined with newlines; comments and
    unknown fields are skipped; an event the body ends in without a blank line still counts.
    Bytes, not text: no decoder or line splitter runs per piece, only `bytes.splitlines`.
    """
    event: str | None = None
    events: list[SSEEvent] = []
    data: list[bytes] = []
    rest = b""  # the start of a line whose end hasn't arrived
    after_cr = False  # the last piece ended in CR: an LF opening the next one belongs to it
    async for piece in body:
        if after_cr and piece[:1] == b"\n":
            piece = piece[1:]
        buffer = rest + piece if rest else piece
        end = max(buffer.rfind(b"\n"), buffer.rfind(b"\r"))
        if end < 0:
            rest, after_cr = buffer, False
            continue
        complete, rest = buffer[: end + 1], buffer[end + 1 :]
        after_cr = not rest and complete[-1:] == b"\r"
        for line in complete.splitlines():
            if not line:
                if data:
                    events.append(SSEEvent(event, b"\n".join(data).decode("utf-8", "replace")))
                event, data = None, []
                continue
            if line[:1] == b":":
                continue
            field, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if field == b"data":
                data.append(value)
            elif field == b"event":
                event = value.decode("utf-8", "replace")
        if events:
            yield events
            events = []
    if rest:
        field, _, value = rest.partition(b":")
        if field == b"data":
            data.append(value[1:] if value[:1] == b" " else value)
    if data:
        yield [SSEEvent(event, b"\n".join(data).decode("utf-8", "replace"))]
