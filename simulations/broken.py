"""Deliberately broken replicas, for testing the checkers and the search. NEVER use them for
anything else: each one breaks one PBFT rule on purpose.

Each class overrides one small piece of `pbft.core.Replica` (a method, or the helper object it
calls) so that the bug is obvious from reading it. The checkers only judge replicas that are
not in `sim.faulty`, so a broken class is meant to run as *every* replica of a simulation
(`Simulation(replica_class=...)`, or `use_replica_class(scenario.build(seed), cls)`): the
replicas look correct to the checkers, and what goes wrong is reported as a violation.

What exposes each (found by `simulations.search`; tests/test_sim_checkers.py sweeps for it):

    reexecute          N8   message loss (a retransmitted request is proposed twice):
                            exactly_once
    double_vote        N10  a Byzantine `ColludingBackup` below: agreement; on benign faults,
                            liveness (its prepared certificates hold one sender twice, so its
                            VIEW-CHANGEs are refused)
    commit_on_2f       N5   a Byzantine `ColludingBackup`: agreement
    no_conflict_check  N3   an equivocating primary (`simulations.byzantine`) whose twin arrives
                            while the original is committed but not yet executed: agreement
    amnesiac           N10  an equivocating primary and a backup that dies after sending
                            PREPAREs that never became durable, restarted before the twins
                            arrive: single_vote
    forgetful_new_primary   V3  a view change (the primary cut off or crashed) while the new
                            primary lags behind its NEW-VIEW: single_vote

`BROKEN` names them for the command line and for replay files
(`python -m simulations.search --broken NAME`).
"""

from __future__ import annotations

import copy
from dataclasses import replace

from pbft.core import Replica, quorum
from pbft.core.client_table import ClientTable
from pbft.core.log import LogEntry
from pbft.messages import (
    Commit,
    FetchLog,
    FetchState,
    Message,
    NewView,
    Prepare,
    PrePrepare,
    ViewChange,
)

from .byzantine import Behaviour, Send
from .engine import Simulation


class _RecountingVotes(dict):
    """Votes by sender that never notices it has seen a sender before: a second vote from the
    same sender is kept beside the first (under a fresh key), so it is counted again."""

    __slots__ = ()

    def __contains__(self, sender) -> bool:
        return False  # the bug: the duplicate check in `_on_prepare` / `_on_commit` never fires

    def __setitem__(self, sender, vote) -> None:
        if dict.__contains__(self, sender):
            sender = (sender, len(self))
        dict.__setitem__(self, sender, vote)


class DoubleVoteReplica(Replica):
    """Breaks N10 ("votes are counted once per sender"): a second PREPARE or COMMIT from the same
    sender (a network duplicate, a retransmission after recovery) is counted again."""

    def _entry(self, sequence: int) -> LogEntry:
        entry = self._log.get(sequence)
        if entry is None:
            entry = self._log[sequence] = LogEntry(self.view, sequence)
            entry.prepares, entry.commits = _RecountingVotes(), _RecountingVotes()
        return entry


class CommitOn2fReplica(Replica):
    """Breaks N5: a batch counts as committed-local with 2f matching COMMITs instead of 2f + 1."""

    def _check_committed(self, entry: LogEntry) -> None:
        if entry.committed or not entry.prepared:
            return
        if entry.matching_commits() < quorum.quorum(self._n) - 1:
            return
        entry.committed = True
        self._execute_committed()


class NoConflictCheckReplica(Replica):
    """Breaks N3 ("it has not accepted a different digest for (v, n)"): a backup accepts a second
    PRE-PREPARE for a (view, sequence) with another digest, and prepares it too."""

    def _reject_pre_prepare(self, m):
        reason = super()._reject_pre_prepare(m)
        if reason != "conflicting_pre_prepare":
            return reason
        # The bug: judge the second PRE-PREPARE as if the first had never arrived.
        entry = self._log[m.sequence]
        first, entry.pre_prepare = entry.pre_prepare, None
        try:
            return super()._reject_pre_prepare(m)
        finally:
            entry.pre_prepare = first


class _AnyDigestEntry(LogEntry):
    """A log entry whose votes all "match", whatever digest they carry."""

    __slots__ = ()

    def matching_prepares(self) -> int:
        return len(self.prepares)

    def matching_commits(self) -> int:
        return len(self.commits)

    def discard_mismatched_votes(self) -> int:
        return 0


class MismatchedDigestReplica(Replica):
    """Breaks N4/N5 ("matching" votes): PREPAREs and COMMITs held before the PRE-PREPARE are
    counted for it whatever digest they carry."""

    def _entry(self, sequence: int) -> LogEntry:
        entry = self._log.get(sequence)
        if entry is None:
            entry = self._log[sequence] = _AnyDigestEntry(self.view, sequence)
        return entry


class PrimaryPrepareReplica(Replica):
    """Breaks N4 ("2f PREPAREs from distinct *backups*"): a PREPARE from the view's primary is
    accepted and counted like a backup's."""

    def _reject_vote(self, vote, from_primary: bool) -> str | None:
        return super()._reject_vote(vote, False)


class NoCertificatesViewChangeReplica(Replica):
    """Breaks V1 ("P = a prepared certificate for every sequence number above n that prepared
    at it"): its VIEW-CHANGEs carry no prepared certificate."""

    def _start_view_change(self, new_view: int) -> None:
        kept, self._prepared_certificates = self._prepared_certificates, {}
        try:
            super()._start_view_change(new_view)
        finally:
            self._prepared_certificates = kept


class UncheckedNewViewReplica(Replica):
    """Breaks V3 ("a backup accepts NEW-VIEW only if ... it recomputes the same O"): it installs
    any NEW-VIEW of a higher view, unchecked."""

    def _on_new_view(self, message: NewView) -> None:
        if message.view < self.view or (message.view == self.view and self.view_active):
            return
        self._install_view(message)


class _ForgetfulClientTable(ClientTable):
    """A reply cache that never admits having executed anything."""

    __slots__ = ()

    def last_timestamp(self, client: bytes) -> int:
        return -1


class ReexecutingReplica(Replica):
    """Breaks N8 ("each request executes at most once"): execution does not consult the
    per-client table, so a request proposed twice (a retransmission) executes twice."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.client_table = _ForgetfulClientTable(self.config.client_table_max)


class AmnesiacReplica(Replica):
    """N10 across a crash: after recovery, votes again where its lost (sent but never durable)
    votes may have been, instead of withholding up to its vote horizon (pbft.messages.VoteHorizon)."""

    def _withholds(self, sequence: int) -> bool:
        return False


class ForgetfulNewPrimary(Replica):
    """Breaks V3/N10: a new primary numbers its next batches from its last executed sequence
    instead of above the NEW-VIEW's PRE-PREPAREs, so it proposes a second, different
    PRE-PREPARE for a (view, sequence) its NEW-VIEW already assigned."""

    def _install_view(self, new_view: NewView) -> None:
        super()._install_view(new_view)
        self._last_assigned = self.last_executed


class StaleReadsReplica(Replica):
    """Breaks R1 ("answer from the current state"): from its first checkpoint on, it answers
    read-only requests from a copy of its application taken then, never updated (as a replica
    answering from its last snapshot would). Not in `BROKEN`: the search's workload has no
    reads; any workload with reads exposes it (the bank's: the linearizability checker)."""

    _frozen = None

    def _execute_read_only(self, request) -> None:
        if self._frozen is None and self.last_executed >= self.config.checkpoint_interval:
            self._frozen = copy.deepcopy(self._app)
        if self._frozen is None:
            super()._execute_read_only(request)
            return
        result = self._frozen.query(request.operation, request.client)
        self._send_reply(request.client, request.timestamp, result, True)


class WatermarkOffByOneReplica(Replica):
    """Breaks N3 ("h < n ≤ H"): a sequence number one above the high watermark passes the
    bound. The C2' stash keeps PRE-PREPAREs and votes at H + 1 before the bound is asked, but a
    commit certificate (LOGGED-BATCH) meets it directly, so the replica can execute H + 1
    before its window moves. The core's own invariant that would stop the run there
    (`last_executed <= high_watermark`) is left out, so that only the evidence can tell."""

    def _reject_sequence(self, sequence: int) -> str | None:
        if sequence <= self.stable_checkpoint:
            return "below_low_watermark"
        if sequence > self.stable_checkpoint + self.config.log_window + 1:  # the bug: + 1
            return "above_high_watermark"
        return None

    def _check_invariants(self) -> None:
        pass


#: Broken replica classes by name (for `--broken NAME` and for replay files).
BROKEN: dict[str, type[Replica]] = {
    "double_vote": DoubleVoteReplica,
    "commit_on_2f": CommitOn2fReplica,
    "no_conflict_check": NoConflictCheckReplica,
    "reexecute": ReexecutingReplica,
    "amnesiac": AmnesiacReplica,
    "forgetful_new_primary": ForgetfulNewPrimary,
}

class _NoLimit:
    """A `pbft.core.rate_limit.RateLimit` that allows every request."""

    def allow(self, peer: int, now_ms: int) -> bool:
        return True


class UnlimitedServerReplica(Replica):
    """Breaks S1'' ("every request that makes a replica work for a peer is rate-limited per
    requesting replica"): it answers every FETCH-STATE and FETCH-LOG (catch-up and by digest)
    however often a peer asks. Nothing it does is unsafe and every client still completes;
    only the served-work oracle (`checkers.ServedWorkWatch`) sees it, once asks come faster
    than a correct fetcher paces them (a flooder, or a network that duplicates them:
    `multiply_asks`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._fetch_state_limit = self._catch_up_limit = self._batch_fetch_limit = _NoLimit()


def multiply_asks(sim: Simulation, copies: int) -> Simulation:
    """A network that delivers every FETCH-STATE and FETCH-LOG `copies` times (each copy with
    its own latency): duplication is a benign fault, which a correct replica's rate limits
    absorb (S1''). Replaces `sim.send` on this simulation; returns `sim`. Raises ValueError
    unless `copies` >= 1."""
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    send = sim.send

    def send_multiplied(source, destinations, message) -> None:
        for _ in range(copies if type(message) in (FetchState, FetchLog) else 1):
            send(source, destinations, message)

    sim.send = send_multiplied  # type: ignore[method-assign]
    return sim


#: Broken replicas that only the evidence checkers catch (tests/test_sim_evidence.py), by name;
#: not in `BROKEN`, which the search (`simulations.search`) targets one by one.
EVIDENCE_BROKEN: dict[str, type[Replica]] = {
    "mismatched_digest": MismatchedDigestReplica,
    "primary_prepare": PrimaryPrepareReplica,
    "view_change_without_certificates": NoCertificatesViewChangeReplica,
    "unchecked_new_view": UncheckedNewViewReplica,
    "watermark_off_by_one": WatermarkOffByOneReplica,
}


def use_replica_class(sim: Simulation, cls: type[Replica]) -> Simulation:
    """Make every replica of a freshly built simulation (one that has not run yet, e.g. from a
    catalogue scenario's `build(seed)`) an instance of `cls`, restarts included; return `sim`.
    Raises RuntimeError if the simulation has already run."""
    if sim.events:
        raise RuntimeError("the simulation has already run")
    sim.replica_class = cls
    sim.replicas = [cls(sim.config, i, sim.signers[i], sim.verifier, sim.apps[i], 0)
                    for i in range(len(sim.replicas))]
    return sim


def replica_class(name: str | None) -> type[Replica]:
    """The class named `name` in `BROKEN`, or the correct `Replica` for None / "correct".
    Raises KeyError for an unknown name."""
    if name in (None, "", "correct"):
        return Replica
    return BROKEN[name]


# ------------------------------------------------------------------ adversaries that expose them
#
# A quorum bug cannot break agreement while every replica is correct: a batch committed with
# COMMITs from k > f distinct replicas was prepared at those k, and any 2f + 1 VIEW-CHANGEs
# include one of them, so the next view carries it on. It takes a Byzantine replica (at most f,
# as PBFT allows) that lies in its VIEW-CHANGE to turn the bug into a violation. This is the
# smallest such replica; a correct `Replica` survives it (tests check it).


class ColludingBackup(Behaviour):
    """A Byzantine backup that helps `target` commit alone: it sends its PREPAREs and COMMITs to
    `target` only, each twice, and leaves its prepared certificates out of its VIEW-CHANGEs, so
    that a new view formed without `target` forgets what `target` committed."""

    description = "votes to one replica only (twice) and hides its prepared certificates"

    def __init__(self, target: int) -> None:
        self.target = target

    def outgoing(self, to: tuple, message: Message) -> Send:
        kind = type(message)
        if kind is Prepare or kind is Commit:
            return [((self.target,), message)] * 2 if self.target in to else []
        if kind is ViewChange and message.prepared:
            return [(to, self.context.sign(replace(message, prepared=())))]
        return [(to, message)]


class PreparingPrimary(Behaviour):
    """A Byzantine primary that also sends a signed PREPARE for each of its PRE-PREPAREs (a
    correct replica drops it: N4 counts backups only)."""

    description = "primary that also PREPAREs its own PRE-PREPAREs"

    def outgoing(self, to: tuple, message: Message) -> Send:
        if type(message) is PrePrepare:
            prepare = Prepare(message.view, message.sequence, message.digest,
                              self.context.replica_id, b"")
            return [(to, message), (to, self.context.sign(prepare))]
        return [(to, message)]
