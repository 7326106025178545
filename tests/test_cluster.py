"""Whole-cluster runs in the engine on a random-order network: 4 replicas, seeded message order,
real Ed25519 and the wire codec on every message; checks agreement, exactly-once and client
results."""

from __future__ import annotations

from pbft.app import kv_append, kv_decode_result, kv_get
from pbft.messages import Request

from simulations.engine import Simulation

from .corekit import random_order_cluster


def _history(cluster: Simulation, replica: int) -> list[tuple]:
    return [
        (b.sequence, b.digest, tuple((e.request.client, e.request.timestamp) for e in b.requests))
        for b in cluster.executed[replica]
    ]


def test_1000_requests_from_10_clients_commit_in_the_same_order_everywhere():
    """N1–N8: 1,000 requests from 10 clients commit; every replica executes the same sequence;
    every client gets each result exactly once and the results are the replicated ones."""
    cluster = random_order_cluster(seed=7)
    sessions = [cluster.add_client(f"c{i}") for i in range(10)]
    cluster.run_workload(sessions, 100, lambda c, i: kv_append(f"key{c}", b"%d," % i))
    cluster.deliver_all()  # let the slower replicas finish too

    histories = [_history(cluster, r) for r in range(4)]
    assert all(h == histories[0] for h in histories), "agreement: the same batches everywhere"
    executed = [key for _, _, keys in histories[0] for key in keys]
    assert len(executed) == 1000 and len(set(executed)) == 1000, "each request executed once"
    assert [b.sequence for b in cluster.executed[0]] == list(range(1, len(histories[0]) + 1))

    for c, session in enumerate(sessions):
        results = session.results
        assert len(results) == 100, "every result arrives once"
        assert len({r.timestamp for r in results}) == 100
        # append returns the value after appending: the i-th result holds 0..i.
        last = kv_decode_result(results[-1].result)
        assert last == ("ok", b"".join(b"%d," % i for i in range(100)))

    digests = {app.digest() for app in cluster.apps}
    assert len(digests) == 1, "equal states on every replica"
    assert max(r.stable_checkpoint for r in cluster.replicas) > 0, "checkpoints became stable"


def test_same_seed_same_run_different_seed_different_order():
    """The driver is deterministic: equal seeds give equal delivery counts and histories."""

    def run(seed):
        cluster = random_order_cluster(seed=seed)
        sessions = [cluster.add_client(f"c{i}") for i in range(3)]
        deliveries = cluster.run_workload(sessions, 10, lambda c, i: kv_append("k", b"%d%d" % (c, i)))
        return deliveries, _history(cluster, 0)

    assert run(3) == run(3)
    assert run(3)[1] != run(4)[1]


def test_a_request_sent_twice_executes_once():
    """N8: the client's request delivered to the primary twice, and again to every replica after
    it executed, runs once; the late copies get the stored reply."""
    cluster = random_order_cluster(seed=11)
    session = cluster.add_client("twice")
    cluster.submit(session, kv_append("k", b"x"))
    request = session.session.outstanding
    cluster.inject(0, request, source=session.client)
    cluster.deliver_all()
    assert [r.result for r in session.results] == [kv_decode_result_ok(b"x")]
    for replica in range(4):
        cluster.inject(replica, request, source=session.client)
    cluster.deliver_all()
    for replica in range(4):
        ran = [e for b in cluster.executed[replica] for e in b.requests]
        assert len(ran) == 1
    assert {kv_decode_result(app.query(kv_get("k"), b"")) for app in cluster.apps} == {
        ("ok", b"x")
    }


def kv_decode_result_ok(value: bytes) -> bytes:
    """The encoded result of an append that left `value` (as the store encodes it)."""
    from pbft.app import KeyValueStore
    from pbft.app import ExecutionContext

    return KeyValueStore().execute(kv_append("k", value), ExecutionContext(1, b"", 0))


def test_client_retransmission_reaches_a_primary_that_lost_the_request():
    """N9: the primary never sees the first copy; on timeout the client multicasts, the
    backups relay, and the request commits once."""
    cluster = random_order_cluster(seed=5, config_overrides={"client_retry_timeout_ms": 50})
    session = cluster.add_client("lossy")
    # Requests to the primary are lost until the client has sent its first one.
    cluster.network.lose(Request, 1.0, destinations=[0])
    cluster.network.on_message(Request, session.client, 1, lambda sim: sim.network.heal())
    cluster.run_workload([session], 1, lambda c, i: kv_append("k", b"late"))
    cluster.deliver_all()
    assert cluster.network.lost_by_type == {"Request": 1}
    assert session.session.retransmissions == 1
    assert len(session.results) == 1
    assert all(len(cluster.executed[r]) == 1 for r in range(4))
