"""The replica's bookkeeping parts on their own (Timeout, WaitingRequests, Stash) and the one mode
value that says what a replica does: each check of theirs, by a test that fails without it."""

from __future__ import annotations

import pytest

from pbft.core import sizes
from pbft.core.mode import Mode
from pbft.core.stash import Stash
from pbft.core.timeout import Timeout
from pbft.core.waiting import WaitingRequests
from pbft.messages import NewView
from tests.corekit import CLIENT, OTHER_CLIENT, make_replica, pre_prepare, prepare, request

# ---------------------------------------------------------------------- Timeout


def test_a_timeout_fires_at_its_deadline_and_stays_fired_until_stopped():
    timeout = Timeout()
    assert not timeout.running and not timeout.fired(10**9)
    timeout.start(100, 50)
    assert timeout.running and timeout.deadline_ms == 150
    assert not timeout.fired(149)
    assert timeout.fired(150) and timeout.fired(151)
    timeout.stop()
    assert not timeout.running and not timeout.fired(10**9)


def test_a_timeout_restarted_moves_its_deadline():
    timeout = Timeout()
    timeout.start(0, 10)
    timeout.start(5, 10)
    assert not timeout.fired(14) and timeout.fired(15)


def test_a_timeout_cannot_be_set_in_the_past():
    with pytest.raises(ValueError):
        Timeout().start(100, -1)
    due_now = Timeout()
    due_now.start(100, 0)
    assert due_now.fired(100)


# ---------------------------------------------------------------------- WaitingRequests

A1, A2 = request(1, client=CLIENT), request(2, client=CLIENT)
B1 = request(1, client=OTHER_CLIENT)
A, B = CLIENT.public_key, OTHER_CLIENT.public_key


def _waiting(count_max=10, bytes_max=10**6, propose_timeout_ms=100) -> WaitingRequests:
    return WaitingRequests(count_max, bytes_max, propose_timeout_ms)


def test_waiting_requests_keep_the_oldest_first_with_their_bytes_and_time():
    """N1, V1: per client one request, oldest first, since when, and the bytes held."""
    waiting = _waiting()
    waiting.add(A1, 5, unproposed=False)
    waiting.add(B1, 7, unproposed=False)
    assert waiting.oldest() == A and len(waiting) == 2
    assert waiting.bytes == sizes.request_bytes(A1) + sizes.request_bytes(B1)
    assert waiting.by_client() == {A: (1, 5), B: (1, 7)}
    assert waiting.remove(A) == A1
    assert waiting.oldest() == B and waiting.bytes == sizes.request_bytes(B1)
    waiting.remove(B)
    assert waiting.oldest() is None and waiting.bytes == 0
    waiting.check()


def test_waiting_requests_are_bounded_by_count():
    waiting = _waiting(count_max=1)
    assert waiting.fits(A1)
    waiting.add(A1, 0, unproposed=False)
    assert not waiting.fits(B1)
    assert waiting.fits(A2)  # replacing the client's own request needs no more room


def test_waiting_requests_are_bounded_by_bytes_counting_what_a_replacement_frees():
    size = sizes.request_bytes(A1)
    waiting = _waiting(bytes_max=size)
    assert waiting.fits(A1)
    waiting.add(A1, 0, unproposed=False)
    assert not waiting.fits(B1)
    assert waiting.fits(A2)  # A2 replaces A1: A1's bytes are freed
    assert not _waiting(bytes_max=size - 1).fits(A1)


def test_a_client_waits_on_one_request_at_a_time():
    waiting = _waiting()
    waiting.add(A1, 0, unproposed=False)
    with pytest.raises(AssertionError):
        waiting.add(A2, 1, unproposed=False)


def test_the_proposal_timer_runs_for_the_oldest_unproposed_request():
    """V1'': it fires propose_timeout_ms after the oldest unproposed request began to wait,
    and stops when none is left."""
    waiting = _waiting(propose_timeout_ms=100)
    waiting.add(A1, 10, unproposed=True)
    waiting.add(B1, 30, unproposed=True)
    assert waiting.proposal_timer.deadline_ms == 110
    assert waiting.oldest_unproposed() == A
    waiting.remove(A)  # executed, or superseded
    assert waiting.proposal_timer.deadline_ms == 130
    waiting.proposed((B1,))
    assert not waiting.proposal_timer.running and waiting.unproposed_count() == 0
    waiting.check()


def test_a_pre_prepare_of_an_older_request_leaves_the_newer_one_unproposed():
    """V1'': only a PRE-PREPARE carrying the waiting request (or a newer one) counts."""
    waiting = _waiting()
    waiting.add(A2, 0, unproposed=True)
    waiting.proposed((A1,))
    assert waiting.unproposed_count() == 1 and waiting.proposal_timer.running
    waiting.proposed((A2,))
    assert waiting.unproposed_count() == 0 and not waiting.proposal_timer.running


def test_a_relayed_request_waits_again_behind_the_others():
    """V1'': relaying gives the primary another propose timeout, from the relay."""
    waiting = _waiting(propose_timeout_ms=100)
    waiting.add(A1, 0, unproposed=True)
    waiting.add(B1, 20, unproposed=True)
    assert not waiting.relayed(A)
    waiting.note_relayed(A, 50)
    assert waiting.relayed(A) and waiting.oldest_unproposed() == B
    assert waiting.proposal_timer.deadline_ms == 120
    waiting.remove(B)
    assert waiting.proposal_timer.deadline_ms == 150
    waiting.remove(A)
    assert not waiting.relayed(A)  # a new request of A starts afresh
    waiting.add(A2, 60, unproposed=True)
    assert not waiting.relayed(A)


def test_a_new_view_forgets_every_proposal_expected():
    waiting = _waiting()
    waiting.add(A1, 0, unproposed=True)
    waiting.note_relayed(A, 1)
    waiting.forget_proposals()
    assert waiting.unproposed_count() == 0 and not waiting.relayed(A)
    assert not waiting.proposal_timer.running and len(waiting) == 1
    waiting.await_proposal(A, 5)
    assert waiting.proposal_timer.deadline_ms == 105


def test_waiting_requests_check_catches_a_timer_out_of_step():
    waiting = _waiting()
    waiting.add(A1, 0, unproposed=True)
    waiting.proposal_timer.stop()
    with pytest.raises(AssertionError):
        waiting.check()


# ---------------------------------------------------------------------- Stash


def test_the_stash_keeps_per_sender_in_arrival_order_and_gives_all_back_once():
    """V3': kept per sender; take_all empties it."""
    one, two, three = pre_prepare(1), pre_prepare(2), prepare(pre_prepare(1), 2)
    stash = Stash(count_max=10, bytes_max=10**6)
    assert not stash
    stash.add(0, one, 100)
    stash.add(2, three, 10)
    stash.add(0, two, 100)
    assert stash and len(stash) == 3 and stash.bytes == 210 and stash.bytes_of(0) == 200
    assert stash.take_all() == [one, two, three]
    assert not stash and len(stash) == 0 and stash.bytes == 0 and stash.take_all() == []


def test_the_stash_is_bounded_by_bytes_per_sender():
    """V3': at most stash_bytes_max bytes per sender; other senders keep their share."""
    stash = Stash(count_max=10, bytes_max=100)
    assert stash.has_room(0, 100) and not stash.has_room(0, 101)
    stash.add(0, pre_prepare(1), 60)
    assert not stash.has_room(0, 41) and stash.has_room(0, 40)
    assert stash.has_room(2, 100)
    with pytest.raises(AssertionError):
        stash.add(0, pre_prepare(2), 41)


def test_the_stash_is_bounded_by_count_per_sender():
    """V3': at most stash_max messages per sender."""
    stash = Stash(count_max=1, bytes_max=10**6)
    stash.add(0, pre_prepare(1), 1)
    assert not stash.has_room(0, 1) and stash.has_room(2, 1)


def test_pruning_the_stash_keeps_what_is_wanted_and_recounts_its_bytes():
    """V3': after a view change only the view that can be installed next is kept."""
    old, new = pre_prepare(1, view=1), pre_prepare(2, view=2)
    stash = Stash(count_max=10, bytes_max=10**8)
    stash.add(0, old, sizes.message_bytes(old))
    stash.add(0, new, sizes.message_bytes(new))
    stash.add(2, prepare(old, 2), sizes.VOTE_BYTES)
    stash.keep_only(lambda m: m.view == 2)
    assert stash.bytes == stash.bytes_of(0) == sizes.message_bytes(new)
    assert stash.has_room(0, 10**8 - sizes.message_bytes(new))
    stash.keep_only(lambda m: False)
    assert not stash and stash.bytes_of(0) == 0 and stash.has_room(0, 10**8)


# ---------------------------------------------------------------------- the mode


def _proven_above(replica, sequence=16):
    """Make `replica` learn of a stable checkpoint above its state, at once (S1)."""
    replica._stable_checkpoint_proven(sequence, b"\x01" * 32, (), wait=False)  # noqa: SLF001


def test_the_mode_follows_a_view_change():
    """V1, V3: VIEW_CHANGE from the VIEW-CHANGE to the NEW-VIEW; view_active derives from it."""
    backup = make_replica(1)
    assert backup.mode is Mode.NORMAL and backup.view_active and not backup.fetching_state
    backup._start_view_change(1)  # noqa: SLF001
    assert backup.mode is Mode.VIEW_CHANGE and not backup.view_active
    backup._install_view(NewView(1, (), (), 1, b""))  # noqa: SLF001 - installing, not checking
    assert backup.mode is Mode.NORMAL and backup.view_active


def test_a_fetch_goes_on_through_a_view_change():
    """S1 during V1: VIEW_CHANGE takes precedence over FETCHING_STATE and keeps the fetch; the
    installed view is FETCHING_STATE again while the fetch runs."""
    backup = make_replica(1)
    _proven_above(backup)
    assert backup.mode is Mode.FETCHING_STATE and backup.view_active and backup.fetching_state
    backup._start_view_change(1)  # noqa: SLF001
    assert backup.mode is Mode.VIEW_CHANGE and backup.fetching_state
    backup.tick(1)  # the invariants hold
    backup._install_view(NewView(1, (), (), 1, b""))  # noqa: SLF001
    assert backup.mode is Mode.FETCHING_STATE and backup.fetching_state


def test_a_fetch_proven_during_a_view_change_leaves_the_mode_a_view_change():
    backup = make_replica(1)
    backup._start_view_change(1)  # noqa: SLF001
    _proven_above(backup)
    assert backup.mode is Mode.VIEW_CHANGE and backup.fetching_state
    backup.tick(1)


@pytest.mark.parametrize("corrupt", [
    "normal_with_a_fetch", "fetching_without_a_fetch", "view_change_resend_in_normal",
    "view_change_timer_in_normal", "fetch_without_its_timer", "lagging_timer_alone",
    "waiting_out_of_step",
])
def test_the_invariants_catch_a_mode_that_disagrees_with_its_data(corrupt):
    """The mode, the fetch and the timers agree after every step (`_check_invariants`)."""
    replica = make_replica(1)
    if corrupt == "normal_with_a_fetch":
        _proven_above(replica)
        replica._mode = Mode.NORMAL  # noqa: SLF001
    elif corrupt == "fetching_without_a_fetch":
        replica._mode = Mode.FETCHING_STATE  # noqa: SLF001
    elif corrupt == "view_change_resend_in_normal":
        replica._view_change_resend_timer.start(0, 10**6)  # noqa: SLF001
    elif corrupt == "view_change_timer_in_normal":
        replica._view_change_timer.start(0, 10**6)  # noqa: SLF001
    elif corrupt == "fetch_without_its_timer":
        _proven_above(replica)
        replica._fetch_timer.stop()  # noqa: SLF001
    elif corrupt == "lagging_timer_alone":
        replica._lagging_timer.start(0, 10**6)  # noqa: SLF001
    else:
        replica._waiting.proposal_timer.start(0, 10**6)  # noqa: SLF001
    with pytest.raises(AssertionError):
        replica.tick(1)


# ------------------------------------------------------------------ DeferredReads (R1')

def test_deferred_reads_are_bounded_in_bytes_and_released_in_order_when_due():
    from pbft.core import sizes
    from pbft.core.reads import DeferredReads

    from .corekit import OTHER_CLIENT, request

    a, b = request(1), request(2, client=OTHER_CLIENT)
    size = sizes.request_bytes(a)
    reads = DeferredReads(count_max=10, bytes_max=size + sizes.request_bytes(b) - 1)
    assert reads.add(a, needs=5)
    assert not reads.add(b, needs=3), "over the byte bound"
    assert reads.add(request(3), needs=4), "a client's newer read replaces its older one"
    assert len(reads) == 1 and reads.bytes == sizes.request_bytes(request(3))
    assert reads.due(3) == []
    assert [r.timestamp for r in reads.due(4)] == [3]
    assert len(reads) == 0 and reads.bytes == 0
