"""Resubmissions of money-moving commands: recognised by the client-chosen id, never recorded
twice.

A command that records an amount among possibly many of its kind (a repayment, a collection, a
service payment) carries an id its sender chose, unique per kind. A client that timed out does
not know whether its command was applied; it sends the same command again, with the same id.
The ledger then answers from what it recorded the first time:

- the id is unknown: the command runs normally (and records the id);
- the id was recorded for the same actor with the same terms: `Accepted` with the terms, the id,
  `"replayed": True` and the sequence number that recorded it; nothing changes (the status of
  the financing or invoice since then does not matter: a repayment that completed the loan is
  still recognised after the loan is REPAID or CLOSED);
- the id was recorded by someone else, or with other terms: `DUPLICATE_ID` (an id names one
  payment; reusing it for another would be the double recording this prevents).

This runs before the record's party and status checks (machine.py), and after the role check.
One-shot commands acting on a record of their own (`fin.disburse`, `pres.honour`,
`pres.reimburse`) need no id: a second one is refused by the record's status and changes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .commands import Operation
from .errors import ErrorCode
from .model import LedgerState
from .step import Done, Outcome, Refusal


@dataclass(frozen=True, slots=True)
class Recorded:
    """How a command records its id: the record kind, the operation field holding the id, the
    record field naming who recorded it, and the terms a resubmission must repeat."""

    kind: str
    id_field: str
    owner_field: str
    terms: tuple[str, ...]


#: command -> how its resubmissions are recognised.
IDEMPOTENT: dict[str, Recorded] = {
    "fin.repay": Recorded("repayment", "repayment_id", "lender", ("fin_id", "amount_minor")),
    "rcv.record_collection": Recorded(
        "collection", "collection_id", "bank", ("invoice_id", "amount_minor")
    ),
    "pay.service_outward": Recorded(
        "payment", "payment_id", "bank",
        ("record_id", "payer", "payee", "currency", "amount_minor"),
    ),
}  # fmt: skip


def resubmission(state: LedgerState, name: str, op: Operation, actor_id: str) -> Outcome | None:
    """The answer to `op` if it resubmits an id already recorded (see the module docstring), or
    None when the command must run normally."""
    recorded = IDEMPOTENT.get(name)
    if recorded is None:
        return None
    record_id = getattr(op, recorded.id_field)
    record = state.get(recorded.kind, record_id)
    if record is None:
        return None
    if getattr(record, recorded.owner_field) != actor_id:
        return Refusal(ErrorCode.DUPLICATE_ID, f"{recorded.kind} {record_id} already exists")
    terms = {term: getattr(op, term) for term in recorded.terms}
    if any(getattr(record, term) != value for term, value in terms.items()):
        return Refusal(
            ErrorCode.DUPLICATE_ID,
            f"{recorded.kind} {record_id} was recorded with other "
            f"{'/'.join(recorded.terms)}: a new {recorded.kind} needs a new id",
        )
    value = {
        **terms,
        recorded.id_field: record_id,
        "replayed": True,
        "recorded_at_sequence": record.sequence,
    }
    return Done(value)
