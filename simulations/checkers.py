"""Checkers that run after every simulation: agreement, validity, exactly-once,
linearizability of what clients saw, and liveness. Each returns the violations it found, naming
the checker, the sequence number and the replicas involved.

Only correct replicas are judged (a Byzantine replica may execute whatever it likes); crashed
and restarted replicas are correct, and so are replicas still down when the run ends: what they
did while up is judged (their executed history survives crashes, `Simulation.executed`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pbft.app import kv_decode_result
from pbft.codec import unpackb_canonical
from pbft.config import ClusterConfig
from pbft.core import sizes
from pbft.core.state_transfer import chunk_requests_per_source
from pbft.messages import Checkpoint, LoggedBatch, NewView, StateChunk

from .engine import ChainedObserver, Simulation
from .results import Violation
from .linearizability import linearizability

__all__ = ["linearizability"]  # re-exported: it runs with the other safety checkers

Checker = Callable[[Simulation], list[Violation]]


def agreement(sim: Simulation) -> list[Violation]:
    """No two correct replicas execute different batches at the same sequence number, and no
    correct replica executes a sequence number again (after a restart, from an older
    snapshot) differently from the first time (`Simulation.reexecuted_differently`)."""
    first: dict[int, tuple[bytes, int]] = {}
    correct = set(sim.correct_replicas())
    violations = [
        Violation("agreement", f"replica {replica} executed sequence {sequence} again with "
                               f"{difference}", sequence, (replica,))
        for replica, sequence, difference in sim.reexecuted_differently if replica in correct
    ]
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
    """With at most f faulty replicas (Byzantine, or down when the run ends), every request of
    a correct client completed within the liveness bound after the last fault healed."""
    if finished or len(sim.faulty | sim.down) > sim.config.f:
        return []
    pending = [c.record.name for c in sim.clients if c.record.correct and not c.done]
    return [Violation("liveness", f"clients still waiting after the bound: {pending[:5]}")]


def runaway(sim: Simulation) -> list[Violation]:
    """The run was stopped by its event budget (`Simulation.events_max`): something grew
    without end (a message storm), or the budget is too small for the scenario."""
    if not sim.runaway:
        return []
    return [Violation("runaway", f"stopped after {sim.events:,} events at "
                                 f"{sim.now_us / 1000:.0f} ms of virtual time (events_max)")]


def evidence(sim: Simulation) -> list[Violation]:
    """Issue 14, item 1: every PREPARE, COMMIT, execution, installed NEW-VIEW and VIEW-CHANGE
    of a correct replica follows from what it was delivered (`simulations.evidence`: N3-N5,
    V1-V3). Replicas down at the end are judged for what they did while up; a wiped replica
    for what it did with what it had, before and after the wipe. A simulation built without
    evidence (`Simulation(evidence=False)`) has nothing to judge."""
    if sim.evidence is None:
        return []
    correct = set(sim.correct_replicas())
    return [Violation(checker, message, sequence, (replica,))
            for checker, message, sequence, replica in sim.evidence.findings
            if replica in correct]


SAFETY_CHECKERS: tuple[Checker, ...] = (agreement, single_vote, validity, exactly_once,
                                        linearizability, evidence)


@dataclass
class CatchUpWatch:
    """Recovery without new load (issue 12, item 2): every correct replica running
    `bound_ms` after the last fault has executed at least the highest sequence number any
    correct replica had executed by the last fault. `install` before the run schedules the
    two observations (they are not faults, and keep the run going until the second);
    `violations` after it."""

    bound_ms: float
    #: The highest sequence number correct replicas had executed at the last fault.
    target: int | None = None
    #: Each correct running replica's `last_executed` at the deadline (None: not reached).
    reached: dict[int, int] | None = None

    def install(self, sim: Simulation) -> "CatchUpWatch":
        start_ms = sim.last_fault_us / 1000
        sim.at(start_ms, self._note_target, fault=False)
        sim.at(start_ms + self.bound_ms, self._note_reached, fault=False)
        return self

    def _note_target(self, sim: Simulation) -> None:
        self.target = max((batch.sequence for r in sim.correct_replicas()
                           for batch in sim.executed[r][-1:]), default=0)

    def _note_reached(self, sim: Simulation) -> None:
        self.reached = {r: sim.replicas[r].last_executed for r in sim.correct_replicas()
                        if r not in sim.down}

    def violations(self, sim: Simulation) -> list[Violation]:
        if self.target is None or self.reached is None:
            return [Violation("catch_up", f"the run ended before the catch-up deadline "
                                          f"({self.bound_ms:.0f} ms after the last fault)")]
        behind = {r: at for r, at in self.reached.items() if at < self.target}
        if not behind:
            return []
        return [Violation(
            "catch_up", f"{self.bound_ms:.0f} ms after the last fault, replicas "
                        f"{sorted(behind)} had executed only up to {behind} while sequence "
                        f"{self.target} had been executed before it",
            self.target, tuple(sorted(behind)))]


# ------------------------------------------------------------------ availability (issue 11)
#
# Safety holds under every attack tried; availability did not. These oracles judge the goals of
# issue 11 in a run; a scenario switches them on (`simulations.scenarios.Scenario`).


def request_wait_bound_ms(config) -> int:
    """The longest a correct client's request may wait, invocation to result, once the network
    is stable and with at most f faulty replicas, from the configured timeouts alone:

        client_retry_timeout_ms + (f + 1) * 2 * request_timeout_ms
                                + (2 ** (f + 1) - 1) * view_change_timeout_ms

    Why: within `client_retry_timeout_ms` the client has sent its request to every replica
    (N9), so every correct backup waits for it (V1). Of f + 1 consecutive primaries one is
    correct, so at most f + 1 views pass before one orders it. In each, a backup's request
    timer gives the primary at most 2 * `request_timeout_ms` (its period, and the one more it
    grants to catch up from replicas that are ahead), and the view change out of the i-th of
    those views takes at most `view_change_timeout_ms` * 2^i (V4 doubles the timeout while view
    changes fail): T (2^(f+1) - 1) in all. Message delays after stabilisation are taken to be
    small next to the timeouts (a correct primary orders within one request timer period, or
    it would be suspected in a fault-free run)."""
    f = config.f
    return (config.client_retry_timeout_ms + (f + 1) * 2 * config.request_timeout_ms
            + (2 ** (f + 1) - 1) * config.view_change_timeout_ms)


def request_waits_ms(sim: Simulation) -> list[tuple[str, int, float]]:
    """(client, operation index, wait in virtual ms) for every request of a correct client: from
    invocation to result, or to the end of the run for a request still waiting."""
    end_us = sim.now_us
    return [
        (client.record.name, i, ((end_us if done_us is None else done_us) - invoked_us) / 1000)
        for client in sim.clients if client.record.correct
        for i, (_, invoked_us, done_us, _) in enumerate(client.record.operations)
    ]


def request_wait(sim: Simulation, bound_ms: float) -> list[Violation]:
    """Goal (a) of issue 11: no correct client's request waits longer than `bound_ms`
    (`request_wait_bound_ms`), whether it completed or still waits when the run ends."""
    waits = request_waits_ms(sim)
    late = [w for w in waits if w[2] > bound_ms]
    if not late:
        return []
    name, index, wait_ms = max(late, key=lambda w: w[2])
    return [Violation(
        "request_wait",
        f"{len(late)} correct requests waited longer than {bound_ms:.0f} ms; the longest, "
        f"{name}'s request {index}, {wait_ms:.0f} ms")]


def _judged(sim: Simulation) -> set[int]:
    """The replicas the availability oracles judge: the correct ones, and those that are down
    when the run ends (`run_scenario` then counts them as faulty) but have no Byzantine
    behaviour: they are judged for what they did while up."""
    return set(sim.correct_replicas()) | (sim.down - set(sim.behaviours))


def bytes_held(sim: Simulation, bound: int) -> list[Violation]:
    """Goal (c) of issue 11: no correct replica ever held more than `bound` protocol bytes
    (`Replica.bytes_held()`, sampled by the engine: `Simulation.sample_memory`). A run that
    sampled nothing is a violation too: the oracle could not judge it. A replica down at the
    end is judged on its samples from while it was up."""
    if not sim.peak_bytes_held:
        return [Violation("bytes_held", "memory was never sampled (Simulation.sample_memory)")]
    return [
        Violation("bytes_held",
                  f"replica {replica} held {sim.peak_bytes_held[replica]:,} bytes at "
                  f"{sim.peak_bytes_held_at_ms[replica]} ms, above the bound of {bound:,}",
                  replicas=(replica,))
        for replica in sorted(_judged(sim))
        if sim.peak_bytes_held.get(replica, 0) > bound
    ]


def needless_view_changes(sim: Simulation, allowed: int = 0) -> list[Violation]:
    """Issue 11, items 1 and 8: no view change while the primary is correct. Counts the views v
    that a correct replica asked for (a VIEW-CHANGE it sent) although the primary of v - 1 is
    correct; with every replica correct, that is every view change. More than `allowed` is a
    violation. It cannot tell a correct primary cut off by the network from one that is merely
    reachable: switch it on only where the primary stays reachable."""
    n, faulty = sim.config.n, sim.faulty
    correct = _judged(sim)  # a replica down at the end is judged for what it asked while up
    needless = sorted({view for replica, view in sim.view_changes_sent
                       if replica in correct and (view - 1) % n not in faulty})
    if len(needless) <= allowed:
        return []
    askers = sorted({r for r, v in sim.view_changes_sent if r in correct and v in needless})
    return [Violation(
        "needless_view_change",
        f"{len(needless)} view changes with a correct primary (views {needless[:8]}"
        f"{'...' if len(needless) > 8 else ''}; at most {allowed} allowed)",
        replicas=tuple(askers))]


def correct_throughput(sim: Simulation) -> float:
    """Completed requests of correct clients per virtual second, from the first invocation to
    the last completion (to the end of the run if a correct request still waits)."""
    operations = [op for c in sim.clients if c.record.correct for op in c.record.operations]
    completed = [op[2] for op in operations if op[2] is not None]
    if not completed:
        return 0.0
    first_us = min(op[1] for op in operations)
    finished = len(completed) == len(operations) and sim.all_done()
    last_us = max(completed) if finished else sim.now_us
    return len(completed) / max(last_us - first_us, 1) * 1e6


def throughput(sim: Simulation, fault_free: Simulation, ratio_min: float) -> list[Violation]:
    """Goal (b) of issue 11: correct clients keep at least `ratio_min` of the throughput
    (`correct_throughput`) they have in `fault_free`, the same workload without the attack
    (already run)."""
    reference = correct_throughput(fault_free)
    achieved = correct_throughput(sim)
    if reference <= 0 or achieved >= ratio_min * reference:
        return []
    return [Violation(
        "throughput",
        f"correct clients completed {achieved:.1f} requests/s, {achieved / reference:.0%} of "
        f"the {reference:.1f}/s without the attack (at least {ratio_min:.0%} required)")]


# ------------------------------------------------------------------ work served to one peer
#
# Issue 11, item 7 cost CPU, which virtual time does not count: a replica serving a flooder
# without bound still lets every client complete. What it sends is counted instead.

#: What a correct replica sends one peer only because that peer asked (S1''): the answers to
#: FETCH-STATE (a STATE-CHUNK, or the proof of its stable checkpoint when the state asked for
#: is gone), to FETCH-LOG (LOGGED-BATCHes, the proof when the gap starts below its stable
#: checkpoint) and to an old VIEW-CHANGE (the NEW-VIEW that installed its view). They are the
#: only messages of these types it sends to a single replica (the others go to all of them).
SERVED_KINDS: dict[type, str] = {StateChunk: "STATE-CHUNKs", LoggedBatch: "LOGGED-BATCHes",
                                 Checkpoint: "CHECKPOINTs", NewView: "NEW-VIEWs"}


@dataclass(frozen=True)
class ServedWorkBudget:
    """What a correct replica may send one peer, answering its asks, in any `period_ms` of
    the replica's clock (both ends included): per message type, at most `messages[kind]`
    messages and `bytes[kind]` bytes (`served_bytes`)."""

    period_ms: int
    messages: dict[type, int]
    bytes: dict[type, int]


def served_work_budget(config: ClusterConfig) -> ServedWorkBudget:
    """S1'': the most a correct replica sends one peer on request in any T =
    `state_transfer_timeout_ms` (both ends included), from the rate limits of
    `pbft.core.rate_limit` (a bucket of `burst` allows at most burst + rate · W / period
    requests in any W ms) and the size bounds of `pbft.core.sizes`. With
    q = ceil(state_fetch_window / (n - 1)) and L = `log_window`:

    - FETCH-STATE, 2q at once and q per T: 3q requests, each answered by one STATE-CHUNK
      (≤ `state_chunk_bytes_max`) or, for a state no longer held, by the stable checkpoint's
      proof (≤ n CHECKPOINTs: 2f + 1 distinct senders or more, from a VIEW-CHANGE);
    - catch-up FETCH-LOG, 1 at once and 1 per T: 2 answers, each ≤ n CHECKPOINTs and
      ≤ L LOGGED-BATCHes with up to n COMMITs (the log holds h < s ≤ H only);
    - FETCH-LOG by digest, L at once and L per T: 2L LOGGED-BATCHes without COMMITs;
    - NEW-VIEW resent, 1 at once and 1 per R = max(1, view_change_timeout_ms // 4):
      1 + T // R NEW-VIEWs, each in one frame (≤ `frame_bytes_max`: one a faulty primary
      built may hold more VIEW-CHANGEs than a correct primary's).

    So 3q STATE-CHUNKs, n (3q + 2) CHECKPOINTs, 4L LOGGED-BATCHes (each batch
    ≤ `batch_bytes_max`, N2') and 1 + T // R NEW-VIEWs. The configuration is validated
    already; nothing here raises."""
    n, window, period = config.n, config.log_window, config.state_transfer_timeout_ms
    q = chunk_requests_per_source(config.state_fetch_window, n - 1)
    resend_ms = max(1, config.view_change_timeout_ms // 4)
    batch = sizes.CONTAINER_OVERHEAD_BYTES + config.batch_bytes_max
    messages = {StateChunk: 3 * q, Checkpoint: n * (3 * q + 2), LoggedBatch: 4 * window,
                NewView: 1 + period // resend_ms}
    return ServedWorkBudget(period, messages, {
        StateChunk: 3 * q * sizes.state_chunk_bytes_max(config),
        Checkpoint: messages[Checkpoint] * sizes.VOTE_BYTES,
        LoggedBatch: 2 * window * (batch + n * sizes.VOTE_BYTES) + 2 * window * batch,
        NewView: messages[NewView] * config.frame_bytes_max,
    })


def served_bytes(message: object) -> int:
    """An upper bound on the encoded size of an answer (`pbft.core.sizes`; a STATE-CHUNK by its
    data and proof)."""
    if type(message) is StateChunk:
        return (sizes.STATE_CHUNK_OVERHEAD_BYTES + len(message.data)
                + sizes.PROOF_ENTRY_BYTES * len(message.proof))
    return sizes.message_bytes(message)


class ServedWorkWatch(ChainedObserver):
    """Issue 14, item 2 (issue 11, item 7): records every answer (`SERVED_KINDS`, sent to a
    single replica) each replica's core sends, with the replica's own clock (the one its rate
    limits use), and judges the correct ones against `ServedWorkBudget`. A restarted replica
    starts with fresh rate limits, so each incarnation is judged on its own. `install` before
    the run (it passes everything on to the observer the simulation had); `violations` after.
    Draws nothing from the simulation's generator: the run is the same with or without it."""

    def __init__(self, budget: ServedWorkBudget) -> None:
        self.budget = budget
        #: (server, incarnation, peer) -> [(server's clock in ms, kind, bytes)], in order.
        self.served: dict[tuple[int, int, int], list[tuple[int, type, int]]] = {}
        self._instance: dict[int, tuple[object, int]] = {}

    def readied(self, replica_id: int, ready: Any) -> None:
        for outbound in ready.messages:
            message = outbound.message
            if len(outbound.to) == 1 and type(message) in SERVED_KINDS:
                self._note(replica_id, outbound.to[0], message)
        super().readied(replica_id, ready)

    def _note(self, server: int, peer: int, message: Any) -> None:
        assert self.sim is not None, "install() first"
        replica = self.sim.replicas[server]
        instance, incarnation = self._instance.get(server, (None, -1))
        if instance is not replica:  # restarted (`Simulation.restart` builds a new replica)
            incarnation += 1
            self._instance[server] = (replica, incarnation)
        self.served.setdefault((server, incarnation, peer), []).append(
            (replica.now_ms, type(message), served_bytes(message)))

    def busiest(self, answers: list[tuple[int, type, int]], kind: type
                ) -> tuple[int, int, int, int]:
        """The most `kind` messages and bytes in one budget period: (messages, from ms,
        bytes, from ms), each from the window where it peaks."""
        times = [(at, size) for at, k, size in answers if k is kind]
        period = self.budget.period_ms
        best = (0, 0, 0, 0)
        start, total = 0, 0
        for end, (at, size) in enumerate(times):
            total += size
            while at - times[start][0] > period:
                total -= times[start][1]
                start += 1
            count = end - start + 1
            if count > best[0]:
                best = (count, times[start][0], best[2], best[3])
            if total > best[2]:
                best = (best[0], best[1], total, times[start][0])
        return best

    def violations(self, sim: Simulation) -> list[Violation]:
        """One "served_work" violation per correct replica, peer and message type whose busiest
        period holds more messages than the budget (or, if not, more bytes). A replica down at
        the end is judged for what it served while up; a Byzantine one is not judged."""
        judged = _judged(sim)
        budget, found = self.budget, []
        for (server, _, peer), answers in sorted(self.served.items(), key=lambda kv: kv[0]):
            if server not in judged:
                continue
            for kind, name in SERVED_KINDS.items():
                count, count_at, size, size_at = self.busiest(answers, kind)
                if count > budget.messages[kind]:
                    found.append(Violation(
                        "served_work",
                        f"replica {server} served replica {peer} {count:,} {name} within "
                        f"{budget.period_ms} ms (from {count_at} ms); at most "
                        f"{budget.messages[kind]:,} (S1'')", replicas=(server,)))
                elif size > budget.bytes[kind]:
                    found.append(Violation(
                        "served_work",
                        f"replica {server} served replica {peer} {size:,} bytes of {name} "
                        f"within {budget.period_ms} ms (from {size_at} ms); at most "
                        f"{budget.bytes[kind]:,} (S1'')", replicas=(server,)))
        return found
