"""The simulator for crash recovery and reads (issue 12): executed histories that survive
crashes, healing one partition, a seeded generator and read-only operations in the workload,
an idle period, an event budget, exceptions reported as violations, the catch-up oracle, the
bank application and its checker, and the recovery scenarios of the catalogue.

Rules cited: N6/N8 (execution in order, at most once, also across a restart: S1), R1 (read-only
requests), S1 (recovery from records and by state transfer). The CI seeds of the recovery
scenarios that take part in CI run in tests/test_simulator.py; a longer sweep here is opt-in
(--run-slow).
"""

from __future__ import annotations

import random

import pytest

from pbft.app import ExecutionContext, KeyValueStore, kv_append, kv_get
from pbft.codec import packb_canonical
from pbft.core import ExecutedBatch, ExecutedRequest, Replica
from pbft.messages import Reply, Request
from simulations import checkers
from simulations.byzantine import Silent
from simulations.bank import (
    BANK_INSUFFICIENT_FUNDS,
    BANK_MALFORMED,
    BANK_NOT_READ_ONLY,
    Bank,
    balances,
    bank_workload,
    check_bank,
    decode_balances,
    transfer,
)
from simulations.engine import Simulation
from simulations.network import Network, NetworkProfile
from simulations.scenarios import CATALOGUE, Scenario, run_scenario
from simulations.scenarios_recovery import (
    IDLE_CATCH_UP_BOUND_MS,
    POISON,
    RECOVERY_CI,
    RECOVERY_SEEDS,
    PoisonedStore,
)

RECOVERY = [name for name in CATALOGUE if name.startswith("recovery_")]
CONTEXT = ExecutionContext(1, b"c" * 32, 0)


def _decode(result: bytes):
    import msgpack

    return msgpack.unpackb(result, raw=False)


# ------------------------------------------------------------------ executed histories (item 1)


def _sequences(sim: Simulation, replica: int) -> list[int]:
    return [batch.sequence for batch in sim.executed[replica]]


def test_what_a_replica_executed_before_its_disk_was_wiped_stays_in_its_history():
    """S1, N8: a backup crashes and comes back with a wiped disk (it state-transfers past what
    it had executed); what it executed before the crash, whose replies clients may have
    accepted, is still in its history and judged."""
    sim = Simulation(seed=2)
    before: list[int] = []
    sim.at(600, lambda s: (before.extend(_sequences(s, 1)), s.crash(1)))
    sim.at(2_500, lambda s: s.restart(1, wipe=True))
    result = run_scenario(Scenario("wiped", "", lambda seed: sim), 2, sim)
    assert result.violations == [] and result.liveness
    assert len(before) > 8
    assert set(before) <= set(_sequences(sim, 1))
    assert sim.replicas[1].state_transfers_completed > 0


def test_re_executing_after_a_restart_is_checked_not_recorded_twice():
    """N6, N8 across a crash of every replica: each restarts from its last snapshot and
    executes the log after it again; those executions equal the first ones, so each history
    holds every sequence number once, in order, and no checker objects."""
    entry = CATALOGUE["crash_all_restart"]
    sim = entry.build(1)
    result = run_scenario(entry, 1, sim)
    assert result.violations == [] and result.liveness
    assert sim.reexecutions > 0 and sim.reexecuted_differently == []
    for replica in range(4):
        sequences = _sequences(sim, replica)
        assert sequences == list(range(1, len(sequences) + 1))


def _batch(sequence: int, digest: bytes, result: bytes = b"r", timestamp_ms: int = 5,
           view: int = 0) -> ExecutedBatch:
    request = Request(b"op", 1, b"c" * 32, False, b"")
    return ExecutedBatch(sequence, view, digest, timestamp_ms, (ExecutedRequest(request, result),))


def test_a_re_execution_that_differs_from_the_first_is_an_agreement_violation():
    """N6 across a restart: executing a sequence number again must give the same batch, at the
    same timestamp, with the same results (the view may differ); otherwise agreement reports
    the replica and the sequence number. An equal one is counted, not recorded."""
    sim = Simulation(seed=1, clients=0)
    sim._note_executed(0, (_batch(1, b"d1"), _batch(2, b"d2")))
    sim._note_executed(0, (_batch(1, b"d1", view=3),))
    assert sim.reexecutions == 1 and _sequences(sim, 0) == [1, 2]
    assert checkers.agreement(sim) == []
    sim._note_executed(0, (_batch(1, b"other"), _batch(2, b"d2", result=b"changed")))
    sim._note_executed(0, (_batch(1, b"d1", timestamp_ms=6),))
    violations = checkers.agreement(sim)
    assert [(v.sequence, v.replicas, v.message) for v in violations] == [
        (1, (0,), "replica 0 executed sequence 1 again with another batch"),
        (2, (0,), "replica 0 executed sequence 2 again with other results"),
        (1, (0,), "replica 0 executed sequence 1 again with timestamp 6 instead of 5"),
    ]
    assert _sequences(sim, 0) == [1, 2]
    sim.faulty = {0}
    assert checkers.agreement(sim) == []


def test_a_sequence_skipped_by_state_transfer_and_executed_later_keeps_the_history_in_order():
    sim = Simulation(seed=1, clients=0)
    sim._note_executed(2, (_batch(1, b"d1"), _batch(9, b"d9")))
    sim._note_executed(2, (_batch(5, b"d5"),))
    assert _sequences(sim, 2) == [1, 5, 9]


def test_a_replica_down_at_the_end_is_still_judged_for_what_it_executed():
    """Safety covers a correct replica that crashed for good: a batch in its history that
    differs from the others' is an agreement violation; for liveness it counts as faulty."""
    def build(seed):
        sim = Simulation(seed=seed)
        sim.at(1_000, lambda s: s.crash(3))

        def forge(s):
            first = s.executed[3][0]
            s.executed[3][0] = ExecutedBatch(first.sequence, first.view, b"forged",
                                             first.timestamp_ms, first.requests)

        sim.at(1_100, forge, fault=False)
        return sim

    result = run_scenario(Scenario("crashed_for_good", "", build), 1)
    assert result.faulty == [3] and result.liveness
    assert [(v.checker, v.replicas) for v in result.violations] == [("agreement", (0, 3))]


def test_liveness_is_not_promised_with_more_than_f_replicas_down():
    sim = Simulation(seed=1, clients=1, requests_per_client=1)
    assert len(checkers.liveness(sim, finished=False)) == 1
    sim.down = {0, 1}
    assert checkers.liveness(sim, finished=False) == []


# ------------------------------------------------------------------ partitions (item 2)


def test_heal_lifts_one_partition_and_leaves_the_others():
    """`Network.heal(partition)`: only that partition's links open; a link two partitions
    block stays blocked until both are healed; `heal()` still lifts everything."""
    network = Network(random.Random(1), NetworkProfile(1, 1))
    first = network.isolate(2, [0, 1, 2, 3])
    second = network.partition([3], [0, 1, 2])
    assert network.arrivals_us(2, 3, 0) == [] and network.arrivals_us(3, 0, 0) == []
    network.heal(first)
    assert network.arrivals_us(2, 0, 0) != [] and network.arrivals_us(0, 2, 0) != []
    assert network.arrivals_us(2, 3, 0) == [] and network.arrivals_us(3, 2, 0) == []  # second
    assert network.arrivals_us(3, 0, 0) == []
    network.heal(first)  # again: nothing changes
    assert network.arrivals_us(3, 0, 0) == []
    assert network.plain_latency_us() is None
    network.heal(second)
    assert network.arrivals_us(3, 2, 0) != [] and network.arrivals_us(0, 3, 0) != []
    assert network.plain_latency_us() is not None  # no link record left behind
    one_way = network.partition([0], [1], one_way=True)
    network.partition([2], [3])
    assert network.arrivals_us(0, 1, 0) == [] and network.arrivals_us(1, 0, 0) != []
    network.heal(one_way)
    assert network.arrivals_us(0, 1, 0) != [] and network.arrivals_us(2, 3, 0) == []
    network.heal()
    assert network.arrivals_us(2, 3, 0) != [] and network.plain_latency_us() is not None


def test_a_partition_healed_alone_keeps_the_network_faulty():
    """Healing one partition leaves loss and duplication on, and clogs in force."""
    network = Network(random.Random(1), NetworkProfile(1, 1, duplication=1.0))
    network.clog(0, 1, 50_000)
    cut = network.partition([2], [3])
    network.heal(cut)
    assert network.faulty
    assert len(network.arrivals_us(2, 3, 0)) == 2
    assert min(network.arrivals_us(0, 1, 0)) >= 50_000


# ------------------------------------------------------------------ the workload (items 3, 4)


def _operations(sim: Simulation) -> list[list[bytes]]:
    return [[op[0] for op in client.record.operations] for client in sim.clients]


def _drawing(c: int, i: int, rng: random.Random) -> bytes:
    return kv_append(f"key-{c}", b"%d;" % rng.randrange(1_000_000))


def test_make_operation_gets_a_generator_seeded_by_the_simulation_and_the_client():
    """The same seed gives the same operations; another seed others; each client its own
    stream; the draws do not move the network's generator (the trace equals that of a
    workload without draws, operation for operation the same size)."""
    def run(seed, make):
        sim = Simulation(seed=seed, clients=3, requests_per_client=5, make_operation=make)
        assert sim.run()
        return sim

    first, again, other = run(1, _drawing), run(1, _drawing), run(2, _drawing)
    assert _operations(first) == _operations(again) != _operations(other)
    drawn = [tuple(_decode(op)[2] for op in ops) for ops in _operations(first)]
    assert len(set(drawn)) == 3

    def drawing_but_same(c, i, rng):
        rng.random()
        return kv_append(f"key-{c}", b"7;")

    plain = run(1, lambda c, i: kv_append(f"key-{c}", b"7;"))
    assert run(1, drawing_but_same).trace_hash() == plain.trace_hash()


def test_two_argument_make_operation_still_works():
    sim = Simulation(seed=1, clients=2, requests_per_client=3,
                     make_operation=lambda c, i: kv_append("k", b"%d.%d;" % (c, i)))
    assert sim.run()
    assert _operations(sim)[1] == [kv_append("k", b"1.%d;" % i) for i in range(3)]


def _every_other_read(c, i, rng):
    return (kv_get("k"), True) if i % 2 else (kv_append("k", b"%d;" % i), False)


def test_read_only_operations_are_submitted_read_only_and_marked():
    """R1 in the workload: an operation made as (operation, True) is submitted read-only;
    the record marks it, the request timestamp sent for it and that its result came by the
    read-only path."""
    sim = Simulation(seed=1, clients=2, requests_per_client=6, make_operation=_every_other_read)
    sent = []
    send = sim.send

    def recording(source, destinations, message):
        if isinstance(message, Request):
            sent.append(message)
        send(source, destinations, message)

    sim.send = recording
    assert sim.run()
    for client in sim.clients:
        marks = client.record.marks
        assert sorted(marks) == list(range(6))
        for i, mark in marks.items():
            assert mark.read_only == bool(i % 2) == mark.answered_read_only
            assert mark.timestamps == [mark.result_timestamp]
    read_only_sent = {(r.client, r.timestamp) for r in sent if r.read_only}
    marked = {(c.session.client, m.timestamps[0]) for c in sim.clients
              for m in c.record.marks.values() if m.read_only}
    assert read_only_sent == marked


def test_a_read_that_falls_back_to_ordering_is_marked_with_both_timestamps():
    """R1: with two replicas withholding their replies no read gets 2f + 1 matching ones; the
    client orders it under a new timestamp, and the record keeps both, the ordered one as the
    one its result answers."""
    quiet = {2: Silent(types=(Reply,)), 3: Silent(types=(Reply,))}
    sim = Simulation(seed=1, clients=2, requests_per_client=6, make_operation=_every_other_read,
                     behaviours=quiet)
    assert sim.run()
    reads = [m for c in sim.clients for m in c.record.marks.values() if m.read_only]
    assert len(reads) == 6
    for mark in reads:
        assert mark.answered_read_only is False
        assert len(mark.timestamps) == 2 and mark.result_timestamp == mark.timestamps[1]
    assert checkers.linearizability(sim) == []


def test_pause_clients_holds_new_operations_until_then():
    sim = Simulation(seed=1, clients=2, requests_per_client=4)
    sim.pause_clients(1_500)
    assert sim.run()
    invoked = [op[1] for c in sim.clients for op in c.record.operations]
    assert min(invoked) >= 1_500_000
    with pytest.raises(ValueError):
        sim.pause_clients(-1)


# ------------------------------------------------------------------ event budget, exceptions


def test_an_event_budget_stops_a_run_and_is_reported():
    """A run that exceeds `events_max` stops there (a storm must not hang a sweep) and the
    "runaway" checker says so; `Scenario.events_max` sets it."""
    sim = Simulation(seed=1)
    sim.events_max = 500
    assert not sim.run()
    assert sim.runaway and sim.events == 500
    (violation,) = checkers.runaway(sim)
    assert violation.checker == "runaway" and "stopped after 500 events" in violation.message
    result = run_scenario(Scenario("budget", "", lambda seed: Simulation(seed=seed),
                                   events_max=500), 1)
    assert {v.checker for v in result.violations} == {"runaway", "liveness"}
    assert run_scenario(Scenario("enough", "", lambda seed: Simulation(seed=seed),
                                 events_max=100_000), 1).violations == []


class _RaisingReplica(Replica):
    def tick(self, now_ms: int) -> None:
        if self.id == 2 and now_ms >= 300:
            raise AssertionError("broken invariant")
        super().tick(now_ms)


def test_an_exception_in_a_run_is_an_invariant_violation_naming_the_replica():
    """An exception inside the run ends it and becomes an "invariant" violation saying what
    was raised, in which replica, and where (with the source line); the other checkers still
    judge what happened until then."""
    result = run_scenario(Scenario("raises", "", lambda seed: Simulation(
        seed=seed, replica_class=_RaisingReplica)), 1)
    invariant = [v for v in result.violations if v.checker == "invariant"]
    assert len(invariant) == 1 and invariant[0].replicas == (2,)
    assert invariant[0].message.startswith("AssertionError: broken invariant in replica 2 at ")
    assert 'raise AssertionError("broken invariant")' in invariant[0].message
    assert "liveness" in {v.checker for v in result.violations}


# ------------------------------------------------------------------ the catch-up oracle


def test_catch_up_flags_a_correct_replica_left_behind_after_the_last_fault():
    """Every correct replica running `bound` after the last fault has executed what any had
    executed at that fault: a backup cut off for good (the last fault, at 1.5 s, heals
    nothing) is reported with how far it got; the same run healed at 1.5 s is not."""
    def build(heal):
        def make(seed):
            sim = Simulation(seed=seed, requests_per_client=60)
            sim.at(300, lambda s: s.network.isolate(3, [0, 1, 2]))
            sim.at(1_500, lambda s: s.network.heal() if heal else None)
            return sim
        return make

    cut = run_scenario(Scenario("cut", "", build(False), catch_up_bound_ms=3_000), 1)
    (violation,) = [v for v in cut.violations if v.checker == "catch_up"]
    assert violation.replicas == (3,) and violation.sequence > 0
    assert violation.message.startswith("3000 ms after the last fault, replicas [3] had "
                                        "executed only up to {3: ")
    healed = run_scenario(Scenario("healed", "", build(True), catch_up_bound_ms=3_000), 1)
    assert healed.violations == []


def test_catch_up_reports_a_run_that_ended_before_the_deadline():
    watch = checkers.CatchUpWatch(1_000)
    (violation,) = watch.violations(Simulation(seed=1, clients=0))
    assert violation.checker == "catch_up" and "ended before" in violation.message


# ------------------------------------------------------------------ the bank (item 6)


def test_a_transfer_moves_money_and_an_overdraft_is_refused_with_a_result():
    bank = Bank(accounts=3, initial=100)
    assert _decode(bank.execute(transfer("t1", 0, 1, 60), CONTEXT)) == ["ok", 40, 160]
    refused = _decode(bank.execute(transfer("t2", 0, 2, 41), CONTEXT))
    assert refused == ["refused", BANK_INSUFFICIENT_FUNDS, 40]
    assert bank.balances == [40, 160, 100] and bank.applied == {"t1": 1}
    assert decode_balances(bank.query(balances(), b"c")) == [40, 160, 100]
    assert bank.execute(balances(), CONTEXT) == bank.query(balances(), b"c")


@pytest.mark.parametrize("operation", [
    b"\xc1", packb_canonical(["transfer"]), packb_canonical(["withdraw", "t", 0, 1, 5]),
    transfer("", 0, 1, 5), transfer("x" * 65, 0, 1, 5), transfer("t", 0, 0, 5),
    transfer("t", 0, 3, 5), transfer("t", -1, 1, 5), transfer("t", 0, 1, 0),
    transfer("t", 0, 1, 1_001), packb_canonical(["transfer", "t", 0, 1, 1.5]),
])
def test_a_bad_operation_gets_an_error_result_and_changes_nothing(operation):
    bank = Bank(accounts=3)
    before = bank.snapshot()
    assert _decode(bank.execute(operation, CONTEXT))[:2] == ["error", BANK_MALFORMED]
    assert bank.snapshot() == before


def test_a_transfer_sent_read_only_is_refused():
    bank = Bank()
    assert _decode(bank.query(transfer("t", 0, 1, 5), b"c"))[:2] == ["error",
                                                                      BANK_NOT_READ_ONLY]
    assert _decode(bank.query(b"junk", b"c"))[:2] == ["error", BANK_MALFORMED]


def test_bank_snapshots_round_trip_and_bad_ones_are_refused():
    bank = Bank(accounts=3)
    bank.execute(transfer("b", 0, 1, 10), CONTEXT)
    bank.execute(transfer("a", 2, 1, 5), CONTEXT)
    copy = Bank(accounts=3)
    copy.restore(bank.snapshot())
    assert copy.balances == bank.balances and copy.applied == bank.applied
    assert copy.digest() == bank.digest() != Bank(accounts=3).digest()
    for bad in (b"junk", Bank(accounts=4).snapshot(),
                packb_canonical(["bank/1", [1, 2, 3], [["b", 1], ["a", 1]]]),  # unsorted
                packb_canonical(["bank/1", [1, 2, 3], [["a", 1], ["a", 1]]]),  # duplicate
                packb_canonical(["bank/1", [1, 2, "3"], []])):
        with pytest.raises(ValueError):
            copy.restore(bad)
        assert copy.balances == bank.balances
    with pytest.raises(ValueError):
        Bank(accounts=1)


def test_the_bank_workload_reads_and_transfers_from_the_clients_generator():
    make = bank_workload(accounts=4, read_fraction=0.5)
    draws = [make(1, i, random.Random(7)) for i in range(3)]
    assert draws == [make(1, i, random.Random(7)) for i in range(3)]
    many = [make(0, i, random.Random(i)) for i in range(200)]
    reads = [op for op, read_only in many if read_only]
    assert 60 < len(reads) < 140 and set(reads) == {balances()}
    assert all(not read_only for op, read_only in many if op != balances())


def _bank_run(seed: int = 1) -> Simulation:
    sim = Simulation(seed=seed, clients=3, requests_per_client=20, app_factory=Bank,
                     make_operation=bank_workload())
    assert sim.run()
    return sim


def test_check_bank_passes_a_real_run_with_reads_and_refusals():
    sim = _bank_run()
    assert check_bank(sim) == []
    results = [_decode(op[3])[0] for c in sim.clients for op in c.record.operations]
    assert {"ok"} <= set(results)
    assert any(m.answered_read_only for c in sim.clients for m in c.record.marks.values())


def test_check_bank_flags_a_read_that_does_not_conserve_money():
    sim = _bank_run()
    record = sim.clients[1].record
    record.operations.append((balances(), 0, 1, packb_canonical(["ok", [100, 100, 100, 100,
                                                                          99]])))
    (violation,) = check_bank(sim)
    assert violation.checker == "bank" and "1 balance reads do not hold 500" in violation.message
    assert "read [100, 100, 100, 100, 99]" in violation.message


def test_check_bank_flags_a_replica_state_that_lost_money_or_applied_a_transfer_twice():
    sim = _bank_run()
    sim.apps[2].balances[0] += 1
    sim.apps[3].applied["0.1"] = 2
    messages = {v.replicas: v.message for v in check_bank(sim)}
    assert "holds" in messages[(2,)] and "not 500" in messages[(2,)]
    assert messages[(3,)] == "replica 3's state applied transfers ['0.1'] more than once"


def test_check_bank_flags_a_transfer_applied_twice_in_a_history():
    sim = _bank_run()
    applied = next(b for b in sim.executed[0]
                   if b.requests and _decode(b.requests[0].result)[0] == "ok"
                   and len(_decode(b.requests[0].result)) == 3)
    again = ExecutedBatch(10_000, 0, b"again", 0, applied.requests)
    sim.executed[0].append(again)
    (violation,) = check_bank(sim)
    assert violation.replicas == (0,) and violation.sequence == 10_000
    assert f"at sequences {applied.sequence} and 10000" in violation.message


# ------------------------------------------------------------------ the poisoned application


def test_the_poisoned_store_raises_on_the_poison_only_and_changes_nothing_then():
    store = PoisonedStore()
    store.execute(kv_append("k", b"x"), CONTEXT)
    before = store.snapshot()
    with pytest.raises(RuntimeError):
        store.execute(POISON, CONTEXT)
    assert store.snapshot() == before
    assert _decode(KeyValueStore().execute(POISON, CONTEXT))[:2] == ["error", "malformed"]


def test_the_poison_scenario_gives_the_poison_an_error_result_and_goes_on():
    """Issue 12, item 6, in the simulator: every poison request of the correct client gets
    the core's application-error result on every replica, and the run is safe and live."""
    from pbft.app import decode_application_error

    entry = CATALOGUE["recovery_poison"]
    sim = entry.build(1)
    result = run_scenario(entry, 1, sim)
    assert result.violations == [] and result.liveness
    poisoned = [op[3] for op in sim.clients[0].record.operations if op[0] == POISON]
    assert len(poisoned) == 4
    assert {decode_application_error(r) for r in poisoned} == {"PoisonError"}


# ------------------------------------------------------------------ the scenarios (item 7)


def test_every_recovery_scenario_is_registered_with_its_seeds_and_ci_flag():
    """The recovery scenarios are in the catalogue with the CI seeds; those not yet passing
    on the core are registered but kept out of the CI sweep (`RECOVERY_CI`)."""
    assert len(RECOVERY) >= 10
    for name in RECOVERY:
        entry = CATALOGUE[name]
        assert entry.seeds == RECOVERY_SEEDS and entry.ci == (name in RECOVERY_CI)
        assert entry.events_max is not None
    assert RECOVERY_CI <= set(RECOVERY)
    assert CATALOGUE["recovery_bank_crash_all_idle"].catch_up_bound_ms == IDLE_CATCH_UP_BOUND_MS


def test_a_recovery_scenario_is_deterministic_and_has_reads_and_crashes():
    entry = CATALOGUE["recovery_bank_crash_all_staggered"]
    sim = entry.build(5)
    first = run_scenario(entry, 5, sim)
    assert first.trace_hash == run_scenario(entry, 5).trace_hash
    assert sim.reexecutions > 0
    assert sum(m.answered_read_only is True for c in sim.clients
               for m in c.record.marks.values()) > 10


def test_the_idle_scenario_submits_nothing_between_the_crash_and_the_deadline():
    """The catch-up deadline falls inside the idle period: no operation is invoked between
    shortly before the crash and the deadline, so only recovery can bring replicas up."""
    entry = CATALOGUE["recovery_bank_crash_all_idle"]
    sim = entry.build(2)
    result = run_scenario(entry, 2, sim)
    assert result.violations == [] and result.liveness
    deadline_us = sim.last_fault_us + IDLE_CATCH_UP_BOUND_MS * 1000
    invoked = sorted(op[1] for c in sim.clients for op in c.record.operations)
    (gap,) = [(a, b) for a, b in zip(invoked, invoked[1:])
              if b - a > IDLE_CATCH_UP_BOUND_MS * 1000]
    assert gap[0] < sim.last_fault_us - 300_000 and gap[1] > deadline_us


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECOVERY_CI))
def test_recovery_scenarios_over_many_seeds(name):
    """The longer sweep (opt-in, --run-slow): each recovery scenario in CI over 50 seeds."""
    entry = CATALOGUE[name]
    failing = {}
    for seed in range(1, 51):
        result = run_scenario(entry, seed)
        if result.violations:
            failing[seed] = [v.as_dict() for v in result.violations]
    assert failing == {}


def test_lagging_reads_answers_reads_from_an_old_state_and_alone_misleads_nobody():
    """The `LaggingReads` behaviour really lies: its read-only replies differ from the correct
    replicas' for the same request (an older state); alone, with the others on time, every
    read still gets 2f + 1 matching true answers (R1) and the run passes every checker."""
    from simulations.byzantine import LaggingReads

    liar = LaggingReads(behind_ms=300)
    sim = Simulation(seed=2, clients=2, requests_per_client=30, think_ms=100.0,
                     app_factory=Bank, make_operation=bank_workload(read_fraction=0.5),
                     behaviours={3: liar})
    replies: dict[tuple[bytes, int], dict[int, bytes]] = {}
    send = sim.send

    def recording(source, destinations, message):
        if isinstance(message, Reply) and message.read_only:
            replies.setdefault((message.client, message.timestamp), {})[source] = message.result
        send(source, destinations, message)

    sim.send = recording
    result = run_scenario(Scenario("liar", "", lambda seed: sim, linearizability=check_bank),
                          2, sim)
    assert result.violations == [] and result.liveness
    differing = [r for r in replies.values() if 3 in r and 0 in r and r[3] != r[0]]
    assert liar.lies == len(differing) > 5
