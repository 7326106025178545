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
whatever its signature says: checking signatures is the core's job. Inbound connections are
bounded (`connections_max`, handshakes included) and a handshake must finish within
`handshake_timeout_s`, so silent connections cannot hold slots for long.

Ownership. `serve` owns every task, socket and connection; cancelling it closes them all and
closes the inbox.
"""

from __future__ import annotations

import errno
import logging
import random
import ssl
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import trio

from pbft import codec
from pbft.config import ClusterConfig, ReplicaInfo
from pbft.ed25519 import Ed25519Signer
from pbft.messages import Message

from . import tls
from .framing import FrameCounters, FrameReader, FrameWriter, FramingError

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

    #: Delivered messages waiting for the node loop; readers wait (TCP pushes back) when full.
    inbox_max: int = 4096
    #: Frames queued for one replica peer; `send` drops (counted) beyond this.
    send_queue_max: int = 4096
    #: Frames queued for one client connection; `send_to_client` drops beyond this.
    client_send_queue_max: int = 256
    #: Inbound connections open at once, handshaking ones included; more are refused.
    connections_max: int = 1024
    #: TCP connect plus TLS handshake must finish within this, both directions.
    handshake_timeout_s: float = 5.0
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
    #: Outbound connection attempts that failed, by reason.
    outbound_failures: dict[str, int]
    #: Outgoing messages not sent, by reason.
    dropped: dict[str, int]
    #: Frames waiting, per replica peer.
    send_queue_depths: dict[int, int]
    #: Clients with an open connection, and frames waiting for them in total.
    client_connections: int
    client_send_queue_depth: int
    #: Messages delivered but not yet taken by the node loop.
    inbox_depth: int


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
    queue_send: trio.MemorySendChannel[bytes]
    queue_receive: trio.MemoryReceiveChannel[bytes]
    address_known: trio.Event = field(default_factory=trio.Event)
    connected: trio.Event = field(default_factory=trio.Event)
    #: Successful connections so far.
    connections: int = 0


@dataclass(eq=False, slots=True)
class _InboundConnection:
    """An authenticated inbound connection; clients' have a queue for replies."""

    peer: Peer
    address: str
    cancel_scope: trio.CancelScope
    queue_send: trio.MemorySendChannel[bytes] | None = None
    queue_receive: trio.MemoryReceiveChannel[bytes] | None = None


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
        `limits` bound decoding; `rng` draws the backoff jitter."""
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
        self._links: dict[int, _PeerLink] = {}
        for info in peers:
            if info.id in self._links:
                raise ValueError(f"peer {info.id} given twice")
            queue_send, queue_receive = trio.open_memory_channel[bytes](settings.send_queue_max)
            link = _PeerLink(info, queue_send, queue_receive)
            if info.port:
                link.address_known.set()
            self._links[info.id] = link
        self._inbox_send, self.inbox = trio.open_memory_channel[tuple[Peer, Message]](
            settings.inbox_max
        )
        #: The newest authenticated inbound connection of each key.
        self._inbound: dict[bytes, _InboundConnection] = {}
        self._received = FrameCounters()
        self._sent = FrameCounters()
        self._refused: Counter[str] = Counter()
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
        reason in `dropped`, if the peer is unknown, the message too large or its queue full."""
        link = self._links.get(peer_id)
        if link is None:
            self._dropped["unknown_peer"] += 1
            return False
        return self._enqueue(link.queue_send, codec.encode(message), "send_queue_full")

    def broadcast(self, message: Message) -> int:
        """Queue `message` (encoded once) for every replica peer; returns how many queued it.
        Drops are counted as for `send`."""
        body = codec.encode(message)
        return sum(
            self._enqueue(link.queue_send, body, "send_queue_full")
            for link in self._links.values()
        )

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
                queued += self._enqueue(link.queue_send, body, "send_queue_full")
        return queued

    def connections_made(self, peer_id: int) -> int:
        """How many times the outbound link to replica `peer_id` has connected so far: a
        change means a new connection (the peer may have restarted and forgotten state tied
        to the old one). Raises KeyError for an unknown peer."""
        return self._links[peer_id].connections

    def connected_peers(self) -> list[int]:
        """The replica ids whose outbound link is connected and authenticated right now."""
        return sorted(peer_id for peer_id, link in self._links.items() if link.connected.is_set())

    def send_to_client(self, client_key: bytes, message: Message) -> bool:
        """Queue `message` on the connection client `client_key` is connected on, without
        waiting. Returns False, counted in `dropped`, if that client has no connection open,
        the message is too large or the client's queue is full."""
        connection = self._inbound.get(client_key)
        if connection is None or connection.queue_send is None:
            self._dropped["client_not_connected"] += 1
            return False
        return self._enqueue(connection.queue_send, codec.encode(message), "client_queue_full")

    async def wait_message(self) -> tuple[Peer, Message]:
        """The next delivered `(peer, message)`; raises trio.EndOfChannel after `serve` ended."""
        return await self.inbox.receive()

    async def wait_messages(self, messages_max: int) -> list[tuple[Peer, Message]]:
        """Wait for a delivered message, then take every one already waiting, up to
        `messages_max` in all: the node loop's way to feed the core a batch per wake-up (one
        scheduler round trip per batch, not per message). Raises trio.EndOfChannel after
        `serve` ended and the inbox is empty; ValueError if `messages_max` < 1."""
        if messages_max < 1:
            raise ValueError("messages_max must be at least 1")
        inbox = self.inbox
        batch = [await inbox.receive()]
        try:
            while len(batch) < messages_max:
                batch.append(inbox.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            pass
        return batch

    async def wait_connected(self, peer_id: int) -> None:
        """Wait until the outbound link to replica `peer_id` is connected and authenticated."""
        await self._links[peer_id].connected.wait()

    def statistics(self) -> TransportStatistics:
        client_depth = 0
        clients = 0
        for connection in self._inbound.values():
            if connection.queue_receive is not None:
                clients += 1
                client_depth += connection.queue_receive.statistics().current_buffer_used
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
            outbound_failures=dict(self._outbound_failures),
            dropped=dict(self._dropped),
            send_queue_depths={
                peer_id: link.queue_receive.statistics().current_buffer_used
                for peer_id, link in self._links.items()
            },
            client_connections=clients,
            client_send_queue_depth=client_depth,
            inbox_depth=self.inbox.statistics().current_buffer_used,
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
            self._inbox_send.close()

    # ------------------------------------------------------------------ sending

    def _enqueue(self, queue: trio.MemorySendChannel[bytes], body: bytes, full: str) -> bool:
        if len(body) > self._limits.frame_bytes_max:
            # Our own message, so a peer would refuse it: a bound set too tight, worth an error.
            self._dropped["message_too_large"] += 1
            log.error(
                "dropped an outgoing message of %d bytes: frame_bytes_max is %d",
                len(body),
                self._limits.frame_bytes_max,
                extra={"reason": "message_too_large"},
            )
            return False
        try:
            queue.send_nowait(body)
        except trio.WouldBlock:
            self._dropped[full] += 1
            return False
        except trio.ClosedResourceError:
            self._dropped["connection_closed"] += 1
            return False
        return True

    async def _send_loop(
        self,
        stream: tls.TlsSocketStream,
        queue: trio.MemoryReceiveChannel[bytes],
        peer: Peer,
        address: str,
        connection_scope: trio.CancelScope,
    ) -> None:
        writer = FrameWriter(
            stream, coalesce_bytes_max=self._settings.coalesce_bytes_max, counters=self._sent
        )
        try:
            await writer.send_queued(queue)
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
        """Deliver decoded frames until the peer closes, the stream fails or a frame is bad."""
        # Clients only ever send REQUESTs: holding them to a request's size bounds what
        # connections_max client connections can make us buffer far below frame_bytes_max each.
        frame_bytes_max = (
            self._limits.frame_bytes_max if peer.is_replica else self._client_frame_bytes_max
        )
        reader = FrameReader(
            stream,
            frame_bytes_max,
            receive_bytes_max=self._settings.receive_bytes_max,
            counters=self._received,
        )
        decode, limits, inbox = codec.decode, self._limits, self._inbox_send
        try:
            while True:
                body = await reader.receive_frame()
                if body is None:
                    log.debug("%s (%s) closed the connection", address, peer)
                    return
                try:
                    message = decode(body, limits)
                except codec.DecodeError as e:
                    self._refuse(address, _decode_reason(e), str(e), peer)
                    return
                try:
                    inbox.send_nowait((peer, message))
                except trio.WouldBlock:
                    await inbox.send((peer, message))
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
        outgoing: trio.MemoryReceiveChannel[bytes] | None,
        scope_created: Callable[[trio.CancelScope], None] | None = None,
    ) -> None:
        """Receive (and send `outgoing`, if any) on `stream` until either side stops."""
        async with trio.open_nursery() as nursery:
            if scope_created is not None:
                scope_created(nursery.cancel_scope)
            if outgoing is not None:
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
                if self._connections_inbound >= self._settings.connections_max:
                    self._refuse(
                        _address_of(tcp_stream),
                        "connections_max",
                        f"{self._connections_inbound} inbound connections open, "
                        f"connections_max is {self._settings.connections_max}",
                    )
                    await trio.aclose_forcefully(tcp_stream)
                    continue
                # Counted here, not in the handler, so that a burst cannot overshoot the bound.
                self._connections_inbound += 1
                nursery.start_soon(self._handle_inbound, tcp_stream)

    async def _handle_inbound(self, tcp_stream: trio.SocketStream) -> None:
        address = _address_of(tcp_stream)
        stream = tls.TlsSocketStream.wrap(tcp_stream, self._server_context, server_side=True)
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
            await self._run_inbound(stream, peer, address)
        finally:
            self._connections_inbound -= 1
            await trio.aclose_forcefully(stream)

    async def _run_inbound(self, stream: tls.TlsSocketStream, peer: Peer, address: str) -> None:
        connection = _InboundConnection(peer, address, trio.CancelScope())
        if not peer.is_replica:
            connection.queue_send, connection.queue_receive = trio.open_memory_channel[bytes](
                self._settings.client_send_queue_max
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
                stream, peer, address, connection.queue_receive, scope_created=register
            )
        finally:
            if self._inbound.get(peer.public_key) is connection:
                del self._inbound[peer.public_key]
            if connection.queue_send is not None:
                connection.queue_send.close()

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
                        stream, Peer(info.public_key, info.id), address, link.queue_receive
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


def _address_of(stream: trio.SocketStream) -> str:
    try:
        host, port, *_ = stream.socket.getpeername()
    except OSError:
        return "unknown address"
    return f"{host}:{port}"


def _describe(error: BaseException) -> str:
    """The most specific text for a stream error: trio wraps ssl and socket errors."""
    cause = error.__cause__ or error.__context__ or error
    return str(cause) or type(cause).__name__


def _decode_reason(error: codec.DecodeError) -> str:
    """MalformedFrame -> "malformed_frame": the statistics key of a decoding failure."""
    name = type(error).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
