"""Length-prefixed frames over a trio byte stream: a 4-byte big-endian length, then the body.

A frame with an empty body is a heartbeat: no message encodes to zero bytes, so the transport
uses it to show a link is alive when it has nothing else to send (`FrameWriter.send_queued`).

`FrameReader` checks the announced length against `frame_bytes_max` as soon as the 4 header
bytes are in, before it asks the stream for any byte of the body, so a header claiming a
gigabyte costs the reader nothing. `FrameWriter` coalesces: everything already queued when it
wakes up goes out in one `send_all` (one TLS record run, one system call), which is what lets
one TLS link go well beyond one `send_all` per message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import trio

__all__ = [
    "HEADER_BYTES",
    "ByteQueue",
    "FrameCounters",
    "FrameReader",
    "FrameTooLargeError",
    "FrameWriter",
    "FramingError",
    "TruncatedFrameError",
    "pack_frames",
]

HEADER_BYTES = 4
#: The header is 4 bytes, so no frame can announce more than this.
_LENGTH_MAX = 2**32 - 1


class FramingError(Exception):
    """The byte stream is not a sequence of acceptable frames. `reason` names the problem for
    statistics and logs; the stream is not worth reading further."""

    reason = "framing_error"


class FrameTooLargeError(FramingError):
    """A header announced a body longer than `frame_bytes_max`; no byte of the body was read."""

    reason = "frame_too_large"


class TruncatedFrameError(FramingError):
    """The stream ended in the middle of a header or a body."""

    reason = "truncated_frame"


@dataclass(slots=True)
class FrameCounters:
    """Running totals one reader or writer adds to; several may share one instance."""

    frames: int = 0
    #: Bytes read from or written to the stream, headers included.
    bytes: int = 0
    #: `send_all` calls (writer) or `receive_some` calls (reader).
    calls: int = 0


def pack_frames(bodies: Sequence[bytes]) -> bytes:
    """The wire bytes of `bodies`, each prefixed with its length. Raises ValueError for a body
    that no 4-byte header can describe (a caller bug: bodies are bounded well below that)."""
    parts: list[bytes] = []
    for body in bodies:
        if len(body) > _LENGTH_MAX:
            raise ValueError(f"a frame body of {len(body)} bytes does not fit a 4-byte header")
        parts.append(len(body).to_bytes(HEADER_BYTES, "big"))
        parts.append(body)
    return b"".join(parts)


class ByteQueue:
    """A FIFO of frame bodies bounded by their total length in bytes (not by their count: one
    frame may be 100 bytes or 4 MiB), for one producer that never waits and one consumer.

    `put_nowait` refuses (returns False) a body that would take the total over `bytes_max`;
    `put_evicting` instead drops the oldest bodies until it fits and returns how many it
    dropped. A body longer than `bytes_max` itself is always refused. `receive` and
    `receive_nowait` behave as a trio memory channel's (`trio.EndOfChannel` once closed and
    empty, `trio.WouldBlock`); putting into a closed queue raises `trio.ClosedResourceError`.
    """

    __slots__ = ("_bodies", "_bytes", "_closed", "_waiter", "bytes_max")

    def __init__(self, bytes_max: int) -> None:
        if bytes_max <= 0:
            raise ValueError("bytes_max must be positive")
        self.bytes_max = bytes_max
        self._bodies: deque[bytes] = deque()
        self._bytes = 0
        self._closed = False
        self._waiter: trio.Event | None = None

    @property
    def bytes(self) -> int:
        """Bytes of the bodies queued now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._bodies)

    def put_nowait(self, body: bytes) -> bool:
        if self._closed:
            raise trio.ClosedResourceError("the queue is closed")
        if self._bytes + len(body) > self.bytes_max:
            return False
        self._append(body)
        return True

    def put_evicting(self, body: bytes) -> int | None:
        """Queue `body`, dropping the oldest bodies as needed; how many were dropped, or None
        (nothing queued) if `body` alone is longer than `bytes_max`."""
        if self._closed:
            raise trio.ClosedResourceError("the queue is closed")
        if len(body) > self.bytes_max:
            return None
        evicted = 0
        bodies = self._bodies
        while self._bytes + len(body) > self.bytes_max:
            self._bytes -= len(bodies.popleft())
            evicted += 1
        self._append(body)
        return evicted

    def _append(self, body: bytes) -> None:
        self._bodies.append(body)
        self._bytes += len(body)
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def receive_nowait(self) -> bytes:
        if self._bodies:
            body = self._bodies.popleft()
            self._bytes -= len(body)
            return body
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                body = self.receive_nowait()
            except trio.WouldBlock:
                if self._waiter is None:
                    self._waiter = trio.Event()
                await self._waiter.wait()
            else:
                # Taken: a cancellation now would lose it, so this checkpoint only yields.
                await trio.lowlevel.cancel_shielded_checkpoint()
                return body

    def close(self) -> None:
        """No more puts; the consumer drains what is queued, then gets `trio.EndOfChannel`."""
        self._closed = True
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None


class FrameReader:
    """Reads frames from `stream` (which the caller owns and closes).

    `receive_frame()` returns the next body, or None when the stream ends cleanly between
    frames. Bad input raises a `FramingError` (`FrameTooLargeError`, `TruncatedFrameError`);
    errors of the stream itself (`trio.BrokenResourceError`, ...) pass through. After an error
    the reader must not be used again.
    """

    __slots__ = ("_buffer", "_counters", "_frame_bytes_max", "_position", "_receive_bytes_max",
                 "_stream")  # fmt: skip

    def __init__(
        self,
        stream: trio.abc.ReceiveStream,
        frame_bytes_max: int,
        *,
        receive_bytes_max: int = 64 * 1024,
        counters: FrameCounters | None = None,
    ) -> None:
        if frame_bytes_max < 0 or receive_bytes_max <= 0:
            raise ValueError("frame_bytes_max must be >= 0 and receive_bytes_max > 0")
        self._stream = stream
        self._frame_bytes_max = frame_bytes_max
        self._receive_bytes_max = receive_bytes_max
        self._counters = counters if counters is not None else FrameCounters()
        self._buffer = bytearray()
        #: Start of the first unconsumed byte in `_buffer`.
        self._position = 0

    @property
    def counters(self) -> FrameCounters:
        return self._counters

    def __aiter__(self) -> FrameReader:
        return self

    async def __anext__(self) -> bytes:
        body = await self.receive_frame()
        if body is None:
            raise StopAsyncIteration
        return body

    async def receive_frame(self) -> bytes | None:
        """The next frame's body; None at a clean end of stream. See the class docstring."""
        while True:
            body, wanted = self._take_buffered()
            if body is not None:
                return body
            if self._position:
                del self._buffer[: self._position]
                self._position = 0
            data = await self._stream.receive_some(max(self._receive_bytes_max, wanted))
            self._counters.calls += 1
            if not data:
                if self._buffer:
                    raise TruncatedFrameError(
                        f"stream ended {len(self._buffer)} bytes into a frame"
                        + self._announced_suffix()
                    )
                return None
            self._counters.bytes += len(data)
            self._buffer += data

    def _take_buffered(self) -> tuple[bytes | None, int]:
        """(a complete buffered frame, 0), or (None, bytes still missing for the next one)."""
        buffer, start = self._buffer, self._position
        available = len(buffer) - start
        if available < HEADER_BYTES:
            return None, HEADER_BYTES - available
        length = int.from_bytes(buffer[start : start + HEADER_BYTES], "big")
        if length > self._frame_bytes_max:
            raise FrameTooLargeError(
                f"header announces {length} bytes; frame_bytes_max is {self._frame_bytes_max}"
            )
        end = start + HEADER_BYTES + length
        if len(buffer) < end:
            return None, end - len(buffer)
        with memoryview(buffer) as view:
            body = bytes(view[start + HEADER_BYTES : end])
        self._position = end
        self._counters.frames += 1
        return body, 0

    def _announced_suffix(self) -> str:
        if len(self._buffer) < HEADER_BYTES:
            return " (inside the header)"
        length = int.from_bytes(self._buffer[:HEADER_BYTES], "big")
        return f" (header announced {length} bytes of body)"


class FrameWriter:
    """Writes frames to `stream` (which the caller owns and closes), coalescing queued frames.

    Stream errors (`trio.BrokenResourceError`, `trio.ClosedResourceError`) pass through; after
    one, `frames_in_flight` says how many frames of the failed `send_all` may not have arrived.
    """

    __slots__ = ("_coalesce_bytes_max", "_counters", "_stream", "frames_in_flight")

    def __init__(
        self,
        stream: trio.abc.SendStream,
        *,
        coalesce_bytes_max: int = 256 * 1024,
        counters: FrameCounters | None = None,
    ) -> None:
        if coalesce_bytes_max <= 0:
            raise ValueError("coalesce_bytes_max must be positive")
        self._stream = stream
        self._coalesce_bytes_max = coalesce_bytes_max
        self._counters = counters if counters is not None else FrameCounters()
        self.frames_in_flight = 0

    @property
    def counters(self) -> FrameCounters:
        return self._counters

    async def send_frames(self, bodies: Sequence[bytes]) -> None:
        """Send `bodies` as consecutive frames with one `send_all`."""
        if not bodies:
            return
        data = pack_frames(bodies)
        self.frames_in_flight = len(bodies)
        await self._stream.send_all(data)
        self.frames_in_flight = 0
        self._counters.frames += len(bodies)
        self._counters.bytes += len(data)
        self._counters.calls += 1

    async def send_queued(
        self,
        queue: trio.MemoryReceiveChannel[bytes] | ByteQueue,
        *,
        heartbeat_interval_s: float | None = None,
    ) -> None:
        """Send frame bodies from `queue` until it is closed: wait for one, then take every body
        already queued, up to `coalesce_bytes_max` bytes, and send them with one `send_all`.
        With `heartbeat_interval_s`, a heartbeat (an empty frame) goes out whenever nothing
        was queued for that long, so that the peer hears from us on an idle link.

        A body taken from the queue is lost if the stream fails or this task is cancelled
        while it is being sent (see `frames_in_flight`); one still queued is not.
        """
        limit = self._coalesce_bytes_max
        while True:
            body: bytes | None = None
            try:
                if heartbeat_interval_s is None:
                    body = await queue.receive()
                else:
                    with trio.move_on_after(heartbeat_interval_s):
                        body = await queue.receive()
                    if body is None:
                        await self.send_frames([b""])
                        continue
            except trio.EndOfChannel:
                return
            batch = [body]
            size = HEADER_BYTES + len(body)
            while size < limit:
                try:
                    body = queue.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                batch.append(body)
                size += HEADER_BYTES + len(body)
            await self.send_frames(batch)
