"""View change (V1–V3), the pure part: checking VIEW-CHANGE and NEW-VIEW messages and computing
the PRE-PREPAREs a NEW-VIEW must carry. No state: the replica passes in what is needed.

`verify(message)` checks a replica-signed message's signature against the key of the replica it
names (and that the id is in range); every function here returns None when the input is valid,
or a reason string for `Replica.dropped`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..config import ClusterConfig
from ..messages import (
    NULL_DIGEST,
    Checkpoint,
    NewView,
    PreparedCertificate,
    PrePrepare,
    ViewChange,
)
from . import quorum

Verify = Callable[[object], bool]


def checkpoint_proof_reason(
    config: ClusterConfig, sequence: int, proof: tuple[Checkpoint, ...], verify: Verify
) -> str | None:
    """C2: `proof` is 2f + 1 valid CHECKPOINTs from distinct replicas for `sequence`, one digest.
    The genesis state (sequence 0) needs no proof."""
    if sequence == 0:
        return None if not proof else "bad_checkpoint_proof"
    if sequence % config.checkpoint_interval != 0 or not proof:
        return "bad_checkpoint_proof"
    digest = proof[0].digest
    senders: set[int] = set()
    for checkpoint in proof:
        if (
            checkpoint.sequence != sequence
            or checkpoint.digest != digest
            or checkpoint.replica in senders
            or not verify(checkpoint)
        ):
            return "bad_checkpoint_proof"
        senders.add(checkpoint.replica)
    if len(senders) < quorum.quorum(config.n):
        return "bad_checkpoint_proof"
    return None


def prepared_certificate_reason(
    config: ClusterConfig,
    certificate: PreparedCertificate,
    new_view: int,
    stable_sequence: int,
    verify: Verify,
) -> str | None:
    """N4, V1: a PRE-PREPARE of an earlier view signed by that view's primary, within the
    sender's watermarks, and 2f matching PREPAREs from distinct backups of that view."""
    pre_prepare = certificate.pre_prepare
    view, sequence = pre_prepare.view, pre_prepare.sequence
    primary = config.primary(view)
    if view >= new_view or pre_prepare.replica != primary:
        return "bad_prepared_certificate"
    if not stable_sequence < sequence <= stable_sequence + config.log_window:
        return "bad_prepared_certificate"
    if not verify(pre_prepare):
        return "bad_prepared_certificate"
    senders: set[int] = set()
    for prepare in certificate.prepares:
        if (
            prepare.view != view
            or prepare.sequence != sequence
            or prepare.digest != pre_prepare.digest
            or prepare.replica == primary
            or prepare.replica in senders
            or not verify(prepare)
        ):
            return "bad_prepared_certificate"
        senders.add(prepare.replica)
    if len(senders) < quorum.prepare_quorum(config.n):
        return "bad_prepared_certificate"
    return None


def view_change_reason(config: ClusterConfig, message: ViewChange, verify: Verify) -> str | None:
    """V1: a signed VIEW-CHANGE with a valid stable checkpoint proof and valid prepared
    certificates, at most one per sequence number."""
    if not verify(message):
        return "bad_signature"
    if (reason := checkpoint_proof_reason(
        config, message.stable_sequence, message.checkpoint_proof, verify
    )) is not None:
        return reason
    sequences: set[int] = set()
    for certificate in message.prepared:
        sequence = certificate.pre_prepare.sequence
        if sequence in sequences:
            return "bad_prepared_certificate"
        sequences.add(sequence)
        if (reason := prepared_certificate_reason(
            config, certificate, message.new_view, message.stable_sequence, verify
        )) is not None:
            return reason
    return None


def new_view_plan(
    view_changes: Iterable[ViewChange],
) -> tuple[int, list[tuple[int, bytes, int]]]:
    """V2: min-s and, for every n in (min-s, max-s], (n, digest, batch timestamp) of the
    prepared certificate with the highest view, or (n, NULL_DIGEST, 0) for a null request."""
    view_changes = list(view_changes)
    min_s = max(vc.stable_sequence for vc in view_changes)
    chosen: dict[int, PrePrepare] = {}
    for vc in view_changes:
        for certificate in vc.prepared:
            pre_prepare = certificate.pre_prepare
            if pre_prepare.sequence <= min_s:
                continue
            best = chosen.get(pre_prepare.sequence)
            if best is None or pre_prepare.view > best.view:
                chosen[pre_prepare.sequence] = pre_prepare
    max_s = max(chosen, default=min_s)
    plan = []
    for sequence in range(min_s + 1, max_s + 1):
        pre_prepare = chosen.get(sequence)
        if pre_prepare is None:
            plan.append((sequence, NULL_DIGEST, 0))
        else:
            plan.append((sequence, pre_prepare.digest, pre_prepare.timestamp_ms))
    return min_s, plan


def new_view_reason(
    config: ClusterConfig,
    message: NewView,
    verify: Verify,
    already_valid: Callable[[ViewChange], bool],
) -> str | None:
    """V3: a NEW-VIEW signed by the new primary, whose 2f + 1 VIEW-CHANGEs (for this view, from
    distinct replicas) are valid, and whose PRE-PREPAREs are exactly those V2 computes from them.
    `already_valid(vc)` lets the caller skip re-checking VIEW-CHANGEs it has checked before."""
    view = message.view
    primary = config.primary(view)
    if message.replica != primary:
        return "new_view_not_from_primary"
    if not verify(message):
        return "bad_signature"
    senders: set[int] = set()
    for vc in message.view_changes:
        if vc.new_view != view or vc.replica in senders:
            return "bad_new_view"
        senders.add(vc.replica)
        if not already_valid(vc) and view_change_reason(config, vc, verify) is not None:
            return "bad_new_view"
    if len(senders) < quorum.quorum(config.n):
        return "bad_new_view"
    _, plan = new_view_plan(message.view_changes)
    if len(plan) != len(message.pre_prepares):
        return "bad_new_view"
    for (sequence, digest, timestamp_ms), pre_prepare in zip(plan, message.pre_prepares):
        if (
            pre_prepare.view != view
            or pre_prepare.sequence != sequence
            or pre_prepare.digest != digest
            or pre_prepare.timestamp_ms != timestamp_ms
            or pre_prepare.requests
            or pre_prepare.replica != primary
            or not verify(pre_prepare)
        ):
            return "bad_new_view"
    return None
