"""The replica node: one PBFT core on a real network, with durable storage (docs/ARCHITECTURE.md).

`serve_replica` opens the replica's storage, rebuilds the core from it (`Replica.recover`),
starts the TLS transport and the metrics endpoint, and runs the one loop that owns the core:

    wait for messages (a batch: everything already delivered) or the next tick
    → receive each, tick when due
    → while the core has work: persist (fsync) → send → advance

Nothing the core sends leaves before the records it depends on are durable (docs/ARCHITECTURE.md,
"persist first"). The one exception is the core's to make: a Ready whose `durable_first` is
False holds only PRE-PREPAREs and PREPAREs under a vote horizon already on disk
(`pbft.messages.VoteHorizon`), so its messages go out first and its fsync overlaps their trip
(recovery withholds the votes such a crash may have lost). While one append is being made
durable, messages keep arriving and the next round takes them all at once, so under load one
fsync covers many messages (group commit).

Checks at the door, before the core (defence in depth; the core checks signatures itself): a
client connection may send only REQUESTs, and a replica connection only messages that name that
replica as their sender, or signed messages a replica relays (`RELAYABLE`). Anything else is
dropped and counted in `node_dropped` by reason, and the first occurrences of each reason are
logged with the peer.

Reply routes. Replies are not signed; they travel on a TLS connection authenticated as a client
key (`pbft.runtime.client`). One connection may carry the requests of several client identities
(a client's pool, multiplexed so that replies to many of them share TLS records and system
calls). The node keeps, per client key C, the connection key its replies go to: C's own (the
connection authenticated as C) by default and whenever C's own connection sends, or the key of
a connection C *registered*: a read-only REQUEST, timestamp 0, signed by C, whose operation
names that very connection's key (`transport.ROUTE_REGISTRATION`; the node checks the signature
once per identity and connection). Ordinary requests never move a route: a connection that
relays or replays C's signed requests gets none of C's replies, and a registration replayed on
another connection names the wrong key. Replies the route cannot deliver are counted as
dropped by the transport. The table is bounded
by `client_table_max` (least recently changed entries are forgotten).

Time: the core's `now_ms` is wall-clock milliseconds (D1 compares batch timestamps across
machines, and clients derive request timestamps from their own clocks), advanced by trio's
monotonic clock after start so that it never jumps backwards while the node runs.

Logs go to the stdlib logger `pbft.runtime.node` with `extra=` fields (`replica`, `view`,
`reason`, `peer`, ...); metrics in the Prometheus text format at `/metrics`, and a JSON summary
at `/status`, on `NodeSettings.metrics_host`/`metrics_port` (plain HTTP: keep it on 127.0.0.1).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import random
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import trio

from pbft import codec
from pbft.app import StateMachine
from pbft.codec import signing_payload
from pbft.config import ClusterConfig
from pbft.core import Ready, Replica
from pbft.core.drops import SUSPICIOUS
from pbft.core.sizes import replica_bytes_budget
from pbft.crypto import Signer
from pbft.ed25519 import Ed25519Verifier
from pbft.messages import (
    Checkpoint,
    Message,
    NewView,
    PreparedCertificate,
    Reply,
    Request,
    SnapshotRecord,
    VoteHorizon,
)

from ._errors import unwrap_single_error
from .metrics import Histogram, MetricsText, serve_metrics
from .storage import ReplicaStorage, StorageStatistics
from .transport import (
    ROUTE_REGISTRATION,
    Peer,
    Transport,
    TransportSettings,
    TransportStatistics,
)

__all__ = [
    "NodeSettings", "NodeStatistics", "ReplicaNode", "is_recovering", "replica_health",
    "serve_replica",
]  # fmt: skip

log = logging.getLogger("pbft.runtime.node")

#: Messages that never travel on the network.
_LOCAL_ONLY = (SnapshotRecord, PreparedCertificate, VoteHorizon)
#: What a replica may pass on from another (the core does: a NEW-VIEW to a replica still asking
#: for an installed view, the CHECKPOINTs proving a stable checkpoint to one behind it). They
#: are accepted by their signature, which the core checks, not by the connection: a signed
#: message means the same whoever carries it. Votes are not relayed and stay bound to their
#: sender's connection.
RELAYABLE = (NewView, Checkpoint)


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """How a node runs; every bound is here."""

    #: The core's timers (V1, V4, S1) are driven by a tick this often.
    tick_interval_ms: int = 10
    #: Messages taken from the inbox per round at most.
    inbox_batch_max: int = 2048
    #: The metrics endpoint; None: no endpoint. Port 0 picks a free port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 0
    #: SQLite's synchronous mode: FULL makes every append durable (never lower it in
    #: production: a replica that forgets its votes can equivocate).
    storage_synchronous: str = "FULL"
    #: Run each durable append in the event loop (the default: no thread hand-off, two fewer
    #: wake-ups per append on the critical path; on 2 cores with ~0.2 ms fsyncs `pbft bench`
    #: measured 3,254 vs 2,852 ordered 0/0 requests/s and a 5.2 vs 6.3 ms single-client p50) or
    #: in a worker thread (the loop keeps reading connections during the fsync: for disks whose
    #: fsync takes milliseconds).
    persist_in_thread: bool = False
    #: Requests whose receive time is kept for the latency histogram.
    latency_tracked_max: int = 10_000
    #: Health is "behind" once others have shown the replica more than this many sequence
    #: numbers it has not executed; None: the configuration's checkpoint_interval K. Under load
    #: a healthy replica trails by the batches in flight (a few); K behind, the others have
    #: taken a checkpoint it has not reached, which is where the core itself stops waiting and
    #: fetches (S1). See README, "Status and health".
    health_behind_max: int | None = None
    #: A client connection may carry a pool of identities (see the module docstring), hence
    #: a deeper reply queue than the transport's default.
    transport: TransportSettings = field(
        default_factory=lambda: TransportSettings(client_send_queue_bytes_max=16 * 1024 * 1024)
    )

    def __post_init__(self) -> None:
        if self.tick_interval_ms <= 0 or self.inbox_batch_max <= 0:
            raise ValueError("tick_interval_ms and inbox_batch_max must be positive")
        if self.latency_tracked_max <= 0:
            raise ValueError("latency_tracked_max must be positive")
        if self.health_behind_max is not None and self.health_behind_max <= 0:
            raise ValueError("health_behind_max must be positive (or None: checkpoint_interval)")


@dataclass(frozen=True, slots=True)
class NodeStatistics:
    """A snapshot of one node (see `ReplicaNode.statistics`)."""

    replica: int
    view: int
    view_active: bool
    primary: int
    last_executed: int
    low_watermark: int
    high_watermark: int
    committed_requests: int
    committed_batches: int
    replies_sent: int
    view_changes_started: int
    state_transfers_completed: int
    #: Messages the core dropped, and the node's own door checks, by reason.
    dropped: dict[str, int]
    node_dropped: dict[str, int]
    #: Rounds of the loop, `Ready`s handled, persist calls and the time spent in them.
    rounds: int
    readies: int
    persist_calls: int
    persist_seconds: float
    #: Receive → reply latency of requests that arrived at this replica (seconds, bucket
    #: upper bounds; NaN when nothing was measured).
    latency_s_p50: float
    latency_s_p99: float
    memory_footprint: dict[str, int]
    transport: TransportStatistics
    storage: StorageStatistics


def is_recovering(
    *, fetching_state: bool, view_active: bool, behind: int, behind_max: int, stalled_ms: int,
    stall_ms_max: int,
) -> bool:
    """A replica is recovering while it fetches state (S1), runs a view change, or knows others
    are ahead (`behind` > 0) and either trails by more than `behind_max` or has executed
    nothing for `stall_ms_max` (state_transfer_timeout_ms: when the core asks others for the
    log, S1). Trailing by the batches in flight while executing is the normal case."""
    if fetching_state or not view_active:
        return True
    return behind > behind_max or (behind > 0 and stalled_ms >= stall_ms_max)


def replica_health(
    *, view_active: bool, fetching_state: bool, behind: int, behind_max: int, following: bool,
    peers_connected: int, peers_heard: int, f: int,
) -> str:
    """One word for an operator, the first that applies: "view_change" (no view installed),
    "catching_up" (fetching state, S1), "behind" (more than `behind_max` sequence numbers
    behind what others have shown), "following" (V5': back in the view the others are in,
    executing but not voting until the next view, so the cluster runs without this replica's
    votes), "isolated" (fewer than 2f other replicas connected, or fewer than 2f heard from
    within heartbeat_timeout_s: TCP may call a silently partitioned link connected, but every
    live link carries at least a heartbeat per heartbeat_interval_s), else "ok"."""
    if not view_active:
        return "view_change"
    if fetching_state:
        return "catching_up"
    if behind > behind_max:
        return "behind"
    if following:
        return "following"
    if peers_connected < 2 * f or peers_heard < 2 * f:
        return "isolated"
    return "ok"


class ReplicaNode:
    """One running replica: its core, storage and transport. Built by `serve_replica`, which
    hands it to `nursery.start`'s caller; use `statistics()`, `port`, `metrics_port`."""

    def __init__(
        self,
        replica: Replica,
        storage: ReplicaStorage,
        transport: Transport,
        settings: NodeSettings,
    ) -> None:
        self.replica = replica
        self.config = replica.config
        self.id = replica.id
        self.storage = storage
        self.transport = transport
        self.settings = settings
        #: Where the transport and metrics listen, once started.
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._others = frozenset(r for r in range(self.config.n) if r != replica.id)
        self._epoch_ms = time.time_ns() // 1_000_000
        self._epoch_trio = trio.current_time()
        self._started_at = self._epoch_trio
        self.node_dropped: Counter[str] = Counter()
        self._application_errors_logged = 0
        self._drops_logged: Counter[str] = Counter()
        self._arrivals: OrderedDict[tuple[bytes, int], float] = OrderedDict()
        #: Client key -> the key of the connection its replies go to (see the module docstring).
        self._routes: OrderedDict[bytes, bytes] = OrderedDict()
        self._route_verifier = Ed25519Verifier()
        self.latency = Histogram()
        self.committed_requests = 0
        self.committed_batches = 0
        self.replies_sent = 0
        self._rounds = 0
        self._readies = 0
        #: Durable appends and their durations (count and sum give the statistics).
        self._persist_histogram = Histogram()
        self._low_watermark_persisted = storage.statistics().collected_through
        self._view = (replica.view, replica.view_active)
        #: The last sequence number executed, and when (trio time) it changed.
        self._progress = (replica.last_executed, self._epoch_trio)
        #: The state digest and what it was computed at (see `state_digest`).
        self._digest_key: tuple[int, int] | None = None
        self._digest = b""

    # ------------------------------------------------------------------ clock

    def now_ms(self) -> int:
        """Wall-clock milliseconds at start, advanced by trio's monotonic clock since."""
        return self._epoch_ms + int((trio.current_time() - self._epoch_trio) * 1000)

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """The loop that owns the core; returns when the transport's inbox ends."""
        replica, transport = self.replica, self.transport
        tick_s = self.settings.tick_interval_ms / 1000
        batch_max = self.settings.inbox_batch_max
        deliver = self._deliver
        replica.tick(self.now_ms())
        await self._flush()  # what recovery wants re-sent
        next_tick = trio.current_time() + tick_s
        while True:
            batch = None
            with trio.move_on_at(next_tick):
                try:
                    batch = await transport.wait_messages(batch_max)
                except trio.EndOfChannel:
                    return
            self._rounds += 1
            if batch:
                for peer, message in batch:
                    deliver(peer, message)
            now = trio.current_time()
            if now >= next_tick:
                replica.tick(self.now_ms())
                next_tick = now + tick_s
            if replica.has_ready():
                await self._flush()

    def _deliver(self, peer: Peer, message: Message) -> None:
        replica = self.replica
        message_type = type(message)
        if peer.replica_id is None:
            if message_type is not Request:
                self._drop("client_sent_protocol_message", peer, message)
                return
            client = message.client
            connection = peer.public_key
            if client == connection:
                if self._routes.get(client, client) != client:
                    self._set_route(client, client)  # C's own connection: authenticated as C
            elif message.timestamp == 0 and message.read_only:
                self._register_route(peer, message)
                return
            key = (message.client, message.timestamp)
            arrivals = self._arrivals
            if key not in arrivals:
                arrivals[key] = trio.current_time()
                if len(arrivals) > self.settings.latency_tracked_max:
                    arrivals.popitem(last=False)
        else:
            if message_type is Reply or isinstance(message, _LOCAL_ONLY):
                self._drop("unexpected_message_type", peer, message)
                return
            sender = getattr(message, "replica", peer.replica_id)
            if sender != peer.replica_id and message_type not in RELAYABLE:
                self._drop("sender_mismatch", peer, message)
                return
        dropped = replica.dropped
        before = dropped.total()
        replica.receive(message)
        if dropped.total() != before:
            self._log_core_drop(peer, message, before)

    def _register_route(self, peer: Peer, message: Request) -> None:
        """A route registration (`transport.ROUTE_REGISTRATION`): C's replies go to this
        connection if C signed a registration naming this connection's key. Any other request
        of C carried here is ordered as usual but moves nothing: a connection that replays C's
        requests (or C's registration for another connection) gets none of C's replies."""
        if message.operation != ROUTE_REGISTRATION + peer.public_key:
            self._drop("bad_route_registration", peer, message)
            return
        client = message.client
        if self._routes.get(client) == peer.public_key:
            return
        if not self._route_verifier.verify(client, signing_payload(message), message.signature):
            self._drop("bad_request_signature", peer, message)
            return
        self._set_route(client, peer.public_key)

    def _set_route(self, client: bytes, connection_key: bytes) -> None:
        routes = self._routes
        routes[client] = connection_key
        routes.move_to_end(client)
        if len(routes) > self.config.client_table_max:
            routes.popitem(last=False)

    def _drop(self, reason: str, peer: Peer, message: Message) -> None:
        self.node_dropped[reason] += 1
        self._log_drop(reason, peer, message, self.node_dropped[reason], suspicious=True)

    def _log_core_drop(self, peer: Peer, message: Message, before: int) -> None:
        # Which reason moved: compare with what was logged so far (cheap: few reasons).
        for reason, count in self.replica.dropped.items():
            if count > self._drops_logged[reason]:
                self._drops_logged[reason] = count
                self._log_drop(reason, peer, message, count, reason in SUSPICIOUS)

    def _log_drop(
        self, reason: str, peer: Peer, message: Message, count: int, suspicious: bool
    ) -> None:
        # The 1st, 10th, 100th, ... of each reason: an attack cannot flood the log.
        if count & (count - 1) and not math.log10(count).is_integer():
            return
        if not suspicious and not log.isEnabledFor(logging.DEBUG):
            return
        log.log(
            logging.WARNING if suspicious else logging.DEBUG,
            "replica %d dropped %s from %s: %s (%d so far)",
            self.id,
            type(message).__name__,
            peer,
            reason,
            count,
            extra={"replica": self.id, "peer": str(peer), "reason": reason, "count": count},
        )

    async def _flush(self) -> None:
        """Handle every `Ready`: persist (durably), then send, then advance. A Ready that need
        not be durable first (only votes under a durable horizon, `Ready.durable_first`) is sent
        first and persisted after, so its fsync overlaps the messages' trip."""
        replica = self.replica
        in_thread = self.settings.persist_in_thread
        while replica.has_ready():
            ready = replica.ready()
            self._readies += 1
            if ready.durable_first:
                await self._persist(ready, in_thread)
                self._send(ready)
            else:
                self._send(ready)
                # Let the links' sender tasks (woken by the sends; trio may run them after us
                # in the next batch, hence twice) write before the fsync blocks the loop.
                await trio.lowlevel.checkpoint()
                await trio.lowlevel.checkpoint()
                await self._persist(ready, in_thread)
            for executed in ready.executed:
                self.committed_batches += 1
                self.committed_requests += len(executed.requests)
            if replica.application_errors.total() != self._application_errors_logged:
                self._log_application_errors()
            replica.advance()
            self._note_view(ready.status.view)
            if ready.status.last_executed != self._progress[0]:
                self._progress = (ready.status.last_executed, trio.current_time())

    def _log_application_errors(self) -> None:
        errors = self.replica.application_errors
        self._application_errors_logged = errors.total()
        log.warning(
            "replica %d: the application raised (%s); those requests got an application-error "
            "result and the replica goes on", self.id,
            ", ".join(f"{name} x{count}" for name, count in sorted(errors.items())),
            extra={"replica": self.id, "application_errors": dict(errors)},
        )

    async def _persist(self, ready: Ready, in_thread: bool) -> None:
        low_watermark = ready.status.low_watermark
        if not ready.persist and low_watermark <= self._low_watermark_persisted:
            return
        storage = self.storage
        started = time.perf_counter()
        if in_thread:
            await trio.to_thread.run_sync(
                functools.partial(storage.append, ready.persist, low_watermark=low_watermark)
            )
        else:
            storage.append(ready.persist, low_watermark=low_watermark)
        self._persist_histogram.observe(time.perf_counter() - started)
        self._low_watermark_persisted = low_watermark

    def _send(self, ready: Ready) -> None:
        transport = self.transport
        others = self._others
        for outbound in ready.messages:
            to = outbound.to
            if len(to) == 1:
                transport.send(to[0], outbound.message)
            elif len(to) == len(others) and others.issuperset(to):
                transport.broadcast(outbound.message)
            else:
                transport.send_many(to, outbound.message)
        if ready.replies:
            arrivals, routes = self._arrivals, self._routes
            now = trio.current_time()
            for reply in ready.replies:
                client = reply.client
                if transport.send_to_client(routes.get(client, client), reply):
                    self.replies_sent += 1
                arrived = arrivals.pop((reply.client, reply.timestamp), None)
                if arrived is not None:
                    self.latency.observe(now - arrived)

    def _note_view(self, view: int) -> None:
        state = (view, self.replica.view_active)
        if state == self._view:
            return
        self._view = state
        if state[1]:
            log.info(
                "replica %d entered view %d (primary %d)",
                self.id, view, self.config.primary(view),
                extra={"replica": self.id, "view": view, "reason": "new_view"},
            )  # fmt: skip
        else:
            log.warning(
                "replica %d started a view change to view %d",
                self.id, view,
                extra={"replica": self.id, "view": view, "reason": "view_change"},
            )  # fmt: skip

    # ------------------------------------------------------------------ observing

    @property
    def behind_max(self) -> int:
        """The most sequence numbers behind that health still calls "ok"."""
        configured = self.settings.health_behind_max
        return self.config.checkpoint_interval if configured is None else configured

    def behind(self) -> int:
        """Sequence numbers others have shown us (signed COMMITs, the primary's PRE-PREPAREs,
        CHECKPOINTs) that we have not executed. It can only over-state: one faulty replica's
        signed CHECKPOINT far ahead raises it; nothing can hide a real lag from it, except that
        a replica cut off from the others learns of nothing (health "isolated")."""
        status = self.replica.status()
        return max(0, status.highest_seen - status.last_executed)

    def recovering(self) -> bool:
        """See `is_recovering`; stalled since the last sequence number executed here."""
        replica = self.replica
        return is_recovering(
            fetching_state=replica.fetching_state,
            view_active=replica.view_active,
            behind=self.behind(),
            behind_max=self.behind_max,
            stalled_ms=int((trio.current_time() - self._progress[1]) * 1000),
            stall_ms_max=self.config.state_transfer_timeout_ms,
        )

    def health(self) -> str:
        """See `replica_health`."""
        replica = self.replica
        return replica_health(
            view_active=replica.view_active,
            fetching_state=replica.fetching_state,
            behind=self.behind(),
            behind_max=self.behind_max,
            following=replica.following,
            peers_connected=len(self.transport.connected_peers()),
            peers_heard=len(self.transport.heard_peers()),
            f=self.config.f,
        )

    def state_digest(self) -> bytes:
        """The digest of the replica's state (application, reply cache, last batch timestamp)
        as a CHECKPOINT at `last_executed` would carry it (C1). Snapshotting the application
        costs its size, so it is computed at most once per executed sequence number (and state
        transfer), on demand: never per request to /status."""
        replica = self.replica
        key = (replica.last_executed, replica.state_transfers_completed)
        if key != self._digest_key:
            self._digest = replica.state_digest()
            self._digest_key = key
        return self._digest

    def statistics(self) -> NodeStatistics:
        replica = self.replica
        status = replica.status()
        return NodeStatistics(
            replica=self.id,
            view=status.view,
            view_active=replica.view_active,
            primary=status.primary,
            last_executed=status.last_executed,
            low_watermark=status.low_watermark,
            high_watermark=status.high_watermark,
            committed_requests=self.committed_requests,
            committed_batches=self.committed_batches,
            replies_sent=self.replies_sent,
            view_changes_started=replica.view_changes_started,
            state_transfers_completed=replica.state_transfers_completed,
            dropped=dict(replica.dropped),
            node_dropped=dict(self.node_dropped),
            rounds=self._rounds,
            readies=self._readies,
            persist_calls=self._persist_histogram.count,
            persist_seconds=self._persist_histogram.sum,
            latency_s_p50=self.latency.quantile(0.5),
            latency_s_p99=self.latency.quantile(0.99),
            memory_footprint=replica.memory_footprint(),
            transport=self.transport.statistics(),
            storage=self.storage.statistics(),
        )

    def render_status(self) -> dict:
        """The JSON object served at /status (what `pbft status` shows)."""
        replica = self.replica
        status = replica.status()
        return {
            "replica": self.id,
            # Who answers, and for which cluster: `pbft status` checks both against its
            # configuration, so a wrong address (another replica's, another cluster's) shows.
            "public_key": self.config.public_key(self.id).hex(),
            "cluster_id": self.config.cluster_id,
            "view": status.view,
            "view_active": replica.view_active,
            "primary": status.primary,
            "last_executed": status.last_executed,
            "low_watermark": status.low_watermark,
            "high_watermark": status.high_watermark,
            "pending_requests": status.pending_requests,
            "highest_seen": status.highest_seen,
            "behind": self.behind(),
            "behind_max": self.behind_max,
            "recovering": self.recovering(),
            "following": replica.following,
            "state_digest": self.state_digest().hex(),
            "committed_requests": self.committed_requests,
            "view_changes_started": replica.view_changes_started,
            "connected_peers": self.transport.connected_peers(),
            # Seconds since anything (a message or a heartbeat) arrived from each other replica.
            "peers_last_heard_s": {
                str(peer): None if age is None else round(age, 3)
                for peer, age in self.transport.statistics().last_heard_s.items()
            },
            "health": self.health(),
            "uptime_s": round(trio.current_time() - self._started_at, 3),
            "pid": os.getpid(),
        }

    def render_metrics(self) -> str:
        """The Prometheus text exposition served at /metrics."""
        replica = self.replica
        status = replica.status()
        transport = self.transport.statistics()
        storage = self.storage.statistics()
        labels = {"replica": self.id}
        m = MetricsText()
        m.metric("pbft_up", "gauge", "1 while the replica loop runs.", 1, labels)
        m.metric("pbft_requests_committed_total", "counter",
                 "Client requests executed in order (N6).", self.committed_requests)
        m.metric("pbft_batches_committed_total", "counter",
                 "Batches (sequence numbers) executed.", self.committed_batches)
        m.metric("pbft_replies_sent_total", "counter", "Replies queued to clients.",
                 self.replies_sent)
        m.metric("pbft_view", "gauge", "The current view.", status.view)
        m.metric("pbft_view_active", "gauge",
                 "1 if the current view is installed, 0 during a view change.",
                 int(replica.view_active))
        m.metric("pbft_primary", "gauge", "The primary of the current view.", status.primary)
        m.metric("pbft_last_executed", "gauge", "The last executed sequence number.",
                 status.last_executed)
        m.metric("pbft_low_watermark", "gauge", "The last stable checkpoint (h).",
                 status.low_watermark)
        m.metric("pbft_high_watermark", "gauge", "H = h + log_window.", status.high_watermark)
        m.metric("pbft_sequences_behind", "gauge",
                 "Sequence numbers others have shown this replica that it has not executed.",
                 self.behind())
        m.metric("pbft_sequences_behind_max", "gauge",
                 "Health is not ok above this many sequence numbers behind.", self.behind_max)
        m.metric("pbft_recovering", "gauge",
                 "1 while fetching state, changing view, or behind and not executing.",
                 int(self.recovering()))
        m.metric("pbft_following", "gauge",
                 "1 while following the view without voting in it (V5').",
                 int(replica.following))
        m.metric("pbft_view_changes_total", "counter", "View changes this replica started.",
                 replica.view_changes_started)
        m.metric("pbft_state_transfers_total", "counter", "State transfers completed (S1).",
                 replica.state_transfers_completed)
        m.family("pbft_dropped_messages_total", "counter",
                 "Messages dropped, by layer (core rules, node door checks, transport sends) "
                 "and reason.")
        for layer, counts in (("core", replica.dropped), ("node", self.node_dropped),
                              ("transport", transport.dropped)):
            for reason in sorted(counts):
                m.sample("pbft_dropped_messages_total", counts[reason],
                         {"layer": layer, "reason": reason})
        m.labelled("pbft_application_errors_total", "counter",
                   "Requests whose execution or query raised in the application, by exception "
                   "type (each got an application-error result).",
                   "type", replica.application_errors)
        m.labelled("pbft_connections_refused_total", "counter",
                   "Inbound connections refused or closed for bad behaviour, by reason.",
                   "reason", transport.refused)
        m.labelled("pbft_outbound_connection_failures_total", "counter",
                   "Failed connection attempts to other replicas, by reason.", "reason",
                   transport.outbound_failures)
        m.family("pbft_queue_depth", "gauge", "Messages waiting, by queue.")
        m.sample("pbft_queue_depth", transport.inbox_depth, {"queue": "inbox"})
        m.sample("pbft_queue_depth", transport.client_send_queue_depth,
                 {"queue": "client_send"})
        m.sample("pbft_queue_depth", status.pending_requests, {"queue": "pending_requests"})
        for peer_id, depth in sorted(transport.send_queue_depths.items()):
            m.sample("pbft_queue_depth", depth, {"queue": f"send_replica_{peer_id}"})
        m.family("pbft_queue_bytes", "gauge",
                 "Bytes waiting in send queues (each bounded in bytes), by queue.")
        m.sample("pbft_queue_bytes", transport.client_send_queue_bytes, {"queue": "client_send"})
        for peer_id, queued in sorted(transport.send_queue_bytes.items()):
            m.sample("pbft_queue_bytes", queued, {"queue": f"send_replica_{peer_id}"})
        m.family("pbft_peer_last_heard_seconds", "gauge",
                 "Seconds since anything arrived from each other replica (absent: never).")
        for peer_id, age in sorted(transport.last_heard_s.items()):
            if age is not None:
                m.sample("pbft_peer_last_heard_seconds", round(age, 3), {"peer": peer_id})
        m.labelled("pbft_connections_closed_total", "counter",
                   "Connections closed as silent (peer_silent) or idle (client_idle).",
                   "reason", transport.closed)
        m.labelled("pbft_core_structure_size", "gauge",
                   "Entries in each bounded structure of the core.", "structure",
                   replica.memory_footprint())
        m.metric("pbft_core_bytes_held", "gauge",
                 "Protocol bytes the core holds (log, batches, waiting requests, stash).",
                 replica.bytes_held())
        m.metric("pbft_core_bytes_budget", "gauge",
                 "The most protocol bytes the core may hold with this configuration.",
                 replica_bytes_budget(replica.config))
        m.metric("pbft_connections", "gauge", "Open connections, inbound.",
                 transport.connections_inbound, {"direction": "inbound"})
        m.sample("pbft_connections", transport.connections_outbound, {"direction": "outbound"})
        m.metric("pbft_client_connections", "gauge", "Clients connected.",
                 transport.client_connections)
        m.metric("pbft_frames_received_total", "counter", "Frames received.",
                 transport.frames_received)
        m.metric("pbft_frames_sent_total", "counter", "Frames sent.", transport.frames_sent)
        m.metric("pbft_bytes_received_total", "counter", "Bytes received.",
                 transport.bytes_received)
        m.metric("pbft_bytes_sent_total", "counter", "Bytes sent.", transport.bytes_sent)
        m.histogram("pbft_request_latency_seconds",
                    "From a client request's arrival at this replica to its reply being queued.",
                    self.latency)
        m.histogram("pbft_storage_append_seconds",
                    "Durable appends (one transaction, fsync included) per Ready.",
                    self._persist_histogram)
        m.metric("pbft_storage_records", "gauge", "Records stored now.", storage.records)
        m.metric("pbft_storage_records_appended_total", "counter", "Records appended.",
                 storage.records_appended)
        m.metric("pbft_storage_bytes_appended_total", "counter", "Bytes appended.",
                 storage.bytes_appended)
        m.metric("pbft_storage_records_collected_total", "counter",
                 "Records garbage-collected below stable checkpoints (C2).",
                 storage.records_collected)
        m.metric("pbft_loop_rounds_total", "counter", "Rounds of the replica loop.",
                 self._rounds)
        return m.text()


async def serve_replica(
    config: ClusterConfig,
    replica_id: int,
    signer: Signer,
    app: StateMachine,
    data_dir: str | os.PathLike[str],
    *,
    host: str | None = None,
    port: int | None = None,
    settings: NodeSettings = NodeSettings(),
    rng: random.Random | None = None,
    task_status: trio.TaskStatus[ReplicaNode] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run replica `replica_id` of `config` until cancelled; for `await nursery.start(...)`,
    which returns the `ReplicaNode` once it listens.

    `signer` must hold the replica's configured key (its signing and TLS identity); `app` must be
    fresh (it is restored from storage). `data_dir` holds the replica's storage (created if
    missing). `host`/`port` default to the replica's configured address (port 0: a free port).
    The node owns the storage, the transport, every connection and the metrics endpoint, and
    closes them all when cancelled.

    Raises ValueError if `signer` is not the configured key; `StorageCorruptError` or
    `StorageMismatchError` (before listening) if the data directory cannot be trusted; OSError if
    it cannot listen; `StorageError` if a later append fails (the replica must stop: it cannot
    promise durability any more).
    """
    info = config.replicas[replica_id]
    if signer.public_key != info.public_key:
        raise ValueError(f"the signer's key is not the key configured for replica {replica_id}")
    host = info.host if host is None else host
    port = info.port if port is None else port
    storage = await trio.to_thread.run_sync(
        functools.partial(
            ReplicaStorage,
            Path(data_dir),
            replica_id=replica_id,
            public_key=signer.public_key,
            limits=codec.Limits.from_config(config),
            synchronous=settings.storage_synchronous,
        )
    )
    try:
        records = await trio.to_thread.run_sync(storage.load)
        wall_ms = time.time_ns() // 1_000_000
        replica = Replica.recover(
            config, replica_id, signer, Ed25519Verifier(), app, records, wall_ms
        )
        transport = Transport.for_replica(
            config, replica_id, signer,  # type: ignore[arg-type]
            rng=rng or random.Random(), settings=settings.transport,
        )  # fmt: skip
        node = ReplicaNode(replica, storage, transport, settings)
        with unwrap_single_error():
            async with trio.open_nursery() as nursery:
                node.port = await nursery.start(transport.serve, host, port)
                if settings.metrics_port is not None:
                    node.metrics_port = await nursery.start(
                        functools.partial(
                            serve_metrics,
                            node.render_metrics,
                            node.render_status,
                            settings.metrics_host,
                            settings.metrics_port,
                        )
                    )
                log.info(
                    "replica %d listening on %s:%d (metrics %s), recovered %d records: view %d, "
                    "last executed %d, stable checkpoint %d",
                    replica_id, host, node.port,
                    f"{settings.metrics_host}:{node.metrics_port}" if node.metrics_port else "off",
                    len(records), replica.view, replica.last_executed, replica.stable_checkpoint,
                    extra={
                        "replica": replica_id, "port": node.port, "metrics_port": node.metrics_port,
                        "records": len(records), "view": replica.view,
                        "last_executed": replica.last_executed, "reason": "started",
                    },
                )  # fmt: skip
                task_status.started(node)
                try:
                    await node.run()
                finally:
                    nursery.cancel_scope.cancel()
                    log.info("replica %d stopped", replica_id,
                             extra={"replica": replica_id, "reason": "stopped"})  # fmt: skip
    finally:
        storage.close()
