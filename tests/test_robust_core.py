"""The core's defences against one faulty replica, hostile clients and large requests, rule by
rule on single cores with hand-made messages: batches bounded by bytes (N2'), waiting requests
bounded by bytes, a batch that lives as long as a sequence number names it (C2'), the stash by
sender and by bytes (V3', C2'), and the replica's byte budget. (Per-request timers, V1' and V1'',
are in tests/test_view_change.py.)"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pbft.codec import batch_digest
from pbft.config import ConfigError
from pbft.core import ClientSession
from pbft.core import sizes
from pbft.messages import Checkpoint, Commit, FetchLog, LoggedBatch, Prepare, PrePrepare, Request

from .corekit import (
    CLIENT,
    OTHER_CLIENT,
    SIGNERS,
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
from pbft.app import kv_put
from pbft.codec import signing_payload

K, L = 2, 4


def _signed_request(timestamp: int, operation: bytes, client=CLIENT) -> Request:
    unsigned = Request(operation, timestamp, client.public_key, False, b"")
    return replace(unsigned, signature=client.sign(signing_payload(unsigned)))


def _big(timestamp: int, size: int, client=CLIENT) -> Request:
    return _signed_request(timestamp, kv_put("k", b"x" * size), client)


# ------------------------------------------------------------------ N2': batches by bytes


def _small_batches(**overrides):
    # Room for two requests of ~1 KiB in a batch, not three.
    return dict(operation_bytes_max=2_048, batch_bytes_max=2_600, pending_bytes_max=64 * 1024,
                stash_bytes_max=64 * 1024, **overrides)


def test_n2_prime_the_primary_closes_a_batch_before_it_outgrows_batch_bytes_max():
    """N2': requests pile up behind a batch in flight; the next batches hold as many as fit
    batch_bytes_max, never more, whatever batch_size_max allows."""
    primary = make_replica(0, **_small_batches())
    clients = [CLIENT, OTHER_CLIENT, SIGNERS[2], SIGNERS[3], SIGNERS[1]]
    for i, client in enumerate(clients):
        primary.receive(_big(10 + i, 1_000, client))
    batches = [m for _, m in sent(drain(primary), PrePrepare)]
    assert [len(pp.requests) for pp in batches] == [1, 2], "two more wait behind those"
    assert primary.status().pending_requests == 2
    assert all(sizes.pre_prepare_bytes(pp) <= 2_600 for pp in batches)


def test_n2_prime_a_backup_refuses_a_pre_prepare_above_batch_bytes_max():
    """N2': a PRE-PREPARE larger than batch_bytes_max comes only from a faulty primary."""
    backup = make_replica(1, **_small_batches())
    requests = (_big(1, 1_000), _big(2, 1_000, OTHER_CLIENT), _big(3, 1_000, SIGNERS[2]))
    backup.receive(pre_prepare(1, requests=requests))
    assert backup.dropped["batch_too_large"] == 1
    assert backup.log_size() == 0
    backup.receive(pre_prepare(1, requests=requests[:2]))
    assert backup.log_size() == 1


def test_n2_prime_a_request_too_large_for_any_batch_is_refused_on_arrival():
    """N2': an operation above operation_bytes_max is refused before its signature is checked
    (the codec refuses it on the wire; an embedding driver may hand it over directly)."""
    primary = make_replica(0, **_small_batches())
    primary.receive(_big(1, 3_000))
    assert primary.dropped["request_too_large"] == 1
    assert primary.status().pending_requests == 0


def test_n2_prime_the_client_refuses_an_operation_above_operation_bytes_max():
    """N2': the client says so at once rather than waiting for replies that never come."""
    session = ClientSession(make_config(**_small_batches()), CLIENT, 0)
    with pytest.raises(ValueError, match="operation_bytes_max"):
        session.submit(b"x" * 2_049)
    assert session.submit(b"x" * 2_048).operation == b"x" * 2_048


def test_the_primary_holds_at_most_pending_bytes_max_of_requests():
    """Bounded memory: requests waiting for a batch are bounded by bytes, not only count."""
    primary = make_replica(0, operation_bytes_max=2_048, batch_bytes_max=2_600,
                           pending_bytes_max=2_300, stash_bytes_max=64 * 1024)
    clients = [CLIENT, OTHER_CLIENT, SIGNERS[2], SIGNERS[3]]
    for i, client in enumerate(clients):
        primary.receive(_big(10 + i, 1_000, client))
    # Held: the one in flight and one pending, 2 × 1,138 bytes; the third and fourth refused.
    assert primary.dropped["pending_requests_full"] == 2
    assert primary.status().pending_requests == 1


def test_a_backup_waits_on_at_most_pending_bytes_max_of_requests():
    """Bounded memory: a backup's waiting requests (relayed, timed) are bounded by bytes."""
    backup = make_replica(1, operation_bytes_max=2_048, batch_bytes_max=2_600,
                          pending_bytes_max=2_300, stash_bytes_max=64 * 1024)
    for i, client in enumerate([CLIENT, OTHER_CLIENT, SIGNERS[2]]):
        backup.receive(_big(10 + i, 1_000, client))
    assert backup.dropped["pending_requests_full"] == 1
    assert len(backup.waiting_requests()) == 2


# ------------------------------------------------------------------ config: every message fits


def test_config_refuses_a_batch_that_cannot_hold_one_largest_request():
    with pytest.raises(ConfigError, match="batch_bytes_max.*cannot hold one request"):
        make_config(operation_bytes_max=4_096, batch_bytes_max=4_096)


def test_config_refuses_a_batch_whose_logged_form_exceeds_a_frame():
    """N2': a batch must fit a frame with its n COMMITs (a LOGGED-BATCH), or it could never be
    served to a replica that catches up."""
    with pytest.raises(ConfigError, match="needs .* above frame_bytes_max"):
        make_config(frame_bytes_max=1 << 20, batch_bytes_max=1 << 20,
                    operation_bytes_max=1 << 19)
    make_config(frame_bytes_max=1 << 20, batch_bytes_max=(1 << 20) - 1_024,
                operation_bytes_max=1 << 19)


def test_config_refuses_pending_and_stash_bounds_below_one_request_or_batch():
    with pytest.raises(ConfigError, match="pending_bytes_max"):
        make_config(pending_bytes_max=1 << 20)
    with pytest.raises(ConfigError, match="stash_bytes_max"):
        make_config(stash_bytes_max=(3 << 20) - 1)


def test_config_refuses_a_window_whose_view_change_cannot_fit_a_frame():
    """V1, V2: a VIEW-CHANGE carries up to L prepared certificates, a NEW-VIEW 2f + 1 of
    them: a window too large for the frame would make every view change undeliverable."""
    with pytest.raises(ConfigError, match="VIEW-CHANGE may need"):
        make_config(log_window=8_192, checkpoint_interval=64)


# ------------------------------------------------------------------ sizes: bounds hold


def test_size_bounds_cover_every_encoding_at_its_widest():
    """The constants of pbft.core.sizes bound the codec's encodings with integers at their
    widest and both small and large operations."""
    from pbft.codec import encode
    from pbft.messages import (
        NewView,
        PreparedCertificate,
        ViewChange,
    )

    top = 2**64 - 1
    for operation_bytes in (0, 10, 300, 70_000):
        r = Request(b"o" * operation_bytes, top, b"c" * 32, True, b"s" * 64)
        assert len(encode(r)) <= sizes.message_bytes(r)
        pp = PrePrepare(top, top, b"d" * 32, top, (r,) * 17, top, b"s" * 64)
        assert len(encode(pp)) <= sizes.message_bytes(pp)
    vote = Prepare(top, top, b"d" * 32, top, b"s" * 64)
    for message in (vote, Commit(top, top, b"d" * 32, top, b"s" * 64),
                    Checkpoint(top, b"d" * 32, top, b"s" * 64),
                    FetchLog(top, b"d" * 32, top, b"s" * 64)):
        assert len(encode(message)) <= sizes.message_bytes(message) == sizes.VOTE_BYTES
    empty = PrePrepare(top, top, b"d" * 32, top, (), top, b"s" * 64)
    certificate = PreparedCertificate(empty, (vote,) * 20)
    checkpoint = Checkpoint(top, b"d" * 32, top, b"s" * 64)
    view_change = ViewChange(top, top, (checkpoint,) * 20, (certificate,) * 20, top, b"s" * 64)
    assert len(encode(view_change)) <= sizes.message_bytes(view_change)
    new_view = NewView(top, (view_change,) * 17, (empty,) * 17, top, b"s" * 64)
    assert len(encode(new_view)) <= sizes.message_bytes(new_view)
    logged = LoggedBatch(pp, (Commit(top, top, b"d" * 32, top, b"s" * 64),) * 20)
    assert len(encode(logged)) <= sizes.message_bytes(logged)


# ------------------------------------------------------------------ C2': batch lifetime


def test_c2_prime_a_batch_lives_while_a_later_sequence_number_names_it():
    """C2': a faulty primary proposes one batch at n = 2 and n = 3. When 2 becomes stable the
    batch must stay: 3 still names it (a NEW-VIEW may carry 3 without its batch)."""
    backup = make_replica(1, checkpoint_interval=K, log_window=L)
    batch = (request(7),)
    commit_batch(backup, pre_prepare(1))
    backup.receive(pre_prepare(3, requests=batch))  # n + 1 first, then n
    commit_batch(backup, pre_prepare(2, requests=batch))
    assert backup.last_executed == 2
    digest = backup.state_digest()
    for r in (0, 2):
        backup.receive(sign(Checkpoint(2, digest, r, b"")))
    assert backup.stable_checkpoint == 2
    assert backup.memory_footprint()["batches"] == 1, "n = 3 still names the batch"


def test_c2_prime_a_batch_no_sequence_above_h_names_is_discarded():
    """C2: the baseline: once the last sequence number naming a batch is stable, it goes."""
    backup = make_replica(1, checkpoint_interval=K, log_window=L)
    commit_batch(backup, pre_prepare(1))
    commit_batch(backup, pre_prepare(2))
    digest = backup.state_digest()
    for r in (0, 2):
        backup.receive(sign(Checkpoint(2, digest, r, b"")))
    assert backup.stable_checkpoint == 2
    assert backup.memory_footprint()["batches"] == 0


def test_v3_a_batch_asked_for_by_digest_is_accepted_whatever_sequence_it_was_logged_at():
    """V3: a NEW-VIEW named a batch we lack; another replica answers with the same batch as it
    logged it, at another sequence number (proposed twice). The digest is what counts."""
    from pbft.messages import NewView, ViewChange
    from pbft.messages import PreparedCertificate

    backup = make_replica(2, checkpoint_interval=K, log_window=L)
    batch = (request(7),)
    pp3 = pre_prepare(3, requests=batch)
    certificate = PreparedCertificate(replace(pp3, requests=()), (prepare(pp3, 1), prepare(pp3, 2)))
    view_changes = tuple(
        sign(ViewChange(1, 0, (), (certificate,) if r == 1 else (), r, b"")) for r in (1, 2, 3)
    )
    from pbft.core.view_change import new_view_plan

    _, plan = new_view_plan(view_changes)
    o_set = tuple(sign(PrePrepare(1, n, d, t, (), 1, b"")) for n, d, t in plan)
    backup.receive(sign(NewView(1, view_changes, o_set, 1, b"")))
    assert backup.view == 1 and backup.view_active
    entry = o_set[-1]
    for r in (1, 3):
        backup.receive(sign(Prepare(1, 3, entry.digest, r, b"")) if r != 1 else
                       sign(Commit(1, 3, entry.digest, r, b"")))
    for n in (1, 2):
        null = o_set[n - 1]
        for r in (0, 3):
            backup.receive(sign(Prepare(1, n, null.digest, r, b"")))
        for r in (1, 3):
            backup.receive(sign(Commit(1, n, null.digest, r, b"")))
    backup.receive(sign(Prepare(1, 3, entry.digest, 3, b"")))
    backup.receive(sign(Commit(1, 3, entry.digest, 3, b"")))
    ready = drain(backup)
    asked = [m for _, m in sent(ready, FetchLog) if m.digest == pp3.digest]
    assert asked, "the batch of n = 3 was asked for by digest"
    assert backup.last_executed == 2
    backup._execute_committed()  # another attempt: asked once, retried by the catch-up timer
    assert [m for _, m in sent(drain(backup), FetchLog) if m.digest == pp3.digest] == []
    # The answer: the same batch, logged by its sender at n = 2.
    backup.receive(LoggedBatch(pre_prepare(2, requests=batch), ()))
    assert backup.last_executed == 3


# ------------------------------------------------------------------ V3', C2': the stash


def test_v3_prime_far_future_view_messages_are_not_kept():
    """V3': only the next view's messages can be used by a view change; later views' are
    dropped at once (they still count towards V5)."""
    backup = make_replica(1)
    pp = pre_prepare(1, view=9, replica=1)
    backup.receive(sign(Prepare(9, 1, pp.digest, 2, b"")))
    assert backup.dropped["useless_future_message"] == 1
    assert backup.memory_footprint()["stash"] == 0
    backup.receive(sign(Prepare(1, 1, pp.digest, 2, b"")))
    assert backup.memory_footprint()["stash"] == 1


def test_v3_prime_the_stash_is_bounded_by_bytes_per_sender():
    """V3': one sender's large PRE-PREPAREs for the next view fill its own share only."""
    backup = make_replica(2, operation_bytes_max=2_048, batch_bytes_max=2_600,
                          pending_bytes_max=64 * 1024, stash_bytes_max=6_000)
    for n in range(1, 5):
        requests = (_big(n, 1_000), _big(n, 1_000, OTHER_CLIENT))
        backup.receive(pre_prepare(n, requests=requests, view=1, replica=1))
    assert backup.memory_footprint()["stash"] == 2, "two batches of ~2.4 KB fit 6,000 bytes"
    assert backup.dropped["stash_full"] == 2
    pp = pre_prepare(1, view=1, replica=1)
    backup.receive(sign(Prepare(1, 1, pp.digest, 3, b"")))
    assert backup.memory_footprint()["stash"] == 3, "another sender's share is untouched"


def test_v3_prime_a_forged_message_does_not_use_an_honest_senders_share():
    """V3': the stash checks signatures first, so forgeries naming replica 3 cannot fill 3's
    share."""
    backup = make_replica(1)
    pp = pre_prepare(1, view=1, replica=1)
    forged = sign(Prepare(1, 1, pp.digest, 3, b""), SIGNERS[2])
    backup.receive(forged)
    assert backup.dropped["bad_signature"] == 1
    assert backup.memory_footprint()["stash"] == 0


def test_c2_prime_a_pre_prepare_above_h_is_accepted_when_the_window_advances():
    """C2': a PRE-PREPARE above our high watermark (our checkpoint became stable late) is kept
    and accepted once the window moves, without a view change (Fabric issue 1119)."""
    backup = make_replica(1, checkpoint_interval=K, log_window=L)
    for n in (1, 2):
        commit_batch(backup, pre_prepare(n))
    early = pre_prepare(L + 1)
    backup.receive(early)
    assert backup.log_size() == 2 and backup.memory_footprint()["stash"] == 1
    drain(backup)
    digest = backup.state_digest()
    for r in (0, 2):
        backup.receive(sign(Checkpoint(2, digest, r, b"")))
    assert backup.stable_checkpoint == 2
    prepares = [m for _, m in sent(drain(backup), Prepare)]
    assert [p.sequence for p in prepares] == [L + 1]
    assert backup.memory_footprint()["stash"] == 0


def test_v3_prime_a_view_change_drops_the_stash_that_view_cannot_use():
    """V3': moving to view 2 drops what was kept for view 1."""
    backup = make_replica(1)
    pp = pre_prepare(1, view=1, replica=1)
    backup.receive(sign(Prepare(1, 1, pp.digest, 2, b"")))
    assert backup.memory_footprint()["stash"] == 1
    backup._start_view_change(2)
    assert backup.memory_footprint()["stash"] == 0


# ------------------------------------------------------------------ the byte budget


def test_bytes_held_counts_what_peers_and_clients_make_a_replica_hold():
    """Bounded memory: pending requests, the log and the stash show in bytes_held, and the
    budget computed from the configuration bounds it."""
    primary = make_replica(0, **_small_batches())
    empty = primary.bytes_held()
    for i, client in enumerate([CLIENT, OTHER_CLIENT, SIGNERS[2]]):
        primary.receive(_big(10 + i, 1_000, client))
    assert primary.bytes_held() >= empty + 3_000
    assert primary.bytes_held() <= sizes.replica_bytes_budget(primary.config)
    backup = make_replica(2, **_small_batches())
    before = backup.bytes_held()
    backup.receive(pre_prepare(1, requests=(_big(1, 1_000),), view=1, replica=1))
    assert backup.bytes_held() >= before + 1_000


# ------------------------------------------------------------------ sizes of certificates


def test_n2_prime_a_prepared_certificate_carries_exactly_2f_prepares():
    """N4, N2': PREPAREs that arrived before the PRE-PREPARE are all kept, but a certificate
    (and so every VIEW-CHANGE of a full window) carries exactly 2f: the size validated."""
    from pbft.messages import ViewChange

    backup = make_replica(1)
    pp = pre_prepare(1)
    for r in (2, 3):
        backup.receive(prepare(pp, r))
    backup.receive(pp)  # with our own PREPARE, three match
    backup._start_view_change(1)
    (view_change,) = [m for _, m in sent(drain(backup), ViewChange)]
    (certificate,) = view_change.prepared
    assert len(certificate.prepares) == 2


def test_c2_a_checkpoint_proof_carries_exactly_2f_plus_1_checkpoints():
    """C2, N2': n matching CHECKPOINTs make a proof of 2f + 1 (the size validated)."""
    from pbft.core.quorum import proven_checkpoint

    votes = [sign(Checkpoint(8, b"d" * 32, r, b"")) for r in range(4)]
    digest, proof = proven_checkpoint(votes, 4)
    assert digest == b"d" * 32 and [c.replica for c in proof] == [0, 1, 2]


def test_s1_a_lone_far_checkpoint_claim_counts_only_up_to_the_high_watermark():
    """S1: a CHECKPOINT far beyond H from one replica (faulty, perhaps) says at most that
    someone is a window ahead; f + 1 replicas claiming it make it believed (one is correct)."""
    from pbft.messages import Checkpoint

    from .corekit import make_replica, sign

    replica = make_replica(1, checkpoint_interval=4, log_window=8)
    far = 64_000_000
    replica.receive(sign(Checkpoint(far, b"\x01" * 32, 0, b"")))
    assert replica.status().highest_seen == replica.high_watermark == 8
    replica.receive(sign(Checkpoint(far - 4, b"\x01" * 32, 2, b"")))
    assert replica.status().highest_seen == far - 4
