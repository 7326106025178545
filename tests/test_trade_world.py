"""A test world that can put a record of every kind in every status of the transition tables;
checked here by building each (kind, status) pair and reading the status back."""

from __future__ import annotations

import pytest

from pbft.crypto import sha256
from tradeapp.commands import (
    AmendAccept,
    AmendAdvise,
    AmendIssue,
    AmendReject,
    AmendRequest,
    CalDefine,
    DeclAccept,
    DeclCancel,
    DeclConfirmExit,
    DeclLodge,
    DeclReject,
    DeclRelease,
    EblIssue,
    EblSurrenderAccept,
    EblSurrenderRequest,
    EblVoid,
    FinApprove,
    FinClose,
    FinDisburse,
    FinReject,
    FinRepay,
    FinRequest,
    InvRegister,
    LcAdvise,
    LcApply,
    LcCancel,
    LcClose,
    LcConsentCancel,
    LcDecline,
    LcExpire,
    LcIssue,
    PartyAdmit,
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
    TaxRegisterRecord,
)
from tradeapp.model import Role
from tradeapp.scenario import FX_ADMIN, LedgerDriver, at, cast_driver, placeholder_key
from tradeapp.transitions import COMMAND_KIND, statuses

USD_100K = 10_000_000
#: The world's day: Monday 4 March 2024, 10:00 UTC.
TODAY = "2024-03-04"


class World:
    """The common cast plus builders that bring a fresh record of any kind into any status
    through the public commands only. Every builder returns the new record's id."""

    def __init__(self, *, check_invariants: bool = True) -> None:
        self.driver: LedgerDriver = cast_driver(at(TODAY), check_invariants=check_invariants)
        self._counter = 0

    def fresh(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}-{self._counter}"

    def ok(self, actor: str, op) -> dict:
        return self.driver.ok(actor, op)

    def record(self, kind: str, record_id: str):
        """The record as stored (read-only use)."""
        return self.driver.ledger.state.get(kind, record_id)

    # --- Builders ------------------------------------------------------------------------

    def participant(
        self, status: str = "ACTIVE", role: Role = Role.BANK, sponsor: str = FX_ADMIN
    ) -> str:
        participant_id = self.fresh(str(role))
        self.ok(
            sponsor,
            PartyAdmit(
                participant_id=participant_id, role=role, legal_name=participant_id,
                country="CN", tax_id=f"TAX-{participant_id}",
                public_key=self.driver.key(participant_id), place="CN-QD",
            ),
        )  # fmt: skip
        if status == "SUSPENDED":
            self.ok(FX_ADMIN, PartySuspend(participant_id=participant_id))
        return participant_id

    def calendar(self, status: str = "DEFINED") -> str:
        place = self.fresh("PLACE")
        self.ok(FX_ADMIN, CalDefine(place=place, weekend=[6, 7], holidays=[], utc_offset_minutes=0))
        return place

    def decl(
        self, status: str = "RELEASED", *, value: int = USD_100K, currency: str = "USD",
        exporter: str = "EXP-QD",
    ) -> str:  # fmt: skip
        decl_id = self.fresh("D")
        self.ok(
            exporter,
            DeclLodge(
                decl_id=decl_id, customs="CUSTOMS-QD", buyer="IMP-NL", goods_description="lamps",
                hs_code="9405.42", currency=currency, declared_value_minor=value,
            ),
        )  # fmt: skip
        path = {
            "LODGED": [],
            "ACCEPTED": [DeclAccept],
            "RELEASED": [DeclAccept, DeclRelease],
            "CLEARED": [DeclAccept, DeclRelease, DeclConfirmExit],
        }
        if status in path:
            for command in path[status]:
                self.ok("CUSTOMS-QD", command(decl_id=decl_id))
        elif status == "REJECTED":
            self.ok("CUSTOMS-QD", DeclReject(decl_id=decl_id, reason="INCOMPLETE"))
        else:
            assert status == "CANCELLED", status
            self.ok("CUSTOMS-QD", DeclCancel(decl_id=decl_id, reason="WITHDRAWN"))
        return decl_id

    def ebl(
        self, status: str = "ISSUED", *, holder: str = "EXP-QD", shipped: str = "2024-03-01"
    ) -> str:
        bl_no = self.fresh("BL")
        ebl_id = self.ok(
            "CARRIER-1",
            EblIssue(
                bl_no=bl_no, shipper="EXP-QD", consignee="IMP-NL", holder=holder,
                goods_description="lamps", port_of_loading="Qingdao",
                port_of_discharge="Rotterdam", shipped_on_board_date=shipped,
            ),
        )["ebl_id"]  # fmt: skip
        if status in ("SURRENDER_REQUESTED", "SURRENDERED"):
            self.ok(holder, EblSurrenderRequest(ebl_id=ebl_id))
        if status == "SURRENDERED":
            self.ok("CARRIER-1", EblSurrenderAccept(ebl_id=ebl_id))
        if status == "VOID":
            self.ok("CARRIER-1", EblVoid(ebl_id=ebl_id, reason="REISSUED"))
        return ebl_id

    def invoice(
        self, status: str = "REGISTERED", *, amount: int = USD_100K, currency: str = "USD",
        seller: str = "EXP-QD",
    ) -> str:  # fmt: skip
        invoice_id = self.fresh("INV")
        self.ok(
            seller,
            InvRegister(
                invoice_id=invoice_id, buyer="IMP-NL", invoice_no=f"NO-{invoice_id}",
                currency=currency, amount_minor=amount, issue_date="2024-03-01",
            ),
        )  # fmt: skip
        if status == "SETTLED":
            sponsor = self.record("participant", seller).sponsor
            self.ok(sponsor, RcvRecordCollection(
                invoice_id=invoice_id, amount_minor=amount, collection_id=f"COL-{invoice_id}"
            ))
        return invoice_id

    def financing(
        self, status: str = "REQUESTED", *, lender: str = "BANK-A", amount: int = 8_000_000,
        invoice_id: str | None = None, decl_ids: list[str] | None = None,
    ) -> str:  # fmt: skip
        fin_id = self.fresh("F")
        invoice_id = invoice_id or self.invoice()
        decl_ids = decl_ids or [self.decl()]
        self.ok(
            "EXP-QD",
            FinRequest(
                fin_id=fin_id, lender=lender, invoice_id=invoice_id, decl_ids=decl_ids,
                currency="USD", amount_minor=amount,
            ),
        )  # fmt: skip
        if status == "REJECTED":
            self.ok(lender, FinReject(fin_id=fin_id, reason="RISK"))
            return fin_id
        if status == "REQUESTED":
            return fin_id
        self.ok(lender, FinApprove(fin_id=fin_id, rate_bp=450))
        if status in ("DISBURSED", "REPAID", "CLOSED"):
            self.ok(lender, FinDisburse(fin_id=fin_id))
        if status in ("REPAID", "CLOSED"):
            repay = FinRepay(fin_id=fin_id, amount_minor=amount, repayment_id=f"RP-{fin_id}")
            self.ok(lender, repay)
        if status == "CLOSED":
            self.ok(lender, FinClose(fin_id=fin_id))
        return fin_id

    def lc(
        self, status: str = "ADVISED", *, amount: int = USD_100K, expiry: str = "2024-06-30",
        latest_shipment: str = "2024-05-31",
    ) -> str:  # fmt: skip
        lc_id = self.fresh("LC")
        if status in ("EXPIRED", "CLOSED"):
            expiry = "2024-03-01"  # already past: lc.expire is allowed today
        self.ok(
            "IMP-NL",
            LcApply(
                lc_id=lc_id, issuing_bank="BANK-I", advising_bank="BANK-A", beneficiary="EXP-QD",
                currency="USD", amount_minor=amount, expiry_date=expiry,
                latest_shipment_date=latest_shipment, presentation_period_days=21,
                goods_description="lamps",
            ),
        )  # fmt: skip
        if status == "SUBMITTED":
            return lc_id
        if status == "DECLINED":
            self.ok("BANK-I", LcDecline(lc_id=lc_id, reason="CREDIT_LIMIT"))
            return lc_id
        self.ok("BANK-I", LcIssue(lc_id=lc_id))
        if status in ("ADVISED", "CANCELLED"):
            self.ok("BANK-A", LcAdvise(lc_id=lc_id))
        if status == "CANCELLED":
            self.ok("EXP-QD", LcConsentCancel(lc_id=lc_id))
            self.ok("BANK-I", LcCancel(lc_id=lc_id))
        if status in ("EXPIRED", "CLOSED"):
            self.ok("BANK-I", LcExpire(lc_id=lc_id))
        if status == "CLOSED":
            self.ok("BANK-I", LcClose(lc_id=lc_id))
        return lc_id

    def amendment(self, status: str = "ADVISED", *, lc_id: str | None = None, changes=None) -> str:
        lc_id = lc_id or self.lc()
        amend_id = self.fresh("A")
        changes = changes or {"amount_minor": 12_000_000}
        self.ok("IMP-NL", AmendRequest(amend_id=amend_id, lc_id=lc_id, changes=changes))
        order = ["REQUESTED", "ISSUED", "ADVISED"]
        steps = [("BANK-I", AmendIssue), ("BANK-A", AmendAdvise)]
        reach = order.index(status) if status in order else len(order) - 1
        for actor, command in steps[:reach]:
            self.ok(actor, command(amend_id=amend_id))
        if status == "ACCEPTED":
            self.ok("EXP-QD", AmendAccept(amend_id=amend_id, accepted_terms=sorted(changes)))
        if status == "REJECTED":
            self.ok("EXP-QD", AmendReject(amend_id=amend_id))
        return amend_id

    def presentation(
        self, status: str = "PRESENTED", *, lc_id: str | None = None, ebl_id: str | None = None,
        amount: int = USD_100K,
    ) -> str:  # fmt: skip
        lc_id = lc_id or self.lc()
        ebl_id = ebl_id or self.ebl()
        pres_id = self.fresh("P")
        self.ok("EXP-QD", PresOpen(pres_id=pres_id, lc_id=lc_id))
        self.ok(
            "EXP-QD", PresAttach(pres_id=pres_id, doc_type="ebl", ref=ebl_id, content_digest=None)
        )
        if status == "OPEN":
            return pres_id
        self.ok("EXP-QD", PresComplete(pres_id=pres_id, amount_minor=amount))
        if status in ("COMPLYING", "HONOURED", "REIMBURSED", "DOCS_RELEASED"):
            self.ok("BANK-I", PresMarkComplying(pres_id=pres_id))
        if status in ("REFUSED", "WAIVED", "RETURNED"):
            self.ok(
                "BANK-I",
                PresRefuse(pres_id=pres_id, discrepancies=["LATE_SHIPMENT"], waiver_requested=True),
            )
        if status == "WAIVED":
            self.ok("IMP-NL", PresWaive(pres_id=pres_id))
        if status == "RETURNED":
            self.ok("BANK-I", PresReturnDocs(pres_id=pres_id))
        if status in ("HONOURED", "REIMBURSED", "DOCS_RELEASED"):
            self.ok("BANK-I", PresHonour(pres_id=pres_id))
        if status in ("REIMBURSED", "DOCS_RELEASED"):
            self.ok("BANK-I", PresReimburse(pres_id=pres_id))
        if status == "DOCS_RELEASED":
            self.ok("BANK-I", PresReleaseDocs(pres_id=pres_id))
        return pres_id

    def tax_record(self, status: str = "ACTIVE", *, amount: int = 5_000_000) -> str:
        record_id = self.fresh("TR")
        self.ok(
            "TAX-QD",
            TaxRegisterRecord(
                record_id=record_id, payer="SVC-CN", payee="ACME GmbH", currency="EUR",
                amount_minor=amount, contract_ref="C-1",
            ),
        )  # fmt: skip
        return record_id

    def payment(self, status: str = "RECORDED", *, record_id: str | None = None) -> str:
        record_id = record_id or self.tax_record()
        payment_id = self.fresh("PAY")
        self.ok(
            "BANK-B",
            PayServiceOutward(
                payment_id=payment_id, record_id=record_id, payer="SVC-CN", payee="ACME GmbH",
                currency="EUR", amount_minor=1_000,
            ),
        )  # fmt: skip
        return payment_id

    def make(self, kind: str, status: str) -> str:
        """A fresh record of `kind` in `status`."""
        return getattr(self, _BUILDERS[kind])(status)


_BUILDERS = {
    "participant": "participant",
    "calendar": "calendar",
    "decl": "decl",
    "ebl": "ebl",
    "invoice": "invoice",
    "financing": "financing",
    "lc": "lc",
    "amendment": "amendment",
    "presentation": "presentation",
    "tax_record": "tax_record",
    "payment": "payment",
}
#: Every (kind, status) of the transition tables.
KIND_STATUSES = [
    (kind, status) for kind in sorted(set(COMMAND_KIND.values())) for status in statuses(kind)
]


def test_the_world_covers_every_kind_the_tables_know():
    assert sorted(_BUILDERS) == sorted(set(COMMAND_KIND.values()))


@pytest.mark.parametrize(("kind", "status"), KIND_STATUSES)
def test_the_world_builds_every_status_of_every_kind(kind, status):
    world = World()
    record_id = world.make(kind, status)
    assert world.record(kind, record_id).status == status


def test_placeholder_keys_are_distinct_per_participant():
    assert placeholder_key("A") != placeholder_key("B") and len(placeholder_key("A")) == 32
    assert sha256(b"") != placeholder_key("")
