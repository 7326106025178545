"""Scenarios 1-7 of docs/TRADE-DOMAIN.md, black-box: commands and reads through the wire format
only, driving `TradeLedger` instances directly (consensus played by `LedgerDriver`)."""

from __future__ import annotations

from pbft.crypto import sha256
from tradeapp import ErrorCode, TradeLedger
from tradeapp.audit import verify_chain
from tradeapp.commands import (
    OPERATIONS,
    REPORTS,
    Accepted,
    AmendAccept,
    AmendAdvise,
    AmendIssue,
    AmendReject,
    AmendRequest,
    CalAddHoliday,
    DeclAccept,
    DeclLodge,
    DeclRelease,
    EblIssue,
    EblSurrenderAccept,
    EblSurrenderRequest,
    FinApprove,
    FinClose,
    FinDisburse,
    FinRepay,
    FinRequest,
    GetAudit,
    GetDeclaration,
    GetEbl,
    GetFinancing,
    GetInvoice,
    GetLc,
    GetParticipant,
    GetTaxRecord,
    InvRegister,
    LcAdvise,
    LcApply,
    LcCancel,
    LcClose,
    LcConsentCancel,
    LcExpire,
    LcIssue,
    PayServiceOutward,
    PresAttach,
    PresComplete,
    PresHonour,
    PresMarkComplying,
    PresOpen,
    PresRefuse,
    PresReimburse,
    PresReleaseDocs,
    PresWaive,
    RcvRecordCollection,
    RegFlag,
    Rejected,
    ReportDeclarationsFinanced,
    ReportLcTotals,
    ReportOutstandingFinancing,
    ReportRejections,
    ReportTaxUsage,
    TaxRegisterRecord,
)
from tradeapp.scenario import FX_ADMIN, LedgerDriver, at, cast_driver, cast_ledger

USD_100K = 10_000_000  # USD 100,000.00 in cents


def _replay(driver: LedgerDriver, replicas: int = 4) -> list[TradeLedger]:
    """Apply the driver's ordered log to fresh instances; results must match the original's."""
    ledgers = [cast_ledger() for _ in range(replicas)]
    for entry in driver.log:
        results = {ledger.execute(entry.operation, entry.context) for ledger in ledgers}
        assert len(results) == 1
    return ledgers


def _issued_lc(
    driver: LedgerDriver,
    lc_id: str,
    *,
    amount: int = USD_100K,
    expiry: str = "2024-06-30",
    latest_shipment: str = "2024-05-31",
) -> None:
    driver.ok(
        "IMP-NL",
        LcApply(
            lc_id=lc_id, issuing_bank="BANK-I", advising_bank="BANK-A", beneficiary="EXP-QD",
            currency="USD", amount_minor=amount, expiry_date=expiry,
            latest_shipment_date=latest_shipment, presentation_period_days=21,
            goods_description="LED lamps, 20,000 pcs",
        ),
    )  # fmt: skip
    driver.ok("BANK-I", LcIssue(lc_id=lc_id))
    driver.ok("BANK-A", LcAdvise(lc_id=lc_id))


def _released_declaration(driver: LedgerDriver, decl_id: str, value: int = USD_100K) -> None:
    driver.ok(
        "EXP-QD",
        DeclLodge(
            decl_id=decl_id, customs="CUSTOMS-QD", buyer="IMP-NL", goods_description="LED lamps",
            hs_code="9405.42", currency="USD", declared_value_minor=value,
        ),
    )  # fmt: skip
    driver.ok("CUSTOMS-QD", DeclAccept(decl_id=decl_id))
    driver.ok("CUSTOMS-QD", DeclRelease(decl_id=decl_id))


def _ebl(driver: LedgerDriver, bl_no: str, shipped: str) -> str:
    value = driver.ok(
        "CARRIER-1",
        EblIssue(
            bl_no=bl_no, shipper="EXP-QD", consignee="IMP-NL", holder="EXP-QD",
            goods_description="LED lamps", port_of_loading="Qingdao",
            port_of_discharge="Rotterdam", shipped_on_board_date=shipped,
        ),
    )  # fmt: skip
    return value["ebl_id"]


def _presented(
    driver: LedgerDriver,
    pres_id: str,
    lc_id: str,
    ebl_id: str,
    invoice_id: str | None = None,
    amount: int = USD_100K,
) -> dict:
    driver.ok("EXP-QD", PresOpen(pres_id=pres_id, lc_id=lc_id))
    driver.ok(
        "EXP-QD", PresAttach(pres_id=pres_id, doc_type="ebl", ref=ebl_id, content_digest=None)
    )
    if invoice_id is not None:
        driver.ok(
            "EXP-QD",
            PresAttach(pres_id=pres_id, doc_type="invoice", ref=invoice_id, content_digest=None),
        )
    driver.ok(
        "EXP-QD",
        PresAttach(
            pres_id=pres_id, doc_type="packing_list", ref="PL-1",
            content_digest=sha256(b"packing list"),
        ),
    )  # fmt: skip
    return driver.ok("EXP-QD", PresComplete(pres_id=pres_id, amount_minor=amount))


def scenario_1(driver: LedgerDriver) -> None:
    """Scenario 1: sight LC, complying electronic presentation with an eBL, to the LC's close."""
    _issued_lc(driver, "LC-1")
    _released_declaration(driver, "D-1")
    driver.now_ms = at("2024-04-10")
    ebl_id = _ebl(driver, "BL-1", "2024-04-10")
    driver.ok(
        "EXP-QD",
        InvRegister(
            invoice_id="INV-1", buyer="IMP-NL", invoice_no="INV-0001", currency="USD",
            amount_minor=USD_100K, issue_date="2024-04-10",
        ),
    )  # fmt: skip
    driver.now_ms = at("2024-04-15")  # a Monday
    presented = _presented(driver, "P-1", "LC-1", ebl_id, "INV-1")
    assert presented["deadline"] == "2024-04-22"  # five banking days at BANK-I's place
    driver.now_ms = at("2024-04-16")
    driver.ok("BANK-I", PresMarkComplying(pres_id="P-1"))
    driver.ok("BANK-I", PresHonour(pres_id="P-1"))
    driver.ok("BANK-I", PresReimburse(pres_id="P-1"))
    driver.ok("BANK-I", PresReleaseDocs(pres_id="P-1"))
    driver.ok("IMP-NL", EblSurrenderRequest(ebl_id=ebl_id))
    driver.ok("CARRIER-1", EblSurrenderAccept(ebl_id=ebl_id))
    driver.ok("BANK-I", LcClose(lc_id="LC-1"))


def test_scenario_1_sight_lc_with_complying_presentation():
    driver = cast_driver(at("2024-03-01"), check_invariants=True)
    scenario_1(driver)
    lc = driver.read(FX_ADMIN, GetLc(lc_id="LC-1"))
    assert isinstance(lc, Accepted)
    assert lc.value["status"] == "CLOSED" and lc.value["drawn_minor"] == USD_100K
    ebl = driver.read("IMP-NL", GetEbl(ebl_id="CARRIER-1/BL-1")).value
    assert ebl["status"] == "SURRENDERED" and ebl["holder"] == "IMP-NL"
    assert [move["to"] for move in ebl["chain"]] == ["EXP-QD", "IMP-NL"]
    # BANK-B cannot read the LC; FX_ADMIN can.
    refused = driver.read("BANK-B", GetLc(lc_id="LC-1"))
    assert isinstance(refused, Rejected) and refused.code == ErrorCode.FORBIDDEN
    # The audit chain verifies, one event per command.
    ledger = driver.ledger
    assert verify_chain(ledger.audit_events, ledger.genesis_hash) is None
    assert len(ledger.audit_events) == len(driver.log)
    # State digests equal on all replicas.
    assert {replica.digest() for replica in _replay(driver)} == {ledger.digest()}


def test_scenario_1_rival_bank_refused_read_is_audited_when_ordered():
    """Scenario 1 + visibility: an ordered read refused with FORBIDDEN leaves an audit event."""
    driver = cast_driver(at("2024-03-01"))
    _issued_lc(driver, "LC-1")
    before = driver.ledger.domain_digest()
    result = driver.run("BANK-B", GetLc(lc_id="LC-1"))
    assert isinstance(result, Rejected) and result.code == ErrorCode.FORBIDDEN
    event = driver.ledger.audit_events[-1]
    assert (event.actor, event.command, event.outcome) == ("BANK-B", "get.lc", "FORBIDDEN")
    assert driver.ledger.domain_digest() == before


def test_scenario_2_amendments_and_cancellation():
    driver = cast_driver(at("2024-03-01"), check_invariants=True)
    _issued_lc(driver, "LC-2")
    changes = {"amount_minor": 12_000_000, "latest_shipment_date": "2024-06-15"}
    driver.ok("IMP-NL", AmendRequest(amend_id="A-1", lc_id="LC-2", changes=changes))
    driver.ok("BANK-I", AmendIssue(amend_id="A-1"))
    driver.ok("BANK-A", AmendAdvise(amend_id="A-1"))
    # Partial acceptance is refused: the amendment stays advised, terms stay v1.
    driver.refused(
        "EXP-QD", AmendAccept(amend_id="A-1", accepted_terms=["amount_minor"]),
        ErrorCode.PARTIAL_ACCEPTANCE,
    )  # fmt: skip
    assert driver.read("EXP-QD", GetLc(lc_id="LC-2")).value["terms_version"] == 1
    accepted = driver.ok(
        "EXP-QD",
        AmendAccept(amend_id="A-1", accepted_terms=["latest_shipment_date", "amount_minor"]),
    )
    assert accepted["terms_version"] == 2
    lc = driver.read("IMP-NL", GetLc(lc_id="LC-2")).value
    assert lc["terms"]["amount_minor"] == 12_000_000
    assert lc["terms"]["latest_shipment_date"] == "2024-06-15"
    # A second amendment, rejected by the beneficiary: terms stay v2.
    driver.ok(
        "IMP-NL", AmendRequest(amend_id="A-2", lc_id="LC-2", changes={"expiry_date": "2024-07-31"})
    )
    driver.ok("BANK-I", AmendIssue(amend_id="A-2"))
    driver.ok("BANK-A", AmendAdvise(amend_id="A-2"))
    driver.ok("EXP-QD", AmendReject(amend_id="A-2"))
    lc = driver.read("IMP-NL", GetLc(lc_id="LC-2")).value
    assert lc["terms_version"] == 2 and lc["terms"]["expiry_date"] == "2024-06-30"
    driver.ok(
        "IMP-NL", AmendRequest(amend_id="A-3", lc_id="LC-2", changes={"goods_description": "LED"})
    )
    # Cancellation: refused without the beneficiary's consent, granted with it.
    driver.refused("BANK-I", LcCancel(lc_id="LC-2"), ErrorCode.CONSENT_REQUIRED)
    driver.ok("EXP-QD", LcConsentCancel(lc_id="LC-2"))
    driver.ok("BANK-I", LcCancel(lc_id="LC-2"))
    # Every later command on the LC: INVALID_STATE.
    for actor, op in [
        ("BANK-I", LcCancel(lc_id="LC-2")),
        ("BANK-I", LcIssue(lc_id="LC-2")),
        ("BANK-A", LcAdvise(lc_id="LC-2")),
        ("BANK-I", LcExpire(lc_id="LC-2")),
        ("BANK-I", LcClose(lc_id="LC-2")),
        ("EXP-QD", LcConsentCancel(lc_id="LC-2")),
        (
            "IMP-NL",
            AmendRequest(amend_id="A-4", lc_id="LC-2", changes={"expiry_date": "2024-07-31"}),
        ),
        ("BANK-I", AmendIssue(amend_id="A-3")),
        ("EXP-QD", PresOpen(pres_id="P-2", lc_id="LC-2")),
    ]:
        driver.refused(actor, op, ErrorCode.INVALID_STATE)


def _discrepant_setup(driver: LedgerDriver, lc_id: str, bl_no: str) -> str:
    """An LC whose latest shipment date (5 April) the eBL (10 April) misses."""
    _issued_lc(driver, lc_id, latest_shipment="2024-04-05")
    driver.now_ms = at("2024-04-10")
    return _ebl(driver, bl_no, "2024-04-10")


def test_scenario_3_discrepant_presentation_refused_waived_honoured():
    driver = cast_driver(at("2024-03-01"), check_invariants=True)
    ebl_id = _discrepant_setup(driver, "LC-3", "BL-3")
    driver.now_ms = at("2024-04-15")
    assert _presented(driver, "P-3", "LC-3", ebl_id)["deadline"] == "2024-04-22"
    driver.now_ms = at("2024-04-17")
    driver.ok(
        "BANK-I",
        PresRefuse(pres_id="P-3", discrepancies=["LATE_SHIPMENT"], waiver_requested=True),
    )
    driver.refused(
        "BANK-I", PresRefuse(pres_id="P-3", discrepancies=["OTHER"], waiver_requested=False),
        ErrorCode.ALREADY_ANSWERED,
    )  # fmt: skip
    driver.ok("IMP-NL", PresWaive(pres_id="P-3"))
    honoured = driver.ok("BANK-I", PresHonour(pres_id="P-3"))
    assert honoured["drawn_minor"] == USD_100K
    driver.refused("BANK-I", PresHonour(pres_id="P-3"), ErrorCode.ALREADY_HONOURED)


def test_scenario_3_variant_refusal_after_the_fifth_banking_day_is_precluded():
    driver = cast_driver(at("2024-03-01"))
    ebl_id = _discrepant_setup(driver, "LC-3", "BL-3")
    driver.now_ms = at("2024-04-15")
    _presented(driver, "P-3", "LC-3", ebl_id)
    driver.now_ms = at("2024-04-23")  # the sixth banking day
    refuse = PresRefuse(pres_id="P-3", discrepancies=["LATE_SHIPMENT"], waiver_requested=False)
    driver.refused("BANK-I", refuse, ErrorCode.PRECLUDED)
    fresh = cast_driver(at("2024-03-01"))
    ebl_id = _discrepant_setup(fresh, "LC-3", "BL-3")
    fresh.now_ms = at("2024-04-15")
    _presented(fresh, "P-3", "LC-3", ebl_id)
    fresh.now_ms = at("2024-04-22", hour=22)  # 23:00 at BANK-I's place: still the fifth day
    fresh.ok("BANK-I", refuse)


def test_scenario_3_variant_a_holiday_registered_beforehand_moves_the_deadline():
    driver = cast_driver(at("2024-03-01"))
    ebl_id = _discrepant_setup(driver, "LC-3", "BL-3")
    driver.ok(FX_ADMIN, CalAddHoliday(place="NL-AMS", date="2024-04-18"))
    driver.now_ms = at("2024-04-15")
    assert _presented(driver, "P-3", "LC-3", ebl_id)["deadline"] == "2024-04-23"
    # A holiday registered after the presentation does not move the stored deadline.
    driver.ok(FX_ADMIN, CalAddHoliday(place="NL-AMS", date="2024-04-19"))
    driver.now_ms = at("2024-04-23")
    driver.ok(
        "BANK-I",
        PresRefuse(pres_id="P-3", discrepancies=["LATE_SHIPMENT"], waiver_requested=False),
    )


def test_scenario_3_variant_presentation_after_shipment_plus_21_days_is_late():
    driver = cast_driver(at("2024-03-01"))
    ebl_id = _discrepant_setup(driver, "LC-3", "BL-3")
    driver.now_ms = at("2024-05-02")  # shipment 10 April + 22 days
    driver.ok("EXP-QD", PresOpen(pres_id="P-3", lc_id="LC-3"))
    driver.ok("EXP-QD", PresAttach(pres_id="P-3", doc_type="ebl", ref=ebl_id, content_digest=None))
    driver.refused(
        "EXP-QD", PresComplete(pres_id="P-3", amount_minor=USD_100K), ErrorCode.LATE_PRESENTATION
    )
    on_time = cast_driver(at("2024-03-01"))
    ebl_id = _discrepant_setup(on_time, "LC-3", "BL-3")
    on_time.now_ms = at("2024-05-01")  # the 21st day
    _presented(on_time, "P-3", "LC-3", ebl_id)


def _financed_export(driver: LedgerDriver) -> None:
    """Scenario 4 up to disbursement: 80 % of a 100k receivable, backed by the declaration."""
    _released_declaration(driver, "D-4")
    driver.ok(
        "EXP-QD",
        InvRegister(
            invoice_id="INV-4", buyer="IMP-NL", invoice_no="2024/0042", currency="USD",
            amount_minor=USD_100K, issue_date="2024-03-01",
        ),
    )  # fmt: skip
    driver.ok(
        "EXP-QD",
        FinRequest(
            fin_id="F-4", lender="BANK-A", invoice_id="INV-4", decl_ids=["D-4"],
            currency="USD", amount_minor=8_000_000,
        ),
    )  # fmt: skip
    driver.now_ms += 2 * 3_600_000
    driver.ok("BANK-A", FinApprove(fin_id="F-4", rate_bp=450))
    driver.ok("BANK-A", FinDisburse(fin_id="F-4"))


def test_scenario_4_export_receivable_financing():
    driver = cast_driver(at("2024-03-01"), check_invariants=True)
    _financed_export(driver)
    decl = driver.read("EXP-QD", GetDeclaration(decl_id="D-4")).value
    assert decl["financeable_balance_minor"] == 2_000_000  # the balance dropped by 80 %
    report = driver.read(FX_ADMIN, ReportOutstandingFinancing()).value
    assert report["rows"] == [["BANK-A", "EXP-QD", "USD", 1, 8_000_000, 8_000_000]]
    report = driver.read(FX_ADMIN, ReportDeclarationsFinanced()).value
    assert report["rows"] == [["D-4", "EXP-QD", "USD", USD_100K, 8_000_000, 2_000_000, False, 1]]
    # A rival bank sees that the receivable is encumbered, never by whom.
    rival_view = driver.read("BANK-B", GetInvoice(invoice_id="INV-4")).value
    assert rival_view == {
        "invoice_id": "INV-4", "encumbered": True, "settled": False, "remaining_minor": 2_000_000,
    }  # fmt: skip
    # Buyer pays, loan repaid, closed.
    driver.ok(
        "BANK-A",
        RcvRecordCollection(invoice_id="INV-4", amount_minor=USD_100K, collection_id="COL-4"),
    )
    driver.ok("BANK-A", FinRepay(fin_id="F-4", amount_minor=8_000_000, repayment_id="RP-4"))
    driver.ok("BANK-A", FinClose(fin_id="F-4"))
    assert driver.read(FX_ADMIN, ReportOutstandingFinancing()).value["rows"] == []
    # A second financing of the settled receivable elsewhere.
    driver.ok(
        "EXP-QD",
        FinRequest(
            fin_id="F-4B", lender="BANK-B", invoice_id="INV-4", decl_ids=["D-4"],
            currency="USD", amount_minor=1_000_000,
        ),
    )  # fmt: skip
    driver.refused("BANK-B", FinApprove(fin_id="F-4B", rate_bp=400), ErrorCode.RECEIVABLE_SETTLED)


def test_scenario_4_two_approvals_racing_in_one_batch_exactly_one_wins():
    """Scenario 4 / the double-financing fraud: two banks approve the same receivable in one
    batch; on every replica the first in batch order wins, the second is ALREADY_ENCUMBERED."""
    driver = cast_driver(at("2024-03-01"))
    _released_declaration(driver, "D-4")
    driver.ok(
        "EXP-QD",
        InvRegister(
            invoice_id="INV-4", buyer="IMP-NL", invoice_no="2024/0042", currency="USD",
            amount_minor=USD_100K, issue_date="2024-03-01",
        ),
    )  # fmt: skip
    for fin_id, lender in (("F-A", "BANK-A"), ("F-B", "BANK-B")):
        driver.ok(
            "EXP-QD",
            FinRequest(
                fin_id=fin_id, lender=lender, invoice_id="INV-4", decl_ids=["D-4"],
                currency="USD", amount_minor=5_000_000,
            ),
        )  # fmt: skip
    driver.sequence += 1
    first = driver.run_in_batch("BANK-B", FinApprove(fin_id="F-B", rate_bp=400).encode())
    second = driver.run_in_batch("BANK-A", FinApprove(fin_id="F-A", rate_bp=300).encode())
    assert isinstance(first, Accepted)
    assert isinstance(second, Rejected) and second.code == ErrorCode.ALREADY_ENCUMBERED
    assert {replica.digest() for replica in _replay(driver)} == {driver.ledger.digest()}


def test_scenario_5_service_trade_payments_up_to_the_recorded_amount():
    driver = cast_driver(at("2024-03-01"), check_invariants=True)
    payee = "ACME Consulting GmbH"
    driver.ok(
        "TAX-QD",
        TaxRegisterRecord(
            record_id="TR-5", payer="SVC-CN", payee=payee, currency="EUR",
            amount_minor=5_000_000, contract_ref="SVC-2024-7",
        ),
    )  # fmt: skip

    def payment(payment_id: str, amount: int, to: str = payee) -> PayServiceOutward:
        return PayServiceOutward(
            payment_id=payment_id, record_id="TR-5", payer="SVC-CN", payee=to,
            currency="EUR", amount_minor=amount,
        )  # fmt: skip

    assert driver.ok("BANK-B", payment("PAY-1", 3_000_000))["remaining_minor"] == 2_000_000
    assert driver.ok("BANK-A", payment("PAY-2", 2_000_000))["remaining_minor"] == 0
    driver.refused("BANK-B", payment("PAY-3", 1), ErrorCode.EXCEEDS_RECORD)
    driver.refused("BANK-B", payment("PAY-4", 1, to="Someone Else Ltd"), ErrorCode.PAYEE_MISMATCH)
    record = driver.read("TAX-QD", GetTaxRecord(record_id="TR-5")).value
    assert record["used_minor"] == 5_000_000 and record["paying_banks"] == ["BANK-A", "BANK-B"]
    usage = driver.read("TAX-QD", ReportTaxUsage()).value["rows"]
    assert usage == [["TR-5", "SVC-CN", "EUR", 5_000_000, 5_000_000, 0, 2, 2]]
    # A bank that never paid on it sees the remaining balance only.
    assert driver.read("BANK-I", GetTaxRecord(record_id="TR-5")).value == {
        "record_id": "TR-5", "currency": "EUR", "remaining_minor": 0,
    }  # fmt: skip


def test_scenario_6_regulator():
    driver = cast_driver(at("2024-03-01"), check_invariants=True)
    _financed_export(driver)
    _issued_lc(driver, "LC-6")
    # Customs sees the financing flag on its declaration, but not the pricing.
    decl = driver.read("CUSTOMS-QD", GetDeclaration(decl_id="D-4")).value
    assert decl["financed"] is True and decl["financed_minor"] == 8_000_000
    financing = driver.read("CUSTOMS-QD", GetFinancing(fin_id="F-4")).value
    assert financing["amount_minor"] == 8_000_000 and financing["status"] == "DISBURSED"
    assert "rate_bp" not in financing and "lender" not in financing
    assert driver.read(FX_ADMIN, GetFinancing(fin_id="F-4")).value["rate_bp"] == 450
    # A rival bank is refused.
    for op in (GetFinancing(fin_id="F-4"), GetLc(lc_id="LC-6")):
        assert driver.read("BANK-B", op).code == ErrorCode.FORBIDDEN
    # FX_ADMIN trying to repay a loan is refused; flagging a trader is accepted.
    driver.refused(
        FX_ADMIN, FinRepay(fin_id="F-4", amount_minor=1, repayment_id="RP-X"),
        ErrorCode.UNAUTHORIZED,
    )  # fmt: skip
    driver.ok(FX_ADMIN, RegFlag(participant_id="EXP-QD", reason="UNUSUAL_VOLUME", note="review"))
    flags = driver.read(FX_ADMIN, GetParticipant(participant_id="EXP-QD")).value["flags"]
    assert [flag["reason"] for flag in flags] == ["UNUSUAL_VOLUME"]
    assert "flags" not in driver.read("BANK-A", GetParticipant(participant_id="EXP-QD")).value
    rejections = driver.read(FX_ADMIN, ReportRejections()).value["rows"]
    assert rejections == [["UNAUTHORIZED", FX_ADMIN, 1]]
    # Reports are byte-identical on every replica at the same sequence number.
    replicas = _replay(driver)
    fx_key = driver.key(FX_ADMIN)
    for name in REPORTS:
        answers = {replica.query(OPERATIONS[name]().encode(), fx_key) for replica in replicas}
        assert answers == {driver.ledger.query(OPERATIONS[name]().encode(), fx_key)}, name
    lc_totals = driver.read(FX_ADMIN, ReportLcTotals()).value["rows"]
    assert lc_totals == [["BANK-I", "USD", 1, USD_100K, 0, 0, 0]]
    # FX_ADMIN reads every audit event; customs its domain's.
    events = driver.read(FX_ADMIN, GetAudit(start=0, limit=256)).value["events"]
    assert len(events) == len(driver.log)
    customs_events = driver.read("CUSTOMS-QD", GetAudit(start=0, limit=256)).value["events"]
    assert customs_events and all(
        e["command"].startswith("decl.") or e["actor"] == "CUSTOMS-QD" for e in customs_events
    )


def test_scenario_7_a_replica_crashes_mid_scenario_1_and_recovers():
    """Scenario 7: replica 3 stops halfway through scenario 1; it comes back from replica 0's
    snapshot at a checkpoint taken while it was down, replays the rest of the log, and ends
    with the others' digest. A second replica recovers by replaying the whole log instead."""
    driver = cast_driver(at("2024-03-01"))
    scenario_1(driver)
    log = driver.log
    crash_at, checkpoint_at = len(log) // 2, (3 * len(log)) // 4
    replicas = [cast_ledger() for _ in range(4)]
    checkpoint = b""
    for position, entry in enumerate(log):
        for number, replica in enumerate(replicas):
            if number == 3 and crash_at <= position:
                continue  # crashed
            replica.execute(entry.operation, entry.context)
        if position == checkpoint_at:
            checkpoint = replicas[0].snapshot()
    recovered = cast_ledger()
    recovered.restore(checkpoint)
    for entry in log[checkpoint_at + 1 :]:
        recovered.execute(entry.operation, entry.context)
    from_scratch = cast_ledger()
    for entry in log:
        from_scratch.execute(entry.operation, entry.context)
    assert replicas[3].digest() != replicas[0].digest()  # it really fell behind
    digests = {replica.digest() for replica in replicas[:3]}
    assert digests == {recovered.digest()} == {from_scratch.digest()} == {driver.ledger.digest()}
    assert recovered.snapshot() == driver.ledger.snapshot()
