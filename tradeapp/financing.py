"""Receivables and their financing: invoice registration with fingerprints, the one-command
approval that creates the encumbrance, disbursement, repayment, collection, close."""

from __future__ import annotations

from .commands import (
    FinApprove,
    FinClose,
    FinDisburse,
    FinReject,
    FinRepay,
    FinRequest,
    InvRegister,
    RcvRecordCollection,
)
from .banking_calendar import parse_date
from .encumbrance_registry import (
    FINANCEABLE_DECLARATION_STATUSES,
    attribute_collection,
    blocking_encumbrance,
    financeable_balance_minor,
    pledged_goods_refusal,
    receivable_refusal,
)
from .errors import ErrorCode
from .fingerprint import (
    enterprise_key,
    invoice_fingerprint,
    normalise_invoice_number,
    resolve_buyer,
)
from .model import (
    ALERT_SIMILAR_RECEIVABLE,
    BUYER_MISMATCH_REASONS,
    Alert,
    Collection,
    Declaration,
    Encumbrance,
    Financing,
    Invoice,
    LedgerState,
    Repayment,
    Role,
    ledger_id,
)
from .step import (
    Done,
    Handler,
    Outcome,
    Refusal,
    Step,
    amount_refusal,
    counterparty_refusal,
    handles,
    money_refusal,
    record_ref,
    touched,
)

HANDLERS: dict[str, Handler] = {}
#: Pricing bound: 100 % a year is 10,000 basis points; anything above is a keying error.
RATE_BP_MAX = 10_000
#: SIMILAR_RECEIVABLE: amounts within this many per mille of the larger (and at least one minor
#: unit) and issue dates at most this many days apart count as near.
SIMILAR_AMOUNT_PERMILLE = 10
SIMILAR_DAYS = 3
#: At most this many earlier receivables are named in one SIMILAR_RECEIVABLE alert.
SIMILAR_NAMED_MAX = 16


def is_similar(new: Invoice, old: Invoice) -> bool:
    """Near match of two receivables of the same seller, buyer and currency (tradeapp/README.md,
    "Rules the ledger decides"): the same folded invoice number, or amounts within
    max(1 minor unit, 1 %) and issue dates at most SIMILAR_DAYS days apart."""
    if normalise_invoice_number(new.invoice_no) == normalise_invoice_number(old.invoice_no):
        return True
    larger = max(new.amount_minor, old.amount_minor)
    amount_near = abs(new.amount_minor - old.amount_minor) <= max(
        1, larger * SIMILAR_AMOUNT_PERMILLE // 1000
    )
    days_apart = abs(parse_date(new.issue_date) - parse_date(old.issue_date))
    return amount_near and days_apart <= SIMILAR_DAYS


def _similar_alert(step: Step, invoice: Invoice) -> Alert | None:
    state: LedgerState = step.state
    near = [
        old
        for old in state.invoices_between(invoice.seller, invoice.buyer_key, invoice.currency)
        if old.invoice_id != invoice.invoice_id and is_similar(invoice, old)
    ]
    if not near:
        return None
    # The closest first: the same number, then the smallest differences of amount and date.
    number = normalise_invoice_number(invoice.invoice_no)
    day = parse_date(invoice.issue_date)
    near.sort(
        key=lambda old: (
            normalise_invoice_number(old.invoice_no) != number,
            abs(old.amount_minor - invoice.amount_minor),
            abs(parse_date(old.issue_date) - day),
            old.invoice_id,
        )
    )
    earlier = [old.invoice_id for old in near[:SIMILAR_NAMED_MAX]]
    sponsor = step.actor.sponsor
    alert = Alert(
        alert_id=ledger_id("ALERT", step.index),
        status="RAISED",
        code=ALERT_SIMILAR_RECEIVABLE,
        decl_id="",
        lenders=[sponsor] if sponsor is not None else [],
        invoice_ids=[invoice.invoice_id, *earlier],
        currency=invoice.currency,
        financed_minor=0,
        declared_minor=0,
        sequence=step.context.sequence,
    )
    state.add(alert)
    return alert


@handles(HANDLERS, InvRegister)
def register_invoice(step: Step, op: InvRegister) -> Outcome:
    """Refuses MALFORMED an invoice number with no letter or digit of any script, and a buyer
    that cannot be identified (`fingerprint.resolve_buyer`); DUPLICATE_INVOICE a receivable
    already registered. A near match of an earlier receivable is accepted with a
    SIMILAR_RECEIVABLE alert."""
    if (refusal := money_refusal(op.currency, op.amount_minor)) is not None:
        return refusal
    if not normalise_invoice_number(op.invoice_no):
        return Refusal(ErrorCode.MALFORMED, "the invoice number has no letter or digit")
    buyer_key = resolve_buyer(step.state, op.buyer, op.buyer_country)
    if isinstance(buyer_key, Refusal):
        return buyer_key
    fingerprint = invoice_fingerprint(
        seller_key=enterprise_key(step.actor.tax_id, step.actor.country),
        buyer_key=buyer_key,
        invoice_no=op.invoice_no,
        currency=op.currency,
        amount_minor=op.amount_minor,
        issue_date=op.issue_date,
    )
    original = step.state.invoice_by_fingerprint.get(fingerprint)
    if original is not None:
        return Refusal(ErrorCode.DUPLICATE_INVOICE, f"same receivable as {original}")
    invoice = Invoice(
        invoice_id=op.invoice_id,
        status="REGISTERED",
        seller=step.actor.participant_id,
        buyer=op.buyer,
        buyer_key=buyer_key,
        invoice_no=op.invoice_no,
        currency=op.currency,
        amount_minor=op.amount_minor,
        issue_date=op.issue_date,
        fingerprint=fingerprint,
        collected_minor=0,
        presentations=[],
    )
    step.state.add(invoice)
    value = {"invoice_id": op.invoice_id, "fingerprint": fingerprint}
    alert = _similar_alert(step, invoice)
    if alert is None:
        return Done(value)
    value["alert"] = {"alert_id": alert.alert_id, "code": alert.code}
    return Done(value, objects=(record_ref(alert),))


@handles(HANDLERS, RcvRecordCollection)
def record_collection(step: Step, op: RcvRecordCollection) -> Outcome:
    invoice: Invoice = step.record
    if (refusal := amount_refusal(op.amount_minor)) is not None:
        return refusal
    encumbrance = blocking_encumbrance(step.state, invoice.fingerprint)
    if encumbrance is not None:
        collecting_bank = encumbrance.lender
    else:
        seller = step.state.get("participant", invoice.seller)
        collecting_bank = seller.sponsor
    if step.actor.participant_id != collecting_bank:
        return Refusal(
            ErrorCode.UNAUTHORIZED,
            "only the lender of the receivable (or the seller's bank) records its collection",
        )
    if invoice.collected_minor + op.amount_minor > invoice.amount_minor:
        return Refusal(ErrorCode.EXCEEDS_INVOICE, "collections would exceed the invoice amount")
    invoice.collected_minor += op.amount_minor
    step.state.add(
        Collection(
            collection_id=op.collection_id, status="RECORDED", invoice_id=invoice.invoice_id,
            bank=collecting_bank, amount_minor=op.amount_minor, sequence=step.context.sequence,
        )
    )  # fmt: skip
    status = "SETTLED" if invoice.collected_minor == invoice.amount_minor else "REGISTERED"
    # Paid goods back nothing new: the declarations carrying them lose what was paid.
    changed = attribute_collection(step.state, invoice, op.amount_minor)
    if status == "SETTLED" and encumbrance is not None:
        encumbrance.status = "SETTLED"
        changed = sorted({*changed, encumbrance.enc_id})
    objects = touched(*(("encumbrance", enc_id) for enc_id in changed))
    value = {
        "invoice_id": invoice.invoice_id,
        "status": status,
        "collected_minor": invoice.collected_minor,
        "collection_id": op.collection_id,
        "replayed": False,
    }
    return Done(value, status=status, objects=objects)


@handles(HANDLERS, FinRequest)
def request(step: Step, op: FinRequest) -> Outcome:
    refusal = counterparty_refusal(step.state, op.lender, [Role.BANK], "lender")
    refusal = refusal or money_refusal(op.currency, op.amount_minor)
    if refusal is not None:
        return refusal
    me = step.actor.participant_id
    invoice: Invoice | None = step.state.get("invoice", op.invoice_id)
    if invoice is None:
        return Refusal(ErrorCode.UNKNOWN_DOCUMENT, f"no invoice {op.invoice_id}")
    if invoice.seller != me:
        return Refusal(ErrorCode.NOT_DOCUMENT_OWNER, f"{op.invoice_id} is not {me}'s invoice")
    reason = op.buyer_mismatch_reason
    if reason is not None and reason not in BUYER_MISMATCH_REASONS:
        return Refusal(
            ErrorCode.MALFORMED, f"buyer_mismatch_reason must be one of {BUYER_MISMATCH_REASONS}"
        )
    for decl_id in op.decl_ids:
        declaration: Declaration | None = step.state.get("decl", decl_id)
        if declaration is None:
            return Refusal(ErrorCode.UNKNOWN_DOCUMENT, f"no declaration {decl_id}")
        if declaration.exporter != me:
            return Refusal(ErrorCode.NOT_DOCUMENT_OWNER, f"{decl_id} is not {me}'s declaration")
        if declaration.buyer_key != invoice.buyer_key and reason is None:
            return Refusal(
                ErrorCode.BUYER_MISMATCH,
                f"{decl_id}'s consignee is not {op.invoice_id}'s buyer: give buyer_mismatch_reason",
            )
    step.state.add(
        Financing(
            fin_id=op.fin_id,
            status="REQUESTED",
            applicant=me,
            lender=op.lender,
            invoice_id=op.invoice_id,
            decl_ids=list(op.decl_ids),
            currency=op.currency,
            amount_minor=op.amount_minor,
            rate_bp=None,
            enc_id=None,
            disbursed_minor=0,
            repaid_minor=0,
            requested_ms=step.now_ms,
            decided_ms=None,
            reject_reason=None,
            buyer_mismatch_reason=reason,
        )
    )
    return Done({"fin_id": op.fin_id, "status": "REQUESTED"})


@handles(HANDLERS, FinApprove)
def approve(step: Step, op: FinApprove) -> Outcome:
    """Every check of docs/TRADE-DOMAIN.md in one command, then the encumbrance: executed in
    sequence order, two approvals racing for one receivable cannot both pass."""
    if not 0 <= op.rate_bp <= RATE_BP_MAX:
        return Refusal(ErrorCode.MALFORMED, f"rate_bp must be within 0..{RATE_BP_MAX}")
    financing: Financing = step.record
    if (refusal := _applicant_refusal(step, financing)) is not None:
        return refusal
    state = step.state
    invoice: Invoice = state.get("invoice", financing.invoice_id)
    declarations: list[Declaration] = [state.get("decl", d) for d in financing.decl_ids]
    for declaration in declarations:
        if declaration.status not in FINANCEABLE_DECLARATION_STATUSES:
            return Refusal(
                ErrorCode.DOC_NOT_RELEASED, f"{declaration.decl_id} is {declaration.status}"
            )
    currencies = {financing.currency, invoice.currency, *(d.currency for d in declarations)}
    if len(currencies) != 1:
        return Refusal(ErrorCode.CURRENCY_MISMATCH, f"currencies {sorted(currencies)} differ")
    refusal = receivable_refusal(state, invoice)
    refusal = refusal or pledged_goods_refusal(state, declarations, financing.lender)
    if refusal is not None:
        return refusal
    balances = [financeable_balance_minor(state, d) for d in declarations]
    if financing.amount_minor > sum(balances):
        return Refusal(
            ErrorCode.EXCEEDS_FINANCEABLE_BALANCE,
            f"{financing.amount_minor} exceeds the declarations' balance {sum(balances)}",
        )
    if financing.amount_minor > invoice.amount_minor - invoice.collected_minor:
        return Refusal(ErrorCode.EXCEEDS_INVOICE, "amount exceeds the unpaid invoice amount")
    allocations: dict[str, int] = {}
    remaining = financing.amount_minor
    for declaration, balance in zip(declarations, balances, strict=True):
        share = min(balance, remaining)
        if share > 0:
            allocations[declaration.decl_id] = share
            remaining -= share
    assert remaining == 0
    encumbrance = Encumbrance(
        enc_id=ledger_id("ENC", step.index),
        status="ACTIVE",
        fingerprint=invoice.fingerprint,
        invoice_id=invoice.invoice_id,
        fin_id=financing.fin_id,
        lender=financing.lender,
        currency=financing.currency,
        amount_minor=financing.amount_minor,
        allocations=allocations,
        paid={},
    )
    state.add(encumbrance)
    financing.enc_id = encumbrance.enc_id
    financing.rate_bp = op.rate_bp
    financing.decided_ms = step.now_ms
    value = {"fin_id": financing.fin_id, "status": "APPROVED", "enc_id": encumbrance.enc_id}
    return Done(value, objects=touched(("encumbrance", encumbrance.enc_id)))


@handles(HANDLERS, FinReject)
def reject(step: Step, op: FinReject) -> Outcome:
    financing: Financing = step.record
    financing.decided_ms = step.now_ms
    financing.reject_reason = op.reason
    return Done({"fin_id": financing.fin_id, "status": "REJECTED"})


def _applicant_refusal(step: Step, financing: Financing) -> Refusal | None:
    """INVALID_PARTY once the applicant is suspended: its financing requests made before the
    suspension are no longer approved or paid out (repayments and collections, money coming
    back, still are)."""
    return counterparty_refusal(step.state, financing.applicant, [Role.TRADER], "applicant")


@handles(HANDLERS, FinDisburse)
def disburse(step: Step, op: FinDisburse) -> Outcome:
    financing: Financing = step.record
    if (refusal := _applicant_refusal(step, financing)) is not None:
        return refusal
    financing.disbursed_minor = financing.amount_minor
    return Done({"fin_id": financing.fin_id, "status": "DISBURSED"})


@handles(HANDLERS, FinRepay)
def repay(step: Step, op: FinRepay) -> Outcome:
    financing: Financing = step.record
    if (refusal := amount_refusal(op.amount_minor)) is not None:
        return refusal
    outstanding = financing.disbursed_minor - financing.repaid_minor
    if op.amount_minor > outstanding:
        return Refusal(ErrorCode.EXCEEDS_OUTSTANDING, f"only {outstanding} is outstanding")
    financing.repaid_minor += op.amount_minor
    step.state.add(
        Repayment(
            repayment_id=op.repayment_id, status="RECORDED", fin_id=financing.fin_id,
            lender=financing.lender, amount_minor=op.amount_minor, sequence=step.context.sequence,
        )
    )  # fmt: skip
    status = "REPAID" if financing.repaid_minor == financing.disbursed_minor else "DISBURSED"
    value = {
        "fin_id": financing.fin_id,
        "status": status,
        "outstanding_minor": outstanding - op.amount_minor,
        "repayment_id": op.repayment_id,
        "replayed": False,
    }
    return Done(value, status=status)


@handles(HANDLERS, FinClose)
def close(step: Step, op: FinClose) -> Outcome:
    financing: Financing = step.record
    objects: tuple[str, ...] = ()
    if financing.enc_id is not None:
        encumbrance: Encumbrance = step.state.get("encumbrance", financing.enc_id)
        if encumbrance.status == "ACTIVE":
            encumbrance.status = "RELEASED"
        objects = touched(("encumbrance", encumbrance.enc_id))
    return Done({"fin_id": financing.fin_id, "status": "CLOSED"}, objects=objects)
