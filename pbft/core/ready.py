"""What one step of the core asks its driver to do (ARCHITECTURE.md: persist, send, advance)."""

from __future__ import annotations

from dataclasses import dataclass

from ..messages import Message, Reply, Request


@dataclass(frozen=True, slots=True)
class Outbound:
    """Send `message` to each replica id in `to` (never the sender itself)."""

    to: tuple[int, ...]
    message: Message


@dataclass(frozen=True, slots=True)
class ExecutedRequest:
    """One request as executed at `sequence`, with the result the replica replied."""

    request: Request
    result: bytes


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


@dataclass(frozen=True, slots=True)
class Ready:
    """One batch of work, handled in this order by the driver:

    1. make every record in `persist` durable;
    2. send `messages` (replica to replica) and `replies` (to their clients);
    3. hand `executed` to whoever watches the replicated log;
    4. call `advance()`.
    """

    persist: tuple[Message, ...]
    messages: tuple[Outbound, ...]
    replies: tuple[Reply, ...]
    executed: tuple[ExecutedBatch, ...]
    status: Status
