"""The network transport of one node: mutually authenticated TLS 1.3 links carrying frames.

Topology. A replica dials every other replica once and sends to it only on that outbound
connection (one bounded queue and one sender task per peer, reconnecting with jittered
exponential backoff). Everything that arrives, on any connection, is decoded and delivered as
`(Peer, message)` into one bounded channel, `Transport.inbox`, for the node loop. Clients dial
the replicas; a replica answers a client on the connection the client opened
(`send_to_client`), so clients need no listening socket.

Identity. Every connection is TLS 1.3 with a certificate on both sides (`pbft.runtime.tls`;
streams are `tls.TlsSocketStream`, stdlib ssl sockets driven by trio, for their low cost per
message),
and after the handshake the peer's Ed25519 key is pinned: an outbound link accepts only the key
the configuration gives for that replica; an inbound connection is accepted only if the
caller's `accept_peer(public_key)` names a `Peer` for the key. Anything else is refused, counted
and logged (logger `pbft.runtime.transport`, records carry `peer_address`, `reason`, `peer`).

Bad input. A peer that sends a frame too large (for a client: larger than a REQUEST can be), a
truncated frame or bytes that do not decode is
disconnected (a peer sending garbage is not worth keeping); a well-formed message is delivered
whatever its signature says: checking signatures is the core's job.

Liveness. Every connection carries heartbeats (empty frames) in both directions whenever it has
had nothing to send for `heartbeat_interval_s`, and a connection on which nothing at all
arrived for `heartbeat_timeout_s` (while we were ready to read) is closed as `peer_silent`: a
silent partition, a frozen peer or a connection stuck in TCP retransmission back-off no longer
looks connected, and an outbound link then reconnects with the usual backoff. Rejoin bound:
once the network between two replicas works again, their links are up and carrying messages
within `TransportSettings.rejoin_bound_s` = heartbeat_timeout_s + handshake_timeout_s +
reconnect_delay_max_s (9 s with the defaults): a stale connection is given up within the
first term, a connection attempt begun before the network healed ends within the second, and
the next one starts within the third. `last_heard` says, per replica, when anything last
arrived from it, on any connection (what health uses to see isolation).

Admission (inbound). At most `connections_max` connections at once, handshaking ones included,
and at most `connections_per_address_max` from one IP address (handshaking and client
connections; an authenticated replica's does not count). Clients may hold at most
`connections_max` - `replica_slots_reserved` (one per peer replica) authenticated
connections, so a crowd of clients cannot keep a replica out once its handshake is done; one key holds one connection (a new connection of a key replaces its old one); a
client connection that sent no REQUEST for `client_idle_timeout_s` is closed (`client_idle`).
A connection refused is closed at once, with its reason counted in `refused` and logged. A
handshake must finish within `handshake_timeout_s`, so silent connections cannot hold slots for
long.

Queues. Every per-connection send queue is bounded in bytes (`send_queue_bytes_max` per replica
peer, `client_send_queue_bytes_max` per client connection). A replica link that is full drops
its oldest frames (counted `send_queue_full`): everything sent to a replica is something it
can get again (the core retransmits, a replica behind fetches checkpoints and state), and the
newest frames are the ones a peer coming back needs. A full client queue refuses the new reply
(`client_queue_full`): the client retransmits and gets it from the reply cache.

Ownership. `serve` owns every task, socket and connection; cancelling it closes them all and
closes the inbox.
"""

from __future__ import annotations

import errno
import logging
import math
import random
import ssl
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import trio

from pbft import codec
from pbft.config import ClusterConfig, ReplicaInfo
from pbft.ed25519 import Ed25519Signer
from pbft.messages import Message

from . import tls
from .framing import ByteQueue, FrameCounters, FrameReader, FrameWriter, FramingError

__all__ = [
    "Peer",
    "Transport",
    "TransportSettings",
    "TransportStatistics",
    "peer_acceptor",
]

log = logging.getLogger("pbft.runtime.transport")

#: accept() fails with these when the process or system is out of descriptors or memory; the
#: listener is fine and accepting again later can succeed (the list trio's serve_listeners uses).
_ACCEPT_CAPACITY_ERRNOS = frozenset(
    code
    for code in (
        getattr(errno, name, None) for name in ("EMFILE", "ENFILE", "ENOMEM", "ENOBUFS")
    )
    if code is not None
)
_ACCEPT_RETRY_DELAY_S = 0.1
#: A REQUEST's encoding beyond its operation is about 120 bytes (tag, timestamp, key, flag,
#: signature, msgpack headers); the rest of this is margin.
_REQUEST_OVERHEAD_BYTES = 1024


#: The operation of a route registration: a read-only REQUEST, timestamp 0, signed by client
#: C, whose operation is this prefix and the key of the connection C's replies should take (a
#: client pool's shared connection). The replica node consumes it (`pbft.runtime.node`).
ROUTE_REGISTRATION = b"pbft/route-to:"


class _Inbox:
    """Delivered messages waiting for the node loop, in two queues: replicas' and clients',
    each bounded in encoded bytes. `take` empties the replicas' queue first, so a client that
    floods its connection delays the protocol's own messages by one batch at most (before,
    one shared queue made them wait behind the whole flood, long enough for request timers to
    fire). A reader whose queue is full waits in `put` (its TCP connection pushes back); one
    message is always let in, whatever its size (frames are bounded by the codec)."""

    def __init__(self, replica_bytes_max: int, client_bytes_max: int) -> None:
        self._queues: dict[bool, deque] = {True: deque(), False: deque()}
        self._bytes = {True: 0, False: 0}
        self._bytes_max = {True: replica_bytes_max, False: client_bytes_max}
        self._takers = trio.lowlevel.ParkingLot()
        self._putters = {True: trio.lowlevel.ParkingLot(), False: trio.lowlevel.ParkingLot()}
        self._closed = False

    def __len__(self) -> int:
        return len(self._queues[True]) + len(self._queues[False])

    @property
    def bytes(self) -> int:
        return self._bytes[True] + self._bytes[False]

    def put_nowait(self, peer: Peer, message: Message, size: int) -> bool:
        """Queue `message` if its queue has room; False if the caller must `put` (wait)."""
        if self._closed:
            raise trio.ClosedResourceError
        kind = peer.is_replica
        used = self._bytes[kind]
        if used and used + size > self._bytes_max[kind]:
            return False
        self._queues[kind].append((peer, message, size))
        self._bytes[kind] = used + size
        self._takers.unpark_all()
        return True

    async def put(self, peer: Peer, message: Message, size: int) -> None:
        """Queue `message`, waiting for room; raises trio.ClosedResourceError once closed."""
        while not self.put_nowait(peer, message, size):
            await self._putters[peer.is_replica].park()

    async def take(self, count_max: int) -> list[tuple[Peer, Message]]:
        """Wait for a message, then take up to `count_max`, replicas' first; raises
        trio.EndOfChannel once closed and empty."""
        while not self:
            if self._closed:
                raise trio.EndOfChannel
            await self._takers.park()
        taken: list[tuple[Peer, Message]] = []
        for kind in (True, False):
            queue = self._queues[kind]
            freed = 0
            while queue and len(taken) < count_max:
                peer, message, size = queue.popleft()
                taken.append((peer, message))
                freed += size
            if freed:
                self._bytes[kind] -= freed
                self._putters[kind].unpark_all()
        return taken

    def close(self) -> None:
        """No more puts (they raise trio.ClosedResourceError); takes drain what is left."""
        self._closed = True
        self._takers.unpark_all()
        for putters in self._putters.values():
            putters.unpark_all()


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is at the other end of an authenticated connection: a replica (`replica_id` set) or
    a client (`replica_id` None), named by its pinned Ed25519 public key."""

    public_key: bytes
    replica_id: int | None = None

    @property
    def is_replica(self) -> bool:
        return self.replica_id is not None

    def __str__(self) -> str:
        if self.replica_id is not None:
            return f"replica {self.replica_id}"
        return f"client {self.public_key.hex()[:16]}"


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """The transport's bounds and timings. Every queue is bounded by a field here."""

    #: Delivered messages waiting for the node loop: replicas' and clients' in two queues, each
    #: bounded in bytes (at least the frame bounds); a reader whose queue is full waits (TCP
    #: pushes back). The node takes replicas' messages first (see `_Inbox`).
    inbox_replica_bytes_max: int = 64 * 1024 * 1024
    inbox_client_bytes_max: int = 16 * 1024 * 1024
    #: Bytes of frames queued for one replica peer (at least the configuration's
    #: frame_bytes_max); beyond this the oldest are dropped (counted `send_queue_full`).
    send_queue_bytes_max: int = 16 * 1024 * 1024
    #: Bytes of frames queued for one client connection (at least frame_bytes_max); a reply
    #: that does not fit is dropped (counted `client_queue_full`).
    client_send_queue_bytes_max: int = 8 * 1024 * 1024
    #: Inbound connections open at once, handshaking ones included; more are refused. Clients
    #: may hold all but `replica_slots_reserved` of them once authenticated.
    connections_max: int = 1024
    #: Inbound connections from one IP address, handshaking and client ones (an authenticated
    #: replica's does not count); more are refused (`address_connections_max`).
    connections_per_address_max: int = 64
    #: A client connection that sent no REQUEST for this long is closed (`client_idle`);
    #: heartbeats do not count. A client that needs it again reconnects.
    client_idle_timeout_s: float = 120.0
    #: TCP connect plus TLS handshake must finish within this, both directions.
    handshake_timeout_s: float = 5.0
    #: A heartbeat (an empty frame) goes out on a connection idle for this long.
    heartbeat_interval_s: float = 0.5
    #: A connection on which nothing arrived for this long is closed as `peer_silent` (at
    #: least twice heartbeat_interval_s, so that one late heartbeat is not fatal).
    heartbeat_timeout_s: float = 2.0
    #: Reconnection backoff: the n-th consecutive failure waits a random time in
    #: [d/2, d] with d = min(reconnect_delay_max_s, reconnect_delay_min_s * 2**(n-1)).
    reconnect_delay_min_s: float = 0.05
    reconnect_delay_max_s: float = 2.0
    #: Bytes one coalesced `send_all` may carry (it may exceed this by one frame).
    coalesce_bytes_max: int = 256 * 1024
    #: Bytes asked of the stream per read (more when a large frame is partly read).
    receive_bytes_max: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"TransportSettings.{name} must be positive, got {value!r}")
        if self.reconnect_delay_min_s > self.reconnect_delay_max_s:
            raise ValueError("reconnect_delay_min_s must not exceed reconnect_delay_max_s")
        if self.heartbeat_timeout_s < 2 * self.heartbeat_interval_s:
            raise ValueError("heartbeat_timeout_s must be at least twice heartbeat_interval_s")

    @property
    def rejoin_bound_s(self) -> float:
        """Once the network between two replicas works again, their links carry messages
        within this many seconds (see the module docstring)."""
        return self.heartbeat_timeout_s + self.handshake_timeout_s + self.reconnect_delay_max_s


@dataclass(frozen=True, slots=True)
class TransportStatistics:
    """A snapshot of a transport's counters (all since construction unless said otherwise)."""

    frames_received: int
    bytes_received: int
    frames_sent: int
    bytes_sent: int
    #: `send_all` calls; frames_sent / sends is the coalescing factor.
    sends: int
    #: Open now (inbound: handshaking ones included).
    connections_inbound: int
    connections_outbound: int
    #: TCP connections accepted by the listener (refused ones included).
    connections_accepted: int
    #: Inbound connections refused or closed for bad behaviour, by reason.
    refused: dict[str, int]
    #: Connections (either direction) closed for silence (`peer_silent`) or, clients',
    #: idleness (`client_idle`).
    closed: dict[str, int]
    #: Outbound connection attempts that failed, by reason.
    outbound_failures: dict[str, int]
    #: Outgoing messages not sent, by reason.
    dropped: dict[str, int]
    #: Frames and bytes waiting, per replica peer.
    send_queue_depths: dict[int, int]
    send_queue_bytes: dict[int, int]
    #: Clients with an open connection, and frames and bytes waiting for them in total.
    client_connections: int
    client_send_queue_depth: int
    client_send_queue_bytes: int
    #: Seconds since anything arrived from each replica peer (None: never).
    last_heard_s: dict[int, float | None]
    #: Messages delivered but not yet taken by the node loop.
    inbox_depth: int
    #: Encoded bytes of the messages in the inbox (both queues).
    inbox_bytes: int


def peer_acceptor(
    config: ClusterConfig, *, replica_id: int | None, accept_clients: bool
) -> Callable[[bytes], Peer | None]:
    """The `accept_peer` predicate of a node of `config`: the other replicas' keys are
    replicas; any other key is a client if `accept_clients`, refused otherwise. `replica_id`
    is the node's own id (its own key is refused), None for a client node."""
    replicas = {info.public_key: info.id for info in config.replicas if info.id != replica_id}

    def accept_peer(public_key: bytes) -> Peer | None:
        found = replicas.get(public_key)
        if found is not None:
            return Peer(public_key, found)
        if accept_clients:
            return Peer(public_key)
        return None

    return accept_peer


class _Refusal(Exception):
    """A connection we will not use; `reason` is the statistics key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(eq=False, slots=True)
class _PeerLink:
    """The outbound side of one replica peer: its address, its queue, its connection state."""

    info: ReplicaInfo
    queue: ByteQueue
    address_known: trio.Event = field(default_factory=trio.Event)
    connected: trio.Event = field(default_factory=trio.Event)
    #: Successful connections so far.
    connections: int = 0


@dataclass(eq=False, slots=True)
class _InboundConnection:
    """An authenticated inbound connection and its send queue (replies for a client; nothing
    but heartbeats for a replica, which we send to on our own outbound link)."""

    peer: Peer
    address: str
    cancel_scope: trio.CancelScope
    queue: ByteQueue


class _WatchedStream(trio.abc.ReceiveStream):
    """The receive side of a connection, noting when anything arrives: each chunk moves the
    connection's watchdog deadline (`scope`) to now + heartbeat_timeout_s (or the client's
    idle deadline, if sooner) and, for a replica, its `last_heard` time."""

    __slots__ = ("_heard", "_replica_id", "_stream", "_timeout_s", "idle_deadline", "scope")

    def __init__(
        self,
        stream: trio.abc.ReceiveStream,
        scope: trio.CancelScope,
        timeout_s: float,
        heard: dict[int, float],
        replica_id: int | None,
    ) -> None:
        self._stream = stream
        self.scope = scope
        self._timeout_s = timeout_s
        self._heard = heard
        self._replica_id = replica_id
        self.idle_deadline = math.inf

    def rearm(self) -> None:
        self.scope.deadline = min(trio.current_time() + self._timeout_s, self.idle_deadline)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self._stream.receive_some(max_bytes)
        now = trio.current_time()
        self.scope.deadline = min(now + self._timeout_s, self.idle_deadline)
        if self._replica_id is not None:
            self._heard[self._replica_id] = now
        return data

    async def aclose(self) -> None:
        await self._stream.aclose()


class Transport:
    """The TLS links of one node (a replica, or a client that only dials). See the module
    docstring. Build with `for_replica`/`for_client` or directly; run with
    `await nursery.start(transport.serve, host, port)`; read `transport.inbox`."""

    def __init__(
        self,
        identity: Ed25519Signer,
        *,
        peers: Iterable[ReplicaInfo],
        accept_peer: Callable[[bytes], Peer | None],
        limits: codec.Limits,
        rng: random.Random,
        settings: TransportSettings = TransportSettings(),
    ) -> None:
        """`identity`'s seed is the TLS key; `peers` are the replicas to dial (a port of 0 means
        "not known yet": see `set_peer_address`); `accept_peer` decides who may connect in;
        `limits` bound decoding; `rng` draws the backoff jitter. Raises ValueError if a send
        queue could not hold one frame of `limits`, or if `connections_max` leaves clients no
        slot beside those reserved for the replicas."""
        self._identity = identity
        self._accept_peer = accept_peer
        self._limits = limits
        self._client_frame_bytes_max = min(
            limits.frame_bytes_max, limits.operation_bytes_max + _REQUEST_OVERHEAD_BYTES
        )
        self._rng = rng
        self._settings = settings
        self._server_context: ssl.SSLContext = tls.server_context(identity.seed)
        self._client_context: ssl.SSLContext = tls.client_context(identity.seed)
        for name in ("send_queue_bytes_max", "client_send_queue_bytes_max"):
            if getattr(settings, name) < limits.frame_bytes_max:
                raise ValueError(
                    f"TransportSettings.{name} ({getattr(settings, name)}) must hold one frame "
                    f"of frame_bytes_max ({limits.frame_bytes_max})"
                )
        self._links: dict[int, _PeerLink] = {}
        for info in peers:
            if info.id in self._links:
                raise ValueError(f"peer {info.id} given twice")
            link = _PeerLink(info, ByteQueue(settings.send_queue_bytes_max))
            if info.port:
                link.address_known.set()
            self._links[info.id] = link
        #: Inbound slots clients can never take: one per peer replica. (A replica whose new
        #: connection finds every slot taken while its old one lingers is refused and retries:
        #: the old one is closed within heartbeat_timeout_s.)
        self.replica_slots_reserved = len(self._links)
        self._client_connections_max = settings.connections_max - self.replica_slots_reserved
        if self._client_connections_max < 1:
            raise ValueError(
                f"connections_max ({settings.connections_max}) must exceed the "
                f"{self.replica_slots_reserved} slots reserved for replicas"
            )
        self._inbox = _Inbox(settings.inbox_replica_bytes_max, settings.inbox_client_bytes_max)
        #: The newest authenticated inbound connection of each key.
        self._inbound: dict[bytes, _InboundConnection] = {}
        self._received = FrameCounters()
        self._sent = FrameCounters()
        self._refused: Counter[str] = Counter()
        self._closed: Counter[str] = Counter()
        #: Open inbound connections per IP address (handshaking and clients').
        self._per_address: Counter[str] = Counter()
        self._clients = 0
        #: Replica id -> trio time anything last arrived from it (see `last_heard`).
        self._heard: dict[int, float] = {}
        self._outbound_failures: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._connections_inbound = 0
        self._connections_outbound = 0
        self._connections_accepted = 0
        self._serving = False
        #: The listening port once `serve` has started (None for a node that does not listen).
        self.port: int | None = None

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def for_replica(
        cls,
        config: ClusterConfig,
        replica_id: int,
        identity: Ed25519Signer,
        *,
        rng: random.Random,
        accept_clients: bool = True,
        settings: TransportSettings = TransportSettings(),
    ) -> Transport:
        """Replica `replica_id` of `config`: dials the other replicas at their configured
        addresses, accepts them and (if `accept_clients`) any client. Raises ValueError if
        `identity` is not the configured key of `replica_id`."""
        if config.public_key(replica_id) != identity.public_key:
            raise ValueError(f"identity is not the configured key of replica {replica_id}")
        return cls(
            identity,
            peers=[info for info in config.replicas if info.id != replica_id],
            accept_peer=peer_acceptor(config, replica_id=replica_id, accept_clients=accept_clients),
            limits=codec.Limits.from_config(config),
            rng=rng,
            settings=settings,
        )

    @classmethod
    def for_client(
        cls,
        config: ClusterConfig,
        identity: Ed25519Signer,
        *,
        rng: random.Random,
        settings: TransportSettings = TransportSettings(),
    ) -> Transport:
        """A client of `config`: dials every replica and accepts nobody. Serve it with host
        None (no listening socket); replies arrive in `inbox` from the replica that sent them."""
        return cls(
            identity,
            peers=config.replicas,
            accept_peer=lambda public_key: None,
            limits=codec.Limits.from_config(config),
            rng=rng,
            settings=settings,
        )

    # ------------------------------------------------------------------ public interface

    @property
    def public_key(self) -> bytes:
        return self._identity.public_key

    def set_peer_address(self, peer_id: int, host: str, port: int) -> None:
        """Dial replica `peer_id` at (host, port) from the next connection attempt on (useful
        when peers listen on port 0). Raises KeyError for an unknown peer."""
        link = self._links[peer_id]
        link.info = replace(link.info, host=host, port=port)
        link.address_known.set()

    def send(self, peer_id: int, message: Message) -> bool:
        """Queue `message` for replica `peer_id` without waiting. Returns False, and counts the
        reason in `dropped`, if the peer is unknown or the message too large; a full queue
        makes room by dropping its oldest frames (counted `send_queue_full`)."""
        link = self._links.get(peer_id)
        if link is None:
            self._dropped["unknown_peer"] += 1
            return False
        return self._enqueue_replica(link.queue, codec.encode(message))

    def broadcast(self, message: Message) -> int:
        """Queue `message` (encoded once) for every replica peer; returns how many queued it.
        Drops are counted as for `send`."""
        body = codec.encode(message)
        return sum(self._enqueue_replica(link.queue, body) for link in self._links.values())

    def send_many(self, peer_ids: Iterable[int], message: Message) -> int:
        """Queue `message` (encoded once) for each replica in `peer_ids`; returns how many
        queued it. Drops are counted as for `send`."""
        body = codec.encode(message)
        queued = 0
        for peer_id in peer_ids:
            link = self._links.get(peer_id)
            if link is None:
                self._dropped["unknown_peer"] += 1
            else:
                queued += self._enqueue_replica(link.queue, body)
        return queued

    def connections_made(self, peer_id: int) -> int:
        """How many times the outbound link to replica `peer_id` has connected so far: a
        change means a new connection (the peer may have restarted and forgotten state tied
        to the old one). Raises KeyError for an unknown peer."""
        return self._links[peer_id].connections

    def connected_peers(self) -> list[int]:
        """The replica ids whose outbound link is connected and authenticated right now."""
        return sorted(peer_id for peer_id, link in self._links.items() if link.connected.is_set())

    def last_heard(self, peer_id: int) -> float | None:
        """The trio time anything (a message or a heartbeat) last arrived from replica
        `peer_id` on any connection; None if nothing ever did."""
        return self._heard.get(peer_id)

    def heard_peers(self, within_s: float | None = None) -> list[int]:
        """The replica ids heard from within `within_s` seconds (default: heartbeat_timeout_s,
        the silence after which a connection is given up). A peer that is connected but has
        not been heard (a silent partition, a frozen process) is not among them."""
        window = self._settings.heartbeat_timeout_s if within_s is None else within_s
        now = trio.current_time()
        return sorted(peer_id for peer_id, at in self._heard.items() if now - at <= window)

    def send_to_client(self, client_key: bytes, message: Message) -> bool:
        """Queue `message` on the connection client `client_key` is connected on, without
        waiting. Returns False, counted in `dropped`, if that client has no connection open,
        the message is too large or the client's queue is full."""
        connection = self._inbound.get(client_key)
        if connection is None or connection.peer.is_replica:
            self._dropped["client_not_connected"] += 1
            return False
        return self._enqueue_client(connection.queue, codec.encode(message))

    async def wait_message(self) -> tuple[Peer, Message]:
        """The next delivered `(peer, message)`; raises trio.EndOfChannel after `serve` ended."""
        [delivered] = await self._inbox.take(1)
        return delivered

    async def wait_messages(self, messages_max: int) -> list[tuple[Peer, Message]]:
        """Wait for a delivered message, then take every one already waiting, up to
        `messages_max` in all, replicas' first: the node loop's way to feed the core a batch
        per wake-up (one scheduler round trip per batch, not per message). Raises
        trio.EndOfChannel after `serve` ended and the inbox is empty; ValueError if
        `messages_max` < 1."""
        if messages_max < 1:
            raise ValueError("messages_max must be at least 1")
        return await self._inbox.take(messages_max)

    async def wait_connected(self, peer_id: int) -> None:
        """Wait until the outbound link to replica `peer_id` is connected and authenticated."""
        await self._links[peer_id].connected.wait()

    def statistics(self) -> TransportStatistics:
        client_depth = client_bytes = clients = 0
        for connection in self._inbound.values():
            if not connection.peer.is_replica:
                clients += 1
                client_depth += len(connection.queue)
                client_bytes += connection.queue.bytes
        now = trio.current_time()
        return TransportStatistics(
            frames_received=self._received.frames,
            bytes_received=self._received.bytes,
            frames_sent=self._sent.frames,
            bytes_sent=self._sent.bytes,
            sends=self._sent.calls,
            connections_inbound=self._connections_inbound,
            connections_outbound=self._connections_outbound,
            connections_accepted=self._connections_accepted,
            refused=dict(self._refused),
            closed=dict(self._closed),
            outbound_failures=dict(self._outbound_failures),
            dropped=dict(self._dropped),
            send_queue_depths={peer_id: len(link.queue) for peer_id, link in self._links.items()},
            send_queue_bytes={peer_id: link.queue.bytes for peer_id, link in self._links.items()},
            client_connections=clients,
            client_send_queue_depth=client_depth,
            client_send_queue_bytes=client_bytes,
            last_heard_s={
                peer_id: None if peer_id not in self._heard else now - self._heard[peer_id]
                for peer_id in self._links
            },
            inbox_depth=len(self._inbox),
            inbox_bytes=self._inbox.bytes,
        )

    async def serve(
        self,
        host: str | None,
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on (host, port) (port 0: any free port; host None: do not listen) and dial
        every peer, until cancelled. Reports the bound port (or None) to `nursery.start`.

        Give a numeric host: a name resolving to several addresses gets several listeners, and
        with port 0 each its own port (`port` is the first). Runs once per transport; on exit
        every connection is closed and `inbox` ends. Raises OSError if it cannot listen.
        """
        if self._serving:
            raise RuntimeError("Transport.serve runs once per transport")
        self._serving = True
        try:
            async with trio.open_nursery() as nursery:
                if host is not None:
                    listeners = await trio.open_tcp_listeners(port, host=host)
                    self.port = listeners[0].socket.getsockname()[1]
                    for listener in listeners:
                        nursery.start_soon(self._accept_loop, listener, nursery)
                for link in self._links.values():
                    nursery.start_soon(self._run_link, link)
                task_status.started(self.port)
        finally:
            self._inbox.close()

    # ------------------------------------------------------------------ sending

    def _too_large(self, body: bytes) -> bool:
        if len(body) <= self._limits.frame_bytes_max:
            return False
        # Our own message, so a peer would refuse it: a bound set too tight, worth an error.
        self._dropped["message_too_large"] += 1
        log.error(
            "dropped an outgoing message of %d bytes: frame_bytes_max is %d",
            len(body),
            self._limits.frame_bytes_max,
            extra={"reason": "message_too_large"},
        )
        return True

    def _enqueue_replica(self, queue: ByteQueue, body: bytes) -> bool:
        """Queue for a replica; when full, the oldest frames go (see the module docstring:
        a replica can get all of them again). A frame fits: the queue holds frame_bytes_max."""
        if self._too_large(body):
            return False
        evicted = queue.put_evicting(body)
        if evicted:
            self._dropped["send_queue_full"] += evicted
        return True

    def _enqueue_client(self, queue: ByteQueue, body: bytes) -> bool:
        if self._too_large(body):
            return False
        try:
            if queue.put_nowait(body):
                return True
        except trio.ClosedResourceError:
            self._dropped["connection_closed"] += 1
            return False
        self._dropped["client_queue_full"] += 1
        return False

    async def _send_loop(
        self,
        stream: tls.TlsSocketStream,
        queue: ByteQueue,
        peer: Peer,
        address: str,
        connection_scope: trio.CancelScope,
    ) -> None:
        writer = FrameWriter(
            stream, coalesce_bytes_max=self._settings.coalesce_bytes_max, counters=self._sent
        )
        try:
            await writer.send_queued(
                queue, heartbeat_interval_s=self._settings.heartbeat_interval_s
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            self._dropped["connection_lost"] += writer.frames_in_flight
            log.info(
                "send to %s (%s) failed: %s; %d frames lost",
                address,
                peer,
                _describe(e),
                writer.frames_in_flight,
                extra={"peer_address": address, "peer": str(peer), "reason": "connection_lost"},
            )
        connection_scope.cancel()

    # ------------------------------------------------------------------ receiving

    async def _receive_loop(self, stream: tls.TlsSocketStream, peer: Peer, address: str) -> None:
        """Deliver decoded frames until the peer closes, the stream fails, a frame is bad or
        the watchdog fires (nothing heard for heartbeat_timeout_s, or a client idle)."""
        settings = self._settings
        # The watchdog: its deadline moves with every chunk that arrives (_WatchedStream) and
        # is lifted while we wait for the node loop to take a message (our own backpressure
        # is not the peer's silence).
        watchdog = trio.CancelScope()
        watched = _WatchedStream(
            stream, watchdog, settings.heartbeat_timeout_s, self._heard, peer.replica_id
        )
        idle_s = None if peer.is_replica else settings.client_idle_timeout_s
        if idle_s is not None:
            watched.idle_deadline = trio.current_time() + idle_s
        watched.rearm()
        with watchdog:
            await self._receive_frames(watched, peer, address, idle_s)
        if watchdog.cancelled_caught:
            if idle_s is not None and trio.current_time() >= watched.idle_deadline:
                reason = "client_idle"
                detail = f"no request for {idle_s} s"
            else:
                reason = "peer_silent"
                detail = f"nothing received for {settings.heartbeat_timeout_s} s"
            self._closed[reason] += 1
            log.info(
                "closing the connection with %s (%s): %s: %s",
                address,
                peer,
                reason,
                detail,
                extra={"peer_address": address, "peer": str(peer), "reason": reason},
            )

    async def _receive_frames(
        self, watched: _WatchedStream, peer: Peer, address: str, idle_s: float | None
    ) -> None:
        # Clients only ever send REQUESTs: holding them to a request's size bounds what
        # connections_max client connections can make us buffer far below frame_bytes_max each.
        frame_bytes_max = (
            self._limits.frame_bytes_max if peer.is_replica else self._client_frame_bytes_max
        )
        reader = FrameReader(
            watched,
            frame_bytes_max,
            receive_bytes_max=self._settings.receive_bytes_max,
            counters=self._received,
        )
        decode, limits, inbox = codec.decode, self._limits, self._inbox
        watchdog = watched.scope
        try:
            while True:
                body = await reader.receive_frame()
                if body is None:
                    log.debug("%s (%s) closed the connection", address, peer)
                    return
                if not body:
                    continue  # a heartbeat: the watched stream has noted it
                try:
                    message = decode(body, limits)
                except codec.DecodeError as e:
                    self._refuse(address, _decode_reason(e), str(e), peer)
                    return
                if idle_s is not None:
                    watched.idle_deadline = trio.current_time() + idle_s
                    watched.rearm()
                if not inbox.put_nowait(peer, message, len(body)):
                    watchdog.deadline = math.inf
                    await inbox.put(peer, message, len(body))
                    watched.rearm()
        except FramingError as e:
            self._refuse(address, e.reason, str(e), peer)
        except trio.BrokenResourceError as e:
            log.info(
                "connection with %s (%s) lost: %s",
                address,
                peer,
                _describe(e),
                extra={"peer_address": address, "peer": str(peer), "reason": "connection_lost"},
            )
        except trio.ClosedResourceError:
            # The inbox closed: serve() is ending.
            return

    async def _run_connection(
        self,
        stream: tls.TlsSocketStream,
        peer: Peer,
        address: str,
        outgoing: ByteQueue,
        scope_created: Callable[[trio.CancelScope], None] | None = None,
    ) -> None:
        """Receive, and send `outgoing` and heartbeats, on `stream` until either side stops."""
        async with trio.open_nursery() as nursery:
            if scope_created is not None:
                scope_created(nursery.cancel_scope)
            nursery.start_soon(
                self._send_loop, stream, outgoing, peer, address, nursery.cancel_scope
            )
            await self._receive_loop(stream, peer, address)
            nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------ TLS and pinning

    async def _wait_tls_peer_key(self, stream: tls.TlsSocketStream) -> bytes:
        """Handshake on `stream` and return the peer's Ed25519 key; raises _Refusal."""
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as e:
            raise _Refusal("tls_handshake_failed", _describe(e)) from None
        version = stream.version()
        if version != "TLSv1.3":  # the contexts allow nothing else; checked all the same
            raise _Refusal("not_tls13", f"negotiated {version}")
        try:
            return tls.peer_public_key(stream.getpeercert(binary_form=True))
        except tls.PeerCertificateError as e:
            raise _Refusal("bad_peer_certificate", str(e)) from None

    # ------------------------------------------------------------------ inbound

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    tcp_stream = await listener.accept()
                except OSError as e:
                    if e.errno not in _ACCEPT_CAPACITY_ERRNOS:
                        raise
                    log.error(
                        "accept failed: %s; retrying in %.1f s",
                        e,
                        _ACCEPT_RETRY_DELAY_S,
                        extra={"reason": "accept_capacity"},
                    )
                    await trio.sleep(_ACCEPT_RETRY_DELAY_S)
                    continue
                self._connections_accepted += 1
                settings = self._settings
                host, address = _host_and_address_of(tcp_stream)
                if self._connections_inbound >= settings.connections_max:
                    self._refuse(
                        address,
                        "connections_max",
                        f"{self._connections_inbound} inbound connections open, "
                        f"connections_max is {settings.connections_max}",
                    )
                    await trio.aclose_forcefully(tcp_stream)
                    continue
                if self._per_address[host] >= settings.connections_per_address_max:
                    self._refuse(
                        address,
                        "address_connections_max",
                        f"{self._per_address[host]} connections open from {host}, "
                        f"connections_per_address_max is {settings.connections_per_address_max}",
                    )
                    await trio.aclose_forcefully(tcp_stream)
                    continue
                # Counted here, not in the handler, so that a burst cannot overshoot the bound.
                self._connections_inbound += 1
                self._per_address[host] += 1
                nursery.start_soon(self._handle_inbound, tcp_stream, host, address)

    async def _handle_inbound(self, tcp_stream: trio.SocketStream, host: str, address: str) -> None:
        stream = tls.TlsSocketStream.wrap(tcp_stream, self._server_context, server_side=True)
        counted_at_address = True
        try:
            try:
                with trio.fail_after(self._settings.handshake_timeout_s):
                    public_key = await self._wait_tls_peer_key(stream)
            except trio.TooSlowError:
                self._refuse(
                    address,
                    "handshake_timeout",
                    f"no TLS handshake within {self._settings.handshake_timeout_s} s",
                )
                return
            except _Refusal as refusal:
                self._refuse(address, refusal.reason, refusal.detail)
                return
            peer = self._accept_peer(public_key)
            if peer is None:
                self._refuse(
                    address,
                    "unknown_peer_key",
                    f"key {public_key.hex()} is neither a replica of the configuration nor an "
                    "accepted client",
                )
                return
            if peer.is_replica:
                # A replica's connection is not the address's to account for (replicas and
                # clients may share a host), and it has its reserved slot.
                self._forget_address(host)
                counted_at_address = False
                await self._run_inbound(stream, peer, address)
                return
            if self._clients >= self._client_connections_max:
                self._refuse(
                    address,
                    "client_connections_max",
                    f"{self._clients} client connections open; the other "
                    f"{self.replica_slots_reserved} of connections_max "
                    f"({self._settings.connections_max}) are reserved for replicas",
                    peer,
                )
                return
            self._clients += 1
            try:
                await self._run_inbound(stream, peer, address)
            finally:
                self._clients -= 1
        finally:
            self._connections_inbound -= 1
            if counted_at_address:
                self._forget_address(host)
            await trio.aclose_forcefully(stream)

    def _forget_address(self, host: str) -> None:
        self._per_address[host] -= 1
        if self._per_address[host] <= 0:
            del self._per_address[host]

    async def _run_inbound(self, stream: tls.TlsSocketStream, peer: Peer, address: str) -> None:
        # A replica's inbound connection carries only our heartbeats back (we send to it on
        # our own outbound link), so its queue stays empty.
        connection = _InboundConnection(
            peer, address, trio.CancelScope(), ByteQueue(self._settings.client_send_queue_bytes_max)
        )

        def register(scope: trio.CancelScope) -> None:
            connection.cancel_scope = scope
            previous = self._inbound.get(peer.public_key)
            if previous is not None:
                # The peer reconnected: its old connection is most likely half dead.
                log.info(
                    "%s reconnected from %s; closing its connection from %s",
                    peer,
                    address,
                    previous.address,
                    extra={"peer_address": address, "peer": str(peer), "reason": "replaced"},
                )
                previous.cancel_scope.cancel()
            self._inbound[peer.public_key] = connection

        log.debug("accepted %s from %s", peer, address)
        try:
            await self._run_connection(
                stream, peer, address, connection.queue, scope_created=register
            )
        finally:
            if self._inbound.get(peer.public_key) is connection:
                del self._inbound[peer.public_key]
            connection.queue.close()

    def _refuse(self, address: str, reason: str, detail: str, peer: Peer | None = None) -> None:
        self._refused[reason] += 1
        who = f" ({peer})" if peer is not None else ""
        log.warning(
            "refused connection from %s%s: %s: %s",
            address,
            who,
            reason,
            detail,
            extra={
                "peer_address": address,
                "peer": str(peer) if peer is not None else None,
                "reason": reason,
            },
        )

    # ------------------------------------------------------------------ outbound

    async def _run_link(self, link: _PeerLink) -> None:
        """Keep one authenticated connection to `link`'s replica and send its queue on it."""
        failures = 0
        while True:
            await link.address_known.wait()
            info = link.info
            address = f"{info.host}:{info.port}"
            stream = await self._wait_connect(info, address)
            if stream is not None:
                connected_at = trio.current_time()
                self._connections_outbound += 1
                link.connections += 1
                link.connected.set()
                try:
                    await self._run_connection(
                        stream, Peer(info.public_key, info.id), address, link.queue
                    )
                finally:
                    self._connections_outbound -= 1
                    link.connected = trio.Event()
                    await trio.aclose_forcefully(stream)
                # Only a connection that lasted resets the backoff: a peer that completes the
                # handshake and then drops us (it does not know our key, it is restarting in a
                # loop) is retried as slowly as one that is down.
                if trio.current_time() - connected_at >= self._settings.reconnect_delay_max_s:
                    failures = 0
            failures += 1
            await trio.sleep(self._reconnect_delay_s(failures))

    async def _wait_connect(self, info: ReplicaInfo, address: str) -> tls.TlsSocketStream | None:
        """A connected, pinned stream to replica `info`, or None (logged, counted)."""
        stream: tls.TlsSocketStream | None = None
        try:
            with trio.fail_after(self._settings.handshake_timeout_s):
                try:
                    tcp_stream = await trio.open_tcp_stream(info.host, info.port)
                except OSError as e:
                    raise _Refusal("connect_failed", e.strerror or str(e)) from None
                stream = tls.TlsSocketStream.wrap(
                    tcp_stream, self._client_context, server_side=False
                )
                public_key = await self._wait_tls_peer_key(stream)
        except trio.TooSlowError:
            reason = "handshake_timeout"
            detail = f"not connected within {self._settings.handshake_timeout_s} s"
        except _Refusal as refusal:
            reason, detail = refusal.reason, refusal.detail
        else:
            if public_key == info.public_key:
                log.debug("connected to replica %d at %s", info.id, address)
                return stream
            reason = "peer_key_mismatch"
            detail = (
                f"expected key {info.public_key.hex()}, the peer presented {public_key.hex()}"
            )
        if stream is not None:
            await trio.aclose_forcefully(stream)
        self._outbound_failures[reason] += 1
        # A peer that is down is routine; a peer that is up and wrong is not.
        level = logging.INFO if reason == "connect_failed" else logging.WARNING
        log.log(
            level,
            "connection to replica %d at %s failed: %s: %s",
            info.id,
            address,
            reason,
            detail,
            extra={"peer_address": address, "peer": f"replica {info.id}", "reason": reason},
        )
        return None

    def _reconnect_delay_s(self, failures: int) -> float:
        settings = self._settings
        ceiling = min(
            settings.reconnect_delay_max_s,
            settings.reconnect_delay_min_s * 2 ** min(failures - 1, 32),
        )
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


def _host_and_address_of(stream: trio.SocketStream) -> tuple[str, str]:
    """(the peer's IP address, "ip:port") of an accepted connection."""
    try:
        host, port, *_ = stream.socket.getpeername()
    except OSError:
        return "unknown", "unknown address"
    return host, f"{host}:{port}"


def _describe(error: BaseException) -> str:
    """The most specific text for a stream error: trio wraps ssl and socket errors."""
    cause = error.__cause__ or error.__context__ or error
    return str(cause) or type(cause).__name__


def _decode_reason(error: codec.DecodeError) -> str:
    """MalformedFrame -> "malformed_frame": the statistics key of a decoding failure."""
    name = type(error).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
