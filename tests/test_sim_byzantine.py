"""The Byzantine behaviour library: each behaviour really misbehaves (its victims count the drop
reason its lie must trigger, or the cluster visibly routes around it) and the cluster still
passes every checker; writing a new behaviour takes the few lines the docstrings show.

Method: run each behaviour's named scenario (`simulations.scenarios_byzantine`) with one seed,
assert on the behaviour's own counters and on the correct replicas' `dropped` reasons, and
require no violation and liveness. The catalogue's CI seeds run in tests/test_simulator.py.
"""

from __future__ import annotations

import ast
import textwrap
from collections import Counter

import pytest

from pbft.messages import Commit, Prepare, PrePrepare, Request, StateChunk
from simulations import byzantine
from simulations.byzantine import (
    Behaviour,
    ClientBehaviour,
    Compose,
    Silent,
    add_byzantine_client,
)
from simulations.engine import Simulation
from simulations.scenarios import CATALOGUE, Scenario, run_scenario

BYZANTINE_SCENARIOS = [name for name in CATALOGUE if name.startswith("byz_")]


def _run(sim: Simulation, seed: int = 1, name: str = "test"):
    result = run_scenario(Scenario(name, "", lambda s: sim), seed, sim)
    assert result.violations == [], [v.as_dict() for v in result.violations]
    assert result.liveness
    return result


def run(name: str, seed: int = 1, *, settle_until_ms: float | None = None) -> Simulation:
    """Build and run a catalogue scenario; it must be safe and live. With `settle_until_ms`,
    the run goes on (without faults) at least until then, so that laggards catch up."""
    entry = CATALOGUE[name]
    sim = entry.build(seed)
    if settle_until_ms is not None:
        sim.at(settle_until_ms, lambda s: None, fault=False)
    result = run_scenario(entry, seed, sim)  # the scenario's own bounds
    assert result.violations == [], [v.as_dict() for v in result.violations]
    assert result.liveness
    return sim


def dropped(sim: Simulation, *reasons: str) -> int:
    """How many messages the correct replicas refused for any of `reasons`."""
    return sum(sim.replicas[r].dropped[reason]
               for r in sim.correct_replicas() for reason in reasons)


def correct_views(sim: Simulation) -> list[int]:
    return [sim.replicas[r].view for r in sim.correct_replicas()]


def executed_requests(sim: Simulation, replica: int) -> list[Request]:
    return [e.request for batch in sim.executed[replica] for e in batch.requests]


def _docstring_code(text: str, after: str, until: str) -> str:
    block = text.split(after, 1)[1].split(until, 1)[0]
    return textwrap.dedent(block)


def _exec_then_eval_last(code: str, namespace: dict):
    """Run a docstring's example as written; return the value of its last expression."""
    tree = ast.parse(code)
    last = tree.body.pop() if isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<docstring>", "exec"), namespace)  # noqa: S102 - our own docstring
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), "<docstring>", "eval"), namespace)


def _count_sends(sim: Simulation) -> list[tuple]:
    """Record every (source, destinations, message) put on the network."""
    sent: list[tuple] = []
    send = sim.send

    def recording(source, destinations, message):
        sent.append((source, tuple(destinations), message))
        send(source, destinations, message)

    sim.send = recording
    return sent


# ------------------------------------------------------------------ the API


def test_the_module_docstring_example_is_a_working_behaviour():
    """A new behaviour in a few lines: the module docstring's DropCommits, run as written,
    keeps replica 2's COMMITs off the network; the cluster stays safe and live (N5: 2f + 1
    COMMITs still come from the three others)."""
    code = _docstring_code(byzantine.__doc__, "takes a few lines:", "The replica underneath")
    sim = _exec_then_eval_last(code, {"Behaviour": Behaviour, "Commit": Commit,
                                      "Simulation": Simulation})
    assert isinstance(sim, Simulation) and 2 in sim.faulty
    sent = _count_sends(sim)
    _run(sim)
    assert not [m for source, _, m in sent if source == 2 and isinstance(m, Commit)]
    assert [m for source, _, m in sent if source == 1 and isinstance(m, Commit)]


def test_the_client_behaviour_docstring_example_is_a_working_client():
    """N1', V1'': a client that sends only to backup 1 still gets its requests ordered (the
    backup relays each to the primary once its proposal is late); the example from
    `ClientBehaviour`'s docstring, as written."""
    code = _docstring_code(ClientBehaviour.__doc__, "override what they need:", "\0")
    sim = Simulation(seed=1)
    namespace = {"ClientBehaviour": ClientBehaviour, "add_byzantine_client": add_byzantine_client,
                 "sim": sim}
    _exec_then_eval_last(code, namespace)
    mallory = sim.clients[-1]
    assert mallory.record.name == "mallory" and not mallory.record.correct
    sent = _count_sends(sim)
    sim.at(20_000, lambda s: None, fault=False)  # the run waits for correct clients only
    _run(sim)
    requests = [(to, m) for source, to, m in sent if source == mallory.session.client]
    assert requests and all(to == (1,) for to, _ in requests)
    assert all(op[2] is not None for op in mallory.record.operations)  # all completed


def test_compose_passes_each_message_through_every_behaviour_in_order():
    """Compose: each behaviour acts on what the previous one lets out."""
    first, second = Silent(types=(PrePrepare,)), Silent(types=(Commit,))
    sim = Simulation(seed=2, behaviours={0: Compose(first, second)})
    _run(sim)
    assert first.suppressed > 0 and second.suppressed > 0
    assert "PrePrepare" in sim.behaviours[0].description


def test_every_byzantine_scenario_is_registered_with_ci_seeds_and_one_line():
    """The catalogue lists each Byzantine scenario once, with the CI seeds and a one-line
    description (`python -m simulations list` prints one scenario a line)."""
    assert len(BYZANTINE_SCENARIOS) >= 30
    for name in BYZANTINE_SCENARIOS:
        entry = CATALOGUE[name]
        assert entry.seeds == (1, 2, 3)
        assert entry.description and "\n" not in entry.description


@pytest.mark.parametrize("name", ["byz_twins_primary", "byz_equivocating_new_view",
                                  "byz_client_flood", "byz_short_new_view",
                                  "byz_stale_votes_behind_new_view",
                                  "byz_swapped_prepared_certificate",
                                  "byz_pushed_commit_certificates"])
def test_byzantine_runs_are_deterministic(name):
    """Behaviours draw only from the simulation's generator: same seed, same trace."""
    first, again = run_scenario(CATALOGUE[name], 4), run_scenario(CATALOGUE[name], 4)
    assert first.trace_hash == again.trace_hash and first.events == again.events


# ------------------------------------------------------------------ silence and crashes


def test_silent_backup_is_routed_around():
    """N4, N5: three replicas make the quorums without the silent one."""
    sim = run("byz_silent_backup")
    silent = sim.behaviours[2]
    assert silent.suppressed > 0 and correct_views(sim) == [0, 0, 0]


def test_silent_primary_is_replaced_by_a_view_change():
    """V1, V2: backups whose requests wait move to view 1 and progress there."""
    sim = run("byz_silent_primary")
    assert sim.behaviours[0].suppressed > 0
    assert min(correct_views(sim)) >= 1


def test_primary_crashing_mid_multicast_is_replaced():
    """V1, V6: the primary dies after its 5th PRE-PREPARE reached one backup only; a view
    change follows and what may have prepared is carried over."""
    sim = run("byz_crash_after_pre_prepare")
    crash = sim.behaviours[0]
    assert crash.state == "crashed" and crash.seen == 5 and 0 in sim.down
    assert min(correct_views(sim)) >= 1


def test_new_primary_crashing_after_a_partial_new_view():
    """V3, V4: the NEW-VIEW reached one backup; the others give up on view 1 and move on."""
    sim = run("byz_crash_after_new_view")
    crash = sim.behaviours[1]
    assert crash.state == "crashed" and crash.seen == 1
    assert min(correct_views(sim)) >= 2


def test_backup_crashing_after_a_commit_recovers_and_catches_up():
    """Recovery: the backup dies right after its 10th COMMIT, restarts from its records and
    ends with the others' history."""
    sim = run("byz_crash_after_commit")
    victim = 1 + 1 % 3
    crash = sim.behaviours[victim]
    assert crash.state == "restarted" and crash.crashed_at_ms is not None
    assert victim not in sim.down
    last = {sim.replicas[r].last_executed for r in range(4)}
    assert len(last) == 1


# ------------------------------------------------------------------ lying primaries


def test_equivocating_primary_is_caught():
    """N3: a backup never accepts a second digest for (v, n) (`conflicting_pre_prepare`); the
    split stalls the view and V1 replaces the primary."""
    sim = run("byz_equivocating_primary")
    assert sim.behaviours[0].equivocations > 0
    assert dropped(sim, "conflicting_pre_prepare") > 0
    assert min(correct_views(sim)) >= 1


def test_wrong_digest_is_refused():
    """N3: d must be the digest of the batch (`batch_digest_mismatch`)."""
    sim = run("byz_wrong_digest")
    assert dropped(sim, "batch_digest_mismatch") > 0
    assert min(correct_views(sim)) >= 1


def test_tampered_request_is_refused():
    """N3, validity: every request in a batch needs its client's signature
    (`bad_request_signature`); the altered operation never executes."""
    sim = run("byz_tampered_request")
    assert dropped(sim, "bad_request_signature") > 0
    assert min(correct_views(sim)) >= 1


def test_skewed_timestamps_are_followed_never_reversed():
    """D1: a batch timestamp 29.9 s ahead is within the bound and accepted; every later batch,
    under every later primary, carries a timestamp not below it."""
    sim = run("byz_skewed_timestamps")
    assert sim.behaviours[0].sent > 0
    for r in sim.correct_replicas():
        timestamps = [batch.timestamp_ms for batch in sim.executed[r]]
        assert timestamps == sorted(timestamps) and timestamps[-1] >= 29_000


def test_timestamps_beyond_the_skew_are_refused():
    """D1: a batch timestamp further from the backup's clock than the bound is refused
    (`batch_timestamp_skew`)."""
    sim = run("byz_skewed_timestamps_beyond")
    assert dropped(sim, "batch_timestamp_skew") > 0
    assert min(correct_views(sim)) >= 1


def test_sequence_off_by_one_does_not_break_order():
    """N3, N6, V2: shifted PRE-PREPAREs leave a hole at sequence 1; votes that do not match
    (`mismatched_vote`) are not counted, and the next view fills the hole with a null request."""
    sim = run("byz_sequence_off_by_one")
    assert sim.behaviours[0].shifted > 0
    assert dropped(sim, "mismatched_vote") > 0
    assert min(correct_views(sim)) >= 1


def test_view_off_by_one_primary_is_kept_waiting_then_refused():
    """N3, V3: a PRE-PREPARE for the next view waits for that view, where it is not from the
    primary (`pre_prepare_not_from_primary`)."""
    sim = run("byz_view_off_by_one_primary")
    assert sim.behaviours[0].shifted > 0
    assert dropped(sim, "pre_prepare_not_from_primary") > 0


def test_view_off_by_one_backup_votes_are_not_counted_in_this_view():
    """N10: votes from another view are not counted now; they wait (bounded by stash_max)."""
    sim = run("byz_view_off_by_one_backup")
    faulty = 1 + 1 % 3
    assert sim.behaviours[faulty].shifted > 0
    assert all(sim.replicas[r].memory_footprint()["stash"] > 0 for r in sim.correct_replicas())
    assert correct_views(sim) == [0, 0, 0]


def test_selective_primary_leaves_a_backup_behind_which_catches_up():
    """N4, S1: PRE-PREPAREs to f + 1 backups are enough to commit; the third backup catches up
    from the others' logs and checkpoints."""
    sim = run("byz_selective_primary", settle_until_ms=8_000)
    assert sim.behaviours[0].withheld > 0
    assert sim.replicas[3].last_executed == sim.replicas[1].last_executed > 0


def test_primary_hiding_a_backup_then_falling_silent():
    """V1, V5, S1: the backup kept in the dark learns the stable checkpoint from the
    VIEW-CHANGEs, fetches the state and takes part in the new view."""
    sim = run("byz_selective_then_silent_primary")
    assert sim.behaviours[0].behaviours[0].withheld > 0
    assert sim.replicas[3].state_transfers_completed >= 1
    assert min(correct_views(sim)) >= 1


def test_selective_backup_dropping_replies_does_not_stop_clients():
    """N7: f + 1 matching replies come from the others."""
    sim = run("byz_selective_backup")
    behaviour = sim.behaviours[2]
    assert behaviour.withheld > 0 and behaviour.drop_replies


# ------------------------------------------------------------------ lying voters


def test_phantom_votes_are_not_counted():
    """N4, N10: a vote counts only if it matches the accepted PRE-PREPARE (`mismatched_vote`)."""
    sim = run("byz_phantom_votes")
    assert dropped(sim, "mismatched_vote") > 0


def test_impersonating_signatures_are_refused():
    """N10: a message counts only with a valid signature of the replica it names
    (`bad_signature`)."""
    sim = run("byz_forged_signatures")
    assert sim.behaviours[1].forged > 0
    assert dropped(sim, "bad_signature") > 0


def test_garbage_signatures_silence_the_primary():
    """N3, V1: nothing a garbage-signing primary says is accepted; a view change follows."""
    sim = run("byz_garbage_signatures")
    assert dropped(sim, "bad_signature") > 0
    assert min(correct_views(sim)) >= 1


def test_replayed_messages_are_harmless():
    """N8, N10, exactly once: old messages come back again (the primary even hears its own
    PRE-PREPAREs, `pre_prepare_to_primary`); nothing executes twice."""
    sim = run("byz_replay", seed=4)  # seed 4: the replayer is the primary itself
    replay = sim.behaviours[0]
    assert replay.replayed > 0
    assert dropped(sim, "below_low_watermark", "duplicate_vote", "old_request",
                   "duplicate_pre_prepare", "old_view_change", "duplicate_request") > 0
    stale = sum(c.session.dropped["stale_reply"] for c in sim.clients)
    assert stale > 0


def test_replays_across_a_view_change_are_refused():
    """N10, V3: messages of the old view replayed in the new one are not counted
    (`wrong_view`)."""
    sim = run("byz_replay_during_view_change")
    assert sim.behaviours[3].replayed > 0
    assert dropped(sim, "wrong_view") > 0
    assert sim.replicas[1].view >= 1 and sim.replicas[2].view >= 1


def test_fetch_spam_is_rate_limited():
    """S1, bounded work: a replica serves one catch-up answer per requester per
    state_transfer_timeout_ms (`fetch_log_too_soon`)."""
    sim = run("byz_fetch_spam")
    assert sim.behaviours[2].sent > 0
    assert dropped(sim, "fetch_log_too_soon") > 0


def test_false_checkpoints_are_never_stable():
    """C2: one wrong digest is never 2f + 1; checkpoints off the interval
    (`checkpoint_off_interval`) or below a sender's higher one (`stale_checkpoint`) are refused;
    the correct replicas still agree on stable checkpoints."""
    sim = run("byz_false_checkpoints")
    assert dropped(sim, "checkpoint_off_interval") > 0
    assert dropped(sim, "stale_checkpoint") > 0
    stable = {sim.replicas[r].stable_checkpoint for r in sim.correct_replicas()}
    assert min(stable) > 0


# ------------------------------------------------------------------ view changes


def test_view_change_spam_moves_nobody():
    """V5: one replica asking for ever-higher views is not f + 1; older copies are refused
    (`duplicate_view_change`)."""
    sim = run("byz_view_change_spam")
    spammer = sim.behaviours[2]
    assert spammer.view > 10
    assert dropped(sim, "duplicate_view_change") > 0
    assert correct_views(sim) == [0, 0, 0]


def test_view_change_spam_during_a_real_view_change():
    """V2, V5: with the primary cut off, the view change still completes once it heals."""
    sim = run("byz_view_change_spam_partition")
    assert dropped(sim, "duplicate_view_change") > 0
    assert min(correct_views(sim)) >= 1


@pytest.mark.parametrize("name", ["byz_forged_prepared_certificate",
                                  "byz_forged_prepared_certificate_backup"])
def test_forged_prepared_certificate_is_refused(name):
    """V1, V2: a prepared certificate needs a PRE-PREPARE from that view's primary and 2f
    PREPAREs its senders signed (`bad_prepared_certificate`); the invented digest never
    reaches a NEW-VIEW."""
    sim = run(name)
    assert dropped(sim, "bad_prepared_certificate") > 0
    assert min(correct_views(sim)) >= 1


def test_forged_checkpoint_proof_is_refused():
    """C2, V1: a stable checkpoint is proven only by 2f + 1 CHECKPOINTs signed by their
    senders (`bad_checkpoint_proof`); nobody fetches the invented state."""
    sim = run("byz_forged_checkpoint_proof")
    assert sim.behaviours[0].behaviours[1].forged > 0
    assert dropped(sim, "bad_checkpoint_proof") > 0
    assert all(sim.replicas[r].state_transfers_completed == 0 for r in sim.correct_replicas())


def test_forged_new_view_is_refused():
    """V3: a backup recomputes O from the VIEW-CHANGEs and refuses a NEW-VIEW whose
    PRE-PREPAREs differ (`bad_new_view`); V4 moves on to the next primary."""
    sim = run("byz_forged_new_view")
    assert sim.behaviours[1].forged > 0
    assert dropped(sim, "bad_new_view") > 0
    assert min(correct_views(sim)) >= 2


def test_a_new_view_without_the_tail_of_its_o_is_refused():
    """V3: a NEW-VIEW whose O lacks its last PRE-PREPARE (the batch prepared highest) is one
    PRE-PREPARE short of what the VIEW-CHANGEs give: refused (`bad_new_view`); V4 moves on."""
    sim = run("byz_truncated_new_view")
    assert sim.behaviours[1].truncated > 0
    assert dropped(sim, "bad_new_view") > 0
    assert min(correct_views(sim)) >= 2


def test_a_new_view_with_2f_view_changes_is_refused():
    """V3: a NEW-VIEW needs 2f + 1 VIEW-CHANGEs; one with 2f (the one weighing most in O left
    out, O recomputed from the rest and re-signed, so only the count is wrong) is refused
    (`bad_new_view`); V4 moves on to the next primary."""
    sim = run("byz_short_new_view")
    behaviour = sim.behaviours[1]
    assert behaviour.shortened > 0 and 1 in behaviour.left_out
    assert dropped(sim, "bad_new_view") > 0
    assert min(correct_views(sim)) >= 2


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_old_view_votes_behind_a_new_view_are_not_counted(seed):
    """N10: the old view's PREPAREs and COMMITs, replayed by the new primary right behind its
    NEW-VIEW (genuine, for the digests the new view re-proposes), are refused (`wrong_view`):
    every COMMIT a correct replica sends in view 1 rests on view-1 PREPAREs (the evidence
    checkers, which judge each view apart, pass the run)."""
    sim = run("byz_stale_votes_behind_new_view", seed)
    replayed = sim.behaviours[1].replayed
    assert replayed > 0
    assert dropped(sim, "wrong_view") >= replayed // 2
    assert min(sim.replicas[r].view for r in sim.correct_replicas()) >= 1


def test_a_certificate_pairing_another_pre_prepare_with_the_prepares_is_refused():
    """V1: a prepared certificate's PREPAREs must carry its PRE-PREPARE's digest. The old
    primary's VIEW-CHANGE pairs a PRE-PREPARE it signed for another batch with the backups'
    genuine PREPAREs (`bad_prepared_certificate`); the view change completes without it."""
    sim = run("byz_swapped_prepared_certificate")
    assert sim.behaviours[0].swapped > 0
    assert dropped(sim, "bad_prepared_certificate") > 0
    assert min(correct_views(sim)) >= 1


def test_commit_certificates_above_the_high_watermark_are_refused():
    """N3: genuine commit certificates pushed unasked are accepted within a replica's window
    and refused above it (`above_high_watermark`, at the backups whose CHECKPOINTs are late);
    every replica ends with the same state."""
    sim = run("byz_pushed_commit_certificates")
    assert sim.behaviours[3].pushed > 0
    assert sum(sim.replicas[r].dropped["above_high_watermark"] for r in (1, 2)) > 0
    assert len({sim.replicas[r].state_digest() for r in sim.correct_replicas()}) == 1


def test_equivocating_new_view_is_safe():
    """V3, V6: different valid NEW-VIEWs (different quorums of VIEW-CHANGEs, one hiding what
    prepared at the new primary) reach different backups; agreement holds."""
    diverged = 0
    for seed in (1, 2, 3, 4, 5, 6):
        sim = run("byz_equivocating_new_view", seed)
        behaviour = sim.behaviours[1].behaviours[1]
        assert behaviour.variants_sent >= 3
        diverged += any(len(plans) > 1 for plans in behaviour.plans.values())
    assert diverged > 0  # some seeds really sent backups different O's


def test_future_view_flood_fills_the_stash_bound_only():
    """V3': messages of a far-future view are not kept at all (no view change could use
    them), so the flood costs no memory, and the view change still completes."""
    sim = run("byz_future_view_flood")
    assert dropped(sim, "useless_future_message") >= 1_000
    assert all(sim.replicas[r].memory_footprint()["stash"] == 0 for r in range(4))
    # The backups changed view; the cut-off primary caught up (it joins view 1 with the next
    # message of that view it receives, V5).
    assert min(sim.replicas[r].view for r in sim.correct_replicas() if r != 0) >= 1
    assert len({sim.replicas[r].last_executed for r in sim.correct_replicas()}) == 1


def test_silent_backup_with_a_partitioned_primary_waits_for_the_heal():
    """V4, liveness: without a quorum the view changes escalate; after the heal they finish."""
    sim = run("byz_silent_backup_partitioned_primary")
    assert min(correct_views(sim)) >= 1


# ------------------------------------------------------------------ state transfer


@pytest.mark.parametrize("name", ["byz_slow_state_source", "byz_fetch_state_flood"])
def test_the_cut_off_replica_must_catch_up_within_the_bound(name):
    """S1' (issue 11, item 4): these scenarios judge the healed replica's catch-up
    (`catch_up_bound_ms`). A replica that can never get a STATE-CHUNK (all lost to it from the
    heal on) is flagged, though every client completes through the other three."""
    entry = CATALOGUE[name]
    assert entry.catch_up_bound_ms is not None
    sim = entry.build(1)
    sim.at(2_500, lambda s: s.network.lose(StateChunk, 1.0, destinations=[2]))
    result = run_scenario(entry, 1, sim)
    assert result.liveness
    assert [v.checker for v in result.violations] == ["catch_up"], result.violations
    assert result.violations[0].replicas == (2,)


def test_corrupted_snapshot_is_refused_and_fetched_elsewhere():
    """S1, S1': each chunk must verify against the proven checkpoint digest
    (`bad_state_chunk`); the fetcher asks the liar no more and restores the true state."""
    sim = run("byz_corrupt_snapshot")
    assert sim.behaviours[2].behaviours[0].corrupted > 0
    assert sim.replicas[1].dropped["bad_state_chunk"] > 0
    assert sim.replicas[1].state_transfers_completed >= 1
    assert sim.replicas[1].last_executed == sim.replicas[0].last_executed


def test_corrupted_logged_batches_are_refused():
    """S1: a logged batch must match its digest (`batch_digest_mismatch`). Whether the
    catching-up replica asks the liar before the state transfer makes it moot depends on the
    seed (pinned: 2 and 10 ask it), and each must end with replica 2 caught up."""
    corrupted = refused = 0
    for seed in (2, 10):
        sim = run("byz_corrupt_logged_batches", seed)
        corrupted += sim.behaviours[3].corrupted
        refused += sim.replicas[2].dropped["batch_digest_mismatch"]
        assert sim.replicas[2].last_executed == sim.replicas[0].last_executed
    assert corrupted > 0 and refused > 0


# ------------------------------------------------------------------ Twins


def test_twins_primary_equivocates_and_is_survived():
    """Twins: two instances of the primary propose different batches for the same sequence
    numbers to different backups (`mismatched_vote`); only one side holds a quorum."""
    sim = run("byz_twins_primary")
    twins = sim.behaviours[0]
    assert twins.twin is not sim.replicas[0] and twins.twin.id == 0
    assert twins.twin.last_executed > 0
    assert dropped(sim, "mismatched_vote", "conflicting_pre_prepare") > 0


@pytest.mark.parametrize("name", ["byz_twins_backup", "byz_twins_partition",
                                  "byz_twins_next_primary",
                                  "byz_n7_twins_and_forged_certificates"])
def test_twins_scenarios_are_safe_and_both_instances_take_part(name):
    """Twins: both instances of the faulty id hear and speak, each to its own part of the
    network, and agreement holds."""
    sim = run(name)
    twins = [b for b in sim.behaviours.values() if isinstance(b, byzantine.Twins)]
    assert twins
    for behaviour in twins:
        assert behaviour.twin_received > 0 and behaviour.twin_sent > 0
        assert behaviour.twin is not sim.replicas[behaviour.context.replica_id]


def test_twin_leading_a_view_change():
    """Twins, V2: the twin of the next primary leads view 1 with backups 2 and 3."""
    sim = run("byz_twins_next_primary")
    twin = sim.behaviours[1].twin
    assert twin.view >= 1 and twin.last_executed > 0


def test_n7_two_byzantine_replicas():
    """n = 7, f = 2: an equivocating primary and a phantom voter at once."""
    sim = run("byz_n7_equivocation_and_phantom_votes")
    assert len(sim.faulty) == 2
    assert dropped(sim, "conflicting_pre_prepare") > 0
    assert dropped(sim, "mismatched_vote") > 0


# ------------------------------------------------------------------ Byzantine clients


def test_bad_signature_clients_execute_nothing():
    """Validity, N1: garbage signatures and requests signed in another client's name are
    refused (`bad_request_signature`); the correct clients all complete."""
    sim = run("byz_client_bad_signatures")
    mallory, impostor = sim.clients[-2], sim.clients[-1]
    assert dropped(sim, "bad_request_signature") > 0
    for client in (mallory, impostor):
        assert client.session.behaviour.sent > 0
        assert all(op[2] is None for op in client.record.operations)
        keys = {r.client for r in executed_requests(sim, 1)}
        assert client.session.client not in keys
    executed = [r for r in executed_requests(sim, 1) if b"forged" in r.operation]
    assert executed == []


def test_replaying_client_executes_each_request_once():
    """N8, exactly once: replays are answered from the reply cache or refused
    (`old_request`)."""
    sim = run("byz_client_replay")
    replayer = sim.clients[-1]
    assert replayer.session.behaviour.replayed > 0
    assert dropped(sim, "old_request") > 0
    timestamps = [r.timestamp for r in executed_requests(sim, 1)
                  if r.client == replayer.session.client]
    completed = [op for op in replayer.record.operations if op[2] is not None]
    assert len(timestamps) == len(set(timestamps)) >= len(completed) > 0


def test_request_sent_to_backups_only_is_relayed_and_executed():
    """N1', V1'': a backup relays a request to the primary when its proposal is late; the
    client never talked to the primary and still gets every request executed."""
    sim = run("byz_client_partial_send")
    client = sim.clients[-1]
    sent_to = client.session.behaviour.sent_to
    assert sent_to and 0 not in sent_to
    assert all(op[2] is not None for op in client.record.operations)


def test_equivocating_client_gets_one_of_its_two_requests_executed():
    """N8, agreement: of two requests with one timestamp, at most one executes, the same one
    everywhere."""
    sim = run("byz_client_equivocation")
    client = sim.clients[-1].session.client
    per_replica = []
    for r in sim.correct_replicas():
        requests = [q for q in executed_requests(sim, r) if q.client == client]
        assert len({q.timestamp for q in requests}) == len(requests)
        per_replica.append([(q.timestamp, q.operation) for q in requests])
    assert per_replica[0] and all(p == per_replica[0] for p in per_replica)


def test_flooding_client_is_served_without_starving_the_others():
    """Bounded queues and N8's one request per client: of 1,500 valid requests in 3 s from one
    key, the primary keeps only the newest waiting (a newer one supersedes the older), orders
    those, and every correct client completes too."""
    sim = run("byz_client_flood")
    flood = sim.clients[-1]
    assert flood.session.behaviour.sent == 1_500
    executed = Counter(r.client for r in executed_requests(sim, 1))
    primary = sim.replicas[0]
    assert executed[flood.session.client] > 100
    assert primary.dropped["superseded_request"] > 100
    assert executed[flood.session.client] + primary.dropped["superseded_request"] <= 1_500


# ------------------------------------------------------------------ regressions


@pytest.mark.parametrize(("name", "seed"), [("byz_silent_backup_lossy", 3),
                                            ("byz_silent_backup_lossy", 9),
                                            ("byz_restarted_backup_catches_up_views", 1),
                                            ("byz_swarm", 489)])
def test_view_changes_converge_after_faults_heal(name, seed):
    """V4, V5, liveness: these seeds livelocked (one correct replica stayed a view ahead of the
    others for ever) before the V5 late-joiner rule and the 2f + 1 rule for the V4 timer."""
    run(name, seed)


def test_restarted_primary_rejoins_the_current_view():
    """V1, liveness: a primary whose batches cannot commit gives up its view; before that fix
    the old primary, restarted into view 0, and the primary of view 1 both waited for ever."""
    sim = run("byz_restarted_primary_rejoins")
    assert min(correct_views(sim)) >= 2


@pytest.mark.parametrize("seed", [47, 111])
def test_pinned_a_new_view_sent_to_one_replica_only_reaches_the_others(seed):
    """V3, liveness (fixed core bug, pinned seeds): the Byzantine primary of view 2 sent its
    NEW-VIEW to replica 0 alone; 1 and 3 waited in the view change forever. Any replica that
    installed the view now relays the NEW-VIEW to one still asking for it."""
    result = run_scenario(CATALOGUE["byz_selective_backup_restarted_primary"], seed)
    assert result.violations == [] and result.liveness, [v.as_dict() for v in result.violations]


# ------------------------------------------------------------------ votes and replies hidden


def _signed_by(sim: Simulation, message) -> bool:
    from pbft.codec import signing_payload

    return sim.verifier.verify(sim.config.public_key(message.replica), signing_payload(message),
                               message.signature)


def test_without_own_votes_takes_a_replicas_votes_out_of_certificates():
    """Votes hidden in other messages (N5, V1, S1): a replica's own COMMIT comes out of a
    LOGGED-BATCH, its own PREPARE and CHECKPOINT out of a VIEW-CHANGE (signed again with its
    key), a certificate on its own PRE-PREPARE goes whole; other replicas' votes stay, and a
    message with nothing of its own inside is the same object."""
    from pbft.messages import Checkpoint, LoggedBatch, PreparedCertificate, ViewChange
    from simulations.byzantine import ByzantineContext, without_own_votes

    sim = Simulation(seed=1)
    context = ByzantineContext(sim, 3)
    digest = bytes(32)
    pre_prepare = context.sign(PrePrepare(0, 1, digest, 5, (), 0, b""))
    commits = tuple(Commit(0, 1, digest, r, b"") for r in range(4))
    batch, hidden = without_own_votes(LoggedBatch(pre_prepare, commits), (Commit,), context)
    assert hidden == 1 and [c.replica for c in batch.commits] == [0, 1, 2]
    untouched = LoggedBatch(pre_prepare, commits[:3])
    assert without_own_votes(untouched, (Commit,), context) == (untouched, 0)

    own_pp = PrePrepare(1, 2, digest, 5, (), 3, b"")
    certificates = (PreparedCertificate(pre_prepare, tuple(Prepare(0, 1, digest, r, b"")
                                                           for r in (1, 3))),
                    PreparedCertificate(own_pp, (Prepare(1, 2, digest, 1, b""),)))
    proof = tuple(Checkpoint(0, digest, r, b"") for r in (0, 2, 3))
    view_change = context.sign(ViewChange(2, 0, proof, certificates, 3, b""))
    stripped, hidden = without_own_votes(view_change, (Prepare, Checkpoint, PrePrepare), context)
    assert hidden == 3  # its PREPARE, its CHECKPOINT, the certificate on its own PRE-PREPARE
    assert [c.replica for c in stripped.checkpoint_proof] == [0, 2]
    assert [[p.replica for p in c.prepares] for c in stripped.prepared] == [[1]]
    assert _signed_by(sim, stripped) and stripped.signature != view_change.signature


def test_a_replica_silent_on_commits_serves_batches_without_its_commit():
    """N5, S1: `Silent(types=(Commit,))` sends no COMMIT, not even inside the LOGGED-BATCHes it
    serves the backup catching up (`hidden` counts the COMMITs it took out); the catch-up
    still completes from the others' certificates."""
    from pbft.messages import LoggedBatch

    entry = CATALOGUE["byz_silent_commits_serving_log"]
    sim = entry.build(1)
    sent = _count_sends(sim)
    result = run_scenario(entry, 1, sim)
    assert result.violations == [] and result.liveness
    silent = sim.behaviours[3]
    from_liar = [m for source, _, m in sent if source == 3]
    served = [m for m in from_liar if isinstance(m, LoggedBatch)]
    assert served and silent.hidden > 0
    assert not [m for m in from_liar if isinstance(m, Commit)]
    assert not [c for m in served for c in m.commits if c.replica == 3]
    assert sim.replicas[2].last_executed == sim.replicas[0].last_executed


def test_a_silent_after_a_replay_in_compose_silences_the_replayed_replies():
    """Compose: what a behaviour sends on its own passes through the behaviours after it. A
    backup that replays old messages (its own old replies among them) under
    `Silent(types=(Reply,))` puts no reply on the network, though the replay did record
    replies and did replay messages."""
    from pbft.messages import Reply

    entry = CATALOGUE["byz_replay_silent_replies"]
    sim = entry.build(1)
    sent = _count_sends(sim)
    result = run_scenario(entry, 1, sim)
    assert result.violations == [] and result.liveness
    liar = 1 + 1 % 3
    replay, silent = sim.behaviours[liar].behaviours
    assert replay.replayed > 0 and silent.suppressed > 0
    assert [m for _, _, m in replay._recorded if isinstance(m, Reply)]
    assert not [m for source, _, m in sent if source == liar and isinstance(m, Reply)]
    assert [m for source, _, m in sent if source == liar and isinstance(m, Prepare)]


# ------------------------------------------------------------------ negative controls


NEGATIVE_CONTROLS = [name for name, entry in CATALOGUE.items() if entry.expect_violation]


def test_the_collusion_negative_control_is_registered_outside_the_ci_sweep():
    """The f + 1 collusion is a negative control: named byz_, expecting `agreement`, and
    left out of the sweep that expects no violation (`ci=False`)."""
    assert "byz_collusion_f_plus_1" in NEGATIVE_CONTROLS
    for name in NEGATIVE_CONTROLS:
        assert not CATALOGUE[name].ci


@pytest.mark.parametrize("name", NEGATIVE_CONTROLS)
def test_every_negative_control_is_flagged_by_its_checker(name):
    """More faults than PBFT tolerates (f + 1 colluders whose twins hear each other, the two
    correct replicas cut off from each other): each correct replica executes its side's
    batches, and the named checker (agreement) flags every CI seed. A checker that missed
    it would make this test fail."""
    entry = CATALOGUE[name]
    for seed in entry.seeds:
        result = run_scenario(entry, seed)
        flagged = [v for v in result.violations if v.checker == entry.expect_violation]
        assert flagged, (seed, [v.as_dict() for v in result.violations])


def test_colluding_twins_hear_each_other_and_give_each_side_a_quorum():
    """The collusion really colludes: the twins of replicas 0 and 1 pass messages to each
    other, replica 3 (the twins' side) hears only twins from 0 and 1, and 2 and 3 each execute
    batches (a quorum of 2f + 1 on each side) that differ at some sequence number."""
    from simulations.byzantine import Collusion

    collusion = Collusion(side=(3,))
    sim = Simulation(seed=1, clients=2, requests_per_client=5,
                     behaviours={0: collusion.member(), 1: collusion.member()})
    sim.network.partition([2], [3])
    sim.run(until_ms=3_000, liveness_bound_ms=3_000)
    assert set(collusion.members) == {0, 1} and collusion.relayed > 0
    assert all(member.twin_received > 0 and member.twin_sent > 0
               for member in collusion.members.values())
    digests = [{b.sequence: b.digest for b in sim.executed[r]} for r in (2, 3)]
    common = set(digests[0]) & set(digests[1])
    assert common and any(digests[0][s] != digests[1][s] for s in common)


def test_selective_delivery_leaves_its_votes_out_of_what_the_others_get():
    """N4, N5, V1: a replica that sends its PREPAREs and COMMITs to replica 2 only does not let
    them reach 0 and 3 inside its VIEW-CHANGEs' certificates or the LOGGED-BATCHes it serves
    (`hidden` counts what it took out); 2 still gets them."""
    from pbft.messages import LoggedBatch, ViewChange

    entry = CATALOGUE["byz_equivocating_new_view"]
    sim = entry.build(1)
    sent = _count_sends(sim)
    result = run_scenario(entry, 1, sim)
    assert result.violations == [] and result.liveness
    selective = sim.behaviours[1].behaviours[0]
    assert selective.hidden > 0

    def own_votes(message) -> list:
        if isinstance(message, LoggedBatch):
            return [c for c in message.commits if c.replica == 1]
        if isinstance(message, ViewChange):
            return [p for c in message.prepared for p in c.prepares if p.replica == 1]
        return []

    to_others = [m for source, to, m in sent if source == 1 and set(to) & {0, 3}]
    to_target = [m for source, to, m in sent if source == 1 and to == (2,)]
    assert not [v for m in to_others for v in own_votes(m)]
    assert [v for m in to_target for v in own_votes(m)]
