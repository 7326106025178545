"""The ledger's invariants (docs/TRADE-DOMAIN.md), checked independently of the implementation.

Two oracles, neither of which calls the handlers' helpers (`encumbrance_registry`,
`letters_of_credit`), so that a bug in a helper cannot hide from both the ledger and its check:

- `violations(state, audit)`: I1-I5 recomputed from the raw records with rules restated here.
  Used by the stateful tests after every command and, when a `TradeLedger` is built with
  `check_invariants=True`, asserted after every execution (a violation is our bug, not bad
  input).
- `HistoryOracle`: a reference model of the declarations' financeable balances fed with the
  command history (each operation and its audit event). It recomputes every balance from what
  was accepted and checks each `fin.approve` against it: approved beyond the recomputed balance,
  or refused EXCEEDS_FINANCEABLE_BALANCE within it, is a violation; so is an encumbrance whose
  allocations differ from the recomputed ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .audit import AuditEvent, AuditTrail, verify_chain
from .commands import (
    DeclApproveAmendment,
    DeclCancel,
    DeclConfirmExit,
    DeclLodge,
    DeclReject,
    DeclRelease,
    FinApprove,
    FinClose,
    FinRequest,
    InvRegister,
    RcvRecordCollection,
    decode_operation,
)
from .model import LedgerState

#: Restated rules (docs/TRADE-DOMAIN.md; tradeapp/README.md "Rules the ledger decides").
_HOLDING = ("ACTIVE", "SETTLED")
_VALUELESS_DECLARATIONS = ("CANCELLED", "REJECTED")
_FINANCEABLE_DECLARATIONS = ("RELEASED", "CLEARED")
_RESERVING_PRESENTATIONS = ("PRESENTED", "COMPLYING", "REFUSED", "WAIVED")


def _declared(status: str, value: int) -> int:
    return 0 if status in _VALUELESS_DECLARATIONS else value


def violations(state: LedgerState, audit: AuditTrail) -> list[str]:
    """Every invariant the state and trail break, one message each (empty when all hold).

    - I1 balances never negative: outstanding financing, LC availability, tax-record remainder,
      unpaid invoice amount;
    - I2 at most one ACTIVE or SETTLED encumbrance per fingerprint, and none on an invoice
      attached to a presentation that has not been returned (the LC pays it);
    - I3 financing on a declaration never above its declared value, unless customs lowered the
      value afterwards and an OVER_FINANCED alert records exactly that; an encumbrance's
      allocations add up to its financing's amount;
    - I4 one holder per eBL, who is an admitted participant; a custody lock names a custodian;
    - I5 the audit chain verifies.
    """
    problems: list[str] = []
    tables = state.tables
    for financing in tables["financing"].values():
        if not 0 <= financing.repaid_minor <= financing.disbursed_minor <= financing.amount_minor:
            problems.append(f"I1 financing {financing.fin_id} balances out of order")
    for lc in tables["lc"].values():
        reserved = sum(
            tables["presentation"][p].amount_minor
            for p in lc.presentations
            if tables["presentation"][p].status in _RESERVING_PRESENTATIONS
        )
        if lc.drawn_minor < 0 or lc.terms["amount_minor"] - lc.drawn_minor - reserved < 0:
            problems.append(f"I1 LC {lc.lc_id} available below zero")
    for record in tables["tax_record"].values():
        if not 0 <= record.used_minor <= record.amount_minor:
            problems.append(f"I1 tax record {record.record_id} used beyond its amount")
    for invoice in tables["invoice"].values():
        if not 0 <= invoice.collected_minor <= invoice.amount_minor:
            problems.append(f"I1 invoice {invoice.invoice_id} collected beyond its amount")
    holders: dict[bytes, int] = {}
    financed: dict[str, int] = {}
    for encumbrance in tables["encumbrance"].values():
        financing = tables["financing"][encumbrance.fin_id]
        if sum(encumbrance.allocations.values()) != financing.amount_minor:
            problems.append(f"I3 encumbrance {encumbrance.enc_id} allocations != its financing")
        if encumbrance.status not in _HOLDING:
            continue
        holders[encumbrance.fingerprint] = holders.get(encumbrance.fingerprint, 0) + 1
        for decl_id, amount in encumbrance.allocations.items():
            financed[decl_id] = financed.get(decl_id, 0) + amount
    for fingerprint in sorted(holders):
        if holders[fingerprint] > 1:
            problems.append(
                f"I2 fingerprint {fingerprint.hex()[:16]} has {holders[fingerprint]} holders"
            )
    for invoice in tables["invoice"].values():
        presented = [
            p for p in invoice.presentations if tables["presentation"][p].status != "RETURNED"
        ]
        if presented and invoice.fingerprint in holders:
            problems.append(f"I2 invoice {invoice.invoice_id} financed and presented")
    lowered_to = {
        (alert.decl_id, alert.declared_minor)
        for alert in tables["alert"].values()
        if alert.code == "OVER_FINANCED"
    }
    for decl_id in sorted(financed):
        decl = tables["decl"][decl_id]
        declared = _declared(decl.status, decl.declared_value_minor)
        if financed[decl_id] > declared and (decl_id, declared) not in lowered_to:
            problems.append(f"I3 declaration {decl_id} financed {financed[decl_id]} > {declared}")
    for ebl in tables["ebl"].values():
        if ebl.holder not in tables["participant"]:
            problems.append(f"I4 eBL {ebl.ebl_id} held by unknown {ebl.holder}")
        if (ebl.locked_by is None) != (ebl.custodian is None):
            problems.append(f"I4 eBL {ebl.ebl_id} lock and custodian disagree")
        if ebl.chain and ebl.chain[-1]["to"] != ebl.holder:
            problems.append(f"I4 eBL {ebl.ebl_id} chain does not end at its holder")
    broken = verify_chain(audit.events, audit.genesis)
    if broken is not None:
        problems.append(f"I5 audit chain breaks at event {broken}")
    return sorted(problems)


# --- The history oracle ------------------------------------------------------------------------


@dataclass
class _Decl:
    value: int
    status: str = "LODGED"


@dataclass
class _Fin:
    invoice_id: str
    decl_ids: list[str]
    amount: int
    approved: bool = False
    closed: bool = False
    settled: bool = False
    alloc: dict[str, int] = field(default_factory=dict)
    paid: dict[str, int] = field(default_factory=dict)

    @property
    def holding(self) -> bool:
        return self.approved and (not self.closed or self.settled)


class HistoryOracle:
    """A reference model of financeable balances, fed one executed command at a time.

    The rules, restated: a declaration can back financing once RELEASED or CLEARED; its balance
    is its declared value (0 once CANCELLED or REJECTED) less, per approved financing drawing on
    it, the larger of the amount drawn and the buyer's payments attributed to it while the
    financing holds the receivable, the payments alone once it is closed unpaid. A financing
    holds from approval until closed, and after closing if the buyer paid in full before. An
    approval draws on the declarations in the order the request listed them. A payment is
    attributed to the receivable's latest approved financing's declarations, in listed order,
    each up to its declared value; a collection accepted again under an id already recorded is
    a replay and pays nothing.
    """

    def __init__(self) -> None:
        self.decls: dict[str, _Decl] = {}
        self.invoices: dict[str, list[int]] = {}  # id -> [amount, collected]
        self.fins: dict[str, _Fin] = {}
        self.approved_of: dict[str, list[str]] = {}  # invoice id -> approved fin ids, in order
        self.lowered: set[tuple[str, int]] = set()  # (decl, value) lowered below its financing
        self.collection_ids: set[str] = set()  # a resubmitted id is a replay, not a new payment
        self.observed = 0

    def balance(self, decl_id: str) -> int:
        """What the declaration can still back, by the restated rules."""
        decl = self.decls[decl_id]
        if decl.status not in _FINANCEABLE_DECLARATIONS:
            return 0
        return max(0, _declared(decl.status, decl.value) - self._consumed(decl_id))

    def _consumed(self, decl_id: str) -> int:
        total = 0
        for fin in self.fins.values():
            if decl_id in fin.alloc:
                paid = fin.paid.get(decl_id, 0)
                total += max(fin.alloc[decl_id], paid) if fin.holding else paid
        return total

    def _financed(self, decl_id: str) -> int:
        return sum(f.alloc.get(decl_id, 0) for f in self.fins.values() if f.holding)

    def observe(self, operation: bytes, event: AuditEvent, state: LedgerState) -> list[str]:
        """Take one executed command (its bytes and its audit event); return what is wrong with
        the ledger's decision or state by the restated rules."""
        self.observed += 1
        op = decode_operation(operation).operation
        ok = event.outcome == "OK"
        if op is None:
            return []
        problems: list[str] = []
        if isinstance(op, FinApprove) and op.fin_id in self.fins:
            problems += self._approval(op, event.outcome, state)
        elif ok:
            self._apply(op)
        problems += self._state_problems()
        return [f"history #{self.observed - 1}: {p}" for p in problems]

    def _approval(self, op: FinApprove, outcome: str, state: LedgerState) -> list[str]:
        fin = self.fins[op.fin_id]
        if fin.approved or not all(d in self.decls for d in fin.decl_ids):
            return []
        balances = [self.balance(d) for d in fin.decl_ids]
        if outcome == "EXCEEDS_FINANCEABLE_BALANCE" and fin.amount <= sum(balances):
            return [f"{op.fin_id} refused although {fin.amount} <= balance {sum(balances)}"]
        if outcome != "OK":
            return []
        if fin.amount > sum(balances):
            return [f"{op.fin_id} approved {fin.amount} beyond balance {sum(balances)}"]
        remaining = fin.amount
        for decl_id, balance in zip(fin.decl_ids, balances, strict=True):
            share = min(balance, remaining)
            if share > 0:
                fin.alloc[decl_id] = share
                remaining -= share
        fin.approved = True
        self.approved_of.setdefault(fin.invoice_id, []).append(op.fin_id)
        record = state.get("financing", op.fin_id)
        encumbrance = state.get("encumbrance", record.enc_id) if record is not None else None
        if encumbrance is None or encumbrance.allocations != fin.alloc:
            found = None if encumbrance is None else encumbrance.allocations
            return [f"{op.fin_id} allocations {found} != recomputed {fin.alloc}"]
        return []

    def _apply(self, op: object) -> None:
        match op:
            case DeclLodge():
                self.decls[op.decl_id] = _Decl(op.declared_value_minor)
            case DeclRelease() | DeclConfirmExit() | DeclReject() | DeclCancel():
                status = {
                    DeclRelease: "RELEASED",
                    DeclConfirmExit: "CLEARED",
                    DeclReject: "REJECTED",
                    DeclCancel: "CANCELLED",
                }[type(op)]
                self._revalue(op.decl_id, status, self.decls[op.decl_id].value)
            case DeclApproveAmendment():
                decl = self.decls[op.decl_id]
                self._revalue(op.decl_id, decl.status, op.declared_value_minor)
            case InvRegister():
                self.invoices[op.invoice_id] = [op.amount_minor, 0]
            case FinRequest():
                self.fins[op.fin_id] = _Fin(op.invoice_id, list(op.decl_ids), op.amount_minor)
            case FinClose() if op.fin_id in self.fins:
                self.fins[op.fin_id].closed = True
            case RcvRecordCollection() if op.collection_id not in self.collection_ids:
                self.collection_ids.add(op.collection_id)
                if op.invoice_id in self.invoices:
                    self._collect(op.invoice_id, op.amount_minor)

    def _revalue(self, decl_id: str, status: str, value: int) -> None:
        decl = self.decls[decl_id]
        decl.status, decl.value = status, value
        declared = _declared(status, value)
        if self._financed(decl_id) > declared:
            self.lowered.add((decl_id, declared))

    def _collect(self, invoice_id: str, amount: int) -> None:
        invoice = self.invoices[invoice_id]
        invoice[1] += amount
        approved = self.approved_of.get(invoice_id, [])
        if not approved:
            return
        fin = self.fins[approved[-1]]
        remaining = amount
        for decl_id in fin.decl_ids:
            if decl_id not in fin.alloc or remaining == 0:
                continue
            decl = self.decls[decl_id]
            room = _declared(decl.status, decl.value) - fin.paid.get(decl_id, 0)
            share = max(0, min(room, remaining))
            fin.paid[decl_id] = fin.paid.get(decl_id, 0) + share
            remaining -= share
        if invoice[1] == invoice[0] and fin.approved and not fin.closed:
            fin.settled = True

    def _state_problems(self) -> list[str]:
        problems = []
        for invoice_id in sorted(self.invoices):
            amount, collected = self.invoices[invoice_id]
            if not 0 <= collected <= amount:
                problems.append(f"invoice {invoice_id} collected {collected} of {amount}")
            holding = [f for f in self.approved_of.get(invoice_id, []) if self.fins[f].holding]
            if len(holding) > 1:
                problems.append(f"invoice {invoice_id} held by {holding}")
        for decl_id in sorted(self.decls):
            decl = self.decls[decl_id]
            declared = _declared(decl.status, decl.value)
            financed = self._financed(decl_id)
            if financed > declared and (decl_id, declared) not in self.lowered:
                problems.append(f"declaration {decl_id} finances {financed} > {declared}")
        return problems


def history_violations(
    operations: list[bytes], events: tuple[AuditEvent, ...] | list[AuditEvent], state: LedgerState
) -> list[str]:
    """Replay a whole command history (operation bytes and their audit events, in order)
    through a fresh `HistoryOracle`; every problem it finds."""
    if len(operations) != len(events):
        return [f"history has {len(operations)} operations but {len(events)} audit events"]
    oracle = HistoryOracle()
    problems: list[str] = []
    for operation, event in zip(operations, events, strict=True):
        problems += oracle.observe(operation, event, state)
    return problems
