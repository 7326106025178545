"""The message log of one sequence number: its PRE-PREPARE, PREPAREs and COMMITs (N2–N5)."""

from __future__ import annotations

from ..messages import Commit, Prepare, PrePrepare


class LogEntry:
    """Votes for one (view, sequence). Votes may arrive before the PRE-PREPARE they match;
    they are held (at most one per sender) and counted only if their digest matches it."""

    __slots__ = (
        "view",
        "sequence",
        "pre_prepare",
        "prepares",
        "commits",
        "prepared",
        "committed",
        "accepted_ms",
    )

    def __init__(self, view: int, sequence: int) -> None:
        self.view = view
        self.sequence = sequence
        self.pre_prepare: PrePrepare | None = None
        self.prepares: dict[int, Prepare] = {}
        self.commits: dict[int, Commit] = {}
        #: prepared(m, v, n, i) of N4 holds; our COMMIT has been multicast.
        self.prepared = False
        #: committed-local of N5 holds; the batch may execute once its predecessors have.
        self.committed = False
        #: When a backup accepted the PRE-PREPARE in the normal case (V1'': the commit round
        #: that follows is timed), else None.
        self.accepted_ms: int | None = None

    @property
    def digest(self) -> bytes | None:
        return None if self.pre_prepare is None else self.pre_prepare.digest

    def matching_prepares(self) -> int:
        digest = self.digest
        return sum(1 for p in self.prepares.values() if p.digest == digest)

    def matching_commits(self) -> int:
        digest = self.digest
        return sum(1 for c in self.commits.values() if c.digest == digest)

    def discard_mismatched_votes(self) -> int:
        """Drop held votes that do not match the PRE-PREPARE just accepted; return how many."""
        if not self.prepares and not self.commits:
            return 0
        digest = self.digest
        bad_prepares = [r for r, p in self.prepares.items() if p.digest != digest]
        bad_commits = [r for r, c in self.commits.items() if c.digest != digest]
        for r in bad_prepares:
            del self.prepares[r]
        for r in bad_commits:
            del self.commits[r]
        return len(bad_prepares) + len(bad_commits)
