"""The ledger's invariants (docs/TRADE-DOMAIN.md), as a function returning what is broken.

Used by the stateful tests after every command and, when a `TradeLedger` is built with
`check_invariants=True`, asserted after every execution (a violation is our bug, not bad input).
"""

from __future__ import annotations

from .audit import AuditTrail, verify_chain
from .encumbrance_registry import declared_minor, encumbered_minor, holding
from .letters_of_credit import available_minor
from .model import LedgerState


def violations(state: LedgerState, audit: AuditTrail) -> list[str]:
    """Every invariant the state and trail break, one message each (empty when all hold).

    - I1 balances never negative: outstanding financing, LC availability, tax-record remainder,
      unpaid invoice amount;
    - I2 at most one ACTIVE or SETTLED encumbrance per fingerprint;
    - I3 financing on a declaration never above its declared value, unless customs lowered the
      value afterwards and an OVER_FINANCED alert records exactly that;
    - I4 one holder per eBL, who is an admitted participant; a custody lock names a custodian;
    - I5 the audit chain verifies.
    """
    problems: list[str] = []
    for financing in state.records("financing"):
        if not 0 <= financing.repaid_minor <= financing.disbursed_minor <= financing.amount_minor:
            problems.append(f"I1 financing {financing.fin_id} balances out of order")
    for lc in state.records("lc"):
        if available_minor(state, lc) < 0 or lc.drawn_minor < 0:
            problems.append(f"I1 LC {lc.lc_id} available below zero")
    for record in state.records("tax_record"):
        if not 0 <= record.used_minor <= record.amount_minor:
            problems.append(f"I1 tax record {record.record_id} used beyond its amount")
    for invoice in state.records("invoice"):
        if not 0 <= invoice.collected_minor <= invoice.amount_minor:
            problems.append(f"I1 invoice {invoice.invoice_id} collected beyond its amount")
    for fingerprint in sorted(state.encumbrances_by_fp):
        holders = [enc for enc in state.encumbrances_of(fingerprint) if holding(enc)]
        if len(holders) > 1:
            problems.append(f"I2 fingerprint {fingerprint.hex()[:16]} has {len(holders)} holders")
    alerts_by_decl: dict[str, list[int]] = {}
    for alert in state.records("alert"):
        alerts_by_decl.setdefault(alert.decl_id, []).append(alert.declared_minor)
    for decl in state.records("decl"):
        financed = encumbered_minor(state, decl.decl_id)
        declared = declared_minor(decl)
        if financed > declared and declared not in alerts_by_decl.get(decl.decl_id, []):
            problems.append(f"I3 declaration {decl.decl_id} financed {financed} > {declared}")
    for ebl in state.records("ebl"):
        if state.get("participant", ebl.holder) is None:
            problems.append(f"I4 eBL {ebl.ebl_id} held by unknown {ebl.holder}")
        if (ebl.locked_by is None) != (ebl.custodian is None):
            problems.append(f"I4 eBL {ebl.ebl_id} lock and custodian disagree")
        if ebl.chain and ebl.chain[-1]["to"] != ebl.holder:
            problems.append(f"I4 eBL {ebl.ebl_id} chain does not end at its holder")
    broken = verify_chain(audit.events, audit.genesis)
    if broken is not None:
        problems.append(f"I5 audit chain breaks at event {broken}")
    return problems
