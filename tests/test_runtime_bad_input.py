"""Bad input at the socket of a running replica process (issue 5, "What must be shown"): random
bytes, an oversized frame, a truncated frame, forged signatures, a wrong certificate and a flood
of connections are each refused with a reason in the replica's (JSON) log, and a correct client
is served before and after. One cluster of four processes serves the whole module."""

from __future__ import annotations

import random
import time
from dataclasses import replace

import pytest
import trio

from benchmarks.runtime_crash_all import FAST_BOUNDS
from pbft.app import kv_decode_result, kv_put
from pbft.codec import decode, encode, signing_payload
from pbft.ed25519 import Ed25519Signer
from pbft.messages import Prepare, Request
from pbft.runtime.client import connect
from pbft.runtime.cluster import LocalCluster, generate_cluster
from pbft.runtime.framing import pack_frames
from pbft.runtime.tls import client_context

from .test_runtime_tls import self_signed_client_context

HOST = "127.0.0.1"
CONNECTIONS_MAX = 48


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    files = generate_cluster(tmp_path_factory.mktemp("bad-input"), clients=2, bounds=FAST_BOUNDS)
    replica_args = ["--connections-max", str(CONNECTIONS_MAX), "--handshake-timeout-s", "1"]
    with LocalCluster(files, replica_args=replica_args) as cluster:
        cluster.start_all()
        cluster.wait_all_ready_blocking()
        yield cluster


def refusals(cluster: LocalCluster, reason: str, since: float) -> list[dict]:
    return [r for r in cluster.log_records(0)
            if r.get("reason") == reason and r.get("time", 0) >= since]  # fmt: skip


async def wait_logged(cluster: LocalCluster, reason: str, since: float, count: int = 1):
    """The replica-0 log records with `reason` written since `since`, once `count` are there."""
    with trio.fail_after(10):
        while len(found := refusals(cluster, reason, since)) < count:
            await trio.sleep(0.05)
    return found


async def assert_served(cluster: LocalCluster, key: str) -> None:
    """A correct client gets its request ordered and answered."""
    files = cluster.files
    with trio.fail_after(30):
        async with connect(files.config, files.client_signers(1), wait_connected_s=10) as client:
            assert kv_decode_result(await client.submit(kv_put(key, b"v"))) == ("ok", None)


async def open_tls(cluster: LocalCluster, identity: Ed25519Signer, context=None):
    port = cluster.config.replicas[0].port
    tcp = await trio.open_tcp_stream(HOST, port)
    stream = trio.SSLStream(tcp, context or client_context(identity.seed), server_side=False)
    await stream.do_handshake()
    return stream


async def wait_closed_by_peer(stream) -> None:
    try:
        with trio.fail_after(10):
            while await stream.receive_some(65536):
                pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def signed_request(signer: Ed25519Signer, timestamp: int, operation: bytes) -> Request:
    unsigned = Request(operation, timestamp, signer.public_key, False, b"")
    return replace(unsigned, signature=signer.sign(signing_payload(unsigned)))


@pytest.mark.trio
async def test_random_bytes_are_refused_at_the_handshake(cluster):
    since = time.time()
    raw = await trio.open_tcp_stream(HOST, cluster.config.replicas[0].port)
    await raw.send_all(random.Random(1).randbytes(4096))
    await wait_closed_by_peer(raw)
    await raw.aclose()
    [record] = await wait_logged(cluster, "tls_handshake_failed", since)
    assert record["peer_address"].startswith(HOST) and record["level"] == "WARNING"
    await assert_served(cluster, "after-random-bytes")


@pytest.mark.trio
async def test_a_frame_larger_than_the_maximum_is_refused_before_its_body(cluster):
    since = time.time()
    stream = await open_tls(cluster, Ed25519Signer.generate())
    await stream.send_all((1 << 30).to_bytes(4, "big") + b"x" * 1024)
    await wait_closed_by_peer(stream)
    await trio.aclose_forcefully(stream)
    [record] = await wait_logged(cluster, "frame_too_large", since)
    assert "1073741824" in record["message"]
    await assert_served(cluster, "after-oversized")


@pytest.mark.trio
async def test_a_truncated_frame_is_refused(cluster):
    since = time.time()
    signer = Ed25519Signer.generate()
    stream = await open_tls(cluster, signer)
    frame = pack_frames([encode(signed_request(signer, 1, kv_put("t", b"v")))])
    await stream.send_all(frame[:-7])
    await stream.aclose()  # a clean TLS close in the middle of the frame
    [record] = await wait_logged(cluster, "truncated_frame", since)
    assert "bytes into a frame" in record["message"]
    await assert_served(cluster, "after-truncated")


@pytest.mark.trio
async def test_forged_signatures_are_dropped_and_logged(cluster):
    """N1, N10: a request whose signature does not verify is never ordered; neither is a
    protocol message a client connection passes off as a replica's."""
    since = time.time()
    # The forger is an admitted client (N8'): its request reaches the signature check.
    forger, victim = cluster.files.client_signers()[1], Ed25519Signer.generate()
    stream = await open_tls(cluster, forger)
    own = replace(signed_request(forger, 1, kv_put("forged", b"1")), signature=b"\x01" * 64)
    # A registration of someone else's replies to this connection, forged: the node refuses.
    from pbft.runtime.transport import ROUTE_REGISTRATION

    other = Request(ROUTE_REGISTRATION + forger.public_key, 0, victim.public_key, True,
                    b"\x02" * 64)
    vote = Prepare(view=0, sequence=1, digest=bytes(32), replica=1, signature=b"\x03" * 64)
    await stream.send_all(pack_frames([encode(own), encode(other), encode(vote)]))
    found = await wait_logged(cluster, "bad_request_signature", since, count=2)
    assert all(r["level"] == "WARNING" and r["peer"].startswith("client ") for r in found)
    await wait_logged(cluster, "client_sent_protocol_message", since)
    await trio.aclose_forcefully(stream)
    await assert_served(cluster, "after-forgery")
    files = cluster.files
    async with connect(files.config, files.client_signers(1)) as client:
        from pbft.app import kv_get

        with trio.fail_after(30):
            value = kv_decode_result(await client.submit(kv_get("forged")))
    assert value == ("ok", None), "no forged request was executed"


@pytest.mark.trio
async def test_a_certificate_not_from_the_issuer_is_refused(cluster):
    since = time.time()
    # The key of a configured replica even, in a self-signed certificate.
    seed = cluster.files.replica_signer(1).seed
    try:
        stream = await open_tls(cluster, None, self_signed_client_context(seed))
    except trio.BrokenResourceError:
        pass
    else:
        await wait_closed_by_peer(stream)
        await trio.aclose_forcefully(stream)
    found = await wait_logged(cluster, "tls_handshake_failed", since)
    assert any("self-signed" in r["message"] for r in found)
    await assert_served(cluster, "after-bad-certificate")


@pytest.mark.trio
async def test_a_flood_of_connections_is_bounded_and_correct_clients_are_served(cluster):
    since = time.time()
    files = cluster.files
    flood = CONNECTIONS_MAX + 20
    with trio.fail_after(60):
        async with connect(files.config, files.client_signers(1), wait_connected_s=10) as client:
            port = cluster.config.replicas[0].port
            silent = [await trio.open_tcp_stream(HOST, port) for _ in range(flood)]
            refused = await wait_logged(cluster, "connections_max", since, count=20)
            assert "connections_max is 48" in refused[0]["message"]
            # Already connected, the client is served while the flood holds every slot.
            assert kv_decode_result(await client.submit(kv_put("flood", b"1"))) == ("ok", None)
            await wait_logged(cluster, "handshake_timeout", since, count=10)
            for stream in silent:
                await stream.aclose()
        await assert_served(cluster, "after-flood")  # a new connection gets in again


@pytest.mark.trio
async def test_a_replica_relays_signed_checkpoints_and_new_views_but_not_votes(tmp_path):
    """Issue 13, item 8: the core passes on other replicas' CHECKPOINTs (the proof of a stable
    checkpoint, to a replica behind) and NEW-VIEWs; the door check dropped every one of them as
    `sender_mismatch`, so that relay never worked over TCP. Signed messages are accepted by
    their signature (the core checks it); a vote stays bound to its sender's connection."""
    from pbft.messages import Checkpoint

    files = generate_cluster(tmp_path, clients=1, bounds=FAST_BOUNDS)
    with LocalCluster(files) as solo:
        solo.start(0)  # alone: we play replica 1 on its connection
        await solo.wait_ready(0)
        stream = await open_tls(solo, files.replica_signer(1))
        relayed = Checkpoint(64, b"\x07" * 32, 2, b"")
        relayed = replace(relayed, signature=files.replica_signer(2).sign(signing_payload(relayed)))
        vote = Prepare(view=0, sequence=1, digest=bytes(32), replica=2, signature=b"\x03" * 64)
        await stream.send_all(pack_frames([encode(relayed), encode(vote)]))
        with trio.fail_after(10):
            while (status := await solo.status(0)) is None or status["highest_seen"] < 64:
                await trio.sleep(0.05)
        metrics = await solo.metrics(0)
        await trio.aclose_forcefully(stream)
    mismatches = [line for line in metrics.splitlines()
                  if line.startswith("pbft_dropped_messages_total")
                  and 'reason="sender_mismatch"' in line]
    assert [line.rsplit(" ", 1)[1] for line in mismatches] == ["1"], mismatches


@pytest.mark.trio
async def test_a_replayed_request_does_not_steal_the_victims_replies(cluster):
    """Issue 13, item 4: any connection that relayed a client's old signed request became the
    route of that client's replies (the victim's latency went from 13 ms to ~1 s, and its
    replies went to the attacker). Now a reply goes to the client's own connection, or to one
    the client registered by signing that connection's key: replaying the victim's requests,
    or its registration made for another connection, moves nothing."""
    from pbft.messages import Reply
    from pbft.runtime.framing import FrameReader
    from pbft.runtime.transport import ROUTE_REGISTRATION

    files = cluster.files
    victim, attacker = files.client_signers()[0], Ed25519Signer.generate()
    stolen: list[Reply] = []
    stream = await open_tls(cluster, attacker)
    old = signed_request(victim, 1, kv_put("victim", b"old"))
    unsigned = Request(ROUTE_REGISTRATION + b"\x09" * 32, 0, victim.public_key, True, b"")
    registration = replace(unsigned, signature=victim.sign(signing_payload(unsigned)))

    async def replay_and_listen() -> None:
        reader = FrameReader(stream, cluster.config.frame_bytes_max)

        async def listen() -> None:
            while (body := await reader.receive_frame()) is not None:
                if not body:
                    continue  # a heartbeat (issue 13, item 1)
                message = decode(body)
                if isinstance(message, Reply) and message.client == victim.public_key:
                    stolen.append(message)

        async with trio.open_nursery() as inner:
            inner.start_soon(listen)
            while True:
                await stream.send_all(pack_frames([encode(old), encode(registration)]))
                await trio.sleep(0.02)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(replay_and_listen)
        with trio.fail_after(30):
            async with connect(files.config, victim, wait_connected_s=10) as client:
                for i in range(10):
                    await client.submit(kv_put("victim", b"%d" % i))
                    await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    await trio.aclose_forcefully(stream)
    assert stolen == []
