"""Byzantine behaviours: small interceptors around one replica's traffic.

A behaviour sees every message its replica sends (`outgoing`) and receives (`incoming`), and
can rewrite, drop, duplicate or add to them, signing with the replica's own key through its
context. Writing a new one takes a few lines:

    class DropCommits(Behaviour):
        '''Never lets a COMMIT out.'''
        def outgoing(self, to, message):
            return [] if isinstance(message, Commit) else [(to, message)]

    Simulation(seed=1, behaviours={2: DropCommits()})

The replica underneath runs the real core; a behaviour only lies about what it says and hears.

Below the API is a library, one small class per lie (silence, crashes at a chosen point,
equivocation, wrong digests, tampered requests, off-by-one views and sequence numbers, phantom
votes, forged signatures, replays, view-change spam, forged prepared certificates, equivocating
NEW-VIEWs, NEW-VIEWs short of a VIEW-CHANGE, old-view votes replayed behind a NEW-VIEW, prepared
certificates pairing another PRE-PREPARE with genuine PREPAREs, commit certificates pushed
unasked, false checkpoints, corrupted state transfer, selective delivery, Twins, slow state
sources, fetch floods, and `Collusion`: f + 1 colluding replicas, a negative control the
checkers must flag); `Compose` stacks several on one replica. A behaviour that silences a kind
of vote silences it inside the certificates it serves too (`without_own_votes`). Byzantine
clients have the same shape (`ClientBehaviour`, installed with `add_byzantine_client`),
wrapping an honest `ClientSession` without changes to the engine. The scenarios that use them
are in `simulations.scenarios_byzantine`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pbft.codec import batch_digest, signing_payload
from pbft.core import ClientReady, ClientSession, Outbound
from pbft.core.quorum import quorum
from pbft.core.state_transfer import proof_entries_max
from pbft.core.view_change import new_view_plan, view_change_reason
from pbft.messages import (
    DIGEST_BYTES,
    SIGNATURE_BYTES,
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
    StateChunk,
    ViewChange,
)

from .clients import SessionProxy

Send = list[tuple[tuple, Any]]


class ByzantineContext:
    """What a behaviour may use: its replica's id, key and core, the configuration, the
    simulation's random generator and clock, and a way to send extra messages."""

    def __init__(self, simulation: Any, replica_id: int) -> None:
        self._simulation = simulation
        self.replica_id = replica_id
        self.config = simulation.config
        self.signer = simulation.signers[replica_id]
        self.rng = simulation.rng

    @property
    def replica(self):
        return self._simulation.replicas[self.replica_id]

    @property
    def now_ms(self) -> int:
        return self._simulation.now_us // 1000

    @property
    def others(self) -> tuple[int, ...]:
        return tuple(r for r in range(self.config.n) if r != self.replica_id)

    def sign(self, message: Message) -> Message:
        """`message` re-signed with this replica's own key (a lie, but a signed one)."""
        return replace(message, signature=self.signer.sign(signing_payload(message)))

    def send(self, to: tuple, message: Any) -> None:
        """Send an extra message (or raw bytes) from this replica, bypassing `outgoing`."""
        self._simulation.send(self.replica_id, to, message)

    # Extensions (used by the library below; all optional for a new behaviour).

    @property
    def simulation(self) -> Any:
        """The engine itself, for behaviours that need more than the above (`Twins` builds a
        second replica from its configuration, verifier and application factory)."""
        return self._simulation

    def send_later(self, delay_ms: float, to: tuple, message: Any) -> None:
        """Send `message` from this replica `delay_ms` of virtual time from now, bypassing
        `outgoing`. The run lasts at least until then (it is scheduled with `Simulation.at`,
        not counted as a fault for the liveness clock)."""
        replica_id = self.replica_id
        at_ms = self._simulation.now_us / 1000 + delay_ms
        self._simulation.at(at_ms, lambda s: s.send(replica_id, to, message), fault=False)

    def crash(self) -> None:
        """Stop this replica now: it neither receives nor ticks any more (`Simulation.crash`).
        What its current `ready()` asked to persist is already durable."""
        self._simulation.crash(self.replica_id)


class Behaviour:
    """An honest pass-through; subclasses override what they need."""

    #: One line for `python -m simulations list` and run reports.
    description = "honest"

    def attach(self, context: ByzantineContext) -> None:
        self.context = context

    def outgoing(self, to: tuple, message: Message) -> Send:
        return [(to, message)]

    def incoming(self, source: Any, message: Message) -> Message | None:
        return message

    def on_tick(self, now_ms: int) -> None:
        pass


# ====================================================================== the library
#
# Each behaviour below is one lie, small enough to read in a minute. They compose (`Compose`),
# they draw randomness only from `context.rng` (so a run stays a function of its seed), and
# they re-sign what they alter with their own key: a forged field is caught by the check it
# attacks, not by a broken signature, unless breaking the signature is the point.

_SIGNED = (PrePrepare, Prepare, Commit, Checkpoint, ViewChange, NewView, FetchState, StateChunk,
           FetchLog)


def _random_digest(rng: Any) -> bytes:
    return rng.randbytes(DIGEST_BYTES)


def _flip_byte(data: bytes, rng: Any) -> bytes:
    """`data` with one byte changed (one byte added if it is empty)."""
    if not data:
        return b"\x01"
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]


def without_own_votes(message: Any, kinds: tuple[type, ...],
                      context: ByzantineContext) -> tuple[Any, int]:
    """`message` without the votes of `kinds` that this replica signed and that travel inside
    it: a behaviour that silences its COMMITs (say) must not let them out inside the messages
    that carry certificates. Covered: the COMMITs of a LOGGED-BATCH (its own PRE-PREPARE there
    drops the whole LOGGED-BATCH, None), the CHECKPOINTs of a VIEW-CHANGE's proof and the
    PREPAREs of its prepared certificates (a certificate on its own PRE-PREPARE is left out
    whole), and a NEW-VIEW's own PRE-PREPAREs and VIEW-CHANGE. A signed container is signed
    again; a message with nothing of its own inside is returned as it is. Returns the message
    (possibly None) and how many votes were taken out."""
    me = context.replica_id

    def own(vote: Any) -> bool:
        return isinstance(vote, kinds) and vote.replica == me

    kind = type(message)
    if kind is LoggedBatch:
        if own(message.pre_prepare):
            return None, 1 + sum(1 for c in message.commits if own(c))
        commits = tuple(c for c in message.commits if not own(c))
        hidden = len(message.commits) - len(commits)
        return (replace(message, commits=commits) if hidden else message), hidden
    if kind is ViewChange:
        return _view_change_without(message, own, context)
    if kind is NewView:
        hidden = 0
        view_changes = []
        for vc in message.view_changes:
            if own(vc):
                hidden += 1
                continue
            vc, taken = _view_change_without(vc, own, context)
            hidden += taken
            view_changes.append(vc)
        pre_prepares = tuple(pp for pp in message.pre_prepares if not own(pp))
        hidden += len(message.pre_prepares) - len(pre_prepares)
        if not hidden:
            return message, 0
        return context.sign(replace(message, view_changes=tuple(view_changes),
                                    pre_prepares=pre_prepares)), hidden
    return message, 0


def _view_change_without(message: ViewChange, own: Callable[[Any], bool],
                         context: ByzantineContext) -> tuple[ViewChange, int]:
    proof = tuple(c for c in message.checkpoint_proof if not own(c))
    hidden = len(message.checkpoint_proof) - len(proof)
    prepared = []
    for certificate in message.prepared:
        if own(certificate.pre_prepare):
            hidden += 1 + sum(1 for p in certificate.prepares if own(p))
            continue
        prepares = tuple(p for p in certificate.prepares if not own(p))
        hidden += len(certificate.prepares) - len(prepares)
        prepared.append(replace(certificate, prepares=prepares)
                        if len(prepares) != len(certificate.prepares) else certificate)
    if not hidden:
        return message, 0
    return context.sign(replace(message, checkpoint_proof=proof, prepared=tuple(prepared))), hidden


class _ComposedContext(ByzantineContext):
    """The context of one behaviour inside a `Compose`: what it sends on its own (`send`,
    `send_later`) passes through the behaviours after it, as its `outgoing` output does, so
    that a later `Silent` silences a replay or a twin too."""

    def __init__(self, outer: ByzantineContext, later: tuple["Behaviour", ...]) -> None:
        self._simulation = outer._simulation
        self.replica_id = outer.replica_id
        self.config = outer.config
        self.signer = outer.signer
        self.rng = outer.rng
        self._outer = outer
        self._later = later

    def send(self, to: tuple, message: Any) -> None:
        sends = [(to, message)]
        for behaviour in self._later:
            sends = [out for t, m in sends for out in behaviour.outgoing(t, m)]
        for t, m in sends:
            if t:
                self._outer.send(t, m)

    def send_later(self, delay_ms: float, to: tuple, message: Any) -> None:
        at_ms = self._simulation.now_us / 1000 + delay_ms
        self._simulation.at(at_ms, lambda s: self.send(to, message), fault=False)


class Compose(Behaviour):
    """Several behaviours on one replica: each message passes through them in order (what the
    first one sends, the second one sees), and every one of them ticks. What one of them sends
    on its own (`context.send`, `send_later`: a replay, a twin's traffic, a held message)
    passes through the ones after it too.

        Compose(Silent(types=(PrePrepare,)), ForgedPreparedCertificate())
    """

    def __init__(self, *behaviours: Behaviour) -> None:
        self.behaviours = behaviours
        self.description = " + ".join(b.description for b in behaviours)

    def attach(self, context: ByzantineContext) -> None:
        super().attach(context)
        for i, behaviour in enumerate(self.behaviours):
            behaviour.attach(_ComposedContext(context, self.behaviours[i + 1:]))

    def outgoing(self, to: tuple, message: Message) -> Send:
        sends = [(to, message)]
        for behaviour in self.behaviours:
            sends = [out for t, m in sends for out in behaviour.outgoing(t, m)]
        return sends

    def incoming(self, source: Any, message: Message) -> Message | None:
        for behaviour in self.behaviours:
            message = behaviour.incoming(source, message)
            if message is None:
                return None
        return message

    def on_tick(self, now_ms: int) -> None:
        for behaviour in self.behaviours:
            behaviour.on_tick(now_ms)


class Silent(Behaviour):
    """Sends nothing (or nothing of the given `types`) from `from_ms` on; with `deaf`, it also
    hears nothing. Its peers cannot tell it from a crashed replica, though its core runs on.
    `Silent(types=(PrePrepare,))` is a primary that stops proposing. Its own votes of `types`
    inside other messages are silenced too (`without_own_votes`: `Silent(types=(Commit,))`
    serves LOGGED-BATCHes without its COMMIT), counted in `hidden`."""

    description = "silent: sends nothing"

    def __init__(self, types: tuple[type, ...] | None = None, *, deaf: bool = False,
                 from_ms: int = 0) -> None:
        self.types = types
        self.deaf = deaf
        self.from_ms = from_ms
        self.suppressed = 0
        self.hidden = 0
        if types is not None:
            self.description = "silent: sends no " + "/".join(t.__name__ for t in types)

    def outgoing(self, to: tuple, message: Message) -> Send:
        if self.context.now_ms < self.from_ms:
            return [(to, message)]
        if self.types is None or isinstance(message, self.types):
            self.suppressed += 1
            return []
        message, hidden = without_own_votes(message, self.types, self.context)
        self.hidden += hidden
        return [] if message is None else [(to, message)]

    def incoming(self, source: Any, message: Message) -> Message | None:
        return None if self.deaf and self.context.now_ms >= self.from_ms else message


class CrashAt(Behaviour):
    """Crashes right after sending its `count`-th message of type `kind` (a PRE-PREPARE, a
    COMMIT...). With `deliver_to`, that last message reaches only those replicas: a multicast
    cut short by the crash. With `restart_after_ms`, it restarts from its durable records and
    is honest from then on."""

    description = "crashes at a chosen point"

    def __init__(self, kind: type, count: int = 1, *, deliver_to: tuple[int, ...] | None = None,
                 restart_after_ms: float | None = None) -> None:
        self.kind = kind
        self.count = count
        self.deliver_to = deliver_to
        self.restart_after_ms = restart_after_ms
        self.seen = 0
        #: "armed", then "crashed", then (after a restart) "restarted".
        self.state = "armed"
        self.crashed_at_ms: int | None = None
        self.description = f"crashes right after its {kind.__name__} number {count}"

    def outgoing(self, to: tuple, message: Message) -> Send:
        if self.state == "crashed":
            return []  # the rest of the Ready it was handing over dies with it
        if self.state == "restarted" or not isinstance(message, self.kind):
            return [(to, message)]
        self.seen += 1
        if self.seen < self.count:
            return [(to, message)]
        self.state = "crashed"
        self.crashed_at_ms = self.context.now_ms
        self.context.crash()
        if self.restart_after_ms is not None:
            self.context.simulation.at(self.context.now_ms + self.restart_after_ms, self._restart)
        if self.deliver_to is not None:
            to = tuple(r for r in to if r in self.deliver_to)
        return [(to, message)] if to else []

    def _restart(self, simulation: Any) -> None:
        self.state = "restarted"
        simulation.restart(self.context.replica_id)


class EquivocatingPrimary(Behaviour):
    """As primary, sends one PRE-PREPARE to one group of backups and a different one (same
    requests, another batch timestamp or order: another digest), validly signed, to the rest.
    After `evidence_after_ms` each group also gets the other version, which it must refuse
    (`conflicting_pre_prepare`)."""

    description = "equivocating primary: different signed PRE-PREPAREs to different backups"

    def __init__(self, split: int | None = None, evidence_after_ms: float | None = 50) -> None:
        #: How many of the destinations get the original (the default: half, rounded down).
        self.split = split
        self.evidence_after_ms = evidence_after_ms
        self.equivocations = 0

    def outgoing(self, to: tuple, message: Message) -> Send:
        if not isinstance(message, PrePrepare) or not message.requests or len(to) < 2:
            return [(to, message)]
        split = len(to) // 2 if self.split is None else self.split
        first, second = to[:split], to[split:]
        other = self._variant(message)
        self.equivocations += 1
        if self.evidence_after_ms is not None:
            if first:
                self.context.send_later(self.evidence_after_ms, first, other)
            self.context.send_later(self.evidence_after_ms, second, message)
        return [(first, message), (second, other)] if first else [(second, other)]

    def _variant(self, message: PrePrepare) -> PrePrepare:
        requests = message.requests
        if len(requests) > 1:
            requests, timestamp_ms = requests[::-1], message.timestamp_ms
        else:
            timestamp_ms = message.timestamp_ms + 1
        return self.context.sign(replace(
            message, requests=requests, timestamp_ms=timestamp_ms,
            digest=batch_digest(timestamp_ms, requests),
        ))


class WrongDigest(Behaviour):
    """As primary, signs PRE-PREPAREs whose digest is not the digest of their batch
    (`batch_digest_mismatch`). With `every` = k, only one PRE-PREPARE in k."""

    description = "primary whose PRE-PREPARE digests do not match their batches"

    def __init__(self, every: int = 1) -> None:
        self.every = every
        self.sent = 0

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, PrePrepare) and message.requests:
            self.sent += 1
            if self.sent % self.every == 0:
                digest = _random_digest(self.context.rng)
                message = self.context.sign(replace(message, digest=digest))
        return [(to, message)]


class TamperedRequest(Behaviour):
    """As primary, changes a byte of one request's operation in every batch and signs the
    matching digest: the batch is consistent, but the client's signature no longer verifies
    (`bad_request_signature`)."""

    description = "primary that alters a client's request inside its batches"

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, PrePrepare) and message.requests:
            rng = self.context.rng
            requests = list(message.requests)
            i = rng.randrange(len(requests))
            requests[i] = replace(requests[i], operation=_flip_byte(requests[i].operation, rng))
            requests = tuple(requests)
            message = self.context.sign(replace(
                message, requests=requests, digest=batch_digest(message.timestamp_ms, requests),
            ))
        return [(to, message)]


class SkewedTimestamps(Behaviour):
    """As primary, proposes batch timestamps ahead of its clock: by default just inside D1's
    `timestamp_skew_max_ms`, so the application's time jumps ahead and every later primary must
    follow it, never go back; with `beyond`, past the bound (`batch_timestamp_skew`)."""

    description = "primary proposing batch timestamps at (or beyond) the allowed clock skew"

    def __init__(self, *, beyond: bool = False) -> None:
        self.beyond = beyond
        self.sent = 0
        if beyond:
            self.description = "primary proposing batch timestamps beyond the allowed clock skew"

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, PrePrepare) and message.requests:
            self.sent += 1
            skew_max = self.context.config.timestamp_skew_max_ms
            ahead = skew_max + 1_000 if self.beyond else skew_max - 100
            timestamp_ms = max(message.timestamp_ms, self.context.now_ms + ahead)
            message = self.context.sign(replace(
                message, timestamp_ms=timestamp_ms,
                digest=batch_digest(timestamp_ms, message.requests),
            ))
        return [(to, message)]


class OffByOne(Behaviour):
    """Shifts the `field` ("sequence" or "view") of its PRE-PREPAREs, PREPAREs and COMMITs by
    `delta`, re-signed: a replica that miscounts, or lies about where it is."""

    description = "sequence number or view off by one"

    def __init__(self, field: str = "sequence", delta: int = 1,
                 types: tuple[type, ...] = (PrePrepare, Prepare, Commit)) -> None:
        if field not in ("sequence", "view"):
            raise ValueError(f"field must be 'sequence' or 'view', not {field!r}")
        self.field = field
        self.delta = delta
        self.types = types
        self.shifted = 0
        self.description = f"{field} off by {delta:+d} in its {'/'.join(t.__name__ for t in types)}"

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, self.types):
            value = getattr(message, self.field) + self.delta
            if value >= 0:
                self.shifted += 1
                message = self.context.sign(replace(message, **{self.field: value}))
        return [(to, message)]


class PhantomVotes(Behaviour):
    """Votes (PREPARE, COMMIT) for digests nobody proposed, instead of its honest votes, and
    every `spam_every_ms` for sequence numbers nobody proposed yet (within the watermarks)."""

    description = "votes for digests that were never proposed"

    def __init__(self, spam_every_ms: int | None = 200) -> None:
        self.spam_every_ms = spam_every_ms
        self._next_spam_ms = 0

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, (Prepare, Commit)):
            digest = _random_digest(self.context.rng)
            message = self.context.sign(replace(message, digest=digest))
        return [(to, message)]

    def on_tick(self, now_ms: int) -> None:
        if self.spam_every_ms is None or now_ms < self._next_spam_ms:
            return
        self._next_spam_ms = now_ms + self.spam_every_ms
        context, replica = self.context, self.context.replica
        rng = context.rng
        sequence = rng.randint(replica.last_executed + 1, replica.high_watermark)
        kind = rng.choice((Prepare, Commit))
        vote = kind(replica.view, sequence, _random_digest(rng), context.replica_id, b"")
        context.send(context.others, context.sign(vote))


class ForgedSignature(Behaviour):
    """Forges signatures. `mode="impersonate"`: alongside each signed message (kept honest
    with `keep_honest`), a copy that claims another replica as its sender, signed with this
    replica's own key. `mode="garbage"`: every signed message carries random signature bytes
    instead. Either way the victims count `bad_signature`."""

    description = "forged signatures"

    def __init__(self, mode: str = "impersonate", *, keep_honest: bool = True) -> None:
        if mode not in ("impersonate", "garbage"):
            raise ValueError(f"mode must be 'impersonate' or 'garbage', not {mode!r}")
        self.mode = mode
        self.keep_honest = keep_honest
        self.forged = 0
        self.description = ("forged signatures: signs as other replicas" if mode == "impersonate"
                            else "forged signatures: garbage signature bytes")

    def outgoing(self, to: tuple, message: Message) -> Send:
        if not isinstance(message, _SIGNED):
            return [(to, message)]
        rng = self.context.rng
        self.forged += 1
        if self.mode == "garbage":
            forged = replace(message, signature=rng.randbytes(SIGNATURE_BYTES))
            return [(to, forged)] + ([(to, message)] if self.keep_honest else [])
        claimed = rng.choice(self.context.others)
        forged = self.context.sign(replace(message, replica=claimed))
        return ([(to, message)] if self.keep_honest else []) + [(to, forged)]


class Replay(Behaviour):
    """Records the signed messages and client requests it sends and hears (the last
    `capacity`), and on each tick, with probability `rate`, sends one that is at least
    `min_age_ms` old again to every other replica. Its own old replies go back to their
    clients too."""

    description = "replays old messages (recorded, resent later)"

    def __init__(self, capacity: int = 512, min_age_ms: int = 300, rate: float = 0.5) -> None:
        self.capacity = capacity
        self.min_age_ms = min_age_ms
        self.rate = rate
        self.replayed = 0
        self._recorded: list[tuple[int, Any, Any]] = []

    def _record(self, to: Any, message: Any) -> None:
        recorded = self._recorded
        if len(recorded) >= self.capacity:
            del recorded[: self.capacity // 4]
        recorded.append((self.context.now_ms, to, message))

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, Reply):
            self._record(to, message)
        elif isinstance(message, (*_SIGNED, Request)):
            self._record(None, message)
        return [(to, message)]

    def incoming(self, source: Any, message: Message) -> Message | None:
        if isinstance(message, (*_SIGNED, Request)):
            self._record(None, message)
        return message

    def on_tick(self, now_ms: int) -> None:
        context = self.context
        if not self._recorded or context.rng.random() >= self.rate:
            return
        at_ms, to, message = context.rng.choice(self._recorded)
        if now_ms - at_ms < self.min_age_ms:
            return
        self.replayed += 1
        context.send(to if to is not None else context.others, message)


class ClientRequestReplay(Behaviour):
    """Replays correct clients' old requests: keeps the first request of each of `clients` it
    sees (sent to it, or inside a PRE-PREPARE), and every `every_ms` from `from_ms` until
    `until_ms` sends each kept request, validly signed by its client, to every other replica.
    A replica that still remembers the client (N8) ignores it or answers from its reply cache;
    one that forgot it would execute it again."""

    description = "replays the first request of each correct client, again and again"

    def __init__(self, clients: tuple[bytes, ...], *, every_ms: int = 200, from_ms: int = 0,
                 until_ms: int = 10_000) -> None:
        self.clients = frozenset(clients)
        self.every_ms = every_ms
        self.from_ms = from_ms
        self.until_ms = until_ms
        self.replayed = 0
        self._first: dict[bytes, Request] = {}
        self._next_ms = from_ms

    def _keep(self, request: Request) -> None:
        if request.client in self.clients and not request.read_only:
            self._first.setdefault(request.client, request)

    def incoming(self, source: Any, message: Message) -> Message | None:
        if isinstance(message, Request):
            self._keep(message)
        elif isinstance(message, PrePrepare):
            for request in message.requests:
                self._keep(request)
        return message

    def on_tick(self, now_ms: int) -> None:
        if now_ms < self._next_ms or now_ms >= self.until_ms:
            return
        self._next_ms = now_ms + self.every_ms
        for client in sorted(self._first):
            self.replayed += 1
            self.context.send(self.context.others, self._first[client])


class ViewChangeSpam(Behaviour):
    """Every `interval_ms`, a validly signed VIEW-CHANGE for a view `step` above the last one it
    asked for (starting at its own view + 1), with its real stable checkpoint and no prepared
    certificates; each time it also sends the previous one again (`duplicate_view_change`).
    One replica alone must not move anybody (V5 needs f + 1)."""

    description = "view-change spam: VIEW-CHANGEs for ever-higher views"

    def __init__(self, interval_ms: int = 100, step: int = 1, start_ms: int = 0) -> None:
        self.interval_ms = interval_ms
        self.step = step
        self._next_ms = start_ms
        self.view = 0
        self._previous: ViewChange | None = None

    def on_tick(self, now_ms: int) -> None:
        if now_ms < self._next_ms:
            return
        self._next_ms = now_ms + self.interval_ms
        context, replica = self.context, self.context.replica
        self.view = max(self.view, replica.view) + self.step
        message = context.sign(ViewChange(
            self.view, replica.stable_checkpoint, replica.stable_checkpoint_proof, (),
            context.replica_id, b"",
        ))
        context.send(context.others, message)
        if self._previous is not None:
            context.send(context.others, self._previous)
        self._previous = message


class ForgedPreparedCertificate(Behaviour):
    """Adds to each VIEW-CHANGE it sends a prepared certificate for an invented digest at the
    first sequence number above its stable checkpoint, claiming the highest possible view:
    a PRE-PREPARE "from" that view's primary and 2f PREPAREs "from" its backups, all signed
    with its own key (so only the parts it may sign as itself are valid). Accepted, it would
    make the new primary re-propose a batch that never existed (`bad_prepared_certificate`)."""

    description = "VIEW-CHANGE with a forged prepared certificate"

    def __init__(self) -> None:
        self.forged = 0

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, ViewChange) and message.new_view > 0:
            message = self._forge(message)
        return [(to, message)]

    def _forge(self, message: ViewChange) -> ViewChange:
        context = self.context
        config = context.config
        view = message.new_view - 1
        sequence = message.stable_sequence + 1
        digest = _random_digest(context.rng)
        primary = config.primary(view)
        sign = context.sign
        pre_prepare = sign(PrePrepare(view, sequence, digest, context.now_ms, (), primary, b""))
        backups = [r for r in range(config.n) if r != primary]
        # Its own PREPARE (valid, if it is a backup of that view) first, then invented ones.
        backups.sort(key=lambda r: r != context.replica_id)
        prepares = tuple(
            sign(Prepare(view, sequence, digest, r, b""))
            for r in sorted(backups[: 2 * config.f])
        )
        certificate = PreparedCertificate(pre_prepare, prepares)
        prepared = tuple(sorted(
            [c for c in message.prepared if c.pre_prepare.sequence != sequence] + [certificate],
            key=lambda c: c.pre_prepare.sequence,
        ))
        self.forged += 1
        return sign(replace(message, prepared=prepared))


class EquivocatingNewView(Behaviour):
    """As a new primary, holds its NEW-VIEW until it has a VIEW-CHANGE from every replica (or
    `hold_ms` passed), then sends each backup a NEW-VIEW built from its own random choice of
    2f + 1 valid VIEW-CHANGEs. Each one is valid on its own (V3 recomputes its O), but they may
    name different batches, or none, for one sequence number: V2's choice made twice. Where its
    own VIEW-CHANGE is chosen, it is, at random, the honest one or one that hides what prepared
    at it (signed too: a lie by omission no one can check)."""

    description = "new primary sending different valid NEW-VIEWs to different backups"

    def __init__(self, hold_ms: int = 500) -> None:
        self.hold_ms = hold_ms
        self._view_changes: dict[int, dict[int, ViewChange]] = {}
        self._held: tuple[NewView, tuple, int] | None = None
        self.variants_sent = 0
        #: Every distinct O (as (sequence, digest) pairs) it sent, per view.
        self.plans: dict[int, set[tuple]] = {}

    def incoming(self, source: Any, message: Message) -> Message | None:
        if isinstance(message, ViewChange) and self._valid(message):
            self._view_changes.setdefault(message.new_view, {})[message.replica] = message
        return message

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, ViewChange):
            self._view_changes.setdefault(message.new_view, {})[message.replica] = message
        if not isinstance(message, NewView):
            return [(to, message)]
        held = self._held
        if held is not None and held[0].view == message.view:
            self._held = (held[0], tuple(sorted({*held[1], *to})), held[2])
        else:
            self._held = (message, to, self.context.now_ms + self.hold_ms)
        self.on_tick(self.context.now_ms)
        return []

    def on_tick(self, now_ms: int) -> None:
        if self._held is None:
            return
        honest, to, deadline_ms = self._held
        pool = dict(self._view_changes.get(honest.view, {}))
        pool.update({vc.replica: vc for vc in honest.view_changes})
        if len(pool) < self.context.config.n and now_ms < deadline_ms:
            return
        self._held = None
        context = self.context
        needed = quorum(context.config.n)
        candidates = sorted(pool.values(), key=lambda vc: vc.replica)
        me = context.replica_id
        for destination in to:
            chosen = list(context.rng.sample(candidates, needed))
            for i, vc in enumerate(chosen):
                if vc.replica == me and vc.prepared and context.rng.random() < 0.5:
                    chosen[i] = context.sign(replace(vc, prepared=()))
            context.send((destination,), self._new_view(honest.view, tuple(chosen)))
            self.variants_sent += 1

    def _new_view(self, view: int, view_changes: tuple[ViewChange, ...]) -> NewView:
        context = self.context
        me = context.replica_id
        _, plan = new_view_plan(view_changes)
        self.plans.setdefault(view, set()).add(tuple((s, d) for s, d, _ in plan))
        pre_prepares = tuple(
            context.sign(PrePrepare(view, sequence, digest, timestamp_ms, (), me, b""))
            for sequence, digest, timestamp_ms in plan
        )
        return context.sign(NewView(view, view_changes, pre_prepares, me, b""))

    def _valid(self, message: ViewChange) -> bool:
        config, verifier = self.context.config, self.context.simulation.verifier

        def verify(signed: Any) -> bool:
            return 0 <= signed.replica < config.n and verifier.verify(
                config.public_key(signed.replica), signing_payload(signed), signed.signature)

        return view_change_reason(config, message, verify) is None


class FutureViewFlood(Behaviour):
    """At `at_ms`, sends `count` COMMITs for a view far in the future, with garbage signatures:
    replicas keep only messages of the next view they can install (V3'), so these are dropped
    at once (`useless_future_message`)."""

    description = "floods far-future-view COMMITs with garbage signatures"

    def __init__(self, count: int = 1_000, at_ms: int = 200, views_ahead: int = 10**6) -> None:
        self.count = count
        self.at_ms = at_ms
        self.views_ahead = views_ahead
        self.sent = 0

    def on_tick(self, now_ms: int) -> None:
        if self.sent or now_ms < self.at_ms:
            return
        context, replica = self.context, self.context.replica
        garbage = bytes(SIGNATURE_BYTES)
        for i in range(self.count):
            sequence = replica.stable_checkpoint + 1 + i % context.config.log_window
            commit = Commit(replica.view + self.views_ahead, sequence, bytes(DIGEST_BYTES),
                            context.replica_id, garbage)
            context.send(context.others, commit)
        self.sent = self.count


class ForgedCheckpointProof(Behaviour):
    """Claims, in each VIEW-CHANGE it sends, a stable checkpoint `windows_ahead` log windows
    above its real one, with an invented digest and a "proof" of 2f + 1 CHECKPOINTs signed with
    its own key. Accepted, it would send every replica fetching a state that does not exist
    (`bad_checkpoint_proof`)."""

    description = "VIEW-CHANGE with a forged stable checkpoint proof"

    def __init__(self, windows_ahead: int = 2) -> None:
        self.windows_ahead = windows_ahead
        self.forged = 0

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, ViewChange):
            context, config = self.context, self.context.config
            sequence = message.stable_sequence + config.log_window * self.windows_ahead
            digest = _random_digest(context.rng)
            proof = tuple(context.sign(Checkpoint(sequence, digest, r, b""))
                          for r in range(quorum(config.n)))
            message = context.sign(replace(message, stable_sequence=sequence,
                                           checkpoint_proof=proof, prepared=()))
            self.forged += 1
        return [(to, message)]


class ForgedNewView(Behaviour):
    """As a new primary, sends NEW-VIEWs whose PRE-PREPAREs (O) do not follow from their
    VIEW-CHANGEs: each digest of O is replaced (all re-signed). V3 recomputes O and refuses it
    (`bad_new_view`); the view change moves on to the next primary."""

    description = "new primary whose NEW-VIEW does not follow from its VIEW-CHANGEs"

    def __init__(self) -> None:
        self.forged = 0

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, NewView):
            context = self.context
            pre_prepares = tuple(
                context.sign(replace(pp, digest=_random_digest(context.rng)))
                for pp in message.pre_prepares
            )
            if not pre_prepares:  # nothing to alter: invent a batch at the first sequence
                sequence = max(vc.stable_sequence for vc in message.view_changes) + 1
                pre_prepares = (context.sign(PrePrepare(
                    message.view, sequence, _random_digest(context.rng), context.now_ms, (),
                    context.replica_id, b"")),)
            message = context.sign(replace(message, pre_prepares=pre_prepares))
            self.forged += 1
        return [(to, message)]


class TruncatedNewView(Behaviour):
    """As a new primary, sends NEW-VIEWs whose O lacks its last PRE-PREPARE (re-signed): the
    batch prepared highest would be lost from the new view. V3 recomputes O, finds one fewer
    and refuses it (`bad_new_view`); the view change moves on to the next primary."""

    description = "new primary whose NEW-VIEW leaves out the tail of its O"

    def __init__(self) -> None:
        self.truncated = 0

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, NewView) and message.pre_prepares:
            message = self.context.sign(
                replace(message, pre_prepares=message.pre_prepares[:-1]))
            self.truncated += 1
        return [(to, message)]


class ShortNewView(Behaviour):
    """As a new primary, sends NEW-VIEWs with 2f VIEW-CHANGEs instead of 2f + 1: it leaves out
    the one whose prepared certificates weigh most in O (the plan of the 2f others differs
    from the honest one at the most sequence numbers; ties: the highest replica id), and
    sends the O those 2f give (all re-signed). A batch that committed was prepared at f + 1
    correct replicas at least; 2f + 1 VIEW-CHANGEs always include one of them, 2f may not, and
    the new view could then order another batch at its sequence number. V3 counts 2f + 1 and
    refuses it (`bad_new_view`); the view change moves on to the next primary."""

    description = "new primary whose NEW-VIEW holds only 2f VIEW-CHANGEs"

    def __init__(self) -> None:
        self.shortened = 0
        #: The replica whose VIEW-CHANGE each shortened NEW-VIEW left out, per view.
        self.left_out: dict[int, int] = {}

    def outgoing(self, to: tuple, message: Message) -> Send:
        if not isinstance(message, NewView) or len(message.view_changes) < 2:
            return [(to, message)]
        context = self.context
        honest = [(s, d) for s, d, _ in new_view_plan(message.view_changes)[1]]

        def loss(vc: ViewChange) -> tuple[int, int]:
            rest = [other for other in message.view_changes if other is not vc]
            plan = [(s, d) for s, d, _ in new_view_plan(rest)[1]]
            differing = sum(1 for a, b in zip(honest, plan) if a != b)
            return differing + abs(len(honest) - len(plan)), vc.replica

        dropped = max(message.view_changes, key=loss)
        kept = tuple(vc for vc in message.view_changes if vc is not dropped)
        _, plan = new_view_plan(kept)
        me = context.replica_id
        pre_prepares = tuple(
            context.sign(PrePrepare(message.view, sequence, digest, timestamp_ms, (), me, b""))
            for sequence, digest, timestamp_ms in plan
        )
        self.shortened += 1
        self.left_out[message.view] = dropped.replica
        return [(to, context.sign(replace(message, view_changes=kept,
                                          pre_prepares=pre_prepares)))]


class StaleVotesBehindNewView(Behaviour):
    """As a new primary, right behind each NEW-VIEW it sends (`delays_ms` after it, so that they
    arrive after the NEW-VIEW and before the backups' PREPAREs of the new view), sends every
    backup the PREPAREs of the earlier views that travel inside that NEW-VIEW's prepared
    certificates, and the COMMITs of earlier views it heard at those sequence numbers: all
    genuine, all signed by their senders, all for the digests the new view re-proposes. A
    replica that counts votes of an older view in the current one (N10) prepares and commits
    in the new view without its votes; a correct one refuses them (`wrong_view`)."""

    description = "new primary replaying the old view's votes right behind its NEW-VIEW"

    def __init__(self, delays_ms: tuple[float, ...] = (1.0, 2.5)) -> None:
        self.delays_ms = delays_ms
        self.replayed = 0
        self._commits: dict[int, dict[tuple[int, int], Commit]] = {}

    def incoming(self, source: Any, message: Message) -> Message | None:
        if type(message) is Commit:
            self._commits.setdefault(message.sequence, {})[(message.view, message.replica)] = (
                message)
        return message

    def outgoing(self, to: tuple, message: Message) -> Send:
        if not isinstance(message, NewView):
            return [(to, message)]
        votes: dict[tuple, Any] = {}
        for vc in message.view_changes:
            for certificate in vc.prepared:
                for prepare in certificate.prepares:
                    votes[(Prepare, prepare.view, prepare.sequence, prepare.replica)] = prepare
        o_set = {(pp.sequence, pp.digest) for pp in message.pre_prepares}
        for sequence, commits in self._commits.items():
            for (view, replica), commit in commits.items():
                if view < message.view and (sequence, commit.digest) in o_set:
                    votes[(Commit, view, sequence, replica)] = commit
        stale = [vote for key, vote in sorted(votes.items(), key=lambda kv: kv[0][1:])
                 if vote.view < message.view and vote.replica != self.context.replica_id]
        for delay_ms in self.delays_ms:
            for vote in stale:
                self.context.send_later(delay_ms, tuple(r for r in to if r != vote.replica),
                                        vote)
        self.replayed += len(stale) * len(self.delays_ms)
        return [(to, message)]


class SwappedCertificatePrimary(Behaviour):
    """A primary that keeps, for every batch Y it proposes, a second PRE-PREPARE of its own for
    another batch X at the same (view, sequence) (the same requests a millisecond later: a
    real batch, validly signed), which it shows nobody. From `silent_from_ms` it proposes no
    more and asks at once for the next view with a VIEW-CHANGE whose prepared certificates pair
    its PRE-PREPARE for X with the backups' genuine PREPAREs for Y; every VIEW-CHANGE of its
    core later gets the same swap. Accepted, the new view could re-propose X, which nobody
    prepared, where Y committed; V1 checks that a certificate's PREPAREs carry its
    PRE-PREPARE's digest and refuses it (`bad_prepared_certificate`)."""

    description = "primary whose VIEW-CHANGE pairs its other PRE-PREPARE with the PREPAREs of Y"

    def __init__(self, silent_from_ms: int = 300) -> None:
        self.silent_from_ms = silent_from_ms
        self.swapped = 0
        #: (view, sequence) -> (digest of Y, its twin X without requests).
        self._twins: dict[tuple[int, int], tuple[bytes, PrePrepare]] = {}
        self._prepares: dict[tuple[int, int, bytes], dict[int, Prepare]] = {}
        self._asked = False

    def incoming(self, source: Any, message: Message) -> Message | None:
        if type(message) is Prepare:
            key = (message.view, message.sequence, message.digest)
            self._prepares.setdefault(key, {})[message.replica] = message
        return message

    def outgoing(self, to: tuple, message: Message) -> Send:
        kind = type(message)
        if kind is PrePrepare and message.replica == self.context.replica_id:
            if self.context.now_ms >= self.silent_from_ms:
                return []
            if message.requests:
                timestamp_ms = message.timestamp_ms + 1
                twin = self.context.sign(replace(
                    message, timestamp_ms=timestamp_ms, requests=(),
                    digest=batch_digest(timestamp_ms, message.requests)))
                self._twins[(message.view, message.sequence)] = (message.digest, twin)
        elif kind is ViewChange:
            message = self._swap(message)
        return [(to, message)]

    def on_tick(self, now_ms: int) -> None:
        if self._asked or now_ms < self.silent_from_ms:
            return
        self._asked = True
        context, replica = self.context, self.context.replica
        prepared = []
        for (view, sequence), (digest, _) in sorted(self._twins.items()):
            if sequence <= replica.stable_checkpoint:
                continue
            prepares = self._prepares.get((view, sequence, digest), {})
            if len(prepares) >= 2 * context.config.f:
                chosen = tuple(prepares[r] for r in sorted(prepares)[: 2 * context.config.f])
                prepared.append(PreparedCertificate(self._twins[(view, sequence)][1], chosen))
        message = ViewChange(replica.view + 1, replica.stable_checkpoint,
                             replica.stable_checkpoint_proof, tuple(prepared),
                             context.replica_id, b"")
        self.swapped += len(prepared)
        context.send(context.others, context.sign(message))

    def _swap(self, message: ViewChange) -> ViewChange:
        prepared = []
        swapped = 0
        for certificate in message.prepared:
            pp = certificate.pre_prepare
            twin = self._twins.get((pp.view, pp.sequence))
            if twin is not None and twin[0] == pp.digest:
                certificate = replace(certificate, pre_prepare=twin[1])
                swapped += 1
            prepared.append(certificate)
        if not swapped:
            return message
        self.swapped += swapped
        return self.context.sign(replace(message, prepared=tuple(prepared)))


class PushedCommitCertificates(Behaviour):
    """Sends every other replica, unasked, each commit certificate it can build: as soon as it
    holds a batch's PRE-PREPARE and 2f + 1 matching COMMITs of one view, a LOGGED-BATCH with
    them, as if answering a FETCH-LOG nobody sent. Genuine certificates, but for a replica whose
    window lags (its CHECKPOINTs arrive late) some lie above its high watermark, which it must
    refuse (N3, `above_high_watermark`): it would execute beyond H."""

    description = "pushes commit certificates (LOGGED-BATCHes) to everyone, unasked"

    def __init__(self) -> None:
        self.pushed = 0
        self._batches: dict[tuple[int, int, bytes], PrePrepare] = {}
        self._commits: dict[tuple[int, int, bytes], dict[int, Commit]] = {}
        self._done: set[tuple[int, int, bytes]] = set()

    def incoming(self, source: Any, message: Message) -> Message | None:
        self._note(message)
        return message

    def outgoing(self, to: tuple, message: Message) -> Send:
        self._note(message)
        return [(to, message)]

    def _note(self, message: Message) -> None:
        kind = type(message)
        if kind is PrePrepare and message.requests:
            key = (message.view, message.sequence, message.digest)
            self._batches[key] = message
        elif kind is Commit:
            key = (message.view, message.sequence, message.digest)
            self._commits.setdefault(key, {})[message.replica] = message
        else:
            return
        self._push(key)

    def _push(self, key: tuple[int, int, bytes]) -> None:
        commits = self._commits.get(key, {})
        batch = self._batches.get(key)
        if key in self._done or batch is None or len(commits) < quorum(self.context.config.n):
            return
        self._done.add(key)
        certificate = tuple(commits[r] for r in sorted(commits))
        self.pushed += 1
        self.context.send(self.context.others, LoggedBatch(batch, certificate))


class FetchSpam(Behaviour):
    """Every `every_ms`, asks every other replica for its whole log (FETCH-LOG from sequence 1)
    and for a snapshot chunk: asks that cost the victims work, which they must bound
    (`fetch_log_too_soon`, `no_such_snapshot`...)."""

    description = "floods the others with state and log fetch requests"

    def __init__(self, every_ms: int = 20) -> None:
        self.every_ms = every_ms
        self._next_ms = 0
        self.sent = 0

    def on_tick(self, now_ms: int) -> None:
        if now_ms < self._next_ms:
            return
        self._next_ms = now_ms + self.every_ms
        context, replica = self.context, self.context.replica
        me, sign = context.replica_id, context.sign
        context.send(context.others, sign(FetchLog(1, bytes(DIGEST_BYTES), me, b"")))
        stable = replica.stable_checkpoint
        context.send(context.others, sign(FetchState(stable, self.sent % 4, me, b"")))
        self.sent += 2


class FalseCheckpoints(Behaviour):
    """Signs CHECKPOINTs with a wrong state digest, and every `far_every_ms` sends checkpoints
    far above everyone's high watermark: a rising one (kept: only each sender's highest is),
    a lower one (`stale_checkpoint`), and one off the checkpoint interval
    (`checkpoint_off_interval`)."""

    description = "false checkpoints: wrong digests, and far above the watermarks"

    def __init__(self, far_every_ms: int = 300, windows_ahead: int = 10) -> None:
        self.far_every_ms = far_every_ms
        self.windows_ahead = windows_ahead
        self._next_ms = 0
        self._round = 0

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, Checkpoint):
            digest = _random_digest(self.context.rng)
            message = self.context.sign(replace(message, digest=digest))
        return [(to, message)]

    def on_tick(self, now_ms: int) -> None:
        if now_ms < self._next_ms:
            return
        self._next_ms = now_ms + self.far_every_ms
        context, replica, config = self.context, self.context.replica, self.context.config
        self._round += 1
        interval = config.checkpoint_interval
        base = replica.stable_checkpoint + config.log_window * self.windows_ahead
        sequences = (base + interval * self._round, base, base + 1)
        for sequence in sequences:
            checkpoint = Checkpoint(sequence, _random_digest(context.rng), context.replica_id, b"")
            context.send(context.others, context.sign(checkpoint))


class CorruptSnapshot(Behaviour):
    """Serves state transfer with a corrupted snapshot: one byte of every STATE-CHUNK it sends
    is flipped, and the chunk re-signed. The fetcher must find that the chunk's proof does not
    lead to the proven checkpoint digest (`bad_state_chunk`, S1') and ask another replica."""

    description = "corrupted snapshot chunks during state transfer"

    def __init__(self) -> None:
        self.corrupted = 0

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, StateChunk):
            self.corrupted += 1
            data = _flip_byte(message.data, self.context.rng)
            message = self.context.sign(replace(message, data=data))
        return [(to, message)]


class CorruptLoggedBatches(Behaviour):
    """Answers FETCH-LOG with altered batches: the PRE-PREPARE keeps its signed digest but one
    request is changed (`batch_digest_mismatch`), or, for a batch without requests, the digest
    is replaced and the COMMITs no longer match (`bad_commit_certificate`)."""

    description = "corrupted batches when others catch up from its log"

    def __init__(self) -> None:
        self.corrupted = 0

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, LoggedBatch):
            self.corrupted += 1
            pre_prepare = message.pre_prepare
            rng = self.context.rng
            if pre_prepare.requests:
                first = pre_prepare.requests[0]
                requests = (replace(first, operation=_flip_byte(first.operation, rng)),
                            *pre_prepare.requests[1:])
                pre_prepare = replace(pre_prepare, requests=requests)
            else:
                pre_prepare = replace(pre_prepare, digest=_random_digest(rng))
            message = replace(message, pre_prepare=pre_prepare)
        return [(to, message)]


class SelectiveDelivery(Behaviour):
    """Sends messages of the given `types` only to `targets` (default: PRE-PREPAREs to the first
    f + 1 other replicas: a primary that leaves some backups in the dark), and to the others
    leaves its own votes of those types out of the messages that carry them (`hidden`); with
    `drop_replies`, clients never hear from it."""

    description = "selective delivery to a subset of replicas"

    def __init__(self, targets: tuple[int, ...] | None = None,
                 types: tuple[type, ...] | None = (PrePrepare,), *,
                 drop_replies: bool = False) -> None:
        self.targets = targets
        #: The message types withheld (None: every replica-to-replica message).
        self.types = types
        self.drop_replies = drop_replies
        self.withheld = 0
        #: Its own votes of `types` taken out of other messages to the others
        #: (`without_own_votes`).
        self.hidden = 0
        kinds = "messages" if types is None else "/".join(t.__name__ for t in types)
        self.description = f"sends {kinds} only to a subset" + (
            ", drops client replies" if drop_replies else "")

    def attach(self, context: ByzantineContext) -> None:
        super().attach(context)
        if self.targets is None:
            self.targets = context.others[: context.config.f + 1]

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, Reply):
            return [] if self.drop_replies else [(to, message)]
        if self.types is None or isinstance(message, self.types):
            kept = tuple(r for r in to if r in self.targets)
            self.withheld += len(to) - len(kept)
            return [(kept, message)] if kept else []
        others = tuple(r for r in to if r not in self.targets)
        if not others:
            return [(to, message)]
        stripped, hidden = without_own_votes(message, self.types, self.context)
        if not hidden:
            return [(to, message)]
        self.hidden += hidden
        kept = tuple(r for r in to if r in self.targets)
        sends = [(kept, message)] if kept else []
        return sends + ([(others, stripped)] if stripped is not None else [])


class Twins(Behaviour):
    """Twins (Bano et al., 2020): a second, honest `Replica` with the same id and key, each
    instance seeing only its own part of the network.

    How it works without engine support: this behaviour owns the twin. Messages from replicas
    in `peers` are handed to the twin (and hidden from the original); the original's messages go
    only to the other replicas, the twin's only to `peers`. Both hear every client and both
    reply (a client counts one reply per replica id, so the pair cannot vote twice). The twin
    is ticked and flushed here; its storage is not simulated and its executions are not
    recorded (it is faulty by construction, and checkers judge only correct replicas). Each
    correct replica thus sees one consistent instance, and two instances may sign conflicting
    messages with one key: the equivocation that Twins tests for.
    """

    description = "Twins: two instances with one id and key, each in its own part of the network"

    def __init__(self, peers: tuple[int, ...]) -> None:
        self.peers = tuple(peers)
        #: Messages the twin received and sent (it is not seen by the engine's counters).
        self.twin_received = 0
        self.twin_sent = 0

    def attach(self, context: ByzantineContext) -> None:
        super().attach(context)
        sim = context.simulation
        self.twin = sim.replica_class(
            sim.config, context.replica_id, context.signer, sim.verifier, sim.app_factory(),
            context.now_ms,
        )

    def incoming(self, source: Any, message: Message) -> Message | None:
        if type(source) is int:
            if source in self.peers:
                self._twin_receive(message)
                return None
            return message
        self._twin_receive(message)  # a client: both instances hear it
        return message

    def outgoing(self, to: tuple, message: Message) -> Send:
        if isinstance(message, Reply):
            return [(to, message)]
        kept = tuple(r for r in to if r not in self.peers)
        return [(kept, message)] if kept else []

    def on_tick(self, now_ms: int) -> None:
        self.twin.tick(now_ms)
        self._flush_twin()

    def _twin_receive(self, message: Message) -> None:
        self.twin_received += 1
        self.twin.receive(message)
        self._flush_twin()

    def _flush_twin(self) -> None:
        twin, send = self.twin, self.context.send
        while twin.has_ready():
            ready = twin.ready()
            for outbound in ready.messages:
                self._send_twin_message(outbound.to, outbound.message)
            for reply in ready.replies:
                self.twin_sent += 1
                send((reply.client,), reply)
            twin.advance()

    def _send_twin_message(self, to: tuple, message: Message) -> None:
        """The twin's message, to those of `to` the twin reaches."""
        to = tuple(r for r in to if r in self.peers)
        if to:
            self.twin_sent += 1
            self.context.send(to, message)


class Collusion:
    """f + 1 colluding replicas (more than PBFT tolerates: a negative control, whose runs the
    checkers must flag). Each colluder is split like `Twins`: its original instance talks to
    the correct replicas outside `side`, its twin to those in `side`; unlike `Twins`, the twins
    of the colluders hear each other (delivered `link_ms` after being sent), so each side has
    f + 1 colluding instances, enough with f correct replicas for a quorum of its own. The twins
    hear clients `client_lag_ms` late, so that the two sides' primaries propose different
    batches (other timestamps, other contents). Cut the correct replicas of the two sides off
    from each other (`Network.partition`) and they execute different batches at one sequence
    number: what `checkers.agreement` exists to catch.

        collusion = Collusion(side=(3,))
        sim = Simulation(seed=1, behaviours={0: collusion.member(), 1: collusion.member()})
        sim.network.partition([2], [3])
    """

    def __init__(self, side: tuple[int, ...], *, link_ms: float = 2.0,
                 client_lag_ms: float = 3.0) -> None:
        self.side = tuple(side)
        self.link_ms = link_ms
        self.client_lag_ms = client_lag_ms
        #: The colluders' behaviours, by replica id (filled as they attach).
        self.members: dict[int, "ColludingTwin"] = {}
        #: Messages passed between twins (the colluders' private channel).
        self.relayed = 0

    def member(self) -> "ColludingTwin":
        """A behaviour for one more colluder."""
        return ColludingTwin(self)

    def relay(self, source: int, to: tuple[int, ...], message: Message) -> None:
        for destination in to:
            member = self.members.get(destination)
            if member is None or destination == source:
                continue
            self.relayed += 1
            member.context.simulation.at(
                member.context.now_ms + self.link_ms,
                lambda s, m=member: m._twin_receive(message), fault=False)


class ColludingTwin(Twins):
    """One member of a `Collusion` (made by `Collusion.member`): a `Twins` whose twin also talks
    with the other members' twins, and hears clients late."""

    description = "colluding Twins: f + 1 replicas whose twins hear each other"

    def __init__(self, collusion: Collusion) -> None:
        super().__init__(peers=collusion.side)
        self.collusion = collusion

    def attach(self, context: ByzantineContext) -> None:
        super().attach(context)
        self.collusion.members[context.replica_id] = self

    def incoming(self, source: Any, message: Message) -> Message | None:
        if type(source) is int:
            return super().incoming(source, message)
        lag_ms = self.collusion.client_lag_ms
        self.context.simulation.at(self.context.now_ms + lag_ms,
                                   lambda s: self._twin_receive(message), fault=False)
        return message

    def _send_twin_message(self, to: tuple, message: Message) -> None:
        """As a twin's, and to its accomplices too (twins of colluders hear each other)."""
        super()._send_twin_message(to, message)
        me = self.context.replica_id
        accomplices = tuple(r for r in to if r in self.collusion.members and r != me)
        if accomplices:
            self.collusion.relay(me, accomplices, message)


class SlowStateSource(Behaviour):
    """Serves state transfer as slowly as it dares: every STATE-CHUNK it sends leaves `margin_ms`
    before the fetcher's state_transfer_timeout_ms would run out (from the request), so a
    fetcher that asks it alone and restarts its timeout at every chunk waits almost a timeout
    per chunk. With `lie_every` = k, every k-th chunk instead claims a snapshot of
    snapshot_bytes_max bytes with a forged proof (re-signed): a fetcher that believed an
    announced size would wait for, and hold, chunks that do not exist (`bad_state_chunk`)."""

    description = "slow state source: trickles STATE-CHUNKs just under the fetch timeout"

    def __init__(self, margin_ms: int = 50, lie_every: int | None = None) -> None:
        self.margin_ms = margin_ms
        self.lie_every = lie_every
        self.trickled = 0
        self.lies = 0
        if lie_every is not None:
            self.description += f", and every {lie_every}th with a forged size and proof"

    def outgoing(self, to: tuple, message: Message) -> Send:
        if not isinstance(message, StateChunk):
            return [(to, message)]
        context, config = self.context, self.context.config
        self.trickled += 1
        if self.lie_every is not None and self.trickled % self.lie_every == 0:
            self.lies += 1
            entries = proof_entries_max(config.snapshot_bytes_max, config.state_chunk_bytes)
            proof = tuple(_random_digest(context.rng) for _ in range(entries))
            message = context.sign(replace(message, snapshot_bytes=config.snapshot_bytes_max,
                                           proof=proof))
        context.send_later(config.state_transfer_timeout_ms - self.margin_ms, to, message)
        return []


class FetchStateFlooder(Behaviour):
    """Every tick, sends every other replica `per_tick` validly signed FETCH-STATEs for chunks
    of the snapshot they hold (its own stable checkpoint; chunk indexes cycling below
    `chunks`), `per_tick` catch-up FETCH-LOGs, and `per_tick` FETCH-LOGs by digest for the
    batches it saw proposed last. Each costs its victims work for nothing; they must bound it
    per requester (`fetch_state_rate_limited`, `fetch_log_too_soon`,
    `fetch_batch_rate_limited`). `answers` counts what each victim served it, by message type,
    and `chunk_bytes_received` the snapshot bytes."""

    description = "floods the others with FETCH-STATE and FETCH-LOG requests"

    def __init__(self, per_tick: int = 10, chunks: int = 16) -> None:
        self.per_tick = per_tick
        self.chunks = chunks
        self.sent = 0
        self.answers: Counter[tuple[int, str]] = Counter()
        self.chunk_bytes_received = 0
        #: Digest -> sequence of the batches proposed last (a bounded window).
        self._batches: dict[bytes, int] = {}

    def incoming(self, source: Any, message: Message) -> Message | None:
        if isinstance(message, PrePrepare) and message.requests:
            self._batches[message.digest] = message.sequence
            while len(self._batches) > 4 * self.per_tick:
                del self._batches[next(iter(self._batches))]
        elif isinstance(message, (StateChunk, LoggedBatch)) and type(source) is int:
            self.answers[(source, type(message).__name__)] += 1
            if isinstance(message, StateChunk):
                self.chunk_bytes_received += len(message.data)
        return message

    def on_tick(self, now_ms: int) -> None:
        context, replica = self.context, self.context.replica
        me, sign, others = context.replica_id, context.sign, context.others
        stable = replica.stable_checkpoint
        batches = list(self._batches.items())[-self.per_tick:]
        for i in range(self.per_tick):
            chunk = (self.sent + i) % self.chunks
            context.send(others, sign(FetchState(stable, chunk, me, b"")))
            context.send(others, sign(FetchLog(stable + 1, bytes(DIGEST_BYTES), me, b"")))
            if batches:
                digest, sequence = batches[i % len(batches)]
                context.send(others, sign(FetchLog(sequence, digest, me, b"")))
        self.sent += self.per_tick


# ====================================================================== Byzantine clients


class LaggingReads(Behaviour):
    """Answers read-only requests (R1) from the state it had `behind_ms` earlier, and does
    everything else honestly (it executes, votes and replies to ordered requests on time).
    Alone it cannot mislead a client, which needs 2f + 1 matching read-only replies; with f + 1
    correct replicas that lag as much (late COMMITs) it can: a write completes on the replies
    of the up-to-date ones, a read on this one's and the laggards' (issue 12, item 5)."""

    description = "answers reads from the state it had a while ago"

    def __init__(self, behind_ms: int = 250) -> None:
        self.behind_ms = behind_ms
        #: (virtual ms, last executed, application snapshot) from `behind_ms` ago onwards.
        self._states: list[tuple[int, int, bytes]] = []
        #: The operation of each read-only request seen, by (client, timestamp).
        self._reads: dict[tuple[bytes, int], bytes] = {}
        self.lies = 0

    def incoming(self, source: Any, message: Message) -> Message | None:
        if type(message) is Request and message.read_only:
            if len(self._reads) >= 4096:
                self._reads.clear()
            self._reads[(message.client, message.timestamp)] = message.operation
        return message

    def on_tick(self, now_ms: int) -> None:
        context = self.context
        executed = context.replica.last_executed
        states = self._states
        if not states or states[-1][1] != executed:
            states.append((now_ms, executed,
                           context.simulation.apps[context.replica_id].snapshot()))
        while len(states) > 1 and states[1][0] <= now_ms - self.behind_ms:
            del states[0]

    def outgoing(self, to: tuple, message: Message) -> Send:
        if type(message) is Reply and message.read_only and self._states:
            operation = self._reads.get((message.client, message.timestamp))
            if operation is not None:
                app = self.context.simulation.app_factory()
                app.restore(self._states[0][2])
                result = app.query(operation, message.client)
                if result != message.result:
                    self.lies += 1
                    message = replace(message, result=result)
        return [(to, message)]


class ClientContext:
    """What a client behaviour may use: the client's key (`client`, its identity), its signer,
    its honest `session`, the configuration, the simulation's generator and clock, and a way to
    send extra messages from this client."""

    def __init__(self, simulation: Any, session: ClientSession, signer: Any) -> None:
        if signer.public_key != session.client:
            raise ValueError("the signer's key is not the session's client key")
        self._simulation = simulation
        self.session = session
        self.client = session.client
        self.config = simulation.config
        self.signer = signer
        self.rng = simulation.rng

    @property
    def now_ms(self) -> int:
        return self._simulation.now_us // 1000

    @property
    def primary(self) -> int:
        """The primary as this client believes it (the view its replies reported)."""
        return self.session.view % self.config.n

    def sign(self, request: Request) -> Request:
        """`request` signed with this client's key."""
        return replace(request, signature=self.signer.sign(signing_payload(request)))

    def send(self, to: tuple, message: Any) -> None:
        """Send an extra message (or raw bytes) from this client, bypassing `outgoing`."""
        self._simulation.send(self.client, to, message)

    def new_identity(self, label: str) -> Any:
        """A signer with a key of its own, derived from `label` (a Sybil: anyone can make up
        keys). The simulation records the key as a client that is not correct."""
        signer = self._simulation.make_signer(label)
        self._simulation.sybil_keys.add(signer.public_key)
        return signer


class ClientBehaviour:
    """A Byzantine client: an interceptor around an honest `ClientSession`, installed with
    `add_byzantine_client`. Subclasses override what they need:

        class OnlyToBackupOne(ClientBehaviour):
            '''Sends every request to replica 1 alone.'''
            def outgoing(self, to, request):
                return [((1,), request)]

        add_byzantine_client(sim, "mallory", OnlyToBackupOne())
    """

    description = "honest client"

    def attach(self, context: ClientContext) -> None:
        self.context = context

    def outgoing(self, to: tuple, request: Request) -> Send:
        return [(to, request)]

    def on_tick(self, now_ms: int) -> None:
        pass


class _ByzantineSession(SessionProxy):
    """A `ClientSession` as the engine sees it, whose outgoing requests pass through a
    `ClientBehaviour` (the engine is not changed: `SimClient.session` is swapped for this)."""

    def __init__(self, session: ClientSession, behaviour: ClientBehaviour) -> None:
        super().__init__(session)
        #: The interceptor (for tests and reports: `sim.clients[i].session.behaviour`).
        self.behaviour = behaviour

    def tick(self, now_ms: int) -> None:
        self._session.tick(now_ms)
        self.behaviour.on_tick(now_ms)

    def ready(self) -> ClientReady:
        ready = self._session.ready()
        messages = tuple(
            Outbound(to, message)
            for outbound in ready.messages
            for to, message in self.behaviour.outgoing(outbound.to, outbound.message)
            if to
        )
        return ClientReady(messages, ready.results)


def add_byzantine_client(simulation: Any, name: str, behaviour: ClientBehaviour, *,
                         requests: int = 20, think_ms: float = 50.0,
                         make_operation: Callable[[int, int], bytes] | None = None) -> Any:
    """Add a client that is not correct (`Simulation.add_client(..., correct=False)`: the
    checkers do not wait for it, nor judge what it sees) and whose session is wrapped by
    `behaviour`. By default it appends to a key of its own. Returns the engine's `SimClient`."""
    from pbft.app import kv_append

    operation = make_operation or (lambda c, i: kv_append(f"byz-{name}", b"%d;" % i))
    client = simulation.add_client(name, requests, think_ms, operation, correct=False)
    # Keys derive from the name: this is the signer the engine gave the session.
    behaviour.attach(ClientContext(simulation, client.session, simulation.make_signer(name)))
    client.session = _ByzantineSession(client.session, behaviour)
    return client


class BadSignatureClient(ClientBehaviour):
    """Every request it sends carries a bad signature: random bytes, or with `impersonate` (a
    client key) a request that claims to come from that client, signed with its own key. Every
    `extra_every_ms` it also multicasts a fresh one. Replicas count `bad_request_signature`."""

    description = "client with bad signatures"

    def __init__(self, impersonate: bytes | None = None, extra_every_ms: int | None = 100) -> None:
        self.impersonate = impersonate
        self.extra_every_ms = extra_every_ms
        self._next_ms = 0
        self._timestamp = 0
        self.sent = 0
        if impersonate is not None:
            self.description = "client that signs requests in another client's name"

    def _forge(self, request: Request) -> Request:
        context = self.context
        self.sent += 1
        if self.impersonate is None:
            return replace(request, signature=context.rng.randbytes(SIGNATURE_BYTES))
        return context.sign(replace(request, client=self.impersonate))

    def outgoing(self, to: tuple, request: Request) -> Send:
        return [(to, self._forge(request))]

    def on_tick(self, now_ms: int) -> None:
        if self.extra_every_ms is None or now_ms < self._next_ms:
            return
        self._next_ms = now_ms + self.extra_every_ms
        from pbft.app import kv_append

        self._timestamp = max(self._timestamp + 1, now_ms * 1000 + 500)
        request = Request(kv_append("key-0", b"forged;"), self._timestamp, self.context.client,
                          False, b"")
        self.context.send(tuple(range(self.context.config.n)), self._forge(request))


class ReplayingClient(ClientBehaviour):
    """Records the requests it sends and, every `every_ms`, sends one at least `min_age_ms` old
    again to every replica. Each must execute at most once (N8): replicas answer the latest
    again from their reply cache and count older ones as `old_request`."""

    description = "client that replays its old requests"

    def __init__(self, every_ms: int = 50, min_age_ms: int = 200) -> None:
        self.every_ms = every_ms
        self.min_age_ms = min_age_ms
        self._next_ms = 0
        self._recorded: list[tuple[int, Request]] = []
        self.replayed = 0

    def outgoing(self, to: tuple, request: Request) -> Send:
        if not self._recorded or self._recorded[-1][1] != request:
            self._recorded.append((self.context.now_ms, request))
            del self._recorded[:-256]
        return [(to, request)]

    def on_tick(self, now_ms: int) -> None:
        if now_ms < self._next_ms or not self._recorded:
            return
        self._next_ms = now_ms + self.every_ms
        at_ms, request = self.context.rng.choice(self._recorded)
        if now_ms - at_ms >= self.min_age_ms:
            self.replayed += 1
            self.context.send(tuple(range(self.context.config.n)), request)


class PartialSendClient(ClientBehaviour):
    """Sends each request (and each retransmission) to `count` backups only, never to the
    primary: the backups must relay it (N1) for it to be ordered."""

    description = "client that sends its requests to some backups only, never the primary"

    def __init__(self, count: int = 1) -> None:
        self.count = count
        self.sent_to: Counter[int] = Counter()

    def outgoing(self, to: tuple, request: Request) -> Send:
        context = self.context
        backups = [r for r in range(context.config.n) if r != context.primary]
        targets = tuple(sorted(context.rng.sample(backups, min(self.count, len(backups)))))
        self.sent_to.update(targets)
        return [(targets, request)]


class EquivocatingClient(ClientBehaviour):
    """Sends two different, validly signed requests with the same timestamp to every replica:
    one to half of them, the other to the rest. At most one of them may execute (N8)."""

    description = "client that sends different requests with one timestamp to different replicas"

    def outgoing(self, to: tuple, request: Request) -> Send:
        context = self.context
        everyone = list(range(context.config.n))
        context.rng.shuffle(everyone)
        half = len(everyone) // 2
        other = context.sign(replace(request, operation=request.operation + b"~"))
        return [(tuple(sorted(everyone[:half])), request),
                (tuple(sorted(everyone[half:])), other)]


class FloodingClient(ClientBehaviour):
    """Until `until_ms`, sends `per_tick` fresh, validly signed requests every tick (to the
    primary, or to every replica with `to_all`): heavy load that stays within the configured
    bounds. Install it with `requests=0` so that only the flood is sent."""

    description = "client flooding valid requests"

    def __init__(self, per_tick: int = 5, until_ms: int = 3_000, *, to_all: bool = False) -> None:
        self.per_tick = per_tick
        self.until_ms = until_ms
        self.to_all = to_all
        self._timestamp = 0
        self.sent = 0

    def on_tick(self, now_ms: int) -> None:
        if now_ms >= self.until_ms:
            return
        from pbft.app import kv_put

        context = self.context
        to = tuple(range(context.config.n)) if self.to_all else (context.primary,)
        for _ in range(self.per_tick):
            self._timestamp = max(self._timestamp + 1, now_ms * 1000)
            operation = kv_put(f"flood-{self.sent % 8}", b"%d" % self.sent)
            self.sent += 1
            context.send(to, context.sign(Request(operation, self._timestamp, context.client,
                                                  False, b"")))


class SybilFlood(ClientBehaviour):
    """From `from_ms` until `until_ms`, `per_tick` validly signed requests every tick, each
    under a key never used before (`ClientContext.new_identity`): to the replicas, a new client
    every time, each wanting a place in the reply cache (N8'). Sent to every replica, or with
    `to_primary` to the primary only. Install it with `requests=0`."""

    description = "client that signs each request with a fresh key (a Sybil flood)"

    def __init__(self, per_tick: int = 2, *, from_ms: int = 0, until_ms: int = 3_000,
                 to_primary: bool = False) -> None:
        self.per_tick = per_tick
        self.from_ms = from_ms
        self.until_ms = until_ms
        self.to_primary = to_primary
        self.sent = 0

    def on_tick(self, now_ms: int) -> None:
        if not self.from_ms <= now_ms < self.until_ms:
            return
        from pbft.app import kv_put

        context = self.context
        to = (context.primary,) if self.to_primary else tuple(range(context.config.n))
        for _ in range(self.per_tick):
            signer = context.new_identity(f"sybil-{context.client.hex()[:8]}-{self.sent}")
            unsigned = Request(kv_put(f"sybil-{self.sent % 8}", b"%d" % self.sent),
                               now_ms * 1000, signer.public_key, False, b"")
            self.sent += 1
            context.send(to, replace(unsigned, signature=signer.sign(signing_payload(unsigned))))
