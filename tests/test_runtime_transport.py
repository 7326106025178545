"""The TLS transport over real loopback sockets (issue 5, item 1 and "Bad input at the socket"):
transports of a 4-replica configuration on 127.0.0.1 exchange messages, and raw sockets play the
misbehaving peers; each refusal must be logged with its reason while correct peers keep being
served."""

from __future__ import annotations

import hashlib
import logging
import random
import time

import pytest
import trio
import trio.testing

from pbft.codec import Limits, encode
from dataclasses import replace
from pbft.config import ClusterConfig, ReplicaInfo
from pbft.ed25519 import Ed25519Signer
from pbft.messages import Prepare, Reply, Request
from pbft.runtime import Peer, Transport, TransportSettings
from pbft.runtime.framing import pack_frames
from pbft.runtime.tls import client_context, peer_public_key

from .test_runtime_tls import self_signed_client_context

HOST = "127.0.0.1"
LOGGER = "pbft.runtime.transport"


def signer(name: str) -> Ed25519Signer:
    return Ed25519Signer(hashlib.sha256(f"runtime transport test: {name}".encode()).digest())


SIGNERS = [signer(f"replica {i}") for i in range(4)]
CLIENT = signer("client")
STRANGER = signer("stranger")
CONFIG = ClusterConfig.create(
    [ReplicaInfo(i, s.public_key, HOST, 0) for i, s in enumerate(SIGNERS)]
)
SETTINGS = TransportSettings(
    handshake_timeout_s=2.0, reconnect_delay_min_s=0.02, reconnect_delay_max_s=0.2
)


def replica_peer(replica_id: int) -> Peer:
    return Peer(SIGNERS[replica_id].public_key, replica_id)


def prepare(sequence: int, replica: int, signature: bytes = bytes(64)) -> Prepare:
    return Prepare(
        view=0, sequence=sequence, digest=bytes(32), replica=replica, signature=signature
    )


def request(timestamp: int, signature: bytes = bytes(64)) -> Request:
    return Request(
        operation=b"op", timestamp=timestamp, client=CLIENT.public_key, read_only=False,
        signature=signature,
    )  # fmt: skip


def make_replica(replica_id, settings=SETTINGS, accept_clients=True) -> Transport:
    return Transport.for_replica(
        CONFIG, replica_id, SIGNERS[replica_id], rng=random.Random(replica_id),
        accept_clients=accept_clients, settings=settings,
    )  # fmt: skip


async def start_replicas(nursery, ids, settings=SETTINGS, accept_clients=True):
    """Replicas `ids` listening on free ports, each told the others' addresses."""
    transports = {i: make_replica(i, settings, accept_clients) for i in ids}
    for transport in transports.values():
        await nursery.start(transport.serve, HOST, 0)
    for i, transport in transports.items():
        for j, other in transports.items():
            if i != j:
                transport.set_peer_address(j, HOST, other.port)
    return transports


async def open_tls(port: int, identity: Ed25519Signer) -> trio.SSLStream:
    """A raw TLS connection as `identity`, for playing a misbehaving peer by hand."""
    tcp = await trio.open_tcp_stream(HOST, port)
    stream = trio.SSLStream(tcp, client_context(identity.seed), server_side=False)
    await stream.do_handshake()
    return stream


async def wait_closed_by_peer(stream) -> None:
    """Read until the other side closes; its goodbye may be a clean EOF or a reset."""
    try:
        while await stream.receive_some(65536):
            pass
    except trio.BrokenResourceError:
        pass


async def wait_until(condition, timeout_s: float = 5.0) -> None:
    with trio.fail_after(timeout_s):
        while not condition():
            await trio.sleep(0.01)


def refusals(caplog, reason: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and getattr(r, "reason", None) == reason]


async def assert_still_served(receiver: Transport, sender: Transport, sender_id: int, seq: int):
    """A correct replica's message still gets through (the inbox holds nothing else)."""
    assert sender.send(0, prepare(seq, sender_id))
    peer, message = await receiver.wait_message()
    assert (peer, message) == (replica_peer(sender_id), prepare(seq, sender_id))


# ----------------------------------------------------------------------------- working links


@pytest.mark.trio
async def test_three_replicas_exchange_messages_both_ways_with_pinned_identities():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0, 1, 2])
            for i, transport in replicas.items():
                for j in replicas:
                    if i != j:
                        assert transport.send(j, prepare(10 * i + j, i))
            for j, transport in replicas.items():
                received = {await transport.wait_message() for _ in range(2)}
                expected = {(replica_peer(i), prepare(10 * i + j, i)) for i in replicas if i != j}
                assert received == expected
            # (A sender counts a frame once its write returns, which may be after the peer
            # already read it.)
            await wait_until(lambda: all(t.statistics().frames_sent == 2
                                         for t in replicas.values()))
            for transport in replicas.values():
                stats = transport.statistics()
                assert stats.connections_outbound == 2 and stats.connections_inbound == 2
                assert stats.frames_sent == stats.frames_received == 2
                assert stats.refused == {} and stats.dropped == {}
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_raw_client_sees_tls13_and_the_replica_key():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0])
            stream = await open_tls(replicas[0].port, CLIENT)
            assert stream.version() == "TLSv1.3"
            assert peer_public_key(stream.getpeercert(binary_form=True)) == SIGNERS[0].public_key
            await stream.send_all(pack_frames([encode(request(1))]))
            assert await replicas[0].wait_message() == (Peer(CLIENT.public_key), request(1))
            await stream.aclose()
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_client_is_answered_on_the_connection_it_opened():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0])
            client = Transport.for_client(CONFIG, CLIENT, rng=random.Random(9), settings=SETTINGS)
            client.set_peer_address(0, HOST, replicas[0].port)
            assert await nursery.start(client.serve, None) is None
            assert client.send(0, request(1))
            peer, message = await replicas[0].wait_message()
            assert (peer, message) == (Peer(CLIENT.public_key, None), request(1))
            reply = Reply(view=0, timestamp=1, client=CLIENT.public_key, replica=0, result=b"ok",
                          read_only=False)  # fmt: skip
            assert replicas[0].send_to_client(peer.public_key, reply)
            assert await client.wait_message() == (replica_peer(0), reply)
            assert not replicas[0].send_to_client(STRANGER.public_key, reply)
            assert replicas[0].statistics().dropped == {"client_not_connected": 1}
            assert replicas[0].statistics().client_connections == 1
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_queued_frames_are_coalesced_into_few_sends():
    count = 2000
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0, 1])
            await replicas[0].wait_connected(1)
            before = replicas[0].statistics()
            for seq in range(count):  # no checkpoint in between: all are queued at once
                assert replicas[0].send(1, prepare(seq, 0))
            received = []
            while len(received) < count:
                batch = await replicas[1].wait_messages(500)
                assert 1 <= len(batch) <= 500
                received += batch
            assert received == [(replica_peer(0), prepare(seq, 0)) for seq in range(count)]
            # (The sender counts its last write once it returns, perhaps after the peer read it.)
            await wait_until(lambda: replicas[0].statistics().frames_sent - before.frames_sent
                             >= count)
            after = replicas[0].statistics()
            sends = after.sends - before.sends
            assert sends <= 4, f"{count} frames took {sends} send_all calls"
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_link_reconnects_after_the_peer_restarts_and_delivers_what_was_queued():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0])
            sender = replicas[0]
            first = make_replica(1)
            async with trio.open_nursery() as first_nursery:
                port = await first_nursery.start(first.serve, HOST, 0)
                sender.set_peer_address(1, HOST, port)
                assert sender.send(1, prepare(1, 0))
                assert await first.wait_message() == (replica_peer(0), prepare(1, 0))
                first_nursery.cancel_scope.cancel()
            await wait_until(lambda: sender.statistics().connections_outbound == 0)
            # Queued while the peer is down; the link keeps trying with backoff.
            for seq in range(2, 12):
                assert sender.send(1, prepare(seq, 0))
            await wait_until(
                lambda: sender.statistics().outbound_failures.get("connect_failed", 0) >= 2
            )
            second = make_replica(1)
            await nursery.start(second.serve, HOST, port)
            for seq in range(2, 12):
                assert await second.wait_message() == (replica_peer(0), prepare(seq, 0))
            assert sender.statistics().connections_outbound == 1
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_peer_that_drops_us_after_the_handshake_is_retried_with_backoff():
    # Replica 1 runs with a configuration where replica 0 has another key: it completes the
    # TLS handshake with replica 0, then refuses it. Without backoff that is ~25 retries in
    # 0.5 s (the minimum delay); with it, about six.
    config = ClusterConfig.create(
        [ReplicaInfo(0, STRANGER.public_key, HOST, 0)] + list(CONFIG.replicas[1:])
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            refuser = Transport.for_replica(
                config, 1, SIGNERS[1], rng=random.Random(1), accept_clients=False,
                settings=SETTINGS,
            )  # fmt: skip
            await nursery.start(refuser.serve, HOST, 0)
            replicas = await start_replicas(nursery, [0])
            replicas[0].set_peer_address(1, HOST, refuser.port)
            await trio.sleep(0.5)
            attempts = refuser.statistics().refused["unknown_peer_key"]
            assert 2 <= attempts <= 12, attempts
            nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.trio
async def test_random_bytes_instead_of_a_handshake_are_refused(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0, 1])
            raw = await trio.open_tcp_stream(HOST, replicas[0].port)
            await raw.send_all(random.Random(5).randbytes(4096))
            await wait_closed_by_peer(raw)
            await raw.aclose()
            await wait_until(lambda: refusals(caplog, "tls_handshake_failed"))
            [record] = refusals(caplog, "tls_handshake_failed")
            assert record.peer_address.startswith(f"{HOST}:")
            assert record.peer_address in record.getMessage()
            assert replicas[0].statistics().refused == {"tls_handshake_failed": 1}
            await assert_still_served(replicas[0], replicas[1], 1, seq=1)
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_frame_larger_than_the_maximum_is_refused_unread(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0, 1])
            stream = await open_tls(replicas[0].port, CLIENT)
            before = replicas[0].statistics().bytes_received
            # The header claims 1 GiB; only 1 KiB follows and the connection stays open.
            await stream.send_all((1 << 30).to_bytes(4, "big") + b"x" * 1024)
            await wait_closed_by_peer(stream)
            await trio.aclose_forcefully(stream)
            [record] = refusals(caplog, "frame_too_large")
            assert "1073741824" in record.getMessage() and record.peer.startswith("client ")
            assert replicas[0].statistics().bytes_received - before <= 4 + 1024
            await assert_still_served(replicas[0], replicas[1], 1, seq=2)
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_client_frame_larger_than_any_request_is_refused(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    size = CONFIG.operation_bytes_max + 2048  # below frame_bytes_max, above any REQUEST
    assert size < CONFIG.frame_bytes_max
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0, 1])
            stream = await open_tls(replicas[0].port, CLIENT)
            await stream.send_all(size.to_bytes(4, "big"))
            await wait_closed_by_peer(stream)
            await trio.aclose_forcefully(stream)
            [record] = refusals(caplog, "frame_too_large")
            assert str(size) in record.getMessage()
            await assert_still_served(replicas[0], replicas[1], 1, seq=11)
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_truncated_frame_is_refused(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0, 1])
            stream = await open_tls(replicas[0].port, CLIENT)
            await stream.send_all(pack_frames([encode(request(1))])[:-5])
            await stream.aclose()  # a clean TLS close in the middle of the frame
            await wait_until(lambda: refusals(caplog, "truncated_frame"))
            assert replicas[0].statistics().refused == {"truncated_frame": 1}
            await assert_still_served(replicas[0], replicas[1], 1, seq=3)
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_an_undecodable_frame_closes_the_connection(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0, 1])
            stream = await open_tls(replicas[0].port, CLIENT)
            good = encode(request(1))
            await stream.send_all(pack_frames([good, b"\xc1", good]))
            await wait_closed_by_peer(stream)
            await trio.aclose_forcefully(stream)
            # The frame before the bad one is delivered; nothing after it is read.
            assert await replicas[0].wait_message() == (Peer(CLIENT.public_key), request(1))
            assert replicas[0].statistics().refused == {"malformed_frame": 1}
            assert refusals(caplog, "malformed_frame")
            await assert_still_served(replicas[0], replicas[1], 1, seq=4)
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_forged_signature_is_delivered_for_the_core_to_judge():
    forged = b"\xab" * 64
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0, 1])
            assert replicas[1].send(0, prepare(5, 1, signature=forged))
            assert await replicas[0].wait_message() == (replica_peer(1), prepare(5, 1, forged))
            # A client's request, and a message naming another replica than its sender.
            stream = await open_tls(replicas[0].port, CLIENT)
            await stream.send_all(pack_frames([encode(request(2, forged)), encode(prepare(6, 3))]))
            assert await replicas[0].wait_message() == (Peer(CLIENT.public_key), request(2, forged))
            assert await replicas[0].wait_message() == (Peer(CLIENT.public_key), prepare(6, 3))
            assert replicas[0].statistics().refused == {}
            await stream.aclose()
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_key_outside_the_configuration_is_refused(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0, 1], accept_clients=False)
            stream = await open_tls(replicas[0].port, STRANGER)  # TLS itself succeeds
            await wait_closed_by_peer(stream)
            await trio.aclose_forcefully(stream)
            [record] = refusals(caplog, "unknown_peer_key")
            assert STRANGER.public_key.hex() in record.getMessage()
            assert record.levelno == logging.WARNING and record.peer_address in record.getMessage()
            await assert_still_served(replicas[0], replicas[1], 1, seq=7)
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_self_signed_certificate_is_refused(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0, 1])
            # Even with the key of a configured replica: the certificate is not ours.
            tcp = await trio.open_tcp_stream(HOST, replicas[0].port)
            stream = trio.SSLStream(tcp, self_signed_client_context(SIGNERS[2].seed))
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError:
                pass
            await wait_closed_by_peer(stream)
            await trio.aclose_forcefully(stream)
            [record] = refusals(caplog, "tls_handshake_failed")
            assert "self-signed" in record.getMessage()
            await assert_still_served(replicas[0], replicas[1], 1, seq=8)
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_replica_answering_with_the_wrong_key_is_refused(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0, 1, 3])
            # Replica 0's address book sends "replica 2" to replica 3's port.
            replicas[0].set_peer_address(2, HOST, replicas[3].port)
            await wait_until(lambda: refusals(caplog, "peer_key_mismatch"))
            record = refusals(caplog, "peer_key_mismatch")[0]
            assert SIGNERS[3].public_key.hex() in record.getMessage()
            assert record.peer == "replica 2" and record.levelno == logging.WARNING
            assert replicas[0].statistics().outbound_failures["peer_key_mismatch"] >= 1
            assert replicas[0].send(2, prepare(1, 0))  # queued, never sent to the impostor
            await assert_still_served(replicas[0], replicas[1], 1, seq=9)
            assert replicas[3].statistics().frames_received == 0
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_flood_of_connections_is_bounded(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    settings = TransportSettings(
        connections_max=4, handshake_timeout_s=1.0,
        reconnect_delay_min_s=0.02, reconnect_delay_max_s=0.2,
    )  # fmt: skip
    flood = 20
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0, 1], settings)
            await replicas[1].wait_connected(0)  # one of replica 0's four inbound slots
            await wait_until(lambda: replicas[0].statistics().connections_inbound == 1)
            silent = [await trio.open_tcp_stream(HOST, replicas[0].port) for _ in range(flood)]
            await wait_until(
                lambda: replicas[0].statistics().refused.get("connections_max", 0) == flood - 3
            )
            assert len(refusals(caplog, "connections_max")) == flood - 3
            # The established replica link is served throughout.
            await assert_still_served(replicas[0], replicas[1], 1, seq=10)
            # Silent connections lose their slots at the handshake timeout...
            await wait_until(
                lambda: replicas[0].statistics().refused.get("handshake_timeout", 0) == 3
            )
            assert len(refusals(caplog, "handshake_timeout")) == 3
            # ... and a correct client gets in again.
            stream = await open_tls(replicas[0].port, CLIENT)
            await stream.send_all(pack_frames([encode(request(1))]))
            assert await replicas[0].wait_message() == (Peer(CLIENT.public_key), request(1))
            await stream.aclose()
            for raw in silent:
                await raw.aclose()
            assert replicas[0].statistics().connections_accepted == flood + 2
            nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------------- throughput


@pytest.mark.trio
async def test_throughput_through_one_tls_link():
    """Not asserted: prints messages/s of PREPAREs from one replica's `send` to the other's
    inbox (encode, frame, TLS, TCP, decode, deliver), coalesced (the default) and with one
    send_all per message."""
    results = []
    for label, coalesce_bytes_max, count in (("coalesced", 256 * 1024, 50_000),
                                             ("one send_all per message", 1, 10_000)):  # fmt: skip
        settings = TransportSettings(coalesce_bytes_max=coalesce_bytes_max)
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                replicas = await start_replicas(nursery, [0, 1], settings)
                await replicas[0].wait_connected(1)
                messages = [prepare(seq, 0) for seq in range(count)]
                chunk = 1024
                started = time.perf_counter()

                async def produce():
                    for start in range(0, count, chunk):
                        while replicas[0].statistics().send_queue_depths[1] > 4096 - chunk:
                            await trio.sleep(0)
                        for message in messages[start : start + chunk]:
                            replicas[0].send(1, message)

                nursery.start_soon(produce)
                received = 0
                while received < count:  # as a node loop would: a batch per wake-up
                    received += len(await replicas[1].wait_messages(1024))
                elapsed = time.perf_counter() - started
                stats = replicas[0].statistics()
                assert stats.dropped == {}
                results.append(
                    f"{label}: {count / elapsed:,.0f} messages/s "
                    f"({stats.frames_sent / stats.sends:.0f} frames per send_all)"
                )
                nursery.cancel_scope.cancel()
    size = len(encode(prepare(0, 0)))
    print(f"\nthroughput, one TLS 1.3 link, {size}-byte PREPARE frames:\n  " + "\n  ".join(results))


def test_a_replica_transport_must_use_its_configured_identity():
    with pytest.raises(ValueError, match="replica 1"):
        Transport.for_replica(CONFIG, 1, SIGNERS[0], rng=random.Random(0))


def test_limits_come_from_the_configuration():
    assert Limits.from_config(CONFIG).frame_bytes_max == CONFIG.frame_bytes_max
    with pytest.raises(ValueError):
        TransportSettings(connections_max=0)


@pytest.mark.trio
async def test_the_inbox_gives_replicas_messages_first_and_bounds_clients_in_bytes():
    """Issue 13, items 6 and 7: a client flooding its connection fills only the clients' queue
    (bounded in bytes: its reader then waits, and TCP pushes back), and the node loop takes
    the replicas' messages first: the protocol's own messages do not wait behind the flood."""
    from pbft.runtime.transport import Peer, _Inbox

    inbox = _Inbox(replica_bytes_max=1_000, client_bytes_max=300)
    client, replica = Peer(b"c" * 32), Peer(b"r" * 32, 1)
    for i in range(3):
        assert inbox.put_nowait(client, f"flood-{i}", 100)
    assert not inbox.put_nowait(client, "flood-3", 100), "the clients' queue is full"
    assert inbox.put_nowait(replica, "vote", 100)
    assert await inbox.take(2) == [(replica, "vote"), (client, "flood-0")]
    assert inbox.put_nowait(client, "flood-3", 100), "room again"
    blocked = []

    async def put_late() -> None:
        await inbox.put(client, "flood-4", 100)
        blocked.append("in")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(put_late)
        await trio.testing.wait_all_tasks_blocked()
        assert blocked == [], "a full queue makes its reader wait"
        assert [m for _, m in await inbox.take(10)] == ["flood-1", "flood-2", "flood-3"]
    assert blocked == ["in"] and len(inbox) == 1 and inbox.bytes == 100
    inbox.close()
    assert [m for _, m in await inbox.take(10)] == ["flood-4"]
    with pytest.raises(trio.EndOfChannel):
        await inbox.take(1)
    with pytest.raises(trio.ClosedResourceError):
        inbox.put_nowait(replica, "late", 1)


@pytest.mark.trio
async def test_a_replicas_message_overtakes_a_client_flood_waiting_in_the_inbox():
    """Issue 13, item 7, over sockets: a client floods replica 0 (3,000 requests) while its node
    loop is busy; a replica's PREPARE sent after the flood is the first message the loop takes.
    With one shared queue it waited behind every request already queued."""
    settings = replace(SETTINGS, inbox_client_bytes_max=64 * 1024)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            replicas = await start_replicas(nursery, [0, 1], settings)
            stream = await open_tls(replicas[0].port, CLIENT)
            flood = pack_frames([encode(request(t)) for t in range(1, 3_001)])
            # (In the background: once the clients' queue is full, TCP pushes back.)
            nursery.start_soon(stream.send_all, flood)
            await wait_until(lambda: replicas[0].statistics().inbox_depth > 100)
            assert replicas[1].send(0, prepare(7, 1))
            await trio.sleep(0.5)  # the PREPARE arrives behind the queued flood
            [(peer, first)] = await replicas[0].wait_messages(1)
            assert (peer, first) == (replica_peer(1), prepare(7, 1))
            assert replicas[0].statistics().inbox_bytes <= 64 * 1024 + 1024
            nursery.cancel_scope.cancel()
        await trio.aclose_forcefully(stream)
