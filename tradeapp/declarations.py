"""Export goods declarations: lodged by the exporter, accepted, released, cleared, amended or
cancelled by the customs office named on them."""

from __future__ import annotations

from .commands import (
    DeclAccept,
    DeclApproveAmendment,
    DeclCancel,
    DeclConfirmExit,
    DeclLodge,
    DeclReject,
    DeclRelease,
)
from .encumbrance_registry import raise_over_financed_if_needed
from .fingerprint import resolve_buyer
from .model import Declaration, Role
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
)

HANDLERS: dict[str, Handler] = {}


@handles(HANDLERS, DeclLodge)
def lodge(step: Step, op: DeclLodge) -> Outcome:
    refusal = counterparty_refusal(step.state, op.customs, [Role.CUSTOMS], "customs")
    refusal = refusal or money_refusal(op.currency, op.declared_value_minor)
    if refusal is not None:
        return refusal
    buyer_key = resolve_buyer(step.state, op.buyer, op.buyer_country)
    if isinstance(buyer_key, Refusal):
        return buyer_key
    step.state.add(
        Declaration(
            decl_id=op.decl_id,
            status="LODGED",
            exporter=step.actor.participant_id,
            customs=op.customs,
            buyer=op.buyer,
            buyer_key=buyer_key,
            goods_description=op.goods_description,
            hs_code=op.hs_code,
            currency=op.currency,
            declared_value_minor=op.declared_value_minor,
            lodged_ms=step.now_ms,
            ebl_ids=[],
        )
    )
    return Done({"decl_id": op.decl_id, "status": "LODGED"})


def _decided(step: Step, op: DeclAccept | DeclReject | DeclRelease | DeclConfirmExit) -> Outcome:
    return Done({"decl_id": op.decl_id, "status": step.transition.to[0]})


for _command in (DeclAccept, DeclReject, DeclRelease, DeclConfirmExit):
    handles(HANDLERS, _command)(_decided)


@handles(HANDLERS, DeclApproveAmendment)
def approve_amendment(step: Step, op: DeclApproveAmendment) -> Outcome:
    if (refusal := amount_refusal(op.declared_value_minor)) is not None:
        return refusal
    declaration: Declaration = step.record
    declaration.declared_value_minor = op.declared_value_minor
    return _with_alert(step, declaration, {"declared_value_minor": op.declared_value_minor})


@handles(HANDLERS, DeclCancel)
def cancel(step: Step, op: DeclCancel) -> Outcome:
    declaration: Declaration = step.record
    declaration.status = "CANCELLED"  # the alert check reads the new status
    return _with_alert(step, declaration, {})


def _with_alert(step: Step, declaration: Declaration, value: dict) -> Done:
    alert = raise_over_financed_if_needed(
        step.state, declaration, step.index, step.context.sequence
    )
    result = {"decl_id": declaration.decl_id, "status": declaration.status, **value}
    if alert is None:
        return Done(result)
    result["alert"] = {"alert_id": alert.alert_id, "code": alert.code}
    return Done(result, objects=(record_ref(alert),))
