"""State transfer (S1), the bookkeeping of one fetch: which checkpoint, from whom, which chunks.

A replica that learns of a stable checkpoint (2f + 1 signed CHECKPOINTs) above what it has
executed fetches that checkpoint's snapshot, chunk by chunk, from one replica at a time. The
checkpoint digest is the SHA-256 of the snapshot bytes, so the whole snapshot is checked against
the proof before anything is restored; a replica that serves bytes that do not match, or does
not answer in time, is skipped and the next one is asked.
"""

from __future__ import annotations

from ..codec import packb_canonical, unpackb_canonical
from ..crypto import sha256
from ..messages import StateChunk


def encode_snapshot(app_snapshot: bytes, client_table_snapshot: bytes, timestamp_ms: int) -> bytes:
    """The replica's checkpointed state: the application, the reply cache (N8) and the last
    agreed batch timestamp (D1). Its SHA-256 is the CHECKPOINT digest (C1)."""
    return packb_canonical([app_snapshot, client_table_snapshot, timestamp_ms])


def decode_snapshot(snapshot: bytes) -> tuple[bytes, bytes, int]:
    """Inverse of `encode_snapshot`; raises ValueError on bytes it did not produce."""
    value = unpackb_canonical(snapshot)
    match value:
        case [bytes() as app, bytes() as table, int() as timestamp_ms]:
            return app, table, timestamp_ms
    raise ValueError("not a replica snapshot")


class StateFetch:
    """One fetch of the snapshot at stable checkpoint `sequence` whose SHA-256 is `digest`.

    `sources` is the order in which replicas are asked; the fetch moves to the next one when a
    chunk is late or the assembled snapshot does not match. At most `chunks_max` chunks are
    accepted, so a liar announcing a huge snapshot costs a bounded amount of memory.
    """

    __slots__ = (
        "sequence",
        "digest",
        "_sources",
        "_source_index",
        "_chunks",
        "_chunks_total",
        "_chunks_max",
        "deadline_ms",
        "_timeout_ms",
    )

    def __init__(
        self,
        sequence: int,
        digest: bytes,
        sources: list[int],
        chunks_max: int,
        now_ms: int,
        timeout_ms: int,
    ) -> None:
        self.sequence = sequence
        self.digest = digest
        self._sources = sources
        self._source_index = 0
        self._chunks: list[bytes] = []
        self._chunks_total: int | None = None
        self._chunks_max = chunks_max
        self._timeout_ms = timeout_ms
        self.deadline_ms = now_ms + timeout_ms

    @property
    def source(self) -> int:
        return self._sources[self._source_index % len(self._sources)]

    @property
    def next_chunk(self) -> int:
        return len(self._chunks)

    def next_source(self, now_ms: int) -> None:
        """Give up on the current source (late, or lying) and start over with the next one."""
        self._source_index += 1
        self._chunks = []
        self._chunks_total = None
        self.deadline_ms = now_ms + self._timeout_ms

    def on_chunk(self, chunk: StateChunk, now_ms: int) -> str | None:
        """Take a chunk from the current source. Returns None if it was expected and stored, or
        the reason it was not. The caller checks `complete` afterwards."""
        if chunk.replica != self.source or chunk.sequence != self.sequence:
            return "unexpected_state_chunk"
        if chunk.chunk != len(self._chunks):
            return "unexpected_state_chunk"
        if self._chunks_total is None:
            if not 1 <= chunk.chunks_total <= self._chunks_max:
                return "bad_state_chunk"
            self._chunks_total = chunk.chunks_total
        elif chunk.chunks_total != self._chunks_total:
            return "bad_state_chunk"
        self._chunks.append(chunk.data)
        self.deadline_ms = now_ms + self._timeout_ms
        return None

    @property
    def complete(self) -> bool:
        return self._chunks_total is not None and len(self._chunks) == self._chunks_total

    def snapshot(self) -> bytes | None:
        """The assembled snapshot if it matches the proven digest, else None."""
        assert self.complete
        snapshot = b"".join(self._chunks)
        return snapshot if sha256(snapshot) == self.digest else None


def chunk_snapshot(snapshot: bytes, chunk_bytes: int) -> list[bytes]:
    """Split a snapshot into the chunks a STATE-CHUNK carries (at least one, maybe empty)."""
    return [snapshot[i : i + chunk_bytes] for i in range(0, len(snapshot), chunk_bytes)] or [b""]
