"""Length-prefixed framing (issue 5, item 1): scripted in-memory streams show exactly which bytes
the reader asks for, that an oversized header is refused before any body byte is read, and that
the writer coalesces queued frames into one send_all."""

from __future__ import annotations

import pytest
import trio

from pbft.runtime.framing import (
    FrameCounters,
    FrameReader,
    FrameTooLargeError,
    FrameWriter,
    TruncatedFrameError,
    pack_frames,
)


class ScriptedStream(trio.abc.ReceiveStream):
    """Returns the given chunks one per receive_some (then EOF) and records every request.

    Reading past the script fails the test: a reader that asks for more than it needs hangs
    here instead of silently succeeding."""

    def __init__(self, chunks: list[bytes], *, then_block: bool = False) -> None:
        self.chunks = list(chunks)
        self.then_block = then_block
        self.requests: list[int | None] = []
        self.bytes_given = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        self.requests.append(max_bytes)
        if not self.chunks:
            if self.then_block:
                await trio.sleep_forever()
            return b""
        chunk = self.chunks.pop(0)
        if max_bytes is not None and len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            self.chunks.insert(0, rest)
        self.bytes_given += len(chunk)
        return chunk

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class RecordingSendStream(trio.abc.SendStream):
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def send_all(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.writes.append(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def read_all(reader: FrameReader) -> list[bytes]:
    return [body async for body in reader]


@pytest.mark.trio
async def test_frames_split_anywhere_are_reassembled():
    bodies = [b"", b"a", b"hello world", bytes(range(256)) * 40]
    wire = pack_frames(bodies)
    for chunk_size in (1, 3, 4, 5, 7, 1000, len(wire)):
        chunks = [wire[i : i + chunk_size] for i in range(0, len(wire), chunk_size)]
        counters = FrameCounters()
        reader = FrameReader(ScriptedStream(chunks), 1 << 20, counters=counters)
        assert await read_all(reader) == bodies
        assert counters.frames == len(bodies) and counters.bytes == len(wire)


@pytest.mark.trio
async def test_an_oversized_header_is_refused_before_any_body_byte_is_read():
    # The header claims 1 GiB; the stream would block forever if asked for the body.
    stream = ScriptedStream([(1 << 30).to_bytes(4, "big")], then_block=True)
    reader = FrameReader(stream, frame_bytes_max=4 * 1024 * 1024)
    with trio.fail_after(2):
        with pytest.raises(FrameTooLargeError, match="1073741824"):
            await reader.receive_frame()
    assert stream.requests == [64 * 1024] and stream.bytes_given == 4


@pytest.mark.trio
async def test_the_maximum_is_inclusive():
    wire = pack_frames([b"x" * 100, b"y" * 101])
    reader = FrameReader(ScriptedStream([wire]), frame_bytes_max=100)
    assert await reader.receive_frame() == b"x" * 100
    with pytest.raises(FrameTooLargeError):
        await reader.receive_frame()


@pytest.mark.trio
@pytest.mark.parametrize("cut", [1, 3, 4, 5, 50])
async def test_end_of_stream_inside_a_frame_is_a_truncated_frame(cut):
    wire = pack_frames([b"complete"]) + pack_frames([b"z" * 100])[:cut]
    reader = FrameReader(ScriptedStream([wire]), 1000)
    assert await reader.receive_frame() == b"complete"
    with pytest.raises(TruncatedFrameError):
        await reader.receive_frame()


@pytest.mark.trio
async def test_end_of_stream_between_frames_is_clean():
    reader = FrameReader(ScriptedStream([pack_frames([b"one"])]), 1000)
    assert await reader.receive_frame() == b"one"
    assert await reader.receive_frame() is None


@pytest.mark.trio
async def test_a_large_frame_is_read_in_few_calls():
    body = b"b" * 1_000_000
    stream = ScriptedStream([pack_frames([body])])
    reader = FrameReader(stream, 2_000_000, receive_bytes_max=4096)
    assert await reader.receive_frame() == body
    # Once the header is in, the reader asks for the whole rest of the body at once.
    assert len(stream.requests) <= 3


@pytest.mark.trio
async def test_the_writer_sends_everything_queued_in_one_send_all():
    stream = RecordingSendStream()
    counters = FrameCounters()
    writer = FrameWriter(stream, counters=counters)
    queue_send, queue_receive = trio.open_memory_channel[bytes](1000)
    bodies = [f"frame {i}".encode() for i in range(500)]
    for body in bodies:
        queue_send.send_nowait(body)
    queue_send.close()
    await writer.send_queued(queue_receive)
    assert len(stream.writes) == 1 and counters.calls == 1 and counters.frames == 500
    reader = FrameReader(ScriptedStream(stream.writes), 1000)
    assert await read_all(reader) == bodies


@pytest.mark.trio
async def test_the_writer_bounds_one_send_all():
    stream = RecordingSendStream()
    writer = FrameWriter(stream, coalesce_bytes_max=1000)
    queue_send, queue_receive = trio.open_memory_channel[bytes](1000)
    for _ in range(100):
        queue_send.send_nowait(b"q" * 96)  # 100 bytes on the wire each
    queue_send.close()
    await writer.send_queued(queue_receive)
    assert [len(w) for w in stream.writes] == [1000] * 10
