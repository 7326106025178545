"""Reads, filtered by the reader (docs/TRADE-DOMAIN.md "Who may read what").

Every replica holds the full state; what a reader gets is decided here, by the reader's role
and by whether it is a party to the record. A refused read returns FORBIDDEN. Read through
`TradeLedger.execute` (ordered), a read is audited like any command, the refusal included;
through `TradeLedger.query` (one replica, read-only) it cannot be, since it changes nothing.

Views are plain maps of wire values; lists come out in a deterministic order (id order or the
record's own order), so the same read at the same sequence number gives the same bytes on
every replica.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .audit import AuditEvent, AuditTrail
from .commands import (
    AUDIT_PAGE_MAX,
    GetAlerts,
    GetAmendment,
    GetAudit,
    GetCalendar,
    GetDeclaration,
    GetEbl,
    GetFinancing,
    GetInvoice,
    GetLc,
    GetParticipant,
    GetPresentation,
    GetTaxRecord,
    Operation,
)
from .encumbrance_registry import (
    blocking_encumbrance,
    encumbered_minor,
    financeable_balance_minor,
)
from .errors import ErrorCode
from .letters_of_credit import available_minor
from .model import (
    Declaration,
    Ebl,
    Financing,
    Invoice,
    LedgerState,
    LetterOfCredit,
    Participant,
    Record,
    Role,
    TaxRecord,
)
from .step import Refusal

View = dict[str, Any]
QueryHandler = Callable[[LedgerState, AuditTrail, Participant, Any], "View | Refusal"]
QUERY_HANDLERS: dict[str, QueryHandler] = {}
#: A page of the audit trail never scans more events than this (the caller pages on).
AUDIT_SCAN_MAX = 4096


def _reads(command: type[Operation]) -> Callable[[QueryHandler], QueryHandler]:
    def register(handler: QueryHandler) -> QueryHandler:
        QUERY_HANDLERS[command.NAME] = handler
        return handler

    return register


def _forbidden(what: str) -> Refusal:
    return Refusal(ErrorCode.FORBIDDEN, f"the reader may not see {what}")


def _hidden(kind: str, record_id: str) -> Refusal:
    """The one answer to a reader who may not see a record of this id, whether it exists or
    not (an answer that differed would tell a rival that the id is taken)."""
    return _forbidden(f"{kind} {record_id}")


def _missing(
    reader: Participant, kind: str, record_id: str, sees_any: tuple[Role, ...] = ()
) -> Refusal:
    """The answer for an id with no record: UNKNOWN_DOCUMENT to FX_ADMIN and to the roles
    `sees_any` that see something of every record of the kind, whoever's it is (to them a
    missing id is no secret); to everyone else the same FORBIDDEN as for a record hidden from
    them (`_hidden`)."""
    if _is_fx_admin(reader) or reader.role in sees_any:
        return _unknown(kind, record_id)
    return _hidden(kind, record_id)


def _unknown(kind: str, record_id: str) -> Refusal:
    code = {
        "participant": ErrorCode.UNKNOWN_PARTICIPANT,
        "calendar": ErrorCode.UNKNOWN_CALENDAR,
    }.get(kind, ErrorCode.UNKNOWN_DOCUMENT)
    return Refusal(code, f"no {kind} {record_id}")


def _is_fx_admin(reader: Participant) -> bool:
    return reader.role == Role.FX_ADMIN


def _full(record: Record) -> View:
    return dict(record.to_wire())


# --- Parties: who sees a record in full (the "parties to it" column) ---------------------------


def _lc_parties(lc: LetterOfCredit) -> tuple[str, ...]:
    return (lc.applicant, lc.beneficiary, lc.issuing_bank, lc.advising_bank)


def _ebl_parties(ebl: Ebl) -> set[str]:
    parties = {ebl.carrier, ebl.holder}
    parties.update(move["from"] for move in ebl.chain)
    parties.update(move["to"] for move in ebl.chain)
    if ebl.custodian is not None:
        parties.add(ebl.custodian)
    return parties


def _invoice_parties(state: LedgerState, invoice: Invoice) -> set[str]:
    return {invoice.seller} | {enc.lender for enc in state.encumbrances_of(invoice.fingerprint)}


def parties(state: LedgerState, kind: str, record_id: str) -> set[str]:
    """The participants who see the record in full (FX_ADMIN aside); empty if it is unknown."""
    record: Any = state.get(kind, record_id)
    if record is None:
        return set()
    match kind:
        case "participant":
            return {record.participant_id} | ({record.sponsor} if record.sponsor else set())
        case "decl":
            return {record.exporter, record.customs}
        case "ebl":
            return _ebl_parties(record)
        case "invoice":
            # The seller only: a lender's events reach it through its financing, and a later
            # lender must not see through the receivable what earlier lenders recorded.
            return {record.seller}
        case "encumbrance":
            return {record.lender, state.get("invoice", record.invoice_id).seller}
        case "financing":
            return {record.applicant, record.lender}
        case "lc":
            return set(_lc_parties(record))
        case "amendment" | "presentation":
            return set(_lc_parties(state.get("lc", record.lc_id)))
        case "tax_record":
            return {record.payer, *record.paying_banks}
        case "payment":
            return {record.bank, record.payer}
        case "repayment":
            financing = state.get("financing", record.fin_id)
            return {financing.lender, financing.applicant}
        case "collection":
            return {record.bank, state.get("invoice", record.invoice_id).seller}
        case "alert":
            return set(record.lenders)
    return set()  # calendars are public, nobody's own


# --- Record views ------------------------------------------------------------------------------


@_reads(GetParticipant)
def participant_view(
    state: LedgerState, audit: AuditTrail, reader: Participant, op: Any
) -> View | Refusal:
    """The directory entry for everyone; details for the participant, its sponsor and FX_ADMIN;
    supervisory flags for FX_ADMIN only."""
    record: Participant | None = state.get("participant", op.participant_id)
    if record is None:
        return _unknown("participant", op.participant_id)
    if _is_fx_admin(reader):
        return _full(record)
    view = {
        key: getattr(record, key)
        for key in ("participant_id", "role", "legal_name", "country", "status")
    }
    if reader.participant_id in (record.participant_id, record.sponsor):
        view.update(
            {
                key: getattr(record, key)
                for key in ("tax_id", "public_key", "place", "sponsor", "admitted_by")
            }
        )
    return view


@_reads(GetCalendar)
def calendar_view(
    state: LedgerState, audit: AuditTrail, reader: Participant, op: Any
) -> View | Refusal:
    """Calendars are public: deadlines must be checkable by everyone."""
    record = state.get("calendar", op.place)
    return _unknown("calendar", op.place) if record is None else _full(record)


def _consenting_lenders(state: LedgerState, decl_id: str) -> set[str]:
    """Banks the exporter named as lender in a financing request on this declaration: in P0 the
    request is the exporter's consent to let that bank see the declaration's summary."""
    return {fin.lender for fin in state.records("financing") if decl_id in fin.decl_ids}


@_reads(GetDeclaration)
def declaration_view(
    state: LedgerState, audit: AuditTrail, reader: Participant, op: Any
) -> View | Refusal:
    decl: Declaration | None = state.get("decl", op.decl_id)
    if decl is None:
        return _missing(reader, "decl", op.decl_id, (Role.CUSTOMS,))
    financed = encumbered_minor(state, decl.decl_id)
    balance = financeable_balance_minor(state, decl)
    if (
        _is_fx_admin(reader)
        or reader.role == Role.CUSTOMS
        or reader.participant_id == decl.exporter
    ):
        return {
            **_full(decl),
            "financed": financed > 0,
            "financed_minor": financed,
            "financeable_balance_minor": balance,
        }
    if reader.role == Role.BANK and reader.participant_id in _consenting_lenders(
        state, decl.decl_id
    ):
        return {
            "decl_id": decl.decl_id,
            "exporter": decl.exporter,
            "status": decl.status,
            "currency": decl.currency,
            "declared_value_minor": decl.declared_value_minor,
            "financeable_balance_minor": balance,
        }
    return _hidden("decl", decl.decl_id)


@_reads(GetEbl)
def ebl_view(state: LedgerState, audit: AuditTrail, reader: Participant, op: Any) -> View | Refusal:
    ebl: Ebl | None = state.get("ebl", op.ebl_id)
    if ebl is None:
        return _missing(reader, "ebl", op.ebl_id, (Role.CUSTOMS,))
    if _is_fx_admin(reader) or reader.participant_id in _ebl_parties(ebl):
        return _full(ebl)
    if reader.role == Role.CUSTOMS:
        return {
            key: getattr(ebl, key)
            for key in (
                "ebl_id", "status", "carrier", "goods_description", "port_of_loading",
                "port_of_discharge", "shipped_on_board_date",
            )
        }  # fmt: skip
    return _hidden("ebl", ebl.ebl_id)


def _receivable_remaining_minor(state: LedgerState, invoice: Invoice) -> int:
    """What of the receivable is neither collected nor financed."""
    if invoice.status == "SETTLED":
        return 0
    blocking = blocking_encumbrance(state, invoice.fingerprint)
    financed = blocking.amount_minor if blocking is not None else 0
    return max(0, invoice.amount_minor - invoice.collected_minor - financed)


@_reads(GetInvoice)
def invoice_view(
    state: LedgerState, audit: AuditTrail, reader: Participant, op: Any
) -> View | Refusal:
    invoice: Invoice | None = state.get("invoice", op.invoice_id)
    if invoice is None:
        return _missing(reader, "invoice", op.invoice_id, (Role.BANK, Role.CUSTOMS))
    blocking = blocking_encumbrance(state, invoice.fingerprint)
    encumbered = blocking is not None and blocking.status == "ACTIVE"
    remaining = _receivable_remaining_minor(state, invoice)
    if _is_fx_admin(reader) or reader.participant_id in _invoice_parties(state, invoice):
        # The seller and FX_ADMIN see every encumbrance; a lender only its own, never who
        # financed the receivable before or after it (need-to-know, "never the lender").
        sees_all = _is_fx_admin(reader) or reader.participant_id == invoice.seller
        return {
            **_full(invoice),
            "encumbered": encumbered,
            "remaining_minor": remaining,
            "encumbrances": [
                _full(enc)
                for enc in state.encumbrances_of(invoice.fingerprint)
                if sees_all or enc.lender == reader.participant_id
            ],
        }
    if reader.role == Role.BANK:
        # "Encumbered?" and the remaining balance only: never the lender, never the pricing.
        return {
            "invoice_id": invoice.invoice_id,
            "encumbered": encumbered,
            "settled": invoice.status == "SETTLED",
            "remaining_minor": remaining,
        }
    if reader.role == Role.CUSTOMS:
        return {
            "invoice_id": invoice.invoice_id,
            "status": invoice.status,
            "currency": invoice.currency,
            "amount_minor": invoice.amount_minor,
            "encumbered": encumbered,
        }
    return _hidden("invoice", invoice.invoice_id)


@_reads(GetFinancing)
def financing_view(
    state: LedgerState, audit: AuditTrail, reader: Participant, op: Any
) -> View | Refusal:
    financing: Financing | None = state.get("financing", op.fin_id)
    if financing is None:
        return _missing(reader, "financing", op.fin_id)
    if _is_fx_admin(reader) or reader.participant_id in (financing.applicant, financing.lender):
        return _full(financing)
    if reader.role == Role.CUSTOMS:
        its_decls = [
            decl_id
            for decl_id in financing.decl_ids
            if state.get("decl", decl_id).customs == reader.participant_id
        ]
        if its_decls:
            # Amount and status for its declarations: not the lender's pricing.
            return {
                "fin_id": financing.fin_id,
                "status": financing.status,
                "currency": financing.currency,
                "amount_minor": financing.amount_minor,
                "decl_ids": its_decls,
            }
    return _hidden("financing", financing.fin_id)


@_reads(GetLc)
def lc_view(state: LedgerState, audit: AuditTrail, reader: Participant, op: Any) -> View | Refusal:
    lc: LetterOfCredit | None = state.get("lc", op.lc_id)
    if lc is None:
        return _missing(reader, "lc", op.lc_id)
    if not (_is_fx_admin(reader) or reader.participant_id in _lc_parties(lc)):
        return _hidden("lc", lc.lc_id)
    return {
        **_full(lc),
        "available_minor": available_minor(state, lc),
        "amendment_statuses": [[a, state.get("amendment", a).status] for a in lc.amendments],
        "presentation_statuses": [
            [p, state.get("presentation", p).status] for p in lc.presentations
        ],
    }


def _lc_child_view(
    state: LedgerState, reader: Participant, kind: str, record_id: str
) -> View | Refusal:
    record: Any = state.get(kind, record_id)
    if record is None:
        return _missing(reader, kind, record_id)
    lc = state.get("lc", record.lc_id)
    if _is_fx_admin(reader) or reader.participant_id in _lc_parties(lc):
        return _full(record)
    return _hidden(kind, record_id)


@_reads(GetAmendment)
def amendment_view(
    state: LedgerState, audit: AuditTrail, reader: Participant, op: Any
) -> View | Refusal:
    return _lc_child_view(state, reader, "amendment", op.amend_id)


@_reads(GetPresentation)
def presentation_view(
    state: LedgerState, audit: AuditTrail, reader: Participant, op: Any
) -> View | Refusal:
    return _lc_child_view(state, reader, "presentation", op.pres_id)


@_reads(GetTaxRecord)
def tax_record_view(
    state: LedgerState, audit: AuditTrail, reader: Participant, op: Any
) -> View | Refusal:
    record: TaxRecord | None = state.get("tax_record", op.record_id)
    if record is None:
        return _missing(reader, "tax_record", op.record_id, (Role.BANK, Role.TAX))
    remaining = record.amount_minor - record.used_minor
    if (
        reader.role in (Role.FX_ADMIN, Role.TAX)
        or reader.participant_id == record.payer
        or reader.participant_id in record.paying_banks
    ):
        payments = [_full(state.get("payment", p)) for p in record.payments]
        return {**_full(record), "remaining_minor": remaining, "payment_records": payments}
    if reader.role == Role.BANK:
        return {
            "record_id": record.record_id,
            "currency": record.currency,
            "remaining_minor": remaining,
        }
    return _hidden("tax_record", record.record_id)


@_reads(GetAlerts)
def alerts_view(
    state: LedgerState, audit: AuditTrail, reader: Participant, op: Any
) -> View | Refusal:
    """OVER_FINANCED and other alerts: FX_ADMIN sees all, a lender those concerning it, without
    the list of lenders (a bank is never told who else lends on the goods)."""
    if _is_fx_admin(reader):
        return {"alerts": [_full(alert) for alert in state.records("alert")]}
    alerts = []
    for alert in state.records("alert"):
        if reader.participant_id in alert.lenders:
            view = _full(alert)
            del view["lenders"]
            alerts.append(view)
    return {"alerts": alerts}


# --- The audit trail ---------------------------------------------------------------------------

#: Commands in a regulator's domain: CUSTOMS and TAX see every event of these.
_REGULATOR_DOMAINS = {Role.CUSTOMS: ("decl.",), Role.TAX: ("tax.", "pay.")}


def event_visible(state: LedgerState, reader: Participant, event: AuditEvent) -> bool:
    """FX_ADMIN: every event. CUSTOMS, TAX: their domain's. Everyone: their own attempts, and
    events touching a record they are a party to."""
    if _is_fx_admin(reader) or event.actor == reader.participant_id:
        return True
    domain = _REGULATOR_DOMAINS.get(Role(reader.role))
    if domain is not None:
        return event.command is not None and event.command.startswith(domain)
    for ref in event.objects:
        kind, _, record_id = ref.partition(":")
        if kind in state.tables and reader.participant_id in parties(state, kind, record_id):
            return True
    return False


def event_view(event: AuditEvent) -> View:
    return {
        "index": event.index,
        "sequence": event.sequence,
        "timestamp_ms": event.timestamp_ms,
        "signer": event.signer,
        "actor": event.actor,
        "command": event.command,
        "objects": list(event.objects),
        "outcome": event.outcome,
        "operation_digest": event.operation_digest,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


@_reads(GetAudit)
def audit_view(
    state: LedgerState, audit: AuditTrail, reader: Participant, op: Any
) -> View | Refusal:
    """Up to `limit` visible events from index `start`, scanning at most AUDIT_SCAN_MAX;
    `next` is where to continue, `length` the trail's length."""
    if op.start < 0 or not 1 <= op.limit <= AUDIT_PAGE_MAX:
        return Refusal(ErrorCode.MALFORMED, f"start >= 0 and limit in 1..{AUDIT_PAGE_MAX}")
    events: list[View] = []
    position = op.start
    end = min(len(audit.events), op.start + AUDIT_SCAN_MAX)
    while position < end and len(events) < op.limit:
        event = audit.events[position]
        if event_visible(state, reader, event):
            events.append(event_view(event))
        position += 1
    return {"events": events, "next": position, "length": len(audit.events)}
