"""FX_ADMIN's and sponsoring banks' commands: admission, suspension, supervisory flags,
banking calendars."""

from __future__ import annotations

from .banking_calendar import UTC_OFFSET_MINUTES_MAX, UTC_OFFSET_MINUTES_MIN
from .commands import (
    HOLIDAYS_MAX,
    CalAddHoliday,
    CalDefine,
    PartyAdmit,
    PartyReinstate,
    PartySuspend,
    RegFlag,
)
from .errors import ErrorCode
from .fingerprint import enterprise_key
from .model import Calendar, LedgerState, Participant, Role
from .step import Done, Handler, Outcome, Refusal, Step, handles

HANDLERS: dict[str, Handler] = {}


def _admitted_enterprise(state: LedgerState, key: str) -> bool:
    """True iff a participant (of any status: a suspended one still is that enterprise) has
    this enterprise key. Admissions are rare: a scan, not an index."""
    return any(enterprise_key(p.tax_id, p.country) == key for p in state.records("participant"))


@handles(HANDLERS, PartyAdmit)
def admit(step: Step, op: PartyAdmit) -> Outcome:
    """Refuses a key already bound (DUPLICATE_KEY), a tax id with no letter or digit
    (MALFORMED), and a second participant for an enterprise (tax id + country) already
    admitted (DUPLICATE_ENTERPRISE: a clone could otherwise register the real enterprise's
    invoices first and lock it out). The refusal does not name the existing participant."""
    # Who may admit which role was checked with the role (transitions.ADMITTERS).
    if op.public_key in step.state.participant_by_key:
        return Refusal(ErrorCode.DUPLICATE_KEY, "that public key already signs for a participant")
    key = enterprise_key(op.tax_id, op.country)
    if not key:
        return Refusal(ErrorCode.MALFORMED, "tax_id needs at least one letter or digit")
    if _admitted_enterprise(step.state, key):
        return Refusal(
            ErrorCode.DUPLICATE_ENTERPRISE,
            f"an enterprise with tax id {op.tax_id!r} in {op.country!r} is already a participant",
        )
    role = Role(op.role)
    step.state.add(
        Participant(
            participant_id=op.participant_id,
            status="ACTIVE",
            role=str(role),
            legal_name=op.legal_name,
            country=op.country,
            tax_id=op.tax_id,
            public_key=op.public_key,
            place=op.place,
            sponsor=step.actor.participant_id if role is Role.TRADER else None,
            admitted_by=step.actor.participant_id,
        )
    )
    return Done({"participant_id": op.participant_id, "status": "ACTIVE"})


@handles(HANDLERS, PartySuspend)
def suspend(step: Step, op: PartySuspend) -> Outcome:
    if op.participant_id == step.actor.participant_id:
        return Refusal(ErrorCode.INVALID_PARTY, "an FX_ADMIN cannot suspend itself")
    return Done({"participant_id": op.participant_id, "status": "SUSPENDED"})


@handles(HANDLERS, PartyReinstate)
def reinstate(step: Step, op: PartyReinstate) -> Outcome:
    return Done({"participant_id": op.participant_id, "status": "ACTIVE"})


@handles(HANDLERS, RegFlag)
def flag(step: Step, op: RegFlag) -> Outcome:
    participant: Participant = step.record
    participant.flags = [
        *participant.flags,
        {
            "reason": op.reason,
            "note": op.note,
            "flagged_by": step.actor.participant_id,
            "sequence": step.context.sequence,
            "timestamp_ms": step.now_ms,
        },
    ]
    return Done({"participant_id": op.participant_id, "flags": len(participant.flags)})


@handles(HANDLERS, CalDefine)
def define_calendar(step: Step, op: CalDefine) -> Outcome:
    if len(op.weekend) == 7:
        return Refusal(ErrorCode.MALFORMED, "a weekend of seven days leaves no banking day")
    if not UTC_OFFSET_MINUTES_MIN <= op.utc_offset_minutes <= UTC_OFFSET_MINUTES_MAX:
        return Refusal(ErrorCode.MALFORMED, "utc_offset_minutes outside UTC-12:00..UTC+14:00")
    weekend, holidays = sorted(op.weekend), sorted(op.holidays)
    calendar: Calendar | None = step.record
    if calendar is None:
        step.state.add(
            Calendar(
                place=op.place,
                status="DEFINED",
                weekend=weekend,
                holidays=holidays,
                utc_offset_minutes=op.utc_offset_minutes,
            )
        )
    else:
        calendar.weekend = weekend
        calendar.holidays = holidays
        calendar.utc_offset_minutes = op.utc_offset_minutes
    return Done({"place": op.place, "holidays": len(holidays)})


@handles(HANDLERS, CalAddHoliday)
def add_holiday(step: Step, op: CalAddHoliday) -> Outcome:
    calendar: Calendar = step.record
    if op.date not in calendar.holidays and len(calendar.holidays) >= HOLIDAYS_MAX:
        return Refusal(ErrorCode.MALFORMED, f"a calendar holds at most {HOLIDAYS_MAX} holidays")
    calendar.holidays = sorted({*calendar.holidays, op.date})
    return Done({"place": op.place, "holidays": len(calendar.holidays)})
