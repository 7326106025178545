"""What the replicas of a simulation did, as the engine saw it leave them: every batch each
replica executed (once per sequence number, across crashes, restarts and wiped disks), and every
vote and VIEW-CHANGE each replica without a behaviour sent. The checkers judge a run from this
(`simulations.checkers`); the engine only feeds it (`Simulation._note_executed`, `_note_votes`).
"""

from __future__ import annotations

import bisect

from pbft.core import ExecutedBatch
from pbft.messages import Commit, NewView, Prepare, PrePrepare, ViewChange

#: Messages by which a replica commits itself to one digest for a (view, sequence) (N10).
_VOTES = frozenset((PrePrepare, Prepare, Commit))


class History:
    """The executions and votes of `replicas` replicas (see the module docstring)."""

    def __init__(self, replicas: int) -> None:
        #: Every batch each replica executed, in sequence order: executing a sequence number
        #: again (after a restart, from an older snapshot) is not recorded twice; if it differs
        #: from the first execution it is noted in `reexecuted_differently`.
        self.executed: list[list[ExecutedBatch]] = [[] for _ in range(replicas)]
        self._first: list[dict[int, ExecutedBatch]] = [{} for _ in range(replicas)]
        #: Virtual µs at which each replica first executed each sequence number.
        self.executed_at_us: list[dict[int, int]] = [{} for _ in range(replicas)]
        #: (replica, sequence, what differs) for every execution of a sequence number that
        #: differs from that replica's first execution of it (checkers.agreement).
        self.reexecuted_differently: list[tuple[int, int, str]] = []
        #: How many executions repeated an earlier one of the same replica exactly.
        self.reexecutions = 0
        #: The digest of every vote each replica sent, by (replica, kind, view, sequence), and
        #: the votes that contradicted an earlier one (N10).
        self.votes_sent: dict[tuple[int, type, int, int], bytes] = {}
        self.double_votes: list[tuple[int, str, int, int]] = []
        #: (replica, view) for every VIEW-CHANGE a replica sent (asking for that view), for
        #: checkers.needless_view_changes.
        self.view_changes_sent: set[tuple[int, int]] = set()

    def note_executed(self, replica_id: int, batches: tuple[ExecutedBatch, ...],
                      now_us: int) -> list[ExecutedBatch]:
        """Add what a replica executed at `now_us`; return the batches it executed for the
        first time. A sequence number it executed before (a restart recovers from its last
        snapshot and executes the log after it again; a state transfer may restore an older
        state) is not added again: it must be the same batch, at the same timestamp, with the
        same requests and results (the view may differ: a view change re-proposes committed
        batches), or it is noted in `reexecuted_differently`."""
        history = self.executed[replica_id]
        first = self._first[replica_id]
        first_at = self.executed_at_us[replica_id]
        new = []
        for batch in batches:
            sequence = batch.sequence
            earlier = first.get(sequence)
            if earlier is None:
                new.append(batch)
                first[sequence] = batch
                first_at[sequence] = now_us
                if not history or history[-1].sequence < sequence:
                    history.append(batch)
                else:  # a sequence number it had skipped by state transfer
                    bisect.insort(history, batch, key=_sequence_of)
                continue
            difference = _execution_difference(earlier, batch)
            if difference is None:
                self.reexecutions += 1
            else:
                self.reexecuted_differently.append((replica_id, sequence, difference))
        return new

    def note_sent(self, replica_id: int, messages: tuple) -> None:
        """Remember the digest of each vote in `messages` (outbound messages of a replica
        without a behaviour; single_vote): its PRE-PREPAREs, PREPAREs and COMMITs, and the
        PRE-PREPAREs of its NEW-VIEWs (V2); and which views it asked for in VIEW-CHANGEs."""
        for outbound in messages:
            vote = outbound.message
            if type(vote) in _VOTES:
                self._note_vote(replica_id, vote)
            elif type(vote) is NewView:
                for pre_prepare in vote.pre_prepares:
                    self._note_vote(replica_id, pre_prepare)
            elif type(vote) is ViewChange:
                self.view_changes_sent.add((replica_id, vote.new_view))

    def _note_vote(self, replica_id: int, vote: PrePrepare | Prepare | Commit) -> None:
        key = (replica_id, type(vote), vote.view, vote.sequence)
        if self.votes_sent.setdefault(key, vote.digest) != vote.digest:
            self.double_votes.append((replica_id, type(vote).__name__, vote.view, vote.sequence))


def _sequence_of(batch: ExecutedBatch) -> int:
    return batch.sequence


def _execution_difference(first: ExecutedBatch, again: ExecutedBatch) -> str | None:
    """What differs between two executions of one sequence number by one replica, or None."""
    if first.digest != again.digest:
        return "another batch"
    if first.timestamp_ms != again.timestamp_ms:
        return f"timestamp {again.timestamp_ms} instead of {first.timestamp_ms}"
    if [e.request for e in first.requests] != [e.request for e in again.requests]:
        return "other requests executed"
    if [e.result for e in first.requests] != [e.result for e in again.requests]:
        return "other results"
    return None
