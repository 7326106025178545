"""View change, rule by rule (V1–V6) on single cores with hand-made messages, then as whole
clusters in the engine on a random-order network: crashed primaries, consecutive faulty primaries, an equivocating
primary, and requests prepared or committed at only some replicas before the change."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pbft.app import kv_append
from pbft.core import quorum
from pbft.core.view_change import new_view_plan
from pbft.messages import NULL_DIGEST, Commit, NewView, Prepare, PrePrepare, Request, ViewChange

from simulations.byzantine import EquivocatingPrimary

from .corekit import (
    commit,
    drain,
    make_replica,
    pre_prepare,
    prepare,
    random_order_cluster,
    request,
    sent,
    sign,
)

FAST = {"request_timeout_ms": 500, "view_change_timeout_ms": 1_000, "client_retry_timeout_ms": 200}


def _view_change(replica: int, new_view: int = 1, prepared=(), stable_sequence=0, proof=()):
    return sign(ViewChange(new_view, stable_sequence, proof, tuple(prepared), replica, b""))


def _prepared_certificate(pp: PrePrepare):
    from pbft.messages import PreparedCertificate

    return PreparedCertificate(replace(pp, requests=()), (prepare(pp, 1), prepare(pp, 2)))


# ---------------------------------------------------------------------------------------- V1


def test_v1_request_timer_expiry_sends_a_view_change_with_prepared_certificates():
    """V1: a backup waiting on a request past request_timeout_ms moves to view 1 and multicasts
    VIEW-CHANGE ⟨1, h, C, P, i⟩ with a certificate for what prepared at it; it then refuses
    messages of view 0. (The propose timer, V1'', is set to the request timeout here.)"""
    backup = make_replica(2, request_timeout_ms=500, propose_timeout_ms=500)
    pp = pre_prepare(1)
    backup.receive(pp)
    backup.receive(prepare(pp, 1))  # prepared: own PREPARE + replica 1's
    backup.receive(request(9, key="late"))  # relayed; the timer starts
    drain(backup)
    backup.tick(499)
    assert sent(drain(backup), ViewChange) == []
    backup.tick(500)
    ((to, vc),) = sent(drain(backup), ViewChange)
    assert to == (0, 1, 3) and vc.new_view == 1 and vc.stable_sequence == 0
    assert [c.pre_prepare.sequence for c in vc.prepared] == [1]
    assert vc.prepared[0].pre_prepare.digest == pp.digest
    assert not backup.view_active and backup.view == 1
    backup.receive(commit(pp, 0))
    assert backup.last_executed == 0, "view-0 messages no longer count"


def test_v1_prime_only_the_timed_request_executing_restarts_the_timer():
    """V1': the request timer runs for the oldest waiting request until that request executes;
    executions of other clients' requests do not reset it, so a primary that orders everyone
    but one client is suspected."""
    backup = make_replica(1, request_timeout_ms=500, propose_timeout_ms=500)
    backup.receive(request(5, key="a"))  # waits from 0 ms: the timer runs for it
    backup.tick(400)
    pp = pre_prepare(1, requests=(request(1, key="b", client=_other()),))
    backup.receive(pp)
    backup.receive(prepare(pp, 2))
    for r in (0, 2):
        backup.receive(commit(pp, r))
    assert backup.last_executed == 1, "another client's request executed at 400 ms"
    backup.tick(499)
    assert backup.view_active
    backup.tick(500)
    assert not backup.view_active and backup.view == 1, "the censored request timed out"


def test_v1_prime_the_timer_restarts_from_now_for_the_next_oldest():
    """V1': when the timed request executes, the timer starts again, from that moment, for the
    oldest request still waiting (a busy but live primary is not replaced)."""
    backup = make_replica(1, request_timeout_ms=500, propose_timeout_ms=500)
    first = request(5, key="a")
    backup.receive(first)
    backup.tick(100)
    second = request(7, key="b", client=_other())
    backup.receive(second)  # waits from 100 ms
    backup.tick(400)
    pp = pre_prepare(1, requests=(first,))
    backup.receive(pp)
    backup.receive(pre_prepare(2, requests=(second,)))  # proposed, not committed
    backup.receive(prepare(pp, 2))
    for r in (0, 2):
        backup.receive(commit(pp, r))
    assert backup.last_executed == 1
    backup.tick(899)
    assert backup.view_active, "restarted at 400 ms for the other client's request"
    backup.tick(900)
    assert not backup.view_active


def test_v1_second_prime_a_backup_suspects_a_primary_that_does_not_propose_a_request():
    """V1'': a request no PRE-PREPARE carried after propose_timeout_ms is relayed to the primary
    (the client may have skipped it); still unproposed one more propose timeout later, the
    backup suspects the primary, long before the request timeout. (Another backup's vote
    shows it is not cut off: tests/test_primary_monitor.py.)"""
    backup = make_replica(1, request_timeout_ms=2_000, propose_timeout_ms=300)
    waiting = request(5, key="a")
    backup.receive(waiting)
    backup.tick(1)
    backup.receive(prepare(pre_prepare(7), 2))
    assert sent(drain(backup), Request) == [], "N1': the client sent it to the primary itself"
    backup.tick(299)
    assert sent(drain(backup), Request) == []
    backup.tick(300)
    assert sent(drain(backup), Request) == [((0,), waiting)]
    assert backup.view_active
    backup.tick(599)
    assert backup.view_active
    backup.tick(600)
    assert not backup.view_active and backup.view == 1
    assert backup.dropped["primary_slow_to_propose"] == 1


def test_v1_second_prime_a_relayed_request_proposed_in_time_keeps_the_primary():
    """V1'': the primary that gets the relayed request and proposes it is not suspected."""
    backup = make_replica(1, request_timeout_ms=2_000, propose_timeout_ms=300)
    waiting = request(5, key="a")
    backup.receive(waiting)
    backup.tick(300)
    backup.receive(pre_prepare(1, requests=(waiting,)))
    backup.tick(1_999)
    assert backup.view_active and backup.dropped["primary_slow_to_propose"] == 0


def test_v1_second_prime_a_proposed_request_stops_the_propose_timer():
    """V1'': once a PRE-PREPARE carrying the request is accepted, only the request timer runs
    for it (its batch may take time to commit)."""
    backup = make_replica(1, request_timeout_ms=2_000, propose_timeout_ms=300)
    waiting = request(5, key="a")
    backup.receive(waiting)
    backup.tick(200)
    backup.receive(pre_prepare(1, requests=(waiting,)))
    backup.tick(1_999)
    assert backup.view_active, "proposed at 200 ms: no V1'' suspicion"
    backup.tick(2_000)
    assert not backup.view_active, "the request timer (V1') still runs until it executes"


def test_v1_second_prime_a_primary_with_a_full_window_is_not_suspected():
    """V1'': a primary whose PRE-PREPAREs reached the high watermark cannot propose until a
    checkpoint is stable: a waiting request then does not make it look slow."""
    backup = make_replica(1, request_timeout_ms=2_000, propose_timeout_ms=300,
                          log_window=4, checkpoint_interval=2)
    for sequence in range(1, 5):
        backup.receive(pre_prepare(sequence, requests=(request(sequence, key="w"),)))
    backup.receive(request(9, key="late", client=_other()))
    backup.tick(1_999)
    assert backup.view_active
    assert backup.dropped["primary_slow_to_propose"] == 0


def _other():
    from .corekit import OTHER_CLIENT

    return OTHER_CLIENT


# ---------------------------------------------------------------------------------------- V2


def test_v2_new_view_plan_takes_the_highest_view_certificate_and_fills_gaps_with_nulls():
    """V2: min-s is the highest stable checkpoint, each n in (min-s, max-s] gets the digest of
    the prepared certificate of the highest view, and gaps get null requests."""
    pp1_v0 = pre_prepare(1, requests=(request(1),))
    pp3_v0 = pre_prepare(3, requests=(request(3),))
    pp3_v1 = pre_prepare(3, requests=(request(4),), view=1, replica=1)
    vcs = [
        ViewChange(2, 0, (), (_cert(pp1_v0), _cert(pp3_v0)), 0, b""),
        ViewChange(2, 0, (), (_cert(pp3_v1),), 1, b""),
        ViewChange(2, 0, (), (), 3, b""),
    ]
    min_s, plan = new_view_plan(vcs)
    assert min_s == 0
    assert plan == [
        (1, pp1_v0.digest, pp1_v0.timestamp_ms),
        (2, NULL_DIGEST, 0),
        (3, pp3_v1.digest, pp3_v1.timestamp_ms),
    ]


def _cert(pp):
    from pbft.messages import PreparedCertificate

    return PreparedCertificate(replace(pp, requests=()), ())


def test_v2_new_primary_sends_new_view_after_2f_plus_1_view_changes_its_own_included():
    """V2: replica 1 (primary of view 1) with its own VIEW-CHANGE and two others multicasts a
    NEW-VIEW whose PRE-PREPAREs re-propose the prepared batch."""
    primary = make_replica(1, request_timeout_ms=100)
    pp = pre_prepare(1)
    primary.receive(pp)
    primary.receive(prepare(pp, 2))
    primary.receive(request(9, key="x"))
    primary.tick(100)  # its own VIEW-CHANGE for view 1
    drain(primary)
    primary.receive(_view_change(2, prepared=(_prepared_certificate(pp),)))
    assert sent(drain(primary), NewView) == []
    primary.receive(_view_change(3))
    ((to, nv),) = sent(drain(primary), NewView)
    assert to == (0, 2, 3) and nv.view == 1 and len(nv.view_changes) == quorum.quorum(4)
    assert [(p.sequence, p.digest, p.requests) for p in nv.pre_prepares] == [(1, pp.digest, ())]
    assert primary.view_active and primary.is_primary


# ---------------------------------------------------------------------------------------- V3


def _new_view_for(pp, tamper=None):
    vcs = (
        _view_change(1, prepared=(_prepared_certificate(pp),)),
        _view_change(2),
        _view_change(3),
    )
    _, plan = new_view_plan(vcs)
    pps = [sign(PrePrepare(1, s, d, t, (), 1, b"")) for s, d, t in plan]
    if tamper is not None:
        pps = tamper(pps)
    return sign(NewView(1, vcs, tuple(pps), 1, b""))


def test_v3_backup_accepts_a_valid_new_view_and_prepares_its_pre_prepares():
    """V3: a backup checks NEW-VIEW by recomputing O, enters view 1 and sends PREPARE for each
    re-proposed batch; the batch it already had is executed once it commits in view 1."""
    backup = make_replica(2)
    pp = pre_prepare(1)
    backup.receive(pp)
    drain(backup)
    backup.receive(_new_view_for(pp))
    assert backup.view == 1 and backup.view_active and backup.dropped == {}
    ((_, p),) = sent(drain(backup), Prepare)
    assert (p.view, p.sequence, p.digest) == (1, 1, pp.digest)
    backup.receive(sign(Prepare(1, 1, pp.digest, 3, b"")))
    for r in (1, 3):
        backup.receive(sign(Commit(1, 1, pp.digest, r, b"")))
    assert backup.last_executed == 1


def test_v3_new_view_whose_pre_prepares_differ_from_the_recomputation_is_refused():
    """V3: a NEW-VIEW that replaces the prepared digest (or drops it for a null) is refused."""
    backup = make_replica(2)
    pp = pre_prepare(1)
    swap = lambda pps: [sign(replace(pps[0], digest=NULL_DIGEST, timestamp_ms=0))]  # noqa: E731
    backup.receive(_new_view_for(pp, tamper=swap))
    assert backup.dropped["bad_new_view"] == 1 and backup.view == 0


def test_v3_new_view_from_a_replica_that_is_not_the_new_primary_is_refused():
    """V3: only the primary of view v + 1 may send its NEW-VIEW."""
    backup = make_replica(2)
    nv = _new_view_for(pre_prepare(1))
    backup.receive(sign(replace(nv, replica=3)))
    assert backup.dropped["new_view_not_from_primary"] == 1


def test_v3_view_change_with_a_forged_prepared_certificate_is_refused():
    """V1, V3: a VIEW-CHANGE whose certificate holds a PREPARE not signed by its sender is refused."""
    primary = make_replica(1)
    pp = pre_prepare(1)
    cert = _prepared_certificate(pp)
    forged = replace(cert, prepares=(cert.prepares[0], replace(cert.prepares[1], signature=bytes(64))))
    primary.receive(_view_change(2, prepared=(forged,)))
    assert primary.dropped["bad_prepared_certificate"] == 1


# ---------------------------------------------------------------------------------------- V4


def test_v4_a_view_change_that_does_not_complete_moves_on_with_a_doubled_timeout():
    """V4: the timer starts once 2f + 1 replicas ask for the view (PBFT §4.5.2); with no
    NEW-VIEW within T the replica moves to view 2; there, once 2f + 1 ask, it waits 2T."""
    backup = make_replica(3, request_timeout_ms=100, view_change_timeout_ms=1_000)
    backup.receive(request(5))
    backup.tick(100)
    assert backup.view == 1
    backup.tick(5_000)
    assert backup.view == 1, "alone, it waits: no timer without a quorum"
    backup.receive(_view_change(0, new_view=1))
    backup.receive(_view_change(2, new_view=1))  # 2f + 1 for view 1: the timer starts
    backup.tick(5_999)
    assert backup.view == 1
    backup.tick(6_000)
    assert backup.view == 2
    backup.receive(_view_change(0, new_view=2))
    backup.receive(_view_change(2, new_view=2))
    backup.tick(7_999)
    assert backup.view == 2
    backup.tick(8_000)
    assert backup.view == 3 and backup.view_changes_started == 3


def test_v4_a_replica_in_a_view_change_sends_its_view_change_again_until_it_ends():
    """V4: lost VIEW-CHANGEs must not strand a view change: the replica repeats its own every
    T / 4 until the new view is installed."""
    backup = make_replica(3, request_timeout_ms=100, view_change_timeout_ms=1_000)
    backup.receive(request(5))
    backup.tick(100)
    (first,) = [m for _, m in sent(drain(backup), ViewChange)]
    backup.tick(349)
    assert sent(drain(backup), ViewChange) == []
    backup.tick(350)
    assert [m for _, m in sent(drain(backup), ViewChange)] == [first]


# ---------------------------------------------------------------------------------------- V5


def test_v5_f_plus_1_view_changes_for_higher_views_make_a_replica_join():
    """V5: one VIEW-CHANGE (f) for view 2 is not enough; with a second (f + 1) for view 3 the
    replica joins view 2, the smallest view the f + 1 ask for, before its timer expires."""
    backup = make_replica(1)
    backup.receive(_view_change(2, new_view=2))
    assert backup.view == 0
    backup.receive(_view_change(3, new_view=3))
    assert backup.view == 2 and not backup.view_active
    assert [vc.new_view for _, vc in sent(drain(backup), ViewChange)] == [2]


# ------------------------------------------------------------------------- whole clusters


def _workload(cluster, sessions, total, key="k"):
    cluster.run_workload(sessions, total, lambda c, i: kv_append(f"{key}{c}", b"%d," % i))
    cluster.deliver_all()


def _assert_agreement(cluster, replicas=None):
    """Agreement: no two replicas executed different batches at one sequence number."""
    histories = [
        {b.sequence: b.digest for b in cluster.executed[r]}
        for r in (replicas if replicas is not None else range(len(cluster.replicas)))
    ]
    for sequence in set().union(*histories):
        assert len({h[sequence] for h in histories if sequence in h}) == 1, sequence


def _assert_exactly_once(cluster, replica):
    ran = [(e.request.client, e.request.timestamp) for b in cluster.executed[replica]
           for e in b.requests]
    assert len(ran) == len(set(ran))


def test_primary_stops_and_every_pending_request_commits():
    """V1–V3, N9: the primary crashes with requests in flight; clients multicast, backups relay
    and time out, replica 1 takes over and every request of every client commits, once."""
    cluster = random_order_cluster(seed=3, config_overrides=FAST)
    sessions = [cluster.add_client(f"c{i}") for i in range(5)]
    _workload(cluster, sessions, 5)
    cluster.crash(0)
    _workload(cluster, sessions, 15)
    assert all(len(s.results) == 5 + 15 for s in sessions)
    assert {r.view for r in cluster.replicas[1:]} == {1}
    _assert_agreement(cluster)
    for r in (1, 2, 3):
        _assert_exactly_once(cluster, r)


@pytest.mark.parametrize("seed", [1, 2])
def test_three_faulty_primaries_in_a_row_then_progress(seed):
    """V4: with n = 10 (f = 3) and primaries 0, 1 and 2 crashed, views 1 and 2 fail, view 3
    has a correct primary, and the cluster makes progress there."""
    cluster = random_order_cluster(10, seed=seed, config_overrides=FAST)
    sessions = [cluster.add_client(f"c{i}") for i in range(4)]
    _workload(cluster, sessions, 3)
    for i in (0, 1, 2):
        cluster.crash(i)
    _workload(cluster, sessions, 8)
    assert all(len(s.results) == 3 + 8 for s in sessions)
    assert {r.view for r in cluster.replicas[3:]} == {3}
    _assert_agreement(cluster, range(3, 10))


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_equivocating_primary_cannot_split_the_correct_replicas(seed):
    """V6, agreement: the primary sends one PRE-PREPARE to replica 1 and another (valid, signed)
    for the same sequence number to replicas 2 and 3. No two correct replicas execute different
    batches; the view changes and every request commits."""
    cluster = random_order_cluster(seed=seed, config_overrides=FAST)
    primary = EquivocatingPrimary(split=1, evidence_after_ms=None)
    cluster.add_behaviour(0, primary)
    sessions = [cluster.add_client(f"c{i}") for i in range(4)]
    _workload(cluster, sessions, 6)
    assert primary.equivocations >= 1
    assert all(len(s.results) == 6 for s in sessions)
    assert all(r.view >= 1 for r in cluster.replicas[1:])
    _assert_agreement(cluster, (1, 2, 3))


def test_v6_request_prepared_at_some_replicas_executes_at_the_same_sequence_in_the_new_view():
    """V6: every COMMIT of view 0 is lost, so batch 1 prepares at every replica but commits
    nowhere; after the primary crashes, view 1 executes the same batch at sequence 1."""
    cluster = random_order_cluster(seed=9, config_overrides=FAST)
    cluster.network.lose(Commit, 1.0)
    session = cluster.add_client("c")
    cluster.submit(session, kv_append("k", b"x"))
    cluster.deliver_all()
    batch = cluster.replicas[1]._log[1].pre_prepare  # noqa: SLF001 - the batch that prepared
    assert all(r.last_executed == 0 for r in cluster.replicas)
    cluster.network.heal()
    cluster.crash(0)
    assert cluster.run_until(lambda: session.session.outstanding is None)
    cluster.deliver_all()
    for r in (1, 2, 3):
        executed = cluster.executed[r][0]
        assert (executed.sequence, executed.digest, executed.view) == (1, batch.digest, 1)
        ran = [e for b in cluster.executed[r] for e in b.requests]
        assert len(ran) == 1, "the client's retransmission, proposed again, does not run twice"


def test_v6_a_request_committed_at_one_correct_replica_is_never_lost():
    """V6: only replica 1 gets the COMMITs of batch 1 and executes it; the primary crashes. In
    view 1 the others execute the same batch at sequence 1, and replica 1 does not run it again."""
    cluster = random_order_cluster(seed=4, config_overrides=FAST)
    cluster.network.lose(Commit, 1.0, destinations=[0, 2, 3])
    session = cluster.add_client("c")
    cluster.submit(session, kv_append("k", b"x"))
    cluster.deliver_all()
    assert [r.last_executed for r in cluster.replicas] == [0, 1, 0, 0]
    digest = cluster.executed[1][0].digest
    cluster.network.heal()
    cluster.crash(0)
    assert cluster.run_until(lambda: session.session.outstanding is None)
    cluster.deliver_all()
    for r in (1, 2, 3):
        assert (cluster.executed[r][0].sequence, cluster.executed[r][0].digest) == (1, digest)
        assert len([e for b in cluster.executed[r] for e in b.requests]) == 1
    assert len(session.results) == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_v4_a_view_change_completes_within_two_view_change_timeouts(seed):
    """V4: with a stable network (1 ms of virtual time per message), from the first VIEW-CHANGE
    to every correct replica in the new view takes less than 2T of virtual time."""
    from benchmarks.view_change_time import TIMEOUTS, one_view_change

    row = one_view_change(seed, ms_per_delivery=1)
    assert row["view_change_ms"] <= 2 * TIMEOUTS["view_change_timeout_ms"]


def test_v5_a_replica_that_missed_a_view_change_joins_when_f_plus_1_work_in_a_later_view():
    """V5: a replica still in view 0 (it was down during the view change) sees validly signed
    messages of view 1 from f + 1 replicas: it asks for view 1, whose primary will answer with
    the NEW-VIEW. One replica's word is not enough."""
    backup = make_replica(3)
    pp = pre_prepare(1, view=1, replica=1)
    backup.receive(sign(Prepare(1, 1, pp.digest, 2, b"")))
    assert backup.view == 0 and backup.view_active
    backup.receive(sign(Commit(1, 1, pp.digest, 1, b"")))
    assert backup.view == 1 and not backup.view_active
    assert [vc.new_view for _, vc in sent(drain(backup), ViewChange)] == [1]


def test_v1_a_backup_behind_the_others_catches_up_before_blaming_the_primary():
    """V1: when the request timer fires while others are known to be ahead, the backup first
    asks for the committed batches (FETCH-LOG) and gives it one more period; only then, with no
    progress, does it start a view change."""
    from pbft.messages import FetchLog

    backup = make_replica(2, request_timeout_ms=500)
    pp = pre_prepare(1)
    backup.receive(commit(pp, 3))  # replica 3 committed sequence 1: others are ahead
    backup.receive(request(9, key="late"))
    drain(backup)
    backup.tick(500)
    ready = drain(backup)
    assert sent(ready, ViewChange) == [] and len(sent(ready, FetchLog)) == 1
    assert backup.view_active
    backup.tick(1_000)
    assert not backup.view_active and backup.view == 1


def test_v1_a_primary_whose_batches_do_not_commit_gives_up_its_view():
    """V1 for the primary: it times out too when a request it holds does not execute (its
    backups are elsewhere: it was left behind in an old view, or is cut off), so it joins the
    view change instead of waiting forever as the primary of a dead view."""
    primary = make_replica(0, request_timeout_ms=500)
    primary.receive(request(1))
    drain(primary)
    primary.tick(499)
    assert primary.view_active and primary.view == 0
    primary.tick(500)
    assert not primary.view_active and primary.view == 1
    assert [vc.new_view for _, vc in sent(drain(primary), ViewChange)] == [1]


def test_v3_any_replica_that_installed_a_view_relays_its_new_view_to_one_still_asking():
    """V3, liveness: a Byzantine new primary may send its NEW-VIEW to one replica only; that
    replica answers a VIEW-CHANGE for its installed view with the (signed, self-checking)
    NEW-VIEW, so the others can install it too."""
    backup = make_replica(2)
    nv = _new_view_for(pre_prepare(1))
    backup.receive(nv)
    assert backup.view == 1 and backup.view_active
    drain(backup)
    backup.receive(_view_change(3, new_view=1))
    assert [m for _, m in sent(drain(backup), NewView)] == [nv]
