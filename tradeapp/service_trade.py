"""Service-trade payments: the tax authority records a filing, the payer's banks record outward
payments against it, never beyond the recorded amount."""

from __future__ import annotations

from .commands import PayServiceOutward, TaxRegisterRecord
from .errors import ErrorCode
from .model import Payment, Role, TaxRecord
from .step import (
    Done,
    Handler,
    Outcome,
    Refusal,
    Step,
    counterparty_refusal,
    handles,
    money_refusal,
    touched,
)

HANDLERS: dict[str, Handler] = {}


@handles(HANDLERS, TaxRegisterRecord)
def register_record(step: Step, op: TaxRegisterRecord) -> Outcome:
    refusal = counterparty_refusal(step.state, op.payer, [Role.TRADER], "payer")
    refusal = refusal or money_refusal(op.currency, op.amount_minor)
    if refusal is not None:
        return refusal
    step.state.add(
        TaxRecord(
            record_id=op.record_id,
            status="ACTIVE",
            tax_authority=step.actor.participant_id,
            payer=op.payer,
            payee=op.payee,
            currency=op.currency,
            amount_minor=op.amount_minor,
            used_minor=0,
            contract_ref=op.contract_ref,
            paying_banks=[],
            payments=[],
        )
    )
    return Done({"record_id": op.record_id, "remaining_minor": op.amount_minor})


@handles(HANDLERS, PayServiceOutward)
def pay_outward(step: Step, op: PayServiceOutward) -> Outcome:
    if (refusal := money_refusal(op.currency, op.amount_minor)) is not None:
        return refusal
    record: TaxRecord | None = step.state.get("tax_record", op.record_id)
    if record is None:
        return Refusal(ErrorCode.UNKNOWN_DOCUMENT, f"no tax record {op.record_id}")
    if op.payer != record.payer or op.payee != record.payee:
        return Refusal(ErrorCode.PAYEE_MISMATCH, "payer and payee must be the record's")
    if op.currency != record.currency:
        return Refusal(ErrorCode.CURRENCY_MISMATCH, f"the record is in {record.currency}")
    remaining = record.amount_minor - record.used_minor
    if op.amount_minor > remaining:
        return Refusal(ErrorCode.EXCEEDS_RECORD, f"only {remaining} remains on {op.record_id}")
    bank = step.actor.participant_id
    step.state.add(
        Payment(
            payment_id=op.payment_id,
            status="RECORDED",
            record_id=op.record_id,
            bank=bank,
            payer=op.payer,
            payee=op.payee,
            currency=op.currency,
            amount_minor=op.amount_minor,
            sequence=step.context.sequence,
        )
    )
    record.used_minor += op.amount_minor
    record.paying_banks = sorted({*record.paying_banks, bank})
    record.payments = [*record.payments, op.payment_id]
    value = {"payment_id": op.payment_id, "remaining_minor": remaining - op.amount_minor}
    return Done(value, objects=touched(("tax_record", op.record_id)))
