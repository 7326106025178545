"""Checkpoints, garbage collection and state transfer (C1, C2, S1): single cores for the rules,
seeded clusters for a backup cut off for many checkpoint intervals, a lying snapshot server, a
replica restarted with an empty disk, and bounded memory over 100,000 requests."""

from __future__ import annotations

from pbft.app import kv_append, kv_put
from pbft.messages import Checkpoint

from simulations.byzantine import CorruptSnapshot

from .corekit import (
    commit_batch,
    drain,
    make_replica,
    pre_prepare,
    random_order_cluster,
    request,
    sent,
    sign,
)

SMALL = {
    "checkpoint_interval": 4,
    "log_window": 8,
    "request_timeout_ms": 500,
    "view_change_timeout_ms": 1_000,
    "client_retry_timeout_ms": 200,
    "state_transfer_timeout_ms": 300,
}
#: Snapshots of several chunks, so that every source is asked for some (S1').
SMALL_CHUNKS = {**SMALL, "state_chunk_bytes": 64}


def _run(cluster, sessions, count, key="k"):
    cluster.run_workload(sessions, count, lambda c, i: kv_append(f"{key}{c}", b"%d," % i))
    cluster.deliver_all()


def test_c1_a_checkpoint_every_k_sequence_numbers_with_the_state_digest():
    """C1: after executing sequence K the replica multicasts a signed CHECKPOINT whose digest is
    the SHA-256 of its state snapshot (application, reply cache, agreed time)."""
    backup = make_replica(1, checkpoint_interval=2, log_window=4)
    commit_batch(backup, pre_prepare(1, requests=(request(1),)))
    assert sent(drain(backup), Checkpoint) == []
    commit_batch(backup, pre_prepare(2, requests=(request(2),)))
    ((to, checkpoint),) = sent(drain(backup), Checkpoint)
    assert to == (0, 2, 3) and checkpoint.sequence == 2 and checkpoint.replica == 1
    assert checkpoint.digest == backup.state_digest()


def _checkpoint(replica: int, sequence: int, digest: bytes) -> Checkpoint:
    return sign(Checkpoint(sequence, digest, replica, b""))


def test_c2_2f_plus_1_matching_checkpoints_make_it_stable_and_collect_garbage():
    """C2: with its own and one more CHECKPOINT (2 of 3) nothing moves; the third makes it
    stable: h = n, H = h + L, and the log at or below n is discarded."""
    backup = make_replica(1, checkpoint_interval=2, log_window=4)
    for s in (1, 2, 3):
        commit_batch(backup, pre_prepare(s, requests=(request(s),)))
    digest = next(m for _, m in sent(drain(backup), Checkpoint)).digest
    backup.receive(_checkpoint(0, 2, digest))
    assert backup.stable_checkpoint == 0 and backup.log_size() == 3
    backup.receive(_checkpoint(3, 2, digest))
    assert (backup.stable_checkpoint, backup.high_watermark) == (2, 6)
    assert backup.log_size() == 1, "entries 1 and 2 are gone, 3 remains"
    assert [c.replica for c in backup.stable_checkpoint_proof] == [0, 1, 3]


def test_c2_checkpoints_with_another_digest_do_not_make_it_stable():
    """C2: CHECKPOINTs must match; two liars with a different digest prove nothing."""
    backup = make_replica(1, checkpoint_interval=2, log_window=4)
    for s in (1, 2):
        commit_batch(backup, pre_prepare(s, requests=(request(s),)))
    for r in (0, 3):
        backup.receive(_checkpoint(r, 2, b"\x09" * 32))
    assert backup.stable_checkpoint == 0


def test_s1_a_backup_cut_off_for_10_checkpoint_intervals_rejoins_by_state_transfer():
    """S1: replica 3 hears nothing for 10+ checkpoint intervals; once healed it learns of the
    stable checkpoint, fetches the state, catches up, and then its votes are needed: with
    replica 2 crashed, the cluster still commits."""
    cluster = random_order_cluster(seed=5, config_overrides=SMALL)
    sessions = [cluster.add_client(f"c{i}") for i in range(2)]
    cut = cluster.network.isolate(3, [0, 1, 2] + [s.client for s in sessions])
    _run(cluster, sessions, 40)
    assert cluster.replicas[3].last_executed == 0
    assert cluster.replicas[0].stable_checkpoint >= 10 * 4
    cluster.network.heal(cut)
    _run(cluster, sessions, 20)
    rejoined = cluster.replicas[3]
    assert rejoined.state_transfers_completed >= 1
    assert rejoined.last_executed == cluster.replicas[0].last_executed
    cluster.crash(2)
    before = rejoined.last_executed
    _run(cluster, sessions, 20)
    assert rejoined.last_executed > before, "replica 3 takes part in agreement again"
    assert len({cluster.replicas[r].state_digest() for r in (0, 1, 3)}) == 1


def test_s1_a_replica_serving_a_corrupted_snapshot_is_detected_and_another_is_used():
    """S1, S1': replica 0 flips a bit in every STATE-CHUNK it serves; replica 3, restarted with
    an empty state, refuses each such chunk as it arrives (its Merkle proof no longer leads to
    the proven digest) and gets the snapshot from the others."""
    cluster = random_order_cluster(seed=5, config_overrides=SMALL_CHUNKS)
    liar = CorruptSnapshot()
    cluster.add_behaviour(0, liar)
    sessions = [cluster.add_client(f"c{i}") for i in range(2)]
    _run(cluster, sessions, 20)
    cluster.crash(3)
    _run(cluster, sessions, 20)
    restarted = cluster.restart(3, wipe=True)
    _run(cluster, sessions, 20)
    assert liar.corrupted >= 1
    assert restarted.dropped["bad_state_chunk"] >= 1
    assert restarted.state_transfers_completed >= 1
    assert len({r.state_digest() for r in cluster.replicas}) == 1


def test_s1_a_replica_restarted_with_an_empty_state_catches_up():
    """S1: a backup loses its whole state; after restarting it fetches state and batches and
    ends with the same state digest as the others."""
    cluster = random_order_cluster(seed=8, config_overrides=SMALL)
    sessions = [cluster.add_client(f"c{i}") for i in range(3)]
    _run(cluster, sessions, 15)
    cluster.crash(2)
    cluster.restart(2, wipe=True)
    _run(cluster, sessions, 15)
    cluster.run_for(2_000)
    assert cluster.replicas[2].state_transfers_completed >= 1
    assert len({r.state_digest() for r in cluster.replicas}) == 1
    assert len({r.last_executed for r in cluster.replicas}) == 1


def test_memory_stays_bounded_over_100000_requests():
    """C2: after 100,000 requests each replica holds at most log_window log entries and batches,
    a bounded number of checkpoints, snapshots and stashed messages. (Signatures are a cheap
    stand-in here, and the engine's evidence is not recorded: this test is about the replicas'
    memory, not cryptography.)"""
    config = {"checkpoint_interval": 16, "log_window": 32, "batch_size_max": 50}
    cluster = random_order_cluster(seed=2, wire=False, insecure_signatures=True,
                                   evidence=False, config_overrides=config)
    sessions = [cluster.add_client(f"c{i}") for i in range(100)]
    cluster.run_workload(sessions, 1_000, lambda c, i: kv_put(f"k{c}", b"%d" % i))
    cluster.deliver_all()
    assert sum(len(s.results) for s in sessions) == 100_000
    for replica in cluster.replicas:
        footprint = replica.memory_footprint()
        assert footprint["log"] <= 32
        assert footprint["batches"] <= 32
        assert footprint["prepared_certificates"] <= 32
        assert footprint["checkpoint_sequences"] <= 32 // 16 + 1 + 4
        assert footprint["snapshots"] <= 32 // 16 + 1
        assert footprint["stash"] == 0 and footprint["pending"] == 0
        assert footprint["clients"] == 100
    # The executed history itself is the driver's, not the replica's, and is complete.
    assert sum(len(b.requests) for b in cluster.executed[0]) == 100_000
    assert len({r.state_digest() for r in cluster.replicas}) == 1


def test_s1_a_replica_that_does_not_answer_a_fetch_is_skipped_after_the_timeout():
    """S1, S1': replica 0 never answers FETCH-STATE; after state_transfer_timeout_ms the
    restarted replica asks another replica for what it asked 0, and catches up."""
    from pbft.messages import FetchState

    cluster = random_order_cluster(seed=6, config_overrides=SMALL_CHUNKS)
    cluster.network.lose(FetchState, 1.0, destinations=[0])
    sessions = [cluster.add_client(f"c{i}") for i in range(2)]
    _run(cluster, sessions, 15)
    cluster.crash(3)
    _run(cluster, sessions, 15)
    restarted = cluster.restart(3, wipe=True)
    _run(cluster, sessions, 15)
    cluster.run_for(2_000)
    assert restarted.dropped["state_fetch_timeout"] >= 1
    assert restarted.state_transfers_completed >= 1
    assert len({r.state_digest() for r in cluster.replicas}) == 1


def test_s1_catch_up_answers_are_rate_limited_per_replica():
    """S1: a FETCH-LOG is answered with commit certificates, but at most once per replica per
    state_transfer_timeout_ms, so a Byzantine replica cannot make us flood the network."""
    from pbft.messages import NULL_DIGEST, FetchLog, LoggedBatch

    backup = make_replica(1, state_transfer_timeout_ms=300)
    for s in (1, 2):
        commit_batch(backup, pre_prepare(s, requests=(request(s),)))
    drain(backup)
    ask = sign(FetchLog(1, NULL_DIGEST, 2, b""))
    backup.receive(ask)
    assert [m.pre_prepare.sequence for _, m in sent(drain(backup), LoggedBatch)] == [1, 2]
    backup.receive(ask)
    assert sent(drain(backup), LoggedBatch) == []
    assert backup.dropped["fetch_log_too_soon"] == 1
    backup.tick(300)
    backup.receive(ask)
    assert len(sent(drain(backup), LoggedBatch)) == 2
