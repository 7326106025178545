"""The encumbrance registry: what rests on each receivable and each declaration.

An encumbrance is ACTIVE while its financing is outstanding, SETTLED once the buyer has paid the
receivable, RELEASED when the financing closes without a collection. ACTIVE and SETTLED ones
*hold* their receivable and their declaration amounts: a paid receivable, and the goods paid
for with it, cannot back new credit (RECEIVABLE_SETTLED); a RELEASED one holds nothing.
"""

from __future__ import annotations

from .model import ALERT_OVER_FINANCED, Alert, Declaration, Encumbrance, LedgerState, ledger_id

HOLDING_STATUSES = ("ACTIVE", "SETTLED")
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


def financeable_balance_minor(state: LedgerState, declaration: Declaration) -> int:
    """Declared value minus what encumbrances hold, never below zero (an amendment below the
    financed amount raises OVER_FINANCED instead of a negative balance)."""
    return max(0, declared_minor(declaration) - encumbered_minor(state, declaration.decl_id))


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
        currency=declaration.currency,
        financed_minor=financed,
        declared_minor=declared,
        sequence=sequence,
    )
    state.add(alert)
    return alert
