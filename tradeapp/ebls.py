"""Electronic bills of lading: issued by a carrier, one holder at a time, custody-locked while
pledged or presented, surrendered to the carrier once.

The holder is a field of the eBL, never a separate list, so "exactly one holder" holds by
construction; `chain` records every change of holder for the parties and regulators.
"""

from __future__ import annotations

from .commands import (
    ID_CHARS_MAX,
    EblEndorse,
    EblIssue,
    EblPledge,
    EblReleasePledge,
    EblSurrenderAccept,
    EblSurrenderReject,
    EblSurrenderRequest,
    EblTransfer,
    EblVoid,
)
from .encumbrance_registry import PLEDGE_LOCK, holding
from .errors import ErrorCode
from .model import COMMERCIAL_ROLES, Declaration, Ebl, LedgerState, Role
from .step import Done, Handler, Outcome, Refusal, Step, counterparty_refusal, handles

HANDLERS: dict[str, Handler] = {}


def ebl_id_of(carrier: str, bl_no: str) -> str | None:
    """The id of carrier's bill `bl_no` ("<carrier>/<bl_no>"), or None if it would be too long."""
    ebl_id = f"{carrier}/{bl_no}"
    return ebl_id if len(ebl_id) <= ID_CHARS_MAX else None


def in_use_refusal(ebl: Ebl) -> Refusal | None:
    """DOC_IN_USE while a presentation or a pledge holds the eBL in custody."""
    if ebl.locked_by is None:
        return None
    return Refusal(ErrorCode.DOC_IN_USE, f"{ebl.ebl_id} is held in custody ({ebl.locked_by})")


def move_holder(ebl: Ebl, to: str, kind: str, sequence: int) -> None:
    """Make `to` the one holder, recording the move in the chain."""
    ebl.chain = [*ebl.chain, {"kind": kind, "from": ebl.holder, "to": to, "sequence": sequence}]
    ebl.holder = to


@handles(HANDLERS, EblIssue)
def issue(step: Step, op: EblIssue) -> Outcome:
    for participant_id, roles, what in (
        (op.shipper, [Role.TRADER], "shipper"),
        (op.consignee, COMMERCIAL_ROLES, "consignee"),
        (op.holder, COMMERCIAL_ROLES, "holder"),
    ):
        if (refusal := counterparty_refusal(step.state, participant_id, roles, what)) is not None:
            return refusal
    declaration: Declaration | None = None
    if op.decl_id is not None:
        declaration = step.state.get("decl", op.decl_id)
        if declaration is None:
            return Refusal(ErrorCode.UNKNOWN_DOCUMENT, f"no declaration {op.decl_id}")
        if declaration.exporter != op.shipper:
            return Refusal(
                ErrorCode.INVALID_PARTY, f"{op.decl_id} is not the shipper {op.shipper}'s"
            )
    carrier = step.actor.participant_id
    ebl_id = ebl_id_of(carrier, op.bl_no)
    assert ebl_id is not None  # the ledger checked the derived id before the handler
    step.state.add(
        Ebl(
            ebl_id=ebl_id,
            status="ISSUED",
            carrier=carrier,
            bl_no=op.bl_no,
            shipper=op.shipper,
            consignee=op.consignee,
            holder=op.holder,
            goods_description=op.goods_description,
            port_of_loading=op.port_of_loading,
            port_of_discharge=op.port_of_discharge,
            shipped_on_board_date=op.shipped_on_board_date,
            chain=[
                {
                    "kind": "issue",
                    "from": carrier,
                    "to": op.holder,
                    "sequence": step.context.sequence,
                }
            ],
            locked_by=None,
            custodian=None,
            surrender_answered=False,
            decl_id=op.decl_id,
        )
    )
    if declaration is not None:
        declaration.ebl_ids = [*declaration.ebl_ids, ebl_id]
    return Done(
        {"ebl_id": ebl_id, "status": "ISSUED", "holder": op.holder}, objects=(f"ebl:{ebl_id}",)
    )


def _pass_on(step: Step, ebl: Ebl, to: str, kind: str) -> Outcome:
    refusal = in_use_refusal(ebl) or counterparty_refusal(
        step.state, to, COMMERCIAL_ROLES, "new holder"
    )
    if refusal is not None:
        return refusal
    if to == ebl.holder:
        return Refusal(ErrorCode.INVALID_PARTY, f"{to} already holds {ebl.ebl_id}")
    move_holder(ebl, to, kind, step.context.sequence)
    return Done({"ebl_id": ebl.ebl_id, "holder": to})


@handles(HANDLERS, EblTransfer)
def transfer(step: Step, op: EblTransfer) -> Outcome:
    return _pass_on(step, step.record, op.to, "transfer")


@handles(HANDLERS, EblEndorse)
def endorse(step: Step, op: EblEndorse) -> Outcome:
    return _pass_on(step, step.record, op.endorsee, "endorse")


@handles(HANDLERS, EblPledge)
def pledge(step: Step, op: EblPledge) -> Outcome:
    ebl: Ebl = step.record
    refusal = in_use_refusal(ebl) or counterparty_refusal(
        step.state, op.bank, [Role.BANK], "pledgee"
    )
    refusal = refusal or _financed_elsewhere_refusal(step.state, ebl, op.bank)
    if refusal is not None:
        return refusal
    ebl.locked_by = PLEDGE_LOCK
    ebl.custodian = op.bank
    return Done({"ebl_id": ebl.ebl_id, "custodian": op.bank})


def _financed_elsewhere_refusal(state: LedgerState, ebl: Ebl, bank: str) -> Refusal | None:
    """ALREADY_ENCUMBERED if a financing by another bank rests on the declaration of the goods:
    the goods would secure two lenders."""
    if ebl.decl_id is None:
        return None
    for encumbrance in state.encumbrances_on(ebl.decl_id):
        if holding(encumbrance) and encumbrance.lender != bank:
            return Refusal(
                ErrorCode.ALREADY_ENCUMBERED, f"the goods of {ebl.decl_id} are already financed"
            )
    return None


@handles(HANDLERS, EblReleasePledge)
def release_pledge(step: Step, op: EblReleasePledge) -> Outcome:
    ebl: Ebl = step.record
    if ebl.locked_by != PLEDGE_LOCK:
        return Refusal(
            ErrorCode.DOC_IN_USE, f"{ebl.ebl_id} is held by {ebl.locked_by}, not a pledge"
        )
    ebl.locked_by = None
    ebl.custodian = None
    return Done({"ebl_id": ebl.ebl_id, "holder": ebl.holder})


@handles(HANDLERS, EblSurrenderRequest)
def surrender_request(step: Step, op: EblSurrenderRequest) -> Outcome:
    ebl: Ebl = step.record
    if (refusal := in_use_refusal(ebl)) is not None:
        return refusal
    ebl.surrender_answered = False
    return Done({"ebl_id": ebl.ebl_id, "status": "SURRENDER_REQUESTED"})


@handles(HANDLERS, EblSurrenderAccept)
def surrender_accept(step: Step, op: EblSurrenderAccept) -> Outcome:
    ebl: Ebl = step.record
    ebl.surrender_answered = True
    return Done({"ebl_id": ebl.ebl_id, "status": "SURRENDERED"})


@handles(HANDLERS, EblSurrenderReject)
def surrender_reject(step: Step, op: EblSurrenderReject) -> Outcome:
    ebl: Ebl = step.record
    ebl.surrender_answered = True
    return Done({"ebl_id": ebl.ebl_id, "status": "ISSUED"})


@handles(HANDLERS, EblVoid)
def void(step: Step, op: EblVoid) -> Outcome:
    ebl: Ebl = step.record
    if (refusal := in_use_refusal(ebl)) is not None:
        return refusal
    return Done({"ebl_id": ebl.ebl_id, "status": "VOID"})
