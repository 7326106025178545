"""Reading a replica's durable records back (crash recovery), the pure part.

The replica persists, before sending anything that depends on them: accepted PRE-PREPAREs with
their batches, its own PREPAREs, COMMITs, CHECKPOINTs and VIEW-CHANGEs, its prepared
certificates, the NEW-VIEWs it installed, its state snapshots and stable checkpoint proofs,
and its vote horizons (`VoteHorizon`: PRE-PREPAREs and PREPAREs up to the horizon may have
been sent before they were durable, so may be missing here).
`read_records` folds them into what recovery needs; `Replica.recover` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..messages import (
    Checkpoint,
    Commit,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    SnapshotRecord,
    ViewChange,
    VoteHorizon,
)


@dataclass
class DurableState:
    """What a replica's records say, latest first where several versions exist."""

    snapshot: SnapshotRecord | None = None
    #: Every snapshot record by sequence number (the latest is `snapshot`).
    snapshots: dict[int, SnapshotRecord] = field(default_factory=dict)
    #: CHECKPOINT messages by sequence number, then sender (own and proofs).
    checkpoints: dict[int, dict[int, Checkpoint]] = field(default_factory=dict)
    #: The prepared certificate of the highest view for each sequence number.
    certificates: dict[int, PreparedCertificate] = field(default_factory=dict)
    #: PRE-PREPAREs by (view, sequence); one with its batch wins over one without.
    pre_prepares: dict[tuple[int, int], PrePrepare] = field(default_factory=dict)
    own_votes: list[Prepare | Commit] = field(default_factory=list)
    view: int = 0
    #: False if the last record about views is our VIEW-CHANGE (a view change in progress).
    view_active: bool = True
    own_view_change: ViewChange | None = None
    new_view: NewView | None = None
    #: The latest vote horizon (None: every vote sent is in the records).
    vote_horizon: VoteHorizon | None = None


def read_records(records: list[Message], replica_id: int) -> DurableState:
    """Fold `records` (in the order they were persisted) into a `DurableState`."""
    state = DurableState()
    for record in records:
        if isinstance(record, SnapshotRecord):
            state.snapshots[record.sequence] = record
            if state.snapshot is None or record.sequence >= state.snapshot.sequence:
                state.snapshot = record
        elif isinstance(record, Checkpoint):
            state.checkpoints.setdefault(record.sequence, {})[record.replica] = record
        elif isinstance(record, PreparedCertificate):
            sequence = record.pre_prepare.sequence
            known = state.certificates.get(sequence)
            if known is None or known.pre_prepare.view <= record.pre_prepare.view:
                state.certificates[sequence] = record
        elif isinstance(record, PrePrepare):
            key = (record.view, record.sequence)
            if record.requests or key not in state.pre_prepares:
                state.pre_prepares[key] = record
        elif isinstance(record, (Prepare, Commit)) and record.replica == replica_id:
            state.own_votes.append(record)
        elif isinstance(record, ViewChange) and record.replica == replica_id:
            if record.new_view > state.view:
                state.view, state.view_active = record.new_view, False
                state.own_view_change = record
        elif isinstance(record, VoteHorizon):
            state.vote_horizon = record
        elif isinstance(record, NewView) and record.view >= state.view:
            state.view, state.view_active = record.view, True
            state.new_view = record
    return state
