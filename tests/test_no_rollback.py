"""S1 never rolls back (issue 12, item 3): a replica never restores a snapshot older than what it
has executed. A checkpoint proven below our state, for which we no longer hold a snapshot (we
restarted from a later one of our own), simply becomes stable; a proven checkpoint our own
snapshot contradicts stops our execution until we fetch a later proven state, never an older
one."""

from __future__ import annotations

from pbft.app import ExecutionContext, KeyValueStore, kv_put
from pbft.core import Replica
from pbft.messages import Checkpoint

from .corekit import random_order_cluster

CONFIG = {"checkpoint_interval": 2, "log_window": 8}


def _write(cluster, session, count):
    cluster.run_workload([session], count, lambda c, i: kv_put(f"k{i % 3}", b"%d" % i))
    cluster.deliver_all()


def test_s1_a_checkpoint_proven_below_our_state_becomes_stable_without_a_fetch():
    """Replica 1 restarts from its own snapshot at 8 with only checkpoint 2 proven on disk; the
    proof of 4 then arrives. Before the fix it found no snapshot of its own at 4, took that for
    divergence and fetched the state at 4: a rollback from 8 (and an invariant failure)."""
    cluster = random_order_cluster(config_overrides=CONFIG, compact_storage=False)
    session = cluster.add_client("a")
    _write(cluster, session, 8)
    assert cluster.replicas[1].last_executed == 8
    records = [m for m in cluster.storages[1].records
               if not (isinstance(m, Checkpoint) and m.sequence > 2 and m.replica != 1)]
    proof_of_4 = [m for r in (0, 2, 3) for m in cluster.storages[r].records
                  if isinstance(m, Checkpoint) and m.sequence == 4 and m.replica == r]
    digest_before = cluster.replicas[1].state_digest()
    restarted = Replica.recover(cluster.config, 1, cluster.signers[1], cluster.verifier,
                                KeyValueStore(), records)
    assert (restarted.last_executed, restarted.stable_checkpoint) == (8, 2)
    for checkpoint in proof_of_4:
        restarted.receive(checkpoint)
    assert restarted.stable_checkpoint == 4
    assert restarted.last_executed == 8 and not restarted.fetching_state
    assert restarted.state_digest() == digest_before


class DivergingStore(KeyValueStore):
    """A store that, on one replica, writes something the others do not: a nondeterministic
    application, or a faulty disk."""

    def __init__(self, diverge: bool) -> None:
        super().__init__()
        self.diverge = diverge

    def execute(self, operation: bytes, context: ExecutionContext) -> bytes:
        result = super().execute(operation, context)
        if self.diverge:
            super().execute(kv_put("only-here", b"%d" % context.sequence), context)
        return result


def test_s1_a_replica_whose_state_differs_from_a_proven_checkpoint_fetches_forward_only():
    """Replica 3 diverges at once; at the first proven checkpoint its own snapshot differs. It
    stops executing (and answers nothing), and fetches the next proven state, beyond what it
    executed: its executed sequence numbers only ever increase."""
    made = []

    def factory():
        made.append(DivergingStore(diverge=len(made) == 3))
        return made[-1]

    cluster = random_order_cluster(config_overrides=CONFIG, app_factory=factory)
    session = cluster.add_client("a")
    _write(cluster, session, 12)
    cluster.run_for(5_000)
    diverging = cluster.replicas[3]
    assert diverging.dropped["diverged_from_checkpoint"] >= 1
    assert diverging.state_transfers_completed >= 1
    # The engine records each sequence number's first execution and counts any later one.
    assert cluster.reexecutions == 0 and cluster.reexecuted_differently == [], \
        "a sequence number executed twice: a rollback"
    sequences = [batch.sequence for batch in cluster.executed[3]]
    assert sequences == sorted(set(sequences))
    assert diverging.last_executed >= 2
