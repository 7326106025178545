"""The linearizability checker for any application (`simulations.linearizability`), on hand-made
run records: the committed order is what correct replicas executed, the application replayed
on it is the model. Each test names the property (a), (b) or (c) of the module's docstring
that it checks; R1 (read-only requests) and N6 (execution in sequence order) are the rules
behind them. The last tests run it end to end."""

from __future__ import annotations

from pbft.app import ExecutionContext, KeyValueStore, kv_append, kv_get
from pbft.codec import packb_canonical
from pbft.core import ExecutedBatch, ExecutedRequest
from pbft.crypto import sha256
from pbft.messages import Request
from simulations.broken import StaleReadsReplica, use_replica_class
from simulations.engine import Simulation
from simulations.clients import RequestMarks
from simulations.linearizability import linearizability
from simulations.scenarios import CATALOGUE, run_scenario

BATCH_TIMESTAMP_MS = 1_000


class History:
    """A run written by hand: each `order` executes one request at the next sequence number on
    a model store (so the recorded results are the true ones unless a test says otherwise)
    and puts the batch in the histories of `replicas`; each `read` records a read-only answer.
    Times are in ms."""

    def __init__(self, clients: int = 3) -> None:
        self.sim = Simulation(seed=1, clients=clients, requests_per_client=0)
        self.model = KeyValueStore()
        self.sequence = 0
        self.timestamp = 0

    def key(self, client: int) -> bytes:
        return self.sim.clients[client].session.client

    def _record(self, client: int, operation: bytes, invoked_ms: float,
                completed_ms: float | None, result: bytes | None, marks: RequestMarks) -> None:
        record = self.sim.clients[client].record
        record.marks[len(record.operations)] = marks
        completed_us = None if completed_ms is None else int(completed_ms * 1000)
        record.operations.append((operation, int(invoked_ms * 1000), completed_us, result))

    def order(self, client: int, operation: bytes, invoked_ms: float,
              completed_ms: float | None, *, accepted: bytes | None = None,
              recorded: dict[int, bytes] | None = None, replicas=range(4)) -> bytes:
        """Execute `operation` of `client` at the next sequence number. The client accepts
        the true result (or `accepted`); replica r records the true one (or `recorded[r]`)."""
        self.sequence += 1
        self.timestamp += 1
        key = self.key(client)
        request = Request(operation, self.timestamp, key, False, b"")
        result = self.model.execute(operation, ExecutionContext(self.sequence, key,
                                                                BATCH_TIMESTAMP_MS))
        for replica in replicas:
            mine = (recorded or {}).get(replica, result)
            self.sim.executed[replica].append(ExecutedBatch(
                self.sequence, 0, b"d%d" % self.sequence, BATCH_TIMESTAMP_MS,
                (ExecutedRequest(request, mine),)))
        self._record(client, operation, invoked_ms, completed_ms,
                     None if completed_ms is None else accepted or result,
                     RequestMarks(False, [self.timestamp], self.timestamp, False))
        return result

    def gap(self) -> None:
        """A sequence number no correct replica executed (all skipped it by state transfer)."""
        self.sequence += 1

    def read(self, client: int, key: str, invoked_ms: float, completed_ms: float,
             value: bytes | None) -> None:
        """`client` read `key` on the read-only path and was answered `value`."""
        self.timestamp += 1
        result = packb_canonical(["ok", value])
        self._record(client, kv_get(key), invoked_ms, completed_ms, result,
                     RequestMarks(True, [self.timestamp], self.timestamp, True))

    def violations(self) -> list[str]:
        return [v.message for v in linearizability(self.sim)]


def test_a_linearizable_history_with_concurrent_reads_passes():
    """(a), (b), (c): appends in real-time order, reads concurrent with a write returning the
    state before or after it, a read after a completed write seeing it: no violation."""
    h = History()
    h.order(0, kv_append("k", b"a"), 0, 10)
    h.read(1, "k", 12, 14, b"a")
    h.order(0, kv_append("k", b"b"), 20, 40)
    h.read(1, "k", 25, 30, b"a")       # concurrent with the second append: before it
    h.read(2, "k", 26, 32, b"ab")      # concurrent too: after it
    h.read(1, "k", 45, 50, b"ab")
    assert h.violations() == []


def test_real_time_order_of_ordered_requests():
    """(a): a request that completed before another was invoked must be ordered first."""
    h = History()
    h.order(1, kv_append("k", b"late"), 20, 30)   # sequence 1, invoked after the other ended
    h.order(0, kv_append("k", b"early"), 0, 10)   # sequence 2
    (message,) = h.violations()
    assert "client-0's operation 0 completed at 10 ms but is ordered after a request of " \
           "client-1 invoked at 20 ms (sequence 2 after 1)" in message
    fine = History()
    fine.order(1, kv_append("k", b"late"), 5, 30)  # overlapping: either order is linearizable
    fine.order(0, kv_append("k", b"early"), 0, 10)
    assert fine.violations() == []


def test_a_pending_request_ordered_before_one_completed_earlier_is_out_of_order():
    """(a) judges requests still pending at the end too: their effect is in the order."""
    h = History()
    h.order(1, kv_append("k", b"late"), 20, None)
    h.order(0, kv_append("k", b"early"), 0, 10)
    assert len(h.violations()) == 1


def test_an_accepted_result_must_equal_the_replay():
    """(b): the result a correct client accepted equals the application's replay result."""
    h = History()
    h.order(0, kv_append("k", b"a"), 0, 10)
    h.order(1, kv_append("k", b"b"), 20, 30, accepted=packb_canonical(["ok", b"b"]))
    (message,) = h.violations()
    assert message == ("client-1's operation 0 accepted a result that differs from a "
                       "sequential replay of the committed order")
    assert linearizability(h.sim)[0].sequence == 2


def test_a_correct_replicas_recorded_result_must_equal_the_replay():
    """(b): each correct replica's results equal the replay's (a non-deterministic
    application, or an execution with another context, shows here)."""
    h = History()
    h.order(0, kv_append("k", b"a"), 0, 10, recorded={2: packb_canonical(["ok", b"z"])})
    (violation,) = linearizability(h.sim)
    assert violation.replicas == (2,) and violation.sequence == 1
    assert "replica 2's results differ" in violation.message
    h.sim.faulty = {2}  # a Byzantine replica's records are not judged
    assert linearizability(h.sim) == []


class ContextEcho:
    """An application whose results are its whole execution context (and a counter): replay
    agrees with the replicas only if it builds each `ExecutionContext` as the core does."""

    def __init__(self) -> None:
        self.count = 0

    def execute(self, operation: bytes, context: ExecutionContext) -> bytes:
        self.count += 1
        return packb_canonical([self.count, context.sequence, context.client,
                                context.timestamp_ms, operation])

    def query(self, operation: bytes, client: bytes) -> bytes:
        return packb_canonical([self.count, client])

    def snapshot(self) -> bytes:
        return self.count.to_bytes(8, "big")

    def restore(self, snapshot: bytes) -> None:
        self.count = int.from_bytes(snapshot, "big")

    def digest(self) -> bytes:
        return sha256(self.snapshot())


def test_the_replay_builds_the_execution_context_as_the_core_does():
    """(b) with `ExecutionContext`: a real run (with all replicas crashing and restarting, so
    some batches are executed again from snapshots) of an application that returns its
    context passes; the same records judged against a replay that would see other batch
    timestamps fail."""
    sim = Simulation(seed=3, clients=3, requests_per_client=20, app_factory=ContextEcho,
                     make_operation=lambda c, i: b"op-%d-%d" % (c, i))
    sim.at(400, lambda s: [s.crash(r) for r in range(4)])
    sim.at(900, lambda s: [s.restart(r) for r in range(4)])
    assert sim.run()
    assert sim.reexecutions > 0
    assert linearizability(sim) == []
    for history in sim.executed:
        history[:] = [ExecutedBatch(b.sequence, b.view, b.digest, b.timestamp_ms + 1, b.requests)
                      for b in history]
    assert any("differ" in v.message for v in linearizability(sim))


def test_a_read_missing_a_write_acknowledged_before_it_began_is_stale():
    """(c): a read invoked after a write completed must see it; the violation says which
    earlier state the read fits and how long before the missed write was acknowledged."""
    h = History()
    h.order(0, kv_append("k", b"a"), 0, 10)
    h.order(0, kv_append("k", b"b"), 20, 30)
    h.read(1, "k", 1_730, 1_740, b"a")
    (message,) = h.violations()
    assert message == (
        "client-1's operation 0 (read-only, invoked at 1730 ms, completed at 1740 ms) returned a "
        "state that no prefix of the committed order from 2 to 2 requests gives; it fits the "
        "prefix of 1 requests, missing 1 acknowledged before it was invoked, the first "
        "(client-0's operation 1) 1700 ms earlier")


def test_a_read_cannot_see_a_write_invoked_after_it_completed():
    """(c): the prefix holds no request invoked after the read completed."""
    h = History()
    h.order(0, kv_append("k", b"a"), 0, 10)
    h.read(1, "k", 12, 14, b"ab")
    h.order(0, kv_append("k", b"b"), 20, 30)
    (message,) = h.violations()
    assert "from 1 to 1 requests" in message
    assert "fits the prefix" not in message  # no earlier prefix either


def test_a_value_no_prefix_ever_held_is_reported():
    """(c): a made-up value fits no prefix at all."""
    h = History()
    h.order(0, kv_append("k", b"a"), 0, 10)
    h.read(1, "k", 20, 30, b"zzz")
    (message,) = h.violations()
    assert "from 1 to 1 requests gives" in message and "fits" not in message


def test_reads_must_agree_with_each_other_in_real_time():
    """(c): two reads, each concurrent with a write, may return the state before or after
    it; but a read invoked after another completed cannot return an older state."""
    h = History()
    h.order(0, kv_append("k", b"a"), 0, 10)
    h.order(0, kv_append("k", b"b"), 15, 100)
    h.read(1, "k", 20, 30, b"ab")   # after the second append
    h.read(2, "k", 40, 50, b"a")    # invoked after that read ended, yet before the append
    (message,) = h.violations()
    assert message == ("client-2's operation 0 (read-only, invoked at 40 ms) returned an older "
                       "state than client-1's operation 0 (read-only, completed at 30 ms) had "
                       "returned")
    alone = History()
    alone.order(0, kv_append("k", b"a"), 0, 10)
    alone.order(0, kv_append("k", b"b"), 15, 100)
    alone.read(2, "k", 40, 50, b"a")
    assert alone.violations() == []


def test_reads_are_placed_on_the_earliest_prefix_that_fits():
    """(c), the greedy choice: a read that fits before and after a write is placed before it,
    so that a later read returning the earlier state is still linearizable."""
    h = History()
    h.order(0, kv_append("other", b"x"), 0, 10)
    h.order(0, kv_append("k", b"a"), 15, 100)
    h.read(1, "other", 20, 30, b"x")  # fits the prefixes 1 and 2
    h.read(2, "k", 40, 50, None)      # fits the prefix 1 only
    assert h.violations() == []


def test_a_result_no_correct_replica_produced_is_reported_unless_the_log_has_a_gap():
    """An accepted ordered result for a request that no correct replica executed: reported
    when the correct replicas' histories cover every sequence number, not judged otherwise
    (the request may be in the sequence number they all skipped)."""
    h = History()
    h.order(0, kv_append("k", b"a"), 0, 10)
    h.order(1, kv_append("k", b"b"), 20, 30, replicas=[3])
    h.sim.faulty = {3}
    (message,) = h.violations()
    assert message == "client-1's operation 0 accepted a result for a request that no " \
                      "correct replica executed"
    gapped = History()
    gapped.order(0, kv_append("k", b"a"), 0, 10)
    gapped.gap()
    gapped.order(0, kv_append("k", b"c"), 40, 50)
    gapped.order(1, kv_append("k", b"b"), 60, 70, replicas=[3])
    gapped.sim.faulty = {3}
    assert gapped.violations() == []


def test_after_a_gap_results_and_reads_are_not_judged_but_real_time_still_is():
    """The replay stops at the first sequence number no correct replica executed: a result
    or a read beyond it cannot be judged (no false alarm); ordering by sequence number can."""
    h = History()
    h.order(0, kv_append("k", b"a"), 0, 10)
    h.gap()
    h.order(1, kv_append("k", b"c"), 40, 50, accepted=packb_canonical(["ok", b"nonsense"]))
    h.read(2, "k", 60, 70, b"nonsense")
    assert h.violations() == []
    h.order(2, kv_append("k", b"d"), 100, 110)
    h.order(1, kv_append("k", b"e"), 80, 90)  # ordered after one invoked after it completed
    assert len(h.violations()) == 1


def test_clients_that_are_not_correct_are_not_judged():
    """Only correct clients' results are judged (a Byzantine client may claim anything)."""
    h = History()
    h.order(0, kv_append("k", b"a"), 0, 10, accepted=packb_canonical(["ok", b"lie"]))
    h.read(1, "k", 20, 30, b"lie")
    h.sim.clients[0].record.correct = False
    h.sim.clients[1].record.correct = False
    assert h.violations() == []


def test_the_checker_runs_with_every_scenario():
    """`run_scenario` applies it with the other safety checkers: a real run's histories, with
    a correct replica's recorded result altered, give a linearizability violation."""
    entry = CATALOGUE["baseline"]
    sim = entry.build(1)

    def alter(s):
        batch = s.executed[1][3]
        first = batch.requests[0]
        s.executed[1][3] = ExecutedBatch(batch.sequence, batch.view, batch.digest,
                                         batch.timestamp_ms,
                                         (ExecutedRequest(first.request, b"altered"),
                                          *batch.requests[1:]))

    sim.at(2_000, alter, fault=False)
    result = run_scenario(entry, 1, sim)
    assert [(v.checker, v.replicas) for v in result.violations] == [("linearizability", (1,))]


def test_replicas_answering_reads_from_an_old_state_are_caught_in_a_real_run():
    """R1, (c) end to end: with every replica a `StaleReadsReplica` (reads answered from the
    state of its first checkpoint), the bank scenario with all replicas crashing reports
    stale reads, each saying how old its state was; the correct replica passes the same run."""
    entry = CATALOGUE["recovery_bank_crash_all"]
    broken = run_scenario(entry, 1, use_replica_class(entry.build(1), StaleReadsReplica))
    stale = [v for v in broken.violations if v.checker == "linearizability"]
    assert stale and all("(read-only, invoked at" in v.message for v in stale)
    assert "fits the prefix of" in stale[0].message
    assert run_scenario(entry, 1).violations == []
