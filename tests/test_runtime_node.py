"""The replica node and the async client embedded in one trio program (issue 5, items 3-4):
four `serve_replica` nodes started with `nursery.start` on loopback, a client with `connect`;
covers the metrics endpoint, read-only queries (R1), the client's errors, reply
authentication, serialised calls on one identity, and clean shutdown and restart from disk."""

from __future__ import annotations

import functools
import json
import re
import random

import pytest
import trio

from pbft.app import KeyValueStore, kv_append, kv_decode_result, kv_get, kv_put
from pbft.config import ClusterConfig, ReplicaInfo
from pbft.core.sizes import replica_bytes_budget
from pbft.ed25519 import Ed25519Signer
from pbft.messages import Reply
from pbft.runtime.client import NoQuorumError, RequestRejectedError, connect
from pbft.runtime.cluster import free_ports
from pbft.runtime.metrics import Histogram, fetch
from pbft.runtime.node import NodeSettings, serve_replica
from pbft.runtime.transport import Transport, TransportSettings

SIGNERS = [Ed25519Signer(bytes([i + 1]) * 32) for i in range(4)]
CLIENTS = [Ed25519Signer(bytes([100 + i]) * 32) for i in range(4)]
BOUNDS = {
    "checkpoint_interval": 8,
    "log_window": 32,
    "request_timeout_ms": 1_000,
    "view_change_timeout_ms": 2_000,
    "client_retry_timeout_ms": 300,
    "state_transfer_timeout_ms": 500,
    "operation_bytes_max": 4096,
}
QUICK = TransportSettings(reconnect_delay_min_s=0.02, reconnect_delay_max_s=0.2)


def make_config() -> ClusterConfig:
    ports = free_ports(4)
    return ClusterConfig.create(
        [ReplicaInfo(i, s.public_key, "127.0.0.1", ports[i]) for i, s in enumerate(SIGNERS)],
        **BOUNDS,
    )


async def start_nodes(nursery, config, data, ids=range(4)):
    settings = NodeSettings(transport=QUICK)
    return {
        i: await nursery.start(functools.partial(
            serve_replica, config, i, SIGNERS[i], KeyValueStore(), data / f"replica-{i}",
            settings=settings, rng=random.Random(i),
        ))
        for i in ids
    }


@pytest.mark.trio
async def test_nodes_serve_ordered_and_read_only_requests_and_expose_metrics(tmp_path):
    """N1-N7 and R1 through the runtime; /metrics is Prometheus text, /status JSON."""
    config = make_config()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nodes = await start_nodes(nursery, config, tmp_path)
            async with connect(config, CLIENTS, settings=QUICK, wait_connected_s=10) as client:
                assert kv_decode_result(await client.submit(kv_put("k", b"v1"))) == ("ok", None)
                assert kv_decode_result(await client.query(kv_get("k"))) == ("ok", b"v1")
                results = []

                async def append(i):
                    results.append(await client.submit(kv_append("log", b"%d;" % i)))

                async with trio.open_nursery() as calls:
                    for i in range(20):
                        calls.start_soon(append, i)
                assert len(results) == 20
                assert client.statistics().completed == 22
            # f + 1 replies answer a client: the last replica may still be executing.
            while nodes[1].statistics().committed_requests < 21:
                await trio.sleep(0.01)
            stats = nodes[1].statistics()
            assert stats.view == 0 and stats.last_executed > 0
            assert stats.storage.records_appended > 0 and stats.persist_calls > 0
            metrics = (await fetch("127.0.0.1", nodes[0].metrics_port, "/metrics")).decode()
            for name in ("pbft_requests_committed_total", "pbft_batches_committed_total",
                         "pbft_view ", "pbft_view_changes_total", "pbft_dropped_messages_total",
                         "pbft_queue_depth", "pbft_request_latency_seconds_bucket"):  # fmt: skip
                assert name in metrics, name
            assert "# TYPE pbft_request_latency_seconds histogram" in metrics
            held = int(re.search(r"^pbft_core_bytes_held (\d+)$", metrics, re.M).group(1))
            budget = int(re.search(r"^pbft_core_bytes_budget (\d+)$", metrics, re.M).group(1))
            assert 0 < held < budget == replica_bytes_budget(nodes[0].replica.config)
            status = json.loads(await fetch("127.0.0.1", nodes[2].metrics_port, "/status"))
            assert status["replica"] == 2 and status["health"] == "ok"
            assert status["connected_peers"] == [0, 1, 3]
            with pytest.raises(ValueError, match="404"):
                await fetch("127.0.0.1", nodes[2].metrics_port, "/nothing")
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_one_identity_serialises_concurrent_calls(tmp_path):
    """N8 allows one outstanding request per client: concurrent calls on a one-identity client
    take turns, and each gets its own result."""
    config = make_config()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await start_nodes(nursery, config, tmp_path)
            async with connect(config, CLIENTS[0], settings=QUICK, wait_connected_s=10) as client:
                results = {}

                async def append(i):
                    results[i] = kv_decode_result(await client.submit(kv_append("s", b"x")))

                async with trio.open_nursery() as calls:
                    for i in range(6):
                        calls.start_soon(append, i)
                lengths = sorted(len(value) for _, value in results.values())
                assert lengths == [1, 2, 3, 4, 5, 6], results
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_the_client_says_what_failed(tmp_path):
    """No quorum reachable in time names the reachable replicas; an operation beyond the
    cluster's bound is rejected before it is sent."""
    config = make_config()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await start_nodes(nursery, config, tmp_path, ids=[0])
            async with connect(config, CLIENTS[0], settings=QUICK) as client:
                with pytest.raises(RequestRejectedError, match="operation_bytes_max"):
                    await client.submit(b"x" * 5000)
                with pytest.raises(NoQuorumError) as error:
                    await client.submit(kv_put("k", b"v"), timeout_s=1.5)
                assert error.value.reachable == [0] and error.value.needed == 2
                assert "connected to replicas [0] of 4" in str(error.value)
                # The identity is usable again afterwards (with a fresh session).
                with pytest.raises(NoQuorumError):
                    await client.query(kv_get("k"), timeout_s=0.5)
            with pytest.raises(NoQuorumError, match="not connected to a quorum"):
                async with connect(config, CLIENTS[1], settings=QUICK, wait_connected_s=0.5):
                    pass
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_reply_naming_another_replica_is_dropped(tmp_path):
    """Replies are channel-authenticated: a connection authenticated as replica 1 cannot
    deliver a reply in replica 2's name."""
    config = make_config()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            impostor = Transport.for_replica(config, 1, SIGNERS[1], rng=random.Random(1),
                                             settings=QUICK)  # fmt: skip
            await nursery.start(impostor.serve, "127.0.0.1", config.replicas[1].port)
            async with connect(config, CLIENTS[0], settings=QUICK) as client:
                while impostor.statistics().client_connections < 1:
                    await trio.sleep(0.01)
                key = CLIENTS[0].public_key
                impostor.send_to_client(key, Reply(0, 1, key, 2, b"forged", False))
                impostor.send_to_client(key, Reply(0, 1, key, 1, b"own name", False))
                while client.statistics().dropped.get("reply_from_wrong_replica", 0) < 1:
                    await trio.sleep(0.01)
                assert client.statistics().dropped == {"reply_from_wrong_replica": 1}
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_cancelled_nodes_shut_down_cleanly_and_recover_from_their_storage(tmp_path):
    """Cancelling `serve_replica` closes storage and connections; started again on the same
    data directories, the replicas recover their state (a snapshot and log) and go on."""
    config = make_config()
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            await start_nodes(nursery, config, tmp_path)
            async with connect(config, CLIENTS, settings=QUICK, wait_connected_s=10) as client:
                for i in range(30):
                    await client.submit(kv_append("durable", b"%d," % i))
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:
            nodes = await start_nodes(nursery, config, tmp_path)
            assert all(node.replica.last_executed > 0 for node in nodes.values())
            async with connect(config, CLIENTS, settings=QUICK, wait_connected_s=10) as client:
                value = kv_decode_result(await client.submit(kv_get("durable")))
            assert value == ("ok", b"".join(b"%d," % i for i in range(30)))
            nursery.cancel_scope.cancel()


def test_histogram_quantiles_are_bucket_bounds():
    histogram = Histogram((0.001, 0.01, 0.1))
    for value in (0.0005, 0.002, 0.003, 0.05, 5.0):
        histogram.observe(value)
    assert histogram.count == 5 and histogram.counts == [1, 2, 1, 1]
    assert histogram.quantile(0.5) == 0.01 and histogram.quantile(1.0) == 0.1
