"""Quorum arithmetic, in one place (docs/PBFT-RULES.md).

With n = 3f + 1 a quorum is 2f + 1. For other n (say 5 replicas, f = 1) a quorum is the smallest
size q with two quorums always sharing f + 1 replicas (one of them correct): q = ⌈(n + f + 1) / 2⌉.
That is 2f + 1 exactly when n = 3f + 1, and never more than the n − f correct replicas.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..messages import Checkpoint


def faults_tolerated(n: int) -> int:
    """f: the most Byzantine replicas n replicas tolerate."""
    return (n - 1) // 3


def quorum(n: int) -> int:
    """2f + 1 when n = 3f + 1: matching COMMITs (N5), CHECKPOINTs (C2), VIEW-CHANGEs (V2)."""
    return (n + faults_tolerated(n) + 2) // 2


def prepare_quorum(n: int) -> int:
    """2f when n = 3f + 1: matching PREPAREs from distinct backups that, with the primary's
    PRE-PREPARE, make a quorum (N4)."""
    return quorum(n) - 1


def reply_quorum(n: int) -> int:
    """f + 1: matching REPLYs that prove a result (N7): at least one is from a correct replica."""
    return faults_tolerated(n) + 1


def read_only_quorum(n: int) -> int:
    """2f + 1 when n = 3f + 1: matching read-only replies a client needs (R1)."""
    return quorum(n)


def proven_checkpoint(
    votes: Iterable[Checkpoint], n: int
) -> tuple[bytes, tuple[Checkpoint, ...]] | None:
    """C2: the digest that 2f + 1 of `votes` (one sequence number, distinct senders) agree on,
    with exactly 2f + 1 of those CHECKPOINTs, sorted by sender, as its proof (a proof's size
    is what message sizes are validated with); None if no digest has a quorum."""
    by_digest: dict[bytes, list[Checkpoint]] = {}
    for checkpoint in votes:
        by_digest.setdefault(checkpoint.digest, []).append(checkpoint)
    needed = quorum(n)
    for digest, proof in by_digest.items():
        if len(proof) >= needed:
            return digest, tuple(sorted(proof, key=lambda c: c.replica)[:needed])
    return None
