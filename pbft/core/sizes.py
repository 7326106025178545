"""Upper bounds on the encoded size of messages, computed from their variable-length fields
without encoding them.

The primary closes a batch before its PRE-PREPARE could exceed `batch_bytes_max`, config
validation proves that every message a correct replica builds fits `frame_bytes_max`, and
`Replica.bytes_held()` reports what peers and clients make a replica hold. Each constant is the
largest fixed part of one message in `pbft.codec`'s encoding (integers at their widest, container
headers at their widest); tests/test_robust_core.py checks every bound against `encode`.
"""

from __future__ import annotations

from .quorum import quorum
from ..messages import (
    Checkpoint,
    Commit,
    FetchLog,
    FetchState,
    LoggedBatch,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    ViewChange,
)
from .state_transfer import proof_entries_max

#: A REQUEST without its operation.
REQUEST_OVERHEAD_BYTES = 128
#: A PRE-PREPARE without its requests.
PRE_PREPARE_OVERHEAD_BYTES = 160
#: A PREPARE, COMMIT, CHECKPOINT, FETCH-STATE or FETCH-LOG: fixed size.
VOTE_BYTES = 136
#: A prepared certificate or a LOGGED-BATCH around its PRE-PREPARE and votes.
CONTAINER_OVERHEAD_BYTES = 16
#: A VIEW-CHANGE without its checkpoint proof and certificates.
VIEW_CHANGE_OVERHEAD_BYTES = 128
#: A NEW-VIEW without its VIEW-CHANGEs and PRE-PREPAREs.
NEW_VIEW_OVERHEAD_BYTES = 128
#: A STATE-CHUNK without its data and proof, and one hash of its proof.
STATE_CHUNK_OVERHEAD_BYTES = 128
PROOF_ENTRY_BYTES = 34

_FIXED = frozenset((Prepare, Commit, Checkpoint, FetchState, FetchLog))


def request_bytes(request: Request) -> int:
    return REQUEST_OVERHEAD_BYTES + len(request.operation)


def pre_prepare_bytes(pre_prepare: PrePrepare) -> int:
    size = PRE_PREPARE_OVERHEAD_BYTES
    for request in pre_prepare.requests:
        size += REQUEST_OVERHEAD_BYTES + len(request.operation)
    return size


def certificate_bytes(certificate: PreparedCertificate) -> int:
    return (CONTAINER_OVERHEAD_BYTES + pre_prepare_bytes(certificate.pre_prepare)
            + VOTE_BYTES * len(certificate.prepares))


def view_change_bytes(view_change: ViewChange) -> int:
    return (VIEW_CHANGE_OVERHEAD_BYTES + VOTE_BYTES * len(view_change.checkpoint_proof)
            + sum(certificate_bytes(c) for c in view_change.prepared))


def message_bytes(message: object) -> int:
    """An upper bound on `len(pbft.codec.encode(message))` for the protocol messages a replica
    holds; other types (replies, state chunks) are not held and count 0."""
    kind = type(message)
    if kind in _FIXED:
        return VOTE_BYTES
    if kind is Request:
        return request_bytes(message)  # type: ignore[arg-type]
    if kind is PrePrepare:
        return pre_prepare_bytes(message)  # type: ignore[arg-type]
    if kind is ViewChange:
        return view_change_bytes(message)  # type: ignore[arg-type]
    if kind is NewView:
        return (NEW_VIEW_OVERHEAD_BYTES
                + sum(view_change_bytes(vc) for vc in message.view_changes)  # type: ignore[attr-defined]
                + sum(pre_prepare_bytes(pp) for pp in message.pre_prepares))  # type: ignore[attr-defined]
    if kind is PreparedCertificate:
        return certificate_bytes(message)  # type: ignore[arg-type]
    if kind is LoggedBatch:
        return (CONTAINER_OVERHEAD_BYTES + pre_prepare_bytes(message.pre_prepare)  # type: ignore[attr-defined]
                + VOTE_BYTES * len(message.commits))  # type: ignore[attr-defined]
    return 0


def view_change_bytes_max(config) -> int:
    """The largest VIEW-CHANGE a correct replica sends: its checkpoint proof (2f + 1
    CHECKPOINTs, `quorum.proven_checkpoint`) and a prepared certificate (a PRE-PREPARE without
    its batch and 2f PREPAREs, `Replica._check_prepared`) for every n in its window."""
    needed = quorum(config.n)
    certificate = CONTAINER_OVERHEAD_BYTES + PRE_PREPARE_OVERHEAD_BYTES + VOTE_BYTES * (needed - 1)
    return VIEW_CHANGE_OVERHEAD_BYTES + VOTE_BYTES * needed + certificate * config.log_window


def new_view_bytes_max(config) -> int:
    """The largest NEW-VIEW a correct primary sends: 2f + 1 VIEW-CHANGEs and a PRE-PREPARE
    without its batch for every n of the window."""
    return (NEW_VIEW_OVERHEAD_BYTES + quorum(config.n) * view_change_bytes_max(config)
            + PRE_PREPARE_OVERHEAD_BYTES * config.log_window)


def replica_bytes_budget(config) -> int:
    """The most protocol bytes a replica holds (`Replica.bytes_held()`), whatever its peers and
    clients send: the log window (a batch, n PREPAREs and n COMMITs per sequence number, the
    batch counted twice for the batch store, and a prepared certificate), waiting requests and
    deferred reads, the stash of each peer, one VIEW-CHANGE per replica and a NEW-VIEW, and the CHECKPOINTs of the
    window (plus one per replica above it). The application's own state, its snapshots and the
    reply cache are not in it: they grow only with what is executed."""
    n, window = config.n, config.log_window
    per_sequence = (2 * config.batch_bytes_max + 2 * n * VOTE_BYTES
                    + CONTAINER_OVERHEAD_BYTES + PRE_PREPARE_OVERHEAD_BYTES + VOTE_BYTES * n)
    checkpoints = (window // config.checkpoint_interval + 2) * n * VOTE_BYTES + n * VOTE_BYTES
    return (window * per_sequence + 3 * config.pending_bytes_max
            + (n - 1) * config.stash_bytes_max
            + n * view_change_bytes_max(config) + new_view_bytes_max(config) + checkpoints)


def state_chunk_bytes_max(config) -> int:
    """The largest STATE-CHUNK a correct replica sends: `state_chunk_bytes` of data and the
    Merkle proof of a chunk of the largest snapshot (S1')."""
    proof = proof_entries_max(config.snapshot_bytes_max, config.state_chunk_bytes)
    return STATE_CHUNK_OVERHEAD_BYTES + config.state_chunk_bytes + PROOF_ENTRY_BYTES * proof
