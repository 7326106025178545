"""Presentations under a letter of credit (UCP 600 art. 14-16, eUCP): documents attached (an
eBL held by the presenter is custody-locked), completion within expiry and within shipment +
presentation period, examination within five banking days at the examining bank's place
(computed once and stored), refusal with coded discrepancies, waiver, honour, reimbursement,
and the release of the documents (the eBL passes to the applicant) or their return.

The examining bank is the issuing bank.
"""

from __future__ import annotations

from .banking_calendar import add_banking_days, format_date, parse_date
from .commands import (
    LIST_ITEMS_MAX,
    PresAttach,
    PresComplete,
    PresHonour,
    PresMarkComplying,
    PresOpen,
    PresRefuse,
    PresReimburse,
    PresReleaseDocs,
    PresReturnDocs,
    PresWaive,
)
from .ebls import in_use_refusal, move_holder
from .encumbrance_registry import receivable_refusal
from .errors import ErrorCode
from .letters_of_credit import available_minor, live_lc_refusal
from .model import (
    DISCREPANCY_CODES,
    EXAMINATION_BANKING_DAYS,
    Ebl,
    Invoice,
    LedgerState,
    LetterOfCredit,
    Presentation,
)
from .step import (
    Done,
    Handler,
    Outcome,
    Refusal,
    Step,
    amount_refusal,
    handles,
    local_day,
    touched,
)
from .transitions import CLOSED_STATUSES

HANDLERS: dict[str, Handler] = {}


@handles(HANDLERS, PresOpen)
def open_presentation(step: Step, op: PresOpen) -> Outcome:
    lc: LetterOfCredit | None = step.state.get("lc", op.lc_id)
    if lc is None:
        return Refusal(ErrorCode.UNKNOWN_DOCUMENT, f"no LC {op.lc_id}")
    if lc.beneficiary != step.actor.participant_id:
        return Refusal(ErrorCode.UNAUTHORIZED, f"only {lc.lc_id}'s beneficiary presents")
    if (refusal := live_lc_refusal(lc)) is not None:
        return refusal
    if len(lc.presentations) >= LIST_ITEMS_MAX:
        return Refusal(ErrorCode.INVALID_STATE, f"{lc.lc_id} has {LIST_ITEMS_MAX} presentations")
    step.state.add(
        Presentation(
            pres_id=op.pres_id,
            status="OPEN",
            lc_id=lc.lc_id,
            presenter=lc.beneficiary,
            applicant=lc.applicant,
            examining_bank=lc.issuing_bank,
            currency=lc.currency,
            amount_minor=0,
            documents=[],
            shipment_date=None,
            presented_on=None,
            deadline=None,
            discrepancies=[],
            waiver_requested=False,
            examined=False,
            honoured=False,
        )
    )
    lc.presentations = [*lc.presentations, op.pres_id]
    return Done({"pres_id": op.pres_id, "status": "OPEN"})


def _lock_ref(presentation: Presentation) -> str:
    return f"presentation:{presentation.pres_id}"


def _attached_ebls(state: LedgerState, presentation: Presentation) -> list[Ebl]:
    return [
        state.get("ebl", document["ref"])
        for document in presentation.documents
        if document["doc_type"] == "ebl"
    ]


@handles(HANDLERS, PresAttach)
def attach(step: Step, op: PresAttach) -> Outcome:
    presentation: Presentation = step.record
    state = step.state
    lc: LetterOfCredit = state.get("lc", presentation.lc_id)
    if (refusal := live_lc_refusal(lc)) is not None:
        return refusal
    if len(presentation.documents) >= LIST_ITEMS_MAX:
        return Refusal(ErrorCode.MALFORMED, f"a presentation holds {LIST_ITEMS_MAX} documents")
    if any(d["doc_type"] == op.doc_type and d["ref"] == op.ref for d in presentation.documents):
        return Refusal(ErrorCode.DUPLICATE_ID, f"{op.doc_type} {op.ref} is already attached")
    objects: tuple[str, ...] = ()
    ebl: Ebl | None = None
    invoice: Invoice | None = None
    if op.doc_type == "ebl":
        ebl = state.get("ebl", op.ref)
        if ebl is None:
            return Refusal(ErrorCode.UNKNOWN_DOCUMENT, f"no eBL {op.ref}")
        if (ebl.KIND, ebl.status) in CLOSED_STATUSES:
            return Refusal(ErrorCode.DOC_CLOSED, f"{op.ref} is {ebl.status}")
        if ebl.holder != presentation.presenter:
            return Refusal(ErrorCode.NOT_HOLDER, f"{presentation.presenter} does not hold {op.ref}")
        if (refusal := in_use_refusal(ebl)) is not None:
            return refusal
        if ebl.status != "ISSUED":
            return Refusal(ErrorCode.INVALID_STATE, f"{op.ref} is {ebl.status}")
        objects = touched(("ebl", op.ref))
    elif op.doc_type == "invoice":
        invoice = state.get("invoice", op.ref)
        if invoice is None:
            return Refusal(ErrorCode.UNKNOWN_DOCUMENT, f"no invoice {op.ref}")
        if invoice.seller != presentation.presenter:
            return Refusal(ErrorCode.NOT_DOCUMENT_OWNER, f"{op.ref} is not the presenter's")
        # Financed, paid, or presented elsewhere: the LC would pay a receivable twice.
        if (refusal := receivable_refusal(state, invoice)) is not None:
            return refusal
        if len(invoice.presentations) >= LIST_ITEMS_MAX:
            return Refusal(
                ErrorCode.INVALID_STATE, f"{op.ref} was presented {LIST_ITEMS_MAX} times"
            )
        objects = touched(("invoice", op.ref))
    elif op.content_digest is None:
        return Refusal(ErrorCode.MALFORMED, "an off-ledger document needs its content_digest")
    if ebl is not None:
        ebl.locked_by = _lock_ref(presentation)
        ebl.custodian = presentation.examining_bank
    if invoice is not None:
        # The LC pays this receivable: it is encumbered until the documents are returned.
        invoice.presentations = [*invoice.presentations, presentation.pres_id]
    presentation.documents = [
        *presentation.documents,
        {"doc_type": op.doc_type, "ref": op.ref, "content_digest": op.content_digest},
    ]
    value = {"pres_id": presentation.pres_id, "documents": len(presentation.documents)}
    return Done(value, objects=objects)


@handles(HANDLERS, PresComplete)
def complete(step: Step, op: PresComplete) -> Outcome:
    presentation: Presentation = step.record
    state = step.state
    lc: LetterOfCredit = state.get("lc", presentation.lc_id)
    if lc.status == "EXPIRED":
        return Refusal(ErrorCode.LATE_PRESENTATION, f"{lc.lc_id} has expired")
    refusal = live_lc_refusal(lc) or amount_refusal(op.amount_minor)
    if refusal is not None:
        return refusal
    examiner = state.get("participant", presentation.examining_bank)
    calendar = state.get("calendar", examiner.place)
    if calendar is None:
        return Refusal(ErrorCode.UNKNOWN_CALENDAR, f"no calendar for {examiner.place!r}")
    today = local_day(state, examiner, step.now_ms)
    if today > parse_date(lc.terms["expiry_date"]):
        return Refusal(ErrorCode.LATE_PRESENTATION, f"after expiry {lc.terms['expiry_date']}")
    ebls = _attached_ebls(state, presentation)
    if not ebls:
        return Refusal(ErrorCode.DOCUMENTS_MISSING, "no transport document (eBL) attached")
    shipment = min(parse_date(ebl.shipped_on_board_date) for ebl in ebls)
    last_day = shipment + lc.terms["presentation_period_days"]
    if today > last_day:
        return Refusal(
            ErrorCode.LATE_PRESENTATION, f"after shipment + period, {format_date(last_day)}"
        )
    available = available_minor(state, lc, excluding=presentation.pres_id)
    if op.amount_minor > available:
        return Refusal(ErrorCode.EXCEEDS_AVAILABLE, f"only {available} is available")
    deadline = add_banking_days(
        today, EXAMINATION_BANKING_DAYS, calendar.weekend, calendar.holidays
    )
    presentation.amount_minor = op.amount_minor
    presentation.shipment_date = format_date(shipment)
    presentation.presented_on = format_date(today)
    presentation.deadline = format_date(deadline)
    value = {
        "pres_id": presentation.pres_id,
        "status": "PRESENTED",
        "presented_on": presentation.presented_on,
        "deadline": presentation.deadline,
    }
    return Done(value)


@handles(HANDLERS, PresMarkComplying)
def mark_complying(step: Step, op: PresMarkComplying) -> Outcome:
    presentation: Presentation = step.record
    presentation.examined = True
    return Done({"pres_id": op.pres_id, "status": "COMPLYING"})


@handles(HANDLERS, PresRefuse)
def refuse(step: Step, op: PresRefuse) -> Outcome:
    presentation: Presentation = step.record
    unknown = [code for code in op.discrepancies if code not in DISCREPANCY_CODES]
    if not op.discrepancies or unknown:
        return Refusal(ErrorCode.MALFORMED, f"discrepancies must be codes of {DISCREPANCY_CODES}")
    examiner = step.state.get("participant", presentation.examining_bank)
    today = local_day(step.state, examiner, step.now_ms)
    assert presentation.deadline is not None
    if today > parse_date(presentation.deadline):
        return Refusal(
            ErrorCode.PRECLUDED, f"the refusal deadline was {presentation.deadline}: must honour"
        )
    presentation.examined = True
    presentation.discrepancies = list(op.discrepancies)
    presentation.waiver_requested = op.waiver_requested
    return Done({"pres_id": op.pres_id, "status": "REFUSED"})


@handles(HANDLERS, PresWaive)
def waive(step: Step, op: PresWaive) -> Outcome:
    presentation: Presentation = step.record
    if not presentation.waiver_requested:
        return Refusal(ErrorCode.INVALID_STATE, "the refusal did not ask for a waiver")
    return Done({"pres_id": op.pres_id, "status": "WAIVED"})


@handles(HANDLERS, PresHonour)
def honour(step: Step, op: PresHonour) -> Outcome:
    presentation: Presentation = step.record
    lc: LetterOfCredit = step.state.get("lc", presentation.lc_id)
    # Drawn never exceeds the maximum: completion reserved the amount within what was
    # available, and an amendment cannot lower the amount below drawings plus reservations.
    assert lc.drawn_minor + presentation.amount_minor <= lc.terms["amount_minor"], lc.lc_id
    lc.drawn_minor += presentation.amount_minor
    presentation.honoured = True
    value = {"pres_id": op.pres_id, "status": "HONOURED", "drawn_minor": lc.drawn_minor}
    return Done(value, objects=touched(("lc", lc.lc_id)))


@handles(HANDLERS, PresReimburse)
def reimburse(step: Step, op: PresReimburse) -> Outcome:
    return Done({"pres_id": op.pres_id, "status": "REIMBURSED"})


def _unlock(step: Step, presentation: Presentation, new_holder: str | None) -> tuple[str, ...]:
    refs = []
    for ebl in _attached_ebls(step.state, presentation):
        assert ebl.locked_by == _lock_ref(presentation), ebl.ebl_id
        ebl.locked_by = None
        ebl.custodian = None
        if new_holder is not None and ebl.holder != new_holder:
            move_holder(ebl, new_holder, "release", step.context.sequence)
        refs.append(("ebl", ebl.ebl_id))
    return touched(*refs)


@handles(HANDLERS, PresReleaseDocs)
def release_docs(step: Step, op: PresReleaseDocs) -> Outcome:
    presentation: Presentation = step.record
    objects = _unlock(step, presentation, presentation.applicant)
    return Done({"pres_id": op.pres_id, "status": "DOCS_RELEASED"}, objects=objects)


@handles(HANDLERS, PresReturnDocs)
def return_docs(step: Step, op: PresReturnDocs) -> Outcome:
    presentation: Presentation = step.record
    objects = _unlock(step, presentation, None)
    return Done({"pres_id": op.pres_id, "status": "RETURNED"}, objects=objects)
