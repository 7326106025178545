"""The normal case, rule by rule (N1–N10, D1): one core under test, the other replicas and the
clients played by hand with real Ed25519 signatures, every refusal checked by its counted reason."""

from __future__ import annotations

from dataclasses import replace

from pbft.app import kv_decode_result
from pbft.core import ClientSession
from pbft.messages import Commit, Prepare, PrePrepare, Reply, Request

from .corekit import (
    CLIENT,
    OTHER_CLIENT,
    SIGNERS,
    CountingVerifier,
    commit,
    commit_batch,
    drain,
    make_config,
    make_replica,
    pre_prepare,
    prepare,
    request,
    sent,
    sign,
)

# ---------------------------------------------------------------------------------------- N1


def test_n1_primary_receiving_a_request_proposes_it():
    """N1: a signed REQUEST sent to the primary is proposed in a PRE-PREPARE."""
    primary = make_replica(0)
    primary.receive(request(1))
    (to, pp), = sent(drain(primary), PrePrepare)
    assert to == (1, 2, 3)
    assert pp.requests[0].timestamp == 1 and pp.sequence == 1


def test_n1_prime_a_backup_waits_on_a_request_and_relays_it_only_when_its_proposal_is_late():
    """N1': clients send every request to all replicas. A backup proposes nothing, remembers
    the request as waiting (the request timer of V1), and relays it to the primary only once
    propose_timeout_ms passed without a PRE-PREPARE carrying it (V1'')."""
    backup = make_replica(2)
    req = request(1)
    backup.receive(req)
    ready = drain(backup)
    assert sent(ready, Request) == []
    assert sent(ready, PrePrepare) == []
    assert backup.waiting_requests() == {CLIENT.public_key: (1, 0)}
    backup.tick(backup.config.propose_timeout)
    assert sent(drain(backup), Request) == [((0,), req)]


def test_n1_prime_the_client_sends_a_request_to_every_replica():
    """N1': so that every backup times the primary's proposal from the start."""
    session = ClientSession(make_replica(0).config, CLIENT, 0)
    session.submit(b"op")
    (outbound,) = session.ready().messages
    assert outbound.to == (0, 1, 2, 3)


def test_n1_a_request_with_a_bad_client_signature_is_refused():
    """N1, N10: a request whose signature is not the client's is dropped and counted."""
    primary = make_replica(0)
    forged = replace(request(1), signature=OTHER_CLIENT.sign(b"something else"))
    primary.receive(forged)
    assert sent(drain(primary), PrePrepare) == []
    assert primary.dropped["bad_request_signature"] == 1


# ---------------------------------------------------------------------------------------- N2


def test_n2_primary_assigns_consecutive_sequence_numbers_with_the_batch_digest():
    """N2: sequence numbers 1, 2, … each with d = digest of the batch, signed by the primary."""
    primary = make_replica(0, batch_size_max=1)
    for t in (1, 2, 3):
        primary.receive(request(t, client=[CLIENT, OTHER_CLIENT, SIGNERS[3]][t - 1]))
    pps = [m for _, m in sent(drain(primary), PrePrepare)]
    assert [pp.sequence for pp in pps] == [1, 2, 3]
    backup = make_replica(1, batch_size_max=1)
    for pp in pps:
        backup.receive(pp)
    assert backup.dropped == {}, "the backup accepts the primary's signed batches"


def test_n2_a_batch_closes_when_full_or_when_nothing_is_in_flight():
    """N2: the first request goes out alone (nothing in flight); while that batch is in flight
    requests accumulate until batch_size_max, then a full batch is pipelined."""
    primary = make_replica(0, batch_size_max=3)
    clients = [CLIENT] + [SIGNERS[i] for i in range(4)]  # any keys will do as clients
    primary.receive(request(1, client=clients[0]))
    primary.receive(request(1, client=clients[1]))
    primary.receive(request(1, client=clients[2]))
    pps = [m for _, m in sent(drain(primary), PrePrepare)]
    assert [len(pp.requests) for pp in pps] == [1]
    primary.receive(request(1, client=clients[3]))
    pps = [m for _, m in sent(drain(primary), PrePrepare)]
    assert [(pp.sequence, len(pp.requests)) for pp in pps] == [(2, 3)]
    assert primary.status().pending_requests == 0


def test_n2_with_a_batch_delay_a_batch_closes_once_it_has_filled_for_that_long():
    """N2 with batch_delay_ms: with nothing in flight the primary does not close a batch at
    once; it closes it at the first tick once the batch has been filling for batch_delay_ms,
    with every request that arrived meanwhile, in arrival order."""
    primary = make_replica(0, batch_delay_ms=30)
    keys = [deterministic_client(i) for i in range(3)]
    primary.tick(100)
    primary.receive(request(1, client=keys[0]))
    assert sent(drain(primary), PrePrepare) == []
    primary.tick(120)
    primary.receive(request(1, client=keys[1]))
    primary.receive(request(1, client=keys[2]))
    primary.tick(129)
    assert sent(drain(primary), PrePrepare) == [] and primary.status().pending_requests == 3
    primary.tick(130)
    pps = [m for _, m in sent(drain(primary), PrePrepare)]
    assert [(pp.sequence, pp.timestamp_ms) for pp in pps] == [(1, 130)]
    assert [r.client for r in pps[0].requests] == [k.public_key for k in keys]
    assert primary.status().pending_requests == 0


def test_n2_with_a_batch_delay_a_full_batch_still_closes_at_once():
    """N2 with batch_delay_ms: a batch that reaches batch_size_max does not wait."""
    primary = make_replica(0, batch_delay_ms=500, batch_size_max=2)
    keys = [deterministic_client(i) for i in range(3)]
    for k in keys:
        primary.receive(request(1, client=k))
    pps = [m for _, m in sent(drain(primary), PrePrepare)]
    assert [len(pp.requests) for pp in pps] == [2]
    assert primary.status().pending_requests == 1


def test_n2_with_a_batch_delay_requests_gathered_while_a_batch_is_in_flight_go_out_when_it_executes():
    """N2 with batch_delay_ms: the delay counts from when the batch began to fill, so requests
    that waited behind a batch in flight for longer than the delay are proposed as soon as it
    executes, without waiting again."""
    primary = make_replica(0, batch_delay_ms=20)
    keys = [deterministic_client(i) for i in range(2)]
    primary.receive(request(1, client=keys[0]))
    primary.tick(20)
    first = [m for _, m in sent(drain(primary), PrePrepare)]
    assert [pp.sequence for pp in first] == [1]
    primary.receive(request(1, client=keys[1]))  # the batch in flight holds it back
    primary.tick(60)
    assert sent(drain(primary), PrePrepare) == []
    for r in (1, 2):
        primary.receive(prepare(first[0], r))
    for r in (1, 2):
        primary.receive(commit(first[0], r))
    pps = [m for _, m in sent(drain(primary), PrePrepare)]
    assert primary.last_executed == 1
    assert [(pp.sequence, len(pp.requests)) for pp in pps] == [(2, 1)]


def test_n2_without_a_batch_delay_ticks_never_close_a_batch():
    """N2: with batch_delay_ms = 0 (the default) only a request or an execution closes a batch,
    exactly as without the setting: ticks leave a batch held behind one in flight alone."""
    primary = make_replica(0)
    keys = [deterministic_client(i) for i in range(2)]
    primary.receive(request(1, client=keys[0]))
    primary.receive(request(1, client=keys[1]))
    assert [len(m.requests) for _, m in sent(drain(primary), PrePrepare)] == [1]
    primary.tick(1_500)  # below request_timeout_ms: no view change either
    assert sent(drain(primary), PrePrepare) == []
    assert primary.status().pending_requests == 1


def test_n2_the_primary_never_proposes_above_the_high_watermark():
    """N2: with log_window = 4, the primary stops at sequence 4 until a checkpoint is stable."""
    primary = make_replica(0, batch_size_max=1, log_window=4, checkpoint_interval=2)
    keys = [deterministic_client(i) for i in range(6)]
    for k in keys:
        primary.receive(request(1, client=k))
    pps = [m for _, m in sent(drain(primary), PrePrepare)]
    assert [pp.sequence for pp in pps] == [1, 2, 3, 4]
    assert primary.status().pending_requests == 2


def deterministic_client(i: int):
    from simulations.keys import ed25519_signer

    return ed25519_signer(f"test-client-{i}")


# ---------------------------------------------------------------------------------------- N3


def test_n3_backup_accepts_a_valid_pre_prepare_and_prepares():
    """N3, N4: a valid PRE-PREPARE is accepted and answered with a PREPARE to every other replica."""
    backup = make_replica(1)
    pp = pre_prepare(1)
    backup.receive(pp)
    ready = drain(backup)
    ((to, p),) = sent(ready, Prepare)
    assert to == (0, 2, 3) and (p.view, p.sequence, p.digest, p.replica) == (0, 1, pp.digest, 1)
    assert pp in ready.persist and p in ready.persist, "accepted and sent messages are persisted"


def test_n3_forged_pre_prepare_signature_is_refused():
    """N3: a PRE-PREPARE whose signature is not valid is dropped as bad_signature."""
    backup = make_replica(1)
    pp = pre_prepare(1)
    backup.receive(replace(pp, signature=bytes(64)))
    assert backup.dropped["bad_signature"] == 1
    assert sent(drain(backup), Prepare) == []


def test_n3_signer_other_than_the_claimed_sender_is_refused():
    """N3, N10: a PRE-PREPARE naming the primary but signed by replica 2 is refused."""
    backup = make_replica(1)
    backup.receive(pre_prepare(1, signer=SIGNERS[2]))
    assert backup.dropped["bad_signature"] == 1


def test_n3_pre_prepare_from_a_backup_is_refused():
    """N3: only the primary of the view may send a PRE-PREPARE."""
    backup = make_replica(1)
    backup.receive(pre_prepare(1, replica=2))
    assert backup.dropped["pre_prepare_not_from_primary"] == 1


def test_n3_pre_prepare_of_another_view_is_not_accepted():
    """N3, N10: a backup in view 0 does not accept a PRE-PREPARE of view 1: it keeps it aside
    (bounded) until view 1 is installed, and sends nothing."""
    backup = make_replica(2)
    backup.receive(pre_prepare(1, view=1, replica=1))
    assert sent(drain(backup), Prepare) == []
    assert backup.memory_footprint()["stash"] == 1


def test_n3_digest_that_is_not_the_batch_digest_is_refused():
    """N3: d must be the digest of the batch carried."""
    backup = make_replica(1)
    pp = pre_prepare(1)
    tampered = sign(replace(pp, requests=(request(7),)))
    backup.receive(tampered)
    assert backup.dropped["batch_digest_mismatch"] == 1


def test_n3_batch_with_a_badly_signed_request_is_refused():
    """N3: every request in the batch must carry a valid client signature."""
    backup = make_replica(1)
    bad = replace(request(2), signature=CLIENT.sign(b"not this request"))
    backup.receive(pre_prepare(1, requests=(request(1, client=OTHER_CLIENT), bad)))
    assert backup.dropped["bad_request_signature"] == 1
    assert sent(drain(backup), Prepare) == []


def test_n3_second_pre_prepare_with_another_digest_is_refused():
    """N3: once (v, n) has a digest, a PRE-PREPARE with another one is refused (equivocation)."""
    backup = make_replica(1)
    backup.receive(pre_prepare(1, requests=(request(1),)))
    backup.receive(pre_prepare(1, requests=(request(2),)))
    assert backup.dropped["conflicting_pre_prepare"] == 1
    assert len(sent(drain(backup), Prepare)) == 1


def test_n3_pre_prepare_outside_the_watermarks_is_refused():
    """N3: h < n ≤ H; sequence 0 and sequences beyond H + L are refused. (Between H and
    H + L a PRE-PREPARE is kept for when the window advances, C2': not accepted now.)"""
    backup = make_replica(1, log_window=8, checkpoint_interval=4)
    backup.receive(pre_prepare(17))
    backup.receive(pre_prepare(0))
    backup.receive(pre_prepare(9))
    assert backup.dropped["above_high_watermark"] == 1
    assert backup.dropped["below_low_watermark"] == 1
    assert backup.log_size() == 0 and backup.memory_footprint()["stash"] == 1
    assert sent(drain(backup), Prepare) == []


def test_n3_pre_prepare_checks_are_ordered_cheapest_first():
    """N3: a PRE-PREPARE refused for its sender or watermarks costs no signature check."""
    config = make_config(log_window=8, checkpoint_interval=4)
    from pbft.app import KeyValueStore
    from pbft.core import Replica

    verifier = CountingVerifier()
    backup = Replica(config, 1, SIGNERS[1], verifier, KeyValueStore())
    backup.receive(pre_prepare(100))
    backup.receive(pre_prepare(1, replica=2))
    assert verifier.calls == 0


# ---------------------------------------------------------------------------------------- N4


def test_n4_n5_votes_after_their_quorum_are_not_verified():
    """N4, N5: a PREPARE that arrives once the entry is prepared, or a COMMIT once it is
    committed, cannot change anything (the certificate is built from the quorum already held):
    it costs no signature check and is not kept, even if its signature is garbage."""
    from dataclasses import replace

    from pbft.app import KeyValueStore
    from pbft.core import Replica

    verifier = CountingVerifier()
    backup = Replica(make_config(), 1, SIGNERS[1], verifier, KeyValueStore())
    pp = pre_prepare(1)
    backup.receive(pp)
    backup.receive(prepare(pp, 2))
    calls = verifier.calls
    backup.receive(replace(prepare(pp, 3), signature=bytes(64)))
    assert verifier.calls == calls and backup.surplus_votes == 1
    assert 3 not in backup._log[1].prepares and backup.dropped["bad_signature"] == 0
    for r in (0, 2):
        backup.receive(commit(pp, r))
    assert backup.last_executed == 1
    calls = verifier.calls
    backup.receive(replace(commit(pp, 3), signature=bytes(64)))
    assert verifier.calls == calls and backup.surplus_votes == 2
    assert 3 not in backup._log[1].commits


def test_n4_prepared_needs_2f_matching_prepares_from_distinct_backups():
    """N4: with the PRE-PREPARE, its own PREPARE and one more (2f = 2), a backup is prepared
    and multicasts COMMIT; one PREPARE alone is not enough."""
    backup = make_replica(1)
    pp = pre_prepare(1)
    backup.receive(pp)
    drain(backup)
    assert sent(drain(backup), Commit) == []
    backup.receive(prepare(pp, 2))
    ((to, c),) = sent(drain(backup), Commit)
    assert to == (0, 2, 3) and c.digest == pp.digest


def test_n4_prepare_from_the_primary_is_never_counted():
    """N4: the primary does not send PREPARE; one that claims to is dropped, not counted."""
    backup = make_replica(1)
    pp = pre_prepare(1)
    backup.receive(pp)
    backup.receive(prepare(pp, 0))
    assert backup.dropped["prepare_from_primary"] == 1
    assert sent(drain(backup), Commit) == []


def test_n4_a_second_vote_from_the_same_replica_counts_once():
    """N4, N10: PREPARE from replica 2 twice is one vote; the copy is dropped as duplicate."""
    backup = make_replica(1)
    pp = pre_prepare(1)
    backup.receive(pp)
    backup.receive(prepare(pp, 2))
    backup.receive(prepare(pp, 2))
    assert backup.dropped["duplicate_vote"] == 1
    backup = make_replica(3)
    backup.receive(prepare(pp, 2))
    backup.receive(prepare(pp, 2))
    backup.receive(pp)
    assert backup.dropped["duplicate_vote"] == 1
    assert len(sent(drain(backup), Commit)) == 1, "own PREPARE + replica 2's = 2f"


def test_n4_prepare_whose_digest_matches_no_pre_prepare_is_refused():
    """N4: a PREPARE for a digest other than the accepted PRE-PREPARE's is dropped; one that
    arrived early and turns out not to match is discarded when the PRE-PREPARE comes."""
    backup = make_replica(1)
    pp = pre_prepare(1)
    backup.receive(prepare(pp, 3, digest=b"\x01" * 32))  # arrives first: held
    backup.receive(pp)
    backup.receive(prepare(pp, 2, digest=b"\x02" * 32))
    assert backup.dropped["mismatched_vote"] == 2
    assert sent(drain(backup), Commit) == []


def test_n4_early_prepares_count_once_the_pre_prepare_arrives():
    """N4: PREPAREs may overtake their PRE-PREPARE; they are held and counted when it arrives."""
    backup = make_replica(1)
    pp = pre_prepare(1)
    backup.receive(prepare(pp, 2))
    backup.receive(prepare(pp, 3))
    backup.receive(pp)
    assert len(sent(drain(backup), Commit)) == 1


# ---------------------------------------------------------------------------------------- N5


def test_n5_committed_local_needs_2f_plus_1_commits_including_its_own():
    """N5: prepared + own COMMIT + one more COMMIT (2 of 3) does not execute; the third does."""
    backup = make_replica(1)
    pp = pre_prepare(1)
    backup.receive(pp)
    backup.receive(prepare(pp, 2))
    backup.receive(commit(pp, 0))
    assert backup.last_executed == 0
    backup.receive(commit(pp, 3))
    assert backup.last_executed == 1


def test_n5_commit_whose_digest_matches_no_pre_prepare_is_refused():
    """N5: a COMMIT for another digest is dropped and does not count toward committed-local."""
    backup = make_replica(1)
    pp = pre_prepare(1)
    backup.receive(pp)
    backup.receive(prepare(pp, 2))
    backup.receive(commit(pp, 0, digest=b"\x05" * 32))
    backup.receive(commit(pp, 3, digest=b"\x05" * 32))
    assert backup.dropped["mismatched_vote"] == 2
    assert backup.last_executed == 0


def test_n5_commits_without_prepared_do_not_execute():
    """N5: 2f + 1 COMMITs are not enough until the replica itself is prepared."""
    backup = make_replica(1)
    pp = pre_prepare(1)
    backup.receive(pp)
    for r in (0, 2, 3):
        backup.receive(commit(pp, r))
    assert backup.last_executed == 0
    backup.receive(prepare(pp, 2))
    assert backup.last_executed == 1


# ---------------------------------------------------------------------------------------- N6


def test_n6_execution_follows_sequence_order_not_arrival_order():
    """N6: batch 2 committed before batch 1 waits; both execute, in order, when 1 commits."""
    backup = make_replica(1)
    pp1 = pre_prepare(1, requests=(request(1, key="a", value=b"1"),))
    pp2 = pre_prepare(2, requests=(request(2, key="a", value=b"2"),))
    commit_batch(backup, pp2)
    assert backup.last_executed == 0 and drain(backup).executed == ()
    commit_batch(backup, pp1)
    executed = drain(backup).executed
    assert [b.sequence for b in executed] == [1, 2]
    assert backup.last_executed == 2


# ---------------------------------------------------------------------------------------- N7


def _reply(session_request: Request, replica: int, result: bytes, view: int = 0) -> Reply:
    return Reply(view, session_request.timestamp, session_request.client, replica, result, False)


def test_n7_client_accepts_on_f_plus_1_matching_replies():
    """N7: one reply (f) is not enough; a second matching one (f + 1) is."""
    session = ClientSession(make_config(), CLIENT)
    req = session.submit(b"op")
    session.receive(_reply(req, 1, b"ok"))
    assert session.outstanding is req
    session.receive(_reply(req, 2, b"ok"))
    session.ready()
    assert session.outstanding is None


def test_n7_mismatched_and_repeated_replies_do_not_make_a_quorum():
    """N7: a lying replica's different result, or the same replica twice, is not f + 1."""
    session = ClientSession(make_config(), CLIENT)
    req = session.submit(b"op")
    session.receive(_reply(req, 1, b"ok"))
    session.receive(_reply(req, 1, b"ok"))
    session.receive(_reply(req, 3, b"forged"))
    assert session.outstanding is req
    session.receive(_reply(req, 2, b"ok"))
    ready = session.ready()
    assert [r.result for r in ready.results] == [b"ok"]


def test_n7_replicas_reply_with_the_result_to_the_client():
    """N7: each replica executing a request sends REPLY ⟨v, t, c, i, r⟩."""
    backup = make_replica(1)
    req = request(5, key="x", value=b"y")
    commit_batch(backup, pre_prepare(1, requests=(req,)))
    (reply,) = drain(backup).replies
    assert (reply.view, reply.timestamp, reply.client, reply.replica) == (0, 5, CLIENT.public_key, 1)
    assert kv_decode_result(reply.result)[0] == "ok"


# ---------------------------------------------------------------------------------------- N8


def test_n8_a_request_executed_before_gets_its_stored_reply_and_does_not_run_again():
    """N8: the same timestamp again → the cached reply, no execution; an older one → ignored."""
    backup = make_replica(1)
    req = request(5)
    commit_batch(backup, pre_prepare(1, requests=(req,)))
    (first,) = drain(backup).replies
    backup.receive(req)
    ready = drain(backup)
    assert ready.replies == (first,) and ready.executed == ()
    backup.receive(request(3))
    assert backup.dropped["old_request"] == 1
    assert drain(backup).replies == ()


def test_n8_a_request_proposed_twice_executes_once():
    """N8: a faulty primary puts the same request in two batches; the second is skipped."""
    backup = make_replica(1)
    req = request(5)
    commit_batch(backup, pre_prepare(1, requests=(req,)))
    commit_batch(backup, pre_prepare(2, requests=(req,)))
    executed = drain(backup).executed
    assert [len(b.requests) for b in executed] == [1, 0]


# ---------------------------------------------------------------------------------------- N9


def test_n9_client_multicasts_on_timeout_and_backs_off():
    """N9: no result within client_retry_timeout_ms → the request goes to every replica again
    (N1': it went to every replica the first time too)."""
    config = make_config(client_retry_timeout_ms=100)
    session = ClientSession(config, CLIENT)
    req = session.submit(b"op")
    first = session.ready()
    session.advance()
    assert [o.to for o in first.messages] == [(0, 1, 2, 3)]
    session.tick(99)
    assert not session.has_ready()
    session.tick(100)
    ready = session.ready()
    session.advance()
    assert [(o.to, o.message) for o in ready.messages] == [((0, 1, 2, 3), req)]
    session.tick(299)
    assert not session.has_ready(), "the second retry waits twice as long"
    session.tick(300)
    assert session.has_ready()


# ---------------------------------------------------------------------------------------- N10


def test_n10_votes_outside_the_view_or_watermarks_or_from_strangers_are_not_counted():
    """N10: only votes from known replicas, in the current view, within the watermarks count."""
    backup = make_replica(1, log_window=8, checkpoint_interval=4)
    pp = pre_prepare(1)
    backup.receive(pp)
    backup.receive(sign(Prepare(1, 1, pp.digest, 2, b"")))
    backup.receive(sign(Prepare(0, 17, pp.digest, 2, b"")))  # beyond H + L
    backup.receive(sign(Prepare(0, 9, pp.digest, 2, b"")))  # above H: kept, not counted (C2')
    backup.receive(Prepare(0, 1, pp.digest, 7, bytes(64)))
    backup.receive(replace(prepare(pp, 2), signature=bytes(64)))
    assert backup.memory_footprint()["stash"] == 2, "the view-1 vote waits for view 1"
    assert backup.dropped == {
        "above_high_watermark": 1,
        "unknown_replica": 1,
        "bad_signature": 1,
    }
    assert sent(drain(backup), Commit) == []


# ---------------------------------------------------------------------------------------- D1


def test_d1_backups_refuse_a_batch_timestamp_that_goes_backwards():
    """D1: batch 2's timestamp may not be below batch 1's (nor batch 1's above batch 2's)."""
    backup = make_replica(1)
    backup.tick(10_000)
    backup.receive(pre_prepare(1, timestamp_ms=10_000))
    backup.receive(pre_prepare(2, requests=(request(2),), timestamp_ms=9_999))
    assert backup.dropped["batch_timestamp_backwards"] == 1
    other = make_replica(2)
    other.tick(10_000)
    other.receive(pre_prepare(2, requests=(request(2),), timestamp_ms=10_000))
    other.receive(pre_prepare(1, timestamp_ms=10_001))
    assert other.dropped["batch_timestamp_backwards"] == 1


def test_d1_backups_refuse_a_batch_timestamp_far_from_their_clock():
    """D1: a timestamp further than timestamp_skew_max_ms from the backup's clock is refused."""
    backup = make_replica(1, timestamp_skew_max_ms=1_000)
    backup.tick(50_000)
    backup.receive(pre_prepare(1, timestamp_ms=48_999))
    backup.receive(pre_prepare(1, timestamp_ms=51_001))
    assert backup.dropped["batch_timestamp_skew"] == 2
    backup.receive(pre_prepare(1, timestamp_ms=49_000))
    assert len(sent(drain(backup), Prepare)) == 1


def test_d1_the_application_sees_the_agreed_timestamp_never_a_clock():
    """D1: the state machine's context carries the PRE-PREPARE's timestamp, whatever the
    replica's own clock says."""
    seen = []

    class Recorder:
        def execute(self, operation, context):
            seen.append(context)
            return b"r"

        def query(self, operation, client):
            return b""

        def snapshot(self):
            return b""

        def restore(self, snapshot):
            pass

        def digest(self):
            return bytes(32)

    from pbft.core import Replica

    backup = Replica(make_config(), 1, SIGNERS[1], CountingVerifier(), Recorder())
    backup.tick(20_000)
    commit_batch(backup, pre_prepare(1, timestamp_ms=19_500))
    assert [(c.sequence, c.client, c.timestamp_ms) for c in seen] == [
        (1, CLIENT.public_key, 19_500)
    ]


def test_n4_a_late_prepare_of_the_old_view_from_the_new_primary_is_late_not_suspicious():
    """N4 (issue 13, item 10): after a view change, a PREPARE of view 0 from replica 1 (a backup
    then, the primary now) is judged against view 0's primary: merely late (`wrong_view`), not
    the warning `prepare_from_primary` that honest view changes used to log."""
    backup = make_replica(2)
    pp = pre_prepare(1)
    backup._start_view_change(1)
    backup.receive(prepare(pp, 1))
    assert backup.dropped["prepare_from_primary"] == 0
    assert backup.dropped["wrong_view"] == 1


def _primary_with_batch_in_flight():
    """Primary 0 proposed client a's request 1 as sequence 1; a's request 2 waits behind it."""
    from pbft.messages import PrePrepare

    primary = make_replica(0, request_timeout_ms=1_000)
    primary.tick(0)
    primary.receive(request(1, key="a"))
    [(_, pp)] = sent(drain(primary), PrePrepare)
    primary.tick(10)
    primary.receive(request(2, key="a"))
    return primary, pp


def test_n8_a_primary_holds_one_pending_request_per_client():
    """N8 (issue 13, item 7): a client's newer request supersedes its older one waiting at the
    primary: a flood from one key holds one place in the primary's queue, not all of them."""
    primary, _ = _primary_with_batch_in_flight()
    for timestamp in range(3, 103):
        primary.receive(request(timestamp, key="a"))
    assert primary.memory_footprint()["pending"] == 1
    assert primary.dropped["superseded_request"] == 100
    primary.receive(request(50, key="a"))
    assert primary.dropped["superseded_request"] == 101, "older than the one waiting"


def test_v1_a_primary_whose_batches_commit_does_not_suspect_itself():
    """V1 for the primary asks whether its batches commit (issue 13, item 7): under a flood
    its oldest waiting request may wait longer than request_timeout_ms behind the queue while
    batches execute; that is no reason for it to leave its view."""
    primary, pp = _primary_with_batch_in_flight()
    primary.tick(900)
    for r in (1, 2):
        primary.receive(prepare(pp, r))
    for r in (1, 2, 3):
        primary.receive(commit(pp, r))
    assert primary.last_executed == 1
    primary.tick(1_500)
    assert primary.view_active and primary.view_changes_started == 0
    primary.tick(2_000)
    assert primary.view_changes_started == 1, "no progress for request_timeout_ms: V1 holds"
