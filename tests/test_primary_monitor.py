"""V1'', the primary monitor, on single backups with hand-made messages: a backup measures its own
commit rounds and tolerates a proposal delay of a few of them (at least propose_timeout_ms / 5,
at most propose_timeout_ms); it does not count time while a batch of the primary is in flight,
and suspects only while votes of f other backups show it is not cut off itself."""

from __future__ import annotations

from pbft.messages import Request

from .corekit import (
    OTHER_CLIENT,
    SIGNERS,
    commit,
    drain,
    make_replica,
    pre_prepare,
    prepare,
    request,
    sent,
)

TIMEOUTS = {"request_timeout_ms": 2_000, "propose_timeout_ms": 500}


def _measured(round_ms: int, **overrides):
    """A backup (replica 1) that executed batches 1-3, each round_ms after its PRE-PREPARE;
    returns it and the time of the last execution."""
    backup = make_replica(1, **{**TIMEOUTS, **overrides})
    now = 0
    for n in (1, 2, 3):
        pp = pre_prepare(n, requests=(request(n, key=f"r{n}", client=OTHER_CLIENT),),
                         timestamp_ms=now)
        backup.tick(now)
        backup.receive(pp)
        now += round_ms
        backup.tick(now)
        backup.receive(prepare(pp, 2))
        for r in (0, 2):
            backup.receive(commit(pp, r))
    assert backup.last_executed == 3
    drain(backup)
    return backup, now


def _heard_from_backup_2(backup, sequence: int = 9) -> None:
    backup.receive(prepare(pre_prepare(sequence), 2))


def _ticks(backup, start_ms: int, end_ms: int) -> None:
    """Tick every 10 ms from `start_ms` to `end_ms`, as a driver does."""
    for now in range(start_ms, end_ms + 1, 10):
        backup.tick(now)


def test_v1_second_prime_the_tolerated_delay_is_three_measured_commit_rounds():
    """V1'': with commit rounds of 40 ms, a request is relayed after 120 ms without a
    PRE-PREPARE, and the primary suspected 120 ms later: not after propose_timeout_ms."""
    backup, now = _measured(40)
    assert backup.proposal_slack_ms() == 120
    waiting = request(5, key="a")
    backup.receive(waiting)
    backup.tick(now + 1)
    _heard_from_backup_2(backup)
    backup.tick(now + 119)
    assert sent(drain(backup), Request) == []
    backup.tick(now + 120)
    assert sent(drain(backup), Request) == [((0,), waiting)]
    backup.tick(now + 239)
    assert backup.view_active
    backup.tick(now + 240)
    assert not backup.view_active and backup.dropped["primary_slow_to_propose"] == 1


def test_v1_second_prime_the_tolerated_delay_has_a_floor_and_a_ceiling():
    """V1'': at least propose_timeout_ms / 5 (fast networks jitter too), at most
    propose_timeout_ms, which is also the delay tolerated before any round was measured."""
    assert _measured(1)[0].proposal_slack_ms() == 100
    assert _measured(400)[0].proposal_slack_ms() == 500
    assert make_replica(1, **TIMEOUTS).proposal_slack_ms() == 500


def test_v1_second_prime_a_backup_that_hears_no_other_backup_does_not_suspect():
    """V1'': a backup cut off from the others sees no PRE-PREPARE either; without votes of f
    other backups since the request arrived it leaves the primary to the request timer."""
    backup, now = _measured(40)
    backup.receive(request(5, key="a"))
    _ticks(backup, now, now + 1_000)
    assert sent(drain(backup), Request), "relayed all the same"
    assert backup.view_active and backup.dropped["primary_slow_to_propose"] == 0
    _heard_from_backup_2(backup)
    _ticks(backup, now + 1_000, now + 1_200)
    assert not backup.view_active, "hearing the others again, it suspects the primary"


def test_v1_second_prime_no_suspicion_while_a_batch_of_the_primary_is_in_flight():
    """V1'': the primary proposes a batch that is not full only once its batch in flight
    executed: while one is in flight here, waiting requests do not count against it."""
    backup, now = _measured(40)
    in_flight = pre_prepare(4, requests=(request(4, key="r4", client=OTHER_CLIENT),),
                            timestamp_ms=now)
    backup.receive(in_flight)
    backup.receive(request(5, key="a"))
    _heard_from_backup_2(backup)
    _ticks(backup, now, now + 1_000)
    assert backup.view_active and backup.dropped["primary_slow_to_propose"] == 0
    assert sent(drain(backup), Request) == [], "not even relayed: nothing is late"
    backup.receive(prepare(in_flight, 2))
    for r in (0, 2):
        backup.receive(commit(in_flight, r))
    assert backup.last_executed == 4
    backup.tick(now + 1_001)
    _heard_from_backup_2(backup)
    # The slow round (1 s) raised the delay tolerated to 480 ms; the primary gets that much
    # after the execution (it may execute after us): relayed then, suspected 480 ms later,
    # before the request timer (2 s).
    _ticks(backup, now + 1_010, now + 1_470)
    assert sent(drain(backup), Request) == []
    _ticks(backup, now + 1_480, now + 1_490)
    assert len(sent(drain(backup), Request)) == 1
    _ticks(backup, now + 1_500, now + 1_950)
    assert backup.view_active
    _ticks(backup, now + 1_960, now + 1_980)
    assert not backup.view_active and backup.dropped["primary_slow_to_propose"] == 1


def test_v1_second_prime_a_pre_prepare_above_our_window_counts_as_in_flight():
    """V1'', C2': our checkpoint is late and the primary's PRE-PREPAREs are above our high
    watermark (kept aside): its window is ahead of ours, not idle."""
    backup = make_replica(1, log_window=4, checkpoint_interval=2, **TIMEOUTS)
    backup.receive(pre_prepare(5))
    assert backup.memory_footprint()["stash"] == 1
    backup.receive(request(7, key="a", client=OTHER_CLIENT))
    backup.tick(1)
    _heard_from_backup_2(backup, sequence=2)
    _ticks(backup, 10, 1_990)
    assert backup.view_active and backup.dropped["primary_slow_to_propose"] == 0


def test_v1_second_prime_a_client_that_needed_a_relay_is_relayed_at_once_in_this_view():
    """V1'': a client whose request had to be relayed may not reach the primary at all: its
    next requests are relayed on arrival, so the primary gets one tolerated delay, not two."""
    backup, now = _measured(40)
    first = request(5, key="a")
    backup.receive(first)
    _heard_from_backup_2(backup)
    backup.tick(now + 120)
    assert sent(drain(backup), Request) == [((0,), first)]
    backup.receive(pre_prepare(4, requests=(first,), timestamp_ms=now))
    second = request(6, key="a")
    backup.receive(second)
    assert sent(drain(backup), Request) == [((0,), second)]
    other = request(8, key="b", client=SIGNERS[3])
    backup.receive(other)
    assert sent(drain(backup), Request) == [], "other clients still reach the primary"


def test_v1_second_prime_a_backup_behind_the_others_does_not_suspect():
    """V1'': a backup that saw COMMITs above what it executed may simply have missed the
    PRE-PREPARE: it catches up before it blames the primary."""
    backup, now = _measured(40)
    ahead = pre_prepare(9)
    for r in (0, 2):
        backup.receive(commit(ahead, r))
    backup.receive(request(5, key="a"))
    backup.tick(now + 1)
    _heard_from_backup_2(backup)
    _ticks(backup, now + 10, now + 1_000)
    assert backup.view_active and backup.dropped["primary_slow_to_propose"] == 0


def test_v1_second_prime_a_primary_a_window_ahead_of_us_is_not_idle():
    """V1'', C2': a PRE-PREPARE of the primary beyond all we may keep (our checkpoints are
    late) shows it busy and us behind: no suspicion. A forged one (not the primary's
    signature), or one from a backup, shows nothing."""
    for sender, signer, suspected in ((0, None, 0), (0, SIGNERS[2], 1), (2, None, 1)):
        backup = make_replica(1, log_window=4, checkpoint_interval=2, **TIMEOUTS)
        backup.receive(pre_prepare(9, replica=sender, signer=signer))
        assert sum(backup.dropped.values()) == 1 and backup.log_size() == 0
        backup.receive(request(7, key="a", client=OTHER_CLIENT))
        backup.tick(1)
        _heard_from_backup_2(backup, sequence=2)
        _ticks(backup, 10, 1_990)
        assert backup.dropped["primary_slow_to_propose"] == suspected


def test_v1_second_prime_a_backup_cannot_fill_the_stash_with_pre_prepares():
    """V3', V1'': only the view's primary's PRE-PREPAREs are kept aside (a backup's would
    make the primary look busy and use stash space for nothing)."""
    backup = make_replica(1, log_window=4, checkpoint_interval=2, **TIMEOUTS)
    backup.receive(pre_prepare(5, replica=2))
    assert backup.memory_footprint()["stash"] == 0
    assert backup.dropped["pre_prepare_not_from_primary"] == 1


def _relayed_late():
    """A backup whose request from client "a" was late and relayed (so "a" is relayed at once
    for the rest of the view)."""
    backup, now = _measured(40)
    first = request(5, key="a")
    backup.receive(first)
    _heard_from_backup_2(backup)
    backup.tick(now + 120)
    assert sent(drain(backup), Request) == [((0,), first)]
    return backup, first


def test_n1_prime_relaying_is_bounded_once_per_request_per_view_whatever_arrives():
    """N1', V1'' (issue 12, item 4): however often a request arrives (duplicated by the network,
    relayed back by a replica that takes us for the primary, as copies or as the same object),
    a backup relays it to the primary at most once in a view. Round 1's backups forwarded on
    every arrival: two replicas that each took the other for the primary forwarded without
    end, exponentially with message duplication."""
    from pbft.codec import Limits, decode, encode

    backup, first = _relayed_late()
    limits = Limits.from_config(backup.config)
    for _ in range(50):
        backup.receive(first)
        backup.receive(decode(encode(first), limits))
    assert sent(drain(backup), Request) == []
    second = request(6, key="a")
    for _ in range(50):
        backup.receive(second)
        backup.receive(decode(encode(second), limits))
    assert sent(drain(backup), Request) == [((0,), second)]


def test_n1_prime_no_relay_during_a_view_change():
    """N1', V1'': during a view change there is no primary to relay to (the new one gets every
    waiting request when its view is installed): even a client relayed at once is not."""
    backup, _ = _relayed_late()
    backup._start_view_change(1)
    drain(backup)
    backup.receive(request(6, key="a"))
    assert sent(drain(backup), Request) == []
