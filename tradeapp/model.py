"""The ledger's records, its state, and their one canonical encoding.

Every record is a mutable, slotted dataclass of wire-ready values only (int, str, bytes, bool,
None, lists, and str-keyed dicts of those), so the state encodes to msgpack without
conversion. The canonical encoding sorts every map's keys; a record's dict and list fields are
kept in a deterministic order by the code that fills them. The state holds one table per kind,
keyed by the record's id; a few derived indexes (key -> participant, fingerprint -> invoice,
fingerprint -> encumbrances) are rebuilt from the tables, never encoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar

import msgpack

from pbft.crypto import sha256


class Role(StrEnum):
    """A participant's role (docs/TRADE-DOMAIN.md, Roles)."""

    FX_ADMIN = "FX_ADMIN"
    CUSTOMS = "CUSTOMS"
    TAX = "TAX"
    BANK = "BANK"
    CARRIER = "CARRIER"
    TRADER = "TRADER"


#: Regulators govern and read; they never change a commercial fact (`UNAUTHORIZED`).
REGULATOR_ROLES = frozenset({Role.FX_ADMIN, Role.CUSTOMS, Role.TAX})
COMMERCIAL_ROLES = frozenset({Role.BANK, Role.CARRIER, Role.TRADER})

#: Alert codes (alerts are facts the ledger raises, not refusals).
ALERT_OVER_FINANCED = "OVER_FINANCED"
#: A new receivable nearly matches an earlier one (tradeapp/README.md: "Rules the ledger
#: decides"): raised for the seller's registering bank and FX_ADMIN.
ALERT_SIMILAR_RECEIVABLE = "SIMILAR_RECEIVABLE"

#: Why a financing may rest on declarations whose consignee is not the invoice's buyer
#: (docs/TRADE-DOMAIN.md, Financing): the consignee is the buyer's agent or forwarder; a company
#: of the buyer's group; the goods were sold on while in transit.
BUYER_MISMATCH_REASONS = ("CONSIGNEE_IS_AGENT", "BUYER_GROUP_ENTITY", "SOLD_IN_TRANSIT")

#: Discrepancy codes an examining bank may cite when refusing a presentation (UCP 600 art. 16).
DISCREPANCY_CODES = (
    "LATE_SHIPMENT",
    "AMOUNT_EXCEEDS_CREDIT",
    "GOODS_DESCRIPTION_MISMATCH",
    "DOCUMENT_MISSING",
    "DOCUMENTS_INCONSISTENT",
    "PORT_MISMATCH",
    "OTHER",
)


#: The terms of an LC that an amendment may change, with the type each new value must have.
AMENDABLE_TERMS = (
    "amount_minor",
    "expiry_date",
    "goods_description",
    "latest_shipment_date",
    "presentation_period_days",
)
#: UCP 600 art. 14(c): 21 calendar days after shipment unless the credit says otherwise.
PRESENTATION_PERIOD_DAYS_DEFAULT = 21
PRESENTATION_PERIOD_DAYS_MAX = 365
#: UCP 600 art. 14(b): five banking days following the day of presentation.
EXAMINATION_BANKING_DAYS = 5


# --- Canonical encoding ----------------------------------------------------------------------


def canonical(value: Any) -> Any:
    """`value` with every dict rebuilt in sorted key order (lists keep their order). Raises
    ValueError for a map with a key that is not a str (no canonical order)."""
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ValueError("maps must be keyed by str")
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return value


def pack_canonical(value: Any) -> bytes:
    """The canonical msgpack bytes of `value` (sorted keys, bin for bytes, str for text).
    Raises ValueError for what msgpack cannot carry (an integer beyond 64 bits)."""
    try:
        return msgpack.packb(canonical(value), use_bin_type=True)
    except OverflowError as error:
        raise ValueError(f"cannot encode: an integer is outside the 64-bit range ({error})") from None


def unpack_strict(data: bytes) -> Any:
    """Decode one msgpack value strictly; raises ValueError on anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"expected bytes, got {type(data).__name__}")
    try:
        return msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise ValueError(f"not a msgpack value: {error}") from None


# --- Records ---------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_keyed(value: object) -> bool:
    """True iff every map inside `value` (itself included) is keyed by str."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_str_keyed(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_str_keyed(item) for item in value)
    return True


#: Annotation (as written) -> check of a decoded value; restore uses it to refuse junk.
_FIELD_CHECKS: dict[str, Callable[[object], bool]] = {
    "int": _is_int,
    "str": lambda v: isinstance(v, str),
    "bytes": lambda v: isinstance(v, bytes),
    "bool": lambda v: isinstance(v, bool),
    "str | None": lambda v: v is None or isinstance(v, str),
    "int | None": lambda v: v is None or _is_int(v),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    "list[int]": lambda v: isinstance(v, list) and all(_is_int(i) for i in v),
    "list[dict[str, Any]]": lambda v: (
        isinstance(v, list) and all(isinstance(i, dict) for i in v) and _is_str_keyed(v)
    ),
    "dict[str, int]": lambda v: (
        isinstance(v, dict) and all(_is_int(i) for i in v.values()) and _is_str_keyed(v)
    ),
    "dict[str, Any]": lambda v: isinstance(v, dict) and _is_str_keyed(v),
}

#: kind -> record class; filled by `_record`.
RECORD_TYPES: dict[str, type[Record]] = {}


class Record:
    """Base of the ledger's records: a kind, an id field and a `status`."""

    __slots__ = ()
    KIND: ClassVar[str]
    ID_FIELD: ClassVar[str]
    status: str

    @property
    def record_key(self) -> str:
        return getattr(self, self.ID_FIELD)

    def to_wire(self) -> dict[str, Any]:
        """The record as a plain map (shares nested lists/dicts: encode it, do not mutate it)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_wire(cls, wire: object) -> Record:
        """Rebuild a record from `to_wire()` output; ValueError on a missing, extra or
        wrongly typed field."""
        if not isinstance(wire, dict) or not all(isinstance(key, str) for key in wire):
            raise ValueError(f"{cls.KIND} record is not a map keyed by str")
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        if sorted(wire) != sorted(names):
            raise ValueError(f"{cls.KIND} record has fields {sorted(wire)}, expected {names}")
        for f in fields(cls):  # type: ignore[arg-type]
            if not _FIELD_CHECKS[str(f.type)](wire[f.name]):
                raise ValueError(f"{cls.KIND}.{f.name} has the wrong type")
        return cls(**wire)


def _record(kind: str, id_field: str) -> Callable[[type], type]:
    def register(cls: type) -> type:
        cls = dataclass(slots=True, kw_only=True)(cls)
        cls.KIND = kind
        cls.ID_FIELD = id_field
        for f in fields(cls):
            assert str(f.type) in _FIELD_CHECKS, f"{cls.__name__}.{f.name}: {f.type}"
        RECORD_TYPES[kind] = cls
        return cls

    return register


@_record("participant", "participant_id")
class Participant(Record):
    """An admitted party. `place` names its banking calendar; `flags` are supervisory marks
    ({reason, note, flagged_by, sequence}) in the order they were raised."""

    participant_id: str
    status: str  # ACTIVE | SUSPENDED
    role: str
    legal_name: str
    country: str
    tax_id: str
    public_key: bytes
    place: str
    sponsor: str | None  # the admitting bank of a trader; None for others
    admitted_by: str | None  # None for the genesis FX_ADMINs
    flags: list[dict[str, Any]] = field(default_factory=list)


@_record("calendar", "place")
class Calendar(Record):
    """Banking days at a place: ISO weekend days, sorted ISO holiday dates, fixed UTC offset."""

    place: str
    status: str  # DEFINED
    weekend: list[int]
    holidays: list[str]
    utc_offset_minutes: int


@_record("decl", "decl_id")
class Declaration(Record):
    """An export goods declaration, lodged by the exporter and decided by its customs office."""

    decl_id: str
    status: str  # LODGED ACCEPTED RELEASED CLEARED REJECTED CANCELLED
    exporter: str
    customs: str
    buyer: str  # the consignee, as keyed
    buyer_key: str  # who the consignee is (fingerprint.participant_buyer_key / named_buyer_key)
    goods_description: str
    hs_code: str
    currency: str
    declared_value_minor: int
    lodged_ms: int
    ebl_ids: list[str]  # eBLs whose carrier named this declaration, in issue order


@_record("ebl", "ebl_id")
class Ebl(Record):
    """An electronic bill of lading. `chain` lists every change of holder ({kind, from, to,
    sequence}); `locked_by` names the presentation or pledge holding it in custody."""

    ebl_id: str
    status: str  # ISSUED SURRENDER_REQUESTED SURRENDERED VOID
    carrier: str
    bl_no: str
    shipper: str
    consignee: str
    holder: str
    goods_description: str
    port_of_loading: str
    port_of_discharge: str
    shipped_on_board_date: str
    chain: list[dict[str, Any]]
    locked_by: str | None
    custodian: str | None
    surrender_answered: bool
    decl_id: str | None  # the export declaration of the goods, as the carrier names it


@_record("invoice", "invoice_id")
class Invoice(Record):
    """A receivable: the seller's invoice, its fingerprint, and what the buyer has paid."""

    invoice_id: str
    status: str  # REGISTERED SETTLED
    seller: str
    buyer: str
    buyer_key: str  # who the buyer is (fingerprint.participant_buyer_key / named_buyer_key)
    invoice_no: str
    currency: str
    amount_minor: int
    issue_date: str
    fingerprint: bytes
    collected_minor: int
    presentations: list[str]  # presentations under an LC that attached it, in attach order


@_record("encumbrance", "enc_id")
class Encumbrance(Record):
    """What a financing rests on: a receivable (by fingerprint) and amounts of declarations."""

    enc_id: str
    status: str  # ACTIVE SETTLED RELEASED
    fingerprint: bytes
    invoice_id: str
    fin_id: str
    lender: str
    currency: str
    amount_minor: int
    allocations: dict[str, int]  # decl_id -> amount drawn from its financeable balance
    paid: dict[str, int]  # decl_id -> collections on the receivable attributed to it


@_record("financing", "fin_id")
class Financing(Record):
    """An export receivable financing from request to close."""

    fin_id: str
    status: str  # REQUESTED APPROVED REJECTED DISBURSED REPAID CLOSED
    applicant: str
    lender: str
    invoice_id: str
    decl_ids: list[str]
    currency: str
    amount_minor: int
    rate_bp: int | None  # pricing, set at approval: visible to the parties and FX_ADMIN only
    enc_id: str | None
    disbursed_minor: int
    repaid_minor: int
    requested_ms: int
    decided_ms: int | None
    reject_reason: str | None
    buyer_mismatch_reason: str | None  # one of BUYER_MISMATCH_REASONS, or None


@_record("lc", "lc_id")
class LetterOfCredit(Record):
    """A documentary credit. `terms` holds the amendable terms (see AMENDABLE_TERMS)."""

    lc_id: str
    status: str  # SUBMITTED DECLINED ISSUED ADVISED CANCELLED EXPIRED CLOSED
    applicant: str
    beneficiary: str
    issuing_bank: str
    advising_bank: str
    currency: str
    terms: dict[str, Any]
    terms_version: int
    drawn_minor: int
    cancel_consent: bool
    amendments: list[str]
    presentations: list[str]


@_record("amendment", "amend_id")
class Amendment(Record):
    """A proposed change of an LC's terms; the parties are copied from the LC."""

    amend_id: str
    status: str  # REQUESTED ISSUED ADVISED ACCEPTED REJECTED
    lc_id: str
    applicant: str
    beneficiary: str
    issuing_bank: str
    advising_bank: str
    changes: dict[str, Any]
    terms_version: int | None  # the version it produced, once accepted


@_record("presentation", "pres_id")
class Presentation(Record):
    """Documents presented under an LC; the examining bank is the issuing bank."""

    pres_id: str
    status: (
        str  # OPEN PRESENTED COMPLYING REFUSED WAIVED HONOURED REIMBURSED DOCS_RELEASED RETURNED
    )
    lc_id: str
    presenter: str
    applicant: str
    examining_bank: str
    currency: str
    amount_minor: int
    documents: list[dict[str, Any]]  # {doc_type, ref, content_digest}, in attachment order
    shipment_date: str | None
    presented_on: str | None
    deadline: str | None  # last banking day for a refusal, computed once at completion
    discrepancies: list[str]
    waiver_requested: bool
    examined: bool
    honoured: bool


@_record("tax_record", "record_id")
class TaxRecord(Record):
    """A tax filing record for a service-trade contract, and how much has been paid on it."""

    record_id: str
    status: str  # ACTIVE
    tax_authority: str
    payer: str
    payee: str
    currency: str
    amount_minor: int
    used_minor: int
    contract_ref: str
    paying_banks: list[str]  # sorted
    payments: list[str]  # in payment order


@_record("payment", "payment_id")
class Payment(Record):
    """An outward service-trade payment recorded by the payer's bank."""

    payment_id: str
    status: str  # RECORDED
    record_id: str
    bank: str
    payer: str
    payee: str
    currency: str
    amount_minor: int
    sequence: int


@_record("repayment", "repayment_id")
class Repayment(Record):
    """One `fin.repay`, under the id its lender chose: a resubmission with that id is
    recognised (tradeapp.idempotency) instead of being recorded twice."""

    repayment_id: str
    status: str  # RECORDED
    fin_id: str
    lender: str
    amount_minor: int
    sequence: int


@_record("collection", "collection_id")
class Collection(Record):
    """One `rcv.record_collection`, under the id its collecting bank chose (see Repayment)."""

    collection_id: str
    status: str  # RECORDED
    invoice_id: str
    bank: str
    amount_minor: int
    sequence: int


@_record("alert", "alert_id")
class Alert(Record):
    """A fact the ledger raised for banks and FX_ADMIN. OVER_FINANCED names the declaration and
    its amounts; SIMILAR_RECEIVABLE names the new receivable and the earlier ones it nearly
    matches (`invoice_ids`), with `decl_id` "" and the amounts 0."""

    alert_id: str
    status: str  # RAISED
    code: str
    decl_id: str
    lenders: list[str]  # the banks the alert is for
    invoice_ids: list[str]
    currency: str
    financed_minor: int
    declared_minor: int
    sequence: int


#: The order of tables in the encoding is sorted anyway; this is the order of documentation.
KINDS = tuple(RECORD_TYPES)


# --- The state -------------------------------------------------------------------------------


class LedgerState:
    """All domain records, one table per kind, plus derived indexes. Not thread-safe; owned by
    one `TradeLedger`."""

    __slots__ = (
        "tables",
        "participant_by_key",
        "invoice_by_fingerprint",
        "invoices_by_counterparty",
        "encumbrances_by_fp",
        "encumbrances_by_decl",
    )

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Record]] = {kind: {} for kind in KINDS}
        self.participant_by_key: dict[bytes, str] = {}
        self.invoice_by_fingerprint: dict[bytes, str] = {}
        self.invoices_by_counterparty: dict[str, list[str]] = {}
        self.encumbrances_by_fp: dict[bytes, list[str]] = {}
        self.encumbrances_by_decl: dict[str, list[str]] = {}

    def get(self, kind: str, record_id: str) -> Any:
        """The record of `kind` with this id, or None."""
        return self.tables[kind].get(record_id)

    def add(self, record: Record) -> None:
        """Insert a new record (its id must be free) and index it."""
        table = self.tables[record.KIND]
        assert record.record_key not in table, (record.KIND, record.record_key)
        table[record.record_key] = record
        if isinstance(record, Participant):
            self.participant_by_key[record.public_key] = record.participant_id
        elif isinstance(record, Invoice):
            self.invoice_by_fingerprint[record.fingerprint] = record.invoice_id
            key = counterparty_key(record.seller, record.buyer_key, record.currency)
            self.invoices_by_counterparty.setdefault(key, []).append(record.invoice_id)
        elif isinstance(record, Encumbrance):
            # Both keys are fixed at creation, so the indexes never need updating.
            self.encumbrances_by_fp.setdefault(record.fingerprint, []).append(record.enc_id)
            for decl_id in sorted(record.allocations):
                self.encumbrances_by_decl.setdefault(decl_id, []).append(record.enc_id)

    def records(self, kind: str) -> Iterator[Any]:
        """The records of one kind in id order (never in insertion order, which a restore
        would change)."""
        table = self.tables[kind]
        for record_id in sorted(table):
            yield table[record_id]

    def invoices_between(self, seller: str, buyer_key: str, currency: str) -> list[Invoice]:
        """The invoices of one seller to one buyer in one currency, in id order."""
        table = self.tables["invoice"]
        key = counterparty_key(seller, buyer_key, currency)
        return [table[i] for i in sorted(self.invoices_by_counterparty.get(key, []))]

    def encumbrances_of(self, fingerprint: bytes) -> list[Encumbrance]:
        """Every encumbrance ever created on this fingerprint, in id (= creation) order."""
        table = self.tables["encumbrance"]
        return [table[enc_id] for enc_id in sorted(self.encumbrances_by_fp.get(fingerprint, []))]

    def encumbrances_on(self, decl_id: str) -> list[Encumbrance]:
        """Every encumbrance ever drawn on this declaration, in id (= creation) order."""
        table = self.tables["encumbrance"]
        return [table[enc_id] for enc_id in sorted(self.encumbrances_by_decl.get(decl_id, []))]

    def to_wire(self) -> dict[str, Any]:
        """Every table as {kind: {id: record map}} (encode with `pack_canonical`)."""
        return {
            kind: {record_id: record.to_wire() for record_id, record in table.items()}
            for kind, table in self.tables.items()
        }

    def encode(self) -> bytes:
        """Canonical bytes of the domain state (audit trail excluded)."""
        return pack_canonical(self.to_wire())

    def digest(self) -> bytes:
        """SHA-256 of `encode()`."""
        return sha256(self.encode())

    @classmethod
    def from_wire(cls, wire: object) -> LedgerState:
        """Rebuild a state from `to_wire()` output; ValueError on anything else."""
        if not isinstance(wire, dict) or not all(isinstance(kind, str) for kind in wire):
            raise ValueError("state must be a map keyed by kind")
        if sorted(wire) != sorted(KINDS):
            raise ValueError("state must map exactly the known kinds")
        state = cls()
        for kind in KINDS:
            table = wire[kind]
            if not isinstance(table, dict) or not all(isinstance(k, str) for k in table):
                raise ValueError(f"table {kind} is not a map keyed by id")
            for record_id in sorted(table):
                record = RECORD_TYPES[kind].from_wire(table[record_id])
                if record.record_key != record_id:
                    raise ValueError(f"{kind} {record_id!r} holds a record with another id")
                if kind == "participant" and record.public_key in state.participant_by_key:
                    raise ValueError("two participants share a public key")
                if kind == "participant" and record.role not in Role.__members__:
                    raise ValueError(f"participant {record_id!r} has an unknown role")
                state.add(record)
        return state


def counterparty_key(seller: str, buyer_key: str, currency: str) -> str:
    """The index key of a seller's invoices to one buyer in one currency."""
    return f"{seller}\x00{buyer_key}\x00{currency}"


def ledger_id(prefix: str, command_index: int) -> str:
    """The id of a record the ledger itself creates (an encumbrance, an alert): the prefix and
    the creating command's position in the audit trail, zero-padded so id order is creation
    order."""
    return f"{prefix}-{command_index:010d}"
