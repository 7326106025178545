"""The wire shape of every ledger command and query: the single source of truth.

An operation is the msgpack array `[name, args, actor]`:
- `name`: the command or query name, e.g. "lc.issue", "get.lc", "report.lc_totals";
- `args`: a map holding exactly the fields of the operation's dataclass below;
- `actor`: the participant id the sender believes it signs as, or nil. The ledger never takes
  the actor from here (the actor is always the signing key); a non-nil value that differs from
  the signer's participant id is refused with ACTOR_MISMATCH.

A result is the msgpack array `["ok", value]` (value: a map) or `["error", code, message]`
with `code` one of `ErrorCode`. `decode_result` turns it into `Accepted` or `Rejected`.

Each dataclass here is a builder (`LcIssue(lc_id="LC-1").encode()`), the ledger's parser
(`decode_operation`) and the documentation of the fields. Field annotations are the wire types
below (`Id`, `Date`, `Text`, ...), checked strictly on decode: a missing, extra or ill-typed field
is MALFORMED. Business checks (a known currency, a positive amount) are the ledger's, after
authorisation, with their own codes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .banking_calendar import parse_date
from .errors import ErrorCode
from .model import Role, pack_canonical, unpack_strict

# --- Wire types (annotation names; each has a check below) ----------------------------------
Id = str  # 1..ID_CHARS_MAX of [A-Za-z0-9._/-]: ids of records and participants
Ids = list[str]  # 1..LIST_ITEMS_MAX distinct Ids
Text = str  # at most TEXT_CHARS_MAX characters
Date = str  # "YYYY-MM-DD"
Currency = str  # an ISO 4217 code (known codes are checked by the ledger: UNKNOWN_CURRENCY)
Amount = int  # minor units (positivity and bound are checked by the ledger: INVALID_AMOUNT)
Key = bytes  # a 32-byte Ed25519 public key
Codes = list[str]  # 0..LIST_ITEMS_MAX short codes
Changes = dict[str, Any]  # amended LC terms: name -> new value (checked by the ledger)
Weekdays = list[int]  # distinct ISO weekdays 1..7
Dates = list[str]  # distinct ISO dates

#: Bounds of an operation; anything beyond is MALFORMED.
OPERATION_BYTES_MAX = 64 * 1024
ID_CHARS_MAX = 64
TEXT_CHARS_MAX = 512
LIST_ITEMS_MAX = 64
HOLIDAYS_MAX = 400
AUDIT_PAGE_MAX = 256
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_id(value: object) -> bool:
    """True iff `value` is a valid record or participant id (see `Id`)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= ID_CHARS_MAX
        and all(ch in _ID_CHARS for ch in value)
    )


def _is_weekday(value: object) -> bool:
    return _is_int(value) and 1 <= value <= 7  # type: ignore[operator]


def _is_date(value: object) -> bool:
    return parse_date(value) is not None


def _is_distinct_list(value: object, item_check: Any, items_max: int, *, empty: bool) -> bool:
    if not isinstance(value, list) or len(value) > items_max or (not value and not empty):
        return False
    if not all(item_check(item) for item in value):
        return False
    return len(set(value)) == len(value)


_WIRE_CHECKS: dict[str, Any] = {
    "Id": is_id,
    "Id | None": lambda v: v is None or is_id(v),
    "Ids": lambda v: _is_distinct_list(v, is_id, LIST_ITEMS_MAX, empty=False),
    "Text": lambda v: isinstance(v, str) and len(v) <= TEXT_CHARS_MAX,
    "Date": _is_date,
    "Currency": lambda v: isinstance(v, str) and 0 < len(v) <= 8,
    "Amount": _is_int,
    "int": _is_int,
    "bool": lambda v: isinstance(v, bool),
    "Key": lambda v: isinstance(v, bytes) and len(v) == 32,
    "bytes | None": lambda v: v is None or (isinstance(v, bytes) and len(v) == 32),
    "Codes": lambda v: _is_distinct_list(v, is_id, LIST_ITEMS_MAX, empty=True),
    "Changes": lambda v: (
        isinstance(v, dict) and 0 < len(v) <= LIST_ITEMS_MAX and all(isinstance(k, str) for k in v)
    ),
    "Weekdays": lambda v: _is_distinct_list(v, _is_weekday, 7, empty=True),
    "Dates": lambda v: _is_distinct_list(v, _is_date, HOLIDAYS_MAX, empty=True),
    "Role": lambda v: isinstance(v, str) and v in Role.__members__,
}  # fmt: skip

#: Fields naming a record: the audit trail lists them as the objects an event touches.
FIELD_KINDS: dict[str, str] = {
    "participant_id": "participant",
    "place": "calendar",
    "decl_id": "decl",
    "decl_ids": "decl",
    "ebl_id": "ebl",
    "invoice_id": "invoice",
    "fin_id": "financing",
    "lc_id": "lc",
    "amend_id": "amendment",
    "pres_id": "presentation",
    "record_id": "tax_record",
    "payment_id": "payment",
    "repayment_id": "repayment",
    "collection_id": "collection",
}

#: name -> operation class; COMMANDS change state (ordered), QUERIES only read.
OPERATIONS: dict[str, type[Operation]] = {}
COMMANDS: dict[str, type[Operation]] = {}
QUERIES: dict[str, type[Operation]] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """Base of every command and query. `NAME` is its wire name; `TARGET` the field holding
    the id of the record it creates or acts on (None: the ledger derives it)."""

    NAME: ClassVar[str]
    TARGET: ClassVar[str | None]

    def encode(self, actor: str | None = None) -> bytes:
        """The operation bytes. `actor`, if given, is checked by the ledger against the signer.

        Raises TypeError/ValueError if a field does not satisfy its wire type (a bug of the
        caller: the ledger would refuse the bytes as MALFORMED anyway).
        """
        args = {f.name: getattr(self, f.name) for f in fields(self)}
        for f in fields(self):
            if not _WIRE_CHECKS[str(f.type)](_plain(args[f.name])):
                raise ValueError(f"{self.NAME}: {f.name}={args[f.name]!r} is not a {f.type}")
        if actor is not None and not is_id(actor):
            raise ValueError(f"actor {actor!r} is not an id")
        return pack_canonical([self.NAME, _plain(args), actor])

    def references(self) -> list[str]:
        """The records this operation names, as "kind:id" strings, sorted."""
        found: set[str] = set()
        for f in fields(self):
            kind = FIELD_KINDS.get(f.name)
            value = getattr(self, f.name)
            if kind is None or value is None:
                continue
            for record_id in value if isinstance(value, list) else [value]:
                found.add(f"{kind}:{record_id}")
        return sorted(found)


def _plain(value: Any) -> Any:
    """Enums and tuples as msgpack sees them (str, list)."""
    if isinstance(value, Role):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _operation(name: str, target: str | None, *, query: bool = False) -> Any:
    def register(cls: type) -> type:
        cls = dataclass(frozen=True, slots=True, kw_only=True)(cls)
        cls.NAME = name
        cls.TARGET = target
        for f in fields(cls):
            assert str(f.type) in _WIRE_CHECKS, f"{cls.__name__}.{f.name}: {f.type}"
        assert target is None or target in {f.name for f in fields(cls)}, cls
        assert name not in OPERATIONS, name
        OPERATIONS[name] = cls
        (QUERIES if query else COMMANDS)[name] = cls
        return cls

    return register


# --- Participants, calendars, supervision ----------------------------------------------------


@_operation("party.admit", "participant_id")
class PartyAdmit(Operation):
    """FX_ADMIN admits banks, carriers and authorities; a bank admits (sponsors) traders."""

    participant_id: Id
    role: Role
    legal_name: Text
    country: Text
    tax_id: Text
    public_key: Key
    place: Id


@_operation("party.suspend", "participant_id")
class PartySuspend(Operation):
    participant_id: Id


@_operation("party.reinstate", "participant_id")
class PartyReinstate(Operation):
    participant_id: Id


@_operation("reg.flag", "participant_id")
class RegFlag(Operation):
    """FX_ADMIN marks a participant for supervision; the flag is visible to FX_ADMIN only."""

    participant_id: Id
    reason: Id
    note: Text


@_operation("cal.define", "place")
class CalDefine(Operation):
    """Define (or redefine) the banking calendar of a place. Stored deadlines do not move."""

    place: Id
    weekend: Weekdays
    holidays: Dates
    utc_offset_minutes: int


@_operation("cal.add_holiday", "place")
class CalAddHoliday(Operation):
    place: Id
    date: Date


# --- Goods declarations ----------------------------------------------------------------------


@_operation("decl.lodge", "decl_id")
class DeclLodge(Operation):
    """The exporter lodges an export declaration with a customs office. `buyer` is the
    consignee: a participant id, or a name with `buyer_country` (ISO 3166 alpha-2)."""

    decl_id: Id
    customs: Id
    buyer: Text
    goods_description: Text
    hs_code: Text
    currency: Currency
    declared_value_minor: Amount
    buyer_country: Text = ""


@_operation("decl.accept", "decl_id")
class DeclAccept(Operation):
    decl_id: Id


@_operation("decl.reject", "decl_id")
class DeclReject(Operation):
    decl_id: Id
    reason: Id


@_operation("decl.release", "decl_id")
class DeclRelease(Operation):
    decl_id: Id


@_operation("decl.confirm_exit", "decl_id")
class DeclConfirmExit(Operation):
    decl_id: Id


@_operation("decl.approve_amendment", "decl_id")
class DeclApproveAmendment(Operation):
    """Customs approves a new declared value; below the financed amount it raises OVER_FINANCED."""

    decl_id: Id
    declared_value_minor: Amount


@_operation("decl.cancel", "decl_id")
class DeclCancel(Operation):
    decl_id: Id
    reason: Id


# --- Electronic bills of lading --------------------------------------------------------------


@_operation("ebl.issue", None)
class EblIssue(Operation):
    """The carrier issues an eBL to `holder`; its id is "<carrier>/<bl_no>". `decl_id` names
    the shipper's export declaration of the goods, when the carrier has it."""

    bl_no: Id
    shipper: Id
    consignee: Id
    holder: Id
    goods_description: Text
    port_of_loading: Text
    port_of_discharge: Text
    shipped_on_board_date: Date
    decl_id: Id | None = None


@_operation("ebl.transfer", "ebl_id")
class EblTransfer(Operation):
    ebl_id: Id
    to: Id


@_operation("ebl.endorse", "ebl_id")
class EblEndorse(Operation):
    """The holder endorses the (order) bill to `endorsee`, who becomes the holder."""

    ebl_id: Id
    endorsee: Id


@_operation("ebl.pledge", "ebl_id")
class EblPledge(Operation):
    """The holder pledges the eBL to a bank: custody-locked until the bank releases it."""

    ebl_id: Id
    bank: Id


@_operation("ebl.release_pledge", "ebl_id")
class EblReleasePledge(Operation):
    ebl_id: Id


@_operation("ebl.surrender_request", "ebl_id")
class EblSurrenderRequest(Operation):
    ebl_id: Id


@_operation("ebl.surrender_accept", "ebl_id")
class EblSurrenderAccept(Operation):
    ebl_id: Id


@_operation("ebl.surrender_reject", "ebl_id")
class EblSurrenderReject(Operation):
    ebl_id: Id
    reason: Id


@_operation("ebl.void", "ebl_id")
class EblVoid(Operation):
    ebl_id: Id
    reason: Id


# --- Invoices, receivables, financing --------------------------------------------------------


@_operation("inv.register", "invoice_id")
class InvRegister(Operation):
    """The seller registers an invoice; its fingerprint must be new (DUPLICATE_INVOICE).
    `buyer` is a participant id, or a name with `buyer_country` (ISO 3166 alpha-2)."""

    invoice_id: Id
    buyer: Text
    invoice_no: Text
    currency: Currency
    amount_minor: Amount
    issue_date: Date
    buyer_country: Text = ""


@_operation("rcv.record_collection", "invoice_id")
class RcvRecordCollection(Operation):
    """The collecting bank records that the buyer paid (all or part of) the invoice.
    `collection_id` is the bank's own id for this collection (unique among collections): a
    resubmission with it is answered from the first, never recorded twice."""

    invoice_id: Id
    amount_minor: Amount
    collection_id: Id


@_operation("fin.request", "fin_id")
class FinRequest(Operation):
    """The exporter asks `lender` to finance its invoice, backed by its declarations. A
    declaration whose consignee is not the invoice's buyer needs `buyer_mismatch_reason`, one of
    `model.BUYER_MISMATCH_REASONS`."""

    fin_id: Id
    lender: Id
    invoice_id: Id
    decl_ids: Ids
    currency: Currency
    amount_minor: Amount
    buyer_mismatch_reason: Id | None = None


@_operation("fin.approve", "fin_id")
class FinApprove(Operation):
    """The lender approves: every check in one command; creates the encumbrance."""

    fin_id: Id
    rate_bp: int


@_operation("fin.reject", "fin_id")
class FinReject(Operation):
    fin_id: Id
    reason: Id


@_operation("fin.disburse", "fin_id")
class FinDisburse(Operation):
    fin_id: Id


@_operation("fin.repay", "fin_id")
class FinRepay(Operation):
    """The lender records a repayment of (part of) the outstanding principal. `repayment_id`
    is the lender's own id for it (unique among repayments): a resubmission with it is
    answered from the first, never recorded twice."""

    fin_id: Id
    amount_minor: Amount
    repayment_id: Id


@_operation("fin.close", "fin_id")
class FinClose(Operation):
    fin_id: Id


# --- Letters of credit, amendments, presentations --------------------------------------------


@_operation("lc.apply", "lc_id")
class LcApply(Operation):
    """The applicant (importer) applies for an LC in favour of `beneficiary`."""

    lc_id: Id
    issuing_bank: Id
    advising_bank: Id
    beneficiary: Id
    currency: Currency
    amount_minor: Amount
    expiry_date: Date
    latest_shipment_date: Date
    presentation_period_days: int
    goods_description: Text


@_operation("lc.decline", "lc_id")
class LcDecline(Operation):
    lc_id: Id
    reason: Id


@_operation("lc.issue", "lc_id")
class LcIssue(Operation):
    lc_id: Id


@_operation("lc.advise", "lc_id")
class LcAdvise(Operation):
    lc_id: Id


@_operation("lc.consent_cancel", "lc_id")
class LcConsentCancel(Operation):
    """The beneficiary consents to the cancellation of the LC."""

    lc_id: Id


@_operation("lc.cancel", "lc_id")
class LcCancel(Operation):
    lc_id: Id


@_operation("lc.expire", "lc_id")
class LcExpire(Operation):
    lc_id: Id


@_operation("lc.close", "lc_id")
class LcClose(Operation):
    lc_id: Id


@_operation("amend.request", "amend_id")
class AmendRequest(Operation):
    """The applicant asks for changed terms (keys from `model.AMENDABLE_TERMS`)."""

    amend_id: Id
    lc_id: Id
    changes: Changes


@_operation("amend.issue", "amend_id")
class AmendIssue(Operation):
    amend_id: Id


@_operation("amend.advise", "amend_id")
class AmendAdvise(Operation):
    amend_id: Id


@_operation("amend.accept", "amend_id")
class AmendAccept(Operation):
    """The beneficiary accepts; `accepted_terms` must name every change (PARTIAL_ACCEPTANCE)."""

    amend_id: Id
    accepted_terms: Codes


@_operation("amend.reject", "amend_id")
class AmendReject(Operation):
    amend_id: Id


@_operation("pres.open", "pres_id")
class PresOpen(Operation):
    """The beneficiary opens a presentation under an LC."""

    pres_id: Id
    lc_id: Id


@_operation("pres.attach", "pres_id")
class PresAttach(Operation):
    """Attach a document: doc_type "ebl" (ref = eBL id, custody-locked), "invoice" (ref =
    invoice id), or any other type with `content_digest` = SHA-256 of the document."""

    pres_id: Id
    doc_type: Id
    ref: Id
    content_digest: bytes | None


@_operation("pres.complete", "pres_id")
class PresComplete(Operation):
    pres_id: Id
    amount_minor: Amount


@_operation("pres.mark_complying", "pres_id")
class PresMarkComplying(Operation):
    pres_id: Id


@_operation("pres.refuse", "pres_id")
class PresRefuse(Operation):
    """One refusal notice with coded discrepancies (`model.DISCREPANCY_CODES`)."""

    pres_id: Id
    discrepancies: Codes
    waiver_requested: bool


@_operation("pres.waive", "pres_id")
class PresWaive(Operation):
    pres_id: Id


@_operation("pres.honour", "pres_id")
class PresHonour(Operation):
    pres_id: Id


@_operation("pres.reimburse", "pres_id")
class PresReimburse(Operation):
    pres_id: Id


@_operation("pres.release_docs", "pres_id")
class PresReleaseDocs(Operation):
    pres_id: Id


@_operation("pres.return_docs", "pres_id")
class PresReturnDocs(Operation):
    pres_id: Id


# --- Service trade -----------------------------------------------------------------------------


@_operation("tax.register_record", "record_id")
class TaxRegisterRecord(Operation):
    record_id: Id
    payer: Id
    payee: Text
    currency: Currency
    amount_minor: Amount
    contract_ref: Text


@_operation("pay.service_outward", "payment_id")
class PayServiceOutward(Operation):
    """The payer's bank records an outward payment against a tax record."""

    payment_id: Id
    record_id: Id
    payer: Id
    payee: Text
    currency: Currency
    amount_minor: Amount


# --- Queries -----------------------------------------------------------------------------------


@_operation("get.participant", "participant_id", query=True)
class GetParticipant(Operation):
    participant_id: Id


@_operation("get.calendar", "place", query=True)
class GetCalendar(Operation):
    place: Id


@_operation("get.decl", "decl_id", query=True)
class GetDeclaration(Operation):
    decl_id: Id


@_operation("get.ebl", "ebl_id", query=True)
class GetEbl(Operation):
    ebl_id: Id


@_operation("get.invoice", "invoice_id", query=True)
class GetInvoice(Operation):
    """The receivable and its encumbrances, as far as the reader may see them."""

    invoice_id: Id


@_operation("get.financing", "fin_id", query=True)
class GetFinancing(Operation):
    fin_id: Id


@_operation("get.lc", "lc_id", query=True)
class GetLc(Operation):
    lc_id: Id


@_operation("get.amendment", "amend_id", query=True)
class GetAmendment(Operation):
    amend_id: Id


@_operation("get.presentation", "pres_id", query=True)
class GetPresentation(Operation):
    pres_id: Id


@_operation("get.tax_record", "record_id", query=True)
class GetTaxRecord(Operation):
    record_id: Id


@_operation("get.alerts", None, query=True)
class GetAlerts(Operation):
    pass


@_operation("get.audit", None, query=True)
class GetAudit(Operation):
    """Audit events from index `start` (at most `limit`), filtered by the reader."""

    start: int
    limit: int


@_operation("report.outstanding_financing", None, query=True)
class ReportOutstandingFinancing(Operation):
    pass


@_operation("report.declarations_financed", None, query=True)
class ReportDeclarationsFinanced(Operation):
    pass


@_operation("report.rejections", None, query=True)
class ReportRejections(Operation):
    pass


@_operation("report.lc_totals", None, query=True)
class ReportLcTotals(Operation):
    pass


@_operation("report.tax_usage", None, query=True)
class ReportTaxUsage(Operation):
    pass


@_operation("report.decision_times", None, query=True)
class ReportDecisionTimes(Operation):
    pass


#: Every report query, in documentation order.
REPORTS = tuple(name for name in QUERIES if name.startswith("report."))


# --- Examples ----------------------------------------------------------------------------------

#: A well-formed placeholder value for each wire type.
_EXAMPLE_VALUES: dict[str, Any] = {
    "Id": "X-1",
    "Id | None": None,
    "Ids": ["X-1"],
    "Text": "text",
    "Date": "2024-01-02",
    "Currency": "USD",
    "Amount": 100,
    "int": 1,
    "bool": False,
    "Key": bytes(range(32)),
    "bytes | None": None,
    "Codes": [],
    "Changes": {"amount_minor": 100},
    "Weekdays": [6, 7],
    "Dates": [],
    "Role": "TRADER",
}


def example_operation(cls: type[Operation], **overrides: Any) -> Operation:
    """A well-formed instance of `cls` with placeholder values (for documentation, fuzzing and
    authorisation tests), with `overrides` applied. Raises TypeError for an unknown field."""
    values = {f.name: _EXAMPLE_VALUES[str(f.type)] for f in fields(cls)}
    values.update(overrides)
    return cls(**values)


# --- Decoding operations -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded operation: the name as sent (for the audit trail), the operation if it parsed,
    the claimed actor, and the refusal if it did not parse."""

    name: str | None
    operation: Operation | None
    claimed_actor: str | None
    error: ErrorCode | None = None
    message: str = ""


def decode_operation(data: bytes) -> Envelope:
    """Parse operation bytes strictly. Never raises: junk gives an Envelope with `error`
    MALFORMED or UNKNOWN_COMMAND (and `name` if one could be read)."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) > OPERATION_BYTES_MAX:
        return Envelope(None, None, None, ErrorCode.MALFORMED, "not bytes or too large")
    try:
        decoded = unpack_strict(bytes(data))
    except ValueError:
        return Envelope(None, None, None, ErrorCode.MALFORMED, "operation is not msgpack")
    if not isinstance(decoded, list) or len(decoded) != 3 or not isinstance(decoded[0], str):
        return Envelope(None, None, None, ErrorCode.MALFORMED, "expected [name, args, actor]")
    name, args, actor = decoded
    cls = OPERATIONS.get(name)
    if cls is None:
        return Envelope(
            name[:ID_CHARS_MAX], None, None, ErrorCode.UNKNOWN_COMMAND, f"unknown {name!r:.40}"
        )
    if actor is not None and not is_id(actor):
        return Envelope(name, None, None, ErrorCode.MALFORMED, "actor must be an id or nil")
    if not isinstance(args, dict) or not all(isinstance(key, str) for key in args):
        return Envelope(name, None, actor, ErrorCode.MALFORMED, "args must be a map keyed by str")
    names = [f.name for f in fields(cls)]
    if sorted(args) != sorted(names):
        return Envelope(name, None, actor, ErrorCode.MALFORMED, f"{name} takes fields {names}")
    for f in fields(cls):
        if not _WIRE_CHECKS[str(f.type)](args[f.name]):
            return Envelope(name, None, actor, ErrorCode.MALFORMED, f"{f.name}: not a {f.type}")
    return Envelope(name, cls(**args), actor)


# --- Results -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """A command was applied, or a read answered: `value` is its result map."""

    value: dict[str, Any]

    @property
    def ok(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Rejected:
    """A command or read was refused: `code` is stable, `message` is for people."""

    code: ErrorCode
    message: str

    @property
    def ok(self) -> bool:
        return False


Result = Accepted | Rejected


def encode_accepted(value: dict[str, Any]) -> bytes:
    """The canonical bytes of an accepted result."""
    return pack_canonical(["ok", value])


def encode_rejected(code: ErrorCode, message: str) -> bytes:
    """The canonical bytes of a refusal."""
    return pack_canonical(["error", str(code), message])


def decode_result(data: bytes) -> Result:
    """Decode a ledger result. Raises ValueError if it is not one (e.g. from a faulty replica),
    including an unknown error code."""
    decoded = unpack_strict(data)
    match decoded:
        case ["ok", dict() as value]:
            return Accepted(value)
        case ["error", str() as code, str() as message] if code in ErrorCode.__members__:
            return Rejected(ErrorCode(code), message)
    raise ValueError(f"not a ledger result: {decoded!r:.200}")
