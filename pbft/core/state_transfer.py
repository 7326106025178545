"""State transfer (S1, S1'): snapshots as verifiable chunks, and the bookkeeping of one fetch.

S1' (this library's extension of S1): the CHECKPOINT digest of a snapshot commits to its size
and to every chunk,

    digest = SHA-256("pbft/snapshot/1" ‖ size ‖ chunk_bytes ‖ Merkle root of the chunks)

(`snapshot_digest`), the chunks being the consecutive `state_chunk_bytes` slices of the
snapshot. Every STATE-CHUNK carries the snapshot's size and the chunk's Merkle proof, so a
fetcher checks each chunk against the proven digest the moment it arrives (`verify_chunk`) and
keeps it whoever sent it, and the chunk count follows from the proven size: no source can
announce a count, make the fetcher hold more than the snapshot, or waste more than the one
request it answered wrongly.

A replica prepares each of its checkpoints once (`ChunkedSnapshot`: the chunk hashes and the
Merkle tree, kept with the snapshot) and serves chunks from there. `StateFetch` fetches from
several sources at once (see there for the time bound).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from ..codec import packb_canonical, unpackb_canonical
from ..crypto import sha256
from ..messages import Checkpoint, StateChunk

_DIGEST_TAG = b"pbft/snapshot/1"
# Domain separation: a leaf can never be read as an inner node, nor the other way round.
_LEAF = b"\x00"
_NODE = b"\x01"


def encode_snapshot(app_snapshot: bytes, client_table_snapshot: bytes, timestamp_ms: int) -> bytes:
    """The replica's checkpointed state: the application, the reply cache (N8) and the last
    agreed batch timestamp (D1). `snapshot_digest` of it is the CHECKPOINT digest (C1, S1')."""
    return packb_canonical([app_snapshot, client_table_snapshot, timestamp_ms])


def decode_snapshot(snapshot: bytes) -> tuple[bytes, bytes, int]:
    """Inverse of `encode_snapshot`; raises ValueError on bytes it did not produce."""
    value = unpackb_canonical(snapshot)
    match value:
        case [bytes() as app, bytes() as table, int() as timestamp_ms]:
            return app, table, timestamp_ms
    raise ValueError("not a replica snapshot")


# ---------------------------------------------------------------------- verifiable chunks (S1')


def chunk_count(size: int, chunk_bytes: int) -> int:
    """How many chunks a snapshot of `size` bytes has (at least one, maybe empty)."""
    return max(1, -(-size // chunk_bytes))


def proof_entries_max(snapshot_bytes_max: int, chunk_bytes: int) -> int:
    """The longest Merkle proof of a snapshot of at most `snapshot_bytes_max` bytes:
    ⌈log2 chunks⌉ sibling hashes."""
    return (chunk_count(snapshot_bytes_max, chunk_bytes) - 1).bit_length()


def _leaf_hash(chunk: bytes) -> bytes:
    return sha256(_LEAF + chunk)


def _node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(_NODE + left + right)


def _digest(size: int, chunk_bytes: int, root: bytes) -> bytes:
    return sha256(_DIGEST_TAG + size.to_bytes(8, "big") + chunk_bytes.to_bytes(8, "big") + root)


class ChunkedSnapshot:
    """A snapshot prepared for serving: its S1' digest and Merkle tree, built once (when the
    checkpoint is taken or the state restored), so that serving a chunk costs that chunk's
    bytes and ⌈log2 chunks⌉ hashes, never a pass over the whole snapshot.

    The tree: leaves are the hashes of the chunks; each level pairs neighbours, and a last node
    without a neighbour moves up unchanged. Holds the snapshot and 2 hashes per chunk.
    """

    __slots__ = ("snapshot", "chunk_bytes", "chunks", "digest", "_levels")

    def __init__(self, snapshot: bytes, chunk_bytes: int) -> None:
        self.snapshot = snapshot
        self.chunk_bytes = chunk_bytes
        self.chunks = chunk_count(len(snapshot), chunk_bytes)
        level = [_leaf_hash(snapshot[i * chunk_bytes:(i + 1) * chunk_bytes])
                 for i in range(self.chunks)]
        levels = [level]
        while len(level) > 1:
            level = [_node_hash(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                     for i in range(0, len(level), 2)]
            levels.append(level)
        self._levels = levels
        self.digest = _digest(len(snapshot), chunk_bytes, level[0])

    def chunk(self, index: int) -> bytes:
        """Chunk `index` (0 ≤ index < chunks)."""
        return self.snapshot[index * self.chunk_bytes:(index + 1) * self.chunk_bytes]

    def proof(self, index: int) -> tuple[bytes, ...]:
        """The sibling hashes from chunk `index` up to the root, lowest first."""
        proof = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            index //= 2
        return tuple(proof)


def snapshot_digest(snapshot: bytes, chunk_bytes: int) -> bytes:
    """The CHECKPOINT digest of `snapshot` (C1, S1'), for chunks of `chunk_bytes`."""
    return ChunkedSnapshot(snapshot, chunk_bytes).digest


def verify_chunk(digest: bytes, chunk_bytes: int, chunk: StateChunk) -> bool:
    """Whether `chunk` is chunk `chunk.chunk` of a snapshot of `chunk.snapshot_bytes` bytes
    whose S1' digest is `digest`: the index is within the count the size gives, the data has
    the length the size gives, and the proof leads from its hash to `digest`. Costs one hash
    of the data and one per proof entry; never raises."""
    size, index, data, proof = chunk.snapshot_bytes, chunk.chunk, chunk.data, chunk.proof
    count = chunk_count(size, chunk_bytes)
    if index >= count or len(data) != min(chunk_bytes, size - index * chunk_bytes):
        return False
    node = _leaf_hash(data)
    width, used = count, 0
    while width > 1:
        if index ^ 1 < width:
            if used == len(proof):
                return False
            sibling = proof[used]
            used += 1
            node = _node_hash(node, sibling) if index % 2 == 0 else _node_hash(sibling, node)
        index //= 2
        width = (width + 1) // 2
    return used == len(proof) and _digest(size, chunk_bytes, node) == digest


# ---------------------------------------------------------------------- fetching (S1')


@dataclass(frozen=True, slots=True)
class Lagging:
    """S1: a stable checkpoint proven above what we executed, which we give the batches in
    flight `state_transfer_timeout_ms` to reach before we fetch its state."""

    sequence: int
    digest: bytes
    proof: tuple[Checkpoint, ...]


@dataclass(frozen=True, slots=True)
class StateTransferRecord:
    """One completed state transfer: the checkpoint, the snapshot's size and chunk count, and
    when its fetch started and ended (the replica's clock, ms)."""

    sequence: int
    snapshot_bytes: int
    chunks: int
    started_ms: int
    completed_ms: int

    @property
    def duration_ms(self) -> int:
        return self.completed_ms - self.started_ms


def chunk_requests_per_source(window: int, sources: int) -> int:
    """q: how many chunk requests a fetcher sends one source per state_transfer_timeout_ms,
    and a server answers one requester per period in the long run (`state_fetch_window`
    spread over the `sources` other replicas)."""
    return -(-window // sources)


class FetchPacer:
    """When a replica last asked each source for chunks: at most `per_source` requests to one
    source in any `period_ms`, across fetches, which is what a correct source's FETCH-STATE
    rate limit (a bucket of 2 · per_source, refilled by per_source per period) always accepts,
    whatever the network delays up to one period. Holds at most `per_source` times a source."""

    __slots__ = ("_per_source", "_period_ms", "_sent")

    def __init__(self, per_source: int, period_ms: int) -> None:
        self._per_source = per_source
        self._period_ms = period_ms
        self._sent: dict[int, deque[int]] = {}

    def free(self, source: int, now_ms: int, quota: int) -> bool:
        """Whether a request to `source` now keeps it within `quota` (≤ per_source) per period."""
        times = self._sent.get(source)
        if times is None:
            return quota > 0
        while times and times[0] <= now_ms - self._period_ms:
            times.popleft()
        return len(times) < min(quota, self._per_source)

    def note(self, source: int, now_ms: int) -> None:
        self._sent.setdefault(source, deque()).append(now_ms)


class StateFetch:
    """One fetch of the snapshot at stable checkpoint `sequence`, proven to have the S1' digest
    `digest`: which chunks are held, which are asked of whom, and how far each source is
    trusted. Pure bookkeeping: the replica signs and sends what `requests` returns, passes
    every STATE-CHUNK whose signature it checked to `on_chunk`, and calls `expire` as time
    passes.

    How (S1'):
    - Chunk 0 is asked of every source at once; the first chunk that verifies fixes the size,
      hence the chunk count. A size above `snapshot_bytes_max` is refused, so a fetch never
      holds more than that (and only the chunks of this one fetch).
    - Then each missing chunk is asked of one source. Each source is asked at most
      q = ⌈state_fetch_window / sources⌉ chunks per T = state_transfer_timeout_ms (`FetchPacer`);
      sources are tried in order of fewest strikes, then fewest requests outstanding.
    - A request unanswered after T times out: the source gets a strike and the chunk is asked
      of a source that has not failed it. An answer later than T/2 is kept but also earns a
      strike (slow); a timely one clears the strikes. A source with k strikes is asked at most
      max(1, q >> k) chunks per T, and last: slow sources are used less.
    - A chunk that does not verify is proof that its (signature-checked) sender lies: it is
      never asked again in this fetch, and what it was asked is asked of others at once.

    Bound: let S = n − 1 sources, C = the chunk count (≤ ⌈snapshot_bytes_max / chunk bytes⌉),
    and suppose that, once the network is stable, g ≥ 1 sources are correct, hold the
    snapshot and answer within T/2. Then the fetch ends within

        (⌈C / (g · q)⌉ + (S − g) + 3) · T

    of its start, whatever the other S − g sources do (silent, slow or lying): chunk 0 is
    asked of everyone within T (the quota a fetch it replaced used frees up by then) and
    answered within T/2, which fixes the size; from then on each of the g correct sources
    serves q chunks per T, however the others answer, for ⌈C / (g · q)⌉ · T; a chunk held by
    one of the others comes back within T (answered, timed out or refused) and is next asked
    of a source that has not failed it, so the last chunk waits behind at most the S − g
    others, then at most T for a correct source's quota and T/2 for its answer. One
    Byzantine source among f can thus add at most a constant number of timeouts to what the
    correct sources alone take.
    """

    __slots__ = (
        "sequence",
        "digest",
        "started_ms",
        "size",
        "requests_sent",
        "_sources",
        "_pacer",
        "_chunk_bytes",
        "_snapshot_bytes_max",
        "_per_source",
        "_timeout_ms",
        "_chunks",
        "_count",
        "_queue",
        "_requests",
        "_outstanding",
        "_strikes",
        "_banned",
        "_failed",
    )

    def __init__(
        self,
        sequence: int,
        digest: bytes,
        sources: list[int],
        pacer: FetchPacer,
        *,
        chunk_bytes: int,
        snapshot_bytes_max: int,
        window: int,
        timeout_ms: int,
        now_ms: int,
    ) -> None:
        self.sequence = sequence
        self.digest = digest
        self.started_ms = now_ms
        #: The snapshot's size, once a chunk has proven it.
        self.size: int | None = None
        #: Chunk requests sent, per source (the test of "used less").
        self.requests_sent: Counter[int] = Counter()
        self._sources = tuple(sources)
        self._pacer = pacer
        self._chunk_bytes = chunk_bytes
        self._snapshot_bytes_max = snapshot_bytes_max
        self._per_source = chunk_requests_per_source(window, len(sources))
        self._timeout_ms = timeout_ms
        self._chunks: dict[int, bytes] = {}
        self._count: int | None = None
        #: Chunks to ask for (after the size is known), front first.
        self._queue: deque[int] = deque()
        #: (chunk, source) -> when it was asked.
        self._requests: dict[tuple[int, int], int] = {}
        self._outstanding: Counter[int] = Counter()
        self._strikes: Counter[int] = Counter()
        self._banned: set[int] = set()
        #: Per chunk, the sources that timed out on it (asked again only once all have).
        self._failed: dict[int, set[int]] = {}

    # ------------------------------------------------------------------ state

    @property
    def complete(self) -> bool:
        return self._count is not None and len(self._chunks) == self._count

    @property
    def chunks(self) -> int | None:
        """The chunk count, once a chunk has proven the size."""
        return self._count

    @property
    def bytes_held(self) -> int:
        return sum(len(c) for c in self._chunks.values())

    def has_chunk(self, index: int) -> bool:
        return index in self._chunks

    def snapshot(self) -> bytes:
        """The whole snapshot; every chunk of it verified against the digest."""
        assert self.complete and self._count is not None
        snapshot = b"".join(self._chunks[i] for i in range(self._count))
        assert len(snapshot) == self.size
        return snapshot

    def banned(self, source: int) -> bool:
        return source in self._banned

    def strikes(self, source: int) -> int:
        return self._strikes[source]

    # ------------------------------------------------------------------ requests

    def requests(self, now_ms: int) -> list[tuple[int, int]]:
        """The (source, chunk) requests to send now; each is counted as sent."""
        if self._count is None:
            return self._ask_size(now_ms)
        out: list[tuple[int, int]] = []
        # One chunk at a time to the most trusted, least busy source that may be asked now,
        # so that the chunks spread over the sources.
        ready = [s for s in self._sources
                 if s not in self._banned and self._pacer.free(s, now_ms, self._quota(s))]
        while self._queue and ready:
            source = min(ready, key=lambda s: (self._strikes[s], self._outstanding[s]))
            chunk = self._next_chunk_for(source)
            if chunk is not None:
                self._ask(source, chunk, now_ms)
                out.append((source, chunk))
            if chunk is None or not self._pacer.free(source, now_ms, self._quota(source)):
                ready.remove(source)
        return out

    def _ask_size(self, now_ms: int) -> list[tuple[int, int]]:
        """Before the size is known: chunk 0 of every source that has not failed it."""
        candidates = [s for s in self._sources if s not in self._banned]
        failed = self._failed.get(0, set())
        if candidates and failed.issuperset(candidates):
            failed.clear()
        out = []
        for source in candidates:
            if (0, source) in self._requests or source in failed:
                continue
            if self._pacer.free(source, now_ms, self._quota(source)):
                self._ask(source, 0, now_ms)
                out.append((source, 0))
        return out

    def _quota(self, source: int) -> int:
        return max(1, self._per_source >> min(self._strikes[source], 32))

    def _next_chunk_for(self, source: int) -> int | None:
        """The first queued chunk that `source` has not failed; once every source still
        trusted has failed a chunk, it may be asked of any of them again."""
        candidates = None
        for position, chunk in enumerate(self._queue):
            failed = self._failed.get(chunk)
            if failed and source in failed:
                if candidates is None:
                    candidates = [s for s in self._sources if s not in self._banned]
                if not failed.issuperset(candidates):
                    continue
                failed.clear()
            del self._queue[position]
            return chunk
        return None

    def _ask(self, source: int, chunk: int, now_ms: int) -> None:
        self._requests[(chunk, source)] = now_ms
        self._outstanding[source] += 1
        self.requests_sent[source] += 1
        self._pacer.note(source, now_ms)

    def _forget(self, chunk: int, source: int) -> int | None:
        """Drop the request (chunk, source) if outstanding; returns when it was sent."""
        sent = self._requests.pop((chunk, source), None)
        if sent is not None:
            self._outstanding[source] -= 1
        return sent

    def _requeue(self, chunk: int) -> None:
        """Ask for `chunk` again first, unless it is held or still asked of someone."""
        if chunk in self._chunks or chunk in self._queue:
            return
        if any(c == chunk for c, _ in self._requests):
            return
        if self._count is not None:
            self._queue.appendleft(chunk)

    # ------------------------------------------------------------------ events

    def expire(self, now_ms: int) -> int:
        """Time out the requests older than T; returns how many."""
        late = [key for key, sent in self._requests.items() if now_ms >= sent + self._timeout_ms]
        for chunk, source in late:
            self._forget(chunk, source)
            self._strikes[source] += 1
            self._failed.setdefault(chunk, set()).add(source)
            self._requeue(chunk)
        return len(late)

    def on_chunk(self, chunk: StateChunk, now_ms: int) -> str | None:
        """Take a STATE-CHUNK whose signature the caller checked. Returns None if it verified
        and was kept (the caller checks `complete`), or the reason it was refused."""
        source = chunk.replica
        if chunk.sequence != self.sequence or source in self._banned:
            return "unexpected_state_chunk"
        if chunk.chunk in self._chunks:
            return "duplicate_state_chunk"
        if not verify_chunk(self.digest, self._chunk_bytes, chunk):
            self._ban(source)
            return "bad_state_chunk"
        if chunk.snapshot_bytes > self._snapshot_bytes_max:
            # Proven, but larger than this replica accepts: nothing of it is kept.
            return "snapshot_too_large"
        if self._count is None:
            self.size = chunk.snapshot_bytes
            self._count = chunk_count(self.size, self._chunk_bytes)
            self._queue.extend(i for i in range(1, self._count) if i != chunk.chunk)
            if chunk.chunk != 0:
                self._queue.appendleft(0)
        self._chunks[chunk.chunk] = chunk.data
        sent = self._forget(chunk.chunk, source)
        if sent is not None:
            if now_ms - sent > self._timeout_ms // 2:
                self._strikes[source] += 1  # kept, but slow: asked less from now on
            else:
                self._strikes[source] = 0
        # Anyone else asked for this chunk (chunk 0, or a chunk asked again) need not answer.
        for other in [s for c, s in self._requests if c == chunk.chunk]:
            self._forget(chunk.chunk, other)
        if chunk.chunk in self._queue:
            self._queue.remove(chunk.chunk)
        return None

    def _ban(self, source: int) -> None:
        """`source` signed a chunk that does not verify: never ask it again in this fetch, and
        ask others at once for what it was asked."""
        self._banned.add(source)
        for chunk, asked in [key for key in self._requests if key[1] == source]:
            self._forget(chunk, asked)
            self._requeue(chunk)
