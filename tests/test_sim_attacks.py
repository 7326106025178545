"""The attacks of issue 11 on availability (`simulations.attacks`) and their scenarios
(`simulations.scenarios_attacks`): each behaviour does what it says, and each scenario meets
every checker and availability oracle (the oracles themselves are tested in
tests/test_sim_checkers.py).

Method: unit tests record what a behaviour puts on the network (`Simulation.send` wrapped);
each scenario runs with its catalogue seeds (each failed on the core before issue 11's fixes,
as the commit that added it records).
"""

from __future__ import annotations

import pytest

from pbft.codec import batch_digest, signing_payload
from pbft.core import sizes
from pbft.messages import Checkpoint, Commit, LoggedBatch, Prepare, PrePrepare, Request
from simulations import checkers
from simulations.attacks import (
    CensoringPrimary,
    DuplicateBatchPrimary,
    JustTolerablePrimary,
    LargeRequestClients,
    SlowPrimary,
    StashFlooder,
    WithholdCommits,
    sized_put,
)
from simulations.engine import SIMULATION_CONFIG, Simulation
from simulations.scenarios import CATALOGUE, run_scenario
from simulations.scenarios_attacks import FAULT_FREE_BYTES_HELD

ATTACK_SCENARIOS = ["byz_large_requests", "byz_censoring_primary", "byz_duplicate_batch",
                    "byz_stash_flood", "byz_late_checkpoints",
                    "byz_slow_primary_withholding_accomplice"]
#: Issue 14's scenarios in `simulations.scenarios_attacks` (each checked below for its lie).
CLASS_SCENARIOS = ["byz_slow_primary_alone", "byz_slow_primary_just_tolerated",
                   "byz_withhold_commits_from_some", "byz_commit_loss_withheld_commits",
                   "byz_trigger_isolate_primary", "byz_crash_writing_first_commit"]


def _record_sends(sim: Simulation) -> list[tuple[int, object, tuple, object]]:
    """Record every (virtual ms, source, destinations, message) put on the network."""
    sent: list[tuple[int, object, tuple, object]] = []
    send = sim.send

    def recording(source, destinations, message):
        sent.append((sim.now_us // 1000, source, tuple(destinations), message))
        send(source, destinations, message)

    sim.send = recording
    return sent


def _pre_prepares_from(sent: list, replica: int) -> list[tuple[int, tuple, PrePrepare]]:
    return [(ms, to, m) for ms, source, to, m in sent
            if source == replica and type(m) is PrePrepare]


# ------------------------------------------------------------------ the scenarios


RUNS = [pytest.param(name, seed, id=f"{name}-{seed}")
        for name in ATTACK_SCENARIOS for seed in (1, 2)]


@pytest.mark.parametrize(("name", "seed"), RUNS)
def test_attack_scenario_meets_every_checker_and_availability_oracle(name, seed):
    """Issue 11's goals under each of its attacks (items 1, 2, 3, 6, 8, 9): safe, live, every
    correct request within `request_wait_bound_ms`, each correct replica within its byte
    budget, and (items 1, 8) no view change while the primary is correct."""
    result = run_scenario(CATALOGUE[name], seed)
    assert result.violations == [], [v.as_dict() for v in result.violations]
    assert result.liveness and result.committed > 0


def test_every_attack_scenario_is_registered_and_switches_its_oracles_on():
    """Each attack scenario is in the catalogue with the CI seeds, bounds request waits and
    memory, and the two without a Byzantine replica forbid needless view changes."""
    for name in ATTACK_SCENARIOS:
        entry = CATALOGUE[name]
        assert entry.seeds == (1, 2, 3)
        assert entry.request_wait_bound_ms is checkers.request_wait_bound_ms
        assert entry.bytes_held_bound is not None
    for name in ("byz_large_requests", "byz_late_checkpoints"):
        assert CATALOGUE[name].needless_view_changes == 0


@pytest.mark.parametrize("name", ["byz_duplicate_batch", "byz_late_checkpoints"])
def test_attack_runs_are_deterministic(name):
    """The attacks draw only from the simulation's generator (the late CHECKPOINTs' delays
    too): same seed, same trace."""
    first, again = run_scenario(CATALOGUE[name], 4), run_scenario(CATALOGUE[name], 4)
    assert first.trace_hash == again.trace_hash and first.events == again.events


# ------------------------------------------------------------------ item 1: large requests


def test_sized_put_is_exactly_the_size_asked():
    """The large requests are `kv_put`s of exactly the size asked (msgpack's header grows)."""
    for size in (64, 300, 70_000, 1024 * 1024):
        operation = sized_put("document-3", b"3.1;", size)
        assert len(operation) == size
    with pytest.raises(ValueError):
        sized_put("document-3", b"3.1;", 10)


def test_large_request_clients_are_correct_clients_with_operations_of_the_largest_size():
    """Issue 11 item 1: requests of `operation_bytes_max` bytes, from correct clients (the
    checkers wait for them), each to a key of its own."""
    sim = Simulation(seed=1, clients=0, app_factory=LargeRequestClients.app_factory(1 << 20))
    clients = LargeRequestClients(count=3, requests=2).install(sim)
    assert [c.record.correct for c in clients] == [True] * 3
    operations = {c.make_operation(c.index, 0) for c in clients}
    assert len(operations) == 3
    assert {len(op) for op in operations} == {sim.config.operation_bytes_max}
    assert sim.run(until_ms=5_000)  # three fit a frame: they execute
    assert all(op[3] is not None for c in clients for op in c.record.operations)
    assert sim.oversized_dropped == 0
    assert len(sim.apps[1].snapshot()) > 3 * (sim.config.operation_bytes_max - 64)


# ------------------------------------------------------------------ item 2: censoring primary


def test_censoring_primary_never_proposes_the_victims_requests_but_orders_the_others():
    """Issue 11 item 2: the primary's PRE-PREPAREs of view 0 carry every client's requests but
    the victim's, which it drops on arrival (also when a backup relays them, N1/N9)."""
    sim = Simulation(seed=3, clients=3, requests_per_client=6)
    victim = sim.clients[1].session.client
    censor = CensoringPrimary(victim)
    sim.add_behaviour(0, censor)
    sent = _record_sends(sim)
    sim.run(until_ms=3_000)
    proposed = [r.client for _, _, pp in _pre_prepares_from(sent, 0) if pp.view == 0
                for r in pp.requests]
    assert proposed and victim not in proposed
    assert {sim.clients[0].session.client, sim.clients[2].session.client} <= set(proposed)
    assert censor.censored > 0
    relayed = [m for _, source, to, m in sent
               if source in (1, 2, 3) and 0 in to and type(m) is Request and m.client == victim]
    assert relayed  # the backups did relay, and the primary dropped those too


# ------------------------------------------------------------------ item 3: duplicate batch


def test_duplicate_batch_primary_sends_one_digest_at_a_checkpoint_and_the_next_number():
    """Issue 11 item 3: the same signed batch (digest, requests, timestamp) at n and n + 1, n a
    multiple of the checkpoint interval, n + 1 first and to 2f backups only; then silence."""
    sim = Simulation(seed=2)
    duplicate = DuplicateBatchPrimary(from_sequence=8)
    sim.add_behaviour(0, duplicate)
    sent = _record_sends(sim)
    sim.run(until_ms=3_000, liveness_bound_ms=3_000)
    assert duplicate.duplicated is not None
    n, n1, digest = duplicate.duplicated
    assert n % sim.config.checkpoint_interval == 0 and n1 == n + 1 and n >= 8
    carrying = [(ms, to, pp) for ms, to, pp in _pre_prepares_from(sent, 0) if pp.digest == digest]
    assert [pp.sequence for _, _, pp in carrying] == [n + 1, n]
    (first_ms, first_to, first), (then_ms, then_to, then) = carrying
    assert first_ms < then_ms and first_to == (1, 2) and then_to == (1, 2, 3)
    assert (first.requests, first.timestamp_ms) == (then.requests, then.timestamp_ms)
    assert sim.verifier.verify(sim.config.public_key(0), signing_payload(first), first.signature)
    assert not [m for ms, source, _, m in sent if source == 0 and ms > then_ms]


# ------------------------------------------------------------------ item 6: stash flood


def test_stash_flooder_sends_large_signed_pre_prepares_for_views_it_leads_and_votes_above_h():
    """Issue 11 item 6: 40 PRE-PREPAREs, each within `batch_bytes_max` and about as large,
    validly signed (and their requests too, by a registered faulty client), half for the next
    view and half for a far view, both led by the flooder; then PREPAREs and COMMITs above H."""
    sim = Simulation(seed=1, clients=1, requests_per_client=3)
    flooder = StashFlooder(count=6, at_ms=50, views_ahead=102, votes=5)
    sim.add_behaviour(1, flooder)
    sent = _record_sends(sim)
    sim.run(until_ms=200, liveness_bound_ms=200)
    config, verify = sim.config, sim.verifier.verify
    floods = [(to, m) for _, source, to, m in sent
              if source == 1 and type(m) is PrePrepare]
    assert len(floods) == 6 and flooder.sent == 6 + 2 * 5
    views = sorted({m.view for _, m in floods})
    assert views[0] == 1 and views[1] >= 100 and all(config.primary(v) == 1 for v in views)
    for to, pp in floods:
        assert to == (0, 2, 3)
        assert config.batch_bytes_max - 1024 < sizes.message_bytes(pp) <= config.batch_bytes_max
        assert verify(config.public_key(1), signing_payload(pp), pp.signature)
        assert pp.digest == batch_digest(pp.timestamp_ms, pp.requests)
        assert all(verify(r.client, signing_payload(r), r.signature) for r in pp.requests)
    flood_client = pp.requests[0].client
    assert [c.record.correct for c in sim.clients if c.session.client == flood_client] == [False]
    votes = [m for _, source, _, m in sent if source == 1 and type(m) in (Prepare, Commit)
             and m.sequence > config.log_window]
    assert len(votes) == 2 * 5


def test_fault_free_allowance_of_the_stash_flood_covers_its_workload():
    """The stash flood's bound is the flooder's stash share plus `FAULT_FREE_BYTES_HELD`: the
    same workload without the flood holds less than that at every replica."""
    sim = CATALOGUE["byz_stash_flood"].build(1)
    sim.behaviours.clear()
    sim.faulty.clear()
    sim.sample_memory(50)
    assert sim.run()
    assert sim.peak_bytes_held and max(sim.peak_bytes_held.values()) < FAULT_FREE_BYTES_HELD


# ------------------------------------------------------------------ item 8: late checkpoints


def test_late_checkpoints_delay_only_the_checkpoints_to_two_backups():
    """Issue 11 item 8 as the scenario builds it: every CHECKPOINT delivered to replica 1 or 2
    arrived at least 150 ms after it was sent; everything else within the link latency."""
    sim = CATALOGUE["byz_late_checkpoints"].build(1)
    sent_at: dict[int, int] = {}
    late, prompt = [], []
    send, deliver = sim.send, sim._deliver

    def recording_send(source, destinations, message):
        if type(message) is Checkpoint:
            sent_at[id(message)] = sim.now_us
        send(source, destinations, message)

    def recording_deliver(destination, source, message):
        if type(message) is Checkpoint:
            delay_us = sim.now_us - sent_at[id(message)]
            (late if destination in (1, 2) else prompt).append(delay_us)
        deliver(destination, source, message)

    sim.send, sim._deliver = recording_send, recording_deliver
    sim.run(until_ms=1_500, liveness_bound_ms=1_500)
    assert late and prompt
    assert min(late) >= 150_000 and max(late) <= 305_000 and max(prompt) <= 5_000


# ------------------------------------------------------------------ item 9: slow primary


def test_slow_primary_sends_each_pre_prepare_its_delay_after_building_it():
    """Issue 11 item 9: each PRE-PREPARE leaves `delay_ms` (by default 50 ms under the request
    timeout) after the primary built it (its timestamp is the primary's clock then)."""
    sim = Simulation(seed=1, clients=2, requests_per_client=3)
    slow = SlowPrimary()
    sim.add_behaviour(0, slow)
    sent = _record_sends(sim)
    sim.run(until_ms=8_000, liveness_bound_ms=8_000)
    assert slow.delay_ms == SIMULATION_CONFIG["request_timeout_ms"] - 50
    pre_prepares = [(ms, pp) for ms, _, pp in _pre_prepares_from(sent, 0) if pp.view == 0]
    assert pre_prepares and slow.delayed == len(pre_prepares)
    for ms, pp in pre_prepares:
        assert pp.timestamp_ms + slow.delay_ms <= ms <= pp.timestamp_ms + slow.delay_ms + 10


def test_withholding_accomplice_never_sends_a_commit_but_prepares():
    """Issue 11 item 9: the accomplice votes PREPAREs (N4) but never a COMMIT (N5); 2f + 1
    COMMITs come from the others."""
    sim = Simulation(seed=1, clients=2, requests_per_client=5)
    accomplice = WithholdCommits()
    sim.add_behaviour(2, accomplice)
    sent = _record_sends(sim)
    assert sim.run(until_ms=5_000)
    kinds = {type(m) for _, source, _, m in sent if source == 2}
    assert Prepare in kinds and Commit not in kinds and accomplice.withheld > 0


# ------------------------------------------------------------------ issue 14: whole classes


def _run_clean(name: str, seed: int = 1) -> tuple[Simulation, list]:
    """Build a catalogue scenario, record its sends, run it: it must pass every checker."""
    sim = CATALOGUE[name].build(seed)
    sent = _record_sends(sim)
    result = run_scenario(CATALOGUE[name], seed, sim)
    assert result.violations == [], [v.as_dict() for v in result.violations]
    assert result.liveness and result.committed > 0
    return sim, sent


def test_every_issue_14_attack_scenario_is_registered_for_the_ci_sweep():
    """Issue 14's scenarios run in the CI sweep (ci, the CI seeds, a byz_ name)."""
    for name in CLASS_SCENARIOS:
        entry = CATALOGUE[name]
        assert entry.ci and entry.seeds == (1, 2, 3) and name.startswith("byz_")
        assert entry.expect_violation is None


def test_commits_withheld_from_some_peers_reach_only_the_others():
    """A backup's COMMITs (N5) reach the primary and never the two backups it withholds them
    from; it still PREPAREs to everyone; the others still commit (2f + 1 without it)."""
    sim, sent = _run_clean("byz_withhold_commits_from_some", seed=1)
    liar, victims = 2, {1, 3}
    behaviour = sim.behaviours[liar]
    commits = [to for _, source, to, m in sent if source == liar and type(m) is Commit]
    assert commits and all(to == (0,) for to in commits)
    assert behaviour.withheld == len(commits)
    assert behaviour.withheld_to == {1: len(commits), 3: len(commits)}
    prepares = [to for _, source, to, m in sent if source == liar and type(m) is Prepare]
    assert prepares and all(set(to) >= victims for to in prepares)


def test_commits_withheld_from_a_peer_are_left_out_of_the_batches_served_to_it():
    """Votes hidden in other messages: the backup that withholds its COMMITs from replica 3
    serves 3 LOGGED-BATCHes (S1 catch-up) without its own COMMIT (`hidden` counts them),
    while the batches it serves others keep it; 3 catches up all the same."""
    sim, sent = _run_clean("byz_commit_loss_withheld_commits", seed=2)
    liar = sim.behaviours[1]
    served = [(to, m) for _, source, to, m in sent if source == 1 and type(m) is LoggedBatch]
    to_victim = [m for to, m in served if 3 in to]
    assert to_victim and liar.hidden > 0
    assert all(c.replica != 1 for m in to_victim for c in m.commits)
    assert sim.replicas[3].last_executed == sim.replicas[0].last_executed


def test_lose_drops_copies_of_one_type_to_some_destinations_only():
    """`Network.lose`: with probability 1, no COMMIT reaches replica 3, COMMITs still reach
    the others, other types still reach 3; each copy lost is counted; `heal()` lifts it.
    Bad probabilities are refused."""
    sim = Simulation(seed=1, clients=1, requests_per_client=3)
    received: list[tuple[int, type]] = []
    deliver = sim._deliver

    def recording(destination, source, message):
        received.append((destination, type(message)))
        deliver(destination, source, message)

    sim._deliver = recording
    sim.network.lose(Commit, 1.0, destinations=[3])
    sent = _record_sends(sim)
    sim.run(until_ms=1_000, liveness_bound_ms=1_000)
    assert (3, Commit) not in received and (2, Commit) in received and (3, Prepare) in received
    copies_to_3 = sum(1 for _, _, to, m in sent if type(m) is Commit for d in to if d == 3)
    assert copies_to_3 > 0 and sim.network.lost_by_type == {"Commit": copies_to_3}
    sim.network.heal()
    assert sim.network.plain_latency_us() is not None
    for probability in (-0.1, 1.5):
        with pytest.raises(ValueError):
            sim.network.lose(Commit, probability)


def test_on_message_runs_its_action_once_at_the_kth_message_of_a_type_from_a_sender():
    """`Network.on_message`: replica 2 crashes right after the event that sent its 5th
    COMMIT (a multicast counts once): it sent no COMMIT after that moment, the trigger fired
    once and is disarmed, and the crash counts as a fault for the liveness clock."""
    sim = Simulation(seed=1, clients=2, requests_per_client=10)
    fired: list[int] = []

    def crash(s: Simulation) -> None:
        fired.append(s.now_us)
        s.crash(2)

    sim.network.on_message(Commit, 2, 5, crash)
    assert sim.network.triggers_armed == 1
    sent = _record_sends(sim)
    sim.run(until_ms=3_000, liveness_bound_ms=3_000)
    commits_ms = [ms for ms, source, _, m in sent if source == 2 and type(m) is Commit]
    assert len(fired) == 1 and 2 in sim.down and sim.network.triggers_armed == 0
    fifth_ms = commits_ms[4]
    assert fired[0] // 1000 == fifth_ms and max(commits_ms) == fifth_ms
    assert sim.last_fault_us == fired[0]
    with pytest.raises(ValueError):
        sim.network.on_message(Commit, 2, 0, crash)


def test_on_message_isolates_the_primary_at_its_20th_pre_prepare():
    """The scenario's trigger: the primary's 20th PRE-PREPARE cuts it off; the backups change
    view (V1) and the run ends safe and live once it heals."""
    sim, sent = _run_clean("byz_trigger_isolate_primary", seed=1)
    from_primary = [ms for ms, source, _, m in sent if source == 0 and type(m) is PrePrepare]
    assert len(from_primary) >= 20
    assert all(sim.replicas[r].view >= 1 for r in range(4))
    assert sim.network.triggers_armed == 0


def test_crash_at_write_dies_writing_the_first_commit_before_sending_it():
    """`Simulation.crash_at_write(victim, Commit)`: the victim dies in the Ready that persists
    its first COMMIT; the records before that COMMIT in it are durable, the COMMIT is not, and
    it never left (N5: a COMMIT is durable before it is sent); it recovers after its restart."""
    sim = Simulation(seed=1, clients=1, requests_per_client=3)
    sim.crash_at_write(1, Commit)
    sent = _record_sends(sim)
    sim.run(until_ms=500, liveness_bound_ms=500)
    assert 1 in sim.down and [(r, k) for r, k, _ in sim.writes_crashed] == [(1, "Commit")]
    records = sim.storages[1].records
    assert records and not [r for r in records if type(r) is Commit]
    assert sim.storages[1].torn_writes == 1
    assert not [m for _, source, _, m in sent if source == 1 and type(m) is Commit]
    sim.restart(1)
    assert sim.run()
    assert sim.replicas[1].last_executed == sim.replicas[0].last_executed
    with pytest.raises(ValueError):
        sim.crash_at_write(2, Commit, count=0)


def test_crash_writing_first_commit_scenario_crashes_each_seed_once():
    """The scenario's victim dies at its first COMMIT's write and is restarted; every checker
    passes."""
    sim, _ = _run_clean("byz_crash_writing_first_commit", seed=2)
    assert [(r, k) for r, k, _ in sim.writes_crashed] == [(3, "Commit")]
    assert not sim.down


def test_a_slow_primary_alone_is_replaced():
    """`SlowPrimary` (just below the request timeout) without an accomplice: the backups
    suspect it (V1'') and a correct primary takes over."""
    sim, _ = _run_clean("byz_slow_primary_alone", seed=1)
    assert sim.behaviours[0].delayed > 0
    assert all(sim.replicas[r].view >= 1 for r in (1, 2, 3))
    assert sum(sim.replicas[r].dropped["primary_slow_to_propose"] for r in (1, 2, 3)) > 0


def test_just_tolerable_primary_holds_every_pre_prepare_and_keeps_its_view():
    """`JustTolerablePrimary`: every PRE-PREPARE it sends left `hold_ms` (propose_timeout / 5
    less 15 ms) after it was built, and no backup ever suspects it (V1'' tolerates that much):
    it stays primary to the end, every request is ordered by it."""
    sim, sent = _run_clean("byz_slow_primary_just_tolerated", seed=1)
    primary = sim.behaviours[0]
    assert primary.hold_ms == sim.config.propose_timeout // 5 - 15 > 0
    pre_prepares = [(ms, m) for ms, source, _, m in sent if source == 0 and type(m) is PrePrepare]
    assert pre_prepares and primary.delayed == len(pre_prepares)
    for ms, pp in pre_prepares:
        assert pp.timestamp_ms + primary.hold_ms <= ms <= pp.timestamp_ms + primary.hold_ms + 10
    assert [sim.replicas[r].view for r in range(4)] == [0, 0, 0, 0]
    assert not sum(sim.replicas[r].dropped["primary_slow_to_propose"] for r in (1, 2, 3))
    assert JustTolerablePrimary().description


def test_n3_a_primary_proposing_just_above_the_high_watermark_is_held_back():
    """N3, C2': the primary sends each batch again at its stable checkpoint + L + 1; correct
    backups vote for none of those before their window covers it (the evidence checkers
    judge every vote against the sender's watermarks), and the run stays safe and live."""
    sim, _ = _run_clean("byz_beyond_high_watermark")
    assert sim.behaviours[0].sent_beyond > 0
