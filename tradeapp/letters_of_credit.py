"""Letters of credit (UCP 600 / eUCP): application, issue, advice, amendments (effective only
when the beneficiary accepts all of their changes), cancellation with the beneficiary's consent,
expiry and close; and the amounts presentations may draw (see presentations.py)."""

from __future__ import annotations

from typing import Any

from .banking_calendar import parse_date
from .commands import (
    LIST_ITEMS_MAX,
    TEXT_CHARS_MAX,
    AmendAccept,
    AmendAdvise,
    AmendIssue,
    AmendReject,
    AmendRequest,
    LcAdvise,
    LcApply,
    LcCancel,
    LcClose,
    LcConsentCancel,
    LcDecline,
    LcExpire,
    LcIssue,
)
from .errors import ErrorCode
from .model import (
    AMENDABLE_TERMS,
    PRESENTATION_PERIOD_DAYS_MAX,
    Amendment,
    LedgerState,
    LetterOfCredit,
    Presentation,
    Role,
)
from .money import is_amount
from .step import (
    Done,
    Handler,
    Outcome,
    Refusal,
    Step,
    counterparty_refusal,
    handles,
    local_day,
    money_refusal,
    touched,
)

HANDLERS: dict[str, Handler] = {}

#: An LC that can still be amended, presented under, cancelled.
LIVE_LC_STATUSES = ("ISSUED", "ADVISED")
#: Completed presentations whose amount is reserved until honoured or returned.
RESERVING_PRESENTATION_STATUSES = ("PRESENTED", "COMPLYING", "REFUSED", "WAIVED")
#: Presentations that are over: the LC may close once all of its presentations are.
FINAL_PRESENTATION_STATUSES = ("DOCS_RELEASED", "RETURNED")


# --- Shared rules ------------------------------------------------------------------------------


def reserved_minor(state: LedgerState, lc: LetterOfCredit, *, excluding: str = "") -> int:
    """The amount of completed presentations awaiting a decision under `lc`."""
    total = 0
    for pres_id in lc.presentations:
        presentation: Presentation = state.get("presentation", pres_id)
        if pres_id != excluding and presentation.status in RESERVING_PRESENTATION_STATUSES:
            total += presentation.amount_minor
    return total


def available_minor(state: LedgerState, lc: LetterOfCredit, *, excluding: str = "") -> int:
    """What can still be presented: the amount less drawings and reserved presentations."""
    return (
        lc.terms["amount_minor"] - lc.drawn_minor - reserved_minor(state, lc, excluding=excluding)
    )


def _pending_presentations(state: LedgerState, lc: LetterOfCredit) -> list[str]:
    return [
        pres_id
        for pres_id in lc.presentations
        if state.get("presentation", pres_id).status not in FINAL_PRESENTATION_STATUSES
    ]


def live_lc_refusal(lc: LetterOfCredit) -> Refusal | None:
    if lc.status in LIVE_LC_STATUSES:
        return None
    return Refusal(ErrorCode.INVALID_STATE, f"{lc.lc_id} is {lc.status}")


def _terms_refusal(changes: dict[str, Any]) -> Refusal | None:
    """Refuse ill-typed terms: MALFORMED, or INVALID_AMOUNT for an amount out of bounds."""
    for name in sorted(changes):
        value = changes[name]
        if name not in AMENDABLE_TERMS:
            return Refusal(ErrorCode.MALFORMED, f"{name!r:.40} is not an amendable term")
        if name == "amount_minor" and not is_amount(value):
            return Refusal(ErrorCode.INVALID_AMOUNT, "amount_minor must be a positive bound int")
        if name.endswith("_date") and parse_date(value) is None:
            return Refusal(ErrorCode.MALFORMED, f"{name} must be a YYYY-MM-DD date")
        if name == "presentation_period_days" and not (
            isinstance(value, int)
            and not isinstance(value, bool)
            and 1 <= value <= PRESENTATION_PERIOD_DAYS_MAX
        ):
            return Refusal(ErrorCode.MALFORMED, "presentation_period_days must be 1..365")
        if name == "goods_description" and not (
            isinstance(value, str) and len(value) <= TEXT_CHARS_MAX
        ):
            return Refusal(ErrorCode.MALFORMED, "goods_description must be text")
    return None


# --- Letters of credit -------------------------------------------------------------------------


@handles(HANDLERS, LcApply)
def apply(step: Step, op: LcApply) -> Outcome:
    state = step.state
    for participant_id, role, what in (
        (op.issuing_bank, Role.BANK, "issuing bank"),
        (op.advising_bank, Role.BANK, "advising bank"),
        (op.beneficiary, Role.TRADER, "beneficiary"),
    ):
        if (refusal := counterparty_refusal(state, participant_id, [role], what)) is not None:
            return refusal
    if (refusal := money_refusal(op.currency, op.amount_minor)) is not None:
        return refusal
    terms = {
        "amount_minor": op.amount_minor,
        "expiry_date": op.expiry_date,
        "goods_description": op.goods_description,
        "latest_shipment_date": op.latest_shipment_date,
        "presentation_period_days": op.presentation_period_days,
    }
    if (refusal := _terms_refusal(terms)) is not None:
        return refusal
    state.add(
        LetterOfCredit(
            lc_id=op.lc_id,
            status="SUBMITTED",
            applicant=step.actor.participant_id,
            beneficiary=op.beneficiary,
            issuing_bank=op.issuing_bank,
            advising_bank=op.advising_bank,
            currency=op.currency,
            terms=terms,
            terms_version=0,
            drawn_minor=0,
            cancel_consent=False,
            amendments=[],
            presentations=[],
        )
    )
    return Done({"lc_id": op.lc_id, "status": "SUBMITTED"})


@handles(HANDLERS, LcDecline)
def decline(step: Step, op: LcDecline) -> Outcome:
    return Done({"lc_id": op.lc_id, "status": "DECLINED"})


@handles(HANDLERS, LcIssue)
def issue(step: Step, op: LcIssue) -> Outcome:
    lc: LetterOfCredit = step.record
    lc.terms_version = 1  # terms v1 are frozen from here: only accepted amendments change them
    return Done({"lc_id": op.lc_id, "status": "ISSUED", "terms_version": 1})


@handles(HANDLERS, LcAdvise)
def advise(step: Step, op: LcAdvise) -> Outcome:
    return Done({"lc_id": op.lc_id, "status": "ADVISED"})


@handles(HANDLERS, LcConsentCancel)
def consent_cancel(step: Step, op: LcConsentCancel) -> Outcome:
    lc: LetterOfCredit = step.record
    lc.cancel_consent = True
    return Done({"lc_id": op.lc_id, "status": lc.status, "cancel_consent": True})


@handles(HANDLERS, LcCancel)
def cancel(step: Step, op: LcCancel) -> Outcome:
    lc: LetterOfCredit = step.record
    if not lc.cancel_consent:
        return Refusal(ErrorCode.CONSENT_REQUIRED, "the beneficiary has not consented")
    if pending := _pending_presentations(step.state, lc):
        return Refusal(ErrorCode.PRESENTATION_PENDING, f"presentations pending: {pending}")
    return Done({"lc_id": op.lc_id, "status": "CANCELLED"})


@handles(HANDLERS, LcExpire)
def expire(step: Step, op: LcExpire) -> Outcome:
    lc: LetterOfCredit = step.record
    today = local_day(step.state, step.actor, step.now_ms)
    if today <= parse_date(lc.terms["expiry_date"]):
        return Refusal(ErrorCode.NOT_EXPIRED, f"{lc.lc_id} expires on {lc.terms['expiry_date']}")
    return Done({"lc_id": op.lc_id, "status": "EXPIRED"})


@handles(HANDLERS, LcClose)
def close(step: Step, op: LcClose) -> Outcome:
    lc: LetterOfCredit = step.record
    if pending := _pending_presentations(step.state, lc):
        return Refusal(ErrorCode.PRESENTATION_PENDING, f"presentations pending: {pending}")
    if lc.status != "EXPIRED" and available_minor(step.state, lc) > 0:
        return Refusal(
            ErrorCode.NOT_EXPIRED, "a live LC with an undrawn balance is cancelled, not closed"
        )
    return Done({"lc_id": op.lc_id, "status": "CLOSED", "drawn_minor": lc.drawn_minor})


# --- Amendments --------------------------------------------------------------------------------


def _amended_lc(step: Step) -> tuple[LetterOfCredit, Refusal | None]:
    lc: LetterOfCredit = step.state.get("lc", step.record.lc_id)
    return lc, live_lc_refusal(lc)


@handles(HANDLERS, AmendRequest)
def request_amendment(step: Step, op: AmendRequest) -> Outcome:
    lc: LetterOfCredit | None = step.state.get("lc", op.lc_id)
    if lc is None:
        return Refusal(ErrorCode.UNKNOWN_DOCUMENT, f"no LC {op.lc_id}")
    if lc.applicant != step.actor.participant_id:
        return Refusal(ErrorCode.UNAUTHORIZED, f"only {lc.lc_id}'s applicant requests amendments")
    refusal = live_lc_refusal(lc) or _terms_refusal(op.changes)
    if refusal is not None:
        return refusal
    if len(lc.amendments) >= LIST_ITEMS_MAX:
        return Refusal(ErrorCode.INVALID_STATE, f"{lc.lc_id} has {LIST_ITEMS_MAX} amendments")
    step.state.add(
        Amendment(
            amend_id=op.amend_id,
            status="REQUESTED",
            lc_id=lc.lc_id,
            applicant=lc.applicant,
            beneficiary=lc.beneficiary,
            issuing_bank=lc.issuing_bank,
            advising_bank=lc.advising_bank,
            changes=dict(op.changes),
            terms_version=None,
        )
    )
    lc.amendments = [*lc.amendments, op.amend_id]
    return Done({"amend_id": op.amend_id, "status": "REQUESTED"})


def _amendment_step(step: Step, op: AmendIssue | AmendAdvise | AmendReject) -> Outcome:
    _, refusal = _amended_lc(step)
    if refusal is not None:
        return refusal
    return Done({"amend_id": op.amend_id, "status": step.transition.to[0]})


for _command in (AmendIssue, AmendAdvise, AmendReject):
    handles(HANDLERS, _command)(_amendment_step)


@handles(HANDLERS, AmendAccept)
def accept_amendment(step: Step, op: AmendAccept) -> Outcome:
    amendment: Amendment = step.record
    lc, refusal = _amended_lc(step)
    if refusal is not None:
        return refusal
    if sorted(op.accepted_terms) != sorted(amendment.changes):
        return Refusal(
            ErrorCode.PARTIAL_ACCEPTANCE,
            f"accept all of {sorted(amendment.changes)} or reject the amendment",
        )
    new_terms = {**lc.terms, **amendment.changes}
    committed = lc.drawn_minor + reserved_minor(step.state, lc)
    if new_terms["amount_minor"] < committed:
        return Refusal(ErrorCode.EXCEEDS_AVAILABLE, f"{committed} is already drawn or presented")
    lc.terms = new_terms
    lc.terms_version += 1
    amendment.terms_version = lc.terms_version
    value = {"amend_id": op.amend_id, "status": "ACCEPTED", "terms_version": lc.terms_version}
    return Done(value, objects=touched(("lc", lc.lc_id)))
