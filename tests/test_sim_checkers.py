"""The checkers are tested too: each on hand-made run records (its violation's checker, message,
sequence and replicas), and each deliberately broken replica of `simulations.broken` caught by
the right checker within a bounded sweep of seeds, while the correct replica passes the same runs.
"""

from __future__ import annotations

import pytest

from pbft.app import ExecutionContext, KeyValueStore, kv_append
from pbft.core import ExecutedBatch, ExecutedRequest, Replica, sizes
from pbft.messages import NewView, PrePrepare, Request
from simulations import checkers
from simulations.broken import BROKEN, use_replica_class
from simulations.engine import Simulation
from simulations.scenarios import CATALOGUE, Scenario, run_scenario
from simulations.search import run_schedule

# ------------------------------------------------------------------ hand-made run records


def _sim(replicas: int = 4, clients: int = 2) -> Simulation:
    """A simulation that never runs: its records are filled in by hand."""
    return Simulation(seed=1, replicas=replicas, clients=clients, requests_per_client=0)


def _client(sim: Simulation, index: int) -> bytes:
    return sim.clients[index].session.client


def _request(client: bytes, timestamp: int, operation: bytes) -> Request:
    return Request(operation, timestamp, client, False, b"")


def _batch(sequence: int, digest: bytes, *requests: Request) -> ExecutedBatch:
    executed = tuple(ExecutedRequest(r, b"result") for r in requests)
    return ExecutedBatch(sequence, 0, digest, 1_000, executed)


def _appends(sim: Simulation, index: int, key: str,
             operations: list[tuple[bytes, int, int | None, bytes | None]]) -> None:
    """Client `index` invoked `kv_append(key, token)` at each (token, invoked, completed,
    returned value) and saw that value, as the key-value store encodes it."""
    records = sim.clients[index].record.operations
    for token, invoked_us, completed_us, value in operations:
        result = None
        if value is not None:  # an append to an absent key returns the value appended
            result = KeyValueStore().execute(kv_append(key, value), ExecutionContext(1, b"", 0))
        records.append((kv_append(key, token), invoked_us, completed_us, result))


def test_agreement_names_the_sequence_and_both_replicas():
    """Agreement: two correct replicas executing different batches at one sequence number is a
    violation naming that sequence and the two replicas; equal batches are not."""
    sim = _sim()
    for replica in range(4):
        sim.executed[replica] = [_batch(1, b"d1"), _batch(2, b"d2")]
    sim.executed[2][1] = _batch(2, b"other")
    violations = checkers.agreement(sim)
    assert [(v.checker, v.sequence, v.replicas, v.message) for v in violations] == [
        ("agreement", 2, (0, 2), "replicas 0 and 2 executed different batches")]


def test_agreement_does_not_judge_faulty_replicas():
    """Agreement is about correct replicas: a Byzantine replica may execute what it likes."""
    sim = _sim()
    sim.executed[0] = [_batch(1, b"d1")]
    sim.executed[3] = [_batch(1, b"forged")]
    sim.faulty = {3}
    assert checkers.agreement(sim) == []
    sim.faulty = set()
    assert [v.replicas for v in checkers.agreement(sim)] == [(0, 3)]


def test_validity_reports_unknown_clients_and_altered_operations():
    """Validity: only requests of known clients execute, and a correct client's operation is
    executed as it sent it; each violation names the sequence and the replica."""
    sim = _sim()
    sent = kv_append("key-0", b"0.0;")
    sim.clients[0].record.operations.append((sent, 0, None, None))
    genuine = _request(_client(sim, 0), 1, sent)
    altered = _request(_client(sim, 0), 2, kv_append("key-0", b"forged;"))
    stranger = _request(b"s" * 32, 1, sent)
    sim.executed[1] = [_batch(1, b"d1", genuine), _batch(2, b"d2", altered),
                       _batch(3, b"d3", stranger)]
    violations = checkers.validity(sim)
    assert [(v.checker, v.sequence, v.replicas, v.message) for v in violations] == [
        ("validity", 2, (1,), "executed an operation the correct client never sent"),
        ("validity", 3, (1,), "executed a request from an unknown client"),
    ]


def test_validity_lets_a_byzantine_client_send_anything():
    """A Byzantine client's operations are whatever it signed: not a validity violation."""
    sim = _sim()
    sim.clients[1].record.correct = False
    sim.executed[0] = [_batch(1, b"d1", _request(_client(sim, 1), 1, kv_append("k", b"x")))]
    assert checkers.validity(sim) == []


def test_exactly_once_names_both_sequences_and_the_replica():
    """Exactly once (N8): one request executed at two sequence numbers by one replica is a
    violation at the second; the same request on different replicas is not."""
    sim = _sim()
    request = _request(_client(sim, 0), 7, kv_append("key-0", b"0.0;"))
    other = _request(_client(sim, 1), 7, kv_append("key-1", b"1.0;"))
    for replica in range(4):
        sim.executed[replica] = [_batch(2, b"d2", request), _batch(5, b"d5", other)]
    sim.executed[3].append(_batch(6, b"d6", request))
    violations = checkers.exactly_once(sim)
    assert [(v.checker, v.sequence, v.replicas, v.message) for v in violations] == [
        ("exactly_once", 6, (3,), "request executed at sequences 2 and 6")]


def test_linearizability_accepts_one_chain_of_appends_in_real_time_order():
    """kv_append results that extend each other in completion order are linearizable, and
    operations still pending or made by Byzantine clients are not judged."""
    sim = _sim()
    _appends(sim, 0, "k", [(b"a;", 0, 10, b"a;"), (b"c;", 30, 40, b"a;b;c;"),
                           (b"d;", 50, None, None)])
    _appends(sim, 1, "k", [(b"b;", 5, 25, b"a;b;")])
    assert checkers.kv_append_linearizability(sim) == []


def test_linearizability_reports_a_value_without_its_token():
    sim = _sim()
    _appends(sim, 0, "k", [(b"a;", 0, 10, b"x;")])
    violations = checkers.kv_append_linearizability(sim)
    assert [(v.checker, v.sequence, v.replicas) for v in violations] == [
        ("linearizability", None, ())]
    assert violations[0].message == "append to 'k' returned a value without its token"


def test_linearizability_reports_results_that_are_not_one_chain():
    """Two appends that each saw a history without the other's token: no sequential order."""
    sim = _sim()
    _appends(sim, 0, "k", [(b"a;", 0, 10, b"a;")])
    _appends(sim, 1, "k", [(b"b;", 0, 10, b"b;")])
    messages = [v.message for v in checkers.kv_append_linearizability(sim)]
    assert "results for 'k' are not one chain of appends" in messages


def test_linearizability_reports_real_time_order_broken():
    """An append that completed before another began must come first in the chain."""
    sim = _sim()
    _appends(sim, 0, "k", [(b"a;", 0, 10, b"b;a;")])
    _appends(sim, 1, "k", [(b"b;", 20, 30, b"b;")])
    messages = [v.message for v in checkers.kv_append_linearizability(sim)]
    assert "an append to 'k' that finished first is not ordered first" in messages


def test_liveness_names_waiting_clients_only_with_at_most_f_faulty():
    """Liveness: with at most f faulty replicas an unfinished run is a violation that names
    the clients still waiting; with more than f faulty, nothing is promised."""
    sim = Simulation(seed=1, clients=2, requests_per_client=1)
    assert checkers.liveness(sim, finished=True) == []
    violations = checkers.liveness(sim, finished=False)
    assert [(v.checker, v.sequence, v.replicas) for v in violations] == [("liveness", None, ())]
    assert violations[0].message == (
        "clients still waiting after the bound: ['client-0', 'client-1']")
    sim.faulty = {0, 1}
    assert checkers.liveness(sim, finished=False) == []


# ------------------------------------------------------------------ broken replicas are caught

#: A colluding backup (replica 0, the primary of view 0) and a little loss: what the search found
#: for the two quorum bugs (simulations.search).
_COLLUDING = [
    {"fault": "network", "latency_ms_min": 1, "latency_ms_max": 4, "loss_percent": 4,
     "duplication_percent": 0},
    {"fault": "byzantine", "replica": 0, "behaviour": "colluding_backup", "target": 1},
]
#: A primary that sends every PRE-PREPARE's twin 3 ms after it (simulations.byzantine).
_EQUIVOCATING = [
    {"fault": "byzantine", "replica": 0, "behaviour": "equivocating_primary", "split": 3,
     "evidence_after_ms": 3},
]

#: (broken replica, where it runs, seeds swept, checker). "where" is a catalogue scenario, or a
#: fault schedule of `simulations.search`. No single seed is pinned: which seeds expose a bug
#: moves whenever the core's timing changes; some seed of the range must.
CAUGHT = [
    ("reexecute", "lossy", range(1, 6), "exactly_once"),
    ("reexecute", "byz_equivocating_primary", range(1, 4), "exactly_once"),
    ("double_vote", "recovery_bank_crash_all_duplication", range(1, 21), "liveness"),
    ("double_vote", _COLLUDING, range(10), "agreement"),
    ("commit_on_2f", _COLLUDING, range(12), "agreement"),
    ("no_conflict_check", _EQUIVOCATING, range(10), "agreement"),
    ("amnesiac", "byz_equivocating_primary_amnesiac_backup", range(1, 10), "single_vote"),
    ("forgetful_new_primary", "crash_primary", range(1, 10), "single_vote"),
]


def _run(where, seed: int, cls: type[Replica]):
    if isinstance(where, str):
        entry = CATALOGUE[where]
        return run_scenario(entry, seed, use_replica_class(entry.build(seed), cls))
    return run_schedule(seed, where, cls)


def _caught_id(case) -> str:
    broken, where, *_ = case
    return f"{broken}-{where if isinstance(where, str) else where[-1].get('behaviour')}"


@pytest.mark.parametrize(("broken", "where", "seeds", "checker"), CAUGHT,
                         ids=[_caught_id(c) for c in CAUGHT])
def test_broken_replica_is_caught_by_the_right_checker(broken, where, seeds, checker):
    """A sweep of a few seeds with the broken replica everywhere makes `checker` report a
    violation (N10 double votes, N5 2f commits, N3 a second digest, N8 re-execution, N10 across
    a crash: votes sent before they were durable, forgotten and cast again), whose
    sequence and replicas name correct replicas; the correct `Replica` passes the same run."""
    cls = BROKEN[broken]
    failing = []
    for seed in seeds:
        result = _run(where, seed, cls)
        caught = [v for v in result.violations if v.checker == checker]
        if caught:
            failing.append(seed)
            for v in caught:
                assert set(v.replicas).isdisjoint(result.faulty)
                if checker == "agreement":
                    assert v.sequence is not None and len(set(v.replicas)) == 2
                elif checker == "exactly_once":
                    assert v.sequence is not None and len(v.replicas) == 1
            break
    assert failing, f"no {checker} violation for {broken} in seeds {seeds}"
    control = _run(where, failing[0], Replica)
    assert control.violations == [], [v.as_dict() for v in control.violations]


def test_every_broken_replica_is_covered():
    assert {c[0] for c in CAUGHT} == set(BROKEN)



def test_single_vote_counts_the_pre_prepares_of_a_new_view_as_the_new_primary_s_votes():
    """V2/N10: the PRE-PREPAREs inside a NEW-VIEW commit the new primary to their digests as
    much as PRE-PREPAREs sent alone, so single_vote notes them (a new primary that proposes
    over them, `ForgetfulNewPrimary`, is caught in the sweep above)."""
    entry = CATALOGUE["crash_primary"]
    sim = entry.build(1)
    new_views = []
    send = sim.send

    def recording(source, destinations, message):
        if type(message) is NewView:
            new_views.append((source, message))
        send(source, destinations, message)

    sim.send = recording
    result = run_scenario(entry, 1, sim)
    assert result.violations == [] and result.liveness
    noted = [(source, pp) for source, nv in new_views for pp in nv.pre_prepares]
    assert noted, "the scenario's view change sent no NEW-VIEW with PRE-PREPAREs"
    for source, pp in noted:
        assert sim.votes_sent[(source, PrePrepare, pp.view, pp.sequence)] == pp.digest


# ------------------------------------------------------------------ availability oracles (issue 11)


def test_request_wait_bound_follows_from_the_timeouts():
    """Goal (a): R + (f + 1) 2 T_request + (2^(f+1) - 1) T_view_change."""
    sim = _sim()
    assert checkers.request_wait_bound_ms(sim.config) == 500 + 2 * 2 * 1_000 + 3 * 2_000
    seven = Simulation(seed=1, replicas=7, clients=0)
    assert checkers.request_wait_bound_ms(seven.config) == 500 + 3 * 2 * 1_000 + 7 * 2_000


def test_request_wait_flags_the_longest_wait_also_of_a_request_still_waiting():
    sim = _sim()
    sim.clients[0].record.operations = [(b"a", 0, 1_000_000, b"r"), (b"b", 2_000_000, None, None)]
    sim.clients[1].record.operations = [(b"c", 0, 3_000_000, b"r")]
    sim.now_us = 6_000_000
    assert checkers.request_wait(sim, 4_000) == []
    (violation,) = checkers.request_wait(sim, 3_500)
    assert violation.checker == "request_wait"
    assert "client-0's request 1, 4000 ms" in violation.message
    sim.clients[1].record.correct = False  # a faulty client's waits are not judged
    sim.clients[0].record.operations = [(b"a", 0, 1_000_000, b"r")]
    sim.clients[1].record.operations = [(b"c", 0, None, None)]
    assert checkers.request_wait(sim, 1_000) == []


def test_bytes_held_flags_a_correct_replica_above_the_bound_and_unsampled_runs():
    sim = _sim()
    (unsampled,) = checkers.bytes_held(sim, 10)
    assert unsampled.checker == "bytes_held" and "never sampled" in unsampled.message
    sim.peak_bytes_held = {0: 100, 1: 5_000, 2: 99, 3: 20_000}
    sim.peak_bytes_held_at_ms = {0: 10, 1: 20, 2: 30, 3: 40}
    sim.faulty = {3}
    (violation,) = checkers.bytes_held(sim, 1_000)
    assert violation.replicas == (1,) and "5,000 bytes at 20 ms" in violation.message
    assert checkers.bytes_held(sim, 5_000) == []


def test_needless_view_changes_counts_views_left_behind_a_correct_primary():
    sim = _sim()
    assert checkers.needless_view_changes(sim) == []
    sim.view_changes_sent = {(1, 1), (2, 1), (2, 2)}
    (violation,) = checkers.needless_view_changes(sim)
    assert violation.checker == "needless_view_change" and violation.replicas == (1, 2)
    assert "2 view changes" in violation.message
    assert checkers.needless_view_changes(sim, allowed=2) == []
    sim.faulty = {0}  # leaving view 0 of a faulty primary is needed; view 1's primary is correct
    (violation,) = checkers.needless_view_changes(sim)
    assert "1 view changes" in violation.message and violation.replicas == (2,)
    sim.faulty = {0, 1}
    assert checkers.needless_view_changes(sim) == []


def test_throughput_compares_correct_clients_with_the_fault_free_run():
    fast, slow = _sim(), _sim()
    for sim, step_us in ((fast, 100_000), (slow, 300_000)):
        for client in sim.clients:
            client.record.operations = [(b"x", i * step_us, (i + 1) * step_us, b"r")
                                        for i in range(10)]
            client.done = True
    assert checkers.correct_throughput(fast) == pytest.approx(20.0)
    assert checkers.correct_throughput(slow) == pytest.approx(20 / 3)
    (violation,) = checkers.throughput(slow, fast, 0.5)
    assert violation.checker == "throughput" and "33%" in violation.message
    assert checkers.throughput(slow, fast, 0.3) == []
    assert checkers.throughput(fast, fast, 0.5) == []


def test_run_scenario_reports_the_oracles_a_scenario_switches_on():
    """`python -m simulations run` shows oracle violations like any checker's: a fault-free run
    judged with impossible bounds violates each oracle; with the real bounds, none."""
    def crash_primary(seed):
        sim = Simulation(seed=seed)
        sim.at(300, lambda s: s.crash(0))
        return sim

    strict = Scenario("strict", "", crash_primary, request_wait_bound_ms=lambda c: 1,
                      bytes_held_bound=lambda c: 1, needless_view_changes=0,
                      fault_free=lambda seed: Simulation(seed=seed, think_ms=0.01),
                      throughput_ratio_min=1.0)
    result = run_scenario(strict, 1)
    assert {v.checker for v in result.violations} == {
        "request_wait", "bytes_held", "throughput"}  # view 1's change was needed
    fair = Scenario("fair", "", crash_primary,
                    request_wait_bound_ms=checkers.request_wait_bound_ms,
                    bytes_held_bound=sizes.replica_bytes_budget, needless_view_changes=0,
                    fault_free=lambda seed: Simulation(seed=seed), throughput_ratio_min=0.3)
    assert run_scenario(fair, 1).violations == []
    # The oracle counts every view change away from a correct primary, also one cut off (so
    # only scenarios whose primary stays reachable switch it on): here it flags one.
    cut_off = Scenario("cut_off", "", CATALOGUE["partition_primary"].build,
                       needless_view_changes=0)
    assert {v.checker for v in run_scenario(cut_off, 1).violations} == {"needless_view_change"}
