"""The ledger against double financing (issue 15, "Double financing" items 1-7, and the
boundaries of the financeable balance). Each test plays the fraud against the public commands
and cites the rule of docs/TRADE-DOMAIN.md (Invoice, Financing) or tradeapp/README.md ("Rules
the ledger decides") that stops it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tradeapp import Accepted, Rejected
from tradeapp.commands import (
    DeclAccept,
    DeclLodge,
    DeclRelease,
    EblIssue,
    EblPledge,
    EblReleasePledge,
    FinApprove,
    FinClose,
    FinDisburse,
    FinRepay,
    FinRequest,
    GetAlerts,
    InvRegister,
    PartyAdmit,
    PresAttach,
    PresComplete,
    PresHonour,
    PresMarkComplying,
    PresOpen,
    PresRefuse,
    PresReturnDocs,
    RcvRecordCollection,
)
from tradeapp.fingerprint import fold_identifier, fold_name, skeleton
from tradeapp.invariants import history_violations, violations
from tradeapp.model import Role
from tradeapp.scenario import FX_ADMIN

from .test_trade_world import World

M = 1_000_000  # the unit of these examples, in minor units


def _register(
    w: World, invoice_no: str, *, buyer: str = "IMP-NL", amount: int = 10 * M,
    issue_date: str = "2024-03-01", country: str = "", seller: str = "EXP-QD",
):  # fmt: skip
    invoice_id = w.fresh("INV")
    op = InvRegister(
        invoice_id=invoice_id, buyer=buyer, invoice_no=invoice_no, currency="USD",
        amount_minor=amount, issue_date=issue_date, buyer_country=country,
    )  # fmt: skip
    return invoice_id, w.driver.run(seller, op)


def _code(result) -> str | None:
    return None if isinstance(result, Accepted) else str(result.code)


def _decl(w: World, value: int, *, buyer: str = "IMP-NL", country: str = "") -> str:
    """A RELEASED declaration of EXP-QD consigned to `buyer`."""
    decl_id = w.fresh("D")
    w.ok("EXP-QD", DeclLodge(
        decl_id=decl_id, customs="CUSTOMS-QD", buyer=buyer, goods_description="lamps",
        hs_code="9405.42", currency="USD", declared_value_minor=value, buyer_country=country,
    ))  # fmt: skip
    w.ok("CUSTOMS-QD", DeclAccept(decl_id=decl_id))
    w.ok("CUSTOMS-QD", DeclRelease(decl_id=decl_id))
    return decl_id


def _finance(w: World, invoice_id: str, decl_ids: list[str], amount: int, *,
             lender: str = "BANK-A", reason: str | None = None):  # fmt: skip
    """Request and approve; the refusal of either, or the financing id."""
    fin_id = w.fresh("F")
    request = w.driver.run("EXP-QD", FinRequest(
        fin_id=fin_id, lender=lender, invoice_id=invoice_id, decl_ids=decl_ids, currency="USD",
        amount_minor=amount, buyer_mismatch_reason=reason,
    ))  # fmt: skip
    if isinstance(request, Rejected):
        return request
    approval = w.driver.run(lender, FinApprove(fin_id=fin_id, rate_bp=450))
    return approval if isinstance(approval, Rejected) else fin_id


def _assert_balance(w: World, invoice_id: str, decl_ids: list[str], balance: int) -> None:
    """The boundary of the financeable balance: financing one minor unit more than `balance` at
    BANK-B is EXCEEDS_FINANCEABLE_BALANCE, exactly `balance` passes."""
    refused = _finance(w, invoice_id, decl_ids, balance + 1, lender="BANK-B")
    assert _code(refused) == "EXCEEDS_FINANCEABLE_BALANCE"
    assert isinstance(_finance(w, invoice_id, decl_ids, balance, lender="BANK-B"), str)


def _assert_oracles_agree(w: World) -> None:
    ledger = w.driver.ledger
    assert violations(ledger.state, ledger.audit) == []
    operations = [entry.operation for entry in w.driver.log]
    assert history_violations(operations, ledger.audit_events, ledger.state) == []


# --- Item 1: look-alike identifiers ----------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "\u0406NV-2024-0042",  # Cyrillic capital byelorussian-ukrainian I
        "\uff29\uff2e\uff36\uff0d\uff12\uff10\uff12\uff14\uff0d\uff14\uff12",  # fullwidth
        "INV-2024-\u0660\u0660\u0664\u0662",  # Arabic-Indic digits
        "INV\u20132024\u20140042",  # en and em dashes
        "INV-2O24-0042",  # Latin O for the digit 0
        "1NV-2024-0042",  # digit one for capital I
        "INV-2024-0042\u200b",  # a zero-width space
        "INV-2024-0\u200d042",  # a zero-width joiner inside a run of digits
        "\U0001d408\U0001d40d\U0001d415-2024-42",  # mathematical bold letters
    ],
)
def test_a_look_alike_invoice_number_is_the_same_receivable(variant):
    """Invoice (TRADE-DOMAIN.md) and README "Rules the ledger decides": invoice numbers are
    folded with NFKC and the TS #39 skeleton, so a look-alike is DUPLICATE_INVOICE."""
    w = World()
    _, first = _register(w, "INV-2024-0042")
    assert isinstance(first, Accepted)
    _, again = _register(w, variant)
    assert _code(again) == "DUPLICATE_INVOICE"


def test_a_look_alike_buyer_name_is_the_same_buyer():
    """Cyrillic І, М, Р in the buyer's name still name participant IMP-NL."""
    w = World()
    _register(w, "INV-7")
    _, again = _register(w, "INV-7", buyer="\u0406\u041c\u0420-NL")
    assert _code(again) == "DUPLICATE_INVOICE"


def test_the_fold_is_the_unicode_skeleton_and_keeps_different_numbers_apart():
    """The skeleton maps to Unicode's prototypes (0 -> O, 1/I -> l, Cyrillic а -> a)."""
    assert skeleton("0") == skeleton("O") and skeleton("1") == skeleton("I") == skeleton("l")
    assert skeleton("p\u0430yp\u0430l") == skeleton("paypal")
    assert fold_identifier("INV-42") != fold_identifier("INV-43")
    w = World()
    for number in ("INV-42", "INV-43", "INV-42A"):
        assert isinstance(_register(w, number)[1], Accepted)


# --- Item 2: identifiers of every script -------------------------------------------------------


def test_distinct_chinese_invoice_numbers_are_distinct_receivables():
    """Letters and digits of every script count: 发票甲 and 发票乙 are two receivables."""
    w = World()
    assert isinstance(_register(w, "发票-甲")[1], Accepted)
    assert isinstance(_register(w, "发票-乙")[1], Accepted)
    assert isinstance(_register(w, "請求書-۱۲")[1], Accepted)


@pytest.mark.parametrize("number", ["---", "\u200b\u200d", " / ", "\u00b7\u2027"])
def test_an_invoice_number_without_letter_or_digit_is_malformed(number):
    w = World()
    _, result = _register(w, number)
    assert _code(result) == "MALFORMED"


# --- Item 3: near duplicates raise SIMILAR_RECEIVABLE ------------------------------------------


@pytest.mark.parametrize(
    ("change", "similar"),
    [
        ({"amount": 10 * M + 1}, True),  # one minor unit more
        ({"issue_date": "2024-03-02"}, True),  # a day later
        ({"amount": 20 * M, "issue_date": "2024-04-01"}, True),  # same number, another deal
        ({"invoice_no": "INV-101", "amount": 10 * M + 100_000}, True),  # just within 1 %
        ({"invoice_no": "INV-101", "amount": 10 * M + 102_000}, False),  # beyond 1 %
        ({"invoice_no": "INV-101", "issue_date": "2024-03-08"}, False),  # a week apart
        ({"invoice_no": "INV-101", "buyer": "Acme GmbH", "country": "DE"}, False),  # other buyer
    ],
)
def test_a_near_duplicate_registers_with_a_similar_receivable_alert(change, similar):
    """README "Rules the ledger decides", SIMILAR_RECEIVABLE: same seller, buyer and currency,
    and the same folded number or amounts within max(1 unit, 1 %) and dates within 3 days."""
    w = World()
    first_id, _ = _register(w, "INV-100")
    values = {"invoice_no": "INV-100", "amount": 10 * M, "issue_date": "2024-03-01"} | change
    invoice_no = values.pop("invoice_no")
    new_id, result = _register(w, invoice_no, **values)
    assert isinstance(result, Accepted), result
    assert ("alert" in result.value) is similar
    alerts = w.driver.read(FX_ADMIN, GetAlerts()).value["alerts"]
    similar_alerts = [a for a in alerts if a["code"] == "SIMILAR_RECEIVABLE"]
    if similar:
        assert [a["invoice_ids"] for a in similar_alerts] == [[new_id, first_id]]
        # The registering bank (the seller's sponsor) sees it; a rival bank does not.
        assert len(w.driver.read("BANK-A", GetAlerts()).value["alerts"]) == 1
        assert w.driver.read("BANK-B", GetAlerts()).value["alerts"] == []
    else:
        assert similar_alerts == []


def test_the_exact_fingerprint_still_refuses_and_raises_no_alert():
    w = World()
    _register(w, "INV-100")
    _, again = _register(w, "inv 0100")
    assert _code(again) == "DUPLICATE_INVOICE"
    assert w.driver.read(FX_ADMIN, GetAlerts()).value["alerts"] == []


# --- Item 4: who the buyer is -----------------------------------------------------------------


@pytest.mark.parametrize("buyer", ["IMP NL", "IMP-NL B.V.", "imp-nl", " IMP-NL "])
def test_a_participant_buyer_is_its_participant_id_however_it_is_written(buyer):
    """README "Rules the ledger decides", buyers: a buyer that is a participant is identified
    by its participant id."""
    w = World()
    _register(w, "INV-5")
    _, again = _register(w, "INV-5", buyer=buyer)
    assert _code(again) == "DUPLICATE_INVOICE"


def test_a_buyer_outside_the_ledger_is_its_folded_name_and_country():
    w = World()
    assert isinstance(_register(w, "INV-6", buyer="Acme GmbH", country="DE")[1], Accepted)
    assert _code(_register(w, "INV-6", buyer="ACME", country="de")[1]) == "DUPLICATE_INVOICE"
    assert isinstance(_register(w, "INV-6", buyer="ACME", country="FR")[1], Accepted)
    assert _code(_register(w, "INV-6", buyer="Acme GmbH")[1]) == "MALFORMED"  # no country
    assert _code(_register(w, "INV-6", buyer="Acme", country="DEU")[1]) == "MALFORMED"
    assert _code(_register(w, "INV-6", buyer="- / -", country="DE")[1]) == "MALFORMED"
    assert fold_name("Acme GmbH") == fold_name("ACME")


def test_a_buyer_name_matching_two_participants_must_be_given_by_id():
    w = World()
    w.ok("BANK-I", PartyAdmit(
        participant_id="IMP-NL-2", role=Role.TRADER, legal_name="IMP-NL Ltd", country="NL",
        tax_id="NL-IMP-002", public_key=w.driver.key("IMP-NL-2"), place="NL-AMS",
    ))  # fmt: skip
    assert _code(_register(w, "INV-8", buyer="IMP-NL Ltd")[1]) == "INVALID_PARTY"
    assert isinstance(_register(w, "INV-8", buyer="IMP-NL-2")[1], Accepted)


# --- Item 5: paid goods back no new credit ------------------------------------------------------


def test_collections_reduce_the_declarations_balance_after_the_financing_closes():
    """README "Rules the ledger decides", financeable balance: 20M of a 30M receivable
    collected and its financing closed, the declaration backs 10M more, not 20M."""
    w = World()
    decl = _decl(w, 30 * M)
    invoice, _ = _register(w, "INV-A", amount=30 * M)
    fin = _finance(w, invoice, [decl], 20 * M)
    w.ok("BANK-A", FinDisburse(fin_id=fin))
    w.ok("BANK-A", RcvRecordCollection(collection_id="COL-1", invoice_id=invoice, amount_minor=20 * M))
    w.ok("BANK-A", FinRepay(repayment_id="REP-1", fin_id=fin, amount_minor=20 * M))
    w.ok("BANK-A", FinClose(fin_id=fin))
    fabricated, _ = _register(w, "INV-FAKE", amount=20 * M)
    refused = _finance(w, fabricated, [decl], 20 * M, lender="BANK-B")
    assert _code(refused) == "EXCEEDS_FINANCEABLE_BALANCE"
    _assert_balance(w, fabricated, [decl], 10 * M)
    _assert_oracles_agree(w)


def test_a_fully_paid_receivable_leaves_nothing_of_its_declaration():
    """After the buyer paid the whole 30M invoice, a new 6M invoice gets nothing on the same
    declaration (not the 6M that counting only the 24M financed would leave)."""
    w = World()
    decl = _decl(w, 30 * M)
    invoice, _ = _register(w, "INV-A", amount=30 * M)
    fin = _finance(w, invoice, [decl], 24 * M)
    w.ok("BANK-A", FinDisburse(fin_id=fin))
    w.ok("BANK-A", RcvRecordCollection(collection_id="COL-2", invoice_id=invoice, amount_minor=30 * M))
    new, _ = _register(w, "INV-NEW", amount=6 * M)
    assert _code(_finance(w, new, [decl], 6 * M, lender="BANK-B")) == "EXCEEDS_FINANCEABLE_BALANCE"
    assert _code(_finance(w, new, [decl], 1, lender="BANK-B")) == "EXCEEDS_FINANCEABLE_BALANCE"
    _assert_oracles_agree(w)


def test_a_partial_collection_beyond_the_financed_amount_consumes_the_declaration():
    w = World()
    decl = _decl(w, 30 * M)
    invoice, _ = _register(w, "INV-A", amount=30 * M)
    _finance(w, invoice, [decl], 20 * M)
    w.ok("BANK-A", RcvRecordCollection(collection_id="COL-3", invoice_id=invoice, amount_minor=25 * M))
    other, _ = _register(w, "INV-B", amount=6 * M)
    _assert_balance(w, other, [decl], 5 * M)
    _assert_oracles_agree(w)


def test_a_collection_fills_the_declarations_in_order_each_up_to_its_value():
    """Paid goods: 12M paid on a financing drawn on [5M, 10M] declarations consumes all of the
    first and 7M of the second (not 12M of the first alone)."""
    w = World()
    d1, d2 = _decl(w, 5 * M), _decl(w, 10 * M)
    invoice, _ = _register(w, "INV-A", amount=20 * M)
    _finance(w, invoice, [d1, d2], 8 * M)
    w.ok("BANK-A", RcvRecordCollection(collection_id="COL-4", invoice_id=invoice, amount_minor=12 * M))
    other, _ = _register(w, "INV-B", amount=20 * M)
    _assert_balance(w, other, [d2], 3 * M)
    _assert_oracles_agree(w)


def test_financing_exactly_the_remaining_balance_passes_and_one_unit_more_does_not():
    """Financing (TRADE-DOMAIN.md): the amount must fit the declarations' financeable balance,
    across two declarations drawn on in the order listed."""
    w = World()
    d1, d2 = _decl(w, 10 * M), _decl(w, 5 * M)
    first, _ = _register(w, "INV-1", amount=20 * M)
    assert isinstance(_finance(w, first, [d1], 7 * M), str)
    second, _ = _register(w, "INV-2", amount=20 * M)
    assert _code(_finance(w, second, [d1, d2], 8 * M + 1)) == "EXCEEDS_FINANCEABLE_BALANCE"
    fin = _finance(w, second, [d1, d2], 8 * M)
    assert isinstance(fin, str)
    encumbrance = w.record("encumbrance", w.record("financing", fin).enc_id)
    assert encumbrance.allocations == {d1: 3 * M, d2: 5 * M}
    third, _ = _register(w, "INV-3", amount=20 * M)
    assert _code(_finance(w, third, [d1, d2], 1)) == "EXCEEDS_FINANCEABLE_BALANCE"
    _assert_oracles_agree(w)


# --- Item 6: LCs and pledged eBLs encumber -----------------------------------------------------


def test_an_invoice_presented_under_a_letter_of_credit_cannot_be_financed():
    """README "Rules the ledger decides", encumbrances: an invoice attached to a presentation
    that has not been returned is paid by the LC, so financing it is ALREADY_ENCUMBERED."""
    w = World()
    invoice, _ = _register(w, "INV-LC", amount=8 * M)
    lc_id = w.lc()
    pres_id = w.fresh("P")
    w.ok("EXP-QD", PresOpen(pres_id=pres_id, lc_id=lc_id))
    w.ok("EXP-QD", PresAttach(pres_id=pres_id, doc_type="invoice", ref=invoice,
                              content_digest=None))  # fmt: skip
    decl = _decl(w, 10 * M)
    assert _code(_finance(w, invoice, [decl], 5 * M, lender="BANK-B")) == "ALREADY_ENCUMBERED"
    # ... nor presented again under another LC while the first holds it.
    other = w.fresh("P")
    w.ok("EXP-QD", PresOpen(pres_id=other, lc_id=w.lc()))
    result = w.driver.run("EXP-QD", PresAttach(pres_id=other, doc_type="invoice", ref=invoice,
                                               content_digest=None))  # fmt: skip
    assert _code(result) == "ALREADY_ENCUMBERED"


def _complete_presentation(w: World) -> tuple[str, str]:
    """An 8M invoice registered and presented with an eBL under a new LC, the presentation
    complete: (invoice id, presentation id)."""
    invoice, _ = _register(w, "INV-LC", amount=8 * M)
    pres_id = w.fresh("P")
    w.ok("EXP-QD", PresOpen(pres_id=pres_id, lc_id=w.lc()))
    for doc_type, ref in (("ebl", w.ebl()), ("invoice", invoice)):
        w.ok("EXP-QD", PresAttach(pres_id=pres_id, doc_type=doc_type, ref=ref, content_digest=None))
    w.ok("EXP-QD", PresComplete(pres_id=pres_id, amount_minor=8 * M))
    return invoice, pres_id


def test_an_invoice_honoured_under_a_letter_of_credit_cannot_be_financed():
    w = World()
    invoice, pres_id = _complete_presentation(w)
    w.ok("BANK-I", PresMarkComplying(pres_id=pres_id))
    w.ok("BANK-I", PresHonour(pres_id=pres_id))
    decl = _decl(w, 10 * M)
    assert _code(_finance(w, invoice, [decl], 5 * M, lender="BANK-B")) == "ALREADY_ENCUMBERED"


def test_a_returned_presentation_frees_the_invoice():
    w = World()
    invoice, pres_id = _complete_presentation(w)
    w.ok("BANK-I", PresRefuse(pres_id=pres_id, discrepancies=["LATE_SHIPMENT"],
                              waiver_requested=False))  # fmt: skip
    w.ok("BANK-I", PresReturnDocs(pres_id=pres_id))
    decl = _decl(w, 10 * M)
    assert isinstance(_finance(w, invoice, [decl], 5 * M, lender="BANK-B"), str)


def _attach_invoice(w: World, invoice_id: str):
    """Open a presentation under a new LC and attach the invoice to it; the attach's result."""
    pres_id = w.fresh("P")
    w.ok("EXP-QD", PresOpen(pres_id=pres_id, lc_id=w.lc()))
    return w.driver.run("EXP-QD", PresAttach(pres_id=pres_id, doc_type="invoice", ref=invoice_id,
                                             content_digest=None))  # fmt: skip


def test_a_financed_invoice_cannot_be_presented_under_a_letter_of_credit():
    """README "Rules the ledger decides", encumbrances, the other order: a receivable an ACTIVE
    financing holds cannot be attached to a presentation (the LC would pay it as well), and I2
    holds; once the financing closes without the buyer paying, it can."""
    w = World()
    decl = _decl(w, 10 * M)
    invoice, _ = _register(w, "INV-F", amount=8 * M)
    fin = _finance(w, invoice, [decl], 5 * M)
    refused = _attach_invoice(w, invoice)
    assert _code(refused) == "ALREADY_ENCUMBERED"
    assert "already financed" in refused.message
    assert w.record("invoice", invoice).presentations == []
    w.ok("BANK-A", FinClose(fin_id=fin))
    assert isinstance(_attach_invoice(w, invoice), Accepted)
    _assert_oracles_agree(w)


def test_a_paid_invoice_cannot_be_presented_under_a_letter_of_credit():
    """The buyer paid the receivable in full (financed or not): presenting it is
    RECEIVABLE_SETTLED, as financing it is."""
    w = World()
    decl = _decl(w, 10 * M)
    financed, _ = _register(w, "INV-F", amount=8 * M)
    _finance(w, financed, [decl], 5 * M)
    w.ok("BANK-A", RcvRecordCollection(collection_id="COL-P1", invoice_id=financed,
                                       amount_minor=8 * M))  # fmt: skip
    assert _code(_attach_invoice(w, financed)) == "RECEIVABLE_SETTLED"
    unfinanced, _ = _register(w, "INV-U", amount=3 * M)
    w.ok("BANK-A", RcvRecordCollection(collection_id="COL-P2", invoice_id=unfinanced,
                                       amount_minor=3 * M))  # fmt: skip
    assert _code(_attach_invoice(w, unfinanced)) == "RECEIVABLE_SETTLED"
    _assert_oracles_agree(w)


def test_invariant_i2_flags_an_invoice_both_financed_and_presented(monkeypatch):
    """I2, restated in the invariants rather than taken from the handlers: with the attach
    check planted away, the financed invoice gets presented and `violations` reports it."""
    import tradeapp.presentations as presentations

    monkeypatch.setattr(presentations, "receivable_refusal", lambda state, invoice: None)
    w = World(check_invariants=False)
    decl = _decl(w, 10 * M)
    invoice, _ = _register(w, "INV-F", amount=8 * M)
    _finance(w, invoice, [decl], 5 * M)
    assert isinstance(_attach_invoice(w, invoice), Accepted)  # the bug
    ledger = w.driver.ledger
    found = violations(ledger.state, ledger.audit)
    assert f"I2 invoice {invoice} financed and presented" in found, found


def _ebl_for(w: World, decl_id: str) -> str:
    return w.ok("CARRIER-1", EblIssue(
        bl_no=w.fresh("BL"), shipper="EXP-QD", consignee="IMP-NL", holder="EXP-QD",
        goods_description="lamps", port_of_loading="Qingdao", port_of_discharge="Rotterdam",
        shipped_on_board_date="2024-03-01", decl_id=decl_id,
    ))["ebl_id"]  # fmt: skip


def test_goods_whose_ebl_is_pledged_to_one_bank_cannot_be_financed_at_another():
    """README "Rules the ledger decides", encumbrances: an eBL naming the declaration pledged
    to BANK-A encumbers the goods: BANK-B's financing is ALREADY_ENCUMBERED, BANK-A's passes."""
    w = World()
    decl = _decl(w, 10 * M)
    ebl_id = _ebl_for(w, decl)
    w.ok("EXP-QD", EblPledge(ebl_id=ebl_id, bank="BANK-A"))
    invoice, _ = _register(w, "INV-P", amount=8 * M)
    assert _code(_finance(w, invoice, [decl], 5 * M, lender="BANK-B")) == "ALREADY_ENCUMBERED"
    assert isinstance(_finance(w, invoice, [decl], 5 * M, lender="BANK-A"), str)


def test_a_released_pledge_frees_the_goods():
    w = World()
    decl = _decl(w, 10 * M)
    ebl_id = _ebl_for(w, decl)
    w.ok("EXP-QD", EblPledge(ebl_id=ebl_id, bank="BANK-A"))
    w.ok("BANK-A", EblReleasePledge(ebl_id=ebl_id))
    invoice, _ = _register(w, "INV-P", amount=8 * M)
    assert isinstance(_finance(w, invoice, [decl], 5 * M, lender="BANK-B"), str)


def test_goods_financed_at_one_bank_cannot_be_pledged_to_another():
    w = World()
    decl = _decl(w, 10 * M)
    ebl_id = _ebl_for(w, decl)
    invoice, _ = _register(w, "INV-P", amount=8 * M)
    _finance(w, invoice, [decl], 5 * M, lender="BANK-A")
    refused = w.driver.run("EXP-QD", EblPledge(ebl_id=ebl_id, bank="BANK-B"))
    assert _code(refused) == "ALREADY_ENCUMBERED"
    assert isinstance(w.driver.run("EXP-QD", EblPledge(ebl_id=ebl_id, bank="BANK-A")), Accepted)


def test_an_ebl_names_only_an_existing_declaration_of_its_shipper():
    w = World()
    other = w.decl("LODGED")
    bad = EblIssue(
        bl_no="BL-X", shipper="EXP-QD", consignee="IMP-NL", holder="EXP-QD",
        goods_description="g", port_of_loading="a", port_of_discharge="b",
        shipped_on_board_date="2024-03-01", decl_id="D-NONE",
    )  # fmt: skip
    assert _code(w.driver.run("CARRIER-1", bad)) == "UNKNOWN_DOCUMENT"
    svc_decl = w.decl("LODGED", exporter="SVC-CN")
    assert _code(w.driver.run("CARRIER-1", replace(bad, decl_id=svc_decl))) == "INVALID_PARTY"
    assert isinstance(w.driver.run("CARRIER-1", replace(bad, decl_id=other)), Accepted)
    assert w.record("decl", other).ebl_ids == ["CARRIER-1/BL-X"]


# --- Item 7: the invoice's buyer is the declaration's consignee -------------------------------


def test_the_invoices_buyer_must_be_the_declarations_consignee():
    """Financing (TRADE-DOMAIN.md): a declaration consigned to another buyer is BUYER_MISMATCH
    unless the request gives a coded reason, which the financing records."""
    w = World()
    decl = _decl(w, 10 * M)  # consigned to IMP-NL
    invoice, _ = _register(w, "INV-C", buyer="Acme GmbH", country="DE", amount=8 * M)
    assert _code(_finance(w, invoice, [decl], 5 * M)) == "BUYER_MISMATCH"
    assert _code(_finance(w, invoice, [decl], 5 * M, reason="BECAUSE")) == "MALFORMED"
    fin = _finance(w, invoice, [decl], 5 * M, reason="CONSIGNEE_IS_AGENT")
    assert isinstance(fin, str)
    assert w.record("financing", fin).buyer_mismatch_reason == "CONSIGNEE_IS_AGENT"


def test_a_consignee_written_differently_is_still_the_buyer():
    w = World()
    decl = _decl(w, 10 * M, buyer="IMP-NL B.V.", country="NL")
    invoice, _ = _register(w, "INV-C", amount=8 * M)
    assert isinstance(_finance(w, invoice, [decl], 5 * M), str)


def test_an_invoice_is_presented_at_most_list_bound_times():
    """Bounds (docs/STYLE.md): the presentations an invoice remembers are bounded; once
    LIST_ITEMS_MAX presentations have been returned, the next attach is INVALID_STATE."""
    from tradeapp.commands import LIST_ITEMS_MAX

    w = World(check_invariants=False)
    invoice, _ = _register(w, "INV-R", amount=1 * M)
    ebl_id = w.ebl()
    lcs = [w.lc(), w.lc()]
    for n in range(LIST_ITEMS_MAX + 1):
        pres_id = w.fresh("P")
        w.ok("EXP-QD", PresOpen(pres_id=pres_id, lc_id=lcs[n // (LIST_ITEMS_MAX - 1)]))
        w.ok("EXP-QD", PresAttach(pres_id=pres_id, doc_type="ebl", ref=ebl_id, content_digest=None))
        attach = PresAttach(pres_id=pres_id, doc_type="invoice", ref=invoice, content_digest=None)
        if n == LIST_ITEMS_MAX:
            assert _code(w.driver.run("EXP-QD", attach)) == "INVALID_STATE"
            break
        w.ok("EXP-QD", attach)
        w.ok("EXP-QD", PresComplete(pres_id=pres_id, amount_minor=1 * M))
        w.ok("BANK-I", PresRefuse(pres_id=pres_id, discrepancies=["LATE_SHIPMENT"],
                                  waiver_requested=False))  # fmt: skip
        w.ok("BANK-I", PresReturnDocs(pres_id=pres_id))
    assert len(w.record("invoice", invoice).presentations) == LIST_ITEMS_MAX


# --- The oracles are independent of the registry's helpers ------------------------------------


def test_a_bug_in_the_registrys_helpers_does_not_hide_from_the_oracles(monkeypatch):
    """Invariants I2/I3: with a planted bug in the registry (ACTIVE encumbrances no longer
    counted), a 10M declaration backs 16M; both oracles, which restate the rules instead of
    calling the registry, report it."""
    import tradeapp.encumbrance_registry as registry

    monkeypatch.setattr(registry, "HOLDING_STATUSES", ("SETTLED",))
    w = World(check_invariants=False)
    decl = _decl(w, 10 * M)
    first, _ = _register(w, "INV-1", amount=10 * M)
    second, _ = _register(w, "INV-2", amount=10 * M)
    assert isinstance(_finance(w, first, [decl], 8 * M), str)
    assert isinstance(_finance(w, second, [decl], 8 * M, lender="BANK-B"), str)  # the bug
    ledger = w.driver.ledger
    assert any(p.startswith("I3 declaration") for p in violations(ledger.state, ledger.audit))
    operations = [entry.operation for entry in w.driver.log]
    found = history_violations(operations, ledger.audit_events, ledger.state)
    assert any("beyond balance" in p for p in found), found


def test_the_history_oracle_flags_a_refusal_within_the_balance(monkeypatch):
    """The oracle checks refusals too: EXCEEDS_FINANCEABLE_BALANCE within the recomputed
    balance is a violation."""
    import tradeapp.financing as financing

    monkeypatch.setattr(financing, "financeable_balance_minor", lambda state, decl: 0)
    w = World(check_invariants=False)
    decl = _decl(w, 10 * M)
    invoice, _ = _register(w, "INV-1", amount=10 * M)
    assert _code(_finance(w, invoice, [decl], 1)) == "EXCEEDS_FINANCEABLE_BALANCE"
    ledger = w.driver.ledger
    operations = [entry.operation for entry in w.driver.log]
    found = history_violations(operations, ledger.audit_events, ledger.state)
    assert any("refused although" in p for p in found), found


def test_the_history_oracle_recomputes_each_encumbrances_allocations():
    """Financing draws on the declarations in the order the request lists them: an encumbrance
    whose allocations differ from the recomputed ones is reported (state tampered here)."""
    w = World(check_invariants=False)
    d1, d2 = _decl(w, 5 * M), _decl(w, 10 * M)
    invoice, _ = _register(w, "INV-1", amount=10 * M)
    fin = _finance(w, invoice, [d1, d2], 8 * M)
    ledger = w.driver.ledger
    operations = [entry.operation for entry in w.driver.log]
    assert history_violations(operations, ledger.audit_events, ledger.state) == []
    encumbrance = w.record("encumbrance", w.record("financing", fin).enc_id)
    encumbrance.allocations = {d1: 3 * M, d2: 5 * M}  # the wrong order's split
    found = history_violations(operations, ledger.audit_events, ledger.state)
    assert any("allocations" in p for p in found), found


def test_the_history_oracle_does_not_count_a_replayed_collection_twice():
    """Resubmission ids (tradeapp/README.md): a collection sent again with its id is a replay
    that pays nothing, and the oracle, which restates the rule, must not count it as a second
    payment (it would then report the ledger, which is right)."""
    w = World()
    decl = _decl(w, 10 * M)
    invoice, _ = _register(w, "INV-1", amount=10 * M)
    _finance(w, invoice, [decl], 5 * M)
    collect = RcvRecordCollection(collection_id="COL-R", invoice_id=invoice, amount_minor=10 * M)
    w.ok("BANK-A", collect)
    assert w.ok("BANK-A", collect)["replayed"] is True
    _assert_oracles_agree(w)


def test_the_cli_takes_the_new_fields_and_leaves_them_out_by_default():
    """The CLI builds operations from their fields: one with a default may be omitted."""
    from tradeapp.cli import build_parser, operation_from_args

    base = ["submit", "fin.request", "--fin-id", "F-1", "--lender", "BANK-A", "--invoice-id",
            "INV-1", "--decl-ids", "D-1", "--currency", "USD", "--amount-minor", "5"]  # fmt: skip
    parser = build_parser()
    assert operation_from_args(parser.parse_args(base)).buyer_mismatch_reason is None
    given = parser.parse_args([*base, "--buyer-mismatch-reason", "SOLD_IN_TRANSIT"])
    assert operation_from_args(given).buyer_mismatch_reason == "SOLD_IN_TRANSIT"
    with pytest.raises(SystemExit):  # a field without a default is still required
        parser.parse_args(base[:-2])


def test_a_similar_receivable_alert_names_the_closest_earlier_receivables_first():
    """README "Rules the ledger decides", SIMILAR_RECEIVABLE: the same number first, then the
    smallest difference of amount (at most 16 are named)."""
    w = World()
    far, _ = _register(w, "X-1", amount=10 * M + 90_000)
    near, _ = _register(w, "X-2", amount=10 * M + 10)
    same_number, _ = _register(w, "SAME", amount=10 * M + 50_000)
    new, result = _register(w, "SAME", amount=10 * M)
    assert result.value["alert"]["code"] == "SIMILAR_RECEIVABLE"
    alerts = w.driver.read(FX_ADMIN, GetAlerts()).value["alerts"]
    assert alerts[-1]["invoice_ids"] == [new, same_number, near, far]
