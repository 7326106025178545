"""Every command's success and every error code it can return (docs/TRADE-DOMAIN.md, per document):
table-driven refusals on a fresh World, each checked to change nothing but the audit trail."""

from __future__ import annotations

from collections.abc import Callable

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradeapp import Accepted, ErrorCode, Rejected
from tradeapp.commands import (
    COMMANDS,
    OPERATIONS,
    AmendAccept,
    AmendAdvise,
    AmendIssue,
    AmendReject,
    AmendRequest,
    CalAddHoliday,
    CalDefine,
    DeclAccept,
    DeclApproveAmendment,
    DeclCancel,
    DeclConfirmExit,
    DeclLodge,
    DeclReject,
    DeclRelease,
    EblEndorse,
    EblIssue,
    EblPledge,
    EblReleasePledge,
    EblSurrenderAccept,
    EblSurrenderReject,
    EblSurrenderRequest,
    EblTransfer,
    EblVoid,
    FinApprove,
    FinClose,
    FinDisburse,
    FinReject,
    FinRepay,
    FinRequest,
    GetAlerts,
    GetDeclaration,
    GetInvoice,
    GetLc,
    InvRegister,
    LcAdvise,
    LcApply,
    LcCancel,
    LcClose,
    LcConsentCancel,
    LcDecline,
    LcExpire,
    LcIssue,
    Operation,
    PartyAdmit,
    PartyReinstate,
    PartySuspend,
    PayServiceOutward,
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
    RcvRecordCollection,
    RegFlag,
    TaxRegisterRecord,
    example_operation,
)
from tradeapp.model import Role
from tradeapp.money import AMOUNT_MINOR_MAX
from tradeapp.scenario import FX_ADMIN, at

from .test_trade_model import operations
from .test_trade_world import USD_100K, World

# --- Refusals: (what it sets up and sends, the code) ------------------------------------------

Build = Callable[[World], tuple[str, Operation]]


def _lodge(**overrides) -> DeclLodge:
    values = dict(
        decl_id="D-NEW", customs="CUSTOMS-QD", buyer="IMP-NL", goods_description="lamps",
        hs_code="9405", currency="USD", declared_value_minor=100,
    )  # fmt: skip
    values.update(overrides)
    return DeclLodge(**values)


def _ebl_issue(**overrides) -> EblIssue:
    values = dict(
        bl_no="BL-NEW", shipper="EXP-QD", consignee="IMP-NL", holder="EXP-QD",
        goods_description="lamps", port_of_loading="Qingdao", port_of_discharge="Rotterdam",
        shipped_on_board_date="2024-03-01",
    )  # fmt: skip
    values.update(overrides)
    return EblIssue(**values)


def _invoice(**overrides) -> InvRegister:
    values = dict(
        invoice_id="INV-NEW", buyer="IMP-NL", invoice_no="INV-0042", currency="USD",
        amount_minor=USD_100K, issue_date="2024-03-01",
    )  # fmt: skip
    values.update(overrides)
    return InvRegister(**values)


def _fin_request(w: World, **overrides) -> FinRequest:
    values = dict(
        fin_id="F-NEW", lender="BANK-A", invoice_id=None, decl_ids=None, currency="USD",
        amount_minor=8_000_000,
    )  # fmt: skip
    values.update(overrides)
    if values["invoice_id"] is None:
        values["invoice_id"] = w.invoice()
    if values["decl_ids"] is None:
        values["decl_ids"] = [w.decl()]
    return FinRequest(**values)


def _lc_apply(**overrides) -> LcApply:
    values = dict(
        lc_id="LC-NEW", issuing_bank="BANK-I", advising_bank="BANK-A", beneficiary="EXP-QD",
        currency="USD", amount_minor=USD_100K, expiry_date="2024-06-30",
        latest_shipment_date="2024-05-31", presentation_period_days=21,
        goods_description="lamps",
    )  # fmt: skip
    values.update(overrides)
    return LcApply(**values)


def _payment(record_id: str, **overrides) -> PayServiceOutward:
    values = dict(
        payment_id="PAY-NEW", record_id=record_id, payer="SVC-CN", payee="ACME GmbH",
        currency="EUR", amount_minor=1_000,
    )  # fmt: skip
    values.update(overrides)
    return PayServiceOutward(**values)


def _tax_record(**overrides) -> TaxRegisterRecord:
    values = dict(
        record_id="TR-NEW", payer="SVC-CN", payee="ACME GmbH", currency="EUR",
        amount_minor=1_000, contract_ref="C",
    )  # fmt: skip
    values.update(overrides)
    return TaxRegisterRecord(**values)


def _approved_on(w: World, decl_id: str, amount: int = 8_000_000) -> str:
    return w.financing("APPROVED", decl_ids=[decl_id], amount=amount)


def _pledged(w: World) -> str:
    ebl_id = w.ebl()
    w.ok("EXP-QD", EblPledge(ebl_id=ebl_id, bank="BANK-A"))
    return ebl_id


def _in_presentation(w: World) -> str:
    ebl_id = w.ebl()
    w.presentation("OPEN", ebl_id=ebl_id)
    return ebl_id


def _refused_without_waiver(w: World) -> str:
    pres_id = w.presentation("PRESENTED")
    w.ok("BANK-I", PresRefuse(pres_id=pres_id, discrepancies=["OTHER"], waiver_requested=False))
    return pres_id


def _open_with(w: World, lc_id: str) -> str:
    pres_id = w.fresh("P")
    w.ok("EXP-QD", PresOpen(pres_id=pres_id, lc_id=lc_id))
    return pres_id


def _drawn_lc(w: World) -> str:
    lc_id = w.lc()
    w.presentation("HONOURED", lc_id=lc_id, amount=6_000_000)
    return lc_id


def _attach(pres_id: str, doc_type: str, ref: str, digest: bytes | None = None) -> PresAttach:
    return PresAttach(pres_id=pres_id, doc_type=doc_type, ref=ref, content_digest=digest)


def _bank_without_calendar(w: World) -> str:
    bank = w.fresh("BANK-FAR")
    w.ok(
        FX_ADMIN,
        PartyAdmit(
            participant_id=bank, role=Role.BANK, legal_name=bank, country="XX", tax_id="T",
            public_key=w.driver.key(bank), place="NOWHERE",
        ),
    )  # fmt: skip
    return bank


def _lc_examined_by(w: World, bank: str) -> str:
    w.ok("IMP-NL", _lc_apply(lc_id="LC-FAR", issuing_bank=bank))
    w.ok(bank, LcIssue(lc_id="LC-FAR"))
    return "LC-FAR"


def _late(w: World, when: str) -> str:
    w.driver.now_ms = at(when)
    return ""


REFUSALS: list[tuple[str, Build, ErrorCode]] = [
    # participants, flags, calendars
    ("admit-duplicate-key", lambda w: (FX_ADMIN, example_operation(PartyAdmit, participant_id="NEW", role="BANK", public_key=w.driver.key("BANK-A"))), ErrorCode.DUPLICATE_KEY),
    ("suspend-self", lambda w: (FX_ADMIN, PartySuspend(participant_id=FX_ADMIN)), ErrorCode.INVALID_PARTY),
    ("suspend-unknown", lambda w: (FX_ADMIN, PartySuspend(participant_id="NOBODY")), ErrorCode.UNKNOWN_PARTICIPANT),
    ("reinstate-unknown", lambda w: (FX_ADMIN, PartyReinstate(participant_id="NOBODY")), ErrorCode.UNKNOWN_PARTICIPANT),
    ("flag-unknown", lambda w: (FX_ADMIN, RegFlag(participant_id="NOBODY", reason="R", note="")), ErrorCode.UNKNOWN_PARTICIPANT),
    ("calendar-seven-day-weekend", lambda w: (FX_ADMIN, CalDefine(place="P", weekend=[1, 2, 3, 4, 5, 6, 7], holidays=[], utc_offset_minutes=0)), ErrorCode.MALFORMED),
    ("calendar-offset-out-of-range", lambda w: (FX_ADMIN, CalDefine(place="P", weekend=[6, 7], holidays=[], utc_offset_minutes=15 * 60)), ErrorCode.MALFORMED),
    ("holiday-unknown-calendar", lambda w: (FX_ADMIN, CalAddHoliday(place="NOWHERE", date="2024-05-01")), ErrorCode.UNKNOWN_CALENDAR),
    # declarations
    ("lodge-unknown-customs", lambda w: ("EXP-QD", _lodge(customs="NOBODY")), ErrorCode.UNKNOWN_PARTICIPANT),
    ("lodge-customs-is-a-bank", lambda w: ("EXP-QD", _lodge(customs="BANK-A")), ErrorCode.INVALID_PARTY),
    ("lodge-suspended-customs", lambda w: ("EXP-QD", _lodge(customs=w.participant("SUSPENDED", role=Role.CUSTOMS))), ErrorCode.INVALID_PARTY),
    ("lodge-unknown-currency", lambda w: ("EXP-QD", _lodge(currency="XXX")), ErrorCode.UNKNOWN_CURRENCY),
    ("lodge-zero-value", lambda w: ("EXP-QD", _lodge(declared_value_minor=0)), ErrorCode.INVALID_AMOUNT),
    ("lodge-negative-value", lambda w: ("EXP-QD", _lodge(declared_value_minor=-5)), ErrorCode.INVALID_AMOUNT),
    ("lodge-value-above-bound", lambda w: ("EXP-QD", _lodge(declared_value_minor=AMOUNT_MINOR_MAX + 1)), ErrorCode.INVALID_AMOUNT),
    ("accept-unknown-declaration", lambda w: ("CUSTOMS-QD", DeclAccept(decl_id="NOPE")), ErrorCode.UNKNOWN_DOCUMENT),
    ("release-unknown-declaration", lambda w: ("CUSTOMS-QD", DeclRelease(decl_id="NOPE")), ErrorCode.UNKNOWN_DOCUMENT),
    ("amend-declaration-zero", lambda w: ("CUSTOMS-QD", DeclApproveAmendment(decl_id=w.decl(), declared_value_minor=0)), ErrorCode.INVALID_AMOUNT),
    ("another-customs-office", lambda w: (w.participant(role=Role.CUSTOMS), DeclAccept(decl_id=w.decl("LODGED"))), ErrorCode.UNAUTHORIZED),
    # eBLs
    ("ebl-unknown-holder", lambda w: ("CARRIER-1", _ebl_issue(holder="NOBODY")), ErrorCode.UNKNOWN_PARTICIPANT),
    ("ebl-shipper-is-a-bank", lambda w: ("CARRIER-1", _ebl_issue(shipper="BANK-A")), ErrorCode.INVALID_PARTY),
    ("ebl-holder-is-customs", lambda w: ("CARRIER-1", _ebl_issue(holder="CUSTOMS-QD")), ErrorCode.INVALID_PARTY),
    ("ebl-id-too-long", lambda w: ("CARRIER-1", _ebl_issue(bl_no="B" * 64)), ErrorCode.MALFORMED),
    ("transfer-pledged", lambda w: ("EXP-QD", EblTransfer(ebl_id=_pledged(w), to="IMP-NL")), ErrorCode.DOC_IN_USE),
    ("transfer-presented", lambda w: ("EXP-QD", EblTransfer(ebl_id=_in_presentation(w), to="IMP-NL")), ErrorCode.DOC_IN_USE),
    ("transfer-to-self", lambda w: ("EXP-QD", EblTransfer(ebl_id=w.ebl(), to="EXP-QD")), ErrorCode.INVALID_PARTY),
    ("transfer-to-regulator", lambda w: ("EXP-QD", EblTransfer(ebl_id=w.ebl(), to=FX_ADMIN)), ErrorCode.INVALID_PARTY),
    ("transfer-to-unknown", lambda w: ("EXP-QD", EblTransfer(ebl_id=w.ebl(), to="NOBODY")), ErrorCode.UNKNOWN_PARTICIPANT),
    ("transfer-unknown-ebl", lambda w: ("EXP-QD", EblTransfer(ebl_id="CARRIER-1/NOPE", to="IMP-NL")), ErrorCode.UNKNOWN_DOCUMENT),
    ("transfer-not-holder", lambda w: ("IMP-NL", EblTransfer(ebl_id=w.ebl(), to="BANK-A")), ErrorCode.NOT_HOLDER),
    ("transfer-surrendered", lambda w: ("EXP-QD", EblTransfer(ebl_id=w.ebl("SURRENDERED"), to="IMP-NL")), ErrorCode.DOC_CLOSED),
    ("endorse-pledged", lambda w: ("EXP-QD", EblEndorse(ebl_id=_pledged(w), endorsee="IMP-NL")), ErrorCode.DOC_IN_USE),
    ("pledge-twice", lambda w: ("EXP-QD", EblPledge(ebl_id=_pledged(w), bank="BANK-B")), ErrorCode.DOC_IN_USE),
    ("pledge-to-trader", lambda w: ("EXP-QD", EblPledge(ebl_id=w.ebl(), bank="IMP-NL")), ErrorCode.INVALID_PARTY),
    ("release-presentation-lock", lambda w: ("BANK-I", EblReleasePledge(ebl_id=_in_presentation(w))), ErrorCode.DOC_IN_USE),
    ("surrender-pledged", lambda w: ("EXP-QD", EblSurrenderRequest(ebl_id=_pledged(w))), ErrorCode.DOC_IN_USE),
    ("void-pledged", lambda w: ("CARRIER-1", EblVoid(ebl_id=_pledged(w), reason="R")), ErrorCode.DOC_IN_USE),
    ("surrender-answered-after-reject", lambda w: ("CARRIER-1", EblSurrenderAccept(ebl_id=_surrender_rejected(w))), ErrorCode.ALREADY_ANSWERED),
    ("surrender-reject-after-accept", lambda w: ("CARRIER-1", EblSurrenderReject(ebl_id=w.ebl("SURRENDERED"), reason="R")), ErrorCode.ALREADY_ANSWERED),
    ("surrender-accept-never-requested", lambda w: ("CARRIER-1", EblSurrenderAccept(ebl_id=w.ebl())), ErrorCode.INVALID_STATE),
    # invoices and collections
    ("invoice-rekeyed-copy", lambda w: (w.ok("EXP-QD", _invoice()), ("EXP-QD", _invoice(invoice_id="INV-COPY", invoice_no="inv 42", buyer=" imp-nl ")))[1], ErrorCode.DUPLICATE_INVOICE),
    ("invoice-unknown-currency", lambda w: ("EXP-QD", _invoice(currency="ABC")), ErrorCode.UNKNOWN_CURRENCY),
    ("invoice-zero", lambda w: ("EXP-QD", _invoice(amount_minor=0)), ErrorCode.INVALID_AMOUNT),
    ("collection-by-non-lender", lambda w: ("BANK-B", RcvRecordCollection(invoice_id=_encumbered_invoice(w), amount_minor=1, collection_id="COL-T1")), ErrorCode.UNAUTHORIZED),
    ("collection-by-other-bank", lambda w: ("BANK-B", RcvRecordCollection(invoice_id=w.invoice(), amount_minor=1, collection_id="COL-T2")), ErrorCode.UNAUTHORIZED),
    ("collection-above-invoice", lambda w: ("BANK-A", RcvRecordCollection(invoice_id=w.invoice(), amount_minor=USD_100K + 1, collection_id="COL-T3")), ErrorCode.EXCEEDS_INVOICE),
    ("collection-zero", lambda w: ("BANK-A", RcvRecordCollection(invoice_id=w.invoice(), amount_minor=0, collection_id="COL-T4")), ErrorCode.INVALID_AMOUNT),
    ("collection-settled", lambda w: ("BANK-A", RcvRecordCollection(invoice_id=w.invoice("SETTLED"), amount_minor=1, collection_id="COL-T5")), ErrorCode.RECEIVABLE_SETTLED),
    ("collection-unknown-invoice", lambda w: ("BANK-A", RcvRecordCollection(invoice_id="NOPE", amount_minor=1, collection_id="COL-T6")), ErrorCode.UNKNOWN_DOCUMENT),
    # financing requests
    ("request-unknown-lender", lambda w: ("EXP-QD", _fin_request(w, lender="NOBODY")), ErrorCode.UNKNOWN_PARTICIPANT),
    ("request-lender-not-a-bank", lambda w: ("EXP-QD", _fin_request(w, lender="IMP-NL")), ErrorCode.INVALID_PARTY),
    ("request-unknown-currency", lambda w: ("EXP-QD", _fin_request(w, currency="QQQ")), ErrorCode.UNKNOWN_CURRENCY),
    ("request-zero", lambda w: ("EXP-QD", _fin_request(w, amount_minor=0)), ErrorCode.INVALID_AMOUNT),
    ("request-unknown-invoice", lambda w: ("EXP-QD", _fin_request(w, invoice_id="NOPE")), ErrorCode.UNKNOWN_DOCUMENT),
    ("request-unknown-declaration", lambda w: ("EXP-QD", _fin_request(w, decl_ids=["NOPE"])), ErrorCode.UNKNOWN_DOCUMENT),
    ("request-someone-elses-invoice", lambda w: ("EXP-QD", _fin_request(w, invoice_id=w.invoice(seller="SVC-CN"))), ErrorCode.NOT_DOCUMENT_OWNER),
    ("request-someone-elses-declaration", lambda w: ("EXP-QD", _fin_request(w, decl_ids=[w.decl(exporter="SVC-CN")])), ErrorCode.NOT_DOCUMENT_OWNER),
    # financing approval: every check in one command
    ("approve-declaration-not-released", lambda w: ("BANK-A", FinApprove(fin_id=w.financing(decl_ids=[w.decl("ACCEPTED")]), rate_bp=400)), ErrorCode.DOC_NOT_RELEASED),
    ("approve-declaration-cancelled", lambda w: ("BANK-A", FinApprove(fin_id=w.financing(decl_ids=[w.decl("CANCELLED")]), rate_bp=400)), ErrorCode.DOC_NOT_RELEASED),
    ("approve-currency-mismatch-decl", lambda w: ("BANK-A", FinApprove(fin_id=w.financing(decl_ids=[w.decl(currency="EUR")]), rate_bp=400)), ErrorCode.CURRENCY_MISMATCH),
    ("approve-currency-mismatch-invoice", lambda w: ("BANK-A", FinApprove(fin_id=w.financing(invoice_id=w.invoice(currency="EUR")), rate_bp=400)), ErrorCode.CURRENCY_MISMATCH),
    ("approve-receivable-settled", lambda w: ("BANK-A", FinApprove(fin_id=w.financing(invoice_id=w.invoice("SETTLED")), rate_bp=400)), ErrorCode.RECEIVABLE_SETTLED),
    ("approve-already-encumbered", lambda w: ("BANK-B", FinApprove(fin_id=w.financing(lender="BANK-B", invoice_id=_encumbered_invoice(w)), rate_bp=400)), ErrorCode.ALREADY_ENCUMBERED),
    ("approve-exceeds-declaration", lambda w: ("BANK-A", FinApprove(fin_id=w.financing(decl_ids=[w.decl(value=1_000)]), rate_bp=400)), ErrorCode.EXCEEDS_FINANCEABLE_BALANCE),
    ("approve-exceeds-remaining-balance", lambda w: ("BANK-A", FinApprove(fin_id=_second_on_same_declaration(w), rate_bp=400)), ErrorCode.EXCEEDS_FINANCEABLE_BALANCE),
    ("approve-exceeds-invoice", lambda w: ("BANK-A", FinApprove(fin_id=w.financing(invoice_id=w.invoice(amount=1_000)), rate_bp=400)), ErrorCode.EXCEEDS_INVOICE),
    ("approve-rate-out-of-range", lambda w: ("BANK-A", FinApprove(fin_id=w.financing(), rate_bp=10_001)), ErrorCode.MALFORMED),
    ("approve-by-other-bank", lambda w: ("BANK-B", FinApprove(fin_id=w.financing(), rate_bp=400)), ErrorCode.UNAUTHORIZED),
    ("repay-above-outstanding", lambda w: ("BANK-A", FinRepay(fin_id=w.financing("DISBURSED"), amount_minor=8_000_001, repayment_id="RP-T10")), ErrorCode.EXCEEDS_OUTSTANDING),
    ("repay-zero", lambda w: ("BANK-A", FinRepay(fin_id=w.financing("DISBURSED"), amount_minor=0, repayment_id="RP-T11")), ErrorCode.INVALID_AMOUNT),
    ("repay-by-regulator", lambda w: (FX_ADMIN, FinRepay(fin_id=w.financing("DISBURSED"), amount_minor=1, repayment_id="RP-T12")), ErrorCode.UNAUTHORIZED),
    ("close-disbursed", lambda w: ("BANK-A", FinClose(fin_id=w.financing("DISBURSED"))), ErrorCode.INVALID_STATE),
    # letters of credit
    ("apply-unknown-bank", lambda w: ("IMP-NL", _lc_apply(issuing_bank="NOBODY")), ErrorCode.UNKNOWN_PARTICIPANT),
    ("apply-issuing-bank-is-trader", lambda w: ("IMP-NL", _lc_apply(issuing_bank="EXP-QD")), ErrorCode.INVALID_PARTY),
    ("apply-beneficiary-is-bank", lambda w: ("IMP-NL", _lc_apply(beneficiary="BANK-B")), ErrorCode.INVALID_PARTY),
    ("apply-unknown-currency", lambda w: ("IMP-NL", _lc_apply(currency="ZZZ")), ErrorCode.UNKNOWN_CURRENCY),
    ("apply-zero-amount", lambda w: ("IMP-NL", _lc_apply(amount_minor=0)), ErrorCode.INVALID_AMOUNT),
    ("apply-zero-period", lambda w: ("IMP-NL", _lc_apply(presentation_period_days=0)), ErrorCode.MALFORMED),
    ("cancel-without-consent", lambda w: ("BANK-I", LcCancel(lc_id=w.lc())), ErrorCode.CONSENT_REQUIRED),
    ("cancel-with-presentation", lambda w: ("BANK-I", LcCancel(lc_id=_consented_with_presentation(w))), ErrorCode.PRESENTATION_PENDING),
    ("expire-before-expiry", lambda w: ("BANK-I", LcExpire(lc_id=w.lc())), ErrorCode.NOT_EXPIRED),
    ("close-live-undrawn", lambda w: ("BANK-I", LcClose(lc_id=w.lc())), ErrorCode.NOT_EXPIRED),
    ("close-with-presentation", lambda w: ("BANK-I", LcClose(lc_id=_lc_with_open_presentation(w))), ErrorCode.PRESENTATION_PENDING),
    ("advise-by-other-bank", lambda w: ("BANK-B", LcAdvise(lc_id=w.lc("ISSUED"))), ErrorCode.UNAUTHORIZED),
    # amendments
    ("amend-unknown-lc", lambda w: ("IMP-NL", AmendRequest(amend_id="A-N", lc_id="NOPE", changes={"amount_minor": 1})), ErrorCode.UNKNOWN_DOCUMENT),
    ("amend-not-applicant", lambda w: ("EXP-QD", AmendRequest(amend_id="A-N", lc_id=w.lc(), changes={"amount_minor": 1})), ErrorCode.UNAUTHORIZED),
    ("amend-submitted-lc", lambda w: ("IMP-NL", AmendRequest(amend_id="A-N", lc_id=w.lc("SUBMITTED"), changes={"amount_minor": 1})), ErrorCode.INVALID_STATE),
    ("amend-unknown-term", lambda w: ("IMP-NL", AmendRequest(amend_id="A-N", lc_id=w.lc(), changes={"currency": "EUR"})), ErrorCode.MALFORMED),
    ("amend-bad-date", lambda w: ("IMP-NL", AmendRequest(amend_id="A-N", lc_id=w.lc(), changes={"expiry_date": "2024-02-30"})), ErrorCode.MALFORMED),
    ("amend-bad-period", lambda w: ("IMP-NL", AmendRequest(amend_id="A-N", lc_id=w.lc(), changes={"presentation_period_days": 0})), ErrorCode.MALFORMED),
    ("amend-bad-goods", lambda w: ("IMP-NL", AmendRequest(amend_id="A-N", lc_id=w.lc(), changes={"goods_description": 7})), ErrorCode.MALFORMED),
    ("amend-zero-amount", lambda w: ("IMP-NL", AmendRequest(amend_id="A-N", lc_id=w.lc(), changes={"amount_minor": 0})), ErrorCode.INVALID_AMOUNT),
    ("accept-partially", lambda w: ("EXP-QD", AmendAccept(amend_id=w.amendment(changes={"amount_minor": 1, "expiry_date": "2024-07-31"}), accepted_terms=["amount_minor"])), ErrorCode.PARTIAL_ACCEPTANCE),
    ("accept-more-than-changed", lambda w: ("EXP-QD", AmendAccept(amend_id=w.amendment(), accepted_terms=["amount_minor", "expiry_date"])), ErrorCode.PARTIAL_ACCEPTANCE),
    ("accept-below-drawings", lambda w: ("EXP-QD", AmendAccept(amend_id=w.amendment(lc_id=_drawn_lc(w), changes={"amount_minor": 5_000_000}), accepted_terms=["amount_minor"])), ErrorCode.EXCEEDS_AVAILABLE),
    ("issue-amendment-cancelled-lc", lambda w: ("BANK-I", AmendIssue(amend_id=_amendment_on_cancelled(w))), ErrorCode.INVALID_STATE),
    # presentations
    ("open-unknown-lc", lambda w: ("EXP-QD", PresOpen(pres_id="P-N", lc_id="NOPE")), ErrorCode.UNKNOWN_DOCUMENT),
    ("open-not-beneficiary", lambda w: ("SVC-CN", PresOpen(pres_id="P-N", lc_id=w.lc())), ErrorCode.UNAUTHORIZED),
    ("open-submitted-lc", lambda w: ("EXP-QD", PresOpen(pres_id="P-N", lc_id=w.lc("SUBMITTED"))), ErrorCode.INVALID_STATE),
    ("attach-unknown-ebl", lambda w: ("EXP-QD", _attach(w.presentation("OPEN"), "ebl", "CARRIER-1/NOPE")), ErrorCode.UNKNOWN_DOCUMENT),
    ("attach-ebl-not-held", lambda w: ("EXP-QD", _attach(w.presentation("OPEN"), "ebl", w.ebl(holder="IMP-NL"))), ErrorCode.NOT_HOLDER),
    ("attach-ebl-pledged", lambda w: ("EXP-QD", _attach(w.presentation("OPEN"), "ebl", _pledged(w))), ErrorCode.DOC_IN_USE),
    ("attach-ebl-surrendered", lambda w: ("EXP-QD", _attach(w.presentation("OPEN"), "ebl", w.ebl("SURRENDERED"))), ErrorCode.DOC_CLOSED),
    ("attach-ebl-surrender-requested", lambda w: ("EXP-QD", _attach(w.presentation("OPEN"), "ebl", w.ebl("SURRENDER_REQUESTED"))), ErrorCode.INVALID_STATE),
    ("attach-ebl-twice", lambda w: ("EXP-QD", _attach(*_presentation_and_its_ebl(w))), ErrorCode.DUPLICATE_ID),
    ("attach-unknown-invoice", lambda w: ("EXP-QD", _attach(w.presentation("OPEN"), "invoice", "NOPE")), ErrorCode.UNKNOWN_DOCUMENT),
    ("attach-someone-elses-invoice", lambda w: ("EXP-QD", _attach(w.presentation("OPEN"), "invoice", w.invoice(seller="SVC-CN"))), ErrorCode.NOT_DOCUMENT_OWNER),
    ("attach-document-without-digest", lambda w: ("EXP-QD", _attach(w.presentation("OPEN"), "packing_list", "PL-1")), ErrorCode.MALFORMED),
    ("attach-after-expiry", lambda w: ("EXP-QD", _attach(_open_on_expired_lc(w), "packing_list", "PL-1", bytes(32))), ErrorCode.INVALID_STATE),
    ("complete-without-ebl", lambda w: ("EXP-QD", PresComplete(pres_id=_open_with(w, w.lc()), amount_minor=1)), ErrorCode.DOCUMENTS_MISSING),
    ("complete-zero", lambda w: ("EXP-QD", PresComplete(pres_id=w.presentation("OPEN"), amount_minor=0)), ErrorCode.INVALID_AMOUNT),
    ("complete-above-amount", lambda w: ("EXP-QD", PresComplete(pres_id=w.presentation("OPEN"), amount_minor=USD_100K + 1)), ErrorCode.EXCEEDS_AVAILABLE),
    ("complete-above-available", lambda w: ("EXP-QD", PresComplete(pres_id=_second_presentation(w), amount_minor=5_000_000)), ErrorCode.EXCEEDS_AVAILABLE),
    ("complete-after-expiry-date", lambda w: ("EXP-QD", PresComplete(pres_id=_open_then(w, "2024-07-01"), amount_minor=1)), ErrorCode.LATE_PRESENTATION),
    ("complete-expired-lc", lambda w: ("EXP-QD", PresComplete(pres_id=_open_on_expired_lc(w), amount_minor=1)), ErrorCode.LATE_PRESENTATION),
    ("complete-after-shipment-period", lambda w: ("EXP-QD", PresComplete(pres_id=_open_then(w, "2024-03-23"), amount_minor=1)), ErrorCode.LATE_PRESENTATION),
    ("complete-examiner-without-calendar", lambda w: ("EXP-QD", PresComplete(pres_id=_open_far(w), amount_minor=1)), ErrorCode.UNKNOWN_CALENDAR),
    ("refuse-without-discrepancy", lambda w: ("BANK-I", PresRefuse(pres_id=w.presentation(), discrepancies=[], waiver_requested=False)), ErrorCode.MALFORMED),
    ("refuse-unknown-discrepancy", lambda w: ("BANK-I", PresRefuse(pres_id=w.presentation(), discrepancies=["UGLY"], waiver_requested=False)), ErrorCode.MALFORMED),
    ("refuse-after-deadline", lambda w: ("BANK-I", PresRefuse(pres_id=(w.presentation(), _late(w, "2024-03-12"))[0], discrepancies=["OTHER"], waiver_requested=False)), ErrorCode.PRECLUDED),
    ("waive-without-request", lambda w: ("IMP-NL", PresWaive(pres_id=_refused_without_waiver(w))), ErrorCode.INVALID_STATE),
    ("honour-refused", lambda w: ("BANK-I", PresHonour(pres_id=w.presentation("REFUSED"))), ErrorCode.INVALID_STATE),
    ("honour-twice", lambda w: ("BANK-I", PresHonour(pres_id=w.presentation("HONOURED"))), ErrorCode.ALREADY_HONOURED),
    ("waive-by-beneficiary", lambda w: ("EXP-QD", PresWaive(pres_id=w.presentation("REFUSED"))), ErrorCode.UNAUTHORIZED),
    # service trade
    ("record-unknown-payer", lambda w: ("TAX-QD", _tax_record(payer="NOBODY")), ErrorCode.UNKNOWN_PARTICIPANT),
    ("record-payer-is-bank", lambda w: ("TAX-QD", _tax_record(payer="BANK-A")), ErrorCode.INVALID_PARTY),
    ("record-unknown-currency", lambda w: ("TAX-QD", _tax_record(currency="EEE")), ErrorCode.UNKNOWN_CURRENCY),
    ("record-zero", lambda w: ("TAX-QD", _tax_record(amount_minor=0)), ErrorCode.INVALID_AMOUNT),
    ("pay-unknown-record", lambda w: ("BANK-B", _payment("NOPE")), ErrorCode.UNKNOWN_DOCUMENT),
    ("pay-wrong-payee", lambda w: ("BANK-B", _payment(w.tax_record(), payee="OTHER GmbH")), ErrorCode.PAYEE_MISMATCH),
    ("pay-wrong-payer", lambda w: ("BANK-B", _payment(w.tax_record(), payer="EXP-QD")), ErrorCode.PAYEE_MISMATCH),
    ("pay-wrong-currency", lambda w: ("BANK-B", _payment(w.tax_record(), currency="USD")), ErrorCode.CURRENCY_MISMATCH),
    ("pay-unknown-currency", lambda w: ("BANK-B", _payment(w.tax_record(), currency="EEE")), ErrorCode.UNKNOWN_CURRENCY),
    ("pay-zero", lambda w: ("BANK-B", _payment(w.tax_record(), amount_minor=0)), ErrorCode.INVALID_AMOUNT),
    ("pay-above-record", lambda w: ("BANK-B", _payment(w.tax_record(amount=999), amount_minor=1_000)), ErrorCode.EXCEEDS_RECORD),
    ("pay-by-carrier", lambda w: ("CARRIER-1", _payment(w.tax_record())), ErrorCode.UNAUTHORIZED_ISSUER),
]  # fmt: skip


def _surrender_rejected(w: World) -> str:
    ebl_id = w.ebl("SURRENDER_REQUESTED")
    w.ok("CARRIER-1", EblSurrenderReject(ebl_id=ebl_id, reason="NOT_ARRIVED"))
    return ebl_id


def _encumbered_invoice(w: World) -> str:
    invoice_id = w.invoice()
    w.financing("APPROVED", invoice_id=invoice_id)
    return invoice_id


def _second_on_same_declaration(w: World) -> str:
    decl_id = w.decl()
    _approved_on(w, decl_id, amount=8_000_000)
    return w.financing(decl_ids=[decl_id], amount=2_000_001)


def _consented_with_presentation(w: World) -> str:
    lc_id = w.lc()
    w.presentation("OPEN", lc_id=lc_id)
    w.ok("EXP-QD", LcConsentCancel(lc_id=lc_id))
    return lc_id


def _lc_with_open_presentation(w: World) -> str:
    lc_id = w.lc()
    w.presentation("OPEN", lc_id=lc_id)
    return lc_id


def _amendment_on_cancelled(w: World) -> str:
    lc_id = w.lc()
    amend_id = w.amendment("REQUESTED", lc_id=lc_id)
    w.ok("EXP-QD", LcConsentCancel(lc_id=lc_id))
    w.ok("BANK-I", LcCancel(lc_id=lc_id))
    return amend_id


def _presentation_and_its_ebl(w: World) -> tuple[str, str, str]:
    ebl_id = w.ebl()
    return (w.presentation("OPEN", ebl_id=ebl_id), "ebl", ebl_id)


def _second_presentation(w: World) -> str:
    lc_id = w.lc()
    w.presentation("PRESENTED", lc_id=lc_id, amount=6_000_000)
    return w.presentation("OPEN", lc_id=lc_id)


def _open_then(w: World, day: str) -> str:
    pres_id = w.presentation("OPEN")
    w.driver.now_ms = at(day)
    return pres_id


def _open_on_expired_lc(w: World) -> str:
    lc_id = w.lc("ISSUED", expiry="2024-03-01")
    pres_id = w.presentation("OPEN", lc_id=lc_id)
    w.ok("BANK-I", LcExpire(lc_id=lc_id))
    return pres_id


def _open_far(w: World) -> str:
    lc_id = _lc_examined_by(w, _bank_without_calendar(w))
    return w.presentation("OPEN", lc_id=lc_id)


@pytest.mark.parametrize(("build", "code"), [pytest.param(b, c, id=n) for n, b, c in REFUSALS])
def test_refusal(build, code):
    """Execution rules: the command is refused with its code, the domain state is untouched,
    and exactly one audit event records the refusal."""
    world = World()
    actor, op = build(world)
    ledger = world.driver.ledger
    before, events = ledger.domain_digest(), len(ledger.audit_events)
    result = world.driver.run(actor, op)
    assert isinstance(result, Rejected), result
    assert result.code == code, result
    assert ledger.domain_digest() == before
    assert len(ledger.audit_events) == events + 1
    assert ledger.audit_events[-1].outcome == code


# --- Refusals every command can meet ----------------------------------------------------------

ALL_COMMANDS = sorted(COMMANDS)


def _allowed_actor(command: str) -> str:
    from tradeapp.transitions import COMMAND_ROLES

    from .test_trade_authorization import ACTOR_OF_ROLE

    return ACTOR_OF_ROLE[sorted(COMMAND_ROLES[command])[0]]


@pytest.fixture(scope="module")
def world() -> World:
    return World(check_invariants=False)


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_any_command_naming_another_actor_is_actor_mismatch(world, command):
    """Execution rules: a payload that names another actor is rejected with ACTOR_MISMATCH."""
    op = example_operation(COMMANDS[command])
    result = world.driver.run(_allowed_actor(command), op, claim="IMP-NL")
    assert isinstance(result, Rejected) and result.code == ErrorCode.ACTOR_MISMATCH


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_any_command_signed_by_an_unknown_key_is_unknown_participant(world, command):
    result = world.driver.run("STRANGER", example_operation(COMMANDS[command]))
    assert isinstance(result, Rejected) and result.code == ErrorCode.UNKNOWN_PARTICIPANT
    assert world.driver.ledger.audit_events[-1].actor is None


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_any_command_by_a_suspended_participant_is_refused(command):
    w = World(check_invariants=False)
    actor = _allowed_actor(command)
    if actor == FX_ADMIN:
        actor = w.participant(role=Role.FX_ADMIN)
    w.ok(FX_ADMIN, PartySuspend(participant_id=actor))
    result = w.driver.run(actor, example_operation(COMMANDS[command]))
    assert isinstance(result, Rejected) and result.code == ErrorCode.PARTICIPANT_SUSPENDED


def _malformed_variants(command: str) -> list[bytes]:
    op = example_operation(COMMANDS[command])
    args = {name: getattr(op, name) for name in op.__dataclass_fields__}
    args = msgpack.unpackb(op.encode(), raw=False)[1]
    variants = [msgpack.packb([command, {**args, "extra": 1}, None])]
    for name in sorted(args):
        missing = {k: v for k, v in args.items() if k != name}
        variants.append(msgpack.packb([command, missing, None]))
        variants.append(msgpack.packb([command, {**args, name: 3.5}, None]))
    return variants


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_any_command_with_a_missing_extra_or_ill_typed_field_is_malformed(world, command):
    """Wire format: strict decoding; never an exception, always MALFORMED and one event."""
    ledger = world.driver.ledger
    for operation in _malformed_variants(command):
        before = len(ledger.audit_events)
        result = world.driver.run_raw(_allowed_actor(command), operation)
        assert isinstance(result, Rejected) and result.code == ErrorCode.MALFORMED, operation
        assert len(ledger.audit_events) == before + 1
        assert ledger.audit_events[-1].command == command


@pytest.mark.parametrize(
    ("operation", "code"),
    [
        (b"", ErrorCode.MALFORMED),
        (b"\xc1", ErrorCode.MALFORMED),
        (msgpack.packb({"cmd": "lc.issue"}), ErrorCode.MALFORMED),
        (msgpack.packb(["lc.issue", {"lc_id": "X"}]), ErrorCode.MALFORMED),
        (msgpack.packb(["lc.issue", ["X"], None]), ErrorCode.MALFORMED),
        (msgpack.packb(["lc.issue", {"lc_id": "X"}, 7]), ErrorCode.MALFORMED),
        (msgpack.packb(["lc.issue", {"lc_id": "has space"}, None]), ErrorCode.MALFORMED),
        (msgpack.packb(["lc.issue", {"lc_id": "X" * 65}, None]), ErrorCode.MALFORMED),
        (msgpack.packb(["lc.issue", {"lc_id": "X"}, None]) + b"\x00", ErrorCode.MALFORMED),
        (msgpack.packb(["lc.launch", {}, None]), ErrorCode.UNKNOWN_COMMAND),
        (msgpack.packb([b"lc.issue", {}, None], use_bin_type=True), ErrorCode.MALFORMED),
        (b"\x93" + b"\xa8lc.issue" + b"\xdf\xff\xff\xff\xff", ErrorCode.MALFORMED),
        (b"\x00" * 70_000, ErrorCode.MALFORMED),
    ],
)
def test_junk_operations_get_an_error_result_and_an_audit_event(world, operation, code):
    ledger = world.driver.ledger
    before_events, before_digest = len(ledger.audit_events), ledger.domain_digest()
    result = world.driver.run_raw("BANK-I", operation)
    assert isinstance(result, Rejected) and result.code == code
    assert len(ledger.audit_events) == before_events + 1
    assert ledger.domain_digest() == before_digest


def test_a_command_sent_to_the_read_only_path_is_not_read_only(world):
    result = world.driver.read("BANK-I", LcIssue(lc_id="X"))
    assert isinstance(result, Rejected) and result.code == ErrorCode.NOT_READ_ONLY


# --- Successes -----------------------------------------------------------------------------------


def test_admission_of_a_bank_and_of_a_sponsored_trader():
    w = World()
    bank = w.participant(role=Role.BANK)
    trader = w.participant(role=Role.TRADER, sponsor=bank)
    assert w.record("participant", bank).admitted_by == FX_ADMIN
    assert w.record("participant", trader).sponsor == bank
    new_admin = w.participant(role=Role.FX_ADMIN)
    assert w.driver.run(new_admin, PartySuspend(participant_id=bank)).ok


def test_suspend_and_reinstate():
    w = World()
    w.ok(FX_ADMIN, PartySuspend(participant_id="EXP-QD"))
    assert w.driver.run("EXP-QD", _invoice()).code == ErrorCode.PARTICIPANT_SUSPENDED
    assert w.ok(FX_ADMIN, PartyReinstate(participant_id="EXP-QD"))["status"] == "ACTIVE"
    assert w.driver.run("EXP-QD", _invoice()).ok


def test_flag_a_participant_twice():
    w = World()
    w.ok(FX_ADMIN, RegFlag(participant_id="EXP-QD", reason="A", note="first"))
    assert w.ok(FX_ADMIN, RegFlag(participant_id="EXP-QD", reason="B", note=""))["flags"] == 2
    flags = w.record("participant", "EXP-QD").flags
    assert [f["reason"] for f in flags] == ["A", "B"] and flags[0]["flagged_by"] == FX_ADMIN


def test_define_redefine_and_add_holidays():
    w = World()
    place = w.calendar()
    w.ok(
        FX_ADMIN,
        CalDefine(
            place=place,
            weekend=[5, 6],
            holidays=["2024-12-25", "2024-01-01"],
            utc_offset_minutes=180,
        ),
    )
    calendar = w.record("calendar", place)
    assert calendar.weekend == [5, 6] and calendar.holidays == ["2024-01-01", "2024-12-25"]
    assert w.ok(FX_ADMIN, CalAddHoliday(place=place, date="2024-05-01"))["holidays"] == 3
    assert w.ok(FX_ADMIN, CalAddHoliday(place=place, date="2024-05-01"))["holidays"] == 3


def test_declaration_lifecycle():
    w = World()
    decl_id = w.decl("LODGED")
    for command, status in (
        (DeclAccept, "ACCEPTED"),
        (DeclRelease, "RELEASED"),
        (DeclConfirmExit, "CLEARED"),
    ):
        assert w.ok("CUSTOMS-QD", command(decl_id=decl_id))["status"] == status
    assert w.record("decl", decl_id).exporter == "EXP-QD"
    rejected = w.decl("LODGED")
    assert w.ok("CUSTOMS-QD", DeclReject(decl_id=rejected, reason="R"))["status"] == "REJECTED"
    cancelled = w.decl("RELEASED")
    assert w.ok("CUSTOMS-QD", DeclCancel(decl_id=cancelled, reason="R"))["status"] == "CANCELLED"


def test_declaration_amendment_below_the_financed_amount_raises_over_financed():
    """Goods declaration: the amendment is applied and raises OVER_FINANCED to the lenders and
    FX_ADMIN (not to others)."""
    w = World()
    decl_id = w.decl()
    _approved_on(w, decl_id, amount=8_000_000)
    plain = w.ok(
        "CUSTOMS-QD", DeclApproveAmendment(decl_id=decl_id, declared_value_minor=9_000_000)
    )
    assert "alert" not in plain
    value = w.ok(
        "CUSTOMS-QD", DeclApproveAmendment(decl_id=decl_id, declared_value_minor=5_000_000)
    )
    assert value["alert"]["code"] == "OVER_FINANCED"
    assert w.record("decl", decl_id).declared_value_minor == 5_000_000
    for reader, count in ((FX_ADMIN, 1), ("BANK-A", 1), ("BANK-B", 0), ("EXP-QD", 0)):
        assert len(w.driver.read(reader, GetAlerts()).value["alerts"]) == count, reader
    alert = w.driver.read("BANK-A", GetAlerts()).value["alerts"][0]
    assert (alert["financed_minor"], alert["declared_minor"]) == (8_000_000, 5_000_000)


def test_cancelling_a_financed_declaration_raises_over_financed():
    w = World()
    decl_id = w.decl()
    _approved_on(w, decl_id)
    value = w.ok("CUSTOMS-QD", DeclCancel(decl_id=decl_id, reason="FRAUD"))
    assert value["status"] == "CANCELLED" and value["alert"]["code"] == "OVER_FINANCED"


def test_ebl_issue_transfer_endorse_pledge_and_surrender():
    """eBL: exactly one holder at any time, every move in the chain."""
    w = World()
    ebl_id = w.ebl()
    assert ebl_id == "CARRIER-1/BL-1"
    assert w.ok("EXP-QD", EblTransfer(ebl_id=ebl_id, to="BANK-A"))["holder"] == "BANK-A"
    assert w.ok("BANK-A", EblEndorse(ebl_id=ebl_id, endorsee="IMP-NL"))["holder"] == "IMP-NL"
    assert w.ok("IMP-NL", EblPledge(ebl_id=ebl_id, bank="BANK-I"))["custodian"] == "BANK-I"
    assert w.ok("BANK-I", EblReleasePledge(ebl_id=ebl_id))["holder"] == "IMP-NL"
    w.ok("IMP-NL", EblSurrenderRequest(ebl_id=ebl_id))
    assert w.ok("CARRIER-1", EblSurrenderReject(ebl_id=ebl_id, reason="R"))["status"] == "ISSUED"
    w.ok("IMP-NL", EblSurrenderRequest(ebl_id=ebl_id))
    assert w.ok("CARRIER-1", EblSurrenderAccept(ebl_id=ebl_id))["status"] == "SURRENDERED"
    ebl = w.record("ebl", ebl_id)
    assert [(m["kind"], m["to"]) for m in ebl.chain] == [
        ("issue", "EXP-QD"), ("transfer", "BANK-A"), ("endorse", "IMP-NL"),
    ]  # fmt: skip
    voided = w.ebl()
    assert w.ok("CARRIER-1", EblVoid(ebl_id=voided, reason="R"))["status"] == "VOID"


def test_invoice_fingerprint_ignores_rekeying_but_not_the_amount():
    w = World()
    first = w.ok("EXP-QD", _invoice(invoice_no="INV-0042"))["fingerprint"]
    other = w.ok(
        "EXP-QD", _invoice(invoice_id="INV-OTHER", invoice_no="INV-0042", amount_minor=USD_100K + 1)
    )
    assert len(first) == 32 and other["fingerprint"] != first


def test_collections_partial_then_full_settle_the_receivable_and_encumbrance():
    w = World()
    invoice_id = w.invoice()
    fin_id = w.financing("DISBURSED", invoice_id=invoice_id)
    partial = w.ok(
        "BANK-A",
        RcvRecordCollection(invoice_id=invoice_id, amount_minor=4_000_000, collection_id="COL-T7"),
    )
    assert partial["status"] == "REGISTERED" and partial["collected_minor"] == 4_000_000
    assert (
        w.ok(
            "BANK-A",
            RcvRecordCollection(
                invoice_id=invoice_id, amount_minor=6_000_000, collection_id="COL-T8"
            ),
        )["status"]
        == "SETTLED"
    )
    enc_id = w.record("financing", fin_id).enc_id
    assert w.record("encumbrance", enc_id).status == "SETTLED"
    # Without financing, the seller's sponsoring bank records the collection.
    free = w.invoice()
    assert (
        w.ok(
            "BANK-A",
            RcvRecordCollection(invoice_id=free, amount_minor=USD_100K, collection_id="COL-T9"),
        )["status"]
        == "SETTLED"
    )


def test_financing_request_approve_disburse_repay_close():
    w = World()
    decl_id = w.decl()
    invoice_id = w.invoice()
    fin_id = w.fresh("F")
    assert (
        w.ok("EXP-QD", _fin_request(w, fin_id=fin_id, invoice_id=invoice_id, decl_ids=[decl_id]))[
            "status"
        ]
        == "REQUESTED"
    )
    approved = w.ok("BANK-A", FinApprove(fin_id=fin_id, rate_bp=450))
    assert approved["status"] == "APPROVED" and approved["enc_id"].startswith("ENC-")
    assert (
        w.driver.read("EXP-QD", GetDeclaration(decl_id=decl_id)).value["financeable_balance_minor"]
        == 2_000_000
    )
    assert w.ok("BANK-A", FinDisburse(fin_id=fin_id))["status"] == "DISBURSED"
    assert (
        w.ok("BANK-A", FinRepay(fin_id=fin_id, amount_minor=3_000_000, repayment_id="RP-T13"))[
            "outstanding_minor"
        ]
        == 5_000_000
    )
    repay = FinRepay(fin_id=fin_id, amount_minor=5_000_000, repayment_id="RP-T14")
    assert w.ok("BANK-A", repay)["status"] == "REPAID"
    assert w.ok("BANK-A", FinClose(fin_id=fin_id))["status"] == "CLOSED"
    # Closed without a collection: the encumbrance is released, the receivable free again.
    assert w.record("encumbrance", approved["enc_id"]).status == "RELEASED"
    assert (
        w.driver.read("EXP-QD", GetDeclaration(decl_id=decl_id)).value["financeable_balance_minor"]
        == USD_100K
    )
    again = w.financing("APPROVED", invoice_id=invoice_id, decl_ids=[decl_id], lender="BANK-B")
    assert w.record("financing", again).status == "APPROVED"


def test_financing_rejected_and_closed_before_disbursement():
    w = World()
    fin_id = w.financing()
    assert w.ok("BANK-A", FinReject(fin_id=fin_id, reason="RISK"))["status"] == "REJECTED"
    assert w.record("financing", fin_id).reject_reason == "RISK"
    approved = w.financing("APPROVED")
    assert w.ok("BANK-A", FinClose(fin_id=approved))["status"] == "CLOSED"


def test_approval_spreads_the_amount_over_declarations_in_request_order():
    w = World()
    small, large = w.decl(value=3_000_000), w.decl(value=USD_100K)
    fin_id = w.financing("APPROVED", decl_ids=[small, large], amount=8_000_000)
    encumbrance = w.record("encumbrance", w.record("financing", fin_id).enc_id)
    assert encumbrance.allocations == {small: 3_000_000, large: 5_000_000}


def test_lc_apply_issue_advise_decline_expire_close_cancel():
    w = World()
    assert w.ok("IMP-NL", _lc_apply())["status"] == "SUBMITTED"
    assert w.ok("BANK-I", LcIssue(lc_id="LC-NEW"))["terms_version"] == 1
    assert w.ok("BANK-A", LcAdvise(lc_id="LC-NEW"))["status"] == "ADVISED"
    declined = w.lc("SUBMITTED")
    assert w.ok("BANK-I", LcDecline(lc_id=declined, reason="LIMIT"))["status"] == "DECLINED"
    expiring = w.lc("ISSUED", expiry="2024-03-03")
    assert w.ok("BANK-I", LcExpire(lc_id=expiring))["status"] == "EXPIRED"
    assert w.ok("BANK-I", LcClose(lc_id=expiring))["status"] == "CLOSED"
    exhausted = w.lc()
    w.presentation("DOCS_RELEASED", lc_id=exhausted)
    assert w.ok("BANK-I", LcClose(lc_id=exhausted))["drawn_minor"] == USD_100K
    cancelled = w.lc()
    assert w.ok("EXP-QD", LcConsentCancel(lc_id=cancelled))["cancel_consent"] is True
    assert w.ok("BANK-I", LcCancel(lc_id=cancelled))["status"] == "CANCELLED"


def test_amendment_request_issue_advise_accept_reject():
    w = World()
    lc_id = w.lc()
    changes = {"amount_minor": 12_000_000, "presentation_period_days": 10}
    amend_id = w.fresh("A")
    assert (
        w.ok("IMP-NL", AmendRequest(amend_id=amend_id, lc_id=lc_id, changes=changes))["status"]
        == "REQUESTED"
    )
    assert w.ok("BANK-I", AmendIssue(amend_id=amend_id))["status"] == "ISSUED"
    assert w.ok("BANK-A", AmendAdvise(amend_id=amend_id))["status"] == "ADVISED"
    assert (
        w.ok("EXP-QD", AmendAccept(amend_id=amend_id, accepted_terms=sorted(changes)))[
            "terms_version"
        ]
        == 2
    )
    lc = w.driver.read("EXP-QD", GetLc(lc_id=lc_id)).value
    assert (
        lc["terms"]["amount_minor"] == 12_000_000 and lc["terms"]["presentation_period_days"] == 10
    )
    assert lc["amendment_statuses"] == [[amend_id, "ACCEPTED"]]
    rejected = w.amendment(lc_id=lc_id)
    assert w.ok("EXP-QD", AmendReject(amend_id=rejected))["status"] == "REJECTED"


def test_presentation_to_documents_released():
    w = World()
    lc_id, ebl_id = w.lc(), w.ebl()
    invoice_id = w.invoice()
    pres_id = w.fresh("P")
    assert w.ok("EXP-QD", PresOpen(pres_id=pres_id, lc_id=lc_id))["status"] == "OPEN"
    w.ok("EXP-QD", _attach(pres_id, "ebl", ebl_id))
    w.ok("EXP-QD", _attach(pres_id, "invoice", invoice_id))
    assert (
        w.ok("EXP-QD", _attach(pres_id, "certificate_of_origin", "CO-1", bytes(32)))["documents"]
        == 3
    )
    assert w.record("ebl", ebl_id).locked_by == f"presentation:{pres_id}"
    presented = w.ok("EXP-QD", PresComplete(pres_id=pres_id, amount_minor=USD_100K))
    assert (presented["presented_on"], presented["deadline"]) == ("2024-03-04", "2024-03-11")
    assert w.ok("BANK-I", PresMarkComplying(pres_id=pres_id))["status"] == "COMPLYING"
    assert w.ok("BANK-I", PresHonour(pres_id=pres_id))["drawn_minor"] == USD_100K
    assert w.ok("BANK-I", PresReimburse(pres_id=pres_id))["status"] == "REIMBURSED"
    assert w.ok("BANK-I", PresReleaseDocs(pres_id=pres_id))["status"] == "DOCS_RELEASED"
    ebl = w.record("ebl", ebl_id)
    assert (ebl.holder, ebl.locked_by, ebl.custodian) == ("IMP-NL", None, None)


def test_presentation_refused_waived_honoured_or_returned():
    w = World()
    pres_id = w.presentation()
    refused = w.ok(
        "BANK-I",
        PresRefuse(
            pres_id=pres_id, discrepancies=["LATE_SHIPMENT", "OTHER"], waiver_requested=True
        ),
    )
    assert refused["status"] == "REFUSED"
    assert w.ok("IMP-NL", PresWaive(pres_id=pres_id))["status"] == "WAIVED"
    assert w.ok("BANK-I", PresHonour(pres_id=pres_id))["status"] == "HONOURED"
    ebl_id = w.ebl()
    returned = w.presentation("REFUSED", ebl_id=ebl_id)
    assert w.ok("BANK-I", PresReturnDocs(pres_id=returned))["status"] == "RETURNED"
    ebl = w.record("ebl", ebl_id)
    assert (ebl.holder, ebl.locked_by) == ("EXP-QD", None)
    assert w.ok("EXP-QD", EblTransfer(ebl_id=ebl_id, to="BANK-B"))["holder"] == "BANK-B"


def test_tax_record_and_payments():
    w = World()
    record_id = w.tax_record(amount=3_000)
    assert w.ok("BANK-B", _payment(record_id, payment_id="PAY-1"))["remaining_minor"] == 2_000
    assert (
        w.ok("BANK-A", _payment(record_id, payment_id="PAY-2", amount_minor=2_000))[
            "remaining_minor"
        ]
        == 0
    )
    record = w.record("tax_record", record_id)
    assert record.paying_banks == ["BANK-A", "BANK-B"] and record.payments == ["PAY-1", "PAY-2"]


def test_the_invoice_view_of_a_rival_bank_never_names_the_lender():
    w = World()
    invoice_id = _encumbered_invoice(w)
    view = w.driver.read("BANK-B", GetInvoice(invoice_id=invoice_id)).value
    assert view["encumbered"] is True and "BANK-A" not in repr(view)


def test_every_command_and_query_has_a_builder_and_round_trips():
    from tradeapp.commands import decode_operation

    for name, cls in sorted(OPERATIONS.items()):
        op = example_operation(cls)
        envelope = decode_operation(op.encode("SOMEONE"))
        assert (envelope.name, envelope.operation, envelope.claimed_actor) == (name, op, "SOMEONE")
    assert isinstance(World().driver.run(FX_ADMIN, GetAlerts()), Accepted)


@pytest.fixture(scope="module")
def fuzzed_world() -> World:
    """A world with one record of each kind in a working status, for fuzzing."""
    w = World(check_invariants=True)
    w.presentation("PRESENTED")
    w.financing("DISBURSED")
    w.amendment("ADVISED")
    w.payment()
    return w


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(op=operations(), actor=st.sampled_from(["BANK-A", "EXP-QD", "CUSTOMS-QD", FX_ADMIN, "X"]))
def test_any_well_typed_operation_from_anyone_never_raises(fuzzed_world, op, actor):
    """StateMachine contract: bad operations produce an error result, never an exception; a
    refusal leaves the domain state as it was; the invariants hold (check_invariants)."""
    world = fuzzed_world
    ledger = world.driver.ledger
    before = ledger.domain_digest()
    result = world.driver.run(actor, op)
    if isinstance(result, Rejected):
        assert ledger.domain_digest() == before
