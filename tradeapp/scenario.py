"""Driving a ledger by hand: the common cast of docs/TRADE-DOMAIN.md and a driver that plays the
role of consensus (sequence numbers, agreed time, the signer's key) while keeping the ordered
log, so that the same run can be replayed into other instances.

Used by the tests, the simulations and the demo; never by the state machine itself. Keys here
are placeholders (32 bytes derived from the participant id): a cluster run passes real Ed25519
public keys instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pbft.app import ExecutionContext, StateMachine
from pbft.crypto import sha256

from .banking_calendar import MS_PER_DAY, parse_date
from .commands import (
    Accepted,
    CalDefine,
    Operation,
    PartyAdmit,
    Rejected,
    Result,
    decode_result,
)
from .errors import ErrorCode
from .machine import TradeLedger
from .model import Role

MS_PER_HOUR = 3_600_000

#: The founding FX_ADMIN of every scenario.
FX_ADMIN = "FX-ADMIN"


@dataclass(frozen=True, slots=True)
class CastMember:
    """One participant of the common setup and who admits it."""

    participant_id: str
    role: Role
    admitted_by: str
    country: str
    place: str
    tax_id: str


#: docs/TRADE-DOMAIN.md, "Common setup", in admission order, plus a second customs office
#: (CUSTOMS-SH) and a second exporter under another bank (EXP-SH, BANK-B's customer, declaring
#: at CUSTOMS-SH), so that tests and simulations play cross-bank fraud without set-up code.
CAST: tuple[CastMember, ...] = (
    CastMember("BANK-I", Role.BANK, FX_ADMIN, "NL", "NL-AMS", "NL-BANK-I"),
    CastMember("BANK-A", Role.BANK, FX_ADMIN, "CN", "CN-QD", "CN-BANK-A"),
    CastMember("BANK-B", Role.BANK, FX_ADMIN, "CN", "CN-QD", "CN-BANK-B"),
    CastMember("CARRIER-1", Role.CARRIER, FX_ADMIN, "DK", "DK-CPH", "DK-CARRIER-1"),
    CastMember("CUSTOMS-QD", Role.CUSTOMS, FX_ADMIN, "CN", "CN-QD", "CN-CUSTOMS-QD"),
    CastMember("CUSTOMS-SH", Role.CUSTOMS, FX_ADMIN, "CN", "CN-SH", "CN-CUSTOMS-SH"),
    CastMember("TAX-QD", Role.TAX, FX_ADMIN, "CN", "CN-QD", "CN-TAX-QD"),
    CastMember("EXP-QD", Role.TRADER, "BANK-A", "CN", "CN-QD", "91370200EXPQD"),
    CastMember("IMP-NL", Role.TRADER, "BANK-I", "NL", "NL-AMS", "NL-IMP-001"),
    CastMember("SVC-CN", Role.TRADER, "BANK-B", "CN", "CN-QD", "91370200SVCCN"),
    CastMember("EXP-SH", Role.TRADER, "BANK-B", "CN", "CN-SH", "91310000EXPSH"),
)

#: The calendars of the common setup: place -> (ISO weekend days, UTC offset in minutes).
CALENDARS: Mapping[str, tuple[list[int], int]] = {
    "CN-QD": ([6, 7], 8 * 60),
    "CN-SH": ([6, 7], 8 * 60),
    "NL-AMS": ([6, 7], 60),
    "DK-CPH": ([6, 7], 60),
}


def placeholder_key(participant_id: str) -> bytes:
    """A deterministic 32-byte stand-in for a participant's public key."""
    return sha256(b"tradeapp-placeholder-key:" + participant_id.encode())


def at(date: str, hour: int = 10) -> int:
    """Consensus time (ms) of `hour`:00 UTC on an ISO date. Raises ValueError for a bad date."""
    days = parse_date(date)
    if days is None:
        raise ValueError(f"not a date: {date!r}")
    return days * MS_PER_DAY + hour * MS_PER_HOUR


@dataclass(frozen=True, slots=True)
class LoggedOperation:
    """One entry of the ordered log: what consensus would have agreed."""

    context: ExecutionContext
    operation: bytes


class LedgerDriver:
    """Executes operations on one ledger as consensus would: increasing sequence numbers,
    non-decreasing agreed time (`now_ms`, set by the test), the named participant's key as the
    signer. Keeps the ordered `log` for replay. Owns nothing but the log."""

    def __init__(self, ledger: StateMachine, keys: Mapping[str, bytes], now_ms: int) -> None:
        self.ledger = ledger
        self.keys = dict(keys)
        self.now_ms = now_ms
        self.sequence = 0
        self.log: list[LoggedOperation] = []

    def key(self, participant_id: str) -> bytes:
        """The key the participant signs with (a placeholder for ids not given)."""
        return self.keys.setdefault(participant_id, placeholder_key(participant_id))

    def run(self, actor: str, op: Operation, *, claim: str | None = None) -> Result:
        """Execute `op` signed by `actor`'s key in a batch of its own; `claim` is the actor the
        payload names (None: none)."""
        return self.run_raw(actor, op.encode(claim))

    def run_raw(self, actor: str, operation: bytes) -> Result:
        """Execute raw operation bytes signed by `actor`'s key."""
        self.sequence += 1
        return self.run_in_batch(actor, operation)

    def run_in_batch(self, actor: str, operation: bytes) -> Result:
        """Execute in the current batch (same sequence number as the previous operation)."""
        context = ExecutionContext(self.sequence, self.key(actor), self.now_ms)
        self.log.append(LoggedOperation(context, operation))
        return decode_result(self.ledger.execute(operation, context))

    def read(self, reader: str, op: Operation) -> Result:
        """Answer a query on the read-only path (not ordered, not audited)."""
        return decode_result(self.ledger.query(op.encode(), self.key(reader)))

    def ok(self, actor: str, op: Operation) -> dict:
        """Run `op` and return its value; raises AssertionError if it was refused."""
        result = self.run(actor, op)
        assert isinstance(result, Accepted), f"{actor} {op.NAME}: {result}"
        return result.value

    def refused(
        self, actor: str, op: Operation, code: ErrorCode, *, claim: str | None = None
    ) -> str:
        """Run `op`, assert it was refused with `code`, return the message."""
        result = self.run(actor, op, claim=claim)
        assert isinstance(result, Rejected), f"{actor} {op.NAME} was accepted: {result}"
        assert result.code == code, (
            f"{actor} {op.NAME}: {result.code} ({result.message}), not {code}"
        )
        return result.message


def cast_keys() -> dict[str, bytes]:
    """Placeholder keys of the founding FX_ADMIN and the whole cast."""
    ids = [FX_ADMIN, *(member.participant_id for member in CAST)]
    return {participant_id: placeholder_key(participant_id) for participant_id in ids}


def admit_cast(driver: LedgerDriver) -> None:
    """The common setup: FX_ADMIN admits the banks, carrier and authorities and defines the
    calendars; each bank onboards its trader. Raises AssertionError if any step is refused."""
    for member in CAST:
        driver.ok(
            member.admitted_by,
            PartyAdmit(
                participant_id=member.participant_id,
                role=member.role,
                legal_name=f"{member.participant_id} Ltd",
                country=member.country,
                tax_id=member.tax_id,
                public_key=driver.key(member.participant_id),
                place=member.place,
            ),
        )
    for place in sorted(CALENDARS):
        weekend, offset = CALENDARS[place]
        driver.ok(
            FX_ADMIN,
            CalDefine(place=place, weekend=weekend, holidays=[], utc_offset_minutes=offset),
        )


def cast_ledger(*, check_invariants: bool = False) -> TradeLedger:
    """A fresh ledger founded by the scenarios' FX_ADMIN (placeholder key)."""
    return TradeLedger({FX_ADMIN: placeholder_key(FX_ADMIN)}, check_invariants=check_invariants)


def cast_driver(now_ms: int, *, check_invariants: bool = False) -> LedgerDriver:
    """A driver over a fresh ledger after the common setup (`admit_cast`), at `now_ms`."""
    driver = LedgerDriver(cast_ledger(check_invariants=check_invariants), cast_keys(), now_ms)
    admit_cast(driver)
    return driver
