"""The audit trail: one hash-chained event per executed command, accepted or refused.

Each event carries the hash of the previous one (the first carries the genesis hash, a digest of
the ledger's founding FX_ADMIN keys), so anyone holding the events can check offline that none
was altered, dropped or reordered (`verify_chain`). The trail is part of the replicated state;
the state digest commits to it through the head hash and the length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pbft.crypto import sha256

from .model import pack_canonical

_EVENT_TAG = "tradeapp/audit-event/1"
#: The outcome of an accepted command (a refused one records its error code).
OUTCOME_OK = "OK"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What happened at one execution.

    - `index`: position in the trail (0-based); `sequence`, `timestamp_ms`: from consensus.
    - `signer`: the key that signed the request; `actor`: its participant id, or None if the key
      is unknown. `command`: the operation's name, or None if unreadable.
    - `objects`: the records named or touched, as sorted "kind:id" strings.
    - `outcome`: OUTCOME_OK or the error code; `operation_digest`: SHA-256 of the operation bytes.
    - `prev_hash`, `hash`: the chain.
    """

    index: int
    sequence: int
    timestamp_ms: int
    signer: bytes
    actor: str | None
    command: str | None
    objects: tuple[str, ...]
    outcome: str
    operation_digest: bytes
    prev_hash: bytes
    hash: bytes

    def body(self) -> list[Any]:
        """Everything the hash covers, in a fixed order."""
        return [
            _EVENT_TAG,
            self.index,
            self.sequence,
            self.timestamp_ms,
            self.signer,
            self.actor,
            self.command,
            list(self.objects),
            self.outcome,
            self.operation_digest,
            self.prev_hash,
        ]

    def to_wire(self) -> list[Any]:
        """The event as a msgpack array: its body without the tag, then its hash."""
        return [*self.body()[1:], self.hash]

    @classmethod
    def from_wire(cls, wire: object) -> AuditEvent:
        """Inverse of `to_wire`; ValueError on a wrong shape (the hash is checked by
        `verify_chain`, not here)."""
        if not isinstance(wire, list) or len(wire) != 11:
            raise ValueError("audit event is not an array of 11")
        (index, sequence, timestamp_ms, signer, actor, command, objects, outcome, op_digest,
         prev_hash, event_hash) = wire  # fmt: skip
        ints_ok = all(
            isinstance(v, int) and not isinstance(v, bool) for v in (index, sequence, timestamp_ms)
        )
        bytes_ok = all(isinstance(v, bytes) for v in (signer, op_digest, prev_hash, event_hash))
        optional_ok = all(v is None or isinstance(v, str) for v in (actor, command))
        objects_ok = isinstance(objects, list) and all(isinstance(o, str) for o in objects)
        if not (ints_ok and bytes_ok and optional_ok and objects_ok and isinstance(outcome, str)):
            raise ValueError("audit event has a field of the wrong type")
        return cls(index, sequence, timestamp_ms, signer, actor, command, tuple(objects),
                   outcome, op_digest, prev_hash, event_hash)  # fmt: skip


def event_hash(event_body: list[Any]) -> bytes:
    """SHA-256 of the canonical encoding of an event body."""
    return sha256(pack_canonical(event_body))


def genesis_hash(fx_admin_keys: dict[str, bytes]) -> bytes:
    """The hash the first event points to: the founding FX_ADMINs, by id."""
    admins = [[admin_id, fx_admin_keys[admin_id]] for admin_id in sorted(fx_admin_keys)]
    return sha256(pack_canonical(["tradeapp/genesis/1", admins]))


def verify_chain(events: Sequence[AuditEvent], genesis: bytes) -> int | None:
    """The index of the first event that breaks the chain (wrong position, wrong previous hash,
    or a hash that does not match its body), or None if the whole chain verifies."""
    previous = genesis
    for position, event in enumerate(events):
        if event.index != position or event.prev_hash != previous:
            return position
        if event_hash(event.body()) != event.hash:
            return position
        previous = event.hash
    return None


class AuditTrail:
    """The growing chain of events. Owned by one `TradeLedger`."""

    __slots__ = ("genesis", "events")

    def __init__(self, genesis: bytes) -> None:
        self.genesis = genesis
        self.events: list[AuditEvent] = []

    def __len__(self) -> int:
        return len(self.events)

    @property
    def head(self) -> bytes:
        """The hash of the last event, or the genesis hash of an empty trail."""
        return self.events[-1].hash if self.events else self.genesis

    def append(
        self,
        *,
        sequence: int,
        timestamp_ms: int,
        signer: bytes,
        actor: str | None,
        command: str | None,
        objects: Sequence[str],
        outcome: str,
        operation_digest: bytes,
    ) -> AuditEvent:
        """Chain one more event onto the trail and return it."""
        draft = AuditEvent(
            len(self.events), sequence, timestamp_ms, signer, actor, command,
            tuple(sorted(set(objects))), outcome, operation_digest, self.head, b"",
        )  # fmt: skip
        event = replace(draft, hash=event_hash(draft.body()))
        self.events.append(event)
        return event

    def to_wire(self) -> list[Any]:
        return [self.genesis, [event.to_wire() for event in self.events]]

    @classmethod
    def from_wire(cls, wire: object) -> AuditTrail:
        """Inverse of `to_wire`; ValueError if the shape is wrong or the chain does not verify."""
        if not isinstance(wire, list) or len(wire) != 2 or not isinstance(wire[0], bytes):
            raise ValueError("audit trail is not [genesis, events]")
        if not isinstance(wire[1], list):
            raise ValueError("audit events are not an array")
        trail = cls(wire[0])
        trail.events = [AuditEvent.from_wire(item) for item in wire[1]]
        broken = verify_chain(trail.events, trail.genesis)
        if broken is not None:
            raise ValueError(f"audit chain breaks at event {broken}")
        return trail
