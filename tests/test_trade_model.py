"""Building blocks by example and under hypothesis: money, pure-integer dates and banking days
(checked against datetime), invoice fingerprints, the operation codec, results, the audit chain."""

from __future__ import annotations

import datetime
from dataclasses import fields, replace

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeapp import ErrorCode, Money
from tradeapp.audit import AuditTrail, genesis_hash, verify_chain
from tradeapp.banking_calendar import (
    add_banking_days,
    civil_from_days,
    day_of_timestamp,
    days_from_civil,
    format_date,
    iso_weekday,
    parse_date,
)
from tradeapp.commands import (
    OPERATIONS,
    Accepted,
    Rejected,
    decode_operation,
    decode_result,
    encode_accepted,
    encode_rejected,
)
from tradeapp.fingerprint import enterprise_key, invoice_fingerprint, normalise_invoice_number
from tradeapp.model import Participant
from tradeapp.money import CURRENCIES, CurrencyMismatch, is_amount

# --- Money -------------------------------------------------------------------------------------


def test_money_is_int_minor_units_of_one_currency():
    assert str(Money("USD", 12_345)) == "USD 123.45"
    assert str(Money("JPY", 1_000)) == "JPY 1,000"
    assert str(Money("BHD", -1_005)) == "BHD -1.005"
    assert Money("EUR", 5) + Money("EUR", 7) == Money("EUR", 12)
    assert Money("EUR", 5) - Money("EUR", 7) == Money("EUR", -2)
    with pytest.raises(CurrencyMismatch):
        Money("EUR", 5) + Money("USD", 5)
    for bad in (("XXX", 1), ("USD", 1.5), ("USD", True)):
        with pytest.raises(ValueError):
            Money(*bad)
    with pytest.raises(TypeError):
        CURRENCIES["XTS"] = 2  # frozen


@pytest.mark.parametrize(
    ("amount", "ok"),
    [
        (1, True),
        (10**15, True),
        (0, False),
        (-1, False),
        (10**15 + 1, False),
        (True, False),
        (1.0, False),
    ],
)
def test_amount_bounds(amount, ok):
    assert is_amount(amount) is ok


# --- Dates and banking days ----------------------------------------------------------------------

_EPOCH = datetime.date(1970, 1, 1)


@given(st.dates(min_value=datetime.date(1970, 1, 1), max_value=datetime.date(9999, 12, 31)))
def test_day_numbers_match_the_gregorian_calendar(date):
    days = (date - _EPOCH).days
    assert days_from_civil(date.year, date.month, date.day) == days
    assert civil_from_days(days) == (date.year, date.month, date.day)
    assert iso_weekday(days) == date.isoweekday()
    assert format_date(days) == date.isoformat()
    assert parse_date(date.isoformat()) == days


@pytest.mark.parametrize(
    "text",
    ["2023-02-29", "2024-13-01", "2024-00-10", "2024-04-31", "24-01-01", "2024/01/01", "2024-1-01",
     "1969-12-31", "２０２４-01-01", "2024-01-0a", 20240101, None],
)  # fmt: skip
def test_bad_dates_are_refused(text):
    assert parse_date(text) is None


def test_leap_day_and_timezones():
    assert parse_date("2024-02-29") == days_from_civil(2024, 2, 29)
    midnight_utc = parse_date("2024-03-04") * 86_400_000
    assert format_date(day_of_timestamp(midnight_utc - 1)) == "2024-03-03"
    assert format_date(day_of_timestamp(midnight_utc - 1, 60)) == "2024-03-04"
    assert format_date(day_of_timestamp(midnight_utc, -300)) == "2024-03-03"


@pytest.mark.parametrize(
    ("start", "holidays", "deadline"),
    [
        ("2024-04-15", [], "2024-04-22"),  # Monday: five banking days, skipping the weekend
        ("2024-04-19", [], "2024-04-26"),  # Friday
        ("2024-04-20", [], "2024-04-26"),  # Saturday presentation: counting starts Monday
        ("2024-04-15", ["2024-04-18"], "2024-04-23"),
        ("2024-04-15", ["2024-04-18", "2024-04-22", "2024-04-23"], "2024-04-25"),
        ("2024-12-23", ["2024-12-25", "2024-12-26", "2025-01-01"], "2025-01-02"),
    ],
)
def test_five_banking_days_following_presentation(start, holidays, deadline):
    """Scenario 3: UCP 600 art. 14(b), with weekends and holidays of the examining bank."""
    found = add_banking_days(parse_date(start), 5, [6, 7], holidays)
    assert format_date(found) == deadline


def test_banking_day_walk_refuses_an_impossible_calendar():
    with pytest.raises(ValueError):
        add_banking_days(0, 5, [1, 2, 3, 4, 5, 6, 7], [])
    with pytest.raises(ValueError):
        add_banking_days(0, 0, [6, 7], [])


@given(st.integers(0, 20_000), st.integers(1, 30), st.sets(st.integers(1, 7), max_size=6))
def test_banking_days_agree_with_a_datetime_walk(start, count, weekend):
    expected, found = _EPOCH + datetime.timedelta(days=start), 0
    while found < count:
        expected += datetime.timedelta(days=1)
        found += expected.isoweekday() not in weekend
    assert add_banking_days(start, count, sorted(weekend), []) == (expected - _EPOCH).days


# --- Invoice fingerprints ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("INV-0042", "INV42"), ("inv 42", "INV42"), ("A-007/B0", "A7B0"), ("000", "0"),
     ("2024/0001", "20241"), ("2024-1", "20241"), ("20240001", "20240001"), ("Ｉnv-１", "INV1"),
     ("", ""), ("a0b00c", "A0B0C")],
)  # fmt: skip
def test_invoice_numbers_are_normalised(raw, normal):
    """Invoice: the fold of a re-keyed number is the fold of its plain form (the folded form
    itself is a TS #39 skeleton, e.g. "lNV42": compared, never shown)."""
    assert normalise_invoice_number(raw) == normalise_invoice_number(normal)
    assert normalise_invoice_number(raw) != normalise_invoice_number(normal + "9")


def _fingerprint(**overrides):
    values = dict(
        seller_key=enterprise_key("91370200X", "CN"), buyer_key="P:IMP-NL", invoice_no="INV-0042", currency="USD",
        amount_minor=100, issue_date="2024-03-01",
    )  # fmt: skip
    values.update(overrides)
    return invoice_fingerprint(**values)


def test_a_rekeyed_invoice_has_the_same_fingerprint_a_different_one_does_not():
    """Invoice: a re-keyed copy of the same invoice has the same fingerprint."""
    same = _fingerprint(invoice_no="inv 42", seller_key=enterprise_key("91370200x", "cn"))
    assert same == _fingerprint() and len(same) == 32
    for change in ({"amount_minor": 101}, {"currency": "EUR"}, {"issue_date": "2024-03-02"},
                   {"invoice_no": "INV-0043"}, {"buyer_key": "P:IMP-DE"},
                   {"seller_key": enterprise_key("91370200X", "VN")}):  # fmt: skip
        assert _fingerprint(**change) != _fingerprint(), change


# --- The operation codec -------------------------------------------------------------------------

_ID = st.text(alphabet="ABCXYZabc0189._/-", min_size=1, max_size=64)
_WIRE_STRATEGIES = {
    "Id": _ID,
    "Id | None": st.none() | _ID,
    "Ids": st.lists(_ID, min_size=1, max_size=5, unique=True),
    "Text": st.text(max_size=60),
    "Date": st.dates(min_value=datetime.date(1970, 1, 1)).map(datetime.date.isoformat),
    "Currency": st.sampled_from(sorted(CURRENCIES)),
    "Amount": st.integers(-(2**63), 2**63 - 1),
    "int": st.integers(-(2**63), 2**63 - 1),
    "bool": st.booleans(),
    "Key": st.binary(min_size=32, max_size=32),
    "bytes | None": st.none() | st.binary(min_size=32, max_size=32),
    "Codes": st.lists(_ID, max_size=5, unique=True),
    "Changes": st.dictionaries(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10), min_size=1, max_size=4),
    "Weekdays": st.lists(st.integers(1, 7), max_size=7, unique=True),
    "Dates": st.lists(st.dates(min_value=datetime.date(1970, 1, 1)).map(datetime.date.isoformat), max_size=5, unique=True),
    "Role": st.sampled_from(["FX_ADMIN", "CUSTOMS", "TAX", "BANK", "CARRIER", "TRADER"]),
}  # fmt: skip


@st.composite
def operations(draw):
    cls = OPERATIONS[draw(st.sampled_from(sorted(OPERATIONS)))]
    return cls(**{f.name: draw(_WIRE_STRATEGIES[str(f.type)]) for f in fields(cls)})


@settings(max_examples=300)
@given(operations(), st.none() | _ID)
def test_every_operation_round_trips(op, actor):
    envelope = decode_operation(op.encode(actor))
    assert envelope.error is None, envelope.message
    assert (envelope.name, envelope.operation, envelope.claimed_actor) == (op.NAME, op, actor)


_MSGPACK_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=10) | st.binary(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=300)
@given(st.binary(max_size=200) | _MSGPACK_VALUES.map(lambda v: msgpack.packb(v)))
def test_decoding_junk_never_raises(data):
    envelope = decode_operation(data)
    assert envelope.error in (ErrorCode.MALFORMED, ErrorCode.UNKNOWN_COMMAND)


@settings(max_examples=200)
@given(
    st.sampled_from(sorted(OPERATIONS)),
    st.dictionaries(st.text(max_size=12), _MSGPACK_VALUES, max_size=6),
)
def test_decoding_a_known_name_with_junk_args_never_raises(name, args):
    envelope = decode_operation(msgpack.packb([name, args, None]))
    assert envelope.error is ErrorCode.MALFORMED or envelope.operation is not None


@settings(max_examples=200)
@given(
    st.sampled_from(sorted(OPERATIONS)),
    st.dictionaries(st.text(max_size=8) | st.binary(max_size=8), _MSGPACK_VALUES, max_size=5),
)
def test_maps_keyed_by_bytes_are_malformed_not_a_crash(name, args):
    """msgpack maps may be keyed by bin; mixed keys cannot even be sorted."""
    data = msgpack.packb([name, args, None], use_bin_type=True)
    envelope = decode_operation(data)
    assert envelope.error is ErrorCode.MALFORMED or envelope.operation is not None


def test_amendment_changes_keyed_by_bytes_are_malformed():
    data = msgpack.packb(
        ["amend.request", {"amend_id": "A", "lc_id": "L", "changes": {b"x": 1, "y": 2}}, None],
        use_bin_type=True,
    )
    assert decode_operation(data).error is ErrorCode.MALFORMED


def test_results_round_trip_and_junk_results_are_refused():
    assert decode_result(encode_accepted({"b": 1, "a": [b"x"]})) == Accepted({"a": [b"x"], "b": 1})
    assert encode_accepted({"b": 1, "a": 2}) == encode_accepted({"a": 2, "b": 1})
    assert decode_result(encode_rejected(ErrorCode.PRECLUDED, "late")) == Rejected(
        ErrorCode.PRECLUDED, "late"
    )
    for junk in (
        b"",
        msgpack.packb(["ok"]),
        msgpack.packb(["error", "NOT_A_CODE", "x"]),
        msgpack.packb(["ok", [1]]),
    ):
        with pytest.raises(ValueError):
            decode_result(junk)


def test_builders_refuse_values_the_ledger_would_refuse():
    from tradeapp.commands import LcIssue

    with pytest.raises(ValueError):
        LcIssue(lc_id="has space").encode()
    with pytest.raises(ValueError):
        LcIssue(lc_id="LC-1").encode(actor="not an id")


# --- The audit chain -----------------------------------------------------------------------------


def _trail(length: int) -> AuditTrail:
    trail = AuditTrail(genesis_hash({"FX": b"\x01" * 32}))
    for index in range(length):
        trail.append(
            sequence=index + 1, timestamp_ms=1_000 * index, signer=b"\x02" * 32, actor="BANK-A",
            command="lc.issue", objects=["lc:B", "lc:A", "lc:A"], outcome="OK",
            operation_digest=b"\x03" * 32,
        )  # fmt: skip
    return trail


def test_the_audit_chain_verifies_and_detects_tampering():
    """Audit trail: each event carries the hash of the previous one."""
    trail = _trail(5)
    events = trail.events
    assert verify_chain(events, trail.genesis) is None
    assert events[0].prev_hash == trail.genesis and events[0].objects == ("lc:A", "lc:B")
    assert all(
        later.prev_hash == earlier.hash for earlier, later in zip(events, events[1:], strict=False)
    )
    assert (
        verify_chain(
            [*events[:2], replace(events[2], outcome="FORBIDDEN"), *events[3:]], trail.genesis
        )
        == 2
    )
    assert verify_chain(events[:2] + events[3:], trail.genesis) == 2
    assert verify_chain(events, b"\x00" * 32) == 0
    assert verify_chain([*events[:4], replace(events[4], actor="BANK-B")], trail.genesis) == 4
    assert AuditTrail.from_wire(trail.to_wire()).head == trail.head


def test_records_refuse_wire_maps_with_missing_extra_or_ill_typed_fields():
    wire = Participant(
        participant_id="P", status="ACTIVE", role="BANK", legal_name="P", country="CN",
        tax_id="T", public_key=b"\x01" * 32, place="CN-QD", sponsor=None, admitted_by="FX",
    ).to_wire()  # fmt: skip
    assert Participant.from_wire(wire).to_wire() == wire
    for bad in (
        {k: v for k, v in wire.items() if k != "place"},
        {**wire, "x": 1},
        {**wire, "public_key": "k"},
        [wire],
    ):
        with pytest.raises(ValueError):
            Participant.from_wire(bad)


def test_an_integer_beyond_64_bits_is_refused_at_encoding_with_a_clear_error():
    """A command whose argument msgpack cannot carry never reaches a replica: the client's
    encoding refuses it with a ValueError that says why (found by the operations fuzzer)."""
    from tradeapp.model import pack_canonical

    with pytest.raises(ValueError, match="64-bit range"):
        pack_canonical({"changes": {"": 2**64}})
