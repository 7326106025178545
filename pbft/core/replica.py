"""One PBFT replica, sans-I/O: the normal case (N1–N10, D1) and checkpoints (C1, C2).

Driven only through `receive(message)` and `tick(now_ms)`; it answers through `ready()` and
`advance()` (ARCHITECTURE.md). Everything that arrives from the network is data: a message that
breaks a rule is dropped and counted in `dropped[reason]`, never raised.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from ..app import ExecutionContext, StateMachine
from ..codec import batch_digest, request_digest, signing_payload
from ..config import ClusterConfig
from ..crypto import Signer, Verifier, sha256
from ..messages import (
    Checkpoint,
    Commit,
    Message,
    Prepare,
    PrePrepare,
    Reply,
    Request,
)
from . import quorum
from .client_table import ClientTable
from .log import LogEntry
from .ready import ExecutedBatch, ExecutedRequest, Outbound, Ready, Status

RequestKey = tuple[bytes, int]  # (client, timestamp)


class Replica:
    """A PBFT replica owning one `StateMachine`.

    `signer` must hold the key listed for `replica_id` in `config`; `verifier` checks everyone
    else's. The replica owns `app` from now on: nothing else may call it while the replica lives.
    """

    def __init__(
        self,
        config: ClusterConfig,
        replica_id: int,
        signer: Signer,
        verifier: Verifier,
        app: StateMachine,
        now_ms: int = 0,
    ) -> None:
        if not 0 <= replica_id < config.n:
            raise ValueError(f"replica id {replica_id} is not in 0..{config.n - 1}")
        if signer.public_key != config.public_key(replica_id):
            raise ValueError(f"the signer's key is not the key configured for replica {replica_id}")
        self.config = config
        self.id = replica_id
        self._signer = signer
        self._verifier = verifier
        self._app = app
        self.now_ms = now_ms
        self._n = config.n
        self._others = tuple(r for r in range(config.n) if r != replica_id)

        self.view = 0
        self.last_executed = 0
        #: h of C2: the sequence number of the last stable checkpoint.
        self.stable_checkpoint = 0
        self.stable_checkpoint_proof: tuple[Checkpoint, ...] = ()
        #: The timestamp the last executed batch was executed with (D1).
        self.last_batch_timestamp_ms = 0
        self.client_table = ClientTable(config.client_table_max)
        self.dropped: Counter[str] = Counter()

        self._log: dict[int, LogEntry] = {}
        #: CHECKPOINT messages by sequence number, then by sender (C1, C2).
        self._checkpoints: dict[int, dict[int, Checkpoint]] = {}
        # Primary only: the last sequence number assigned, the requests waiting for a batch (in
        # arrival order) and those proposed but not executed yet.
        self._last_assigned = 0
        self._last_proposed_timestamp_ms = 0
        self._pending: dict[RequestKey, Request] = {}
        self._proposed: set[RequestKey] = set()
        #: Backups: per client, the request it waits on and since when (N1; V1's timer).
        self._waiting: dict[bytes, tuple[int, int]] = {}

        self._persist: list[Message] = []
        self._messages: list[Outbound] = []
        self._replies: list[Reply] = []
        self._executed: list[ExecutedBatch] = []
        self._awaiting_advance = False

        self._handlers = {
            Request: self._on_request,
            PrePrepare: self._on_pre_prepare,
            Prepare: self._on_prepare,
            Commit: self._on_commit,
            Checkpoint: self._on_checkpoint,
        }

    # ------------------------------------------------------------------ the driver's interface

    def receive(self, message: Message) -> None:
        """Take one message from the network or a client. Bad input is dropped and counted."""
        handler = self._handlers.get(type(message))
        if handler is None:
            self.dropped["unexpected_message_type"] += 1
            return
        handler(message)
        self._check_invariants()

    def tick(self, now_ms: int) -> None:
        """Let time pass. `now_ms` never goes backwards (a smaller value is ignored)."""
        if now_ms > self.now_ms:
            self.now_ms = now_ms

    def has_ready(self) -> bool:
        return bool(self._persist or self._messages or self._replies or self._executed)

    def ready(self) -> Ready:
        """Collect the work produced since the last `advance()`; see `Ready` for the order."""
        if self._awaiting_advance:
            raise RuntimeError("ready() called twice without advance()")
        self._awaiting_advance = True
        ready = Ready(
            persist=tuple(self._persist),
            messages=tuple(self._messages),
            replies=tuple(self._replies),
            executed=tuple(self._executed),
            status=self.status(),
        )
        self._persist.clear()
        self._messages.clear()
        self._replies.clear()
        self._executed.clear()
        return ready

    def advance(self) -> None:
        """Acknowledge that the last `ready()` was persisted and sent."""
        if not self._awaiting_advance:
            raise RuntimeError("advance() called without ready()")
        self._awaiting_advance = False

    def status(self) -> Status:
        return Status(
            replica=self.id,
            view=self.view,
            primary=self.primary,
            last_executed=self.last_executed,
            low_watermark=self.stable_checkpoint,
            high_watermark=self.high_watermark,
            pending_requests=len(self._pending),
        )

    # ------------------------------------------------------------------ derived state

    @property
    def primary(self) -> int:
        return self.view % self._n

    @property
    def is_primary(self) -> bool:
        return self.view % self._n == self.id

    @property
    def high_watermark(self) -> int:
        return self.stable_checkpoint + self.config.log_window

    def log_size(self) -> int:
        return len(self._log)

    def waiting_requests(self) -> dict[bytes, tuple[int, int]]:
        """Backups: per client, the timestamp of the request it waits on and since when (ms)."""
        return dict(self._waiting)

    # ------------------------------------------------------------------ requests (N1, N8, R1)

    def _on_request(self, request: Request) -> None:
        record = self.client_table.get(request.client)
        if record is not None and request.timestamp <= record.timestamp and not request.read_only:
            if request.timestamp == record.timestamp:
                # N8: the request already executed: send the stored reply again.
                self._send_reply(request.client, record.timestamp, record.result, False)
            else:
                self.dropped["old_request"] += 1
            return
        key = (request.client, request.timestamp)
        if key in self._pending or key in self._proposed:
            self.dropped["duplicate_request"] += 1
            return
        if not self._verify_request(request):
            self.dropped["bad_request_signature"] += 1
            return
        if request.read_only:
            self._execute_read_only(request)
        elif self.is_primary:
            if len(self._pending) >= self.config.pending_requests_max:
                self.dropped["pending_requests_full"] += 1
                return
            self._pending[key] = request
            self._propose_batches()
        else:
            # N1/N9: a backup relays the request to the primary and starts its timer.
            self._send((self.primary,), request)
            waiting = self._waiting.get(request.client)
            if waiting is None or waiting[0] < request.timestamp:
                if waiting is None and len(self._waiting) >= self.config.pending_requests_max:
                    self.dropped["pending_requests_full"] += 1
                    return
                self._waiting[request.client] = (request.timestamp, self.now_ms)

    def _verify_request(self, request: Request) -> bool:
        return self._verifier.verify(request.client, signing_payload(request), request.signature)

    def _execute_read_only(self, request: Request) -> None:
        """R1: answer from the current state, unordered; the client needs 2f + 1 matching."""
        result = self._app.query(request.operation, request.client)
        self._send_reply(request.client, request.timestamp, result, True)

    # ------------------------------------------------------------------ the primary (N2, D1)

    def _propose_batches(self) -> None:
        """N2: close a batch when it is full, or at once when no batch is in flight."""
        size_max = self.config.batch_size_max
        while self._pending and self._last_assigned < self.high_watermark:
            in_flight = self._last_assigned > self.last_executed
            if in_flight and len(self._pending) < size_max:
                return
            keys = []
            for key in self._pending:
                keys.append(key)
                if len(keys) == size_max:
                    break
            requests = tuple(self._pending.pop(key) for key in keys)
            self._proposed.update(keys)
            self._pre_prepare(requests)

    def _pre_prepare(self, requests: tuple[Request, ...]) -> None:
        self._last_assigned += 1
        sequence = self._last_assigned
        timestamp_ms = max(self.now_ms, self._last_proposed_timestamp_ms)
        self._last_proposed_timestamp_ms = timestamp_ms
        digest = batch_digest(timestamp_ms, requests)
        pre_prepare = self._sign(
            PrePrepare(self.view, sequence, digest, timestamp_ms, requests, self.id, b"")
        )
        entry = self._entry(sequence)
        entry.pre_prepare = pre_prepare
        if discarded := entry.discard_mismatched_votes():
            self.dropped["mismatched_vote"] += discarded
        self._persist.append(pre_prepare)
        self._send(self._others, pre_prepare)
        self._check_prepared(entry)

    # ------------------------------------------------------------------ backups (N3, N4, D1)

    def _on_pre_prepare(self, pre_prepare: PrePrepare) -> None:
        if (reason := self._reject_pre_prepare(pre_prepare)) is not None:
            self.dropped[reason] += 1
            return
        entry = self._entry(pre_prepare.sequence)
        entry.pre_prepare = pre_prepare
        if discarded := entry.discard_mismatched_votes():
            self.dropped["mismatched_vote"] += discarded
        self._persist.append(pre_prepare)
        prepare = self._sign(
            Prepare(self.view, pre_prepare.sequence, pre_prepare.digest, self.id, b"")
        )
        entry.prepares[self.id] = prepare
        self._persist.append(prepare)
        self._send(self._others, prepare)
        self._check_prepared(entry)

    def _reject_pre_prepare(self, m: PrePrepare) -> str | None:
        """N3 and D1, cheapest checks first; None if `m` is acceptable."""
        if m.view != self.view:
            return "wrong_view"
        if m.replica != self.primary:
            return "pre_prepare_not_from_primary"
        if self.is_primary:
            return "pre_prepare_to_primary"
        if (reason := self._reject_sequence(m.sequence)) is not None:
            return reason
        entry = self._log.get(m.sequence)
        if entry is not None and entry.pre_prepare is not None:
            if entry.pre_prepare.digest != m.digest:
                return "conflicting_pre_prepare"
            return "duplicate_pre_prepare"
        if not m.requests or len(m.requests) > self.config.batch_size_max:
            return "bad_batch_size"
        if not self._verify_replica_signature(m):
            return "bad_signature"
        if batch_digest(m.timestamp_ms, m.requests) != m.digest:
            return "batch_digest_mismatch"
        if (reason := self._reject_batch_timestamp(m)) is not None:
            return reason
        seen: set[RequestKey] = set()
        for request in m.requests:
            key = (request.client, request.timestamp)
            if request.read_only or key in seen:
                return "bad_batch_request"
            seen.add(key)
            if not self._verify_request(request):
                return "bad_request_signature"
        return None

    def _reject_batch_timestamp(self, m: PrePrepare) -> str | None:
        """D1: not below the previous batch's, not above the next's, near our own clock."""
        if abs(m.timestamp_ms - self.now_ms) > self.config.timestamp_skew_max_ms:
            return "batch_timestamp_skew"
        floor = self.last_batch_timestamp_ms if m.sequence > self.last_executed else 0
        for sequence, entry in self._log.items():
            other = entry.pre_prepare
            if other is None or sequence == m.sequence:
                continue
            if sequence < m.sequence and other.timestamp_ms > m.timestamp_ms:
                return "batch_timestamp_backwards"
            if sequence > m.sequence and other.timestamp_ms < m.timestamp_ms:
                return "batch_timestamp_backwards"
        if m.timestamp_ms < floor:
            return "batch_timestamp_backwards"
        return None

    # ------------------------------------------------------------------ votes (N4, N5, N10)

    def _on_prepare(self, prepare: Prepare) -> None:
        if (reason := self._reject_vote(prepare, prepare.replica == self.primary)) is not None:
            self.dropped[reason] += 1
            return
        entry = self._entry(prepare.sequence)
        if prepare.replica in entry.prepares:
            self.dropped["duplicate_vote"] += 1
            return
        if entry.pre_prepare is not None and entry.pre_prepare.digest != prepare.digest:
            self.dropped["mismatched_vote"] += 1
            return
        if not self._verify_replica_signature(prepare):
            self.dropped["bad_signature"] += 1
            return
        entry.prepares[prepare.replica] = prepare
        self._check_prepared(entry)

    def _on_commit(self, commit: Commit) -> None:
        if (reason := self._reject_vote(commit, False)) is not None:
            self.dropped[reason] += 1
            return
        entry = self._entry(commit.sequence)
        if commit.replica in entry.commits:
            self.dropped["duplicate_vote"] += 1
            return
        if entry.pre_prepare is not None and entry.pre_prepare.digest != commit.digest:
            self.dropped["mismatched_vote"] += 1
            return
        if not self._verify_replica_signature(commit):
            self.dropped["bad_signature"] += 1
            return
        entry.commits[commit.replica] = commit
        self._check_committed(entry)

    def _reject_vote(self, vote: Prepare | Commit, from_primary: bool) -> str | None:
        """N4, N10: the checks every PREPARE and COMMIT passes before its signature is checked."""
        if not 0 <= vote.replica < self._n:
            return "unknown_replica"
        if from_primary:
            return "prepare_from_primary"
        if vote.view != self.view:
            return "wrong_view"
        if (reason := self._reject_sequence(vote.sequence)) is not None:
            return reason
        return None

    def _reject_sequence(self, sequence: int) -> str | None:
        """N3, N10: h < n ≤ H. Below h is merely late (already garbage-collected); above H is
        a sender running ahead or lying."""
        if sequence <= self.stable_checkpoint:
            return "below_low_watermark"
        if sequence > self.high_watermark:
            return "above_high_watermark"
        return None

    def _check_prepared(self, entry: LogEntry) -> None:
        """N4 → N5: once prepared, multicast COMMIT (once)."""
        if entry.prepared or entry.pre_prepare is None:
            return
        if entry.matching_prepares() < quorum.prepare_quorum(self._n):
            return
        entry.prepared = True
        commit = self._sign(Commit(self.view, entry.sequence, entry.digest, self.id, b""))
        entry.commits[self.id] = commit
        self._persist.append(commit)
        self._send(self._others, commit)
        self._check_committed(entry)

    def _check_committed(self, entry: LogEntry) -> None:
        if entry.committed or not entry.prepared:
            return
        if entry.matching_commits() < quorum.quorum(self._n):
            return
        entry.committed = True
        self._execute_committed()

    # ------------------------------------------------------------------ execution (N6–N8)

    def _execute_committed(self) -> None:
        """N6: execute committed batches strictly in sequence order."""
        while True:
            entry = self._log.get(self.last_executed + 1)
            if entry is None or not entry.committed:
                break
            self._execute(entry)
        if self.is_primary:
            self._propose_batches()

    def _execute(self, entry: LogEntry) -> None:
        pre_prepare = entry.pre_prepare
        assert pre_prepare is not None and entry.committed
        sequence = entry.sequence
        # D1: the application never sees time go backwards, even after a faulty primary.
        timestamp_ms = max(pre_prepare.timestamp_ms, self.last_batch_timestamp_ms)
        executed: list[ExecutedRequest] = []
        table = self.client_table
        execute = self._app.execute
        proposed, waiting, replies = self._proposed, self._waiting, self._replies
        view, me = self.view, self.id
        for request in pre_prepare.requests:
            client, timestamp = request.client, request.timestamp
            if proposed:
                proposed.discard((client, timestamp))
            if timestamp <= table.last_timestamp(client):
                continue  # N8: already executed (a retransmission proposed twice)
            result = execute(request.operation, ExecutionContext(sequence, client, timestamp_ms))
            table.record(client, timestamp, result, sequence)
            if client in waiting and waiting[client][0] <= timestamp:
                del waiting[client]
            replies.append(Reply(view, timestamp, client, me, result, False))  # N7
            executed.append(ExecutedRequest(request, result))
        self.last_executed = sequence
        self.last_batch_timestamp_ms = timestamp_ms
        self._executed.append(
            ExecutedBatch(sequence, entry.view, pre_prepare.digest, timestamp_ms, tuple(executed))
        )
        if sequence % self.config.checkpoint_interval == 0:
            self._take_checkpoint(sequence)

    def _send_reply(self, client: bytes, timestamp: int, result: bytes, read_only: bool) -> None:
        self._replies.append(Reply(self.view, timestamp, client, self.id, result, read_only))

    # ------------------------------------------------------------------ checkpoints (C1, C2)

    def state_digest(self) -> bytes:
        """The digest a CHECKPOINT carries: the application state and the reply cache."""
        return sha256(self._app.digest() + self.client_table.digest())

    def _take_checkpoint(self, sequence: int) -> None:
        """C1: multicast a signed CHECKPOINT of the state after executing `sequence`."""
        checkpoint = self._sign(Checkpoint(sequence, self.state_digest(), self.id, b""))
        self._persist.append(checkpoint)
        self._send(self._others, checkpoint)
        self._checkpoints.setdefault(sequence, {})[self.id] = checkpoint
        self._check_stable(sequence)

    def _on_checkpoint(self, checkpoint: Checkpoint) -> None:
        if (reason := self._reject_checkpoint(checkpoint)) is not None:
            self.dropped[reason] += 1
            return
        self._checkpoints.setdefault(checkpoint.sequence, {})[checkpoint.replica] = checkpoint
        self._check_stable(checkpoint.sequence)

    def _reject_checkpoint(self, c: Checkpoint) -> str | None:
        if not 0 <= c.replica < self._n:
            return "unknown_replica"
        if c.sequence % self.config.checkpoint_interval != 0:
            return "checkpoint_off_interval"
        if (reason := self._reject_sequence(c.sequence)) is not None:
            return reason
        if c.replica in self._checkpoints.get(c.sequence, ()):
            return "duplicate_vote"
        if not self._verify_replica_signature(c):
            return "bad_signature"
        return None

    def _check_stable(self, sequence: int) -> None:
        """C2: with 2f + 1 matching CHECKPOINTs (ours among them) the checkpoint is stable."""
        votes = self._checkpoints.get(sequence, {})
        own = votes.get(self.id)
        if own is None:
            return  # not executed that far yet; state transfer (S1) handles falling behind
        proof = tuple(c for c in votes.values() if c.digest == own.digest)
        if len(proof) < quorum.quorum(self._n):
            return
        self.stable_checkpoint = sequence
        self.stable_checkpoint_proof = tuple(sorted(proof, key=lambda c: c.replica))
        for s in [s for s in self._log if s <= sequence]:
            del self._log[s]
        for s in [s for s in self._checkpoints if s < sequence]:
            del self._checkpoints[s]
        if self.is_primary:
            self._propose_batches()

    # ------------------------------------------------------------------ helpers

    def _entry(self, sequence: int) -> LogEntry:
        entry = self._log.get(sequence)
        if entry is None:
            entry = self._log[sequence] = LogEntry(self.view, sequence)
        return entry

    def _sign(self, message):
        """The same message with our signature over its signing payload."""
        return replace(message, signature=self._signer.sign(signing_payload(message)))

    def _verify_replica_signature(self, message) -> bool:
        return self._verifier.verify(
            self.config.public_key(message.replica), signing_payload(message), message.signature
        )

    def _send(self, to: tuple[int, ...], message: Message) -> None:
        self._messages.append(Outbound(to, message))

    def _check_invariants(self) -> None:
        assert self.stable_checkpoint <= self.last_executed <= self.high_watermark, (
            self.stable_checkpoint,
            self.last_executed,
        )
        assert self._last_assigned <= self.high_watermark or not self.is_primary

