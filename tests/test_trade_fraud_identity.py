"""The ledger against fraudsters (issue 15, items 8-13): one enterprise is one participant,
suspension stops pending financing, money-moving commands are recognised when resubmitted,
need-to-know in alerts, receivables and record lookups, and the regulator's view of who tries
to borrow twice. Rule names are those of docs/TRADE-DOMAIN.md and tradeapp/README.md
("Choices where docs/TRADE-DOMAIN.md leaves room")."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio

from pbft.runtime.client import NoQuorumError
from tradeapp import Accepted, ErrorCode, Rejected
from tradeapp.client import TradeClient, fill_request_id, new_request_id
from tradeapp.commands import (
    DeclApproveAmendment,
    FinApprove,
    FinClose,
    FinDisburse,
    FinRepay,
    GetAlerts,
    GetAudit,
    GetDeclaration,
    GetEbl,
    GetFinancing,
    GetInvoice,
    GetLc,
    GetPresentation,
    GetTaxRecord,
    InvRegister,
    PartyAdmit,
    PartyReinstate,
    PartySuspend,
    PayServiceOutward,
    RcvRecordCollection,
    ReportRejections,
    decode_operation,
    encode_accepted,
)
from tradeapp.fingerprint import enterprise_key
from tradeapp.invariants import violations
from tradeapp.scenario import CAST, FX_ADMIN

from .test_trade_world import USD_100K, World


def _admit(w: World, admitter: str, participant_id: str, *, tax_id: str, country: str = "CN",
           role: str = "TRADER"):  # fmt: skip
    return w.driver.run(
        admitter,
        PartyAdmit(
            participant_id=participant_id, role=role, legal_name=participant_id,
            country=country, tax_id=tax_id, public_key=w.driver.key(participant_id),
            place="CN-QD",
        ),
    )  # fmt: skip


def _refused(result, code: ErrorCode) -> str:
    assert isinstance(result, Rejected), result
    assert result.code == code, result
    return result.message


# ================================================================ item 8: one enterprise


@pytest.mark.parametrize(
    ("tax_id", "country"),
    [
        ("91370200EXPQD", "CN"),  # the very tax id
        ("91370200-expqd", "CN"),  # keyed with a dash, in lower case
        (" 9137 0200 EXPQD ", " cn "),  # spaces, a country keyed in lower case
        ("\uff19\uff11\uff13\uff17\uff10\uff12\uff10\uff10EXPQD", "CN"),  # fullwidth digits (NFKC)
        ("91370200\u0415XPQD", "CN"),  # a Cyrillic Ie for the E (the TS #39 skeleton)
        ("9137O2OOEXPQD", "CN"),  # Latin O for the digit 0 (the skeleton)
    ],
)
def test_a_second_participant_for_an_admitted_enterprise_is_refused(tax_id, country):
    """Rule "one enterprise, one participant" (issue 15, item 8): BANK-B onboarding a clone of
    EXP-QD (BANK-A's customer) under any keying of its tax id is DUPLICATE_ENTERPRISE, changes
    nothing, and the refusal does not tell BANK-B who the enterprise banks with."""
    w = World()
    before = w.driver.ledger.domain_digest()
    message = _refused(
        _admit(w, "BANK-B", "EXP-QD-CLONE", tax_id=tax_id, country=country),
        ErrorCode.DUPLICATE_ENTERPRISE,
    )
    assert "EXP-QD" not in message.replace(tax_id, "") and "BANK-A" not in message
    assert w.driver.ledger.domain_digest() == before
    assert w.record("participant", "EXP-QD-CLONE") is None


def test_the_clone_cannot_lock_the_real_enterprise_out_of_its_invoice():
    """The attack of item 8: the clone would register EXP-QD's invoice first (same seller tax
    id, so the same fingerprint) and EXP-QD's own registration would be DUPLICATE_INVOICE."""
    w = World()
    _refused(_admit(w, "BANK-B", "CLONE", tax_id="91370200EXPQD"), ErrorCode.DUPLICATE_ENTERPRISE)
    invoice = InvRegister(
        invoice_id="INV-REAL", buyer="IMP-NL", invoice_no="2024/7", currency="USD",
        amount_minor=USD_100K, issue_date="2024-03-01",
    )  # fmt: skip
    _refused(w.driver.run("CLONE", invoice), ErrorCode.UNKNOWN_PARTICIPANT)
    assert w.driver.run("EXP-QD", invoice).ok


def test_a_same_tax_id_in_another_country_cannot_lock_the_enterprise_out_of_its_invoice():
    """Item 8 through another country: BANK-B may onboard "EXP-VN" with EXP-QD's tax id in VN
    (another enterprise), but its invoices are its own receivables: the fingerprint's seller is
    the enterprise (tax id and country), so registering EXP-QD's invoice first does not make
    EXP-QD's own registration DUPLICATE_INVOICE."""
    w = World()
    assert _admit(w, "BANK-B", "EXP-VN", tax_id="91370200EXPQD", country="VN").ok
    invoice = InvRegister(
        invoice_id="INV-VN", buyer="IMP-NL", invoice_no="2024/7", currency="USD",
        amount_minor=USD_100K, issue_date="2024-03-01",
    )  # fmt: skip
    assert w.driver.run("EXP-VN", invoice).ok
    assert w.driver.run("EXP-QD", replace(invoice, invoice_id="INV-QD")).ok
    assert w.record("invoice", "INV-VN").fingerprint != w.record("invoice", "INV-QD").fingerprint


def test_a_suspended_enterprise_still_is_that_enterprise():
    """Suspending EXP-QD does not free its tax id for a new participant (else: suspend, then
    onboard the clone)."""
    w = World()
    w.ok(FX_ADMIN, PartySuspend(participant_id="EXP-QD"))
    _refused(_admit(w, "BANK-B", "CLONE", tax_id="91370200EXPQD"), ErrorCode.DUPLICATE_ENTERPRISE)


def test_the_same_tax_id_in_another_country_is_another_enterprise_and_an_empty_one_is_malformed():
    w = World()
    assert _admit(w, "BANK-B", "EXP-VN", tax_id="91370200EXPQD", country="VN").ok
    _refused(_admit(w, "BANK-B", "NOBODY", tax_id=" - / "), ErrorCode.MALFORMED)
    # The rule holds for every role: FX_ADMIN cannot admit a second bank with BANK-A's tax id.
    _refused(
        _admit(w, FX_ADMIN, "BANK-A2", tax_id="CN-BANK-A", role="BANK"),
        ErrorCode.DUPLICATE_ENTERPRISE,
    )


def test_the_enterprise_key_folds_what_it_says_and_no_more():
    assert enterprise_key("91370200-expqd", " cn") == enterprise_key("91370200EXPQD", "CN")
    assert enterprise_key("\uff19\uff11EXP", "CN") == enterprise_key("91EXP", "CN")  # NFKC
    # Leading zeros are significant in a tax id (unlike in an invoice number).
    assert enterprise_key("0091EXP", "CN") != enterprise_key("91EXP", "CN")
    assert enterprise_key("91370200EXPQD", "CN") != enterprise_key("91370200EXPQE", "CN")
    assert enterprise_key("91370200EXPQD", "CN") != enterprise_key("91370200EXPQD", "VN")
    assert enterprise_key("--", "CN") == ""
    keys = [enterprise_key(m.tax_id, m.country) for m in CAST]
    assert len(set(keys)) == len(keys), "the common cast is one participant per enterprise"


# ================================================================ item 9: suspension


def test_suspension_takes_effect_at_its_place_in_the_order():
    """Rule "suspension at its sequence number" (issue 15, item 9): a request of the suspended
    key ordered after the suspension, in the same batch or later, is PARTICIPANT_SUSPENDED; one
    ordered before it, in the same batch, executed before it and stands."""
    w = World()
    driver = w.driver
    before = InvRegister(
        invoice_id="INV-B", buyer="IMP-NL", invoice_no="B-1", currency="USD",
        amount_minor=1_000, issue_date="2024-03-01",
    )  # fmt: skip
    after = InvRegister(
        invoice_id="INV-A", buyer="IMP-NL", invoice_no="A-1", currency="USD",
        amount_minor=1_000, issue_date="2024-03-01",
    )  # fmt: skip
    assert driver.run("EXP-QD", before).ok
    driver.run_in_batch(FX_ADMIN, PartySuspend(participant_id="EXP-QD").encode())
    result = driver.run_in_batch("EXP-QD", after.encode())
    _refused(result, ErrorCode.PARTICIPANT_SUSPENDED)
    assert w.record("invoice", "INV-B") is not None and w.record("invoice", "INV-A") is None
    sequences = {e.sequence for e in driver.ledger.audit_events[-3:]}
    assert len(sequences) == 1, "the three ran in one batch"
    _refused(driver.run("EXP-QD", after), ErrorCode.PARTICIPANT_SUSPENDED)


def test_a_suspended_applicants_pending_financing_is_neither_approved_nor_disbursed():
    """Item 9, pending requests: EXP-QD asked BANK-A for financing before it was suspended;
    the approval after the suspension is refused (INVALID_PARTY), and so is the disbursement
    of one approved before it; money coming back (repayment) is still recorded. Reinstated,
    the request proceeds."""
    w = World()
    requested = w.financing("REQUESTED")
    approved = w.financing("APPROVED")
    disbursed = w.financing("DISBURSED")
    w.ok(FX_ADMIN, PartySuspend(participant_id="EXP-QD"))
    before = w.driver.ledger.domain_digest()
    _refused(w.driver.run("BANK-A", FinApprove(fin_id=requested, rate_bp=450)),
             ErrorCode.INVALID_PARTY)  # fmt: skip
    _refused(w.driver.run("BANK-A", FinDisburse(fin_id=approved)), ErrorCode.INVALID_PARTY)
    assert w.driver.ledger.domain_digest() == before
    repay = FinRepay(fin_id=disbursed, amount_minor=1_000, repayment_id="RP-S1")
    assert w.ok("BANK-A", repay)["status"] == "DISBURSED"
    w.ok(FX_ADMIN, PartyReinstate(participant_id="EXP-QD"))
    assert w.ok("BANK-A", FinApprove(fin_id=requested, rate_bp=450))["status"] == "APPROVED"
    assert w.ok("BANK-A", FinDisburse(fin_id=approved))["status"] == "DISBURSED"


# ================================================================ item 10: resubmissions


def test_a_resubmitted_repayment_is_recognised_and_not_recorded_twice():
    """Rule "money-moving commands carry a client-chosen id" (issue 15, item 10): the same
    fin.repay sent again after a timeout is answered from the first (replayed, with the
    sequence that recorded it), changes nothing, and is audited; a new id is a new
    repayment."""
    w = World()
    fin_id = w.financing("DISBURSED")  # 8,000,000 disbursed
    repay = FinRepay(fin_id=fin_id, amount_minor=3_000_000, repayment_id="RP-1")
    first = w.ok("BANK-A", repay)
    assert first["outstanding_minor"] == 5_000_000 and first["replayed"] is False
    recorded_at = w.driver.sequence
    ledger = w.driver.ledger
    domain, events = ledger.domain_digest(), len(ledger.audit_events)
    again = w.ok("BANK-A", repay)
    assert again == {
        "fin_id": fin_id, "amount_minor": 3_000_000, "repayment_id": "RP-1", "replayed": True,
        "recorded_at_sequence": recorded_at,
    }  # fmt: skip
    assert ledger.domain_digest() == domain and len(ledger.audit_events) == events + 1
    assert w.record("financing", fin_id).repaid_minor == 3_000_000
    second = w.ok("BANK-A", FinRepay(fin_id=fin_id, amount_minor=3_000_000, repayment_id="RP-2"))
    assert second["outstanding_minor"] == 2_000_000


def test_a_repayment_is_recognised_after_it_completed_the_loan():
    """The resubmission of the repayment that made the financing REPAID, and then CLOSED, is
    still recognised (not INVALID_STATE): the id, not the status, says it was recorded."""
    w = World()
    fin_id = w.financing("DISBURSED")
    repay = FinRepay(fin_id=fin_id, amount_minor=8_000_000, repayment_id="RP-ALL")
    assert w.ok("BANK-A", repay)["status"] == "REPAID"
    assert w.ok("BANK-A", repay)["replayed"] is True
    w.ok("BANK-A", FinClose(fin_id=fin_id))
    assert w.ok("BANK-A", repay)["replayed"] is True
    assert w.record("financing", fin_id).status == "CLOSED"


def test_an_id_reused_with_other_terms_or_by_another_bank_is_duplicate_id():
    w = World()
    fin_id = w.financing("DISBURSED")
    other = w.financing("DISBURSED", lender="BANK-B")
    w.ok("BANK-A", FinRepay(fin_id=fin_id, amount_minor=1_000, repayment_id="RP-1"))
    before = w.driver.ledger.domain_digest()
    other_terms = FinRepay(fin_id=fin_id, amount_minor=2_000, repayment_id="RP-1")
    _refused(w.driver.run("BANK-A", other_terms), ErrorCode.DUPLICATE_ID)
    other_bank = FinRepay(fin_id=other, amount_minor=1_000, repayment_id="RP-1")
    _refused(w.driver.run("BANK-B", other_bank), ErrorCode.DUPLICATE_ID)
    # BANK-B repeating BANK-A's repayment word for word learns nothing from a replay.
    word_for_word = FinRepay(fin_id=fin_id, amount_minor=1_000, repayment_id="RP-1")
    _refused(w.driver.run("BANK-B", word_for_word), ErrorCode.DUPLICATE_ID)
    assert w.driver.ledger.domain_digest() == before


def test_a_resubmitted_collection_is_recognised_even_after_it_settled_the_receivable():
    """Item 10 for rcv.record_collection: a full collection sent twice is collected once;
    the second answer is the replay, not RECEIVABLE_SETTLED."""
    w = World()
    invoice_id = w.invoice()
    w.financing("DISBURSED", invoice_id=invoice_id)
    partial = RcvRecordCollection(invoice_id=invoice_id, amount_minor=4_000_000,
                                  collection_id="COL-1")  # fmt: skip
    assert w.ok("BANK-A", partial)["collected_minor"] == 4_000_000
    assert w.ok("BANK-A", partial)["replayed"] is True
    rest = RcvRecordCollection(invoice_id=invoice_id, amount_minor=6_000_000,
                               collection_id="COL-2")  # fmt: skip
    assert w.ok("BANK-A", rest)["status"] == "SETTLED"
    assert w.ok("BANK-A", rest)["replayed"] is True
    assert w.record("invoice", invoice_id).collected_minor == USD_100K
    assert violations(w.driver.ledger.state, w.driver.ledger.audit) == []


def test_a_resubmitted_service_payment_is_recognised():
    """pay.service_outward already had its payment_id; its resubmission now gets the same
    clear answer as the others instead of DUPLICATE_ID."""
    w = World()
    record_id = w.tax_record()
    pay = PayServiceOutward(payment_id="PAY-1", record_id=record_id, payer="SVC-CN",
                            payee="ACME GmbH", currency="EUR", amount_minor=1_000)  # fmt: skip
    w.ok("BANK-B", pay)
    assert w.ok("BANK-B", pay)["replayed"] is True
    assert w.record("tax_record", record_id).used_minor == 1_000


class _FlakyRuntime:
    """A runtime client whose first `failures` submits raise NoQuorumError (outcome unknown:
    the command may have executed); it records every operation sent."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[bytes] = []

    async def submit(self, operation: bytes) -> bytes:
        self.sent.append(operation)
        if self.failures:
            self.failures -= 1
            raise NoQuorumError("no quorum", reachable=[], answered=[], needed=2)
        return encode_accepted({"replayed": True})


def test_the_client_generates_the_id_and_resubmits_with_the_same_one():
    """The client library chooses the id when the caller does not, and its resubmission
    after a NoQuorumError carries the same id (the ledger recognises it)."""

    async def run() -> None:
        flaky = _FlakyRuntime(failures=1)
        client = TradeClient(flaky, actor="BANK-A")  # type: ignore[arg-type]
        result = await client.fin_repay(fin_id="F-1", amount_minor=5)
        assert isinstance(result, Accepted)
        first, second = (decode_operation(op).operation for op in flaky.sent)
        assert first == second and first.repayment_id.startswith("RP-")
        chosen = TradeClient(_FlakyRuntime(0), actor="BANK-A")  # type: ignore[arg-type]
        await chosen.rcv_record_collection(invoice_id="I", amount_minor=5, collection_id="C-9")
        assert decode_operation(chosen.client.sent[0]).operation.collection_id == "C-9"

    trio.run(run)


def test_the_client_names_the_id_when_every_resubmission_failed():
    async def run() -> None:
        client = TradeClient(_FlakyRuntime(failures=9), resubmissions=2)  # type: ignore[arg-type]
        with pytest.raises(NoQuorumError) as caught:
            await client.fin_repay(fin_id="F-1", amount_minor=5, repayment_id="RP-MINE")
        assert len(client.client.sent) == 3
        assert any("repayment_id=RP-MINE" in note for note in caught.value.__notes__)

    trio.run(run)
    with pytest.raises(ValueError, match="resubmissions must be >= 0"):
        TradeClient(_FlakyRuntime(failures=0), resubmissions=-1)  # type: ignore[arg-type]
    ids = {new_request_id("RP") for _ in range(100)}
    assert len(ids) == 100 and all(len(i) <= 64 for i in ids)


def test_front_ends_fill_in_the_id_of_money_moving_commands_only():
    filled = fill_request_id("rcv.record_collection", {"invoice_id": "I", "amount_minor": 1})
    assert filled["collection_id"].startswith("COL-")
    assert RcvRecordCollection(**filled).encode()  # a valid Id on the wire
    kept = fill_request_id("fin.repay", {"fin_id": "F", "amount_minor": 1, "repayment_id": "R"})
    assert kept["repayment_id"] == "R"
    assert fill_request_id("fin.approve", {"fin_id": "F", "rate_bp": 1}) == {
        "fin_id": "F", "rate_bp": 1,
    }  # fmt: skip


# ================================================================ item 11: never the lender


def _two_lenders_on_one_declaration(w: World) -> str:
    """D (10M) backing BANK-A's 4M on one invoice and BANK-B's 4M on another."""
    decl_id = w.decl()
    w.financing("APPROVED", lender="BANK-A", amount=4_000_000, decl_ids=[decl_id])
    w.financing("APPROVED", lender="BANK-B", amount=4_000_000, decl_ids=[decl_id])
    return decl_id


def test_an_over_financed_alert_to_a_bank_never_names_another_lender():
    """Visibility, receivable/encumbrance "never the lender" (issue 15, item 11): customs lowers
    D below what both banks financed; each bank gets the alert without the list of lenders,
    FX_ADMIN gets it in full."""
    w = World()
    decl_id = _two_lenders_on_one_declaration(w)
    w.ok("CUSTOMS-QD", DeclApproveAmendment(decl_id=decl_id, declared_value_minor=5_000_000))
    for bank, rival in (("BANK-A", "BANK-B"), ("BANK-B", "BANK-A")):
        alerts = w.driver.read(bank, GetAlerts()).value["alerts"]
        (alert,) = [a for a in alerts if a["code"] == "OVER_FINANCED"]
        assert alert["decl_id"] == decl_id
        # No alert a bank reads (SIMILAR_RECEIVABLE ones included) names another lender.
        assert all("lenders" not in a and rival not in repr(a) for a in alerts)
    (full,) = [
        a for a in w.driver.read(FX_ADMIN, GetAlerts()).value["alerts"]
        if a["code"] == "OVER_FINANCED"
    ]  # fmt: skip
    assert full["lenders"] == ["BANK-A", "BANK-B"]


def test_a_later_lender_does_not_see_earlier_lenders_through_the_receivable():
    """Item 11: BANK-A financed INV, recorded a part payment and closed; BANK-B finances the
    rest of INV next. BANK-B reads the receivable in full but only its own encumbrance, and
    nothing in its audit view was done by BANK-A; the seller and FX_ADMIN see both."""
    w = World()
    invoice_id = w.invoice()
    earlier = w.financing("REPAID", lender="BANK-A", invoice_id=invoice_id)
    w.ok("BANK-A", RcvRecordCollection(invoice_id=invoice_id, amount_minor=2_000_000,
                                       collection_id="COL-A"))  # fmt: skip
    w.ok("BANK-A", FinClose(fin_id=earlier))
    w.financing("APPROVED", lender="BANK-B", amount=5_000_000, invoice_id=invoice_id)
    view = w.driver.read("BANK-B", GetInvoice(invoice_id=invoice_id)).value
    assert [enc["lender"] for enc in view["encumbrances"]] == ["BANK-B"]
    assert "BANK-A" not in repr(view)
    events, start = [], 0
    while start < len(w.driver.ledger.audit_events):
        page = w.driver.read("BANK-B", GetAudit(start=start, limit=200)).value
        events += page["events"]
        start = page["next"]
    assert events and all(event["actor"] != "BANK-A" for event in events)
    for reader in ("EXP-QD", FX_ADMIN):
        seen = w.driver.read(reader, GetInvoice(invoice_id=invoice_id)).value["encumbrances"]
        assert [enc["lender"] for enc in seen] == ["BANK-A", "BANK-B"]


# ================================================================ item 12: no existence oracle


def test_get_financing_answers_the_same_for_a_missing_id_and_a_hidden_one():
    """Visibility, "a read that the table refuses returns FORBIDDEN" (issue 15, item 12): BANK-B
    asking for BANK-A's F-1 and for an id that does not exist gets the same answer, code and
    message alike; FX_ADMIN, who may see every financing, learns that one does not exist."""
    w = World()
    fin_id = w.financing("APPROVED")
    missing = "F-NONE"
    hidden = w.driver.read("BANK-B", GetFinancing(fin_id=fin_id))
    absent = w.driver.read("BANK-B", GetFinancing(fin_id=missing))
    assert hidden.code == absent.code == ErrorCode.FORBIDDEN
    assert hidden.message.replace(fin_id, "ID") == absent.message.replace(missing, "ID")
    for reader in ("EXP-SH", "CUSTOMS-SH", "CARRIER-1"):
        assert w.driver.read(reader, GetFinancing(fin_id=missing)).code == ErrorCode.FORBIDDEN
    assert w.driver.read(FX_ADMIN, GetFinancing(fin_id=missing)).code == ErrorCode.UNKNOWN_DOCUMENT
    # Ordered, the two probes leave the same kind of audit event.
    w.driver.run("BANK-B", GetFinancing(fin_id=fin_id))
    w.driver.run("BANK-B", GetFinancing(fin_id=missing))
    assert [e.outcome for e in w.driver.ledger.audit_events[-2:]] == ["FORBIDDEN", "FORBIDDEN"]


@pytest.mark.parametrize(
    ("kind", "make", "query", "outsider"),
    [
        ("lc", lambda w: w.lc(), lambda i: GetLc(lc_id=i), "BANK-B"),
        ("presentation", lambda w: w.presentation(amount=1_000),
         lambda i: GetPresentation(pres_id=i), "BANK-B"),
        ("decl", lambda w: w.decl(), lambda i: GetDeclaration(decl_id=i), "BANK-B"),
        ("ebl", lambda w: w.ebl(), lambda i: GetEbl(ebl_id=i), "BANK-B"),
        ("invoice", lambda w: w.invoice(), lambda i: GetInvoice(invoice_id=i), "SVC-CN"),
        ("tax_record", lambda w: w.tax_record(), lambda i: GetTaxRecord(record_id=i), "EXP-QD"),
    ],
)  # fmt: skip
def test_every_lookup_answers_an_outsider_alike_for_missing_and_hidden(kind, make, query, outsider):
    """Item 12 for every record lookup: to a reader who may not see the record, a missing id
    and a hidden one are the same FORBIDDEN."""
    w = World()
    record_id = make(w)
    hidden = w.driver.read(outsider, query(record_id))
    absent = w.driver.read(outsider, query("NO-SUCH-ID"))
    assert hidden.code == absent.code == ErrorCode.FORBIDDEN, (hidden, absent)
    assert hidden.message.replace(record_id, "ID") == absent.message.replace("NO-SUCH-ID", "ID")


# ================================================================ item 13: who borrows twice


def test_rejections_credit_a_double_financing_refusal_to_the_enterprise_too():
    """Supervision, refused attempts by enterprise (issue 15, item 13): BANK-B's
    ALREADY_ENCUMBERED on EXP-QD's receivable is counted for BANK-B and for EXP-QD."""
    w = World()
    invoice_id = w.invoice()
    w.financing("APPROVED", lender="BANK-A", invoice_id=invoice_id)
    second = w.financing("REQUESTED", lender="BANK-B", invoice_id=invoice_id)
    _refused(w.driver.run("BANK-B", FinApprove(fin_id=second, rate_bp=300)),
             ErrorCode.ALREADY_ENCUMBERED)  # fmt: skip
    rows = w.driver.read(FX_ADMIN, ReportRejections()).value["rows"]
    assert ["ALREADY_ENCUMBERED", "EXP-QD", 1] in rows
    assert ["ALREADY_ENCUMBERED", "BANK-B", 1] in rows


def test_rejections_credit_other_refusals_to_their_signer_only():
    w = World()
    fin_id = w.financing("REQUESTED")
    w.driver.run("BANK-A", FinApprove(fin_id=fin_id, rate_bp=99_999))  # MALFORMED rate
    rows = w.driver.read(FX_ADMIN, ReportRejections()).value["rows"]
    assert rows == [["MALFORMED", "BANK-A", 1]]
