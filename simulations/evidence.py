"""Evidence checkers (issue 14, item 1): every step of a correct replica is checked, as it
happens, against what the engine actually delivered to it, not only the outcome.

For every replica without a Byzantine behaviour the engine records (`Simulation.evidence`):

- the PRE-PREPAREs it was delivered from the primary of their view (alone, or inside a
  LOGGED-BATCH), its own as primary, and those of a NEW-VIEW it installed;
- the PREPAREs and COMMITs delivered to it (inside a LOGGED-BATCH too), and its own;

each keyed by (view, sequence, digest), with the set of distinct replicas that vouched for it.
A vote counts for the replica its `replica` field names only if that replica really sent it:
it came over that replica's link from a correct replica, or its signature verifies (relayed
messages, such as the COMMITs of a commit certificate, and everything a Byzantine replica
sends, whose forgeries a correct replica must refuse). A PRE-PREPARE from a Byzantine link
must also carry the batch its digest names.

Checked when the replica acts (so evidence that arrives later does not excuse it):

    prepare_evidence     N3/N4: a PREPARE follows a PRE-PREPARE of that view's primary for
                         that (view, sequence, digest); the primary sends none.
    commit_evidence      N4/N5: a COMMIT follows that PRE-PREPARE and 2f matching PREPAREs
                         from distinct replicas other than the view's primary.
    execution_evidence   N5/N6: a first execution of (sequence, digest) follows 2f + 1
                         matching COMMITs of one view from distinct replicas (a commit
                         certificate's count too; state transfer executes nothing), and
                         lies within the replica's watermarks (N3).
    new_view_evidence    V3: an installed NEW-VIEW holds 2f + 1 valid VIEW-CHANGEs for its
                         view from distinct replicas, and exactly the PRE-PREPAREs V2 computes
                         from them (recomputed here, independently of the core).
    view_change_evidence V1: a VIEW-CHANGE carries, for every sequence number above its stable
                         checkpoint at which the replica sent a COMMIT in an earlier view, a
                         prepared certificate of that view or a later one.

Crashes: a restarted replica keeps only the evidence that its durable records still hold
(`restarted`): PRE-PREPAREs persisted, the PREPAREs of its persisted prepared certificates, its
own persisted votes. A wiped replica starts from nothing. Evidence at or below a replica's
stable checkpoint is dropped when the checkpoint advances (`collect`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pbft.codec import batch_digest, signing_payload
from pbft.messages import (
    NULL_DIGEST,
    Checkpoint,
    Commit,
    LoggedBatch,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    ViewChange,
)

if TYPE_CHECKING:
    from .engine import Simulation

Key = tuple[int, int, bytes]  # (view, sequence, digest)

#: The checkers, in the order they are reported.
CHECKERS = ("prepare_evidence", "commit_evidence", "execution_evidence", "new_view_evidence",
            "view_change_evidence")


class ReplicaEvidence:
    """What one replica was shown, and what it committed itself to."""

    __slots__ = ("pre_prepares", "prepares", "commits", "committed", "prepared", "low")

    def __init__(self) -> None:
        self.pre_prepares: set[Key] = set()
        self.prepares: dict[Key, set[int]] = {}
        self.commits: dict[Key, set[int]] = {}
        #: (sequence, digest) with 2f + 1 matching COMMITs of one view.
        self.committed: set[tuple[int, bytes]] = set()
        #: sequence -> (view, digest) of the latest COMMIT it sent (it had prepared there).
        self.prepared: dict[int, tuple[int, bytes]] = {}
        #: Its stable checkpoint as last seen (evidence at or below is dropped).
        self.low = 0


class Evidence:
    """The evidence of every replica of one simulation, and the findings (`violations`)."""

    def __init__(self, sim: "Simulation") -> None:
        self.sim = sim
        config = sim.config
        self.n = config.n
        self.f = config.f
        self.quorum = 2 * self.f + 1
        self.prepare_quorum = 2 * self.f
        self.window = 2 * config.log_window
        self.log_window = config.log_window
        self.keys = [info.public_key for info in config.replicas]
        self.of = [ReplicaEvidence() for _ in range(self.n)]
        #: The replicas with a Byzantine behaviour (the simulation's own dict, kept current).
        self._byzantine = sim.behaviours
        #: (checker, message, sequence, replica) in the order found.
        self.findings: list[tuple[str, str, int | None, int]] = []
        kinds: dict[type, Any] = {
            Prepare: self._delivered_prepare, Commit: self._delivered_commit,
            PrePrepare: self._delivered_pre_prepare, LoggedBatch: self._delivered_logged_batch,
        }
        #: By message type, what to record when one is delivered to a correct replica.
        self.on_delivery = kinds

    # ------------------------------------------------------------------ authenticity

    def _signed(self, message: Any) -> bool:
        replica = message.replica
        if not 0 <= replica < self.n:
            return False
        try:
            payload = signing_payload(message)
        except (TypeError, ValueError):
            return False
        return self.sim.verifier.verify(self.keys[replica], payload, message.signature)

    def _authentic(self, source: Any, message: Any) -> bool:
        """Whether `message` really comes from the replica it names: over that replica's own
        link from a correct replica, or else by its signature."""
        if message.replica == source and source not in self._byzantine:
            return True
        return self._signed(message)

    def _in_window(self, evidence: ReplicaEvidence, sequence: int) -> bool:
        return evidence.low < sequence <= evidence.low + self.window

    # ------------------------------------------------------------------ deliveries

    # The two below run for most deliveries: `_authentic` and `_in_window`, inline.

    def _delivered_prepare(self, destination: int, source: Any, m: Prepare) -> None:
        sender = m.replica
        if (sender != source or source in self._byzantine) and not self._signed(m):
            return
        evidence = self.of[destination]
        sequence, low = m.sequence, evidence.low
        if not low < sequence <= low + self.window:
            return
        key = (m.view, sequence, m.digest)
        senders = evidence.prepares.get(key)
        if senders is None:
            evidence.prepares[key] = {sender}
        else:
            senders.add(sender)

    def _delivered_commit(self, destination: int, source: Any, m: Commit) -> None:
        sender = m.replica
        if (sender != source or source in self._byzantine) and not self._signed(m):
            return
        evidence = self.of[destination]
        sequence, low = m.sequence, evidence.low
        if not low < sequence <= low + self.window:
            return
        self._add_commit(evidence, m.view, sequence, m.digest, sender)

    def _add_commit(self, evidence: ReplicaEvidence, view: int, sequence: int, digest: bytes,
                    sender: int) -> None:
        key = (view, sequence, digest)
        senders = evidence.commits.get(key)
        if senders is None:
            senders = evidence.commits[key] = set()
        senders.add(sender)
        if len(senders) >= self.quorum:
            evidence.committed.add((sequence, digest))

    def _delivered_pre_prepare(self, destination: int, source: Any, m: PrePrepare) -> None:
        evidence = self.of[destination]
        if m.replica != m.view % self.n or not self._in_window(evidence, m.sequence):
            return
        if not self._authentic(source, m):
            return
        if source in self._byzantine or m.replica != source:
            if m.requests and batch_digest(m.timestamp_ms, m.requests) != m.digest:
                return
        evidence.pre_prepares.add((m.view, m.sequence, m.digest))

    def _delivered_logged_batch(self, destination: int, source: Any, m: LoggedBatch) -> None:
        self._delivered_pre_prepare(destination, source, m.pre_prepare)
        for commit in m.commits:
            self._delivered_commit(destination, source, commit)

    # ------------------------------------------------------------------ what a replica does

    def _find(self, checker: str, replica: int, sequence: int | None, message: str) -> None:
        self.findings.append((checker, message, sequence, replica))

    def sent(self, replica: int, messages: Iterable[Any], low: int | None = None) -> None:
        """Check and record the PREPAREs, COMMITs, PRE-PREPAREs and VIEW-CHANGEs `replica`
        sends (its Ready's outbound messages); `low` is its stable checkpoint after that Ready:
        no vote of it lies above `low` + L (N3: its high watermark can only have been lower
        when the vote was made)."""
        high = None if low is None else low + self.log_window
        for outbound in messages:
            m = outbound.message
            kind = type(m)
            if (high is not None and m.sequence > high if kind is Prepare or kind is Commit
                    else False):
                self._find("prepare_evidence" if kind is Prepare else "commit_evidence",
                           replica, m.sequence,
                           f"replica {replica} sent a {kind.__name__.upper()} at sequence "
                           f"{m.sequence}, above its high watermark {high} (N3)")
            if kind is Prepare:
                self._sent_prepare(replica, m)
            elif kind is Commit:
                self._sent_commit(replica, m)
            elif kind is PrePrepare:
                if m.replica == replica == m.view % self.n:
                    self.of[replica].pre_prepares.add((m.view, m.sequence, m.digest))
            elif kind is ViewChange:
                self._sent_view_change(replica, m)

    def _sent_prepare(self, replica: int, m: Prepare) -> None:
        evidence = self.of[replica]
        key = (m.view, m.sequence, m.digest)
        if replica == m.view % self.n:
            self._find("prepare_evidence", replica, m.sequence,
                       f"replica {replica}, the primary of view {m.view}, sent a PREPARE")
        elif key not in evidence.pre_prepares:
            self._find("prepare_evidence", replica, m.sequence,
                       f"replica {replica} sent a PREPARE in view {m.view} for digest "
                       f"{m.digest.hex()[:8]} without a PRE-PREPARE of that view's primary")
        senders = evidence.prepares.get(key)
        if senders is None:
            evidence.prepares[key] = {replica}
        else:
            senders.add(replica)

    def _sent_commit(self, replica: int, m: Commit) -> None:
        evidence = self.of[replica]
        key = (m.view, m.sequence, m.digest)
        if key not in evidence.pre_prepares:
            self._find("commit_evidence", replica, m.sequence,
                       f"replica {replica} sent a COMMIT in view {m.view} for digest "
                       f"{m.digest.hex()[:8]} without a PRE-PREPARE of that view's primary")
        else:
            senders = evidence.prepares.get(key, ())
            primary = m.view % self.n
            count = sum(1 for sender in senders if sender != primary)
            if count < self.prepare_quorum:
                self._find("commit_evidence", replica, m.sequence,
                           f"replica {replica} sent a COMMIT in view {m.view} with {count} "
                           f"matching PREPAREs from distinct backups ({self.prepare_quorum} "
                           f"needed)")
        self._add_commit(evidence, m.view, m.sequence, m.digest, replica)
        latest = evidence.prepared.get(m.sequence)
        if latest is None or latest[0] <= m.view:
            evidence.prepared[m.sequence] = (m.view, m.digest)

    def _sent_view_change(self, replica: int, m: ViewChange) -> None:
        evidence = self.of[replica]
        certified = {c.pre_prepare.sequence: c.pre_prepare.view for c in m.prepared}
        missing = sorted(
            sequence for sequence, (view, _) in evidence.prepared.items()
            if m.stable_sequence < sequence and view < m.new_view
            and certified.get(sequence, -1) < view
        )
        if missing:
            self._find("view_change_evidence", replica, missing[0],
                       f"replica {replica}'s VIEW-CHANGE for view {m.new_view} lacks the "
                       f"prepared certificates of sequences {missing[:8]}, where it had sent "
                       f"COMMITs")

    def executed(self, replica: int, sequence: int, digest: bytes) -> None:
        """A first execution of (sequence, digest) by `replica`, reported between its Ready and
        its `advance()`: its stable checkpoint now is the Ready's low watermark, and nothing
        it executed lies above that + L (N3: its high watermark can only have been lower)."""
        if (sequence, digest) not in self.of[replica].committed:
            self._find("execution_evidence", replica, sequence,
                       f"replica {replica} executed sequence {sequence} (digest "
                       f"{digest.hex()[:8]}) without 2f + 1 matching COMMITs of one view")
        high = self.sim.replicas[replica].stable_checkpoint + self.log_window
        if sequence > high:
            self._find("execution_evidence", replica, sequence,
                       f"replica {replica} executed sequence {sequence}, above its high "
                       f"watermark {high} (N3)")

    def persisted(self, replica: int, records: tuple) -> None:
        """Before `replica`'s Ready is sent: a NEW-VIEW among its records is one it installs."""
        for record in records:
            if type(record) is NewView:
                self._installed(replica, record)

    def _installed(self, replica: int, m: NewView) -> None:
        reason = self._new_view_fault(m)
        if reason is not None:
            self._find("new_view_evidence", replica, None,
                       f"replica {replica} installed the NEW-VIEW of view {m.view}: {reason}")
        pre_prepares = self.of[replica].pre_prepares
        for pre_prepare in m.pre_prepares:
            pre_prepares.add((pre_prepare.view, pre_prepare.sequence, pre_prepare.digest))

    # ------------------------------------------------------------------ V2/V3, independently

    def _new_view_fault(self, m: NewView) -> str | None:
        view, primary = m.view, m.view % self.n
        if m.replica != primary or not self._signed(m):
            return "not signed by the view's primary"
        senders = set()
        for vc in m.view_changes:
            if vc.new_view != view or vc.replica in senders:
                return f"a VIEW-CHANGE of replica {vc.replica} for view {vc.new_view} or twice"
            senders.add(vc.replica)
            if (reason := self._view_change_fault(vc)) is not None:
                return f"replica {vc.replica}'s VIEW-CHANGE: {reason}"
        if len(senders) < self.quorum:
            return f"{len(senders)} VIEW-CHANGEs ({self.quorum} needed)"
        expected = self.plan(m.view_changes)
        got = [(pp.sequence, pp.digest, pp.timestamp_ms) for pp in m.pre_prepares]
        if got != expected:
            return (f"its PRE-PREPAREs are {_plan_text(got)}, V2 gives {_plan_text(expected)}")
        for pp in m.pre_prepares:
            if pp.view != view or pp.replica != primary or pp.requests or not self._signed(pp):
                return f"its PRE-PREPARE at sequence {pp.sequence} is not the primary's of view {view}"
        return None

    @staticmethod
    def plan(view_changes: Iterable[ViewChange]) -> list[tuple[int, bytes, int]]:
        """V2: for every n in (min-s, max-s], (n, digest, timestamp) of the prepared
        certificate of the highest view, or a null request."""
        view_changes = list(view_changes)
        min_s = max(vc.stable_sequence for vc in view_changes)
        chosen: dict[int, PrePrepare] = {}
        for vc in view_changes:
            for certificate in vc.prepared:
                pp = certificate.pre_prepare
                if pp.sequence > min_s and (pp.sequence not in chosen
                                            or chosen[pp.sequence].view < pp.view):
                    chosen[pp.sequence] = pp
        max_s = max(chosen, default=min_s)
        return [(s, chosen[s].digest, chosen[s].timestamp_ms) if s in chosen
                else (s, NULL_DIGEST, 0) for s in range(min_s + 1, max_s + 1)]

    def _view_change_fault(self, vc: ViewChange) -> str | None:
        if not self._signed(vc):
            return "bad signature"
        if vc.stable_sequence:
            proof_senders = set()
            for checkpoint in vc.checkpoint_proof:
                if (type(checkpoint) is not Checkpoint or checkpoint.sequence != vc.stable_sequence
                        or checkpoint.digest != vc.checkpoint_proof[0].digest
                        or not self._signed(checkpoint)):
                    return "bad checkpoint proof"
                proof_senders.add(checkpoint.replica)
            if len(proof_senders) < self.quorum:
                return f"checkpoint proof of {len(proof_senders)} replicas"
        sequences = set()
        for certificate in vc.prepared:
            pp = certificate.pre_prepare
            if pp.sequence in sequences:
                return f"two prepared certificates at sequence {pp.sequence}"
            sequences.add(pp.sequence)
            if (reason := self._certificate_fault(certificate, vc.new_view)) is not None:
                return f"prepared certificate at sequence {pp.sequence}: {reason}"
        return None

    def _certificate_fault(self, certificate: PreparedCertificate, new_view: int) -> str | None:
        pp = certificate.pre_prepare
        primary = pp.view % self.n
        if pp.view >= new_view or pp.replica != primary or not self._signed(pp):
            return "PRE-PREPARE not of an earlier view's primary"
        senders = set()
        for prepare in certificate.prepares:
            if (prepare.view, prepare.sequence, prepare.digest) != (pp.view, pp.sequence, pp.digest):
                return "a PREPARE for another (view, sequence, digest)"
            if prepare.replica == primary or not self._signed(prepare):
                return "a PREPARE of the primary or not signed"
            senders.add(prepare.replica)
        if len(senders) < self.prepare_quorum:
            return f"{len(senders)} distinct PREPAREs ({self.prepare_quorum} needed)"
        return None

    # ------------------------------------------------------------------ crashes, garbage

    def restarted(self, replica: int, records: list, wiped: bool, low: int) -> None:
        """`replica` recovers from `records`: it keeps only the evidence they still hold."""
        before = self.of[replica]
        after = self.of[replica] = ReplicaEvidence()
        after.low = low
        if wiped:
            return
        pre_prepares: set[Key] = set()
        prepares: dict[Key, set[int]] = {}
        commits: list[Commit] = []
        certified: set[Key] = set()
        for record in records:
            kind = type(record)
            if kind is PrePrepare:
                pre_prepares.add((record.view, record.sequence, record.digest))
            elif kind is PreparedCertificate:
                pp = record.pre_prepare
                key = (pp.view, pp.sequence, pp.digest)
                pre_prepares.add(key)
                certified.add(key)
                prepares.setdefault(key, set()).update(p.replica for p in record.prepares)
            elif kind is NewView:
                pre_prepares.update((pp.view, pp.sequence, pp.digest) for pp in record.pre_prepares)
            elif kind is Prepare and record.replica == replica:
                prepares.setdefault((record.view, record.sequence, record.digest),
                                    set()).add(replica)
            elif kind is Commit and record.replica == replica:
                commits.append(record)
        after.pre_prepares = pre_prepares & before.pre_prepares
        for key, senders in prepares.items():
            kept = senders & before.prepares.get(key, set())
            if kept:
                after.prepares[key] = kept
        for commit in commits:
            key = (commit.view, commit.sequence, commit.digest)
            if replica in before.commits.get(key, ()):
                self._add_commit(after, *key, replica)
        after.prepared = {s: vd for s, vd in before.prepared.items()
                          if (vd[0], s, vd[1]) in certified}

    def collect(self, replica: int, low: int) -> None:
        """`replica`'s stable checkpoint is now `low`: drop its evidence at or below it."""
        evidence = self.of[replica]
        evidence.low = low
        evidence.pre_prepares = {k for k in evidence.pre_prepares if k[1] > low}
        evidence.prepares = {k: v for k, v in evidence.prepares.items() if k[1] > low}
        evidence.commits = {k: v for k, v in evidence.commits.items() if k[1] > low}
        evidence.committed = {k for k in evidence.committed if k[0] > low}
        evidence.prepared = {s: vd for s, vd in evidence.prepared.items() if s > low}


def _plan_text(plan: list[tuple[int, bytes, int]]) -> str:
    shown = ", ".join(f"{s}:{d.hex()[:6]}" for s, d, _ in plan[:6])
    return f"[{shown}{', ...' if len(plan) > 6 else ''}] ({len(plan)})"
