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
from simulations.clients import SessionProxy
from simulations.engine import Simulation

from .corekit import random_order_cluster


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
    cluster = random_order_cluster(config_overrides={"request_timeout_ms": 1_000})
    cluster.network.lose(Commit, 1.0)
    cluster.network.lose(PrePrepare, 1.0, destinations=[3])
    client = cluster.add_client("a")
    cluster.submit(client, kv_put("k", b"v"))
    cluster.deliver_all()
    assert [r.last_executed for r in cluster.replicas] == [0, 0, 0, 0]
    client.session = _Gone(client.session)  # it sends nothing more
    cluster.network.heal()
    for r in range(4):
        cluster.crash(r)
    cluster.restart(0, wipe=True)
    for r in (1, 2, 3):
        cluster.restart(r)
    cluster.run_for(20_000)
    assert len({r.last_executed for r in cluster.replicas}) == 1
    assert all(r.client_table.get(client.client) is not None for r in cluster.replicas)
    assert all(r.view >= 1 and r.view_active for r in cluster.replicas)


class _Gone(SessionProxy):
    """A client that has left: it neither retransmits nor hears replies."""

    def tick(self, now_ms: int) -> None:
        pass

    def receive(self, message) -> None:
        pass

    def has_ready(self) -> bool:
        return False


def _run_to_8_with_stable_4():
    from pbft.messages import Checkpoint

    cluster = random_order_cluster(config_overrides={"checkpoint_interval": 2, "log_window": 8},
                                   compact_storage=False)
    session = cluster.add_client("a")
    cluster.run_workload([session], 8, lambda c, i: kv_put(f"k{i % 3}", b"%d" % i))
    cluster.deliver_all()
    records = [m for m in cluster.storages[1].records
               if not (isinstance(m, Checkpoint) and m.sequence > 4 and m.replica != 1)]
    return cluster, records


def test_s1_a_restarted_replica_still_serves_its_stable_checkpoints_state():
    """S1, S2: after a restart a replica holds the snapshots from its stable checkpoint's to its
    latest, as before the crash. It kept only the latest: two replicas that restarted ahead of
    the others could not serve the stable state the others needed, and nobody could (seed 25
    of recovery_bank_wiped_primary_duplication: the cluster stopped for good)."""
    from pbft.app import KeyValueStore
    from pbft.core import Replica
    from pbft.messages import FetchState, StateChunk

    from .corekit import sign

    cluster, records = _run_to_8_with_stable_4()
    restarted = Replica.recover(cluster.config, 1, cluster.signers[1], cluster.verifier,
                                KeyValueStore(), records)
    assert (restarted.last_executed, restarted.stable_checkpoint) == (8, 4)
    restarted.ready()
    restarted.advance()
    restarted.receive(sign(FetchState(4, 0, 0, b"")))
    chunks = [o.message for o in restarted.ready().messages if isinstance(o.message, StateChunk)]
    assert [(c.sequence, c.chunk) for c in chunks] == [(4, 0)]
    assert restarted.dropped["no_such_snapshot"] == 0


def test_s1_a_fetch_of_a_state_discarded_here_is_answered_with_the_later_proof():
    """S1: a replica asked for the state of a checkpoint below its stable one (it discarded
    it) sends the 2f + 1 CHECKPOINTs proving its stable checkpoint: the requester fetches that
    state instead of asking for one nobody holds, for ever."""
    from pbft.messages import Checkpoint, FetchState

    from .corekit import sign

    cluster, _ = _run_to_8_with_stable_4()
    replica = cluster.replicas[1]
    assert replica.stable_checkpoint >= 6
    replica.ready()
    replica.advance()
    replica.receive(sign(FetchState(2, 0, 0, b"")))
    sent = [o.message for o in replica.ready().messages]
    assert sent and all(isinstance(m, Checkpoint) and m.sequence == replica.stable_checkpoint
                        for m in sent)
    assert len(sent) >= 3


def test_s2_a_restarted_replica_asks_every_other_replica_in_turn_then_stops():
    """S2: after its first request to all, a restarted replica asks each other replica once
    more, one per state-transfer period (one may have been re-executing when first asked),
    then stops asking while it knows of nothing beyond what it executed."""
    from pbft.app import KeyValueStore
    from pbft.core import Replica
    from pbft.messages import FetchLog

    cluster, records = _run_to_8_with_stable_4()
    restarted = Replica.recover(cluster.config, 1, cluster.signers[1], cluster.verifier,
                                KeyValueStore(), records)
    first = [o.to for o in restarted.ready().messages if isinstance(o.message, FetchLog)]
    restarted.advance()
    assert first == [(0, 2, 3)]
    period = cluster.config.state_transfer_timeout_ms
    asked = []
    for step in range(1, 8):
        restarted.tick(step * period)
        asked += [o.to for o in restarted.ready().messages if isinstance(o.message, FetchLog)]
        restarted.advance()
    assert sorted(asked) == [(0,), (2,), (3,)]
