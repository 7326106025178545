"""The attacks of issue 11 on availability ("Robust PBFT"), as simulator behaviours: each one
stops or slows a cluster whose safety it cannot break.

- `LargeRequestClients` (item 1): not an attack at all, correct clients whose requests are as
  large as the configuration allows, all at once; a batch closed by request count only
  outgrows the message limit.
- `CensoringPrimary` (item 2): a primary that never proposes one client's requests.
- `DuplicateBatchPrimary` (item 3): a primary that proposes one batch at n and n + 1.
- `StashFlooder` (item 6): a replica that fills its peers' stashes with large, signed messages
  for future views and above the high watermark.
- Item 8 needs no behaviour: late CHECKPOINTs are a network delay
  (`simulations.network.Network.slow_down`).
- `SlowPrimary` and `WithholdCommits` (item 9): a primary that proposes just in time, and an
  accomplice backup that never commits.

And, for issue 14 (adversaries for whole classes): `WithholdCommits(peers=...)`, a backup whose
COMMITs reach some replicas and not others, and `JustTolerablePrimary`, a primary just below
the proposal delay its backups tolerate.

They follow `simulations.byzantine`'s API (`Behaviour`: `outgoing`, `incoming`, `on_tick`) and
its habits: randomness only from `context.rng`, lies signed with the liar's own key. The
scenarios that use them are in `simulations.scenarios_attacks`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from pbft.app import KeyValueStore, kv_put
from pbft.codec import batch_digest, signing_payload
from pbft.core import sizes
from pbft.messages import Commit, LoggedBatch, Message, Prepare, PrePrepare, Request

from .byzantine import Behaviour, ByzantineContext, Send, without_own_votes


def sized_put(key: str, token: bytes, size: int) -> bytes:
    """A `kv_put` of `key` whose encoded operation is exactly `size` bytes: `token` (which makes
    it unique) padded with dots. Raises ValueError if `size` cannot hold the key and token."""
    bare = len(kv_put(key, token))
    for header in range(5):  # msgpack's bin header grows (by up to 4 bytes) with the length
        value = token + b"." * (size - bare - header)
        if len(value) >= len(token) and len(operation := kv_put(key, value)) == size:
            return operation
    raise ValueError(f"no kv_put of {key!r} with token {token!r} is {size} bytes")


class LargeRequestClients:
    """`count` correct clients, each sending `requests` operations of `operation_bytes` bytes
    (default: the configuration's `operation_bytes_max`, the largest a replica accepts), to a
    key of its own, all starting within `think_ms` of the start. Not Byzantine: the requests
    are valid, and any number of clients may send them at once (issue 11, item 1).

    Install with `install(simulation)`; the simulation's application must accept values that
    large (`app_factory()`: a `KeyValueStore` whose values may be `operation_bytes_max` long).
    """

    description = "correct clients sending requests of operation_bytes_max bytes, all at once"

    def __init__(self, count: int = 8, requests: int = 3, think_ms: float = 1.0,
                 operation_bytes: int | None = None) -> None:
        self.count = count
        self.requests = requests
        self.think_ms = think_ms
        self.operation_bytes = operation_bytes

    @staticmethod
    def app_factory(value_bytes_max: int) -> Any:
        """A factory of key-value stores whose values may be `value_bytes_max` long (pass the
        configuration's `operation_bytes_max`)."""
        return lambda: KeyValueStore(value_bytes_max=value_bytes_max)

    def install(self, simulation: Any) -> list[Any]:
        """Add the clients to `simulation` (correct ones: checkers wait for them and judge what
        they see); returns their `SimClient`s."""
        size = self.operation_bytes or simulation.config.operation_bytes_max

        def operation(client: int, i: int) -> bytes:
            return sized_put(f"document-{client}", b"%d.%d;" % (client, i), size)

        first = len(simulation.clients)
        return [simulation.add_client(f"large-{first + c}", self.requests, self.think_ms,
                                      operation)
                for c in range(self.count)]


class CensoringPrimary(Behaviour):
    """Never lets the requests of client `victim` (its key) into its replica: it drops them on
    arrival, sent by the client or relayed by a backup (N1), so as primary it never proposes
    them, while it orders everyone else's as a correct primary would. `censored` counts the
    requests dropped."""

    description = "primary that never proposes one client's requests"

    def __init__(self, victim: bytes) -> None:
        self.victim = victim
        self.censored = 0

    def incoming(self, source: Any, message: Message) -> Message | None:
        if type(message) is Request and message.client == self.victim:
            self.censored += 1
            return None
        return message


class DuplicateBatchPrimary(Behaviour):
    """As primary, proposes one batch at two sequence numbers: at its first PRE-PREPARE for a
    checkpoint's sequence number n (n a multiple of `checkpoint_interval`, at least
    `from_sequence`), it first sends the same batch (same requests, timestamp and digest),
    signed, at n + 1 to `first_to` (default: the first 2f backups, enough to prepare it, too
    few to commit it), and only `gap_ms` later the PRE-PREPARE for n to everyone. With
    `then_silent`, it then sends nothing more, so that a view change follows.

    Batches stored by digest and garbage-collected by the sequence number they were last stored
    under vanish when n becomes stable, though n + 1 still needs its batch: the NEW-VIEW names
    n + 1's digest, and no correct replica can supply the batch (issue 11, item 3).
    `duplicated` holds (n, n + 1, digest) once done."""

    description = "primary proposing one batch at two sequence numbers, n + 1 first"

    def __init__(self, from_sequence: int = 1, first_to: tuple[int, ...] | None = None,
                 gap_ms: float = 10, then_silent: bool = True) -> None:
        self.from_sequence = from_sequence
        self.first_to = first_to
        self.gap_ms = gap_ms
        self.then_silent = then_silent
        self.duplicated: tuple[int, int, bytes] | None = None
        self.suppressed = 0

    def attach(self, context: ByzantineContext) -> None:
        super().attach(context)
        if self.first_to is None:
            self.first_to = context.others[: 2 * context.config.f]

    def outgoing(self, to: tuple, message: Message) -> Send:
        if self.duplicated is not None:
            if self.then_silent:
                self.suppressed += 1
                return []
            return [(to, message)]
        context = self.context
        if not (type(message) is PrePrepare and message.requests
                and message.replica == context.replica_id
                and message.sequence >= self.from_sequence
                and message.sequence % context.config.checkpoint_interval == 0):
            return [(to, message)]
        n = message.sequence
        copy = context.sign(replace(message, sequence=n + 1))
        self.duplicated = (n, n + 1, message.digest)
        context.send_later(self.gap_ms, to, message)
        return [(self.first_to, copy)]


class StashFlooder(Behaviour):
    """At `at_ms`, sends every other replica `count` large PRE-PREPAREs, validly signed, half
    for the next view and half for a view `views_ahead` views ahead (both views it would lead:
    install it on the next view's primary), each as large as `batch_bytes_max` allows (signed
    requests of a client of its own, registered as a faulty client so that checkers know the
    key), then `votes` PREPAREs and as many COMMITs above the high watermark.

    Replicas that keep messages of future views before any check, counted by number and not by
    bytes, hold every byte of them for as long as those views do not come (issue 11, item 6).
    `sent_bytes` is the flood's size per receiver (`pbft.core.sizes.message_bytes`)."""

    description = "floods future-view stashes with large signed PRE-PREPAREs and votes above H"

    CLIENT_NAME = "stash-flooder-client"

    def __init__(self, count: int = 40, at_ms: int = 200, views_ahead: int = 1_000,
                 requests_per_batch: int = 3, votes: int = 500) -> None:
        self.count = count
        self.at_ms = at_ms
        self.views_ahead = views_ahead
        self.requests_per_batch = requests_per_batch
        self.votes = votes
        self.sent = 0
        self.sent_bytes = 0

    def on_tick(self, now_ms: int) -> None:
        if self.sent or now_ms < self.at_ms:
            return
        context = self.context
        config, replica, me = context.config, context.replica, context.replica_id
        n = config.n
        next_view = replica.view + 1
        far_view = next_view + self.views_ahead
        # Views this replica leads: it is their legitimate primary.
        next_view += (me - next_view) % n
        far_view += (me - far_view) % n
        requests = self._requests(now_ms)
        window = config.log_window
        low = replica.stable_checkpoint
        for i in range(self.count):
            view = next_view if i % 2 == 0 else far_view
            sequence = low + 1 + (i // 2) % window
            batch = requests[i]
            pre_prepare = context.sign(PrePrepare(view, sequence, batch_digest(now_ms, batch),
                                                  now_ms, batch, me, b""))
            self.sent_bytes += sizes.message_bytes(pre_prepare)
            context.send(context.others, pre_prepare)
            self.sent += 1
        high = replica.stable_checkpoint + window
        digest = batch_digest(now_ms, requests[0])
        for i in range(self.votes):
            for kind in (Prepare, Commit):
                vote = context.sign(kind(replica.view, high + 1 + i, digest, me, b""))
                self.sent_bytes += sizes.message_bytes(vote)
                context.send(context.others, vote)
                self.sent += 1

    def _requests(self, now_ms: int) -> list[tuple[Request, ...]]:
        """`count` batches of `requests_per_batch` distinct signed requests, each batch's
        PRE-PREPARE at most `batch_bytes_max` (`pbft.core.sizes`). The requests share one
        operation's bytes (what a replica holds is counted per request all the same)."""
        simulation, config = self.context.simulation, self.context.config
        per_batch = self.requests_per_batch
        room = config.batch_bytes_max - sizes.PRE_PREPARE_OVERHEAD_BYTES
        size = min(config.operation_bytes_max, room // per_batch - sizes.REQUEST_OVERHEAD_BYTES)
        signer = simulation.make_signer(self.CLIENT_NAME)
        if signer.public_key not in simulation._clients_by_key:
            simulation.add_client(self.CLIENT_NAME, 0, 1.0, lambda c, i: b"", correct=False)
        operation = sized_put("stash-flood", b"", size)
        batches = []
        timestamp = now_ms * 1000
        for _ in range(self.count):
            batch = []
            for _ in range(per_batch):
                timestamp += 1
                request = Request(operation, timestamp, signer.public_key, False, b"")
                batch.append(replace(request, signature=signer.sign(signing_payload(request))))
            batches.append(tuple(batch))
        return batches


class SlowPrimary(Behaviour):
    """As primary, holds each of its PRE-PREPAREs `delay_ms` before sending it (default: 50 ms
    under `request_timeout_ms`, just early enough that no backup's request timer (V1) fires
    while it waits; the backups' proposal timers (V1'') replace it long before). Its replica is
    otherwise correct: it orders everyone's requests, slowly."""

    description = "primary that sends each PRE-PREPARE just before the request timeout"

    def __init__(self, delay_ms: float | None = None) -> None:
        self.delay_ms = delay_ms
        self.delayed = 0

    def attach(self, context: ByzantineContext) -> None:
        super().attach(context)
        if self.delay_ms is None:
            self.delay_ms = context.config.request_timeout_ms - 50

    def outgoing(self, to: tuple, message: Message) -> Send:
        if type(message) is PrePrepare and message.replica == self.context.replica_id:
            self.delayed += 1
            self.context.send_later(self.delay_ms, to, message)
            return []
        return [(to, message)]


class WithholdCommits(Behaviour):
    """Never sends a COMMIT (with `peers`, to those replicas only: the others get them); votes
    and answers otherwise as a correct replica. Its COMMITs inside the LOGGED-BATCHes it
    serves to those it withholds from are left out too (`without_own_votes`): a withheld vote
    must not arrive hidden in a certificate. Beside a slow primary (`SlowPrimary`), the
    accomplice that keeps the commit quorum as small as it can be; on its own with `peers`,
    the backup whose COMMITs reach some replicas and not others, so that they commit at
    different times. `withheld` counts the COMMITs withheld (from at least one replica),
    `withheld_to` the copies per replica, and `hidden` the COMMITs left out of certificates."""

    description = "backup that never sends its COMMITs"

    def __init__(self, peers: tuple[int, ...] | None = None) -> None:
        self.peers = None if peers is None else frozenset(peers)
        self.withheld = 0
        self.withheld_to: Counter[int] = Counter()
        self.hidden = 0
        if peers is not None:
            self.description = ("backup that withholds its COMMITs from replicas "
                                + ", ".join(map(str, sorted(self.peers))))

    def outgoing(self, to: tuple, message: Message) -> Send:
        peers = self.peers
        if type(message) is Commit:
            kept = () if peers is None else tuple(r for r in to if r not in peers)
            if len(kept) < len(to):
                self.withheld += 1
                self.withheld_to.update(r for r in to if r not in kept)
            return [(kept, message)] if kept else []
        if type(message) is LoggedBatch and (peers is None or any(r in peers for r in to)):
            stripped, hidden = without_own_votes(message, (Commit,), self.context)
            if hidden:
                self.hidden += hidden
                rest = () if peers is None else tuple(r for r in to if r not in peers)
                withheld_from = tuple(r for r in to if r not in rest)
                sends = [(rest, message)] if rest else []
                if stripped is not None:
                    sends.append((withheld_from, stripped))
                return sends
        return [(to, message)]


class JustTolerablePrimary(Behaviour):
    """As primary, holds each of its PRE-PREPAREs for just under the proposal delay its backups
    always tolerate (V1''): `propose_timeout // 5` (the floor of `proposal_slack_ms`, whatever
    commit rounds they measured) less `margin_ms`, for the request's way to it and the
    PRE-PREPARE's way back. The slowest primary that is never replaced: it keeps its view
    and orders everyone's requests, each a little late ("just below the timeout" of issue 14;
    `SlowPrimary`, which waits for the request timer instead, is now replaced by V1'').
    `delayed` counts the held PRE-PREPAREs and `hold_ms` is the hold."""

    description = "primary that holds each PRE-PREPARE just under what backups tolerate (V1'')"

    def __init__(self, margin_ms: float = 15) -> None:
        self.margin_ms = margin_ms
        self.delayed = 0
        self.hold_ms = 0.0

    def attach(self, context: ByzantineContext) -> None:
        super().attach(context)
        self.hold_ms = max(0.0, context.config.propose_timeout // 5 - self.margin_ms)

    def outgoing(self, to: tuple, message: Message) -> Send:
        if type(message) is PrePrepare and message.replica == self.context.replica_id:
            self.delayed += 1
            self.context.send_later(self.hold_ms, to, message)
            return []
        return [(to, message)]


class BeyondHighWatermark(Behaviour):
    """As primary, sends each of its PRE-PREPAREs a second time at the first sequence number
    above its high watermark (its stable checkpoint + L), re-signed: N3's upper bound. Correct
    backups keep it aside (C2': within one more window) and take it only once their window has
    moved past it; a replica whose bound is off by one votes for it at once."""

    description = "primary that proposes at the sequence number just above the high watermark"

    def __init__(self) -> None:
        self.sent_beyond = 0

    def outgoing(self, to: tuple, message: Message) -> Send:
        sends = [(to, message)]
        replica = self.context.replica
        if isinstance(message, PrePrepare) and message.replica == replica.id:
            beyond = replica.stable_checkpoint + self.context.config.log_window + 1
            if beyond != message.sequence:
                self.sent_beyond += 1
                sends.append((to, self.context.sign(replace(message, sequence=beyond))))
        return sends
