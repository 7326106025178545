"""Linearizability of what correct clients saw, for any application: the application itself is
the sequential model.

The committed order is known: the requests in the batches correct replicas executed, in
sequence order (`Simulation.executed`, kept across crashes). Three things are checked:

(a) real time: an ordered request that completed before another request was invoked is
    ordered before it;
(b) every ordered result a correct client accepted, and every result a correct replica
    recorded, equals what a fresh `app_factory()` returns when the committed order is replayed
    on it, each request with the `ExecutionContext` the core builds (`Replica._execute`: the
    batch's sequence number, the request's client, the batch's executed timestamp);
(c) every result a correct client accepted on the read-only path (R1) equals `app.query` on
    the state after some prefix k of the committed order, where k covers every ordered request
    that completed before the read was invoked, includes no request invoked after the read
    completed, and reads agree with real time among themselves (a read invoked after another
    completed has k at least the other's). Reads are given the smallest k that fits, in order
    of invocation (a greedy choice: a smaller k only leaves later reads more room).

The replay runs once; each read is evaluated on the prefixes its window allows, while the
replay passes them. Requests of clients that are not correct are ordered like any other, but
their results and times are not judged (their invocation is unknown: no bound comes from it).

The replay stops at the first sequence number no correct replica executed (all of them
skipped it by state transfer): ordered results and reads beyond it are not judged, real-time
order still is (by sequence number and place in the batch).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from pbft.app import ExecutionContext, application_error_result

from .engine import Simulation
from .results import Violation

#: At most this many violations of one kind are listed; the last one says how many more.
_LISTED_MAX = 10


@dataclass
class _Committed:
    """The committed order as correct replicas executed it."""

    #: (sequence, place in the batch) of each request, by (client key, timestamp): its rank.
    rank_of: dict[tuple[bytes, int], tuple[int, int]]
    #: The requests of sequence numbers 1..replayable, flattened: position p (1-based) is
    #: requests[p - 1] = (sequence, executed timestamp, ExecutedRequest).
    requests: list[tuple[int, int, Any]]
    #: 1-based position of each of those requests.
    position_of: dict[tuple[bytes, int], int]
    #: The highest sequence number up to which every one was executed by a correct replica.
    replayable: int
    #: The highest sequence number any correct replica executed.
    highest: int


def committed_order(sim: Simulation) -> _Committed:
    """The committed order from the histories of the correct replicas (the first replica, by
    id, that executed a sequence number gives its batch; agreement checks the others)."""
    batches: dict[int, Any] = {}
    for replica in sim.correct_replicas():
        for batch in sim.executed[replica]:
            batches.setdefault(batch.sequence, batch)
    rank_of: dict[tuple[bytes, int], tuple[int, int]] = {}
    for sequence in sorted(batches):
        for place, executed in enumerate(batches[sequence].requests):
            key = (executed.request.client, executed.request.timestamp)
            rank_of.setdefault(key, (sequence, place))  # a second execution: exactly_once's
    replayable = 0
    while replayable + 1 in batches:
        replayable += 1
    requests = [(sequence, batches[sequence].timestamp_ms, executed)
                for sequence in range(1, replayable + 1)
                for executed in batches[sequence].requests]
    position_of: dict[tuple[bytes, int], int] = {}
    for position, (_, _, executed) in enumerate(requests, 1):
        position_of.setdefault((executed.request.client, executed.request.timestamp), position)
    return _Committed(rank_of, requests, position_of, replayable, max(batches, default=0))


@dataclass
class _Operation:
    """One operation of a correct client that went through the engine (`RequestMarks`)."""

    client: str
    index: int
    key: bytes
    operation: bytes
    invoked_us: int
    completed_us: int | None
    result: bytes | None
    #: (client key, timestamp) of the request whose result was accepted (None for a read
    #: answered on the read-only path, and for an operation not completed).
    ordered: tuple[bytes, int] | None

    def name(self) -> str:
        return f"{self.client}'s operation {self.index}"


@dataclass
class _Read:
    operation: _Operation
    low: int
    high: int
    #: The prefixes (number of requests executed) in [low, high] whose state gives the result.
    matches: list[int] = field(default_factory=list)
    chosen: int | None = None


def _operations(sim: Simulation) -> tuple[list[_Operation], dict[tuple[bytes, int], int]]:
    """The operations of correct clients, and the invocation time of every request they sent,
    by (client key, timestamp)."""
    operations = []
    invoked_of: dict[tuple[bytes, int], int] = {}
    for client in sim.clients:
        record = client.record
        if not record.correct:
            continue
        key = client.session.client
        for index, (operation, invoked_us, completed_us, result) in enumerate(record.operations):
            marks = record.marks.get(index)
            if marks is None:
                continue
            for timestamp in marks.timestamps:
                invoked_of[(key, timestamp)] = invoked_us
            ordered = None
            if completed_us is not None and not marks.answered_read_only:
                ordered = (key, marks.result_timestamp)
            operations.append(_Operation(record.name, index, key, operation, invoked_us,
                                         completed_us, result, ordered))
    return operations, invoked_of


def linearizability(sim: Simulation) -> list[Violation]:
    """(a), (b) and (c) of the module's docstring, on the finished `sim`."""
    order = committed_order(sim)
    operations, invoked_of = _operations(sim)
    ordered = [op for op in operations if op.ordered is not None]
    violations = _unexecuted(order, ordered)
    violations += _real_time(order, ordered, invoked_of, sim)
    reads = _read_windows(order, operations, ordered, invoked_of)
    app = sim.app_factory()
    expected = _replay(app, order, reads)
    violations += _replica_results(sim, order, expected)
    violations += _accepted_results(order, ordered, expected)
    violations += _assign_reads(sim, order, reads, ordered)
    return violations


def _unexecuted(order: _Committed, ordered: list[_Operation]) -> list[Violation]:
    """An accepted ordered result of a request no correct replica executed (judged only when
    no sequence number is missing from the correct replicas' histories)."""
    if order.replayable < order.highest:
        return []
    missing = [op for op in ordered if op.ordered not in order.rank_of]
    return _listed(missing, lambda op: Violation(
        "linearizability", f"{op.name()} accepted a result for a request that no correct "
                           f"replica executed"))


def _real_time(order: _Committed, ordered: list[_Operation],
               invoked_of: dict[tuple[bytes, int], int], sim: Simulation) -> list[Violation]:
    """(a): sweep the committed requests by invocation time, keeping the highest rank of the
    ordered requests completed before."""
    done = sorted((op.completed_us, order.rank_of[op.ordered], op) for op in ordered
                  if op.ordered in order.rank_of)
    later = sorted((invoked_us, order.rank_of[key], key) for key, invoked_us in invoked_of.items()
                   if key in order.rank_of)
    names = {c.session.client: c.record.name for c in sim.clients}
    found = []
    i = 0
    best: tuple[tuple[int, int], _Operation] | None = None
    for invoked_us, rank, key in later:
        while i < len(done) and done[i][0] < invoked_us:
            if best is None or done[i][1] > best[0]:
                best = (done[i][1], done[i][2])
            i += 1
        if best is not None and best[0] > rank:
            found.append((best[1], key, invoked_us, rank, best[0]))
    return _listed(found, lambda f: Violation(
        "linearizability",
        f"{f[0].name()} completed at {f[0].completed_us / 1000:.0f} ms but is ordered after "
        f"a request of {names.get(f[1][0], 'a client')} invoked at {f[2] / 1000:.0f} ms "
        f"(sequence {f[4][0]} after {f[3][0]})", f[4][0]))


def _read_windows(order: _Committed, operations: list[_Operation], ordered: list[_Operation],
                  invoked_of: dict[tuple[bytes, int], int]) -> list[_Read]:
    """The prefixes each completed read-only answer may come from, judged from ordered
    requests alone (reads among themselves are `_assign_reads`'s). A read that must follow a
    request beyond the replayable prefix, or one no correct replica executed, is not judged."""
    replayed = len(order.requests)
    beyond = replayed + 1
    completions = sorted((op.completed_us, order.position_of.get(op.ordered, beyond))
                         for op in ordered)
    completed_at = [c[0] for c in completions]
    # The highest position among the ordered requests completed before each point.
    highest_before = [0]
    for _, position in completions:
        highest_before.append(max(highest_before[-1], position))
    invocations = sorted((invoked_us, order.position_of[key])
                         for key, invoked_us in invoked_of.items() if key in order.position_of)
    invoked_at = [i[0] for i in invocations]
    # The lowest position among the committed requests invoked after each point.
    lowest_after = [beyond] * (len(invocations) + 1)
    for j in range(len(invocations) - 1, -1, -1):
        lowest_after[j] = min(lowest_after[j + 1], invocations[j][1])
    reads = []
    for op in operations:
        if op.ordered is not None or op.completed_us is None:
            continue
        low = highest_before[bisect.bisect_left(completed_at, op.invoked_us)]
        high = min(lowest_after[bisect.bisect_right(invoked_at, op.completed_us)] - 1, replayed)
        if low <= high:  # else (a) reports two ordered requests that cannot both hold, or
            reads.append(_Read(op, low, high))  # the read follows what cannot be replayed
    return reads


def _evaluate(app: Any, operation: _Operation) -> bytes:
    try:
        return app.query(operation.operation, operation.key)
    except Exception as error:  # noqa: BLE001 - the core answers with an error result
        return application_error_result(error)


def _replay(app: Any, order: _Committed, reads: list[_Read]) -> list[bytes]:
    """Execute the replayable committed order on `app`; at each prefix, note which pending
    reads its state answers as they were answered. Returns the result at each position."""
    pending = sorted(reads, key=lambda r: r.low)
    active: list[_Read] = []
    j = 0
    results = []
    for done in range(len(order.requests) + 1):
        while j < len(pending) and pending[j].low <= done:
            active.append(pending[j])
            j += 1
        if active:
            active = [r for r in active if r.high >= done]
            for read in active:
                if _evaluate(app, read.operation) == read.operation.result:
                    read.matches.append(done)
        if done == len(order.requests):
            break
        sequence, timestamp_ms, executed = order.requests[done]
        request = executed.request
        try:
            result = app.execute(request.operation,
                                 ExecutionContext(sequence, request.client, timestamp_ms))
        except Exception as error:  # noqa: BLE001 - as the core does (`Replica._execute`)
            result = application_error_result(error)
        results.append(result)
    return results


def _replica_results(sim: Simulation, order: _Committed, expected: list[bytes]) -> list[Violation]:
    """(b) for replicas: each correct replica's results equal the replay's (its first
    difference is reported)."""
    first_position = {}
    for position, (sequence, _, _) in enumerate(order.requests):
        first_position.setdefault(sequence, position)
    violations = []
    for replica in sim.correct_replicas():
        for batch in sim.executed[replica]:
            start = first_position.get(batch.sequence)
            if start is None:
                continue
            replayed = expected[start:start + len(batch.requests)]
            if [e.result for e in batch.requests] != replayed:
                violations.append(Violation(
                    "linearizability", f"replica {replica}'s results differ from a sequential "
                                       f"replay of the committed order", batch.sequence,
                    (replica,)))
                break
    return violations


def _accepted_results(order: _Committed, ordered: list[_Operation],
                      expected: list[bytes]) -> list[Violation]:
    """(b) for clients: every accepted ordered result equals the replay's."""
    wrong = [op for op in ordered
             if op.ordered in order.position_of
             and expected[order.position_of[op.ordered] - 1] != op.result]
    return _listed(wrong, lambda op: Violation(
        "linearizability", f"{op.name()} accepted a result that differs from a sequential "
                           f"replay of the committed order",
        order.rank_of[op.ordered][0]))


def _assign_reads(sim: Simulation, order: _Committed, reads: list[_Read],
                  ordered: list[_Operation]) -> list[Violation]:
    """(c): the greedy assignment, by invocation; a read that cannot be placed is reported
    (and places nothing: later reads are judged against the others)."""
    placed: list[_Read] = []
    stale: list[_Read] = []
    backwards: list[tuple[_Read, _Read]] = []
    for read in sorted(reads, key=lambda r: (r.operation.invoked_us, r.operation.client)):
        floor, because = read.low, None
        for earlier in placed:
            if earlier.operation.completed_us < read.operation.invoked_us and earlier.chosen > floor:
                floor, because = earlier.chosen, earlier
        choice = next((k for k in read.matches if k >= floor), None)
        if choice is not None:
            read.chosen = choice
            placed.append(read)
        elif because is not None and read.matches:
            backwards.append((read, because))
        else:
            stale.append(read)
    violations = _listed(backwards, lambda pair: Violation(
        "linearizability", f"{pair[0].operation.name()} (read-only, invoked at "
                           f"{pair[0].operation.invoked_us / 1000:.0f} ms) returned an older "
                           f"state than {pair[1].operation.name()} (read-only, completed at "
                           f"{pair[1].operation.completed_us / 1000:.0f} ms) had returned"))
    if stale:
        diagnoses = _diagnose(sim, order, stale[:_LISTED_MAX], ordered)
        violations += _listed(stale, lambda read: Violation(
            "linearizability", f"{read.operation.name()} (read-only, invoked at "
                               f"{read.operation.invoked_us / 1000:.0f} ms, completed at "
                               f"{read.operation.completed_us / 1000:.0f} ms) returned a state "
                               f"that no prefix of the committed order from {read.low} to "
                               f"{read.high} requests gives{diagnoses.get(id(read), '')}"))
    return violations


def _diagnose(sim: Simulation, order: _Committed, reads: list[_Read],
              ordered: list[_Operation]) -> dict[int, str]:
    """For reads that fit no prefix of their window: the latest earlier prefix they fit, and
    the completed request they miss that completed first (a stale read), by id(read). Replays
    again, once, only when some read failed."""
    completed_at = {order.position_of[op.ordered]: op for op in ordered
                    if op.ordered in order.position_of}
    app = sim.app_factory()
    fits: dict[int, int] = {}
    for done in range(len(order.requests) + 1):
        for read in reads:
            if done < read.low and _evaluate(app, read.operation) == read.operation.result:
                fits[id(read)] = done
        if done == len(order.requests) or done >= max(r.low for r in reads):
            break
        sequence, timestamp_ms, executed = order.requests[done]
        request = executed.request
        try:
            app.execute(request.operation, ExecutionContext(sequence, request.client, timestamp_ms))
        except Exception:  # noqa: BLE001, S110 - as in `_replay`
            pass
    notes = {}
    for read in reads:
        k = fits.get(id(read))
        if k is None:
            continue
        missed = [completed_at[p] for p in range(k + 1, read.low + 1) if p in completed_at
                  and completed_at[p].completed_us < read.operation.invoked_us]
        note = f"; it fits the prefix of {k} requests"
        if missed:
            first = min(missed, key=lambda op: op.completed_us)
            note += (f", missing {len(missed)} acknowledged before it was invoked, the first "
                     f"({first.name()}) {(read.operation.invoked_us - first.completed_us) / 1000:.0f}"
                     f" ms earlier")
        notes[id(read)] = note
    return notes


def _listed(items: list, make: Any) -> list[Violation]:
    """A violation for each of the first `_LISTED_MAX` items; the last one counts the rest."""
    violations = [make(item) for item in items[:_LISTED_MAX]]
    if len(items) > _LISTED_MAX:
        last = violations[-1]
        last.message += f" (and {len(items) - _LISTED_MAX} more like it)"
    return violations
