"""Recovery completes without new requests (issue 12, item 2).

After every replica crashes (one of them losing its disk) and the replicas come back one by
one, nobody sends a new request: the acknowledged history must still reach every replica.
Two mechanisms (S1, V1): a restarted replica shows the others its CHECKPOINTs and asks each of
them once for what it lacks (`Replica._announce_recovery`), and the requests of batches it
accepted but did not execute are requests it waits on, so that a batch nobody can commit any
more (its primary lost its disk) is taken over by the next view.
"""

from __future__ import annotations

import random

import pytest

from pbft.app import kv_put
from pbft.messages import Commit, PrePrepare
from simulations.cluster import InProcessCluster
from simulations.engine import Simulation


def _crash_all_when_clients_are_done(seed: int, wiped: int | None) -> tuple[Simulation, dict]:
    sim = Simulation(seed=seed, clients=3, requests_per_client=10, think_ms=10)
    rng = random.Random(seed)
    state: dict = {}

    def watch(s: Simulation) -> None:
        if not s.all_done():
            s.at(s.now_us / 1000 + 5, watch, fault=False)
            return
        state["acknowledged"] = max(r.last_executed for r in s.replicas)
        now_ms = s.now_us // 1000
        for r in range(4):
            s.crash(r)
        for r in range(4):
            s.at(now_ms + rng.uniform(50, 2_000),
                 lambda s2, r=r: s2.restart(r, wipe=(r == wiped)))
        s.at(now_ms + 20_000, lambda s2: None, fault=False)  # idle: nothing new arrives

    sim.at(5, watch, fault=False)
    sim.run(until_ms=60_000)
    return sim, state


@pytest.mark.parametrize("seed,wiped", [(3, 0), (4, None), (7, 1), (11, 2)])
def test_s1_after_an_all_replica_crash_an_idle_cluster_catches_up(seed, wiped):
    """Seed 3 with the primary's disk wiped: the wiped replica stayed at 0 for good (it had no
    way to learn the others were at 24) until the restarted replicas announced themselves."""
    sim, state = _crash_all_when_clients_are_done(seed, wiped)
    assert state["acknowledged"] > 0
    assert [r.last_executed >= state["acknowledged"] for r in sim.replicas] == [True] * 4
    assert len({r.state_digest() for r in sim.replicas}) == 1


def test_v1_a_batch_its_wiped_primary_cannot_finish_is_taken_over_by_the_next_view():
    """Before the crash, replicas 1 and 2 prepared sequence 1, replica 3 never got its
    PRE-PREPARE, and no COMMIT arrived anywhere. The primary comes back with an empty disk and
    the client is gone: only a view change can commit the batch, and the waiting request
    recovered from the log drives it."""
    cluster = InProcessCluster(config_overrides={"request_timeout_ms": 1_000})
    cluster.filters.append(lambda s, d, m: not isinstance(m, Commit)
                           and not (isinstance(m, PrePrepare) and d == 3))
    client = cluster.add_client("a")
    cluster.submit(client, kv_put("k", b"v"))
    cluster.run()
    assert [r.last_executed for r in cluster.replicas] == [0, 0, 0, 0]
    del cluster.clients[client.client]  # it sends nothing more
    cluster.filters.clear()
    for r in range(4):
        cluster.crash(r)
    cluster.restart(0, empty=True)
    for r in (1, 2, 3):
        cluster.restart(r)
    cluster.settle(20_000)
    assert len({r.last_executed for r in cluster.replicas}) == 1
    assert all(r.client_table.get(client.client) is not None for r in cluster.replicas)
    assert all(r.view >= 1 and r.view_active for r in cluster.replicas)
