"""One command's execution: what a handler is given (`Step`) and what it answers (`Done`,
`Refusal`), plus the checks every handler module shares.

A handler runs after the ledger has parsed the operation, identified the actor and checked the
role, the record's existence, the actor's party and the status (transitions.py). It makes its
own checks first and mutates only once all have passed, so a `Refusal` leaves the domain state
exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from pbft.app import ExecutionContext

from .banking_calendar import day_of_timestamp
from .commands import Operation
from .errors import ErrorCode
from .model import LedgerState, Participant, Record, Role
from .money import is_amount, is_currency
from .transitions import Transition


@dataclass(frozen=True, slots=True)
class Step:
    """The inputs of one handler call.

    - `state`: the domain state (mutate only after every check passed);
    - `actor`: the signer's participant record (ACTIVE);
    - `context`: sequence, signer key, consensus time;
    - `index`: this command's position in the audit trail (unique, increasing: ids of records
      the ledger itself creates derive from it);
    - `record`: the record acted on (None for a creation);
    - `transition`: the table entry that allowed it.
    """

    state: LedgerState
    actor: Participant
    context: ExecutionContext
    index: int
    record: Any
    transition: Transition

    @property
    def now_ms(self) -> int:
        return self.context.timestamp_ms


@dataclass(frozen=True, slots=True)
class Done:
    """An accepted command: its result `value`, the acted-on record's new `status` (None: the
    transition's first target; ignored for creations, whose record carries its status), and
    records touched beyond those the operation names (for the audit trail)."""

    value: dict[str, Any]
    status: str | None = None
    objects: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused command: a stable code and a message for people."""

    code: ErrorCode
    message: str


Outcome = Done | Refusal
Handler = Callable[[Step, Any], Outcome]


def handles(table: dict[str, Handler], command: type[Operation]) -> Callable[[Handler], Handler]:
    """Decorator registering a handler for `command` in a module's `table`."""

    def register(handler: Handler) -> Handler:
        assert command.NAME not in table, command.NAME
        table[command.NAME] = handler
        return handler

    return register


def counterparty_refusal(
    state: LedgerState, participant_id: str, roles: Collection[Role], what: str
) -> Refusal | None:
    """Refuse a command naming `participant_id` as `what` unless that participant exists
    (UNKNOWN_PARTICIPANT), is ACTIVE and has one of `roles` (INVALID_PARTY)."""
    party = state.get("participant", participant_id)
    if party is None:
        return Refusal(ErrorCode.UNKNOWN_PARTICIPANT, f"{what} {participant_id!r} is not admitted")
    if party.status != "ACTIVE" or Role(party.role) not in roles:
        return Refusal(
            ErrorCode.INVALID_PARTY,
            f"{what} {participant_id!r} is {party.status} {party.role}, "
            f"needs an active {'/'.join(sorted(str(r) for r in roles))}",
        )
    return None


def money_refusal(currency: str, *amounts_minor: int) -> Refusal | None:
    """UNKNOWN_CURRENCY for a code outside the frozen table; INVALID_AMOUNT for an amount not in
    1..AMOUNT_MINOR_MAX."""
    if not is_currency(currency):
        return Refusal(ErrorCode.UNKNOWN_CURRENCY, f"{currency!r} is not an ISO 4217 code here")
    return amount_refusal(*amounts_minor)


def amount_refusal(*amounts_minor: int) -> Refusal | None:
    """INVALID_AMOUNT for an amount not in 1..AMOUNT_MINOR_MAX."""
    for amount in amounts_minor:
        if not is_amount(amount):
            return Refusal(ErrorCode.INVALID_AMOUNT, f"amount {amount} is outside 1..10^15")
    return None


def local_day(state: LedgerState, participant: Participant, timestamp_ms: int) -> int:
    """The day number of a consensus time at the participant's place (UTC if its place has no
    calendar on the ledger)."""
    calendar = state.get("calendar", participant.place)
    offset = calendar.utc_offset_minutes if calendar is not None else 0
    return day_of_timestamp(timestamp_ms, offset)


def touched(*refs: tuple[str, str | None]) -> tuple[str, ...]:
    """Audit object references ("kind:id") for the given (kind, id) pairs, skipping None ids."""
    return tuple(f"{kind}:{record_id}" for kind, record_id in refs if record_id is not None)


def record_ref(record: Record) -> str:
    """The audit object reference of a record."""
    return f"{record.KIND}:{record.record_key}"
