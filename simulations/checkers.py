"""Checkers that run after every simulation: agreement, validity, exactly-once,
linearizability of what clients saw, and liveness. Each returns the violations it found, naming
the checker, the sequence number and the replicas involved.

Only correct replicas are judged (a Byzantine replica may execute whatever it likes); crashed
and restarted replicas are correct.
"""

from __future__ import annotations

from collections.abc import Callable

from pbft.app import kv_decode_result
from pbft.codec import unpackb_canonical

from .engine import Simulation, Violation

Checker = Callable[[Simulation], list[Violation]]


def agreement(sim: Simulation) -> list[Violation]:
    """No two correct replicas execute different batches at the same sequence number."""
    first: dict[int, tuple[bytes, int]] = {}
    violations = []
    for replica in sim.correct_replicas():
        for batch in sim.executed[replica]:
            seen = first.setdefault(batch.sequence, (batch.digest, replica))
            if seen[0] != batch.digest:
                violations.append(Violation(
                    "agreement",
                    f"replicas {seen[1]} and {replica} executed different batches",
                    batch.sequence, (seen[1], replica),
                ))
    return violations


def single_vote(sim: Simulation) -> list[Violation]:
    """N10, across crashes too: no correct replica sends two different PRE-PREPAREs, PREPAREs
    or COMMITs for one (view, sequence) (a restarted one must remember, or withhold, its votes).

    A replica whose disk was wiped has lost what it voted: it may vote again where it voted
    before, and PBFT counts it among the f faulty replicas for that; it is not judged here (the
    other checkers still judge what it executes)."""
    correct = set(sim.correct_replicas()) - sim.wiped
    return [
        Violation("single_vote", f"replica {replica} sent two different {kind}s in view {view}",
                  sequence, (replica,))
        for replica, kind, view, sequence in sim.double_votes
        if replica in correct
    ]


def validity(sim: Simulation) -> list[Violation]:
    """Only requests signed by a client execute, and a correct client's are never altered."""
    submitted = {
        c.session.client: {op[0] for op in c.record.operations} for c in sim.clients
    }
    # Byzantine clients' made-up keys are clients too, none of them correct.
    submitted.update((key, set()) for key in sim.sybil_keys)
    correct = {c.session.client for c in sim.clients if c.record.correct}
    violations = []
    for replica in sim.correct_replicas():
        for batch in sim.executed[replica]:
            for executed in batch.requests:
                request = executed.request
                if request.client not in submitted:
                    violations.append(Violation(
                        "validity", "executed a request from an unknown client",
                        batch.sequence, (replica,)))
                elif request.client in correct and request.operation not in submitted[request.client]:
                    violations.append(Violation(
                        "validity", "executed an operation the correct client never sent",
                        batch.sequence, (replica,)))
    return violations


def exactly_once(sim: Simulation) -> list[Violation]:
    """A request executes at most once on every correct replica."""
    violations = []
    for replica in sim.correct_replicas():
        seen: dict[tuple[bytes, int], int] = {}
        for batch in sim.executed[replica]:
            for executed in batch.requests:
                key = (executed.request.client, executed.request.timestamp)
                if key in seen:
                    violations.append(Violation(
                        "exactly_once",
                        f"request executed at sequences {seen[key]} and {batch.sequence}",
                        batch.sequence, (replica,)))
                seen[key] = batch.sequence
    return violations


def kv_append_linearizability(sim: Simulation) -> list[Violation]:
    """Linearizability of `kv_append` results (each append returns the whole value after it):
    per key, results must form one chain of prefixes, each ending with its own token, and an
    append that completed before another began must be a strict prefix of the later one."""
    by_key: dict[str, list[tuple[int, int, bytes, bytes]]] = {}
    for client in sim.clients:
        if not client.record.correct:
            continue
        for operation, invoked_us, completed_us, result in client.record.operations:
            if completed_us is None:
                continue
            try:
                verb, key, token = unpackb_canonical(operation)
                outcome = kv_decode_result(result)
            except (ValueError, TypeError):
                continue
            if verb != "append" or outcome[0] != "ok":
                continue
            by_key.setdefault(key, []).append((invoked_us, completed_us, token, outcome[1]))
    violations = []
    for key, operations in by_key.items():
        values = sorted(operations, key=lambda op: len(op[3]))
        for invoked_us, completed_us, token, value in values:
            if not value.endswith(token):
                violations.append(Violation(
                    "linearizability", f"append to {key!r} returned a value without its token"))
        for shorter, longer in zip(values, values[1:]):
            if not longer[3].startswith(shorter[3]) or len(longer[3]) == len(shorter[3]):
                violations.append(Violation(
                    "linearizability", f"results for {key!r} are not one chain of appends"))
                break
        for a in operations:
            for b in operations:
                if a[1] < b[0] and not (len(a[3]) < len(b[3]) and b[3].startswith(a[3])):
                    violations.append(Violation(
                        "linearizability",
                        f"an append to {key!r} that finished first is not ordered first"))
                    break
    return violations


def liveness(sim: Simulation, finished: bool) -> list[Violation]:
    """With at most f faulty replicas, every request of a correct client completed within the
    liveness bound after the last fault healed."""
    if finished or len(sim.faulty) > sim.config.f:
        return []
    pending = [c.record.name for c in sim.clients if c.record.correct and not c.done]
    return [Violation("liveness", f"clients still waiting after the bound: {pending[:5]}")]


SAFETY_CHECKERS: tuple[Checker, ...] = (agreement, single_vote, validity, exactly_once)
