"""What one step of the core asks its driver to do (docs/ARCHITECTURE.md: persist, send,
advance)."""

from __future__ import annotations

from dataclasses import dataclass

from ..messages import Message, Reply, Request, slot_init


@slot_init
@dataclass(frozen=True, slots=True)
class Outbound:
    """Send `message` to each replica id in `to` (never the sender itself)."""

    to: tuple[int, ...]
    message: Message


@slot_init
@dataclass(frozen=True, slots=True)
class ExecutedRequest:
    """One request as executed at `sequence`, with the result the replica replied."""

    request: Request
    result: bytes


@slot_init
@dataclass(frozen=True, slots=True)
class ExecutedBatch:
    """A batch executed in sequence order (N6): its digest, agreed timestamp and requests.

    `requests` holds only those that executed; duplicates suppressed by the client table (N8)
    are left out, so equal `ExecutedBatch` streams mean equal application histories.
    """

    sequence: int
    view: int
    digest: bytes
    timestamp_ms: int
    requests: tuple[ExecutedRequest, ...]


@slot_init
@dataclass(frozen=True, slots=True)
class Status:
    """A summary for operators and drivers."""

    replica: int
    view: int
    primary: int
    last_executed: int
    low_watermark: int
    high_watermark: int
    pending_requests: int
    #: The highest sequence number a signed message of another replica has shown us (COMMIT,
    #: the primary's PRE-PREPARE, CHECKPOINT): above `last_executed`, others are ahead (S1).
    #: One faulty replica can raise it (never lower it).
    highest_seen: int


@slot_init
@dataclass(frozen=True, slots=True)
class Ready:
    """One batch of work, handled in this order by the driver:

    1. make every record in `persist` durable;
    2. send `messages` (replica to replica) and `replies` (to their clients);
    3. hand `executed` to whoever watches the replicated log;
    4. call `advance()`.

    When `durable_first` is False, `persist` holds only PRE-PREPAREs and PREPAREs: the replica's
    own votes under a vote horizon already durable (`pbft.messages.VoteHorizon`), and
    PRE-PREPAREs it accepted. The driver may then do 2 (and 3) before 1, overlapping the fsync
    with the network, but must finish 1 before `advance()`. A crash in between loses at most
    those records: recovery withholds the votes they may have held, and fetches the rest again.
    """

    persist: tuple[Message, ...]
    messages: tuple[Outbound, ...]
    replies: tuple[Reply, ...]
    executed: tuple[ExecutedBatch, ...]
    status: Status
    durable_first: bool
