"""Dates and banking days by pure integer arithmetic (no `datetime`, no clock).

A date is an ISO string "YYYY-MM-DD" on the wire and in the state; arithmetic works on day
numbers (days since 1970-01-01, proleptic Gregorian), converted with Howard Hinnant's
days_from_civil / civil_from_days algorithms. Business time is the consensus timestamp of the
command, read at a place's fixed UTC offset.
"""

from __future__ import annotations

from collections.abc import Collection

MS_PER_DAY = 86_400_000
MS_PER_MINUTE = 60_000
#: Dates the ledger accepts; keeps day numbers small and ISO strings four-digit.
YEAR_MIN = 1970
YEAR_MAX = 9999
#: A calendar's offset from UTC stays within real-world bounds (UTC-12:00 .. UTC+14:00).
UTC_OFFSET_MINUTES_MIN = -12 * 60
UTC_OFFSET_MINUTES_MAX = 14 * 60


def days_from_civil(year: int, month: int, day: int) -> int:
    """Day number of a proleptic Gregorian date (1970-01-01 is 0). No validation."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day number; inverse of `days_from_civil`."""
    days += 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    year = year_of_era + era * 400
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + (3 if month_index < 10 else -9)
    return year + (month <= 2), month, day


def iso_weekday(days: int) -> int:
    """ISO weekday of a day number: 1 = Monday ... 7 = Sunday (1970-01-01 was a Thursday)."""
    return (days + 3) % 7 + 1


def parse_date(text: object) -> int | None:
    """Day number of a strict "YYYY-MM-DD" string within YEAR_MIN..YEAR_MAX, or None if `text`
    is anything else (wrong type, format, or a day that does not exist)."""
    if not isinstance(text, str) or len(text) != 10 or text[4] != "-" or text[7] != "-":
        return None
    parts = (text[0:4], text[5:7], text[8:10])
    if not all(part.isascii() and part.isdigit() for part in parts):
        return None
    year, month, day = (int(part) for part in parts)
    if not (YEAR_MIN <= year <= YEAR_MAX and 1 <= month <= 12 and 1 <= day <= 31):
        return None
    days = days_from_civil(year, month, day)
    if civil_from_days(days) != (year, month, day):  # 2023-02-30 and the like
        return None
    return days


def format_date(days: int) -> str:
    """The ISO string of a day number."""
    year, month, day = civil_from_days(days)
    return f"{year:04d}-{month:02d}-{day:02d}"


def day_of_timestamp(timestamp_ms: int, utc_offset_minutes: int = 0) -> int:
    """The local day number, at a place `utc_offset_minutes` from UTC, of a consensus time."""
    return (timestamp_ms + utc_offset_minutes * MS_PER_MINUTE) // MS_PER_DAY


def is_banking_day(days: int, weekend: Collection[int], holidays: Collection[str]) -> bool:
    """True iff the day is neither a weekend day (ISO weekdays) nor a listed holiday."""
    return iso_weekday(days) not in weekend and format_date(days) not in holidays


def add_banking_days(
    start: int, count: int, weekend: Collection[int], holidays: Collection[str]
) -> int:
    """The `count`-th banking day strictly after day `start` (UCP 600 art. 14(b) counts the
    banking days *following* the day of presentation).

    Raises ValueError if `count` < 1 or the weekend covers the whole week (no banking day
    would ever come); holidays are finite, so the walk always ends.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    if len(set(weekend) & {1, 2, 3, 4, 5, 6, 7}) == 7:
        raise ValueError("a weekend of seven days leaves no banking day")
    day = start
    found = 0
    while found < count:
        day += 1
        if is_banking_day(day, weekend, holidays):
            found += 1
    return day
