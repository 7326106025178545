"""Reads filtered by the reader: the visibility table of docs/TRADE-DOMAIN.md row by row, the audit
trail's filter, the reports' readers, and the ordered (audited) vs read-only paths."""

from __future__ import annotations

import pytest

from tradeapp import ErrorCode, Rejected, Role
from tradeapp.commands import (
    OPERATIONS,
    REPORTS,
    EblPledge,
    EblTransfer,
    FinRequest,
    GetAmendment,
    GetAudit,
    GetCalendar,
    GetDeclaration,
    GetEbl,
    GetFinancing,
    GetInvoice,
    GetLc,
    GetParticipant,
    GetPresentation,
    GetTaxRecord,
    Operation,
    ReportDeclarationsFinanced,
    ReportTaxUsage,
)
from tradeapp.scenario import FX_ADMIN

from .test_trade_world import World

FULL = "full"
FORBIDDEN = "forbidden"


@pytest.fixture(scope="module")
def world() -> World:
    """LC-1 (IMP-NL, EXP-QD, BANK-I, BANK-A) with an amendment and a presentation; a financing
    by BANK-A on D (customs CUSTOMS-QD) and its invoice; a request to BANK-B naming D-2 (the
    exporter's consent); an eBL moved EXP-QD -> BANK-A, pledged to BANK-I; a tax record paid
    by BANK-B."""
    w = World(check_invariants=False)
    ids = {}
    ids["lc"] = w.lc()
    ids["amendment"] = w.amendment(lc_id=ids["lc"])
    ids["presentation"] = w.presentation(lc_id=ids["lc"], amount=1_000)
    ids["decl"] = w.decl()
    ids["invoice"] = w.invoice()
    ids["financing"] = w.financing("DISBURSED", invoice_id=ids["invoice"], decl_ids=[ids["decl"]])
    ids["consented_decl"] = w.decl()
    w.ok(
        "EXP-QD",
        FinRequest(
            fin_id="F-ASK-B", lender="BANK-B", invoice_id=w.invoice(),
            decl_ids=[ids["consented_decl"]], currency="USD", amount_minor=1,
        ),
    )  # fmt: skip
    ids["ebl"] = w.ebl()
    w.ok("EXP-QD", EblTransfer(ebl_id=ids["ebl"], to="BANK-A"))
    w.ok("BANK-A", EblPledge(ebl_id=ids["ebl"], bank="BANK-I"))
    ids["tax_record"] = w.tax_record()
    w.payment(record_id=ids["tax_record"])
    w.ids = ids
    return w


def _query(w: World, kind: str) -> Operation:
    record_id = w.ids[kind]
    return {
        "lc": lambda: GetLc(lc_id=record_id),
        "amendment": lambda: GetAmendment(amend_id=record_id),
        "presentation": lambda: GetPresentation(pres_id=record_id),
        "financing": lambda: GetFinancing(fin_id=record_id),
        "invoice": lambda: GetInvoice(invoice_id=record_id),
        "decl": lambda: GetDeclaration(decl_id=record_id),
        "consented_decl": lambda: GetDeclaration(decl_id=record_id),
        "ebl": lambda: GetEbl(ebl_id=record_id),
        "tax_record": lambda: GetTaxRecord(record_id=record_id),
    }[kind]()


#: (object, reader, what the reader gets): FULL = the same view as FX_ADMIN, FORBIDDEN, or the
#: exact set of fields of a summary.
VISIBILITY = [
    # LC, amendments, presentations: parties full; nobody else.
    *[(kind, reader, FULL) for kind in ("lc", "amendment", "presentation")
      for reader in ("IMP-NL", "EXP-QD", "BANK-I", "BANK-A")],
    *[(kind, reader, FORBIDDEN) for kind in ("lc", "amendment", "presentation")
      for reader in ("BANK-B", "CUSTOMS-QD", "TAX-QD", "CARRIER-1", "SVC-CN")],
    # Financing: applicant and lender full; customs amount and status for its declarations.
    ("financing", "EXP-QD", FULL),
    ("financing", "BANK-A", FULL),
    ("financing", "BANK-B", FORBIDDEN),
    ("financing", "CUSTOMS-QD", {"fin_id", "status", "currency", "amount_minor", "decl_ids"}),
    ("financing", "TAX-QD", FORBIDDEN),
    ("financing", "IMP-NL", FORBIDDEN),
    # Receivable / encumbrance: other banks "encumbered?" and the remaining balance only.
    ("invoice", "EXP-QD", FULL),
    ("invoice", "BANK-A", FULL),
    ("invoice", "BANK-B", {"invoice_id", "encumbered", "settled", "remaining_minor"}),
    ("invoice", "CUSTOMS-QD", {"invoice_id", "status", "currency", "amount_minor", "encumbered"}),
    ("invoice", "TAX-QD", FORBIDDEN),
    ("invoice", "CARRIER-1", FORBIDDEN),
    # Declaration: customs full; other banks a summary only with the exporter's consent.
    ("decl", "EXP-QD", FULL),
    ("decl", "CUSTOMS-QD", FULL),
    ("decl", "BANK-B", FORBIDDEN),
    ("decl", "TAX-QD", FORBIDDEN),
    ("consented_decl", "BANK-B", {
        "decl_id", "exporter", "status", "currency", "declared_value_minor",
        "financeable_balance_minor",
    }),
    ("consented_decl", "BANK-I", FORBIDDEN),
    # eBL: carrier, holder, chain and custodian bank full; customs a summary.
    ("ebl", "CARRIER-1", FULL),
    ("ebl", "BANK-A", FULL),
    ("ebl", "EXP-QD", FULL),
    ("ebl", "BANK-I", FULL),
    ("ebl", "BANK-B", FORBIDDEN),
    ("ebl", "IMP-NL", FORBIDDEN),
    ("ebl", "TAX-QD", FORBIDDEN),
    ("ebl", "CUSTOMS-QD", {
        "ebl_id", "status", "carrier", "goods_description", "port_of_loading",
        "port_of_discharge", "shipped_on_board_date",
    }),
    # Tax record: payer and paying banks full; other banks the remaining balance; TAX full.
    ("tax_record", "SVC-CN", FULL),
    ("tax_record", "BANK-B", FULL),
    ("tax_record", "TAX-QD", FULL),
    ("tax_record", "BANK-A", {"record_id", "currency", "remaining_minor"}),
    ("tax_record", "CUSTOMS-QD", FORBIDDEN),
    ("tax_record", "EXP-QD", FORBIDDEN),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "reader", "expected"), VISIBILITY)
def test_visibility_table(world, kind, reader, expected):
    """Who may read what: each object for each kind of reader."""
    op = _query(world, kind)
    fx_view = world.driver.read(FX_ADMIN, op)
    assert fx_view.ok, fx_view
    result = world.driver.read(reader, op)
    if expected == FORBIDDEN:
        assert isinstance(result, Rejected) and result.code == ErrorCode.FORBIDDEN, result
    elif expected == FULL:
        assert result.ok and result.value == fx_view.value
    else:
        assert result.ok and set(result.value) == expected, result


def test_the_pricing_never_reaches_a_non_party(world):
    """Scenario 6: customs sees the financing flag on its declaration, not the pricing."""
    for reader in ("CUSTOMS-QD", "BANK-B"):
        for op in (_query(world, "financing"), _query(world, "invoice"), _query(world, "decl")):
            result = world.driver.read(reader, op)
            if result.ok:
                assert "rate_bp" not in repr(result.value)
                assert "lender" not in result.value and "encumbrances" not in result.value


def test_the_participant_directory_and_its_private_fields(world):
    public = {"participant_id", "role", "legal_name", "country", "status"}
    assert set(world.driver.read("BANK-B", GetParticipant(participant_id="EXP-QD")).value) == public
    sponsor_view = world.driver.read("BANK-A", GetParticipant(participant_id="EXP-QD")).value
    assert sponsor_view["tax_id"] and "flags" not in sponsor_view
    assert "flags" in world.driver.read(FX_ADMIN, GetParticipant(participant_id="EXP-QD")).value


@pytest.mark.parametrize(
    ("op", "code"),
    [
        # Need-to-know (issue 15, item 12): to a bank, a missing LC looks like a hidden one.
        (GetLc(lc_id="NOPE"), ErrorCode.FORBIDDEN),
        (GetInvoice(invoice_id="NOPE"), ErrorCode.UNKNOWN_DOCUMENT),
        (GetParticipant(participant_id="NOPE"), ErrorCode.UNKNOWN_PARTICIPANT),
        (GetCalendar(place="NOPE"), ErrorCode.UNKNOWN_CALENDAR),
        (GetAudit(start=0, limit=0), ErrorCode.MALFORMED),
        (GetAudit(start=-1, limit=5), ErrorCode.MALFORMED),
    ],
)
def test_unknown_records_and_bad_pages(world, op, code):
    assert world.driver.read("BANK-A", op).code == code


def test_calendars_are_public(world):
    assert world.driver.read("CARRIER-1", GetCalendar(place="NL-AMS")).value["weekend"] == [6, 7]


def test_an_unknown_reader_is_refused(world):
    result = world.driver.read("STRANGER", GetLc(lc_id=world.ids["lc"]))
    assert isinstance(result, Rejected) and result.code == ErrorCode.UNKNOWN_PARTICIPANT


def _audit(world: World, reader: str) -> list[dict]:
    events, start = [], 0
    while True:
        page = world.driver.read(reader, GetAudit(start=start, limit=50)).value
        events += page["events"]
        if page["next"] >= page["length"]:
            return events
        start = page["next"]


def test_audit_events_are_filtered_by_the_reader(world):
    """Visibility, audit events: FX_ADMIN all; CUSTOMS and TAX their domain; others the events
    touching their objects (and their own attempts); a rival bank nothing of LC-1."""
    everything = _audit(world, FX_ADMIN)
    assert len(everything) == len(world.driver.ledger.audit_events)
    customs = _audit(world, "CUSTOMS-QD")
    assert customs and all(
        e["command"].startswith("decl.") or e["actor"] == "CUSTOMS-QD" for e in customs
    )
    tax = _audit(world, "TAX-QD")
    assert tax and all(
        e["command"].startswith(("tax.", "pay.")) or e["actor"] == "TAX-QD" for e in tax
    )
    lc_ref = f"lc:{world.ids['lc']}"
    rival = _audit(world, "BANK-B")
    assert rival and not any(lc_ref in e["objects"] for e in rival)
    assert any(lc_ref in e["objects"] for e in _audit(world, "BANK-A"))


def test_reports_are_for_regulators(world):
    for name in REPORTS:
        op = OPERATIONS[name]()
        assert world.driver.read(FX_ADMIN, op).ok
        for reader in ("BANK-A", "EXP-QD", "CARRIER-1"):
            assert world.driver.read(reader, op).code == ErrorCode.FORBIDDEN, (name, reader)
    assert world.driver.read("TAX-QD", ReportTaxUsage()).ok
    assert world.driver.read("CUSTOMS-QD", ReportTaxUsage()).code == ErrorCode.FORBIDDEN
    rows = world.driver.read("CUSTOMS-QD", ReportDeclarationsFinanced()).value["rows"]
    assert [row[0] for row in rows] == [world.ids["decl"]]
    other_customs = world.participant(role=Role.CUSTOMS)
    assert world.driver.read(other_customs, ReportDeclarationsFinanced()).value["rows"] == []


def test_ordered_reads_are_audited_read_only_queries_change_nothing():
    """A refused read returns FORBIDDEN and is audited like any other attempt (when ordered);
    the read-only path leaves the state, digest included, as it was."""
    w = World()
    lc_id = w.lc()
    ledger = w.driver.ledger
    digest, events = ledger.digest(), len(ledger.audit_events)
    assert w.driver.read("BANK-B", GetLc(lc_id=lc_id)).code == ErrorCode.FORBIDDEN
    assert (ledger.digest(), len(ledger.audit_events)) == (digest, events)
    domain = ledger.domain_digest()
    assert w.driver.run("BANK-B", GetLc(lc_id=lc_id)).code == ErrorCode.FORBIDDEN
    assert w.driver.run("BANK-A", GetLc(lc_id=lc_id)).ok
    assert [e.outcome for e in ledger.audit_events[-2:]] == ["FORBIDDEN", "OK"]
    assert ledger.domain_digest() == domain and ledger.digest() != digest
