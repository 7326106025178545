"""V5': a replica whose view change gets no support returns to the view the others work in
(issue 12, item 7), and follows it without voting until the next view.

A backup cut off from the other replicas (but not from clients) times out on a request and
asks for view 1 alone. When it hears 2f + 1 others still working in view 0, it goes back to
view 0: it prepares and executes there on their votes and answers clients, but sends no
PRE-PREPARE, PREPARE or COMMIT of view 0, because the VIEW-CHANGE it sent does not report what
it would prepare now. Without this it stayed in view 1 for good: the cluster ran on 3 of 4.
"""

from __future__ import annotations

from pbft.app import kv_put
from pbft.messages import Commit, Prepare, PrePrepare, ViewChange
from simulations.engine import Observer

from .corekit import random_order_cluster

CUT = 3


class SentBy(Observer):
    """Records every message the given replicas send (what their core hands over)."""

    def __init__(self, replicas, kinds=object) -> None:
        self.replicas = frozenset(replicas)
        self.kinds = kinds
        self.messages: list = []

    def readied(self, replica_id, ready) -> None:
        if replica_id in self.replicas:
            self.messages.extend(o.message for o in ready.messages
                                 if isinstance(o.message, self.kinds))


def _cluster():
    cluster = random_order_cluster(config_overrides={"request_timeout_ms": 1_000})
    # Replica 3 neither hears nor is heard by the other replicas; clients reach everyone.
    cut = cluster.network.partition([CUT], [r for r in range(4) if r != CUT])
    cluster.observer = SentBy([CUT])
    return cluster, cut, cluster.observer.messages


def _alone_in_view_1(cluster, cut):
    client = cluster.add_client("a")
    cluster.submit(client, kv_put("k", b"0"))
    cluster.deliver_all()
    cluster.advance_time(1_100)  # replica 3's request timer fires; it asks for view 1 alone
    cluster.deliver_all()
    lone = cluster.replicas[CUT]
    assert lone.view == 1 and not lone.view_active
    assert all(cluster.replicas[r].view == 0 for r in range(3))
    cluster.network.heal(cut)
    return client


def test_v5_prime_a_lone_view_change_returns_to_the_view_the_others_work_in():
    cluster, cut, _ = _cluster()
    client = _alone_in_view_1(cluster, cut)
    for i in range(1, 6):
        cluster.submit(client, kv_put("k", b"%d" % i))
        cluster.deliver_all()
    cluster.run_for(3_000)
    lone = cluster.replicas[CUT]
    assert (lone.view, lone.view_active, lone.following) == (0, True, True)
    assert lone.view_changes_abandoned == 1
    assert lone.last_executed == cluster.replicas[0].last_executed
    assert lone.state_digest() == cluster.replicas[0].state_digest()
    assert all(cluster.replicas[r].view == 0 for r in range(4)), "no view change was forced"


def test_v5_prime_the_returned_replica_sends_no_vote_in_that_view():
    """Its VIEW-CHANGE for view 1, which the others now hold, reports what it prepared when it
    left: a PREPARE or COMMIT of view 0 sent after it could let a faulty primary of view 1
    build a NEW-VIEW that loses a committed request."""
    cluster, cut, sent = _cluster()
    client = _alone_in_view_1(cluster, cut)
    sent.clear()
    for i in range(1, 6):
        cluster.submit(client, kv_put("k", b"%d" % i))
        cluster.deliver_all()
    assert cluster.replicas[CUT].following
    votes = [m for m in sent if isinstance(m, (PrePrepare, Prepare, Commit)) and m.view == 0]
    assert votes == []
    assert cluster.replicas[CUT].votes_withheld > 0


def test_v5_prime_the_next_view_change_brings_the_replica_back_as_a_voter():
    """Following ends with the view: in view 1 it votes again (a fresh VIEW-CHANGE first)."""
    cluster, cut, sent = _cluster()
    client = _alone_in_view_1(cluster, cut)
    cluster.submit(client, kv_put("k", b"1"))
    cluster.deliver_all()
    assert cluster.replicas[CUT].following
    cluster.crash(0)  # the primary of view 0: everyone times out and moves to view 1
    cluster.submit(client, kv_put("k", b"2"))
    cluster.run_for(6_000)
    assert all(cluster.replicas[r].view == 1 and cluster.replicas[r].view_active
               for r in (1, 2, 3))
    lone = cluster.replicas[CUT]
    assert not lone.following
    assert [m for m in sent if isinstance(m, ViewChange) and m.new_view == 1]
    sent.clear()
    cluster.submit(client, kv_put("k", b"3"))
    cluster.deliver_all()
    assert any(isinstance(m, Commit) and m.view == 1 for m in sent)
    assert client.results[-1].result is not None


def test_v5_prime_fewer_than_2f_plus_1_others_do_not_bring_it_back():
    """With one of the others down, view 0 cannot commit without us: stay in the view change
    (the others' timers will bring them to view 1)."""
    cluster, cut, _ = _cluster()
    client = cluster.add_client("a")
    cluster.submit(client, kv_put("k", b"0"))
    cluster.deliver_all()
    cluster.advance_time(1_100)
    cluster.deliver_all()
    cluster.crash(2)
    cluster.network.heal(cut)
    cluster.submit(client, kv_put("k", b"1"))
    cluster.deliver_all()
    lone = cluster.replicas[CUT]
    assert lone.view_changes_abandoned == 0


def test_v5_prime_a_primary_that_left_its_own_view_does_not_return_to_follow_it():
    """V5': following without voting, the primary of the view it left would propose nothing;
    it keeps its view change, and the backups join it once their request timers run."""
    cluster = random_order_cluster(config_overrides={"request_timeout_ms": 1_000})
    # The primary hears no PREPARE and no COMMIT.
    cluster.network.lose(Commit, 1.0, destinations=[0])
    cluster.network.lose(Prepare, 1.0, destinations=[0])
    cluster.observer = SentBy([1, 2, 3], Commit)
    commits = cluster.observer.messages
    client = cluster.add_client("a")
    cluster.submit(client, kv_put("k", b"0"))
    cluster.deliver_all()
    cluster.advance_time(1_100)  # the primary's own request timer: its batch did not commit
    cluster.deliver_all()
    primary = cluster.replicas[0]
    assert primary.view == 1 and not primary.view_active
    cluster.network.heal()
    assert commits
    for commit in commits:  # the backups' COMMITs of view 0 arrive late
        cluster.inject(0, commit, source=commit.replica)
    cluster.deliver_all()
    assert primary.view_changes_abandoned == 0 and not primary.view_active
    cluster.submit(client, kv_put("k", b"1"))
    cluster.run_for(5_000)
    assert all(r.view == 1 and r.view_active for r in cluster.replicas)
    assert len(client.results) == 2


def test_v5_prime_a_replica_two_views_ahead_alone_follows_the_view_installed_without_it():
    """V5' (found by the multi-host suite, a one-way partition): cut off, replica 3 asks for
    view 1 and then view 2 alone, while the others install view 1 without it. Healed, it sees
    2f + 1 others working in view 1, asks for that view's NEW-VIEW (it never received it) and
    follows view 1, instead of staying in its view change for good."""
    cluster, cut, sent = _cluster()
    client = cluster.add_client("a")
    cluster.submit(client, kv_put("k", b"0"))
    cluster.deliver_all()
    for r in (0, 1, 2):
        cluster.replicas[r]._start_view_change(1)
    cluster.run_for(500)
    assert all(cluster.replicas[r].view == 1 and cluster.replicas[r].view_active
               for r in (0, 1, 2))
    lone = cluster.replicas[CUT]
    lone._start_view_change(1)
    lone._start_view_change(2)
    cluster.deliver_all()
    cluster.network.heal(cut)
    for i in range(1, 4):
        cluster.submit(client, kv_put("k", b"%d" % i))
        cluster.deliver_all()
    cluster.run_for(3_000)
    assert (lone.view, lone.view_active, lone.following) == (1, True, True)
    assert lone.last_executed == cluster.replicas[1].last_executed
    assert lone.state_digest() == cluster.replicas[1].state_digest()
    assert all(cluster.replicas[r].view == 1 for r in (0, 1, 2)), "no view change was forced"
    assert not [m for m in sent if isinstance(m, (Prepare, Commit)) and m.view == 1]
