"""The SSE parser every HTTP provider reads its streams with, fed bytes cut anywhere."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest

from orchestrator.providers.http import SSEEvent, body_pieces, sse_batches

BODY = (
    b": keep-alive comment\n"
    b"event: message_start\n"
    b'data: {"a": 1}\n'
    b"\n"
    b"data: first line\n"
    b"data:second line\n"
    b"id: 7\n"
    b"\n"
    b"data: [DONE]\n"
    b"\n"
)
EXPECTED = [
    SSEEvent("message_start", '{"a": 1}'),
    SSEEvent(None, "first line\nsecond line"),
    SSEEvent(None, "[DONE]"),
]


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def parse(*parts: bytes) -> list[SSEEvent]:
    return [e async for batch in sse_batches(pieces(*parts)) for e in batch]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
async def test_every_cut_point_gives_the_same_events(newline: bytes) -> None:
    body = BODY.replace(b"\n", newline)
    for cut in range(len(body) + 1):
        assert await parse(body[:cut], body[cut:]) == EXPECTED, (newline, cut)


async def test_one_byte_at_a_time_with_crlf() -> None:
    body = BODY.replace(b"\n", b"\r\n")
    assert await parse(*(body[i : i + 1] for i in range(len(body)))) == EXPECTED


async def test_a_cr_ending_one_piece_and_an_lf_opening_the_next_are_one_line_end() -> None:
    # Were they two, the empty line between would end the event after its first data line.
    assert await parse(b"data: a\r", b"\ndata: b\r\n\r\n") == [SSEEvent(None, "a\nb")]


async def test_the_events_one_piece_completes_come_together() -> None:
    # The provider relays them so: one write to the client for what arrived in one read.
    reads = [b"data: a\n\ndata: b\n\ndata: c", b"\n\n", b": a comment\n", b"data: d\n\ndata: e"]
    batches = [[e.data for e in batch] async for batch in sse_batches(pieces(*reads))]
    assert batches == [["a", "b"], ["c"], ["d"], ["e"]]


async def test_an_event_the_body_ends_in_still_counts() -> None:
    assert await parse(b"data: x\n\ndata: tail") == [SSEEvent(None, "x"), SSEEvent(None, "tail")]


async def test_utf8_split_inside_a_character() -> None:
    text = 'data: {"content": "naïve — 東京"}\n\n'.encode()
    cut = text.index("東".encode()) + 1
    assert await parse(text[:cut], text[cut:]) == [SSEEvent(None, '{"content": "naïve — 東京"}')]


async def test_blank_lines_without_data_yield_nothing() -> None:
    assert await parse(b"\n\n: ping\n\nevent: ping\n\n") == []


class _Body(httpx.AsyncByteStream):
    def __init__(self, *parts: bytes):
        self.parts = parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part


@pytest.mark.parametrize("encoding", [None, "identity", "gzip", "deflate"])
async def test_a_streamed_body_arrives_decoded_whatever_its_content_encoding(encoding: str | None) -> None:
    raw = {None: BODY, "identity": BODY, "gzip": gzip.compress(BODY), "deflate": zlib.compress(BODY)}[encoding]
    headers = {"content-type": "text/event-stream"} | ({"content-encoding": encoding} if encoding else {})
    response = httpx.Response(200, headers=headers, stream=_Body(raw[:7], raw[7:40], raw[40:]))
    assert [e async for batch in sse_batches(body_pieces(response)) for e in batch] == EXPECTED


def test_redact_takes_a_key_out_whole_or_cut_off_at_the_end() -> None:
    from orchestrator.errors import UpstreamUnavailable
    from orchestrator.providers.http import redact

    secret = "sk-ant-SECRET-Xk7v"
    e = UpstreamUnavailable(f"p: key {secret} refused; " + ("x" * 20) + secret[:9])
    redact(e, secret)
    assert secret[:9] not in e.message and e.message == "p: key [redacted] refused; " + "x" * 20 + "[redacted]"
    assert str(e) == e.message


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "nan"}, None),  # a 500 with a traceback on every door before
        ({"retry-after-ms": "NaN", "retry-after": "3"}, 3.0),
        ({"retry-after": "inf"}, 600.0),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "soon"}, None),
    ],
)
def test_retry_after_reads_numbers_and_ignores_what_isnt_one(headers: dict[str, str], seconds: float | None) -> None:
    from orchestrator.providers.http import retry_after_s

    assert retry_after_s(httpx.Headers(headers)) == seconds
