"""The client side of PBFT, sans-I/O: sign requests, collect replies, retransmit (N1, N7, N9, R1).

A session is one client identity with at most one request outstanding: N8's reply cache keeps
only each client's last request, so a client that wants concurrency uses several identities.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..codec import signing_payload
from ..config import ClusterConfig
from ..crypto import Signer
from ..messages import Reply, Request, slot_init
from . import quorum
from .ready import Outbound

#: Retransmission back-off stops doubling at this multiple of `client_retry_timeout_ms`.
RETRY_BACKOFF_MAX = 8


@slot_init
@dataclass(frozen=True, slots=True)
class ClientResult:
    """The accepted result of the session's request: f + 1 matching replies (N7), or 2f + 1
    matching read-only replies (R1). `operation` is what `submit` was given."""

    operation: bytes
    timestamp: int
    result: bytes
    read_only: bool


@slot_init
@dataclass(frozen=True, slots=True)
class ClientReady:
    """Messages to send to replicas, and results accepted since the last `advance()`."""

    messages: tuple[Outbound, ...]
    results: tuple[ClientResult, ...]


class ClientSession:
    """One signing client. Drive with `submit`, `receive(reply)`, `tick(now_ms)`, `ready()`.

    Replies must come from channels authenticated as the replica they name (see
    `pbft.messages`); a reply that matches nothing outstanding is dropped and counted.
    """

    def __init__(self, config: ClusterConfig, signer: Signer, now_ms: int = 0) -> None:
        self.config = config
        self.client = signer.public_key
        self._signer = signer
        self.now_ms = now_ms
        self._n = config.n
        self._all = tuple(range(config.n))
        self._reply_quorum = quorum.reply_quorum(config.n)
        self._read_only_quorum = quorum.read_only_quorum(config.n)
        #: The view the replicas last told us about: its primary gets our requests (N1).
        self.view = 0
        self._last_timestamp = 0
        self._outstanding: Request | None = None
        self._operation = b""
        self._replies: dict[int, Reply] = {}
        self._sent_at_ms = 0
        self._retry_timeout_ms = config.client_retry_timeout_ms
        self.retransmissions = 0
        self.dropped: Counter[str] = Counter()
        self._messages: list[Outbound] = []
        self._results: list[ClientResult] = []
        self._awaiting_advance = False

    @property
    def outstanding(self) -> Request | None:
        return self._outstanding

    def submit(self, operation: bytes, read_only: bool = False) -> Request:
        """Sign and send a request. Raises RuntimeError if one is still outstanding, and
        ValueError if `operation` is longer than the cluster's `operation_bytes_max` (replicas
        would refuse it: no batch could carry it)."""
        if self._outstanding is not None:
            raise RuntimeError("a request is still outstanding; wait for its result")
        if len(operation) > self.config.operation_bytes_max:
            raise ValueError(
                f"operation of {len(operation)} bytes exceeds the cluster's "
                f"operation_bytes_max = {self.config.operation_bytes_max}"
            )
        self._operation = operation
        return self._send_new(operation, read_only)

    def _send_new(self, operation: bytes, read_only: bool) -> Request:
        # Timestamps follow the driver's clock in microseconds, so a restarted client with the
        # same key does not reuse the timestamps of its earlier life (N8 would ignore them).
        timestamp = max(self._last_timestamp + 1, self.now_ms * 1000)
        self._last_timestamp = timestamp
        request = Request(operation, timestamp, self.client, read_only, b"")
        # Signed in place, as the replica signs (`Replica._sign`): nobody holds it yet, and the
        # signature is not part of the signing payload (which the codec then has at hand when
        # a replica verifies this very object).
        object.__setattr__(request, "signature", self._signer.sign(signing_payload(request)))
        self._outstanding = request
        self._replies = {}
        self._sent_at_ms = self.now_ms
        self._retry_timeout_ms = self.config.client_retry_timeout_ms
        # R1: read-only requests go to every replica; N1': so do the others, so that every
        # backup times the primary's proposal of it from the start (V1'').
        self._messages.append(Outbound(self._all, request))
        return request

    def receive(self, reply: Reply) -> None:
        """Count one reply; accept a result on f + 1 (or, read-only, 2f + 1) matching ones."""
        request = self._outstanding
        if reply.client != self.client or not 0 <= reply.replica < self._n:
            self.dropped["misaddressed_reply"] += 1
            return
        if request is None or reply.timestamp != request.timestamp:
            self.dropped["stale_reply"] += 1
            return
        if reply.read_only != request.read_only:
            self.dropped["stale_reply"] += 1
            return
        replies = self._replies
        replies[reply.replica] = reply  # a replica's later reply replaces its earlier one
        result = reply.result
        # Results are compared, not hashed: they can be large, and there are at most n.
        count = _matching(replies, result)
        needed = self._read_only_quorum if request.read_only else self._reply_quorum
        if count >= needed:
            # Follow a view only when f + 1 replicas (one of them correct) report it.
            views: dict[int, int] = {}
            for r in replies.values():
                views[r.view] = views.get(r.view, 0) + 1
            supported = [v for v, c in views.items() if c >= self._reply_quorum]
            if supported:
                self.view = max(self.view, max(supported))
            self._outstanding = None
            self._results.append(ClientResult(self._operation, request.timestamp, result, request.read_only))
        elif request.read_only and (
            max(_matching(replies, r.result) for r in replies.values()) + self._n - len(replies)
            < needed
        ):
            # R1: the replicas disagree (a concurrent write, or a liar): order it instead.
            self._send_new(request.operation, read_only=False)

    def tick(self, now_ms: int) -> None:
        """On timeout, retransmit to every replica (N9), backing off; read-only falls back to
        an ordered request (R1)."""
        if now_ms > self.now_ms:
            self.now_ms = now_ms
        request = self._outstanding
        if request is None or self.now_ms - self._sent_at_ms < self._retry_timeout_ms:
            return
        if request.read_only:
            self._send_new(request.operation, read_only=False)
            return
        self.retransmissions += 1
        self._sent_at_ms = self.now_ms
        self._retry_timeout_ms = min(
            self._retry_timeout_ms * 2, self.config.client_retry_timeout_ms * RETRY_BACKOFF_MAX
        )
        self._messages.append(Outbound(self._all, request))

    def has_ready(self) -> bool:
        return bool(self._messages or self._results)

    def ready(self) -> ClientReady:
        if self._awaiting_advance:
            raise RuntimeError("ready() called twice without advance()")
        self._awaiting_advance = True
        ready = ClientReady(tuple(self._messages), tuple(self._results))
        self._messages.clear()
        self._results.clear()
        return ready

    def advance(self) -> None:
        if not self._awaiting_advance:
            raise RuntimeError("advance() called without ready()")
        self._awaiting_advance = False


def _matching(replies: dict[int, Reply], result: bytes) -> int:
    """How many of `replies` (one per replica) carry `result`."""
    count = 0
    for reply in replies.values():
        if reply.result == result:
            count += 1
    return count
