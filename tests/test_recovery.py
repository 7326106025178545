"""Crash recovery from durable records: a replica rebuilt by `Replica.recover` from what its
`ready().persist` handed over keeps its votes and catches up; a whole cluster killed mid-load
and restarted loses no request a client saw acknowledged and runs none twice."""

from __future__ import annotations

import pytest

from pbft.app import kv_append

from .corekit import random_order_cluster

FAST = {
    "checkpoint_interval": 4,
    "log_window": 8,
    "request_timeout_ms": 500,
    "view_change_timeout_ms": 1_000,
    "client_retry_timeout_ms": 200,
    "state_transfer_timeout_ms": 300,
}


def _run(cluster, sessions, count):
    cluster.run_workload(sessions, count, lambda c, i: kv_append(f"k{c}", b"%d," % i))
    cluster.deliver_all()


def test_a_backup_recovers_from_its_records_and_catches_up():
    """S1: a backup crashes, misses some batches, recovers its snapshot and votes from its own
    records and then catches up with the others."""
    cluster = random_order_cluster(seed=3, config_overrides=FAST)
    sessions = [cluster.add_client(f"c{i}") for i in range(3)]
    _run(cluster, sessions, 10)
    cluster.crash(2)
    _run(cluster, sessions, 3)
    recovered = cluster.restart(2)
    assert recovered.last_executed > 0, "it starts from its last snapshot, not from nothing"
    _run(cluster, sessions, 10)
    cluster.run_for(1_000)
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
    cluster = random_order_cluster(seed=seed, config_overrides=FAST)
    sessions = [cluster.add_client(f"c{i}") for i in range(4)]
    _run(cluster, sessions, 6)
    for session in sessions:
        cluster.submit(session, kv_append(f"k-crash-{seed}", b"x"))
    for _ in range(cluster.rng.randrange(5, 60)):
        cluster.deliver_one()
    acknowledged = {(s.client, r.timestamp) for s in sessions for r in s.results}
    for r in range(4):
        cluster.crash(r)
    for r in range(4):
        cluster.restart(r)
    assert cluster.run_until(lambda: all(s.session.outstanding is None for s in sessions),
                             within_ms=120_000), "the restarted cluster made no progress"
    cluster.run_for(1_000)
    assert len({r.state_digest() for r in cluster.replicas}) == 1
    for replica in cluster.replicas:
        table = replica.client_table
        for client, timestamp in acknowledged:
            assert table.last_timestamp(client) >= timestamp, "acknowledged and then lost"
    # Each client's results: one per request, none missing.
    for session in sessions:
        assert len(session.results) == 7


# --- votes sent before they are durable (Ready.durable_first, VoteHorizon) ---------------------


def _backup_and_records():
    """Backup 1 that accepted PRE-PREPARE 1 (the horizon is persisted with it) and then PRE-PREPARE
    2, whose Ready may be sent before it is durable; returns the backup, the records of the first
    Ready and those of the second."""
    from .corekit import drain, make_replica, pre_prepare, request

    backup = make_replica(1)
    backup.receive(pre_prepare(1, requests=(request(1),)))
    first = drain(backup)
    backup.receive(pre_prepare(2, requests=(request(2),)))
    second = drain(backup)
    return backup, first, second


def test_votes_under_a_durable_horizon_may_leave_before_they_are_durable():
    """N10 with early sends: the first vote of a view persists a VoteHorizon in a Ready that must
    be durable first; later PRE-PREPAREs and PREPAREs under it form Readies that need not be."""
    from pbft.messages import Prepare, PrePrepare, VoteHorizon

    backup, first, second = _backup_and_records()
    horizon = backup.config.checkpoint_interval + 1
    assert first.durable_first
    assert [type(r) for r in first.persist] == [PrePrepare, VoteHorizon, Prepare]
    assert VoteHorizon(0, horizon) in first.persist
    assert not second.durable_first
    assert {type(r) for r in second.persist} == {PrePrepare, Prepare}


def test_a_vote_beyond_the_horizon_extends_it_durably_first():
    """N10 with early sends: a PREPARE beyond the horizon waits for a new, durable horizon."""
    from pbft.messages import VoteHorizon

    from .corekit import drain, make_replica, pre_prepare, request

    backup = make_replica(1, checkpoint_interval=4, log_window=16)
    readies = []
    for n in range(1, 8):
        backup.receive(pre_prepare(n, requests=(request(n),)))
        readies.append(drain(backup))
    horizons = [[r for r in ready.persist if isinstance(r, VoteHorizon)] for ready in readies]
    assert horizons == [[VoteHorizon(0, 5)], [], [], [], [], [VoteHorizon(0, 10)], []]
    assert [ready.durable_first for ready in readies] == [True, False, False, False, False, True, False]


def test_a_replica_that_lost_votes_withholds_them_in_that_view_after_recovery():
    """N10 across a crash: backup 1 sent PREPARE 2 before it was durable and lost it. Recovered,
    it must not prepare anything else at 2 in view 0 (an equivocating primary's other batch), nor
    any sequence number up to its horizon; it still commits and executes on the others' votes."""
    from pbft.app import KeyValueStore
    from pbft.core import Replica
    from pbft.ed25519 import Ed25519Verifier
    from pbft.messages import Commit, Prepare

    from .corekit import SIGNERS, commit, drain, pre_prepare, prepare, request, sent

    backup, first, _lost = _backup_and_records()
    recovered = Replica.recover(backup.config, 1, SIGNERS[1], Ed25519Verifier(), KeyValueStore(),
                                list(first.persist))  # fmt: skip
    drain(recovered)
    other = pre_prepare(2, requests=(request(7),))  # the primary's other batch for 2
    recovered.receive(other)
    ready = drain(recovered)
    assert sent(ready, Prepare) == []
    assert recovered.votes_withheld == 1
    for r in (2, 3):
        recovered.receive(prepare(other, r))
    ready = drain(recovered)
    assert [m.sequence for _, m in sent(ready, Commit)] == [2], "prepared by the others (N4)"
    assert ready.durable_first, "its COMMIT waits for its prepared certificate"
    # Sequence 1 was voted durably and commits as usual; 2 then executes.
    pp1 = first.persist[0]
    recovered.receive(prepare(pp1, 2))
    for r in (0, 2, 3):
        recovered.receive(commit(pp1, r))
    for r in (0, 2):
        recovered.receive(commit(other, r))
    drain(recovered)
    assert recovered.last_executed == 2


def test_withholding_ends_above_the_horizon_and_with_the_view():
    """N10 across a crash: beyond the recovered horizon the replica votes again at once."""
    from pbft.app import KeyValueStore
    from pbft.core import Replica
    from pbft.ed25519 import Ed25519Verifier
    from pbft.messages import Prepare

    from .corekit import SIGNERS, drain, pre_prepare, request, sent

    backup, first, _lost = _backup_and_records()
    horizon = backup.config.checkpoint_interval + 1
    recovered = Replica.recover(backup.config, 1, SIGNERS[1], Ed25519Verifier(), KeyValueStore(),
                                list(first.persist))  # fmt: skip
    drain(recovered)
    recovered.receive(pre_prepare(horizon, requests=(request(50),)))
    assert sent(drain(recovered), Prepare) == []
    recovered.receive(pre_prepare(horizon + 1, requests=(request(51),)))
    ready = drain(recovered)
    assert [m.sequence for _, m in sent(ready, Prepare)] == [horizon + 1]
    assert ready.durable_first, "a new horizon is persisted before the vote beyond the old one"


def test_a_fresh_replica_and_one_without_lost_votes_withhold_nothing():
    """A replica started with no records, or whose horizon belongs to an earlier view, votes."""
    from pbft.app import KeyValueStore
    from pbft.core import Replica
    from pbft.ed25519 import Ed25519Verifier
    from pbft.messages import Prepare, VoteHorizon

    from .corekit import SIGNERS, drain, make_config, pre_prepare, request, sent

    config = make_config()
    fresh = Replica.recover(config, 1, SIGNERS[1], Ed25519Verifier(), KeyValueStore(), [])
    fresh.receive(pre_prepare(1, requests=(request(1),)))
    assert len(sent(drain(fresh), Prepare)) == 1
    old_view = Replica.recover(config, 1, SIGNERS[1], Ed25519Verifier(), KeyValueStore(),
                               [VoteHorizon(0, 65)])  # fmt: skip
    assert old_view._withheld == (0, 65)
    assert Replica.recover(config, 1, SIGNERS[1], Ed25519Verifier(), KeyValueStore(),
                           [])._withheld is None  # fmt: skip


def test_a_primary_restarted_while_fetching_state_never_proposes_below_it():
    """N10, S1: primary 0 proposed 1..20, executed 16, then learnt that 20 is stable and began to
    fetch that state; its records were compacted at 20 (nothing but the proof and its horizon
    left). Recovered, it proposes above 20 (found by review: it used to restart at 1)."""
    from pbft.app import KeyValueStore
    from pbft.core import Replica
    from pbft.ed25519 import Ed25519Verifier
    from pbft.messages import Checkpoint, PrePrepare
    from simulations.storage import SimulatedStorage

    from .corekit import SIGNERS, commit, commit_batch, make_config, prepare, request, sign

    config = make_config(checkpoint_interval=4, log_window=8, batch_size_max=1)
    primary = Replica(config, 0, SIGNERS[0], Ed25519Verifier(), KeyValueStore())
    mirror = Replica(config, 1, SIGNERS[1], Ed25519Verifier(), KeyValueStore())
    storage = SimulatedStorage()
    proposed: dict[int, bytes] = {}

    def flush(replica, durable=None):
        while replica.has_ready():
            ready = replica.ready()
            if durable is not None:
                durable.append(ready.persist)
                durable.compact(ready.status.low_watermark)
            for outbound in ready.messages:
                if isinstance(outbound.message, PrePrepare):
                    pp = outbound.message
                    assert proposed.setdefault(pp.sequence, pp.digest) == pp.digest, pp.sequence
            replica.advance()

    for n in range(1, 21):
        primary.receive(request(n))
        flush(primary, storage)
        pp = primary._log[n].pre_prepare
        commit_batch(mirror, pp)
        flush(mirror)
        if n <= 16:
            for r in (1, 2):
                primary.receive(prepare(pp, r))
                primary.receive(commit(pp, r))
            flush(primary, storage)
            if n % 4 == 0:
                for r in (1, 2):
                    primary.receive(sign(Checkpoint(n, primary.state_digest(), r, b"")))
                flush(primary, storage)
    for r in (1, 2, 3):
        primary.receive(sign(Checkpoint(20, mirror.state_digest(), r, b"")))
    flush(primary, storage)
    primary.tick(primary.now_ms + config.state_transfer_timeout_ms + 1)  # S1: start fetching
    flush(primary, storage)
    assert primary.fetching_state and primary.last_executed == 16

    recovered = Replica.recover(config, 0, SIGNERS[0], Ed25519Verifier(), KeyValueStore(),
                                list(storage.records), primary.now_ms)  # fmt: skip
    flush(recovered)
    recovered.receive(request(100, key="z"))
    flush(recovered)
    assert max(proposed) == 21, "a new PRE-PREPARE above the stable checkpoint, none again below"
