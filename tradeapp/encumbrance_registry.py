"""The encumbrance registry: what rests on each receivable and each declaration.

An encumbrance is ACTIVE while its financing is outstanding, SETTLED once the buyer has paid the
receivable, RELEASED when the financing closes without a full collection. ACTIVE and SETTLED
ones *hold* their receivable and their declaration amounts: a paid receivable cannot back new
credit (RECEIVABLE_SETTLED); a RELEASED one holds nothing.

Goods paid for back nothing new either: a collection on a receivable is attributed to the
declarations its latest encumbrance drew on (`attribute_collection`), and a declaration's
financeable balance is its declared value less what each encumbrance *consumes* of it: the
larger of its allocation and the collections attributed to it while it holds, the collections
alone once RELEASED.

A receivable is also encumbered outside financing: by a letter of credit once it is attached to
a presentation that has not been returned, and by the pledge of the eBL of its goods to a bank
other than the lender. `receivable_refusal` decides both orders: a financed receivable cannot be
presented under an LC, a presented one cannot be financed (`pledged_goods_refusal` for goods).
"""

from __future__ import annotations

from .errors import ErrorCode
from .model import (
    ALERT_OVER_FINANCED,
    Alert,
    Declaration,
    Encumbrance,
    Financing,
    Invoice,
    LedgerState,
    ledger_id,
)
from .step import Refusal

HOLDING_STATUSES = ("ACTIVE", "SETTLED")
#: `locked_by` of an eBL pledged to its custodian bank (a presentation locks with its ref).
PLEDGE_LOCK = "pledge"
#: A declaration can back financing only once customs has released it.
FINANCEABLE_DECLARATION_STATUSES = ("RELEASED", "CLEARED")


def holding(encumbrance: Encumbrance) -> bool:
    """True iff the encumbrance still holds its receivable and declaration amounts."""
    return encumbrance.status in HOLDING_STATUSES


def encumbered_minor(state: LedgerState, decl_id: str) -> int:
    """The amount of the declaration held by ACTIVE or SETTLED encumbrances."""
    return sum(
        encumbrance.allocations[decl_id]
        for encumbrance in state.encumbrances_on(decl_id)
        if holding(encumbrance)
    )


def declared_minor(declaration: Declaration) -> int:
    """The declared value that can back financing: nothing once the declaration is cancelled."""
    return (
        0 if declaration.status in ("CANCELLED", "REJECTED") else declaration.declared_value_minor
    )


def consumed_minor(state: LedgerState, decl_id: str) -> int:
    """What encumbrances consume of the declaration: per encumbrance, the larger of its
    allocation and the collections attributed to it while it holds, the collections alone once
    it is RELEASED."""
    total = 0
    for encumbrance in state.encumbrances_on(decl_id):
        paid = encumbrance.paid.get(decl_id, 0)
        if holding(encumbrance):
            total += max(encumbrance.allocations[decl_id], paid)
        else:
            total += paid
    return total


def financeable_balance_minor(state: LedgerState, declaration: Declaration) -> int:
    """Declared value minus what encumbrances consume, never below zero (an amendment below the
    financed amount raises OVER_FINANCED instead of a negative balance)."""
    return max(0, declared_minor(declaration) - consumed_minor(state, declaration.decl_id))


def attribute_collection(state: LedgerState, invoice: Invoice, amount_minor: int) -> list[str]:
    """Record that the buyer paid `amount_minor` of `invoice` against the declarations its
    latest encumbrance (of any status) drew on, in the order the financing listed them, each up
    to its declared value. Returns the ids of the encumbrances changed (none if the receivable
    was never financed: then no declaration is known to carry its goods)."""
    encumbrances = state.encumbrances_of(invoice.fingerprint)
    if not encumbrances:
        return []
    encumbrance = encumbrances[-1]
    financing: Financing = state.get("financing", encumbrance.fin_id)
    paid = dict(encumbrance.paid)
    remaining = amount_minor
    for decl_id in financing.decl_ids:
        if remaining == 0 or decl_id not in encumbrance.allocations:
            continue
        room = declared_minor(state.get("decl", decl_id)) - paid.get(decl_id, 0)
        share = max(0, min(room, remaining))
        if share:
            paid[decl_id] = paid.get(decl_id, 0) + share
            remaining -= share
    if paid == encumbrance.paid:
        return []
    encumbrance.paid = paid
    return [encumbrance.enc_id]


#: Presentations that no longer hold the documents attached to them.
_RETURNED_PRESENTATION_STATUSES = ("RETURNED",)


def receivable_refusal(state: LedgerState, invoice: Invoice) -> Refusal | None:
    """Whether another instrument already pays this receivable, for both orders of financing
    and presenting it under a letter of credit: RECEIVABLE_SETTLED once the buyer has paid it in
    full; ALREADY_ENCUMBERED while a financing holds it (an ACTIVE encumbrance) or while it is
    attached to a presentation that has not been returned (the LC pays it)."""
    blocking = blocking_encumbrance(state, invoice.fingerprint)
    if invoice.status == "SETTLED" or (blocking is not None and blocking.status == "SETTLED"):
        return Refusal(ErrorCode.RECEIVABLE_SETTLED, f"{invoice.invoice_id} has been paid")
    if blocking is not None:
        return Refusal(ErrorCode.ALREADY_ENCUMBERED, f"{invoice.invoice_id} is already financed")
    for pres_id in invoice.presentations:
        presentation = state.get("presentation", pres_id)
        if presentation.status not in _RETURNED_PRESENTATION_STATUSES:
            return Refusal(
                ErrorCode.ALREADY_ENCUMBERED,
                f"{invoice.invoice_id} is presented under a letter of credit ({pres_id})",
            )
    return None


def pledged_goods_refusal(
    state: LedgerState, declarations: list[Declaration], lender: str
) -> Refusal | None:
    """ALREADY_ENCUMBERED if an eBL naming one of the declarations is pledged to a bank other
    than `lender` (that bank holds the goods as security)."""
    for declaration in declarations:
        for ebl_id in declaration.ebl_ids:
            ebl = state.get("ebl", ebl_id)
            if ebl.locked_by == PLEDGE_LOCK and ebl.custodian != lender:
                return Refusal(
                    ErrorCode.ALREADY_ENCUMBERED,
                    f"the goods of {declaration.decl_id} are pledged ({ebl_id})",
                )
    return None


def holding_lenders(state: LedgerState, decl_id: str) -> list[str]:
    """The lenders whose ACTIVE or SETTLED encumbrances hold part of the declaration, sorted."""
    return sorted({enc.lender for enc in state.encumbrances_on(decl_id) if holding(enc)})


def blocking_encumbrance(state: LedgerState, fingerprint: bytes) -> Encumbrance | None:
    """The ACTIVE or SETTLED encumbrance on this receivable, if any (there is at most one)."""
    for encumbrance in state.encumbrances_of(fingerprint):
        if holding(encumbrance):
            return encumbrance
    return None


def raise_over_financed_if_needed(
    state: LedgerState, declaration: Declaration, command_index: int, sequence: int
) -> Alert | None:
    """After customs changed the declaration's value: if it is now below what encumbrances
    hold, record an OVER_FINANCED alert for the lenders and FX_ADMIN and return it."""
    financed = encumbered_minor(state, declaration.decl_id)
    declared = declared_minor(declaration)
    if financed <= declared:
        return None
    alert = Alert(
        alert_id=ledger_id("ALERT", command_index),
        status="RAISED",
        code=ALERT_OVER_FINANCED,
        decl_id=declaration.decl_id,
        lenders=holding_lenders(state, declaration.decl_id),
        invoice_ids=[],
        currency=declaration.currency,
        financed_minor=financed,
        declared_minor=declared,
        sequence=sequence,
    )
    state.add(alert)
    return alert
