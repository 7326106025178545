"""What /status, /metrics and `pbft status` say about each replica's state and lag (issue 12):
replicas started with `serve_replica` in one trio program and read over the metrics endpoint;
other replicas' claims of progress come from real transports signing as those replicas."""

from __future__ import annotations

import functools
import json
import random
import re

import pytest
import trio

from pbft.app import KeyValueStore, kv_append
from pbft.codec import signing_payload
from pbft.messages import Checkpoint
from pbft.runtime.cli import cluster_health
from pbft.runtime.client import connect
from pbft.runtime.metrics import fetch
from pbft.runtime.node import NodeSettings, is_recovering, replica_health, serve_replica
from pbft.runtime.transport import Transport
from tests.test_runtime_node import CLIENTS, QUICK, SIGNERS, make_config


class CountingStore(KeyValueStore):
    """A key-value store that counts its snapshots (the cost of a state digest)."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots = 0

    def snapshot(self) -> bytes:
        self.snapshots += 1
        return super().snapshot()


async def start_node(nursery, config, replica_id, app, data):
    return await nursery.start(functools.partial(
        serve_replica, config, replica_id, SIGNERS[replica_id], app, data / f"replica-{replica_id}",
        settings=NodeSettings(transport=QUICK), rng=random.Random(replica_id),
    ))  # fmt: skip


async def status_of(node) -> dict:
    return json.loads(await fetch("127.0.0.1", node.metrics_port, "/status"))


async def wait_status(node, condition, timeout_s: float = 10) -> dict:
    """Poll `node`'s /status until `condition(status)` holds; return it."""
    status = None
    with trio.move_on_after(timeout_s):
        while True:
            status = await status_of(node)
            if condition(status):
                return status
            await trio.sleep(0.02)
    raise AssertionError(f"replica {node.id}: condition not met in {timeout_s} s: {status}")


def gauge(metrics: str, name: str) -> int:
    return int(re.search(rf"^{name} (\d+)$", metrics, re.M).group(1))


@pytest.mark.trio
async def test_replicas_in_step_show_one_state_digest_and_no_lag(tmp_path):
    """C1 (a CHECKPOINT's digest is the state's): replicas that executed the same sequence
    numbers show the same state digest in /status, behind 0, not recovering, health ok; the
    digest moves with execution. /metrics exports the lag and recovering gauges."""
    config = make_config()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nodes = [await start_node(nursery, config, i, KeyValueStore(), tmp_path)
                     for i in range(4)]  # fmt: skip
            async with connect(config, CLIENTS, settings=QUICK, wait_connected_s=10) as client:
                for i in range(5):
                    await client.submit(kv_append("log", b"%d;" % i))
            target = max(node.replica.last_executed for node in nodes)
            statuses = [await wait_status(node, lambda s: s["last_executed"] == target)
                        for node in nodes]  # fmt: skip
            digests = {s["state_digest"] for s in statuses}
            assert len(digests) == 1 and len(digests.pop()) == 64, statuses
            for s in statuses:
                assert (s["behind"], s["recovering"], s["health"]) == (0, False, "ok"), s
                assert s["following"] is False
                assert s["highest_seen"] <= s["last_executed"]
                assert s["behind_max"] == config.checkpoint_interval
            metrics = (await fetch("127.0.0.1", nodes[1].metrics_port, "/metrics")).decode()
            assert gauge(metrics, "pbft_sequences_behind") == 0
            assert gauge(metrics, "pbft_recovering") == 0
            assert gauge(metrics, "pbft_following") == 0
            assert gauge(metrics, "pbft_sequences_behind_max") == config.checkpoint_interval
            before = statuses[0]["state_digest"]
            async with connect(config, CLIENTS, settings=QUICK, wait_connected_s=10) as client:
                await client.submit(kv_append("log", b"more"))
            after = await wait_status(nodes[0], lambda s: s["last_executed"] > target)
            assert after["state_digest"] != before
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_the_state_digest_is_computed_once_per_executed_sequence_number(tmp_path):
    """Snapshotting the application costs its size: /status computes the digest at most once
    per executed sequence number, however often it is asked."""
    config = make_config()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            apps = [CountingStore() for _ in range(4)]
            nodes = [await start_node(nursery, config, i, apps[i], tmp_path) for i in range(4)]
            async with connect(config, CLIENTS, settings=QUICK, wait_connected_s=10) as client:
                await client.submit(kv_append("log", b"x"))
            for executed in (1, 2):
                if executed == 2:
                    async with connect(config, CLIENTS, settings=QUICK,
                                       wait_connected_s=10) as client:  # fmt: skip
                        await client.submit(kv_append("log", b"y"))
                while nodes[2].replica.last_executed < executed:
                    await trio.sleep(0.01)
                snapshots = apps[2].snapshots
                digests = {(await status_of(nodes[2]))["state_digest"] for _ in range(5)}
                assert len(digests) == 1 and apps[2].snapshots == snapshots + 1
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_replica_others_have_shown_to_be_far_behind_is_not_ok(tmp_path):
    """S1 (others ahead): replicas 0 and 1 (transports signing with their keys) show replica 3
    signed CHECKPOINTs ahead of it. One checkpoint interval ahead, with nothing to execute,
    replica 3 is recovering but healthy (within the bound); 320 ahead it is "behind" (not ok),
    and /metrics says so. Replica 2, shown nothing, stays ok."""
    config = make_config()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            others = {}
            for i in (0, 1):
                others[i] = Transport.for_replica(config, i, SIGNERS[i], rng=random.Random(i),
                                                  settings=QUICK)  # fmt: skip
                await nursery.start(others[i].serve, "127.0.0.1", config.replicas[i].port)
            nodes = {i: await start_node(nursery, config, i, KeyValueStore(), tmp_path)
                     for i in (2, 3)}  # fmt: skip

            def claim(sequence: int) -> None:
                for i, transport in others.items():
                    unsigned = Checkpoint(sequence, b"\x01" * 32, i, b"")
                    signature = SIGNERS[i].sign(signing_payload(unsigned))
                    transport.send(3, Checkpoint(sequence, unsigned.digest, i, signature))

            for transport in others.values():
                await transport.wait_connected(3)
            claim(config.checkpoint_interval)
            status = await wait_status(nodes[3], lambda s: s["recovering"])
            assert status["behind"] == config.checkpoint_interval == status["behind_max"]
            assert status["health"] == "ok", status
            claim(320)
            status = await wait_status(nodes[3], lambda s: s["behind"] == 320)
            assert status["health"] == "behind" and status["recovering"], status
            metrics = (await fetch("127.0.0.1", nodes[3].metrics_port, "/metrics")).decode()
            assert gauge(metrics, "pbft_sequences_behind") == 320
            assert gauge(metrics, "pbft_recovering") == 1
            status = await status_of(nodes[2])
            assert (status["behind"], status["recovering"]) == (0, False), status
            nursery.cancel_scope.cancel()


def _status(last_executed: int, behind: int = 0, health: str = "ok") -> dict:
    return {"last_executed": last_executed, "behind": behind, "health": health,
            "behind_max": 64}  # fmt: skip


def test_pbft_status_calls_a_replica_behind_the_others_not_ok():
    """`pbft status` compares the replicas: one that executed more than its bound fewer than
    the one most advanced is "behind" even if it does not know it (it has not heard from the
    others lately); within the bound it stays ok; its own verdicts and unreachable replicas
    stand."""
    results = [_status(300), _status(300), _status(0), _status(236, behind=1), "unreachable"]
    assert cluster_health(results) == [
        ("ok", 0), ("ok", 0), ("behind", 300), ("ok", 64), ("unreachable", None),
    ]
    results = [_status(10, behind=300), _status(10, health="view_change")]
    assert cluster_health(results) == [("behind", 300), ("view_change", 0)]


@pytest.mark.parametrize(
    ("fetching_state", "view_active", "behind", "stalled_ms", "recovering"),
    [
        (False, True, 0, 10_000, False),  # up to date, idle
        (False, True, 3, 10, False),  # the batches in flight, executing
        (False, True, 3, 500, True),  # others ahead, nothing executed for a while (S1)
        (False, True, 65, 0, True),  # beyond the bound though executing
        (True, True, 0, 0, True),  # a state fetch (S1)
        (False, False, 0, 0, True),  # a view change
    ],
)
def test_recovering_means_fetching_changing_view_or_behind(
    fetching_state, view_active, behind, stalled_ms, recovering
):
    """S1, V1: what `recovering` in /status and pbft_recovering say, case by case."""
    assert is_recovering(
        fetching_state=fetching_state, view_active=view_active, behind=behind, behind_max=64,
        stalled_ms=stalled_ms, stall_ms_max=500,
    ) is recovering


HEALTHY = {"view_active": True, "fetching_state": False, "behind": 0, "behind_max": 64,
           "following": False, "peers_connected": 3, "peers_heard": 3, "f": 1}  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "health"),
    [
        ({}, "ok"),
        ({"behind": 64}, "ok"),
        ({"peers_connected": 2}, "ok"),
        ({"behind": 65}, "behind"),
        ({"following": True}, "following"),
        ({"peers_connected": 1}, "isolated"),
        # Issue 13, item 2: connected (TCP says so) but not heard: a silent partition.
        ({"peers_heard": 1}, "isolated"),
        ({"peers_heard": 2}, "ok"),
        ({"fetching_state": True, "behind": 300}, "catching_up"),
        ({"view_active": False, "fetching_state": True}, "view_change"),
    ],
)
def test_health_names_the_first_thing_wrong(changes, health):
    """S1 (behind, catching up), V1 (view change), V5' (following without voting), and 2f
    connected peers: what health in /status says, case by case."""
    assert replica_health(**{**HEALTHY, **changes}) == health
