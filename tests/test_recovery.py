"""Crash recovery from durable records: a replica rebuilt by `Replica.recover` from what its
`ready().persist` handed over keeps its votes and catches up; a whole cluster killed mid-load
and restarted loses no request a client saw acknowledged and runs none twice."""

from __future__ import annotations

import pytest

from pbft.app import kv_append

from simulations.cluster import InProcessCluster

FAST = {
    "checkpoint_interval": 4,
    "log_window": 8,
    "request_timeout_ms": 500,
    "view_change_timeout_ms": 1_000,
    "client_retry_timeout_ms": 200,
    "state_transfer_timeout_ms": 300,
}


def _run(cluster, sessions, count):
    cluster.run_workload(sessions, count, lambda c, i: kv_append(f"k{c}", b"%d," % i),
                         idle_step_ms=50)
    cluster.run()


def test_a_backup_recovers_from_its_records_and_catches_up():
    """S1: a backup crashes, misses some batches, recovers its snapshot and votes from its own
    records and then catches up with the others."""
    cluster = InProcessCluster(4, seed=3, config_overrides=FAST)
    sessions = [cluster.add_client(f"c{i}") for i in range(3)]
    _run(cluster, sessions, 10)
    cluster.crash(2)
    _run(cluster, sessions, 3)
    recovered = cluster.restart(2)
    assert recovered.last_executed > 0, "it starts from its last snapshot, not from nothing"
    _run(cluster, sessions, 10)
    cluster.settle(1_000)
    assert len({r.state_digest() for r in cluster.replicas}) == 1


def test_a_recovered_replica_does_not_vote_differently():
    """N10, V1: after recovery a replica holds the PRE-PREPARE it accepted and its own PREPARE
    for each sequence of its view, so a conflicting PRE-PREPARE is still refused."""
    from .corekit import SIGNERS, drain, make_config, pre_prepare, request
    from pbft.app import KeyValueStore
    from pbft.core import Replica
    from pbft.ed25519 import Ed25519Verifier

    config = make_config()
    backup = Replica(config, 1, SIGNERS[1], Ed25519Verifier(), KeyValueStore())
    backup.receive(pre_prepare(1, requests=(request(1),)))
    records = list(drain(backup).persist)
    recovered = Replica.recover(config, 1, SIGNERS[1], Ed25519Verifier(), KeyValueStore(), records)
    resent = drain(recovered).messages
    assert any(o.message in records for o in resent), "its PREPARE is sent again"
    recovered.receive(pre_prepare(1, requests=(request(2),)))
    assert recovered.dropped["conflicting_pre_prepare"] == 1


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_every_replica_killed_mid_load_loses_no_acknowledged_request(seed):
    """Exactly once, durability: all four replicas crash with requests in flight and restart
    from their records; every request a client saw acknowledged is executed, once, and every
    pending request completes."""
    cluster = InProcessCluster(4, seed=seed, config_overrides=FAST)
    sessions = [cluster.add_client(f"c{i}") for i in range(4)]
    _run(cluster, sessions, 6)
    for session in sessions:
        cluster.submit(session, kv_append(f"k-crash-{seed}", b"x"))
    for _ in range(cluster.rng.randrange(5, 60)):
        cluster.deliver_one()
    acknowledged = {(c, r.timestamp) for c, rs in cluster.results.items() for r in rs}
    for r in range(4):
        cluster.crash(r)
    for r in range(4):
        cluster.restart(r)
    while any(s.outstanding is not None for s in sessions):
        cluster.advance_time(50)
        cluster.run()
        assert cluster.now_ms < 120_000, "the restarted cluster made no progress"
    cluster.settle(1_000)
    assert len({r.state_digest() for r in cluster.replicas}) == 1
    for replica in cluster.replicas:
        table = replica.client_table
        for client, timestamp in acknowledged:
            assert table.last_timestamp(client) >= timestamp, "acknowledged and then lost"
    # Each client's results: one per request, none missing.
    for session in sessions:
        assert len(cluster.results[session.client]) == 7
