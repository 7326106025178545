"""Read-only requests (R1): answered by every replica from its current state without ordering,
accepted on 2f + 1 matching replies, and retried as ordered requests when replies disagree or
do not arrive."""

from __future__ import annotations

from pbft.app import kv_append, kv_decode_result, kv_get
from pbft.core import ClientSession
from pbft.messages import Reply

from .corekit import CLIENT, make_config, random_order_cluster


def test_r1_read_only_requests_are_answered_without_ordering():
    """R1: a read-only request reaches every replica, is answered at once (no batch, no
    sequence number) and accepted on 2f + 1 matching replies."""
    cluster = random_order_cluster(seed=1)
    writer, reader = cluster.add_client("w"), cluster.add_client("r")
    cluster.run_workload([writer], 3, lambda c, i: kv_append("k", b"%d" % i))
    cluster.deliver_all()
    batches = [len(cluster.executed[r]) for r in range(4)]
    cluster.submit(reader, kv_get("k"), read_only=True)
    cluster.deliver_all()
    (result,) = reader.results
    assert result.read_only and kv_decode_result(result.result) == ("ok", b"012")
    assert [len(cluster.executed[r]) for r in range(4)] == batches, "nothing was ordered"


def _read_only_reply(request, replica, result):
    return Reply(0, request.timestamp, request.client, replica, result, True)


def test_r1_f_plus_1_matching_read_only_replies_are_not_enough():
    """R1: unlike ordered requests (f + 1), a read-only result needs 2f + 1 matching replies."""
    session = ClientSession(make_config(), CLIENT)
    request = session.submit(kv_get("k"), read_only=True)
    session.receive(_read_only_reply(request, 0, b"v"))
    session.receive(_read_only_reply(request, 1, b"v"))
    assert session.outstanding is request
    session.receive(_read_only_reply(request, 2, b"v"))
    assert session.outstanding is None


def test_r1_disagreeing_replies_make_the_client_retry_as_an_ordered_request():
    """R1: once 2f + 1 matching replies are impossible (two results, two replies each), the
    client sends the operation again as an ordered request, with a new timestamp."""
    session = ClientSession(make_config(), CLIENT)
    request = session.submit(kv_get("k"), read_only=True)
    session.ready()
    session.advance()
    for replica, result in ((0, b"old"), (1, b"new"), (2, b"old"), (3, b"new")):
        session.receive(_read_only_reply(request, replica, result))
    retry = session.outstanding
    assert retry is not None and not retry.read_only and retry.timestamp > request.timestamp
    (outbound,) = session.ready().messages
    assert outbound.message == retry and outbound.to == (0, 1, 2, 3)


def test_r1_read_only_timeout_falls_back_to_an_ordered_request():
    """R1: no 2f + 1 matching replies in time (replica 3 and 2 are silent): ordered retry."""
    cluster = random_order_cluster(seed=2, config_overrides={"client_retry_timeout_ms": 100})
    cluster.crash(3)
    cluster.crash(2)
    reader = cluster.add_client("r")
    cluster.submit(reader, kv_get("k"), read_only=True)
    cluster.deliver_all()
    assert reader.session.outstanding is not None and reader.session.outstanding.read_only
    cluster.advance_time(100)
    assert reader.session.outstanding is not None
    assert not reader.session.outstanding.read_only


# ------------------------------------------------------------------ R1': fresh enough to answer

def _read_request(timestamp: int = 10, client=CLIENT):
    from dataclasses import replace as _replace

    from pbft.codec import signing_payload
    from pbft.messages import Request

    unsigned = Request(kv_get("k"), timestamp, client.public_key, True, b"")
    return _replace(unsigned, signature=client.sign(signing_payload(unsigned)))


def _replies(replica):
    from .corekit import drain

    return [r for r in drain(replica).replies if r.read_only]


def test_r1_prime_a_replica_holds_a_read_until_it_executed_what_it_prepared():
    """R1': a backup that prepared sequence 1 (its COMMITs from the others are late) answers a
    read only once it has executed 1: the read then reflects the write the client may already
    have seen complete (f + 1 replies from elsewhere)."""
    from .corekit import commit, make_replica, pre_prepare, prepare

    replica = make_replica(1)
    pp = pre_prepare(1)
    replica.receive(pp)
    replica.receive(prepare(pp, 2))
    replica.receive(prepare(pp, 3))
    assert replica.last_executed == 0
    _replies(replica)
    replica.receive(_read_request())
    assert _replies(replica) == [], "answered from a state without the prepared write"
    assert replica.memory_footprint()["deferred_reads"] == 1
    replica.receive(commit(pp, 0))
    replica.receive(commit(pp, 2))
    [reply] = _replies(replica)
    assert replica.last_executed == 1
    assert kv_decode_result(reply.result) == ("ok", b"v")
    assert replica.memory_footprint()["deferred_reads"] == 0


def test_r1_prime_a_replica_with_nothing_prepared_answers_at_once():
    """R1': nothing prepared beyond what is executed: the read is answered on arrival."""
    from .corekit import make_replica

    replica = make_replica(1)
    replica.receive(_read_request())
    [reply] = _replies(replica)
    assert kv_decode_result(reply.result) == ("ok", None)


def test_r1_prime_a_restarted_replica_answers_no_read_before_it_executed_its_prepared_log():
    """R1' and recovery: after a crash a replica restores its last snapshot, but its prepared
    certificates say it prepared more: it holds reads until it has executed that far again."""
    from pbft.app import KeyValueStore
    from pbft.core import Replica
    from pbft.ed25519 import Ed25519Verifier

    from .corekit import SIGNERS, commit, make_replica, pre_prepare, prepare

    replica = make_replica(1)
    pp = pre_prepare(1)
    replica.receive(pp)
    replica.receive(prepare(pp, 2))
    replica.receive(prepare(pp, 3))
    records = list(replica.ready().persist)
    restarted = Replica.recover(replica.config, 1, SIGNERS[1], Ed25519Verifier(), KeyValueStore(),
                                records)
    _replies(restarted)
    restarted.receive(_read_request())
    assert _replies(restarted) == []
    for r in (0, 2, 3):
        restarted.receive(commit(pp, r))
    [reply] = _replies(restarted)
    assert kv_decode_result(reply.result) == ("ok", b"v")


def test_r1_prime_deferred_reads_are_bounded_per_client_and_in_count():
    """R1': a client's newer read replaces its older one; beyond `pending_requests_max`
    clients, reads are refused (counted) and their clients fall back to ordering."""
    from .corekit import OTHER_CLIENT, make_replica, pre_prepare, prepare

    replica = make_replica(1, pending_requests_max=1)
    pp = pre_prepare(1)
    replica.receive(pp)
    replica.receive(prepare(pp, 2))
    replica.receive(prepare(pp, 3))
    replica.receive(_read_request(10))
    replica.receive(_read_request(11))
    assert replica.memory_footprint()["deferred_reads"] == 1
    replica.receive(_read_request(12, client=OTHER_CLIENT))
    assert replica.dropped["deferred_reads_full"] == 1
    assert replica.memory_footprint()["deferred_reads"] == 1
