"""Read-only requests (R1): answered by every replica from its current state without ordering,
accepted on 2f + 1 matching replies, and retried as ordered requests when replies disagree or
do not arrive."""

from __future__ import annotations

from pbft.app import kv_append, kv_decode_result, kv_get
from pbft.core import ClientSession
from pbft.messages import Reply

from simulations.cluster import InProcessCluster

from .corekit import CLIENT, make_config


def test_r1_read_only_requests_are_answered_without_ordering():
    """R1: a read-only request reaches every replica, is answered at once (no batch, no
    sequence number) and accepted on 2f + 1 matching replies."""
    cluster = InProcessCluster(4, seed=1)
    writer, reader = cluster.add_client("w"), cluster.add_client("r")
    cluster.run_workload([writer], 3, lambda c, i: kv_append("k", b"%d" % i))
    batches = [len(cluster.executed[r]) for r in range(4)]
    cluster.submit(reader, kv_get("k"), read_only=True)
    cluster.run()
    (result,) = cluster.results[reader.client]
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
    cluster = InProcessCluster(4, seed=2, config_overrides={"client_retry_timeout_ms": 100})
    cluster.crash(3)
    cluster.crash(2)
    reader = cluster.add_client("r")
    cluster.submit(reader, kv_get("k"), read_only=True)
    cluster.run()
    assert reader.outstanding is not None and reader.outstanding.read_only
    cluster.advance_time(100)
    assert reader.outstanding is not None and not reader.outstanding.read_only
