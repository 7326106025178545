"""Issue 13, items 1, 2, 5 and 6 over real loopback sockets: stale links are detected and
redialled (heartbeats), health sees a silent partition, inbound connections are admitted with
per-address limits, replica-reserved slots and an idle timeout, and send queues are bounded in
bytes.

A silent partition is played by `Proxy`, a TCP relay the test controls: `freeze()` stops it
forwarding anything, and the connections it carried stay black-holed for good (as a connection
in TCP retransmission back-off stays dead long after the network heals, issue 13 item 1);
`heal()` lets new connections through again."""

from __future__ import annotations

import contextlib
import functools
import json
import random

import pytest
import trio

from pbft.app import KeyValueStore, kv_decode_result, kv_put
from pbft.codec import encode
from pbft.config import ClusterConfig, ReplicaInfo
from pbft.ed25519 import Ed25519Signer
from pbft.messages import Reply, Request
from pbft.runtime import Peer, Transport, TransportSettings
from pbft.runtime.client import connect
from pbft.runtime.cluster import free_ports
from pbft.runtime.framing import pack_frames
from pbft.runtime.metrics import fetch
from pbft.runtime.node import NodeSettings, serve_replica
from pbft.runtime.tls import client_context

from .test_runtime_transport import (
    CLIENT,
    CONFIG,
    HOST,
    SIGNERS,
    make_replica,
    prepare,
    replica_peer,
    request,
    wait_closed_by_peer,
    wait_until,
)

#: Short timers so that the tests run in seconds; rejoin bound 0.6 + 1.0 + 0.2 = 1.8 s.
FAST = TransportSettings(
    heartbeat_interval_s=0.1, heartbeat_timeout_s=0.6, handshake_timeout_s=1.0,
    reconnect_delay_min_s=0.02, reconnect_delay_max_s=0.2,
)  # fmt: skip
#: What the machine's load may add to a bound before a wait gives up (the old code never
#: recovers at all, so any finite wait tells them apart).
SLACK_S = 10.0


class Proxy:
    """A TCP relay to `target_port` that the test can freeze (see the module docstring)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port: int | None = None
        self.frozen = False
        #: Connections made before the latest freeze are dead for good.
        self._freezes = 0

    def freeze(self) -> None:
        self.frozen = True
        self._freezes += 1

    def heal(self) -> None:
        self.frozen = False

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host=HOST)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._relay, listeners, handler_nursery=nursery)

    async def _relay(self, downstream: trio.SocketStream) -> None:
        if self.frozen:  # the SYN got through, nothing else ever will
            async with downstream:
                await trio.sleep_forever()
        born = self._freezes
        upstream = await trio.open_tcp_stream(HOST, self.target_port)

        async def pump(source, sink):
            try:
                while True:
                    data = await source.receive_some(65536)
                    if self._freezes != born:
                        await trio.sleep_forever()  # black-holed: read, never delivered
                    if not data:
                        await sink.send_eof()
                        return
                    await sink.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        async with upstream, downstream, trio.open_nursery() as nursery:
            nursery.start_soon(pump, downstream, upstream)
            await pump(upstream, downstream)
            await trio.sleep_forever()


async def wait_for(predicate, timeout_s: float) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.02)


async def receive_until(transport: Transport, wanted) -> None:
    """Take messages from `transport`'s inbox until `wanted` (a (peer, message)) arrives."""
    while await transport.wait_message() != wanted:
        pass


async def open_tls_from(port: int, identity: Ed25519Signer, source: str) -> trio.SSLStream:
    """A raw TLS connection as `identity` from local address `source` (any 127.x works)."""
    tcp = await trio.open_tcp_stream(HOST, port, local_address=source)
    stream = trio.SSLStream(tcp, client_context(identity.seed), server_side=False)
    await stream.do_handshake()
    return stream


def stranger(i: int) -> Ed25519Signer:
    return Ed25519Signer(bytes([200, i % 256, i // 256]) * 10 + b"xy")


# ----------------------------------------------------------------------------- item 1


@pytest.mark.trio
async def test_a_stale_link_is_given_up_and_redialled_within_the_rejoin_bound():
    """Replica 0 reaches replica 1 through a proxy that freezes (a silent partition: TCP still
    says connected) and then heals, with the old connection black-holed for good. Before
    heartbeats the link kept its dead connection forever, so nothing sent after the
    partition ever arrived; now each side closes it as `peer_silent` and 0 redials, and a
    message queued during the partition arrives within `rejoin_bound_s` of the heal."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            replicas = {i: make_replica(i, FAST) for i in (0, 1)}
            for transport in replicas.values():
                await nursery.start(transport.serve, HOST, 0)
            proxy = Proxy(replicas[1].port)
            await nursery.start(proxy.serve)
            replicas[0].set_peer_address(1, HOST, proxy.port)
            replicas[1].set_peer_address(0, HOST, replicas[0].port)
            await replicas[0].wait_connected(1)
            assert replicas[0].send(1, prepare(1, 0))
            await receive_until(replicas[1], (replica_peer(0), prepare(1, 0)))

            proxy.freeze()
            # Both ends give the silent connection up (the old code: never).
            await wait_for(
                lambda: replicas[0].statistics().closed.get("peer_silent", 0) >= 1
                and replicas[1].statistics().closed.get("peer_silent", 0) >= 1,
                FAST.heartbeat_timeout_s + SLACK_S,
            )
            assert 1 not in replicas[0].connected_peers()
            assert replicas[0].send(1, prepare(2, 0))  # queued while cut off

            proxy.heal()
            healed_at = trio.current_time()
            with trio.fail_after(FAST.rejoin_bound_s + SLACK_S):
                await receive_until(replicas[1], (replica_peer(0), prepare(2, 0)))
            print(f"\nrejoined {trio.current_time() - healed_at:.2f} s after the heal "
                  f"(bound {FAST.rejoin_bound_s:.1f} s)")  # fmt: skip
            assert replicas[0].connections_made(1) >= 2
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_an_idle_link_carries_heartbeats_and_stays_up():
    """Heartbeats keep an idle link alive: with nothing to send for many heartbeat timeouts,
    no connection is closed as silent and the peers stay heard."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            replicas = {i: make_replica(i, FAST) for i in (0, 1)}
            for transport in replicas.values():
                await nursery.start(transport.serve, HOST, 0)
            replicas[0].set_peer_address(1, HOST, replicas[1].port)
            replicas[1].set_peer_address(0, HOST, replicas[0].port)
            await replicas[0].wait_connected(1)
            await replicas[1].wait_connected(0)
            await trio.sleep(5 * FAST.heartbeat_timeout_s)
            for i, j in ((0, 1), (1, 0)):
                stats = replicas[i].statistics()
                assert stats.closed == {}
                assert replicas[i].connections_made(j) == 1
                assert replicas[i].heard_peers() == [j]
                assert stats.frames_sent > 0 and stats.frames_received > 0  # heartbeats
            assert replicas[1].statistics().inbox_depth == 0  # heartbeats are not delivered
            nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------------- item 2


@pytest.mark.trio
async def test_health_sees_a_silent_partition_and_recovers_after_it(tmp_path):
    """A real replica node whose three peers (bare transports) it reaches, and that reach it,
    only through proxies. The proxies freeze: TCP says nothing (the old node kept reporting
    all peers connected and health "ok"); now /status shows the peers' last-heard ages growing
    and health "isolated". After the heal, health is "ok" again within the rejoin bound."""
    ports = free_ports(1)
    proxies = {}
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            peers = {i: make_replica(i, FAST) for i in (1, 2, 3)}
            for transport in peers.values():
                await nursery.start(transport.serve, HOST, 0)
            for i in (0, 1, 2, 3):
                proxies[i] = Proxy(ports[0] if i == 0 else peers[i].port)
                await nursery.start(proxies[i].serve)
            config = ClusterConfig.create(
                [ReplicaInfo(i, s.public_key, HOST, proxies[i].port) for i, s in enumerate(SIGNERS)]
            )
            node = await nursery.start(functools.partial(
                serve_replica, config, 0, SIGNERS[0], KeyValueStore(), tmp_path / "replica-0",
                port=ports[0], settings=NodeSettings(transport=FAST), rng=random.Random(0),
            ))  # fmt: skip
            for transport in peers.values():
                transport.set_peer_address(0, HOST, proxies[0].port)

            async def status():
                return json.loads(await fetch(HOST, node.metrics_port, "/status"))

            async def wait_health(wanted, timeout_s):
                with trio.fail_after(timeout_s):
                    while (found := await status())["health"] != wanted:
                        await trio.sleep(0.05)
                return found

            healthy = await wait_health("ok", 20)
            assert healthy["connected_peers"] == [1, 2, 3]
            assert all(age is not None and age < FAST.heartbeat_timeout_s
                       for age in healthy["peers_last_heard_s"].values())  # fmt: skip

            for proxy in proxies.values():
                proxy.freeze()
            isolated = await wait_health("isolated", FAST.heartbeat_timeout_s + SLACK_S)
            assert set(isolated["peers_last_heard_s"]) == {"1", "2", "3"}
            # Isolated: fewer than 2f = 2 peers heard within heartbeat_timeout_s.
            assert sum(age > FAST.heartbeat_timeout_s
                       for age in isolated["peers_last_heard_s"].values()) >= 2  # fmt: skip
            metrics = (await fetch(HOST, node.metrics_port, "/metrics")).decode()
            assert 'pbft_peer_last_heard_seconds{peer="1"' in metrics

            for proxy in proxies.values():
                proxy.heal()
            # ("ok" needs 2f peers heard: the third link may still be redialling then.)
            with trio.fail_after(FAST.rejoin_bound_s + SLACK_S):
                while not ((back := await status())["health"] == "ok"
                           and back["connected_peers"] == [1, 2, 3]):
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------------- item 5

ADMISSION = TransportSettings(
    connections_max=16, connections_per_address_max=4, client_idle_timeout_s=60.0,
    heartbeat_interval_s=0.2, heartbeat_timeout_s=2.0, handshake_timeout_s=2.0,
    reconnect_delay_min_s=0.02, reconnect_delay_max_s=0.2,
)  # fmt: skip


async def keep_alive(stream: trio.SSLStream) -> None:
    """What a flooding client does to look alive: heartbeats, and it drains what it gets."""

    async def drain():
        try:
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        try:
            while True:
                await stream.send_all(pack_frames([b""]))
                await trio.sleep(0.2)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            nursery.cancel_scope.cancel()


async def flood(nursery, port: int, source: str, count: int, first_key: int) -> int:
    """`count` TLS connections from `source`, each with its own client key, kept alive;
    returns how many completed their handshake (the others were refused at once)."""
    made = 0
    for i in range(count):
        try:
            stream = await open_tls_from(port, stranger(first_key + i), source)
        except (trio.BrokenResourceError, OSError):
            continue
        made += 1
        nursery.start_soon(keep_alive, stream)
    return made


async def assert_client_served(transport: Transport, port: int, timestamp: int) -> None:
    stream = await open_tls_from(port, CLIENT, "127.0.0.1")
    await stream.send_all(pack_frames([encode(request(timestamp))]))
    await receive_until(transport, (Peer(CLIENT.public_key), request(timestamp)))
    await trio.aclose_forcefully(stream)


async def assert_replica_gets_in(nursery: trio.Nursery, server: Transport, message) -> None:
    """Replica 1, started now, connects to `server` (replica 0) and its `message` arrives."""
    replica = make_replica(1, ADMISSION)
    await nursery.start(replica.serve, HOST, 0)
    replica.set_peer_address(0, HOST, server.port)
    assert replica.send(0, message)
    await receive_until(server, (replica_peer(1), message))


@pytest.mark.trio
async def test_a_flood_from_one_address_cannot_keep_a_client_or_a_replica_out():
    """Thirty TLS connections from 127.0.0.2, each a fresh client key kept alive with
    heartbeats: only `connections_per_address_max` get in, the rest are refused with
    `address_connections_max`; a new correct client from another address and a replica that
    starts after the flood are served. Without the per-address bound the flood took every
    slot (connections_max 16) and both were refused."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = make_replica(0, ADMISSION)
            await nursery.start(server.serve, HOST, 0)
            await flood(nursery, server.port, "127.0.0.2", 30, 0)
            await wait_until(
                lambda: server.statistics().refused.get("address_connections_max", 0) >= 26
            )
            assert server.statistics().client_connections <= 4
            await assert_client_served(server, server.port, 1)
            await assert_replica_gets_in(nursery, server, prepare(5, 1))
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_clients_never_take_the_slots_reserved_for_replicas():
    """Floods from many addresses fill every client slot (connections_max - (n - 1)): a new
    client is refused cleanly (`client_connections_max`, counted), and a replica still gets
    in. Without the reserve the flood took all 16 slots and the replica stayed out."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = make_replica(0, ADMISSION)
            await nursery.start(server.serve, HOST, 0)
            assert server.replica_slots_reserved == 3
            for a in range(2, 7):  # 5 addresses x 4 = 20 > the 13 client slots
                await flood(nursery, server.port, f"127.0.0.{a}", 4, 100 * a)
            await wait_until(lambda: server.statistics().client_connections == 13)
            before = server.statistics().refused.get("client_connections_max", 0)
            assert before >= 1
            # (Refused during the handshake's last flight is as good as closed after it.)
            with contextlib.suppress(trio.BrokenResourceError):
                stream = await open_tls_from(server.port, CLIENT, "127.0.0.1")
                await wait_closed_by_peer(stream)
                await trio.aclose_forcefully(stream)
            await wait_until(
                lambda: server.statistics().refused.get("client_connections_max", 0) > before
            )
            await assert_replica_gets_in(nursery, server, prepare(6, 1))
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_idle_client_connections_are_closed_and_their_slots_freed():
    """Client connections that send heartbeats but no request are closed after
    `client_idle_timeout_s` (`client_idle`), which frees the slots a flood held: a correct
    client gets in again. Without it they were kept for as long as they stayed alive."""
    settings = TransportSettings(
        connections_max=8, connections_per_address_max=8, client_idle_timeout_s=1.5,
        heartbeat_interval_s=0.2, heartbeat_timeout_s=2.0, handshake_timeout_s=2.0,
    )  # fmt: skip
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = make_replica(0, settings)
            await nursery.start(server.serve, HOST, 0)
            assert await flood(nursery, server.port, "127.0.0.2", 5, 0) == 5  # 8 - 3 slots
            await wait_until(lambda: server.statistics().client_connections == 5)
            await wait_for(
                lambda: server.statistics().closed.get("client_idle", 0) == 5,
                settings.client_idle_timeout_s + SLACK_S,
            )
            assert "peer_silent" not in server.statistics().closed  # heartbeats kept them alive
            await assert_client_served(server, server.port, 1)
            nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------------- item 6

MiB = 1024 * 1024


def big_request(timestamp: int) -> Request:
    return Request(
        operation=bytes(MiB - 64), timestamp=timestamp, client=CLIENT.public_key,
        read_only=False, signature=bytes(64),
    )  # fmt: skip


@pytest.mark.trio
async def test_a_replica_link_queue_is_bounded_in_bytes_and_drops_its_oldest_frames():
    """A hundred 1 MiB messages for a replica that is down: the link queues at most
    `send_queue_bytes_max` bytes, drops the oldest (counted `send_queue_full`), and delivers
    the newest once the replica is up. Frame-bounded, the queue held all 100 MiB."""
    settings = TransportSettings(send_queue_bytes_max=6 * MiB, reconnect_delay_max_s=0.2,
                                 reconnect_delay_min_s=0.02)  # fmt: skip
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            sender = make_replica(0, settings)
            await nursery.start(sender.serve, HOST, 0)
            for t in range(1, 101):
                assert sender.send(1, big_request(t))
                assert sender.statistics().send_queue_bytes[1] <= 6 * MiB
            stats = sender.statistics()
            # Five frames of 1 MiB and a few bytes fit in 6 MiB.
            assert stats.send_queue_depths[1] == 5
            assert stats.dropped["send_queue_full"] == 95
            receiver = make_replica(1, settings)
            await nursery.start(receiver.serve, HOST, 0)
            sender.set_peer_address(1, HOST, receiver.port)
            peer, message = await receiver.wait_message()
            assert (peer, message.timestamp) == (replica_peer(0), 96)  # the newest five kept
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_client_queue_is_bounded_in_bytes():
    """A client that stops reading: replies queue up to `client_send_queue_bytes_max` bytes,
    then are dropped (`client_queue_full`). Frame-bounded, 100 large replies all queued."""
    settings = TransportSettings(client_send_queue_bytes_max=6 * MiB)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = make_replica(0, settings)
            await nursery.start(server.serve, HOST, 0)
            stream = await open_tls_from(server.port, CLIENT, "127.0.0.1")
            await stream.send_all(pack_frames([encode(request(1))]))  # never reads again
            await receive_until(server, (Peer(CLIENT.public_key), request(1)))
            reply = Reply(view=0, timestamp=1, client=CLIENT.public_key, replica=0,
                          result=bytes(MiB - 64), read_only=False)  # fmt: skip
            for _ in range(100):
                server.send_to_client(CLIENT.public_key, reply)
                assert server.statistics().client_send_queue_bytes <= 6 * MiB
                await trio.sleep(0)
            stats = server.statistics()
            assert stats.dropped.get("client_queue_full", 0) >= 100 - 6 - 64  # kernel buffers
            await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_with_a_replica_down_large_requests_do_not_grow_the_primarys_queues(tmp_path):
    """Issue 13, item 6: three of four replicas run; a client orders 100 requests of 1 MiB.
    The primary's queue for the replica that is down stays within `send_queue_bytes_max`
    (statistics and /metrics `pbft_queue_bytes`), where it used to grow by every PRE-PREPARE
    (+219 MB measured)."""
    bound = 8 * MiB
    transport = TransportSettings(
        send_queue_bytes_max=bound, reconnect_delay_min_s=0.02, reconnect_delay_max_s=0.5,
    )  # fmt: skip
    ports = free_ports(4)
    config = ClusterConfig.create(
        [ReplicaInfo(i, s.public_key, HOST, ports[i]) for i, s in enumerate(SIGNERS)],
        request_timeout_ms=20_000, client_retry_timeout_ms=5_000,
    )  # fmt: skip
    clients = [Ed25519Signer(bytes([150]) * 32)]
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            nodes = {
                i: await nursery.start(functools.partial(
                    serve_replica, config, i, SIGNERS[i], KeyValueStore(value_bytes_max=MiB),
                    tmp_path / f"replica-{i}", settings=NodeSettings(transport=transport),
                    rng=random.Random(i),
                ))
                for i in (0, 1, 2)
            }  # fmt: skip
            primary = nodes[0]
            peak = 0
            async with connect(config, clients, settings=transport, wait_connected_s=10) as c:
                for _ in range(100):
                    result = await c.submit(kv_put("big", bytes(MiB - 256)))
                    assert kv_decode_result(result) == ("ok", None)
                    peak = max(peak, primary.statistics().transport.send_queue_bytes[3])
            stats = primary.statistics().transport
            assert peak <= bound
            assert stats.dropped.get("send_queue_full", 0) > 0
            metrics = (await fetch(HOST, primary.metrics_port, "/metrics")).decode()
            line = next(x for x in metrics.splitlines()
                        if x.startswith('pbft_queue_bytes{queue="send_replica_3"'))  # fmt: skip
            assert int(float(line.split()[-1])) <= bound
            nursery.cancel_scope.cancel()
