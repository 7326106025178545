"""Simulated durable storage for one replica: what the core asked to persist, in order.

The driver persists a Ready's records before sending its messages (ARCHITECTURE.md). A crash
between two Readies loses nothing durable. A crash during a Ready's persist ("torn") keeps only a
prefix of its records and sends none of its messages: the storage then discards the torn last
record on recovery, as a real log does when its checksum fails.
"""

from __future__ import annotations

import random

from pbft.messages import (
    Checkpoint,
    Message,
    NewView,
    PreparedCertificate,
    SnapshotRecord,
    ViewChange,
    VoteHorizon,
)

_LATEST_ONLY = (ViewChange, NewView, VoteHorizon)


class SimulatedStorage:
    """Append-only records of one replica; survives crashes, lost only by `wipe`."""

    __slots__ = ("records", "torn_writes")

    def __init__(self) -> None:
        self.records: list[Message] = []
        self.torn_writes = 0

    def append(self, records: tuple[Message, ...]) -> None:
        self.records.extend(records)

    def append_torn(self, records: tuple[Message, ...], rng: random.Random) -> None:
        """A crash in the middle of writing `records`: a prefix is durable, the record being
        written when the power went is torn and will be discarded by recovery."""
        kept = rng.randrange(len(records)) if records else 0
        self.records.extend(records[:kept])
        self.torn_writes += 1

    def compact(self, low_watermark: int) -> None:
        """Drop what recovery no longer needs: the log at or below the stable checkpoint,
        snapshots and CHECKPOINTs below it, and all but the latest VIEW-CHANGE, NEW-VIEW and
        VoteHorizon (as the runtime's storage does)."""
        records = self.records
        last_of = {type(r): i for i, r in enumerate(records) if type(r) in _LATEST_ONLY}
        keep = []
        for i, record in enumerate(records):
            kind = type(record)
            if kind in _LATEST_ONLY:
                if last_of[kind] == i:
                    keep.append(record)
                continue
            if kind is PreparedCertificate:
                sequence = record.pre_prepare.sequence
            else:
                sequence = getattr(record, "sequence", None)
            if sequence is not None:
                if kind in (SnapshotRecord, Checkpoint):
                    if sequence < low_watermark:
                        continue
                elif sequence <= low_watermark:
                    continue
            keep.append(record)
        self.records = keep

    def wipe(self) -> None:
        """The disk is lost: the replica restarts empty and must fetch its state (S1)."""
        self.records = []
