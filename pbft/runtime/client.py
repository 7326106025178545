"""The async client: `async with connect(config, signer) as client: await client.submit(op)`.

Identities and concurrency. Each identity (Ed25519 key) of a client is one `ClientSession` of
the core. PBFT allows one outstanding request per identity (N8 keeps only each client's last
reply), so:

- with one identity, concurrent `submit`/`query` calls are *serialised*: they wait their turn
  (first come, first served) and each runs alone;
- `connect(config, [signer_a, signer_b, ...])` gives the client a *pool* of identities, and up
  to that many calls run at once. Every identity is an actor of its own to the application
  (the key that signs is the actor), so pool only identities the application treats alike.

Connections. A client holds one TLS connection to each replica, authenticated as its first
identity, and sends the requests of every identity of its pool on it; replies come back on it
in shared TLS records. A replica sends C's replies to C's own connection, or to the connection C
registered (see `pbft.runtime.node`), so before its first request each other identity of the
pool registers on every connection with a signed read-only REQUEST, timestamp 0, whose operation
names the connection's key (`ROUTE_REGISTRATION` + key: a registration replayed on another
connection names the wrong key and moves nothing), again whenever a connection is
re-established (the replica may have restarted and forgotten its routes).

A REPLY is accepted only from a connection authenticated as the replica it names (replies are
not signed; see `pbft.messages`): any other is dropped and counted (`reply_from_wrong_replica`).
Timeouts: the session retransmits to every replica after `client_retry_timeout_ms` (N9, backing
off) and falls back from a read-only to an ordered request (R1); `timeout_s` bounds the whole
call, after which `NoQuorumError` says which replicas were reachable and which answered. With
`unreachable_timeout_s` (the `pbft` and `tradeapp` command lines use 5 s), a call fails sooner
when no replica at all has been connected for that long (a wrong address, a cluster that is not
running): its `NoQuorumError` names every address tried and why the connections failed.

Keys: a replica's key is refused as a client's (ValueError): the replicas take a connection
authenticated with it for that replica itself, so its requests would never be answered.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from pbft.codec import signing_payload
from pbft.config import ClusterConfig
from pbft.core import ClientResult, ClientSession
from pbft.crypto import Signer
from pbft.ed25519 import Ed25519Signer
from pbft.messages import Reply, Request

from ._errors import unwrap_single_error
from .metrics import Histogram
from .transport import ROUTE_REGISTRATION, Transport, TransportSettings

__all__ = [
    "Client",
    "ClientError",
    "ClientStatistics",
    "NoQuorumError",
    "RequestRejectedError",
    "connect",
]

log = logging.getLogger("pbft.runtime.client")

#: The client's own timers (retransmission, R1 fallback, re-registration) run this often.
_TICK_INTERVAL_S = 0.05


class ClientError(Exception):
    """A request did not produce a result."""


class NoQuorumError(ClientError):
    """No quorum of matching replies arrived within the time allowed. The request may still
    execute later (its outcome is unknown); retrying it is a new request.

    `reachable` are the replicas the client was connected to at the end, `answered` those that
    replied to this request (with any result), `needed` the matching replies required."""

    def __init__(
        self, message: str, *, reachable: list[int], answered: list[int], needed: int
    ) -> None:
        super().__init__(message)
        self.reachable = reachable
        self.answered = answered
        self.needed = needed


class RequestRejectedError(ClientError):
    """The request was refused before ordering: it can never be accepted as it is (too large
    for the cluster's bounds, or the client is closing)."""


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    identities: int
    #: Calls waiting for a free identity right now.
    waiting: int
    completed: int
    failed: int
    retransmissions: int
    dropped: dict[str, int]
    latency_s_p50: float
    latency_s_p99: float


class _Identity:
    """One signing identity of the pool: its session and the call it serves."""

    __slots__ = ("answered", "done", "registration", "result", "session", "signer")

    def __init__(self, signer: Signer, session: ClientSession) -> None:
        self.signer = signer
        self.session = session
        self.done: trio.Event | None = None
        self.result: ClientResult | None = None
        self.answered: set[int] = set()
        #: The signed registration request (None for the identity the connections belong to).
        self.registration: Request | None = None


class Client:
    """A connection to a PBFT cluster. Built by `connect`; see the module docstring."""

    def __init__(
        self,
        config: ClusterConfig,
        identities: list[_Identity],
        transport: Transport,
        *,
        timeout_s: float,
        unreachable_timeout_s: float | None = None,
    ) -> None:
        self.config = config
        self._unreachable_timeout_s = unreachable_timeout_s
        #: When the client last had no replica connected, since then (None: one is connected).
        self._unreachable_since: float | None = None
        self._identities = identities
        self._by_key = {identity.signer.public_key: identity for identity in identities}
        self._transport = transport
        self._timeout_s = timeout_s
        self._free_send, self._free = trio.open_memory_channel[_Identity](len(identities))
        for identity in identities:
            self._free_send.send_nowait(identity)
        #: Per replica, the connection count when the pool last registered on it.
        self._registered: dict[int, int] = {}
        #: The highest view any session of the pool learnt (from f + 1 matching replies): new
        #: requests of every identity go to its primary (N1).
        self._view = 0
        self._waiting = 0
        self._completed = 0
        self._failed = 0
        self._retransmissions = 0
        self.dropped: Counter[str] = Counter()
        self.latency = Histogram()
        self._closed = False

    # ------------------------------------------------------------------ the interface

    async def submit(self, operation: bytes, *, timeout_s: float | None = None) -> bytes:
        """Order `operation` and return its result once f + 1 replicas agree on it (N7).

        Raises `NoQuorumError` if that takes longer than `timeout_s` (default: the client's),
        `RequestRejectedError` if the operation is larger than the cluster accepts or the
        client is closed, TypeError if it is not bytes. Cancellation is safe; the request may
        still execute."""
        return await self._call(operation, False, timeout_s)

    async def query(self, operation: bytes, *, timeout_s: float | None = None) -> bytes:
        """Run a read-only `operation` (R1): sent to every replica, accepted on 2f + 1 matching
        replies; if they disagree or do not come in time, it is ordered like `submit`.
        Raises as `submit` does."""
        return await self._call(operation, True, timeout_s)

    def statistics(self) -> ClientStatistics:
        return ClientStatistics(
            identities=len(self._identities),
            waiting=self._waiting,
            completed=self._completed,
            failed=self._failed,
            retransmissions=self._retransmissions
            + sum(identity.session.retransmissions for identity in self._identities),
            dropped=dict(self.dropped),
            latency_s_p50=self.latency.quantile(0.5),
            latency_s_p99=self.latency.quantile(0.99),
        )

    @property
    def public_keys(self) -> list[bytes]:
        return [identity.signer.public_key for identity in self._identities]

    def connected_replicas(self) -> list[int]:
        return self._transport.connected_peers()

    # ------------------------------------------------------------------ one call

    async def _call(self, operation: bytes, read_only: bool, timeout_s: float | None) -> bytes:
        if self._closed:
            raise RequestRejectedError("the client is closed")
        if type(operation) is not bytes:
            raise TypeError(f"an operation is bytes, not {type(operation).__name__}")
        if len(operation) > self.config.operation_bytes_max:
            raise RequestRejectedError(
                f"operation of {len(operation)} bytes exceeds the cluster's "
                f"operation_bytes_max = {self.config.operation_bytes_max}"
            )
        timeout_s = self._timeout_s if timeout_s is None else timeout_s
        started = trio.current_time()
        identity: _Identity | None = None
        healthy = False
        result: ClientResult | None = None
        # One cancel scope for the whole call: waiting for an identity, then for the result.
        with trio.move_on_at(started + timeout_s):
            try:
                try:
                    identity = self._free.receive_nowait()
                except trio.WouldBlock:
                    self._waiting += 1
                    try:
                        identity = await self._free.receive()
                    finally:
                        self._waiting -= 1
                done = identity.done = trio.Event()
                identity.result = None
                identity.answered = set()
                session = identity.session
                session.view = max(session.view, self._view)
                session.tick(_now_ms())
                session.submit(operation, read_only)
                self._flush(identity)
                if self._unreachable_timeout_s is None:
                    await done.wait()
                else:
                    await self._wait_or_unreachable(done)
                if done.is_set():
                    result = identity.result
                    assert result is not None
                    healthy = True
            finally:
                if identity is not None:
                    identity.done = None
                    if not healthy:
                        # The session still has the request outstanding (it cannot be
                        # withdrawn): give the identity a fresh session, whose timestamps are
                        # later (N8 orders them).
                        self._retransmissions += identity.session.retransmissions
                        identity.session = ClientSession(self.config, identity.signer, _now_ms())
                    self._free_send.send_nowait(identity)
        if healthy:
            assert result is not None
            self._completed += 1
            self.latency.observe(trio.current_time() - started)
            return result.result
        self._failed += 1
        reachable = self.connected_replicas()
        unreachable_s = self._unreachable_for()
        if unreachable_s is not None and not reachable:
            raise NoQuorumError(
                f"no replica reachable for {unreachable_s:.1f} s: "
                + unreachable_detail(self.config, self._transport),
                reachable=[], answered=[], needed=self.config.f + 1,
            )
        if identity is None:
            raise NoQuorumError(
                f"no result within {timeout_s:.1f} s: all {len(self._identities)} identities of "
                "this client stayed busy with earlier calls (pass more signers to connect for "
                "more concurrency)",
                reachable=reachable, answered=[], needed=0,
            )
        needed = self.config.f + 1
        answered = sorted(identity.answered)
        kind = "query" if read_only else "request"
        raise NoQuorumError(
            f"no quorum for the {kind} ({len(operation)}-byte operation) within "
            f"{trio.current_time() - started:.1f} s: connected to replicas "
            f"{reachable or 'none'} of {self.config.n}, replies from "
            f"{answered or 'none'}; {needed} matching replies needed",
            reachable=reachable, answered=answered, needed=needed,
        )

    def _unreachable_for(self) -> float | None:
        """How long no replica has been connected, if `unreachable_timeout_s` has passed."""
        since, limit = self._unreachable_since, self._unreachable_timeout_s
        if since is None or limit is None:
            return None
        elapsed = trio.current_time() - since
        return elapsed if elapsed >= limit else None

    async def _wait_or_unreachable(self, done: trio.Event) -> None:
        """Wait for `done`; return early (the call then fails) once no replica has been
        connected for `unreachable_timeout_s`."""
        while not done.is_set():
            with trio.move_on_after(_TICK_INTERVAL_S * 2):
                await done.wait()
            if self._unreachable_for() is not None and not self.connected_replicas():
                return

    def _flush(self, identity: _Identity) -> None:
        session, transport = identity.session, self._transport
        n = self.config.n
        while session.has_ready():
            ready = session.ready()
            for outbound in ready.messages:
                to = outbound.to
                if len(to) == n:
                    transport.broadcast(outbound.message)
                elif len(to) == 1:
                    transport.send(to[0], outbound.message)
                else:
                    transport.send_many(to, outbound.message)
            for result in ready.results:
                identity.result = result
                if identity.done is not None:
                    identity.done.set()
            session.advance()
        self._view = max(self._view, session.view)

    # ------------------------------------------------------------------ background tasks

    async def _receive_loop(self) -> None:
        transport, by_key = self._transport, self._by_key
        while True:
            try:
                batch = await transport.wait_messages(1024)
            except trio.EndOfChannel:
                return
            touched: dict[bytes, _Identity] = {}
            for peer, message in batch:
                if type(message) is not Reply:
                    self._drop("unexpected_message_type", peer, message)
                    continue
                if message.replica != peer.replica_id:
                    # Replies are authenticated by their channel only: a replica may not speak
                    # for another.
                    self._drop("reply_from_wrong_replica", peer, message)
                    continue
                identity = by_key.get(message.client)
                if identity is None:
                    self._drop("reply_for_unknown_client", peer, message)
                    continue
                session = identity.session
                outstanding = session.outstanding
                if outstanding is not None and message.timestamp == outstanding.timestamp:
                    identity.answered.add(message.replica)
                session.receive(message)
                touched[message.client] = identity
            for identity in touched.values():
                self._flush(identity)

    def _drop(self, reason: str, peer, message) -> None:
        self.dropped[reason] += 1
        count = self.dropped[reason]
        if count & (count - 1) == 0:  # 1st, 2nd, 4th, ...: bounded logging
            log.warning(
                "dropped %s from %s: %s (%d so far)", type(message).__name__, peer, reason, count,
                extra={"peer": str(peer), "reason": reason, "count": count},
            )  # fmt: skip

    def _register(self) -> None:
        """Register the pool's other identities on every connection that is new since the
        last registration (a replica that restarted has forgotten their reply routes)."""
        transport = self._transport
        for replica_id in range(self.config.n):
            made = transport.connections_made(replica_id)
            if self._registered.get(replica_id) == made:
                continue
            self._registered[replica_id] = made
            for identity in self._identities:
                if identity.registration is not None:
                    transport.send(replica_id, identity.registration)

    def _note_reachability(self) -> None:
        if self.connected_replicas():
            self._unreachable_since = None
        elif self._unreachable_since is None:
            self._unreachable_since = trio.current_time()

    async def _tick_loop(self) -> None:
        while True:
            self._note_reachability()
            self._register()
            await trio.sleep(_TICK_INTERVAL_S)
            now_ms = _now_ms()
            for identity in self._identities:
                session = identity.session
                if session.outstanding is not None:
                    session.tick(now_ms)
                    if session.has_ready():
                        self._flush(identity)


def _now_ms() -> int:
    # Request timestamps derive from the wall clock (ClientSession), so that a restarted client
    # with the same key never reuses the timestamps of its earlier life (N8).
    return time.time_ns() // 1_000_000


def _registration(signer: Signer, connection_key: bytes) -> Request:
    operation = ROUTE_REGISTRATION + connection_key
    unsigned = Request(operation, 0, signer.public_key, True, b"")
    return Request(operation, 0, signer.public_key, True, signer.sign(signing_payload(unsigned)))


@asynccontextmanager
async def connect(
    config: ClusterConfig,
    signer: Signer | Sequence[Signer],
    *,
    timeout_s: float = 30.0,
    settings: TransportSettings | None = None,
    rng: random.Random | None = None,
    wait_connected_s: float | None = None,
    unreachable_timeout_s: float | None = None,
) -> AsyncIterator[Client]:
    """Connect to the replicas of `config` as `signer` (or a pool of signers, see the module
    docstring) and yield a `Client`; on exit every connection is closed and calls still
    running are cancelled.

    The first signer must be an `Ed25519Signer` (its seed is the connections' TLS key).
    Connections are made in the background; with `wait_connected_s`, entering waits until a
    quorum of replicas is connected and raises `NoQuorumError` (naming the addresses tried) if
    that takes longer. With `unreachable_timeout_s`, a call fails with `NoQuorumError` once no
    replica has been connected for that long (from connecting, or from losing the last
    connection), instead of waiting out its `timeout_s`. Raises ValueError for an empty pool, a
    key given twice, or a replica's key (the replicas would take the client for that replica).
    """
    signers = [signer] if not isinstance(signer, Sequence) else list(signer)
    if not signers:
        raise ValueError("connect needs at least one signer")
    if len({s.public_key for s in signers}) != len(signers):
        raise ValueError("a key is given twice")
    replica_keys = {info.public_key: info.id for info in config.replicas}
    for s in signers:
        if s.public_key in replica_keys:
            raise ValueError(
                f"key {s.public_key.hex()[:16]}… is replica {replica_keys[s.public_key]}'s key, "
                "not a client's: the replicas take a connection with it for that replica and "
                "never answer it as a client"
            )
    carrier = signers[0]
    if not isinstance(carrier, Ed25519Signer):
        raise TypeError("the first signer must be an Ed25519Signer (its seed is the TLS key)")
    rng = rng or random.Random()
    transport = Transport.for_client(
        config, carrier, rng=rng, settings=settings or TransportSettings()
    )
    now_ms = _now_ms()
    identities = []
    for s in signers:
        identity = _Identity(s, ClientSession(config, s, now_ms))
        if s is not carrier:
            identity.registration = _registration(s, carrier.public_key)
        identities.append(identity)
    client = Client(config, identities, transport, timeout_s=timeout_s,
                    unreachable_timeout_s=unreachable_timeout_s)  # fmt: skip
    client._unreachable_since = trio.current_time()
    with unwrap_single_error():
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.serve, None)
            nursery.start_soon(client._receive_loop)
            nursery.start_soon(client._tick_loop)
            try:
                if wait_connected_s is not None:
                    await _wait_quorum_connected(client, wait_connected_s)
                yield client
            finally:
                client._closed = True
                nursery.cancel_scope.cancel()


async def _wait_quorum_connected(client: Client, timeout_s: float) -> None:
    config = client.config
    deadline = trio.current_time() + timeout_s
    while len(client.connected_replicas()) < config.quorum:
        if trio.current_time() >= deadline:
            reachable = client.connected_replicas()
            raise NoQuorumError(
                f"not connected to a quorum of {config.quorum} replicas within {timeout_s:.1f} s:"
                f" connected to {reachable or 'none'} of {config.n}; "
                + unreachable_detail(config, client._transport, skip=reachable),
                reachable=reachable, answered=[], needed=config.quorum,
            )
        await trio.sleep(0.02)


def unreachable_detail(config: ClusterConfig, transport: Transport,
                       skip: Sequence[int] = ()) -> str:  # fmt: skip
    """Which addresses were tried (replicas not in `skip`) and how connecting failed so far."""
    tried = ", ".join(f"{info.host}:{info.port} (replica {info.id})"
                      for info in config.replicas if info.id not in skip)  # fmt: skip
    failures = transport.statistics().outbound_failures
    how = ", ".join(f"{reason} × {count}" for reason, count in sorted(failures.items()))
    return f"tried {tried}" + (f"; connection failures: {how}" if how else "")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of `values` by nearest rank; NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
