"""Certificates and the checks that guard them, clause by clause.

Each check that decides whether a signed message or a certificate counts (checkpoint proofs,
prepared certificates, VIEW-CHANGE, NEW-VIEW, commit certificates in a served batch, and the
replica's checks of PRE-PREPARE, PREPARE, COMMIT and CHECKPOINT) gets an input that breaks that
one condition while everything else stays valid, with real Ed25519 signatures, and the test
asserts the specific refusal. A valid baseline next to each group shows that the unbroken
input is accepted, so a condition that is removed or inverted fails a test in this file.

The pure functions of `pbft.core.view_change` and `pbft.core.quorum` are tested directly with a
verifier that checks signatures exactly as the replica does; the replica's own checks are tested
through `Replica.receive`, asserting `dropped[reason]` and that nothing was accepted or executed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from pbft.codec import signing_payload
from pbft.core import quorum
from pbft.core.view_change import (
    checkpoint_proof_reason,
    new_view_plan,
    new_view_reason,
    prepared_certificate_reason,
    view_change_reason,
)
from pbft.crypto import sha256
from pbft.ed25519 import Ed25519Verifier
from pbft.messages import (
    NULL_DIGEST,
    Checkpoint,
    Commit,
    LoggedBatch,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    ViewChange,
)

from .corekit import (
    CLIENT,
    OTHER_CLIENT,
    SIGNERS,
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

#: K = 4 and L = 8: watermarks are easy to reach (h = 4 gives H = 12).
K, L = 4, 8
CONFIG = make_config(checkpoint_interval=K, log_window=L)
STATE = sha256(b"the state at a checkpoint")
OTHER = sha256(b"another digest")
_VERIFIER = Ed25519Verifier()


def verify(message) -> bool:
    """What `Replica._verify_replica_signature` does: the id is in range and the signature is
    that replica's over the message's signing payload."""
    replica = message.replica
    if not 0 <= replica < CONFIG.n:
        return False
    return _VERIFIER.verify(CONFIG.public_key(replica), signing_payload(message), message.signature)


def _forged(message, by: int):
    """`message` signed with replica `by`'s key instead of the key of the replica it names."""
    return sign(message, SIGNERS[by])


def _checkpoint(sequence: int, replica: int, digest: bytes = STATE, signer=None) -> Checkpoint:
    return sign(Checkpoint(sequence, digest, replica, b""), signer)


def _proof(sequence: int, replicas=(0, 1, 2)) -> tuple[Checkpoint, ...]:
    return tuple(_checkpoint(sequence, r) for r in replicas)


def _certificate(pp: PrePrepare, prepares) -> PreparedCertificate:
    return PreparedCertificate(replace(pp, requests=()), tuple(prepares))


def _view_change(replica: int, new_view: int = 1, prepared=(), stable_sequence: int = 0,
                 proof=(), signer=None) -> ViewChange:
    return sign(ViewChange(new_view, stable_sequence, tuple(proof), tuple(prepared), replica, b""),
                signer)


# ------------------------------------------------------------------- checkpoint proofs (C2)


def test_c2_a_checkpoint_proof_of_2f_plus_1_matching_signed_checkpoints_is_valid():
    """C2: 2f + 1 CHECKPOINTs for n, one digest, distinct signers, is a proof; the genesis
    state (n = 0) needs none."""
    assert checkpoint_proof_reason(CONFIG, 4, _proof(4), verify) is None
    assert checkpoint_proof_reason(CONFIG, 8, _proof(8, (3, 1, 0)), verify) is None
    assert checkpoint_proof_reason(CONFIG, 0, (), verify) is None


BAD_CHECKPOINT_PROOFS = {
    "genesis_with_a_proof": (0, _proof(0)),
    "off_the_checkpoint_interval": (6, _proof(6)),
    "empty": (4, ()),
    "a_checkpoint_of_another_sequence": (4, (*_proof(4, (0, 1)), _checkpoint(8, 2))),
    "a_checkpoint_with_another_digest": (4, (*_proof(4, (0, 1)), _checkpoint(4, 2, OTHER))),
    "a_sender_twice": (4, (*_proof(4, (0, 1)), _checkpoint(4, 1), _checkpoint(4, 2))),
    "a_forged_checkpoint": (4, (*_proof(4, (0, 1)), _checkpoint(4, 2, signer=SIGNERS[3]))),
    "only_2f_checkpoints": (4, _proof(4, (0, 1))),
}


@pytest.mark.parametrize("case", BAD_CHECKPOINT_PROOFS)
def test_c2_a_checkpoint_proof_that_breaks_one_condition_is_refused(case):
    """C2: a proof is refused if it is for genesis yet not empty, off the interval, empty, or
    holds a CHECKPOINT of another sequence or digest, a second one from a sender, a forged
    one, or fewer than 2f + 1."""
    sequence, proof = BAD_CHECKPOINT_PROOFS[case]
    assert checkpoint_proof_reason(CONFIG, sequence, proof, verify) == "bad_checkpoint_proof"


def test_c2_proven_checkpoint_needs_2f_plus_1_votes_for_one_digest():
    """C2: 2f + 1 CHECKPOINTs that agree make a proof (sorted by sender); 2f do not, and
    neither do 2f + 1 votes split over two digests."""
    votes = [_checkpoint(4, 3), _checkpoint(4, 0), _checkpoint(4, 2)]
    assert quorum.proven_checkpoint(votes[:2], 4) is None
    assert quorum.proven_checkpoint([*votes[:2], _checkpoint(4, 1, OTHER)], 4) is None
    digest, proof = quorum.proven_checkpoint(votes, 4)
    assert digest == STATE and [c.replica for c in proof] == [0, 2, 3]


# --------------------------------------------------------------- prepared certificates (N4, V1)

#: A certificate of view 1 (primary 1) for n = 5, checked for new view 2 by a sender with h = 4.
PP5 = pre_prepare(5, view=1, replica=1)


def test_n4_v1_a_prepared_certificate_with_2f_matching_prepares_is_valid():
    """N4, V1: the primary's signed PRE-PREPARE of an earlier view within h < n ≤ H, with 2f
    matching PREPAREs from distinct backups, is a prepared certificate."""
    good = _certificate(PP5, (prepare(PP5, 0), prepare(PP5, 2)))
    assert prepared_certificate_reason(CONFIG, good, 2, 4, verify) is None
    top = pre_prepare(12, view=1, replica=1)  # n = H
    assert prepared_certificate_reason(
        CONFIG, _certificate(top, (prepare(top, 3), prepare(top, 0))), 2, 4, verify
    ) is None


def test_n4_v1_a_prepared_certificate_whose_prepare_has_another_digest_is_refused():
    """N4, V1: the PREPAREs must match the PRE-PREPARE's digest. A Byzantine replica that
    pairs a PRE-PREPARE with PREPAREs for another batch must not make it look prepared: V2
    would then re-propose a batch that never prepared over one that may have committed."""
    other = prepare(PP5, 2, digest=OTHER)
    certificate = _certificate(PP5, (prepare(PP5, 0), other))
    assert prepared_certificate_reason(CONFIG, certificate, 2, 4, verify) == (
        "bad_prepared_certificate"
    )


def _pp_of_backup():
    pp = pre_prepare(5, view=1, replica=2)  # signed by replica 2, not view 1's primary
    return _certificate(pp, (prepare(pp, 0), prepare(pp, 3))), 2, 4


def _certificate_at(sequence):
    pp = pre_prepare(sequence, view=1, replica=1)
    return _certificate(pp, (prepare(pp, 0), prepare(pp, 2))), 2, 4


BAD_PREPARED_CERTIFICATES: dict[str, Callable[[], tuple]] = {
    "of_the_new_view_itself": lambda: (
        _certificate(PP5, (prepare(PP5, 0), prepare(PP5, 2))), 1, 4),
    "of_a_later_view": lambda: (
        _certificate(PP5, (prepare(PP5, 0), prepare(PP5, 2))), 0, 4),
    "pre_prepare_not_from_the_primary": _pp_of_backup,
    "at_the_low_watermark": lambda: _certificate_at(4),
    "above_the_high_watermark": lambda: _certificate_at(13),
    "forged_pre_prepare": lambda: (
        _certificate(_forged(PP5, 2), (prepare(PP5, 0), prepare(PP5, 2))), 2, 4),
    "prepare_of_another_view": lambda: (
        _certificate(PP5, (prepare(PP5, 0), sign(Prepare(0, 5, PP5.digest, 2, b"")))), 2, 4),
    "prepare_of_another_sequence": lambda: (
        _certificate(PP5, (prepare(PP5, 0), sign(Prepare(1, 6, PP5.digest, 2, b"")))), 2, 4),
    "prepare_of_another_digest": lambda: (
        _certificate(PP5, (prepare(PP5, 0), prepare(PP5, 2, digest=OTHER))), 2, 4),
    "prepare_from_the_primary": lambda: (
        _certificate(PP5, (prepare(PP5, 0), prepare(PP5, 1))), 2, 4),
    "prepare_sender_twice": lambda: (
        _certificate(PP5, (prepare(PP5, 0), prepare(PP5, 0), prepare(PP5, 2))), 2, 4),
    "forged_prepare": lambda: (
        _certificate(PP5, (prepare(PP5, 0), prepare(PP5, 2, signer=SIGNERS[3]))), 2, 4),
    "only_one_prepare": lambda: (_certificate(PP5, (prepare(PP5, 0),)), 2, 4),
}


@pytest.mark.parametrize("case", BAD_PREPARED_CERTIFICATES)
def test_n4_v1_a_prepared_certificate_that_breaks_one_condition_is_refused(case):
    """N4, V1, N10: refused when its view is not before the new view, its PRE-PREPARE is not
    from that view's primary, is outside the sender's watermarks or forged, or a PREPARE is of
    another view, sequence or digest, is from the primary, repeats a sender or is forged, or
    there are fewer than 2f PREPAREs."""
    certificate, new_view, stable = BAD_PREPARED_CERTIFICATES[case]()
    assert prepared_certificate_reason(CONFIG, certificate, new_view, stable, verify) == (
        "bad_prepared_certificate"
    )


# --------------------------------------------------------------------------- VIEW-CHANGE (V1)


def _good_certificate():
    return _certificate(PP5, (prepare(PP5, 0), prepare(PP5, 2)))


def test_v1_a_signed_view_change_with_a_proof_and_certificates_is_valid():
    """V1: a signed VIEW-CHANGE with a stable checkpoint proof and one valid certificate per
    prepared sequence number is valid; so is one from genesis with nothing prepared."""
    vc = _view_change(3, new_view=2, prepared=(_good_certificate(),), stable_sequence=4,
                      proof=_proof(4))
    assert view_change_reason(CONFIG, vc, verify) is None
    assert view_change_reason(CONFIG, _view_change(2), verify) is None


def _two_certificates_for_one_sequence():
    pp0 = pre_prepare(5, view=0, replica=0)
    older = _certificate(pp0, (prepare(pp0, 1), prepare(pp0, 2)))
    return _view_change(3, new_view=2, prepared=(older, _good_certificate()), stable_sequence=4,
                        proof=_proof(4))


BAD_VIEW_CHANGES: dict[str, tuple[Callable[[], ViewChange], str]] = {
    "forged": (lambda: _view_change(3, new_view=2, prepared=(_good_certificate(),),
                                    stable_sequence=4, proof=_proof(4), signer=SIGNERS[0]),
               "bad_signature"),
    "bad_checkpoint_proof": (lambda: _view_change(3, new_view=2, prepared=(_good_certificate(),),
                                                  stable_sequence=4, proof=_proof(4, (0, 1))),
                             "bad_checkpoint_proof"),
    "two_certificates_for_one_sequence": (_two_certificates_for_one_sequence,
                                          "bad_prepared_certificate"),
    "bad_certificate": (lambda: _view_change(
        3, new_view=2, prepared=(_certificate(PP5, (prepare(PP5, 0),)),), stable_sequence=4,
        proof=_proof(4)), "bad_prepared_certificate"),
}


@pytest.mark.parametrize("case", BAD_VIEW_CHANGES)
def test_v1_a_view_change_that_breaks_one_condition_is_refused(case):
    """V1: a VIEW-CHANGE is refused when forged, when its checkpoint proof is not valid, when it
    holds two certificates for one sequence number, or when a certificate is not valid."""
    build, reason = BAD_VIEW_CHANGES[case]
    assert view_change_reason(CONFIG, build(), verify) == reason


def test_n4_v1_a_replica_refuses_a_view_change_whose_certificate_has_a_mismatched_prepare():
    """N4, V1: through a replica: the new primary drops the VIEW-CHANGE and does not count it
    toward the view change."""
    primary = make_replica(1)
    certificate = _certificate(PP5, (prepare(PP5, 0), prepare(PP5, 2, digest=OTHER)))
    primary.receive(_view_change(2, new_view=2, prepared=(certificate,)))
    assert primary.dropped == {"bad_prepared_certificate": 1}
    assert primary.memory_footprint()["view_change_messages"] == 0


# ------------------------------------------------------------------------ new_view_plan (V2)


def test_v2_the_plan_starts_above_the_highest_stable_checkpoint():
    """V2: min-s is the latest stable checkpoint among the VIEW-CHANGEs, not the earliest."""
    pp6 = pre_prepare(6, timestamp_ms=70)
    vcs = [
        ViewChange(1, 0, (), (), 1, b""),
        ViewChange(1, 4, (), (_certificate(pp6, ()),), 2, b""),
        ViewChange(1, 0, (), (), 3, b""),
    ]
    assert new_view_plan(vcs) == (4, [(5, NULL_DIGEST, 0), (6, pp6.digest, 70)])


def test_v2_the_plan_takes_the_certificate_of_the_highest_view_wherever_it_is():
    """V2: for each n, the digest and timestamp of the certificate of the highest view, whether
    it comes first, last or in the middle; gaps up to max-s become null requests."""
    by_view = {v: pre_prepare(2, requests=(request(v),), view=v, replica=v, timestamp_ms=10 + v)
               for v in (0, 1, 2)}
    for order in ((0, 2, 1), (2, 1, 0), (1, 0, 2)):
        vcs = [ViewChange(3, 0, (), (_certificate(by_view[v], ()),), r, b"")
               for r, v in zip((1, 2, 3), order)]
        assert new_view_plan(vcs) == (0, [(1, NULL_DIGEST, 0), (2, by_view[2].digest, 12)])


# --------------------------------------------------------------------------- NEW-VIEW (V3)

#: View 1 (primary 1): replica 2 reports a certificate of view 0 for n = 2, so O is a null
#: request at 1 and the certified batch at 2 with its timestamp.
PP2 = pre_prepare(2, timestamp_ms=1_000)
VC1 = _view_change(1)
VC2 = _view_change(2, prepared=(_certificate(PP2, (prepare(PP2, 1), prepare(PP2, 3))),))
VC3 = _view_change(3)


def _o(view_changes) -> list[PrePrepare]:
    _, plan = new_view_plan(view_changes)
    return [sign(PrePrepare(1, s, d, t, (), 1, b"")) for s, d, t in plan]


def _new_view(view_changes=(VC1, VC2, VC3), pre_prepares=None, replica=1, signer=None):
    if pre_prepares is None:
        pre_prepares = _o(view_changes)
    return sign(NewView(1, tuple(view_changes), tuple(pre_prepares), replica, b""), signer)


def _never_checked(vc) -> bool:
    return False


def test_v3_a_new_view_with_2f_plus_1_view_changes_and_the_recomputed_o_is_valid():
    """V3: signed by the new primary, 2f + 1 valid VIEW-CHANGEs for its view from distinct
    replicas, and O exactly as V2 computes it: valid, and a backup installs it."""
    nv = _new_view()
    assert [(p.sequence, p.digest, p.timestamp_ms) for p in nv.pre_prepares] == [
        (1, NULL_DIGEST, 0), (2, PP2.digest, 1_000)]
    assert new_view_reason(CONFIG, nv, verify, _never_checked) is None
    backup = make_replica(3)
    backup.receive(nv)
    assert backup.view == 1 and backup.view_active and backup.dropped == {}


def test_v3_a_new_view_with_only_2f_view_changes_is_refused():
    """V3: 2f VIEW-CHANGEs are not a quorum; with them a Byzantine primary could leave out the
    one correct replica that prepared a committed batch. Refused even though O is recomputed
    correctly from the two it holds; a backup stays in view 0."""
    nv = _new_view((VC1, VC2))
    assert new_view_reason(CONFIG, nv, verify, _never_checked) == "bad_new_view"
    backup = make_replica(3)
    backup.receive(nv)
    assert backup.dropped == {"bad_new_view": 1}
    assert backup.view == 0 and backup.view_active


def test_v3_a_new_view_whose_o_lacks_a_pre_prepare_is_refused():
    """V3: O must have one PRE-PREPARE per n in (min-s, max-s]. One that omits the last (the
    certified batch) would let it be replaced in the new view; a backup refuses it."""
    nv = _new_view(pre_prepares=_o((VC1, VC2, VC3))[:-1])
    assert new_view_reason(CONFIG, nv, verify, _never_checked) == "bad_new_view"
    backup = make_replica(3)
    backup.receive(nv)
    assert backup.dropped == {"bad_new_view": 1}
    assert backup.view == 0 and backup.view_active


def _o_with(index: int, **changes):
    """O with PRE-PREPARE `index` changed and signed again by the replica it then names."""
    o = _o((VC1, VC2, VC3))
    o[index] = sign(replace(o[index], **changes))
    return o


BAD_NEW_VIEWS: dict[str, tuple[Callable[[], NewView], str]] = {
    "not_from_the_new_primary": (lambda: _new_view(replica=2), "new_view_not_from_primary"),
    "forged": (lambda: _new_view(signer=SIGNERS[2]), "bad_signature"),
    "a_view_change_for_another_view": (
        lambda: _new_view((VC1, VC2, _view_change(3, new_view=2))), "bad_new_view"),
    "a_view_change_sender_twice": (lambda: _new_view((VC1, VC2, VC3, VC3)), "bad_new_view"),
    "an_invalid_view_change": (
        lambda: _new_view((VC1, VC2, _view_change(3, signer=SIGNERS[0]))), "bad_new_view"),
    "o_empty": (lambda: _new_view(pre_prepares=()), "bad_new_view"),
    "o_with_an_extra_pre_prepare": (
        lambda: _new_view(pre_prepares=(*_o((VC1, VC2, VC3)),
                                        sign(PrePrepare(1, 3, NULL_DIGEST, 0, (), 1, b"")))),
        "bad_new_view"),
    "o_pre_prepare_of_another_view": (
        lambda: _new_view(pre_prepares=_o_with(0, view=0)), "bad_new_view"),
    "o_pre_prepare_of_another_sequence": (
        lambda: _new_view(pre_prepares=_o_with(0, sequence=3)), "bad_new_view"),
    "o_pre_prepare_with_another_digest": (
        lambda: _new_view(pre_prepares=_o_with(1, digest=NULL_DIGEST)), "bad_new_view"),
    "o_pre_prepare_with_another_timestamp": (
        lambda: _new_view(pre_prepares=_o_with(1, timestamp_ms=999)), "bad_new_view"),
    "o_pre_prepare_carrying_its_batch": (
        lambda: _new_view(pre_prepares=[*_o((VC1, VC2, VC3))[:1],
                                        replace(_o((VC1, VC2, VC3))[1], requests=PP2.requests)]),
        "bad_new_view"),
    "o_pre_prepare_from_a_backup": (
        lambda: _new_view(pre_prepares=_o_with(0, replica=2)), "bad_new_view"),
    "o_pre_prepare_forged": (
        lambda: _new_view(pre_prepares=[_forged(_o((VC1, VC2, VC3))[0], 2),
                                        _o((VC1, VC2, VC3))[1]]), "bad_new_view"),
}


@pytest.mark.parametrize("case", BAD_NEW_VIEWS)
def test_v3_a_new_view_that_breaks_one_condition_is_refused(case):
    """V3: refused when not sent or not signed by the new primary, when a VIEW-CHANGE is for
    another view, repeats a sender or is not valid, when O is longer or shorter than V2's
    recomputation, or when a PRE-PREPARE of O differs from it in view, sequence, digest or
    timestamp, carries requests, or is not the new primary's, validly signed."""
    build, reason = BAD_NEW_VIEWS[case]
    nv = build()
    assert new_view_reason(CONFIG, nv, verify, _never_checked) == reason


def test_v3_a_replica_checks_view_changes_inside_a_new_view_it_has_not_seen():
    """V3: a replica skips re-checking only the VIEW-CHANGEs it accepted itself; a forged one
    it never saw makes it refuse the NEW-VIEW."""
    backup = make_replica(3)
    backup.receive(_new_view((VC1, VC2, _view_change(3, signer=SIGNERS[0]))))
    assert backup.dropped == {"bad_new_view": 1}
    assert backup.view == 0 and backup.view_active


# ------------------------------------------------------------------- PRE-PREPARE (N3, D1)


def _in_view_1(replica_id: int = 2, **overrides):
    """A replica that installed view 1 (primary 1) with an empty O."""
    replica = make_replica(replica_id, **overrides)
    vcs = (_view_change(1), _view_change(2), _view_change(3))
    replica.receive(sign(NewView(1, vcs, (), 1, b"")))
    assert replica.view == 1 and replica.view_active and replica.dropped == {}
    drain(replica)
    return replica


def _refused(replica, reason: str, count: int = 1) -> None:
    """Exactly `count` messages were dropped, all for `reason`, and no vote went out."""
    assert replica.dropped == {reason: count}
    ready = drain(replica)
    assert sent(ready, Prepare) == [] and sent(ready, Commit) == []


def test_n3_a_valid_pre_prepare_is_prepared():
    """N3, N4: the baseline: a backup accepts a valid PRE-PREPARE and multicasts PREPARE."""
    backup = make_replica(1)
    backup.receive(pre_prepare(1))
    assert backup.dropped == {} and len(sent(drain(backup), Prepare)) == 1


def test_n3_a_pre_prepare_of_an_earlier_view_is_refused():
    """N3, N10: in view 1, a PRE-PREPARE of view 0 is refused, even one signed by view 1's
    primary."""
    backup = _in_view_1()
    backup.receive(pre_prepare(2, view=0, replica=1))
    _refused(backup, "wrong_view")


def test_n3_a_pre_prepare_from_a_backup_is_refused():
    """N3: only the primary of the view may propose."""
    backup = make_replica(1)
    backup.receive(pre_prepare(1, replica=3))
    _refused(backup, "pre_prepare_not_from_primary")


def test_n3_the_primary_refuses_a_pre_prepare_in_its_own_name():
    """N3, N4: the primary never takes a PRE-PREPARE from the network (a replay of its own):
    it would then send a PREPARE, which a primary never does."""
    primary = make_replica(0)
    primary.receive(pre_prepare(1))
    _refused(primary, "pre_prepare_to_primary")


def test_n3_a_pre_prepare_outside_the_watermarks_is_refused():
    """N3: h < n ≤ H: n = h and n = H + L + 1 are refused, n = H + 1 is kept aside (C2') but
    not accepted; n = H is accepted."""
    backup = make_replica(1, checkpoint_interval=K, log_window=L)
    backup.receive(pre_prepare(0))
    backup.receive(pre_prepare(2 * L + 1))
    backup.receive(pre_prepare(L + 1))
    assert backup.dropped == {"below_low_watermark": 1, "above_high_watermark": 1}
    assert backup.memory_footprint()["stash"] == 1
    assert sent(drain(backup), Prepare) == []
    backup.receive(pre_prepare(L))
    assert len(sent(drain(backup), Prepare)) == 1


def test_n3_a_second_pre_prepare_for_the_same_sequence_is_refused():
    """N3: the same PRE-PREPARE again is a duplicate (no second PREPARE); another digest for
    (v, n) is a conflict, and the first digest stays the one prepared."""
    backup = make_replica(1)
    first = pre_prepare(1)
    backup.receive(first)
    drain(backup)
    backup.receive(first)
    _refused(backup, "duplicate_pre_prepare")
    backup.receive(pre_prepare(1, requests=(request(2),)))
    assert backup.dropped == {"duplicate_pre_prepare": 1, "conflicting_pre_prepare": 1}
    backup.receive(prepare(first, 2))
    ((_, c),) = sent(drain(backup), Commit)
    assert c.digest == first.digest


def test_n3_a_pre_prepare_with_an_empty_batch_is_refused():
    """N3: the normal case never proposes an empty batch (null requests exist only in O)."""
    backup = make_replica(1)
    backup.receive(pre_prepare(1, requests=()))
    _refused(backup, "bad_batch_size")


def test_n3_a_pre_prepare_with_more_than_batch_size_max_requests_is_refused():
    """N3: a batch above batch_size_max is refused before its signatures are checked."""
    backup = make_replica(1, batch_size_max=1)
    backup.receive(pre_prepare(1, requests=(request(1), request(1, client=OTHER_CLIENT))))
    _refused(backup, "bad_batch_size")


def test_n3_a_forged_pre_prepare_is_refused():
    """N3: signed by replica 2 while naming the primary."""
    backup = make_replica(1)
    backup.receive(pre_prepare(1, signer=SIGNERS[2]))
    _refused(backup, "bad_signature")


def test_n3_a_pre_prepare_whose_digest_is_not_its_batch_is_refused():
    """N3: d must be the digest of the batch carried (the primary signed d, not the batch)."""
    backup = make_replica(1)
    backup.receive(replace(pre_prepare(1), requests=(request(7),)))
    _refused(backup, "batch_digest_mismatch")


def test_n3_a_batch_with_a_read_only_or_repeated_request_is_refused():
    """N3, N8, R1: a read-only request is never ordered, and a batch holds each request once."""
    backup = make_replica(1)
    read_only = request(1)
    unsigned = replace(read_only, read_only=True, signature=b"")
    read_only = replace(unsigned, signature=CLIENT.sign(signing_payload(unsigned)))
    backup.receive(pre_prepare(1, requests=(read_only,)))
    backup.receive(pre_prepare(2, requests=(request(2), request(2))))
    _refused(backup, "bad_batch_request", 2)


def test_n3_a_batch_with_a_forged_request_is_refused():
    """N3: every request must carry its client's signature."""
    backup = make_replica(1)
    forged = replace(request(1), signature=OTHER_CLIENT.sign(b"anything"))
    backup.receive(pre_prepare(1, requests=(forged,)))
    _refused(backup, "bad_request_signature")


def test_d1_a_batch_timestamp_far_from_the_backups_clock_is_refused():
    """D1: further than timestamp_skew_max_ms from the backup's clock."""
    backup = make_replica(1, timestamp_skew_max_ms=1_000)
    backup.receive(pre_prepare(1, timestamp_ms=1_001))
    _refused(backup, "batch_timestamp_skew")


def test_d1_a_batch_timestamp_out_of_order_with_a_logged_batch_is_refused():
    """D1: batch 1's timestamp may not be above that of batch 2, already accepted."""
    backup = make_replica(1)
    backup.tick(10_000)
    backup.receive(pre_prepare(2, requests=(request(2),), timestamp_ms=10_000))
    drain(backup)
    backup.receive(pre_prepare(1, timestamp_ms=10_001))
    _refused(backup, "batch_timestamp_backwards")


def _executed_through_checkpoint(replica, timestamp_ms: int = 0) -> None:
    """Let `replica` (K = 2) execute batches 1 and 2 and see the checkpoint at 2 become stable,
    which garbage-collects the log."""
    for n in (1, 2):
        commit_batch(replica, pre_prepare(n, requests=(request(n),), timestamp_ms=timestamp_ms))
    digest = replica.state_digest()
    for r in (0, 2):
        replica.receive(_checkpoint(2, r, digest))
    assert replica.stable_checkpoint == 2 and replica.log_size() == 0
    drain(replica)


def test_d1_a_batch_timestamp_below_the_last_executed_batch_is_refused_after_gc():
    """D1, C2: once the log is garbage-collected, the last executed batch's timestamp still
    bounds the next one from below."""
    backup = make_replica(1, checkpoint_interval=2, log_window=4)
    backup.tick(10_000)
    _executed_through_checkpoint(backup, timestamp_ms=10_000)
    backup.receive(pre_prepare(3, requests=(request(3),), timestamp_ms=9_999))
    _refused(backup, "batch_timestamp_backwards")


# ------------------------------------------------------------------ PREPARE (N4, N10)


def _pre_prepared(replica_id: int = 1):
    backup = make_replica(replica_id, checkpoint_interval=K, log_window=L)
    pp = pre_prepare(1)
    backup.receive(pp)
    drain(backup)
    return backup, pp


def test_n4_a_forged_prepare_is_refused_and_does_not_prepare():
    """N4, N10: a PREPARE naming replica 2 but signed by replica 3 is not counted; the real
    one from replica 2 then prepares the entry."""
    backup, pp = _pre_prepared()
    backup.receive(prepare(pp, 2, signer=SIGNERS[3]))
    _refused(backup, "bad_signature")
    backup.receive(prepare(pp, 2))
    assert len(sent(drain(backup), Commit)) == 1


def test_n4_a_second_prepare_from_a_sender_does_not_replace_its_first():
    """N4, N10: votes are counted once per sender: a second PREPARE from replica 2 (here for
    another digest, before the PRE-PREPARE) is dropped, and its first one still counts."""
    backup = make_replica(1)
    pp = pre_prepare(1)
    backup.receive(prepare(pp, 2))
    backup.receive(prepare(pp, 2, digest=OTHER))
    assert backup.dropped == {"duplicate_vote": 1}
    backup.receive(pp)
    assert backup.dropped == {"duplicate_vote": 1}
    assert len(sent(drain(backup), Commit)) == 1


def test_n4_a_prepare_for_another_digest_is_refused_and_keeps_no_slot():
    """N4: a PREPARE whose digest is not the accepted PRE-PREPARE's is dropped, not held, so
    the sender's matching PREPARE still counts."""
    backup, pp = _pre_prepared()
    backup.receive(prepare(pp, 2, digest=OTHER))
    _refused(backup, "mismatched_vote")
    backup.receive(prepare(pp, 2))
    assert len(sent(drain(backup), Commit)) == 1


def test_n4_a_prepare_from_the_primary_is_refused():
    """N4: a PREPARE from the primary is never counted (otherwise the primary's vote would
    count twice, with its PRE-PREPARE)."""
    backup, pp = _pre_prepared()
    backup.receive(prepare(pp, 0))
    _refused(backup, "prepare_from_primary")


def test_n10_a_prepare_from_an_unknown_replica_is_refused():
    """N10: a replica id outside 0..n-1."""
    backup, pp = _pre_prepared()
    backup.receive(Prepare(0, 1, pp.digest, 7, bytes(64)))
    _refused(backup, "unknown_replica")


def test_n10_a_prepare_outside_the_watermarks_is_refused():
    """N10: PREPAREs for n ≤ h or n > H are not logged (up to H + L they are kept aside, C2')."""
    backup, pp = _pre_prepared()
    backup.receive(sign(Prepare(0, 0, pp.digest, 2, b"")))
    backup.receive(sign(Prepare(0, 2 * L + 1, pp.digest, 2, b"")))
    backup.receive(sign(Prepare(0, L + 1, pp.digest, 2, b"")))
    assert backup.dropped == {"below_low_watermark": 1, "above_high_watermark": 1}
    assert backup.log_size() == 1 and backup.memory_footprint()["stash"] == 1


def test_n10_a_prepare_of_a_later_view_is_not_counted_in_this_one():
    """N10: a PREPARE of view 1 matching a view-0 entry is kept aside for view 1, not counted
    toward preparing it in view 0."""
    backup, pp = _pre_prepared()
    backup.receive(sign(Prepare(1, 1, pp.digest, 2, b"")))
    assert backup.memory_footprint()["stash"] == 1
    assert sent(drain(backup), Commit) == [] and backup.dropped == {}


def test_n10_a_prepare_of_an_earlier_view_is_refused():
    """N10: in view 1, a PREPARE of view 0 is refused and logs nothing."""
    backup = _in_view_1()
    backup.receive(prepare(pre_prepare(1), 3))
    _refused(backup, "wrong_view")
    assert backup.log_size() == 0


def _in_view_change(replica_id: int = 1):
    """A backup that timed out on a request and asks for view 1 (not yet installed)."""
    backup = make_replica(replica_id, request_timeout_ms=100)
    backup.receive(request(9))
    backup.tick(100)
    assert backup.view == 1 and not backup.view_active
    drain(backup)
    return backup


def test_v1_n10_votes_for_a_view_not_yet_installed_are_kept_aside_not_logged():
    """V1, N10: during the view change to view 1, PREPAREs and COMMITs of view 1 wait for the
    NEW-VIEW: they are stashed and create no log entry."""
    backup = _in_view_change()
    pp = pre_prepare(1, view=1, replica=1)
    backup.receive(prepare(pp, 2))
    backup.receive(commit(pp, 3))
    assert backup.memory_footprint()["stash"] == 2 and backup.log_size() == 0


# ------------------------------------------------------------------- COMMIT (N5, N10)


def _prepared(replica_id: int = 1):
    backup, pp = _pre_prepared(replica_id)
    backup.receive(prepare(pp, 2))
    assert len(sent(drain(backup), Commit)) == 1
    return backup, pp


def test_n5_a_forged_commit_is_refused_and_does_not_commit():
    """N5, N10: a COMMIT naming replica 3 but signed by replica 2 is not counted: with its own
    and replica 0's COMMIT the backup does not execute; the real COMMIT from 3 then makes 2f + 1."""
    backup, pp = _prepared()
    backup.receive(commit(pp, 0))
    backup.receive(commit(pp, 3, signer=SIGNERS[2]))
    assert backup.dropped == {"bad_signature": 1}
    assert backup.last_executed == 0
    backup.receive(commit(pp, 3))
    assert backup.last_executed == 1


def test_n5_a_second_commit_from_a_sender_does_not_replace_its_first():
    """N5, N10: a second COMMIT from replica 0 (another digest, before the PRE-PREPARE) is
    dropped as a duplicate; the first still counts toward 2f + 1."""
    backup = make_replica(1)
    pp = pre_prepare(1)
    backup.receive(commit(pp, 0))
    backup.receive(commit(pp, 0, digest=OTHER))
    assert backup.dropped == {"duplicate_vote": 1}
    backup.receive(pp)
    backup.receive(prepare(pp, 2))
    backup.receive(commit(pp, 3))
    assert backup.dropped == {"duplicate_vote": 1}
    assert backup.last_executed == 1


def test_n5_a_commit_for_another_digest_is_refused_and_keeps_no_slot():
    """N5: a COMMIT whose digest is not the PRE-PREPARE's is dropped, not held, so the
    sender's matching COMMIT still counts."""
    backup, pp = _prepared()
    backup.receive(commit(pp, 0, digest=OTHER))
    assert backup.dropped == {"mismatched_vote": 1}
    backup.receive(commit(pp, 0))
    backup.receive(commit(pp, 3))
    assert backup.last_executed == 1


def test_n10_a_commit_from_an_unknown_replica_is_refused():
    """N10: a replica id outside 0..n-1."""
    backup, pp = _prepared()
    backup.receive(Commit(0, 1, pp.digest, 7, bytes(64)))
    assert backup.dropped == {"unknown_replica": 1}


def test_n10_a_commit_outside_the_watermarks_is_refused():
    """N10: COMMITs for n ≤ h or n > H are not logged (up to H + L they are kept aside, C2')."""
    backup, pp = _prepared()
    backup.receive(sign(Commit(0, 0, pp.digest, 2, b"")))
    backup.receive(sign(Commit(0, 2 * L + 1, pp.digest, 2, b"")))
    backup.receive(sign(Commit(0, L + 1, pp.digest, 2, b"")))
    assert backup.dropped == {"below_low_watermark": 1, "above_high_watermark": 1}
    assert backup.log_size() == 1 and backup.memory_footprint()["stash"] == 1


def test_n10_commits_of_a_later_view_do_not_commit_this_one():
    """N10: COMMITs of view 1 for a view-0 entry (same n and digest) are not counted in view 0."""
    backup, pp = _prepared()
    backup.receive(sign(Commit(1, 1, pp.digest, 0, b"")))
    backup.receive(sign(Commit(1, 1, pp.digest, 3, b"")))
    assert backup.last_executed == 0


# ------------------------------------------------ commit certificates in a served batch (N5, S1)


def _served(pp=None, commits=None, senders=(0, 2, 3)) -> LoggedBatch:
    pp = pp or pre_prepare(1)
    if commits is None:
        commits = tuple(commit(pp, r) for r in senders)
    return LoggedBatch(pp, tuple(commits))


def test_s1_n5_a_served_batch_with_a_commit_certificate_executes():
    """S1, N5: a batch with the primary's PRE-PREPARE and 2f + 1 matching signed COMMITs
    executes at a replica that never voted for it."""
    replica = make_replica(1)
    replica.receive(_served())
    assert replica.dropped == {} and replica.last_executed == 1


def _certificate_refused(message: LoggedBatch) -> None:
    replica = make_replica(1)
    replica.receive(message)
    assert replica.dropped == {"bad_commit_certificate": 1}
    assert replica.last_executed == 0 and replica.log_size() == 0
    assert drain(replica).executed == ()


def test_s1_n5_a_served_batch_whose_commit_certificate_holds_a_forged_commit_is_refused():
    """S1, N5: one of the 2f + 1 COMMITs is signed by another replica than the one it names:
    a Byzantine replica cannot make up a certificate for a batch that never committed."""
    pp = pre_prepare(1)
    forged = commit(pp, 3, signer=SIGNERS[1])
    _certificate_refused(_served(pp, (commit(pp, 0), commit(pp, 2), forged)))


BAD_COMMIT_CERTIFICATES: dict[str, Callable[[], LoggedBatch]] = {
    "pre_prepare_from_a_backup": lambda: _served(pre_prepare(1, replica=2)),
    "pre_prepare_from_an_unknown_replica": lambda: _served(
        replace(pre_prepare(1), replica=7)),
    "forged_pre_prepare": lambda: _served(pre_prepare(1, signer=SIGNERS[2])),
    "commit_of_another_view": lambda: _served(commits=(
        commit(pre_prepare(1), 0), commit(pre_prepare(1), 2),
        sign(Commit(1, 1, pre_prepare(1).digest, 3, b"")))),
    "commit_of_another_sequence": lambda: _served(commits=(
        commit(pre_prepare(1), 0), commit(pre_prepare(1), 2),
        sign(Commit(0, 2, pre_prepare(1).digest, 3, b"")))),
    "commit_of_another_digest": lambda: _served(commits=(
        commit(pre_prepare(1), 0), commit(pre_prepare(1), 2),
        commit(pre_prepare(1), 3, digest=OTHER))),
    "commit_from_an_unknown_replica": lambda: _served(commits=(
        *(commit(pre_prepare(1), r) for r in (0, 2, 3)),
        Commit(0, 1, pre_prepare(1).digest, 7, bytes(64)))),
    "commit_sender_twice": lambda: _served(senders=(0, 2, 2, 3)),
    "only_2f_commits": lambda: _served(senders=(0, 2)),
}


@pytest.mark.parametrize("case", BAD_COMMIT_CERTIFICATES)
def test_s1_n5_a_commit_certificate_that_breaks_one_condition_is_refused(case):
    """S1, N5, N10: a served batch is not executed when its PRE-PREPARE is not the view's
    primary's, validly signed, or a COMMIT is of another view, sequence or digest, from an
    unknown replica, repeats a sender, or there are fewer than 2f + 1."""
    _certificate_refused(BAD_COMMIT_CERTIFICATES[case]())


# ----------------------------------------------------------------- CHECKPOINT (C2, S1)


def _checkpointing(replica_id: int = 1):
    return make_replica(replica_id, checkpoint_interval=K, log_window=L)


def test_c2_checkpoints_within_the_watermarks_are_kept():
    """C2: the baseline: valid CHECKPOINTs at multiples of K in (h, H] are kept."""
    replica = _checkpointing()
    replica.receive(_checkpoint(4, 2))
    replica.receive(_checkpoint(8, 3))
    assert replica.dropped == {} and replica.memory_footprint()["checkpoint_sequences"] == 2


@pytest.mark.parametrize("message, reason", [
    pytest.param(Checkpoint(4, STATE, 7, bytes(64)), "unknown_replica", id="unknown_replica"),
    pytest.param(_checkpoint(6, 2), "checkpoint_off_interval", id="off_the_interval"),
    pytest.param(_checkpoint(0, 2), "below_low_watermark", id="at_the_low_watermark"),
    pytest.param(_checkpoint(4, 2, signer=SIGNERS[3]), "bad_signature", id="forged"),
    pytest.param(_checkpoint(12, 2, signer=SIGNERS[3]), "bad_signature", id="forged_above_H"),
])
def test_c2_a_checkpoint_that_breaks_one_condition_is_refused(message, reason):
    """C2, N10, S1: a CHECKPOINT is refused when from an unknown replica, off the interval,
    at or below h, or forged (above H too) and nothing of it is kept."""
    replica = _checkpointing()
    replica.receive(message)
    assert replica.dropped == {reason: 1}
    assert replica.memory_footprint()["checkpoint_sequences"] == 0


def test_c2_a_second_checkpoint_from_a_sender_does_not_replace_its_first():
    """C2, N10: a replica that executed n = K holds its own CHECKPOINT; replica 2 sends a
    matching one and then one with another digest: the second is dropped, so replica 0's
    matching CHECKPOINT makes 2f + 1 and the checkpoint becomes stable. A later CHECKPOINT at
    h is then below the low watermark."""
    replica = _checkpointing()
    for n in range(1, K + 1):
        commit_batch(replica, pre_prepare(n, requests=(request(n),)))
    digest = replica.state_digest()
    replica.receive(_checkpoint(K, 2, digest))
    replica.receive(_checkpoint(K, 2, OTHER))
    assert replica.dropped == {"duplicate_vote": 1}
    replica.receive(_checkpoint(K, 0, digest))
    assert replica.stable_checkpoint == K
    replica.receive(_checkpoint(K, 3, digest))
    assert replica.dropped == {"duplicate_vote": 1, "below_low_watermark": 1}


def test_s1_above_the_high_watermark_only_each_senders_highest_checkpoint_is_kept():
    """S1, C2: above H a replica keeps one CHECKPOINT per sender, its highest (enough to learn
    how far behind it is, bounded whatever the sender sends): an older one is stale, a newer
    one replaces it."""
    replica = _checkpointing()
    replica.receive(_checkpoint(16, 2))
    replica.receive(_checkpoint(12, 2))
    assert replica.dropped == {"stale_checkpoint": 1}
    assert replica.memory_footprint()["checkpoint_sequences"] == 1
    replica.receive(_checkpoint(20, 2))
    assert replica.dropped == {"stale_checkpoint": 1}
    assert replica.memory_footprint()["checkpoint_sequences"] == 1
