"""One PBFT replica, sans-I/O: the normal case (N1–N10, D1), checkpoints (C1, C2), view change
(V1–V6), state transfer (S1) and read-only requests (R1), with this library's extensions that
keep it live under the faults it tolerates (docs/PBFT-RULES.md: N1', N2', N8', C2', V1', V1'',
V3', S1', S1'').

Driven only through `receive(message)` and `tick(now_ms)`; it answers through `ready()` and
`advance()` (docs/ARCHITECTURE.md). Everything that arrives from the network is data: a
message that breaks a rule is dropped and counted in `dropped[reason]`, never raised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from ..app import ExecutionContext, StateMachine, application_error_result
from ..codec import batch_digest, signing_payload
from ..config import ClusterConfig
from ..crypto import Signer, Verifier
from ..messages import (
    NULL_DIGEST,
    Checkpoint,
    Commit,
    FetchLog,
    FetchState,
    LoggedBatch,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Reply,
    Request,
    SnapshotRecord,
    StateChunk,
    ViewChange,
    VoteHorizon,
)
from . import quorum, sizes
from .client_table import ClientRecord, ClientTable
from .log import LogEntry
from .mode import Mode
from .ready import ExecutedBatch, ExecutedRequest, Outbound, Ready, Status
from .rate_limit import RateLimit
from .reads import DeferredReads
from .recovery import read_records
from .stash import Stash
from .state_transfer import (
    ChunkedSnapshot,
    FetchPacer,
    Lagging,
    StateFetch,
    StateTransferRecord,
    chunk_requests_per_source,
    decode_snapshot,
    encode_snapshot,
    snapshot_digest,
)
from .timeout import Timeout
from .view_change import new_view_plan, new_view_reason, view_change_reason
from .waiting import WaitingRequests

RequestKey = tuple[bytes, int]  # (client, timestamp)
#: V1'': the proposal delay a backup tolerates, in commit rounds it measured itself.
PROPOSAL_ROUNDS = 3
#: Records that a Ready may send ahead of (`Ready.durable_first` False), a vote horizon covering
#: them: PRE-PREPAREs (the primary's, or accepted) and our PREPAREs.
_VOTE_RECORDS = frozenset((PrePrepare, Prepare))
# Module-level names for the modes: one is compared on the path of every vote.
_NORMAL, _VIEW_CHANGE, _FETCHING_STATE = Mode.NORMAL, Mode.VIEW_CHANGE, Mode.FETCHING_STATE


class Replica:
    """A PBFT replica owning one `StateMachine`.

    `signer` must hold the key listed for `replica_id` in `config`; `verifier` checks everyone
    else's. The replica owns `app` from now on: nothing else may call it while the replica lives.
    Raises ValueError if the id or the key does not match the configuration.
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
        self._keys = tuple(r.public_key for r in config.replicas)
        # Fixed by the configuration; looked up on the path of every vote.
        self._quorum = quorum.quorum(config.n)
        self._prepare_quorum = quorum.prepare_quorum(config.n)
        self._log_window = config.log_window

        self.view = 0
        self._mode = _NORMAL
        self.last_executed = 0
        #: h of C2: the sequence number of the last stable checkpoint.
        self.stable_checkpoint = 0
        self.stable_checkpoint_proof: tuple[Checkpoint, ...] = ()
        #: The timestamp the last executed batch was executed with (D1).
        self.last_batch_timestamp_ms = 0
        self.client_table = ClientTable(config.client_capacity)
        #: N8': the listed clients (empty: any key is a client) and the application's say.
        self._admitted = frozenset(config.clients)
        self._app_admits = getattr(app, "admits", None)
        self.dropped: Counter[str] = Counter()
        #: Our state differed from a proven checkpoint's: we execute nothing more and fetch
        #: the next proven checkpoint instead (S1).
        self._diverged = False
        #: Exceptions the application raised, by type (see `_application_raised`).
        self.application_errors: Counter[str] = Counter()
        self.view_changes_started = 0
        self.state_transfers_completed = 0

        self._log: dict[int, LogEntry] = {}
        #: Batches by digest, while a sequence number above h names them (`_batch_last_use`):
        #: to execute entries whose NEW-VIEW PRE-PREPARE came without its batch, and to answer
        #: FETCH-LOG. (The kept PRE-PREPARE's own sequence number means nothing here.)
        self._batches: dict[bytes, PrePrepare] = {}
        #: C2': per batch digest, the highest sequence number that refers to it. A batch lives
        #: while any n > h does (one batch may be proposed at several n by a faulty primary).
        self._batch_last_use: dict[bytes, int] = {}
        #: V3: batches a NEW-VIEW named that we asked for, by digest, with the sequence number
        #: that needs each.
        self._missing_batches: dict[bytes, int] = {}
        #: The prepared certificate of the highest view for each n > h (V1's P).
        self._prepared_certificates: dict[int, PreparedCertificate] = {}
        #: CHECKPOINT messages by sequence number, then by sender (C1, C2).
        self._checkpoints: dict[int, dict[int, Checkpoint]] = {}
        #: Our own snapshots at checkpoints ≥ h, prepared for serving to replicas that fall
        #: behind (S1, S1'): chunked and hashed once.
        self._snapshots: dict[int, ChunkedSnapshot] = {
            self.stable_checkpoint: ChunkedSnapshot(self._snapshot(), config.state_chunk_bytes)
        }
        #: The state fetch in progress (the data of Mode.FETCHING_STATE; see Mode).
        self._fetch: StateFetch | None = None
        #: The last completed state transfer (what, and how long its fetch took).
        self.last_state_transfer: StateTransferRecord | None = None
        # S1': q chunk requests per source per state_transfer_timeout_ms, across fetches; and
        # as a server (S1''), each requester gets 2q at once and q per period (never refusing a
        # fetcher that paces itself so, whatever the delays up to a period).
        period_ms = config.state_transfer_timeout_ms
        chunks_per_period = chunk_requests_per_source(config.state_fetch_window, config.n - 1)
        self._fetch_pacer = FetchPacer(chunks_per_period, period_ms)
        self._fetch_state_limit = RateLimit(chunks_per_period, period_ms, 2 * chunks_per_period)
        #: A stable checkpoint proven above what we executed, waited for (`_lagging_timer`).
        self._lagging: Lagging | None = None

        # Primary only: the last sequence number assigned, the requests waiting for a batch (in
        # arrival order) and those proposed but not executed yet.
        self._last_assigned = 0
        self._last_proposed_timestamp_ms = 0
        self._pending: dict[RequestKey, Request] = {}
        self._pending_bytes = 0
        self._batch_delay_ms = config.batch_delay_ms
        self._proposed: set[RequestKey] = set()
        #: Per client, the request we wait on (N1, V1), oldest first, bounded like `_pending`;
        #: and (backups, V1'') which of them no PRE-PREPARE of this view has carried yet.
        self._waiting = WaitingRequests(
            config.pending_requests_max, config.pending_bytes_max, config.propose_timeout
        )
        #: R1': the highest sequence number we prepared, and the reads waiting until we have
        #: executed as far as a read needs (bounded like `_pending`).
        self._prepared_horizon = 0
        self._deferred_reads = DeferredReads(config.pending_requests_max, config.pending_bytes_max)
        #: V1': the client whose waiting request runs the request timer (the oldest waiting
        #: when the timer started): only its execution restarts the timer.
        self._timed: bytes | None = None
        #: V1'': the highest sequence number of this view's PRE-PREPAREs (while one is not
        #: executed here, the primary has a batch in flight and need not propose).
        self._last_pre_prepared = 0
        #: V1'': when we last executed a batch.
        self._last_execution_ms = now_ms
        #: V1'': how long a batch takes here from its PRE-PREPARE to its execution (a moving
        #: average: about two message delays. A faulty primary can lengthen it, by sending its
        #: PRE-PREPAREs late to some backups; propose_timeout_ms caps what that buys it).
        self._commit_round_ms: int | None = None
        #: V1'': per replica, when a vote of it last reached us (its signature is not checked
        #: for this: it only tells a slow primary from our own isolation).
        self._heard_ms = [-(1 << 62)] * config.n
        #: V1: the timer already gave us one more period to catch up since the last progress.
        self._timer_deferred = False
        #: V4: the view change in progress is given up for the next view after this, doubled at
        #: each view change without progress.
        self._view_change_timeout_ms = config.view_change_timeout_ms
        #: While a view change is in progress, our VIEW-CHANGE is sent again this often.
        self._view_change_retransmit_interval = max(1, config.view_change_timeout_ms // 4)
        #: Each replica's VIEW-CHANGE for the highest view it asked for (V2, V5).
        self._view_change_messages: dict[int, ViewChange] = {}
        #: The NEW-VIEW that installed `view` (resent to replicas still asking for it).
        self._new_view: NewView | None = None
        #: V3', C2': per sender, messages kept for later: of the next view we can install, or
        #: of this view within one window above the high watermark. At most stash_bytes_max
        #: bytes per sender; released when the view is installed or the window advances.
        self._stash = Stash(config.stash_max, config.stash_bytes_max)
        #: The low watermark advanced: stashed messages above the old high watermark are due.
        self._stash_due = False
        #: Per replica, the highest view we saw it working in above ours (V5 for late joiners).
        self._higher_view_seen: dict[int, int] = {}
        #: Catch-up (S1): the highest sequence others have shown us, and when we last executed.
        self._highest_seen = 0
        self._last_progress_ms = now_ms
        self._log_fetch_source = replica_id
        #: S2: catch-up asks still due after a restart or a state transfer, whether or not we
        #: know of anything beyond what we executed.
        self._recovery_asks = 0
        #: Per requesting replica: one catch-up FETCH-LOG answer per state_transfer_timeout_ms,
        #: and a log window of batches by digest per period (S1'').
        self._catch_up_limit = RateLimit(1, period_ms, 1)
        self._batch_fetch_limit = RateLimit(config.log_window, period_ms, config.log_window)
        #: S1'': the NEW-VIEW resent to a replica still asking for the installed view at most
        #: once per VIEW-CHANGE retransmission interval (its retransmissions keep asking).
        self._new_view_resend_limit = RateLimit(1, self._view_change_retransmit_interval, 1)

        #: Our votes (PRE-PREPAREs as primary, PREPAREs as backup) may go out before they are
        #: durable up to this (view, sequence), promised by a durable VoteHorizon (see there).
        self._vote_horizon: tuple[int, int] | None = None
        #: After recovery: (view, n) such that we may have sent, and lost, votes of that view
        #: up to n; we send none of ours there. Counted in `votes_withheld`.
        self._withheld: tuple[int, int] | None = None
        self.votes_withheld = 0
        #: V5': the view we last worked in and its NEW-VIEW; during a view change of ours, per
        #: other replica the highest view below ours (not below the one we left) it was seen
        #: working in, and the later view whose NEW-VIEW we asked for; the view we follow
        #: without voting.
        self._left_view = 0
        self._left_new_view: NewView | None = None
        self._seen_working: dict[int, int] = {}
        self._rejoining: int | None = None
        self._passive_view: int | None = None
        self.view_changes_abandoned = 0
        #: Votes that arrived once their quorum was complete: not verified, not kept.
        self.surplus_votes = 0

        self._persist: list[Message] = []
        self._messages: list[Outbound] = []
        self._replies: list[Reply] = []
        self._executed: list[ExecutedBatch] = []
        self._awaiting_advance = False
        #: The last `status()` and what it was built from (reused while that is unchanged).
        self._status_key: tuple[int, int, int, int, int] | None = None
        self._status: Status | None = None

        self._handlers = {
            Request: self._on_request,
            PrePrepare: self._on_pre_prepare,
            Prepare: self._on_prepare,
            Commit: self._on_commit,
            Checkpoint: self._on_checkpoint,
            ViewChange: self._on_view_change,
            NewView: self._on_new_view,
            FetchState: self._on_fetch_state,
            StateChunk: self._on_state_chunk,
            FetchLog: self._on_fetch_log,
            LoggedBatch: self._on_logged_batch,
        }

        #: V1, V1': runs for the request of client `_timed` (also during a view change, when
        #: it is ignored: V4's timers run instead).
        self._request_timer = Timeout()
        #: V4: the view change in progress is given up for the next view.
        self._view_change_timer = Timeout()
        #: Our VIEW-CHANGE is sent again: runs exactly while a view change is in progress.
        self._view_change_resend_timer = Timeout()
        #: S1: the batches in flight have had their time to reach `_lagging`.
        self._lagging_timer = Timeout()
        #: S1': runs while a fetch does; due at every tick from its start (the fetch's requests
        #: time out one by one, and its sources' quotas free up as time passes).
        self._fetch_timer = Timeout()
        #: N2 with batch_delay_ms: the open batch may close (batch_delay_ms after it opened;
        #: at once if it is full and waits only for room in the window).
        self._batch_timer = Timeout()
        #: S1: the next catch-up FETCH-LOG may go (one per state_transfer_timeout_ms).
        self._catch_up_timer = Timeout()
        self._catch_up_timer.start(now_ms, 0)
        #: What tick() walks, in this order (see there).
        self._timers: tuple[tuple[Timeout, Callable[[int], None]], ...] = (
            (self._request_timer, self._on_request_timeout),
            (self._waiting.proposal_timer, self._on_proposal_timeout),
            (self._view_change_timer, self._on_view_change_timeout),
            (self._view_change_resend_timer, self._on_view_change_resend),
            (self._lagging_timer, self._on_lagging_timeout),
            (self._fetch_timer, self._on_fetch_timer),
            (self._batch_timer, self._on_batch_timeout),
            (self._catch_up_timer, self._on_catch_up_timer),
        )

    @classmethod
    def recover(
        cls,
        config: ClusterConfig,
        replica_id: int,
        signer: Signer,
        verifier: Verifier,
        app: StateMachine,
        records: list[Message],
        now_ms: int = 0,
    ) -> "Replica":
        """A replica restarted from its durable records (everything its `ready().persist` ever
        held, in order; records below the last stable checkpoint may have been dropped).

        It restores its latest own snapshot, its view, its prepared certificates and its own
        votes, so that it never votes differently for a (view, sequence) than before the crash;
        then it re-sends those votes and asks the others for the committed batches it lacks (S1).
        `app` must be fresh (it is restored from the snapshot). Records it cannot use are
        ignored; raises ValueError if a snapshot record cannot be decoded (corrupt storage).
        """
        replica = cls(config, replica_id, signer, verifier, app, now_ms)
        replica._recover(records)
        return replica

    def _recover(self, records: list[Message]) -> None:
        state = read_records(records, self.id)
        snapshot = state.snapshot
        if snapshot is not None:
            app_snapshot, table_snapshot, timestamp_ms = decode_snapshot(snapshot.snapshot)
            self._app.restore(app_snapshot)
            self.client_table.restore(table_snapshot)
            self.last_batch_timestamp_ms = timestamp_ms
            self.last_executed = snapshot.sequence
            self._snapshots = {
                snapshot.sequence: ChunkedSnapshot(snapshot.snapshot, self.config.state_chunk_bytes)
            }
        # The highest checkpoint whose 2f + 1 proof was persisted is the stable one (C2).
        proven = []
        for sequence in sorted(state.checkpoints):
            found = quorum.proven_checkpoint(state.checkpoints[sequence].values(), self._n)
            if found is not None:
                proven.append((sequence, *found))
        for sequence, _, proof in proven:
            if sequence <= self.last_executed:
                self.stable_checkpoint, self.stable_checkpoint_proof = sequence, proof
        self._checkpoints = {
            s: dict(v) for s, v in state.checkpoints.items() if s >= self.stable_checkpoint
        }
        # S1: the snapshots others may fetch from us, as before the crash: from the stable
        # checkpoint's (a replica further behind needs exactly that one) to the latest.
        for sequence, record in state.snapshots.items():
            if self.stable_checkpoint <= sequence < self.last_executed:
                self._snapshots[sequence] = ChunkedSnapshot(
                    record.snapshot, self.config.state_chunk_bytes)
        if proven and proven[-1][0] > self.last_executed:
            # We had learnt of a stable checkpoint beyond our state: fetch it (S1).
            sequence, digest, proof = proven[-1]
            self._advance_stable_checkpoint(sequence, proof)
            self._start_fetch(sequence, digest)
        if state.own_view_change is not None:
            self._view_change_messages[self.id] = state.own_view_change
        self._new_view = state.new_view
        if state.new_view is not None:
            self._left_view, self._left_new_view = state.new_view.view, state.new_view
        view, active = state.view, state.view_active
        certificates, pre_prepares, own_votes = (
            state.certificates, state.pre_prepares, state.own_votes
        )
        h = self.stable_checkpoint
        self.view = view
        if not active:
            self._mode = _VIEW_CHANGE
        horizon = state.vote_horizon
        if horizon is not None and horizon.view == view:
            # Votes up to the horizon may have left before they were durable: not again.
            self._vote_horizon = self._withheld = (horizon.view, horizon.sequence)
        # Keep what advancing to h above set (never below h: a primary restarted while fetching
        # the state at h must not propose again at numbers it used before, N10).
        self._last_assigned = max(self._last_assigned, self.last_executed)
        self._prepared_certificates = {s: c for s, c in certificates.items() if s > h}
        self._prepared_horizon = max(self._prepared_certificates, default=0)  # R1'
        for pre_prepare in pre_prepares.values():
            if pre_prepare.requests and pre_prepare.sequence > h:
                self._keep_batch(pre_prepare, pre_prepare.sequence)
        if not active:
            self._view_change_resend_timer.start(self.now_ms, self._view_change_retransmit_interval)
            self._send(self._others, self._view_change_messages[self.id])
            self._announce_recovery()
            return
        # The current view's log: our PRE-PREPAREs and votes, sent again to whoever lost them.
        for (v, sequence), pre_prepare in sorted(pre_prepares.items()):
            if v == view and sequence > h:
                entry = self._entry(sequence)
                entry.pre_prepare = self._batch_of_recovered(pre_prepare)
                self._last_assigned = max(self._last_assigned, sequence)
                if pre_prepare.replica == self.id:
                    self._send(self._others, pre_prepare)
        for vote in own_votes:
            entry = self._log.get(vote.sequence)
            if vote.view != view or entry is None or entry.digest != vote.digest:
                continue
            if isinstance(vote, Prepare):
                entry.prepares[self.id] = vote
            else:
                entry.commits[self.id] = vote
                entry.prepared = True  # we only ever commit once prepared (N5)
            self._send(self._others, vote)
        self._last_proposed_timestamp_ms = max(
            [self.last_batch_timestamp_ms] + [pp.timestamp_ms for pp in pre_prepares.values()]
        )
        self._highest_seen = self._last_assigned
        self._last_progress_ms = self.now_ms - self.config.state_transfer_timeout_ms
        # V1: the requests of batches we accepted but did not execute are requests we wait
        # on. If nobody can commit them any more (say the primary lost its disk), the request
        # timer moves the view on, with no client sending anything new.
        last_timestamp = self.client_table.last_timestamp
        for sequence in sorted(s for s in self._log if s > self.last_executed):
            pre_prepare = self._log[sequence].pre_prepare
            if pre_prepare is None or not pre_prepare.requests:
                continue
            for request in pre_prepare.requests:
                if request.timestamp > last_timestamp(request.client):
                    self._wait_for(request)
            self._mark_proposed(pre_prepare)
        self._announce_recovery()

    def _announce_recovery(self) -> None:
        """S1 after a restart, so that recovery completes without new requests: show the
        others how far we got (our CHECKPOINTs above the stable one: a replica further behind
        learns it is behind and catches up) and ask each of them, once, for the committed
        batches we lack (or, from one whose stable checkpoint is above us, its proof). The
        answers are bounded like any catch-up answer (S1''). Whoever is down now does the same
        when it restarts, and so finds us."""
        for sequence in sorted(self._checkpoints):
            own = self._checkpoints[sequence].get(self.id)
            if own is not None:
                self._send(self._others, own)
        if self._fetch is None:
            fetch_log = self._sign(FetchLog(self.last_executed + 1, NULL_DIGEST, self.id, b""))
            self._send(self._others, fetch_log)
        self._recovery_asks = self._n - 1
        self._catch_up_timer.start(self.now_ms, self.config.state_transfer_timeout_ms)

    def _batch_of_recovered(self, pre_prepare: PrePrepare) -> PrePrepare:
        if pre_prepare.requests or pre_prepare.digest == NULL_DIGEST:
            return pre_prepare
        known = self._batches.get(pre_prepare.digest)
        if known is None:
            return pre_prepare
        self._keep_batch(known, pre_prepare.sequence)
        return replace(pre_prepare, requests=known.requests)

    # ------------------------------------------------------------------ the driver's interface

    def receive(self, message: Message) -> None:
        """Take one message from the network or a client. Bad input is dropped and counted."""
        handler = self._handlers.get(type(message))
        if handler is None:
            self.dropped["unexpected_message_type"] += 1
            return
        handler(message)
        if self._stash_due:
            self._replay_stash()
        self._check_invariants()

    def tick(self, now_ms: int) -> None:
        """Let time pass and run the handlers of the timers that are due (V1, V4, S1, N2), in
        the order of `_timers`. `now_ms` never goes backwards (a smaller value is ignored).

        The request and proposal handlers act only outside a view change, the view change's
        two timers run only during one, and whatever changes the mode restarts the other
        mode's timers (`_start_view_change`, `_install_view`): none of them is due in the tick
        that changed the mode. At most one of the request and proposal handlers acts in a
        tick: a request timer that defers does so because we are behind, when the proposal
        timer does not blame the primary; one that starts a view change leaves no request
        unproposed (a new primary that installs its view at once expects no proposal)."""
        if now_ms > self.now_ms:
            self.now_ms = now_ms
        now = self.now_ms
        for timer, handler in self._timers:
            deadline_ms = timer.deadline_ms  # (`Timeout.fired`, inline: this runs every tick)
            if deadline_ms is not None and now >= deadline_ms:
                handler(now)
        if self._stash_due:
            self._replay_stash()
        self._check_invariants()
        self._check_timers()

    # ------------------------------------------------------------------ the timers' handlers

    def _on_request_timeout(self, now: int) -> None:
        """V1, V1': the request the timer runs for has not executed in request_timeout_ms."""
        if self._mode is _VIEW_CHANGE:
            return
        if self._highest_seen > self.last_executed and not self._timer_deferred:
            # Others are ahead of us: the request may well have executed there. Catch up
            # first and blame the primary only if that does not help (V1).
            self._timer_deferred = True
            self._request_timer.start(now, self.config.request_timeout_ms)
            self._request_log_in_turn()
        else:
            self._start_view_change(self.view + 1)

    def _on_proposal_timeout(self, now: int) -> None:
        """V1'': the oldest request no PRE-PREPARE has carried waited the proposal delay."""
        if self._mode is not _VIEW_CHANGE and self._primary_should_propose():
            self._proposal_late(now)

    def _on_view_change_timeout(self, now: int) -> None:
        """V4: the view change had its quorum but no NEW-VIEW in T: on to the next, with 2T."""
        self._view_change_timeout_ms *= 2  # 2T, 4T, ... until progress
        self._start_view_change(self.view + 1)

    def _on_view_change_resend(self, now: int) -> None:
        # Lost VIEW-CHANGEs must not strand a view change: say it again until it ends.
        self._view_change_resend_timer.start(now, self._view_change_retransmit_interval)
        self._send(self._others, self._view_change_messages[self.id])
        if self._rejoining is not None:
            self._ask_new_view()

    def _on_lagging_timeout(self, now: int) -> None:
        """S1: the batches in flight did not bring us to the proven checkpoint: fetch it."""
        lagging = self._lagging
        assert lagging is not None
        self._lagging = None
        self._lagging_timer.stop()
        self._stable_checkpoint_proven(lagging.sequence, lagging.digest, lagging.proof, wait=False)

    def _on_fetch_timer(self, now: int) -> None:
        """S1': time out the fetch's late requests and send those its sources may take now."""
        fetch = self._fetch
        assert fetch is not None
        if timeouts := fetch.expire(now):
            self.dropped["state_fetch_timeout"] += timeouts
        self._request_chunks()

    def _on_batch_timeout(self, now: int) -> None:
        """N2: the open batch's delay is over (or it is full): close it if there is room."""
        if self._pending and self._mode is not _VIEW_CHANGE and self.is_primary:
            self._propose_batches()

    def _on_catch_up_timer(self, now: int) -> None:
        if self._highest_seen > self.last_executed:
            self._maybe_catch_up()
        elif self._recovery_asks > 0 and self._fetch is None:
            # S2: after a restart or a state transfer, ask each other replica in turn once
            # more, a period apart: one asked first may itself still have been re-executing.
            self._recovery_asks -= 1
            self._request_log_in_turn()

    def has_ready(self) -> bool:
        return bool(self._persist or self._messages or self._replies or self._executed)

    def ready(self) -> Ready:
        """Collect the work produced since the last `advance()`; see `Ready` for the order."""
        if self._awaiting_advance:
            raise RuntimeError("ready() called twice without advance()")
        self._awaiting_advance = True
        persist = tuple(self._persist)
        durable_first = not persist
        for record in persist:  # (a loop: a generator costs more than the few records)
            if type(record) not in _VOTE_RECORDS:
                durable_first = True
                break
        ready = Ready(persist, tuple(self._messages), tuple(self._replies),
                      tuple(self._executed), self.status(), durable_first)
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
        # Every ready() carries one; most steps change none of it, so the last one is reused.
        key = (self.view, self.last_executed, self.stable_checkpoint, len(self._pending),
               self._highest_seen)
        if key != self._status_key:
            self._status_key = key
            self._status = Status(
                replica=self.id,
                view=self.view,
                primary=self.primary,
                last_executed=self.last_executed,
                low_watermark=self.stable_checkpoint,
                high_watermark=self.high_watermark,
                pending_requests=len(self._pending),
                highest_seen=self._highest_seen,
            )
        return self._status

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

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def view_active(self) -> bool:
        """False between sending a VIEW-CHANGE for `view` and installing its NEW-VIEW."""
        return self._mode is not _VIEW_CHANGE

    @property
    def fetching_state(self) -> bool:
        """A state fetch runs (in Mode.FETCHING_STATE, or through a view change)."""
        return self._fetch is not None

    def log_size(self) -> int:
        return len(self._log)

    def memory_footprint(self) -> dict[str, int]:
        """Sizes of every bounded structure, for tests and metrics."""
        return {
            "log": len(self._log),
            "batches": len(self._batches),
            "prepared_certificates": len(self._prepared_certificates),
            "checkpoint_sequences": len(self._checkpoints),
            "snapshots": len(self._snapshots),
            "stash": len(self._stash),
            "pending": len(self._pending),
            "proposed": len(self._proposed),
            "waiting": len(self._waiting),
            "deferred_reads": len(self._deferred_reads),
            "view_change_messages": len(self._view_change_messages),
            "clients": len(self.client_table),
        }

    def bytes_held(self) -> int:
        """The protocol bytes this replica holds (encoded-size bounds, `pbft.core.sizes`): its
        log, batches, prepared certificates, CHECKPOINTs, waiting requests, deferred reads,
        stash and view-change messages. Never above `sizes.replica_bytes_budget(config)`.
        Walks every structure: for tests, metrics and the simulator's memory oracle, not for
        the path of every message."""
        size = sizes.message_bytes
        total = 0
        for entry in self._log.values():
            if entry.pre_prepare is not None:
                total += sizes.PRE_PREPARE_OVERHEAD_BYTES
            total += sizes.VOTE_BYTES * (len(entry.prepares) + len(entry.commits))
        total += sum(size(pp) for pp in self._batches.values())
        total += sum(size(c) for c in self._prepared_certificates.values())
        total += sizes.VOTE_BYTES * sum(len(v) for v in self._checkpoints.values())
        total += sum(size(r) for r in self._pending.values())
        total += sum(size(r) for r in self._waiting.requests.values())
        total += self._deferred_reads.bytes
        total += self._stash.bytes
        total += sum(size(vc) for vc in self._view_change_messages.values())
        if self._new_view is not None:
            total += size(self._new_view)
        return total

    def waiting_requests(self) -> dict[bytes, tuple[int, int]]:
        """Backups: per client, the timestamp of the request it waits on and since when (ms)."""
        return self._waiting.by_client()

    def state_digest(self) -> bytes:
        """The digest a CHECKPOINT of the current state would carry (C1, S1')."""
        return snapshot_digest(self._snapshot(), self.config.state_chunk_bytes)

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
        if key in self._pending or (key in self._proposed and self.is_primary):
            # (A backup that saw it in a PRE-PREPARE still waits for it: its request timer is
            # what replaces a primary whose batch never commits.)
            self.dropped["duplicate_request"] += 1
            return
        if len(request.operation) > self.config.operation_bytes_max:
            # N2': no batch could carry it (the codec refuses it on the wire already).
            self.dropped["request_too_large"] += 1
            return
        if (reason := self._refuse_client(request, record)) is not None:
            self.dropped[reason] += 1
            return
        if not self._verify_request(request):
            self.dropped["bad_request_signature"] += 1
            return
        if request.read_only:
            self._read(request)
        elif self.is_primary and self._mode is not _VIEW_CHANGE:
            # N8: one request per client: a correct client sends its next request only once
            # the last one completed, so an older one still waiting here is superseded (and a
            # flood from one key holds one place, not pending_requests_max of them).
            older = self._waiting.requests.get(request.client)
            if older is not None:
                if older.timestamp > request.timestamp:
                    self.dropped["superseded_request"] += 1
                    return
                superseded = self._pending.pop((request.client, older.timestamp), None)
                if superseded is not None:
                    self._pending_bytes -= sizes.request_bytes(superseded)
                    self.dropped["superseded_request"] += 1
            size = sizes.request_bytes(request)
            if (len(self._pending) >= self.config.pending_requests_max
                    or self._pending_bytes + size > self.config.pending_bytes_max):
                self.dropped["pending_requests_full"] += 1
                return
            # V1 for the primary too: a primary whose batches cannot commit (it was left
            # behind in an old view, or its backups are cut off) must give up its view. What
            # it cannot wait on (bounded like a backup's), it does not propose either.
            if not self._wait_for(request):
                return
            self._pending[key] = request
            self._pending_bytes += size
            self._propose_batches()
        else:
            # N1', N9: a backup waits on the request and times its proposal (V1''); the client
            # sent it to the primary too, so it is relayed only if the proposal is late (or one
            # of this client's requests was: it may not talk to the primary at all).
            self._wait_for(request)
            waiting = self._waiting
            client = request.client
            if (waiting.relay_at_once(client) and self._mode is not _VIEW_CHANGE
                    and waiting.requests.get(client) is request
                    and not waiting.relayed(client) and waiting.awaits_proposal(client)):
                waiting.note_relayed(client, self.now_ms)
                self._send((self.primary,), request)

    def _refuse_client(self, request: Request, record: ClientRecord | None) -> str | None:
        """N8' at arrival, before the signature is checked: a client not listed; for ordered
        requests also one the application does not admit in our current state (a lagging
        replica may refuse a client just admitted; the client's retransmission reaches the
        others), or a new client when the reply cache is full. Execution decides again
        (`_refused_at_execution`). A read-only request (R1) leaves no record: the
        application's `query` answers it as it sees fit."""
        admitted = self._admitted
        if admitted and request.client not in admitted:
            return "client_not_admitted"
        if request.read_only:
            return None
        if self._app_admits is not None and not self._admits(request.client):
            return "client_not_admitted"
        if record is None and self.client_table.full:
            return "client_table_full"
        return None

    def _admits(self, client: bytes) -> bool:
        """The application's `admits` (N8'); one that raises refuses (and is counted, as
        `execute` raising is): a client's key must not stop the replica."""
        assert self._app_admits is not None
        try:
            return bool(self._app_admits(client))
        except Exception as error:  # noqa: BLE001 - see StateMachine
            self.application_errors[type(error).__name__] += 1
            return False

    def _wait_for(self, request: Request) -> bool:
        """Start waiting on `request` (V1); False if the waiting requests' bounds refuse it."""
        client = request.client
        waiting = self._waiting.requests.get(client)
        if waiting is not None and waiting.timestamp >= request.timestamp:
            return True
        if not self._waiting.fits(request):
            self.dropped["pending_requests_full"] += 1
            return False
        if waiting is not None:
            self._stop_waiting(client)
        unproposed = not self.is_primary and (client, request.timestamp) not in self._proposed
        self._waiting.add(request, self.now_ms, unproposed=unproposed)
        if self._timed is None:
            self._restart_request_timer()
        return True

    def _stop_waiting(self, client: bytes) -> None:
        """The request `client` waited on executed (or was superseded, or will not): V1'
        restarts the timer if it was the one the timer ran for."""
        self._waiting.remove(client)
        if self._timed == client:
            self._restart_request_timer()

    def _restart_request_timer(self) -> None:
        """V1': the request timer runs for one request, the oldest waiting, until that request
        executes; then it starts again, from now, for the next oldest. (Executions of other
        requests do not reset it: a primary that orders everyone but one client is suspected.)"""
        self._timer_deferred = False
        self._timed = self._waiting.oldest()
        if self._timed is not None:
            self._request_timer.start(self.now_ms, self.config.request_timeout_ms)
        else:
            self._request_timer.stop()

    def _primary_should_propose(self) -> bool:
        """V1'' (the proposal timer has fired): no batch of the primary is in flight here (it
        proposes a batch that is not full only once its batch in flight executed, and a full
        window is a batch in flight), nor was one until the proposal delay ago (the primary may
        execute it after us), and we are not behind (a lagging backup may simply have missed
        the PRE-PREPARE)."""
        return (self._last_pre_prepared <= self.last_executed
                and self.now_ms >= self._last_execution_ms + self._waiting.proposal_delay_ms
                and self._highest_seen <= self.last_executed)

    def _hears_other_backups(self, since_ms: int) -> bool:
        """V1'': votes of f backups other than us reached us after `since_ms`. A backup cut off
        from the others cannot tell a slow primary from its own isolation: it leaves the
        primary to its request timer (V1)."""
        primary = self.view % self._n
        heard = 0
        for replica, heard_ms in enumerate(self._heard_ms):
            if heard_ms > since_ms and replica != primary and replica != self.id:
                heard += 1
        return heard >= self.config.f

    def proposal_slack_ms(self) -> int:
        """V1'': how long a correct primary may take to propose a request it has (beyond the
        batching delay): PROPOSAL_ROUNDS of the commit rounds measured here (a request reaches
        the primary and its PRE-PREPARE reaches us in about one), at least
        propose_timeout_ms / 5 (fast networks jitter too), at most propose_timeout_ms (which
        is also what is tolerated before any round was measured)."""
        timeout_ms = self.config.propose_timeout
        round_ms = self._commit_round_ms
        if round_ms is None:
            return timeout_ms
        return min(timeout_ms, max(timeout_ms // 5, round_ms * PROPOSAL_ROUNDS))

    def _proposal_late(self, now: int) -> None:
        """V1'': the oldest unproposed request is late, and the primary idle. The first time,
        the primary may never have had it (a client may send to the backups only): relay it
        and give the primary another proposal delay. The second time, suspect the primary,
        unless we hear no other backup (then it waits for the request timer)."""
        waiting = self._waiting
        client = waiting.oldest_unproposed()
        if not waiting.relayed(client):
            # (And its next requests in this view are relayed on arrival: the primary then
            # gets one proposal delay for them, not two.)
            waiting.note_relayed(client, now)
            self._send((self.primary,), waiting.requests[client])
            return
        if self._hears_other_backups(waiting.since(client)):
            self.dropped["primary_slow_to_propose"] += 1
            self._start_view_change(self.view + 1)

    def _time_commit_round(self, round_ms: int) -> None:
        """V1'': a batch executed `round_ms` after its PRE-PREPARE: update the moving average of
        commit rounds and the proposal delay derived from it. (The proposal clocks do not
        restart: a request older than the batch could have been in it; while a batch is in
        flight, `_primary_should_propose` holds the verdict back instead.)"""
        average = self._commit_round_ms
        self._commit_round_ms = (
            round_ms if average is None else average + (round_ms - average + 4) // 8
        )
        waiting = self._waiting
        waiting.set_proposal_delay(
            min(self.config.propose_timeout, self._batch_delay_ms + self.proposal_slack_ms())
        )

    def _mark_proposed(self, pre_prepare: PrePrepare) -> None:
        """V1'': the requests of an accepted PRE-PREPARE have been proposed."""
        if pre_prepare.sequence > self._last_pre_prepared:
            self._last_pre_prepared = pre_prepare.sequence
        proposed = self._proposed
        for request in pre_prepare.requests:
            proposed.add((request.client, request.timestamp))
        self._waiting.proposed(pre_prepare.requests)

    def _verify_request(self, request: Request) -> bool:
        return self._verifier.verify(request.client, signing_payload(request), request.signature)

    def _read(self, request: Request) -> None:
        """R1': answer a read-only request once our state reflects everything we know to be
        prepared or stable: every sequence number we prepared (in any view, before a crash
        too: prepared certificates are durable before our COMMIT leaves), the stable
        checkpoint, and a checkpoint proven beyond us. Until then the read waits
        (`DeferredReads`, answered as execution reaches it).

        Why that suffices for linearizability: a request whose result a client accepted was
        executed by a correct replica, so 2f + 1 replicas sent COMMIT for it, having prepared
        it; f + 1 of them are correct. Any 2f + 1 matching read replies include one of those,
        which answers only from a state that holds the request; so the matching result does.
        (Reads alone, answering at once, give 2f + 1 stale replies when f liars meet f + 1
        correct replicas whose COMMITs are late.)"""
        needs = self._read_needs()
        if self.last_executed >= needs:
            self._execute_read_only(request)
        elif not self._deferred_reads.add(request, needs):
            self.dropped["deferred_reads_full"] += 1

    def _read_needs(self) -> int:
        """R1': how far we must have executed to answer a read now."""
        if self._diverged:
            return self.last_executed + 1  # a state we know is wrong answers nothing
        needs = max(self._prepared_horizon, self.stable_checkpoint)
        if self._lagging is not None and self._lagging.sequence > needs:
            needs = self._lagging.sequence
        return needs

    def _answer_due_reads(self) -> None:
        for request in self._deferred_reads.due(self.last_executed):
            self._execute_read_only(request)

    def _execute_read_only(self, request: Request) -> None:
        """R1: answer from the current state, unordered; the client needs 2f + 1 matching."""
        try:
            result = self._app.query(request.operation, request.client)
        except Exception as error:  # noqa: BLE001 - as at execution
            result = self._application_raised(error)
        self._send_reply(request.client, request.timestamp, result, True)

    def _application_raised(self, error: Exception) -> bytes:
        """The application raised on a request: its result says so, the same on every
        correct replica (`pbft.app.application_error_result`); counted by exception type."""
        self.application_errors[type(error).__name__] += 1
        return application_error_result(error)

    # ------------------------------------------------------------------ the primary (N2, D1)

    def _propose_batches(self) -> None:
        """N2, N2': close a batch when it is full (batch_size_max requests, or no room for the
        next request within batch_bytes_max) or, when no batch is in flight, once it has been
        filling for `batch_delay_ms` (0: at once)."""
        size_max = self.config.batch_size_max
        bytes_max = self.config.batch_bytes_max - sizes.PRE_PREPARE_OVERHEAD_BYTES
        pending = self._pending
        delay_ms = self._batch_delay_ms
        batch_timer = self._batch_timer
        if delay_ms:
            if not pending:
                batch_timer.stop()
            elif not batch_timer.running:
                batch_timer.start(self.now_ms, delay_ms)  # a batch opens
        while pending and self._last_assigned < self.high_watermark:
            if self._withholds(self._last_assigned + 1):
                return  # our recovered view's sequence numbers: a view change will move on
            if len(pending) < size_max and self._pending_bytes <= bytes_max:
                if self._last_assigned > self.last_executed:
                    return  # a batch is in flight
                if delay_ms and not batch_timer.fired(self.now_ms):
                    return  # tick() closes it when the delay is over
            keys = []
            batch_bytes = 0
            for key, request in pending.items():
                size = sizes.REQUEST_OVERHEAD_BYTES + len(request.operation)
                if keys and batch_bytes + size > bytes_max:
                    break
                keys.append(key)
                batch_bytes += size
                if len(keys) == size_max:
                    break
            requests = tuple(pending.pop(key) for key in keys)
            self._pending_bytes -= batch_bytes
            if delay_ms:
                if pending:
                    batch_timer.start(self.now_ms, delay_ms)  # the next batch opens
                else:
                    batch_timer.stop()
            self._proposed.update(keys)
            self._pre_prepare(requests)
        if delay_ms and pending and (
            len(pending) >= size_max or self._pending_bytes > bytes_max
        ):
            # A full batch waits only for room in the window, which may come without a
            # proposal (a state fetch moves it): offer it at every tick until then.
            batch_timer.start(self.now_ms, 0)

    def _pre_prepare(self, requests: tuple[Request, ...]) -> None:
        self._last_assigned += 1
        sequence = self._last_assigned
        timestamp_ms = max(self.now_ms, self._last_proposed_timestamp_ms)
        self._last_proposed_timestamp_ms = timestamp_ms
        digest = batch_digest(timestamp_ms, requests)
        self._note_vote(sequence)
        pre_prepare = self._sign(
            PrePrepare(self.view, sequence, digest, timestamp_ms, requests, self.id, b"")
        )
        self._accept_pre_prepare(pre_prepare)
        self._send(self._others, pre_prepare)
        self._check_prepared(self._log[sequence])

    def _accept_pre_prepare(self, pre_prepare: PrePrepare) -> LogEntry:
        entry = self._entry(pre_prepare.sequence)
        entry.pre_prepare = pre_prepare
        if discarded := entry.discard_mismatched_votes():
            self.dropped["mismatched_vote"] += discarded
        self._persist.append(pre_prepare)
        if pre_prepare.requests:
            self._keep_batch(pre_prepare, pre_prepare.sequence)
        return entry

    # ------------------------------------------------------------------ backups (N3, N4, D1)

    def _on_pre_prepare(self, pre_prepare: PrePrepare) -> None:
        if self._stash_if_future(pre_prepare, pre_prepare.view):
            return
        if (reason := self._reject_pre_prepare(pre_prepare)) is not None:
            self.dropped[reason] += 1
            if reason == "wrong_view":
                self._note_left_view(pre_prepare)
            return
        entry = self._accept_pre_prepare(pre_prepare)
        entry.accepted_ms = self.now_ms
        self._mark_proposed(pre_prepare)
        self._prepare(entry)

    def _prepare(self, entry: LogEntry) -> None:
        """N4: multicast our PREPARE for the entry's PRE-PREPARE."""
        if self._withholds(entry.sequence):
            self.votes_withheld += 1
            self._check_prepared(entry)  # the others' 2f PREPAREs still prepare it (N4)
            return
        self._note_vote(entry.sequence)
        prepare = self._sign(Prepare(self.view, entry.sequence, entry.digest, self.id, b""))
        entry.prepares[self.id] = prepare
        self._persist.append(prepare)
        self._send(self._others, prepare)
        self._check_prepared(entry)

    def _withholds(self, sequence: int) -> bool:
        """Whether recovery forbids our vote at `sequence` of this view (see VoteHorizon), or
        we follow this view without voting (V5')."""
        withheld = self._withheld
        return (withheld is not None and withheld[0] == self.view and sequence <= withheld[1]
                or self._passive_view == self.view)

    def _note_vote(self, sequence: int) -> None:
        """Before voting at `sequence`: extend the vote horizon if the vote is beyond it. The
        VoteHorizon record makes this Ready `durable_first`, so the promise is on disk before
        the vote leaves; votes under it may leave before they are durable."""
        horizon = self._vote_horizon
        if horizon is None or horizon[0] != self.view or sequence > horizon[1]:
            through = sequence + self.config.checkpoint_interval
            self._vote_horizon = (self.view, through)
            self._persist.append(VoteHorizon(self.view, through))

    def _reject_pre_prepare(self, m: PrePrepare) -> str | None:
        """N3 and D1, cheapest checks first; None if `m` is acceptable."""
        if m.view != self.view or self._mode is _VIEW_CHANGE:
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
        if sizes.pre_prepare_bytes(m) > self.config.batch_bytes_max:
            return "batch_too_large"  # N2': a correct primary never builds one
        if not self._verify_replica_signature(m):
            return "bad_signature"
        if batch_digest(m.timestamp_ms, m.requests) != m.digest:
            return "batch_digest_mismatch"
        if (reason := self._reject_batch_timestamp(m)) is not None:
            return reason
        seen: set[RequestKey] = set()
        waiting = self._waiting.requests
        admitted = self._admitted
        for request in m.requests:
            key = (request.client, request.timestamp)
            if request.read_only or key in seen:
                return "bad_batch_request"
            seen.add(key)
            if admitted and request.client not in admitted:
                return "batch_client_not_admitted"  # N8': only a faulty primary proposes it
            # The very request we verified when it arrived needs no second check (N1').
            if waiting.get(request.client) != request and not self._verify_request(request):
                return "bad_request_signature"
        return None

    def _reject_batch_timestamp(self, m: PrePrepare) -> str | None:
        """D1: not below the previous batch's, not above the next's, near our own clock."""
        if abs(m.timestamp_ms - self.now_ms) > self.config.timestamp_skew_max_ms:
            return "batch_timestamp_skew"
        if m.sequence > self.last_executed and m.timestamp_ms < self.last_batch_timestamp_ms:
            return "batch_timestamp_backwards"
        timestamp_ms, sequence = m.timestamp_ms, m.sequence
        for other_sequence, entry in self._log.items():
            other = entry.pre_prepare
            if other is None:
                continue
            # Out of order: a later timestamp below `sequence`, or an earlier one above it.
            other_timestamp_ms = other.timestamp_ms
            if other_timestamp_ms > timestamp_ms:
                out_of_order = other_sequence < sequence
            elif other_timestamp_ms < timestamp_ms:
                out_of_order = other_sequence > sequence
            else:
                continue
            if out_of_order and other.digest != NULL_DIGEST:
                return "batch_timestamp_backwards"
        return None

    # ------------------------------------------------------------------ votes (N4, N5, N10)

    def _on_prepare(self, prepare: Prepare) -> None:
        sender, sequence = prepare.replica, prepare.sequence
        if not (prepare.view == self.view and self._mode is not _VIEW_CHANGE and 0 <= sender < self._n
                and sender != self.view % self._n
                and self.stable_checkpoint < sequence <= self.stable_checkpoint + self._log_window):
            # Off the common path: the checks one by one, for the right reason (the common
            # path above passes each of them).
            if self._stash_if_future(prepare, prepare.view):
                return
            # (The primary of the vote's view: after a view change, a late PREPARE of the old
            # view from the new primary is merely late, not a primary's PREPARE.)
            from_primary = sender == prepare.view % self._n
            if (reason := self._reject_vote(prepare, from_primary)) is not None:
                self.dropped[reason] += 1
                if reason == "wrong_view":
                    self._note_left_view(prepare)
                return
        self._heard_ms[sender] = self.now_ms  # V1''
        entry = self._entry(sequence)
        if prepare.replica in entry.prepares:
            self.dropped["duplicate_vote"] += 1
            return
        if entry.pre_prepare is not None and entry.pre_prepare.digest != prepare.digest:
            self.dropped["mismatched_vote"] += 1
            return
        if entry.prepared:
            # N4 holds already and the certificate is built: its signature would buy nothing.
            self.surplus_votes += 1
            return
        if not self._verifier.verify(self._keys[sender], signing_payload(prepare),
                                     prepare.signature):
            self.dropped["bad_signature"] += 1
            return
        entry.prepares[sender] = prepare
        self._check_prepared(entry)

    def _on_commit(self, commit: Commit) -> None:
        sender, sequence = commit.replica, commit.sequence
        if not (commit.view == self.view and self._mode is not _VIEW_CHANGE and 0 <= sender < self._n
                and self.stable_checkpoint < sequence <= self.stable_checkpoint + self._log_window):
            # Off the common path: the checks one by one, for the right reason.
            if self._stash_if_future(commit, commit.view):
                return
            if (reason := self._reject_vote(commit, False)) is not None:
                self.dropped[reason] += 1
                if reason == "wrong_view":
                    self._note_left_view(commit)
                return
        self._heard_ms[sender] = self.now_ms  # V1''
        entry = self._entry(sequence)
        if sender in entry.commits:
            self.dropped["duplicate_vote"] += 1
            return
        if entry.pre_prepare is not None and entry.pre_prepare.digest != commit.digest:
            self.dropped["mismatched_vote"] += 1
            return
        if entry.committed:
            # N5 holds already (and 2f + 1 verified COMMITs make the commit certificate).
            self.surplus_votes += 1
            return
        if not self._verifier.verify(self._keys[sender], signing_payload(commit),
                                     commit.signature):
            self.dropped["bad_signature"] += 1
            return
        entry.commits[sender] = commit
        if sequence > self._highest_seen:
            self._highest_seen = sequence
        self._check_committed(entry)

    def _reject_vote(self, vote: Prepare | Commit, from_primary: bool) -> str | None:
        """N4, N10: the checks every PREPARE and COMMIT passes before its signature is checked."""
        if not 0 <= vote.replica < self._n:
            return "unknown_replica"
        if from_primary:
            return "prepare_from_primary"
        if vote.view != self.view or not self.view_active:
            return "wrong_view"
        return self._reject_sequence(vote.sequence)

    def _reject_sequence(self, sequence: int) -> str | None:
        """N3, N10: h < n ≤ H. Below h is merely late (already garbage-collected); above H is
        a sender running ahead or lying."""
        if sequence <= self.stable_checkpoint:
            return "below_low_watermark"
        if sequence > self.stable_checkpoint + self._log_window:
            return "above_high_watermark"
        return None

    def _check_prepared(self, entry: LogEntry) -> None:
        """N4 → N5: once prepared, keep the certificate (V1) and multicast COMMIT (once)."""
        if entry.prepared or entry.pre_prepare is None:
            return
        # Matching votes are never more than the votes held: count them only when it may do.
        if len(entry.prepares) < self._prepare_quorum:
            return
        if entry.matching_prepares() < self._prepare_quorum:
            return
        entry.prepared = True
        if entry.sequence > self._prepared_horizon:
            self._prepared_horizon = entry.sequence  # R1'
        pre_prepare = entry.pre_prepare
        primary = self.config.primary(entry.view)
        # Exactly 2f PREPAREs (more may have arrived before the PRE-PREPARE): a VIEW-CHANGE
        # of a full window of certificates must stay within the size validated (N2').
        prepares = tuple(
            sorted(
                (p for p in entry.prepares.values()
                 if p.digest == pre_prepare.digest and p.replica != primary),
                key=_sender,
            )[: self._prepare_quorum]
        )
        certificate = PreparedCertificate(_without_batch(pre_prepare), prepares)
        self._prepared_certificates[entry.sequence] = certificate
        self._persist.append(certificate)  # V1 must still report it after a restart
        if self._passive_view == self.view:
            self.votes_withheld += 1  # V5': the others' 2f + 1 COMMITs commit it here
            self._check_committed(entry)
            return
        commit = self._sign(Commit(self.view, entry.sequence, entry.digest, self.id, b""))
        entry.commits[self.id] = commit
        self._persist.append(commit)
        self._send(self._others, commit)
        self._check_committed(entry)

    def _check_committed(self, entry: LogEntry) -> None:
        if entry.committed or not entry.prepared:
            return
        if len(entry.commits) < self._quorum or entry.matching_commits() < self._quorum:
            return
        entry.committed = True
        self._execute_committed()

    # ------------------------------------------------------------------ execution (N6–N8)

    def _execute_committed(self) -> None:
        """N6: execute committed batches strictly in sequence order (none while our state is
        known to have diverged: we wait to fetch a correct one)."""
        while self._fetch is None and not self._diverged:
            entry = self._log.get(self.last_executed + 1)
            if entry is None or not entry.committed:
                break
            pre_prepare = self._batch_of(entry)
            if pre_prepare is None:
                if entry.pre_prepare.digest not in self._missing_batches:
                    self._fetch_batch(entry)  # (asked again by the catch-up timer only)
                break
            self._execute(entry, pre_prepare)
        if self._deferred_reads:
            self._answer_due_reads()
        if self.is_primary and self._mode is not _VIEW_CHANGE:
            self._propose_batches()

    def _batch_of(self, entry: LogEntry) -> PrePrepare | None:
        """The entry's PRE-PREPARE with its batch, or None if the batch is still missing."""
        pre_prepare = entry.pre_prepare
        assert pre_prepare is not None
        if pre_prepare.requests or pre_prepare.digest == NULL_DIGEST:
            return pre_prepare
        known = self._batches.get(pre_prepare.digest)
        if known is None:
            return None
        self._keep_batch(known, entry.sequence)
        entry.pre_prepare = replace(pre_prepare, requests=known.requests)
        return entry.pre_prepare

    def _execute(self, entry: LogEntry, pre_prepare: PrePrepare) -> None:
        sequence = entry.sequence
        # D1: the application never sees time go backwards, even after a faulty primary.
        timestamp_ms = max(pre_prepare.timestamp_ms, self.last_batch_timestamp_ms)
        executed: list[ExecutedRequest] = []
        table = self.client_table
        execute = self._app.execute
        proposed, waiting, replies = self._proposed, self._waiting.requests, self._replies
        view, me = self.view, self.id
        for request in pre_prepare.requests:
            client, timestamp = request.client, request.timestamp
            if proposed:
                proposed.discard((client, timestamp))
            if timestamp <= table.last_timestamp(client):
                continue  # N8: already executed (a retransmission proposed twice)
            if self._refused_at_execution(client, timestamp):
                continue  # N8'
            context = ExecutionContext(sequence, client, timestamp_ms)
            try:
                result = execute(request.operation, context)
            except Exception as error:  # noqa: BLE001 - see StateMachine: one request must not
                result = self._application_raised(error)  # stop the service
            table.record(client, timestamp, result, sequence)
            if client in waiting and waiting[client].timestamp <= timestamp:
                self._stop_waiting(client)
            replies.append(Reply(view, timestamp, client, me, result, False))  # N7
            executed.append(ExecutedRequest(request, result))
        self.last_executed = sequence
        self.last_batch_timestamp_ms = timestamp_ms
        self._last_progress_ms = self.now_ms
        self._last_execution_ms = self.now_ms
        accepted_ms = entry.accepted_ms
        if accepted_ms is not None:
            self._time_commit_round(self.now_ms - accepted_ms)
        self._executed.append(
            ExecutedBatch(sequence, entry.view, pre_prepare.digest, timestamp_ms, tuple(executed))
        )
        # V1' restarts the request timer only when the request it runs for executes (in
        # _stop_waiting); V4: progress resets the view-change timeout.
        if executed:
            self._view_change_timeout_ms = self.config.view_change_timeout_ms
            if self.is_primary and self._timed is not None:
                # V1 for the primary asks only whether its batches commit: they do. (Backups
                # keep V1': a primary must not starve one client while serving the rest; the
                # primary's own queue under a flood is not a fault of its view.)
                self._request_timer.start(self.now_ms, self.config.request_timeout_ms)
        if sequence % self.config.checkpoint_interval == 0:
            self._take_checkpoint(sequence)

    def _refused_at_execution(self, client: bytes, timestamp: int) -> bool:
        """N8': a request of a client the application does not admit, or of a new client when
        the reply cache is full, is not executed and gets no record and no reply. Decided from
        the replicated state alone, in sequence order, so every correct replica refuses the
        same requests; we stop waiting for it (V1: it will never execute). The listed
        clients need no check here: no correct replica accepts another key's request, at
        arrival or in a PRE-PREPARE, so no batch holding one commits."""
        table = self.client_table
        if self._app_admits is not None and not self._admits(client):
            self.dropped["client_not_admitted_at_execution"] += 1
        elif table.has_room_for(client):
            if table.get(client) is None and len(table) + 1 == table.capacity:
                self._stop_waiting_for_new_clients(client)  # it takes the last place
            return False
        else:
            self.dropped["client_table_full_at_execution"] += 1
        waiting = self._waiting.requests.get(client)
        if waiting is not None and waiting.timestamp <= timestamp:
            self._stop_waiting(client)
        return True

    def _stop_waiting_for_new_clients(self, last: bytes) -> None:
        """`last` takes the reply cache's last place: no request of a client not in it will
        ever execute (N8'), and a primary whose cache filled first already refused them on
        arrival. V1: waiting for them would blame a correct primary; forget them (once: the
        cache never empties)."""
        table = self.client_table
        for client in [c for c in self._waiting.requests if c != last and table.get(c) is None]:
            self._stop_waiting(client)

    def _send_reply(self, client: bytes, timestamp: int, result: bytes, read_only: bool) -> None:
        self._replies.append(Reply(self.view, timestamp, client, self.id, result, read_only))

    # ------------------------------------------------------------------ checkpoints (C1, C2)

    def _snapshot(self) -> bytes:
        return encode_snapshot(
            self._app.snapshot(), self.client_table.snapshot(), self.last_batch_timestamp_ms
        )

    def _take_checkpoint(self, sequence: int) -> None:
        """C1: multicast a signed CHECKPOINT of the state after executing `sequence`; its digest
        is that of the snapshot's chunks (S1'), prepared here once for serving."""
        prepared = ChunkedSnapshot(self._snapshot(), self.config.state_chunk_bytes)
        self._snapshots[sequence] = prepared
        checkpoint = self._sign(Checkpoint(sequence, prepared.digest, self.id, b""))
        self._persist.append(SnapshotRecord(sequence, prepared.snapshot))
        self._persist.append(checkpoint)
        self._send(self._others, checkpoint)
        self._checkpoints.setdefault(sequence, {})[self.id] = checkpoint
        self._check_stable(sequence)

    def _on_checkpoint(self, checkpoint: Checkpoint) -> None:
        if (reason := self._reject_checkpoint(checkpoint)) is not None:
            self.dropped[reason] += 1
            return
        sequence = checkpoint.sequence
        self._checkpoints.setdefault(sequence, {})[checkpoint.replica] = checkpoint
        if sequence > self._highest_seen:
            self._highest_seen = self._checkpoint_claimed(sequence)
        self._check_stable(sequence)

    def _checkpoint_claimed(self, sequence: int) -> int:
        """S1: how far others are, after a CHECKPOINT at `sequence`. Within the high
        watermark, as it says (a lie costs a window at most). Beyond it, only as far as f + 1
        replicas claim, one of them correct: a lone faulty replica claiming a far checkpoint
        would otherwise keep every replica asking for a log that does not exist, and looking
        behind (which V1'' takes as a reason not to suspect the primary)."""
        high = self.high_watermark
        if sequence <= high:
            return max(self._highest_seen, sequence)
        claims: dict[int, int] = {}
        for s, votes in self._checkpoints.items():
            if s > high:
                for replica in votes:
                    if s > claims.get(replica, 0):
                        claims[replica] = s
        f = self.config.f
        if len(claims) <= f:
            return max(self._highest_seen, high)
        return max(self._highest_seen, sorted(claims.values(), reverse=True)[f])

    def _reject_checkpoint(self, c: Checkpoint) -> str | None:
        """C2 and S1: CHECKPOINTs within the watermarks are kept; above H, only each sender's
        highest is kept, so that a replica cut off for long learns how far behind it is."""
        if not 0 <= c.replica < self._n:
            return "unknown_replica"
        if c.sequence % self.config.checkpoint_interval != 0:
            return "checkpoint_off_interval"
        if c.sequence <= self.stable_checkpoint:
            return "below_low_watermark"
        if c.replica in self._checkpoints.get(c.sequence, ()):
            return "duplicate_vote"
        if c.sequence > self.high_watermark:
            above = [s for s, votes in self._checkpoints.items()
                     if s > self.high_watermark and c.replica in votes]
            if any(s > c.sequence for s in above):
                return "stale_checkpoint"
            if not self._verify_replica_signature(c):
                return "bad_signature"
            for s in above:
                del self._checkpoints[s][c.replica]
                if not self._checkpoints[s]:
                    del self._checkpoints[s]
            return None
        if not self._verify_replica_signature(c):
            return "bad_signature"
        return None

    def _check_stable(self, sequence: int) -> None:
        """C2: 2f + 1 matching CHECKPOINTs make a checkpoint stable. If we have not executed that
        far, or our state differs from the proven one, we fetch the proven state (S1)."""
        found = quorum.proven_checkpoint(self._checkpoints.get(sequence, {}).values(), self._n)
        if found is not None:
            self._stable_checkpoint_proven(sequence, *found)

    def _stable_checkpoint_proven(
        self, sequence: int, digest: bytes, proof: tuple[Checkpoint, ...], *, wait: bool = True
    ) -> None:
        """C2, S1: `proof` shows `sequence` stable. If we executed it with the same digest, it
        becomes our stable checkpoint. If we are behind, we first give the batches in flight
        `state_transfer_timeout_ms` to arrive (`wait`), then fetch the proven state."""
        if sequence <= self.stable_checkpoint:
            return
        own = self._snapshots.get(sequence)
        if sequence <= self.last_executed:
            # S1 never rolls back: a state older than what we executed is not restored.
            if own is not None and own.digest != digest:
                # Our state differs from the proven one (a faulty disk or a nondeterministic
                # application): stop executing, let the others move on, and fetch the next
                # checkpoint they prove, beyond us (`_diverged`).
                self.dropped["diverged_from_checkpoint"] += 1
                self._diverged = True
                return
            # Ours matches, or is gone (we restarted from a later snapshot of our own): the
            # proof alone makes it stable.
            self._advance_stable_checkpoint(sequence, proof)
            if self.is_primary and self.view_active:
                self._propose_batches()
            return
        if wait and sequence <= self.last_executed + self.config.log_window:
            if self._lagging is None or self._lagging.sequence < sequence:
                self._lagging = Lagging(sequence, digest, proof)
                self._lagging_timer.start(self.now_ms, self.config.state_transfer_timeout_ms)
            return
        self._advance_stable_checkpoint(sequence, proof)
        self._start_fetch(sequence, digest)

    def _advance_stable_checkpoint(self, sequence: int, proof: tuple[Checkpoint, ...]) -> None:
        self.stable_checkpoint = sequence
        self.stable_checkpoint_proof = proof
        self._persist.extend(proof)
        if self._lagging is not None and self._lagging.sequence <= sequence:
            self._lagging = None
            self._lagging_timer.stop()
        self._collect_garbage(sequence)
        if self._stash:
            self._stash_due = True

    def _collect_garbage(self, sequence: int) -> None:
        """C2: discard everything at or below the stable checkpoint."""
        for s in [s for s in self._log if s <= sequence]:
            del self._log[s]
        for s in [s for s in self._checkpoints if s < sequence]:
            del self._checkpoints[s]
        for s in [s for s in self._snapshots if s < sequence]:
            del self._snapshots[s]
        for s in [s for s in self._prepared_certificates if s <= sequence]:
            del self._prepared_certificates[s]
        last_use = self._batch_last_use
        for d in [d for d, used in last_use.items() if used <= sequence]:
            del self._batches[d]
            del last_use[d]
        for d in [d for d, used in self._missing_batches.items() if used <= sequence]:
            del self._missing_batches[d]
        self._last_assigned = max(self._last_assigned, sequence)

    # ------------------------------------------------------------------ state transfer (S1)

    def _start_fetch(self, sequence: int, digest: bytes) -> None:
        """S1, S1': fetch the snapshot proven at `sequence` (replacing a fetch of an older one,
        whose snapshot the others are about to discard)."""
        if self._fetch is not None and self._fetch.sequence >= sequence:
            return
        assert sequence > self.last_executed, (sequence, self.last_executed)  # never roll back
        config = self.config
        sources = [(self.id + k) % self._n for k in range(1, self._n)]
        self._fetch = StateFetch(
            sequence, digest, sources, self._fetch_pacer,
            chunk_bytes=config.state_chunk_bytes, snapshot_bytes_max=config.snapshot_bytes_max,
            window=config.state_fetch_window, timeout_ms=config.state_transfer_timeout_ms,
            now_ms=self.now_ms,
        )
        self._fetch_timer.start(self.now_ms, 0)
        if self._mode is _NORMAL:
            self._mode = _FETCHING_STATE
        self._request_chunks()

    def _request_chunks(self) -> None:
        fetch = self._fetch
        assert fetch is not None
        for source, chunk in fetch.requests(self.now_ms):
            self._send((source,), self._sign(FetchState(fetch.sequence, chunk, self.id, b"")))

    def _on_fetch_state(self, message: FetchState) -> None:
        """S1', S1'': serve one chunk of a snapshot we hold, with its proof, from the chunks
        prepared at checkpoint time; each requester is served at most 2q chunks at once and q
        per state_transfer_timeout_ms (`fetch_state_rate_limited` beyond)."""
        if not 0 <= message.replica < self._n or message.replica == self.id:
            self.dropped["unknown_replica"] += 1
            return
        prepared = self._snapshots.get(message.sequence)
        if prepared is None or message.sequence > self.last_executed:
            self.dropped["no_such_snapshot"] += 1
            if (message.sequence < self.stable_checkpoint and self.stable_checkpoint_proof
                    and self._verify_replica_signature(message)
                    and self._fetch_state_limit.allow(message.replica, self.now_ms)):
                # S1: the state asked for is garbage here: show the requester the proof of
                # our stable checkpoint, whose state it can fetch instead (a fetch of a state
                # everyone discarded would never end).
                for checkpoint in self.stable_checkpoint_proof:
                    self._send((message.replica,), checkpoint)
            return
        if message.chunk >= prepared.chunks:
            self.dropped["no_such_chunk"] += 1
            return
        # Signature before the rate limit: only the requester itself spends its allowance.
        if not self._verify_replica_signature(message):
            self.dropped["bad_signature"] += 1
            return
        if not self._fetch_state_limit.allow(message.replica, self.now_ms):
            self.dropped["fetch_state_rate_limited"] += 1
            return
        index = message.chunk
        chunk = StateChunk(message.sequence, index, len(prepared.snapshot), prepared.chunk(index),
                           prepared.proof(index), self.id, b"")
        self._send((message.replica,), self._sign(chunk))

    def _on_state_chunk(self, chunk: StateChunk) -> None:
        """S1': keep a chunk of the snapshot being fetched if it verifies against the proven
        digest, whoever sent it; a sender whose chunk does not verify is asked no more."""
        fetch = self._fetch
        if fetch is None or chunk.sequence != fetch.sequence:
            self.dropped["unexpected_state_chunk"] += 1
            return
        if fetch.has_chunk(chunk.chunk):
            self.dropped["duplicate_state_chunk"] += 1
            return
        if not 0 <= chunk.replica < self._n or not self._verify_replica_signature(chunk):
            self.dropped["bad_signature"] += 1
            return
        if (reason := fetch.on_chunk(chunk, self.now_ms)) is not None:
            self.dropped[reason] += 1
        if not fetch.complete:
            self._request_chunks()  # the next chunks, or those of a source found lying
            return
        self._restore(fetch.sequence, fetch.snapshot(), chunk.replica)

    def _restore(self, sequence: int, snapshot: bytes, source: int) -> None:
        assert sequence > self.last_executed, (sequence, self.last_executed)  # see _start_fetch
        self._diverged = False
        app_snapshot, table_snapshot, timestamp_ms = decode_snapshot(snapshot)
        self._app.restore(app_snapshot)
        self.client_table.restore(table_snapshot)
        self.last_batch_timestamp_ms = timestamp_ms
        self.last_executed = sequence
        self._last_progress_ms = self.now_ms
        self._waiting.restart_proposal_clocks(self.now_ms)  # V1'': we were behind until now
        self._snapshots[sequence] = ChunkedSnapshot(snapshot, self.config.state_chunk_bytes)
        self._persist.append(SnapshotRecord(sequence, snapshot))
        fetch = self._fetch
        assert fetch is not None and fetch.chunks is not None
        self.last_state_transfer = StateTransferRecord(
            sequence, len(snapshot), fetch.chunks, fetch.started_ms, self.now_ms
        )
        self._fetch = None
        self._fetch_timer.stop()
        if self._mode is _FETCHING_STATE:
            self._mode = _NORMAL
        self.state_transfers_completed += 1
        last_timestamp = self.client_table.last_timestamp
        for client in [c for c, r in self._waiting.requests.items()
                       if r.timestamp <= last_timestamp(c)]:
            self._stop_waiting(client)
        # Requests proposed in batches the snapshot covers will not execute here: forget them.
        self._proposed = {key for key in self._proposed if key[1] > last_timestamp(key[0])}
        # The batches after the checkpoint: ask the replica that served the last chunk, then
        # the others in turn (S2).
        self._request_log(source)
        self._log_fetch_source = source
        self._recovery_asks = self._n - 1
        self._execute_committed()

    def _resend_new_view(self, to: int) -> None:
        """S1'': the NEW-VIEW that installed our view, to a replica still asking for that view;
        at most once per VIEW-CHANGE retransmission interval per replica, since any old or
        replayed VIEW-CHANGE naming it asks (`new_view_resend_too_soon` beyond): a replica
        that really waits retransmits its VIEW-CHANGE at that interval."""
        assert self._new_view is not None
        if not self._new_view_resend_limit.allow(to, self.now_ms):
            self.dropped["new_view_resend_too_soon"] += 1
            return
        self._send((to,), self._new_view)

    # ------------------------------------------------------------------ fetching batches

    def _maybe_catch_up(self) -> None:
        """S1 (the catch-up timer has fired): if others are ahead and we have made no progress
        for a while, ask one replica (in turn) for the committed batches we lack; also ask
        again for missing batches."""
        if self._fetch is not None or self._highest_seen <= self.last_executed:
            return
        if self.now_ms < self._last_progress_ms + self.config.state_transfer_timeout_ms:
            return
        self._request_log_in_turn()
        entry = self._log.get(self.last_executed + 1)
        if entry is not None and entry.committed and self._batch_of(entry) is None:
            self._fetch_batch(entry)

    def _request_log_in_turn(self) -> None:
        """S1: ask the next other replica, in turn, for the committed batches we lack."""
        source = (self._log_fetch_source + 1) % self._n
        if source == self.id:
            source = (source + 1) % self._n
        self._log_fetch_source = source
        self._request_log(source)

    def _request_log(self, source: int) -> None:
        self._catch_up_timer.start(self.now_ms, self.config.state_transfer_timeout_ms)
        message = self._sign(FetchLog(self.last_executed + 1, NULL_DIGEST, self.id, b""))
        self._send((source,), message)

    def _keep_batch(self, pre_prepare: PrePrepare, sequence: int) -> None:
        """C2': hold `pre_prepare`'s batch for as long as `sequence` (and any later sequence
        number that names the same digest) is above the low watermark."""
        digest = pre_prepare.digest
        if digest not in self._batches:
            self._batches[digest] = pre_prepare
        if self._batch_last_use.get(digest, 0) < sequence:
            self._batch_last_use[digest] = sequence

    def _fetch_batch(self, entry: LogEntry) -> None:
        """V3: ask everyone for the batch a NEW-VIEW named but we never received."""
        assert entry.pre_prepare is not None
        self._missing_batches[entry.pre_prepare.digest] = entry.sequence
        message = self._sign(FetchLog(entry.sequence, entry.pre_prepare.digest, self.id, b""))
        self._send(self._others, message)

    def _on_fetch_log(self, message: FetchLog) -> None:
        if not 0 <= message.replica < self._n or message.replica == self.id:
            self.dropped["unknown_replica"] += 1
            return
        if not self._verify_replica_signature(message):
            self.dropped["bad_signature"] += 1
            return
        to = (message.replica,)
        if message.digest == NULL_DIGEST:
            # A catch-up answer can be log_window batches: at most one per requester per
            # state_transfer_timeout_ms, so that a Byzantine replica cannot use us to flood.
            if not self._catch_up_limit.allow(message.replica, self.now_ms):
                self.dropped["fetch_log_too_soon"] += 1
                return
        else:
            known = self._batches.get(message.digest)
            if known is None:
                return
            # S1'': by digest, at most a log window of batches per requester per period, as
            # much as one catch-up answer (a correct replica asks for one missing batch at a
            # time, each once per committed entry or period).
            if not self._batch_fetch_limit.allow(message.replica, self.now_ms):
                self.dropped["fetch_batch_rate_limited"] += 1
                return
            self._send(to, LoggedBatch(known, ()))
            return
        if message.sequence <= self.stable_checkpoint and self.stable_checkpoint_proof:
            # The requester's gap starts below our stable checkpoint: the batches there are
            # gone, so show it the 2f + 1 CHECKPOINTs; it then fetches the state (S1).
            for checkpoint in self.stable_checkpoint_proof:
                self._send(to, checkpoint)
        needed = quorum.quorum(self._n)
        last = min(self.last_executed, message.sequence + self.config.log_window)
        for sequence in range(max(message.sequence, self.stable_checkpoint + 1), last + 1):
            entry = self._log.get(sequence)
            if entry is None or not entry.committed:
                continue
            pre_prepare = self._batch_of(entry)
            if pre_prepare is None:
                continue
            commits = tuple(c for c in entry.commits.values() if c.digest == pre_prepare.digest)
            if len(commits) >= needed:
                self._send(to, LoggedBatch(pre_prepare, commits))

    def _on_logged_batch(self, message: LoggedBatch) -> None:
        pre_prepare = message.pre_prepare
        if len(pre_prepare.requests) > self.config.batch_size_max or (
            batch_digest(pre_prepare.timestamp_ms, pre_prepare.requests) != pre_prepare.digest
            and not (pre_prepare.digest == NULL_DIGEST and not pre_prepare.requests)
        ):
            self.dropped["batch_digest_mismatch"] += 1
            return
        wanted = self._missing_batches.pop(pre_prepare.digest, None)
        if wanted is not None and pre_prepare.requests:
            # V3: a batch a NEW-VIEW named, answered by digest. It may have been logged under
            # another sequence number (a faulty primary proposed it twice): the digest is what
            # 2f + 1 replicas vouched for.
            self._keep_batch(pre_prepare, wanted)
            self._execute_committed()
            if not message.commits:
                return
        if (reason := self._reject_sequence(pre_prepare.sequence)) is not None:
            self.dropped[reason] += 1
            return
        entry = self._log.get(pre_prepare.sequence)
        if entry is not None and entry.digest == pre_prepare.digest:
            # V3: the batch a NEW-VIEW named; its digest was vouched for by 2f + 1 replicas.
            if pre_prepare.requests:
                self._keep_batch(pre_prepare, pre_prepare.sequence)
            if entry.committed:
                self._execute_committed()
                return
        if pre_prepare.sequence <= self.last_executed or not message.commits:
            return
        if (reason := self._reject_commit_certificate(message)) is not None:
            self.dropped[reason] += 1
            return
        # A commit certificate: the batch committed at 2f + 1 replicas, whatever we voted.
        entry = self._log[pre_prepare.sequence] = LogEntry(pre_prepare.view, pre_prepare.sequence)
        entry.pre_prepare = pre_prepare
        entry.commits = {c.replica: c for c in message.commits}
        entry.prepared = entry.committed = True
        if pre_prepare.requests:
            self._keep_batch(pre_prepare, pre_prepare.sequence)
        self._persist.append(pre_prepare)
        self._execute_committed()

    def _reject_commit_certificate(self, message: LoggedBatch) -> str | None:
        pre_prepare = message.pre_prepare
        if not 0 <= pre_prepare.replica < self._n or pre_prepare.replica != self.config.primary(
            pre_prepare.view
        ):
            return "bad_commit_certificate"
        if not self._verify_replica_signature(pre_prepare):
            return "bad_commit_certificate"
        senders: set[int] = set()
        for commit in message.commits:
            if (
                commit.view != pre_prepare.view
                or commit.sequence != pre_prepare.sequence
                or commit.digest != pre_prepare.digest
                or not 0 <= commit.replica < self._n
                or commit.replica in senders
                or not self._verify_replica_signature(commit)
            ):
                return "bad_commit_certificate"
            senders.add(commit.replica)
        if len(senders) < quorum.quorum(self._n):
            return "bad_commit_certificate"
        return None

    # ------------------------------------------------------------------ view change (V1–V6)

    def _start_view_change(self, new_view: int) -> None:
        """V1: stop taking part in the current view and ask for `new_view`."""
        assert new_view > self.view or (new_view == self.view and not self.view_active)
        if self.view_active:
            self._left_view, self._left_new_view = self.view, self._new_view
        self._seen_working = {}
        self._rejoining = None
        self.view = new_view
        self._mode = _VIEW_CHANGE
        self.view_changes_started += 1
        self._new_view = None
        self._request_timer.stop()
        self._timed = None
        self._view_change_timer.stop()
        self._view_change_resend_timer.start(self.now_ms, self._view_change_retransmit_interval)
        prepared = tuple(
            self._prepared_certificates[s] for s in sorted(self._prepared_certificates)
            if s > self.stable_checkpoint
        )
        message = self._sign(ViewChange(
            new_view, self.stable_checkpoint, self.stable_checkpoint_proof, prepared, self.id, b""
        ))
        self._view_change_messages[self.id] = message
        self._persist.append(message)
        self._send(self._others, message)
        self._prune_stash()
        self._arm_view_change_timer()
        self._try_new_view()

    def _note_left_view(self, message: PrePrepare | Prepare | Commit) -> None:
        """V5': during our view change, a signed message of a view below the one we ask for, at
        least the one we left. Once 2f + 1 other replicas are seen working in one view, our
        view change has no support: return to that view (the one we left), or ask for its
        NEW-VIEW (a later one, installed while we were cut off) and follow it from there."""
        view = message.view
        if self._mode is not _VIEW_CHANGE or not self._left_view <= view < self.view:
            return
        if view % self._n == self.id:
            # The primary of that view would follow it proposing nothing, so that view could
            # order nothing: it waits for the backups to join its view change instead (their
            # request timers run on the requests they wait on).
            return
        sender = message.replica
        seen = self._seen_working
        if sender == self.id or not 0 <= sender < self._n or seen.get(sender, -1) >= view:
            return
        if not self._verify_replica_signature(message):
            return  # (counted as wrong_view by the caller; a check per sender and view at most)
        seen[sender] = view
        if sum(1 for v in seen.values() if v == view) < self._quorum:
            return
        if view == self._left_view:
            self._return_to_left_view()
        elif self._rejoining != view:
            self._rejoining = view
            self._ask_new_view()

    def _ask_new_view(self) -> None:
        """V5': ask the others for the NEW-VIEW of `_rejoining` with a VIEW-CHANGE for it (it
        reports what we hold now, as any VIEW-CHANGE; a replica that installed that view
        answers with its NEW-VIEW, S1''); asked again at each VIEW-CHANGE retransmission."""
        assert self._rejoining is not None
        prepared = tuple(
            self._prepared_certificates[s] for s in sorted(self._prepared_certificates)
            if s > self.stable_checkpoint
        )
        self._send(self._others, self._sign(ViewChange(
            self._rejoining, self.stable_checkpoint, self.stable_checkpoint_proof, prepared,
            self.id, b"")))

    def _return_to_left_view(self) -> None:
        """V5': 2f + 1 others work in the view we left, so no view change of ours can gather
        2f + 1 VIEW-CHANGEs: go back to that view, but only to follow it. We send no
        PRE-PREPARE, PREPARE or COMMIT there (we prepare and execute on the others' votes),
        because our VIEW-CHANGE, which the others may hold, does not report what we would
        prepare now: a primary of that next view could build its NEW-VIEW from it and lose a
        request that our vote helped commit. From the next view on, we vote again."""
        view = self._left_view
        self.view = view
        self._mode = _NORMAL if self._fetch is None else _FETCHING_STATE
        self._passive_view = view
        self._new_view = self._left_new_view
        self._view_change_messages.clear()
        self._seen_working = {}
        self._rejoining = None
        self._view_change_timer.stop()
        self._view_change_resend_timer.stop()
        self.view_changes_abandoned += 1
        self._waiting.forget_proposals()
        self._restart_request_timer()
        self._prune_stash()
        self._request_log_in_turn()  # what executed while we were away

    @property
    def following(self) -> bool:
        """V5': whether we follow the current view without voting in it."""
        return self._passive_view == self.view

    def _arm_view_change_timer(self) -> None:
        """V4: the view-change timer runs only once 2f + 1 replicas (us included) ask for this
        view or a later one, as in PBFT §4.5.2: a replica alone cannot race ahead into views
        the others never reach, and a view change that has its quorum but no NEW-VIEW in T
        moves on to the next view."""
        if self.view_active or self._view_change_timer.running:
            return
        supporters = sum(1 for vc in self._view_change_messages.values()
                         if vc.new_view >= self.view)
        if supporters >= quorum.quorum(self._n):
            self._view_change_timer.start(self.now_ms, self._view_change_timeout_ms)

    def _on_view_change(self, message: ViewChange) -> None:
        sender = message.replica
        if not 0 <= sender < self._n or sender == self.id:
            self.dropped["unknown_replica"] += 1
            return
        if message.new_view < self.view or (message.new_view == self.view and self.view_active):
            # A replica still asking for a view we have installed: show it the NEW-VIEW. Any
            # replica that has it does (it is signed by the new primary and checked by
            # recomputation), since a Byzantine primary may have sent it to us alone.
            if message.new_view == self.view and self._new_view is not None:
                self._resend_new_view(sender)
            self.dropped["old_view_change"] += 1
            return
        latest = self._view_change_messages.get(sender)
        if latest is not None and latest.new_view >= message.new_view:
            self.dropped["duplicate_view_change"] += 1
            return
        if (reason := view_change_reason(self.config, message, self._verify_replica_signature)) is not None:
            self.dropped[reason] += 1
            return
        self._view_change_messages[sender] = message
        if message.stable_sequence > self.stable_checkpoint:
            proof = message.checkpoint_proof
            self._stable_checkpoint_proven(message.stable_sequence, proof[0].digest, proof)
        self._join_higher_view()
        if not self.view_active and message.new_view == self.view:
            self._try_new_view()
        self._arm_view_change_timer()

    def _join_higher_view(self) -> None:
        """V5: f + 1 replicas asking for views above ours: join the smallest of those views."""
        higher = sorted(
            vc.new_view for r, vc in self._view_change_messages.items()
            if r != self.id and vc.new_view > self.view
        )
        if len(higher) >= quorum.reply_quorum(self._n):
            # The f + 1 highest requests include a correct replica's; its view is the floor.
            self._start_view_change(higher[-quorum.reply_quorum(self._n)])

    def _try_new_view(self) -> None:
        """V2: as the new primary, with 2f + 1 VIEW-CHANGEs (ours included), send NEW-VIEW."""
        if not self.is_primary or self.view_active:
            return
        view = self.view
        own = self._view_change_messages.get(self.id)
        if own is None or own.new_view != view:
            return
        others = [vc for r, vc in sorted(self._view_change_messages.items())
                  if r != self.id and vc.new_view == view]
        needed = quorum.quorum(self._n)
        if 1 + len(others) < needed:
            return
        view_changes = (own, *others[: needed - 1])
        _, plan = new_view_plan(view_changes)
        pre_prepares = tuple(
            self._sign(PrePrepare(view, sequence, digest, timestamp_ms, (), self.id, b""))
            for sequence, digest, timestamp_ms in plan
        )
        new_view = self._sign(NewView(view, view_changes, pre_prepares, self.id, b""))
        self._send(self._others, new_view)
        self._install_view(new_view)

    def _on_new_view(self, message: NewView) -> None:
        rejoin = self._mode is _VIEW_CHANGE and message.view == self._rejoining
        if not rejoin and (
                message.view < self.view or (message.view == self.view and self.view_active)):
            self.dropped["old_new_view"] += 1
            return
        known = self._view_change_messages

        def already_valid(vc: ViewChange) -> bool:
            return known.get(vc.replica) == vc

        verify = self._verify_replica_signature
        if (reason := new_view_reason(self.config, message, verify, already_valid)) is not None:
            self.dropped[reason] += 1
            return
        for vc in message.view_changes:
            if vc.stable_sequence > self.stable_checkpoint:
                # The new view starts above min-s: what is below it must come by state transfer.
                proof = vc.checkpoint_proof
                self._stable_checkpoint_proven(
                    vc.stable_sequence, proof[0].digest, proof, wait=False
                )
        if rejoin:
            # V5': the view 2f + 1 others work in, installed while we were away: follow it,
            # without voting (as when returning to the view we left).
            self._passive_view = message.view
            self.view_changes_abandoned += 1
        self._install_view(message)

    def _install_view(self, new_view: NewView) -> None:
        """V3: enter the view: the NEW-VIEW's PRE-PREPAREs replace the log above h, and are
        prepared and committed as in the normal case (executed ones are not executed again)."""
        self.view = new_view.view
        self._mode = _NORMAL if self._fetch is None else _FETCHING_STATE
        self._new_view = new_view
        self._seen_working = {}
        self._rejoining = None
        self._view_change_timer.stop()
        self._view_change_resend_timer.stop()
        self._persist.append(new_view)
        self._view_change_messages = {
            r: vc for r, vc in self._view_change_messages.items() if vc.new_view > self.view
        }
        self._higher_view_seen = {r: v for r, v in self._higher_view_seen.items() if v > self.view}
        self._log = {}
        self._proposed.clear()
        last = self.stable_checkpoint
        for pre_prepare in new_view.pre_prepares:
            if pre_prepare.sequence <= self.stable_checkpoint:
                continue
            last = pre_prepare.sequence
            entry = self._entry(pre_prepare.sequence)
            entry.pre_prepare = pre_prepare
            self._persist.append(pre_prepare)
            if self._batch_of(entry) is not None:
                self._mark_proposed(entry.pre_prepare)
            if not self.is_primary:
                self._prepare(entry)
        self._last_pre_prepared = last
        timestamps = [pp.timestamp_ms for pp in new_view.pre_prepares]
        self._last_assigned = max(last, self.last_executed)
        self._last_proposed_timestamp_ms = max([self.last_batch_timestamp_ms, *timestamps])
        # V1: a fresh request timer for what still waits, and the new primary learns of it.
        self._restart_request_timer()
        self._waiting.forget_proposals()
        if self.is_primary:
            for request in self._waiting.requests.values():
                key = (request.client, request.timestamp)
                if key not in self._pending:
                    self._pending[key] = request
                    self._pending_bytes += sizes.request_bytes(request)
        else:
            for request in self._pending.values():
                self._wait_for(request)
            self._pending.clear()
            self._pending_bytes = 0
            self._batch_timer.stop()
            now = self.now_ms
            for client, request in self._waiting.requests.items():
                if (client, request.timestamp) not in self._proposed:
                    self._waiting.await_proposal(client, now)
                self._send((self.primary,), request)
        self._replay_stash()
        self._execute_committed()

    def _stash_if_future(self, message: PrePrepare | Prepare | Commit, view: int) -> bool:
        """True if `message` is not for now. V3': a message of the next view we can install is
        kept for when it is installed; C2': one of this view above the high watermark (within
        one more window) is kept for when the window advances. Far-future views are not kept:
        no view change could use them (they still count towards V5)."""
        sequence = message.sequence
        if view < self.view or (view == self.view and self._mode is not _VIEW_CHANGE):
            if view != self.view or sequence <= self.high_watermark:
                return False
            if sequence > self.high_watermark + self._log_window:
                self._note_primary_ahead(message)
                return False  # refused as above_high_watermark by its handler
            self._stash_message(message)
            return True
        if view > self.view:
            self._note_higher_view(message, view)
        if view != self._next_view() or sequence <= self.stable_checkpoint or (
            sequence > self.high_watermark + self._log_window
        ):
            self.dropped["useless_future_message"] += 1
            return True
        self._stash_message(message)
        return True

    def _note_primary_ahead(self, message: PrePrepare | Prepare | Commit) -> None:
        """V1'': a PRE-PREPARE of our view beyond everything we may keep: the primary is a
        window or more ahead of us (our checkpoints are late), not idle; and we are behind.
        Its signature is checked before it counts, and only within one more window: a
        far-off sequence number costs no check (N3)."""
        sequence = message.sequence
        if (type(message) is PrePrepare and sequence > self._last_pre_prepared
                and sequence <= self.high_watermark + 2 * self._log_window
                and message.replica == self.view % self._n
                and self._verify_replica_signature(message)):
            self._last_pre_prepared = sequence
            if sequence > self._highest_seen:
                self._highest_seen = sequence

    def _next_view(self) -> int:
        """The view whose messages a view change may use: the one we wait to install, or the
        one after the active view."""
        return self.view + 1 if self.view_active else self.view

    def _stash_message(self, message: PrePrepare | Prepare | Commit) -> None:
        sender = message.replica
        if not 0 <= sender < self._n or sender == self.id:
            self.dropped["unknown_replica"] += 1
            return
        if type(message) is PrePrepare and sender != message.view % self._n:
            self.dropped["pre_prepare_not_from_primary"] += 1
            return
        size = sizes.message_bytes(message)
        if not self._stash.has_room(sender, size):
            self.dropped["stash_full"] += 1
            return
        # Verified before it is kept: forgeries must not use up an honest sender's share.
        if not self._verify_replica_signature(message):
            self.dropped["bad_signature"] += 1
            return
        self._stash.add(sender, message, size)
        if type(message) is PrePrepare and message.view == self.view and (
            message.sequence > self._last_pre_prepared
        ):
            # V1'': the primary has proposed up to here; our window, not its, is full.
            self._last_pre_prepared = message.sequence

    def _prune_stash(self) -> None:
        """After moving to another view: drop what that view can no longer use."""
        keep_view = self._next_view()
        self._stash.keep_only(lambda message: message.view == keep_view)

    def _replay_stash(self) -> None:
        """Deliver the stash again (after a view is installed, or the window advanced): what is
        usable now is processed, what is still early is kept again, the rest dropped."""
        self._stash_due = False
        handlers = self._handlers
        for message in self._stash.take_all():
            handlers[type(message)](message)

    def _note_higher_view(self, message: Message, view: int) -> None:
        """V5, for a replica that missed a view change (it was down, or cut off): f + 1
        replicas working in a higher view (signed messages prove it) make it ask for that view;
        the new primary answers its VIEW-CHANGE with the NEW-VIEW."""
        sender = message.replica
        if not 0 <= sender < self._n or self._higher_view_seen.get(sender, -1) >= view:
            return
        if not self._verify_replica_signature(message):
            return
        self._higher_view_seen[sender] = view
        higher = sorted(v for r, v in self._higher_view_seen.items() if v > self.view and r != self.id)
        needed = quorum.reply_quorum(self._n)
        if len(higher) >= needed:
            self._higher_view_seen.clear()
            self._start_view_change(higher[-needed])

    # ------------------------------------------------------------------ helpers

    def _entry(self, sequence: int) -> LogEntry:
        entry = self._log.get(sequence)
        if entry is None:
            entry = self._log[sequence] = LogEntry(self.view, sequence)
        return entry

    def _sign(self, message):
        """`message`, which the caller has just built with an empty signature and hands over,
        now carrying our signature over its signing payload.

        The signature is written into the new message itself rather than into a copy (on the
        path of every vote, a second construction costs as much as the signing): nobody else
        holds the message yet, and the signature is not part of the signing payload."""
        assert message.signature == b"", "only a message built for this call is signed in place"
        object.__setattr__(message, "signature", self._signer.sign(signing_payload(message)))
        return message

    def _verify_replica_signature(self, message) -> bool:
        replica = message.replica
        if not 0 <= replica < self._n:
            return False
        return self._verifier.verify(self._keys[replica], signing_payload(message), message.signature)

    def _send(self, to: tuple[int, ...], message: Message) -> None:
        self._messages.append(Outbound(to, message))

    def _check_invariants(self) -> None:
        # h ≤ last executed, except while fetching the state of a checkpoint proven stable.
        assert self._fetch is not None or self.stable_checkpoint <= self.last_executed, (
            self.stable_checkpoint,
            self.last_executed,
        )
        assert self.last_executed <= self.high_watermark
        assert self._fetch is None or self._fetch.sequence == self.stable_checkpoint
        # The mode and the data it stands for agree (see Mode).
        mode = self._mode
        assert (mode is not _NORMAL or self._fetch is None) and (
            mode is not _FETCHING_STATE or self._fetch is not None), (mode, self._fetch)

    def _check_timers(self) -> None:
        """The timers agree with the state they stand for (checked once a tick: a step that
        breaks this is caught by the next tick, at a fraction of the cost of every message)."""
        mode = self._mode
        assert self._fetch_timer.running == (self._fetch is not None)
        assert self._view_change_resend_timer.running == (mode is _VIEW_CHANGE)
        assert not self._view_change_timer.running or mode is _VIEW_CHANGE
        assert self._lagging_timer.running == (self._lagging is not None)
        self._waiting.check()


def _sender(vote: Prepare) -> int:
    return vote.replica


def _without_batch(pre_prepare: PrePrepare) -> PrePrepare:
    """The PRE-PREPARE without its requests (its signed digest still covers them); the same
    as `dataclasses.replace(pre_prepare, requests=())`, several times cheaper."""
    if not pre_prepare.requests:
        return pre_prepare
    return PrePrepare(pre_prepare.view, pre_prepare.sequence, pre_prepare.digest,
                      pre_prepare.timestamp_ms, (), pre_prepare.replica, pre_prepare.signature)
