"""The regulators' reports: deterministic aggregates of the state and the audit trail.

Each report is `{"report": name, "columns": [...], "rows": [[...], ...]}` with rows sorted by
their leading columns, integers only (durations in ms as totals and maxima, never a float
mean). FX_ADMIN reads every report; CUSTOMS reads the declarations report for its own
declarations; TAX reads the tax-usage report; anyone else gets FORBIDDEN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .audit import OUTCOME_OK, AuditEvent, AuditTrail
from .commands import (
    Operation,
    ReportDecisionTimes,
    ReportDeclarationsFinanced,
    ReportLcTotals,
    ReportOutstandingFinancing,
    ReportRejections,
    ReportTaxUsage,
)
from .encumbrance_registry import declared_minor, encumbered_minor, holding_lenders
from .errors import ErrorCode
from .model import LedgerState, Participant, Role
from .step import Refusal

View = dict[str, Any]
ReportHandler = Callable[[LedgerState, AuditTrail, Participant, Any], "View | Refusal"]
REPORT_HANDLERS: dict[str, ReportHandler] = {}


def _report(command: type[Operation], readers: tuple[Role, ...] = (Role.FX_ADMIN,)) -> Any:
    def register(build: Callable[[LedgerState, AuditTrail, Participant], View]) -> ReportHandler:
        def handler(
            state: LedgerState, audit: AuditTrail, reader: Participant, op: Any
        ) -> View | Refusal:
            if Role(reader.role) not in readers:
                return Refusal(ErrorCode.FORBIDDEN, f"{command.NAME} is for {'/'.join(readers)}")
            return {"report": command.NAME, **build(state, audit, reader)}

        REPORT_HANDLERS[command.NAME] = handler
        return handler

    return register


def _table(columns: list[str], rows: list[list[Any]]) -> View:
    return {"columns": columns, "rows": sorted(rows)}


@_report(ReportOutstandingFinancing)
def outstanding_financing(state: LedgerState, audit: AuditTrail, reader: Participant) -> View:
    """Open financings (approved or disbursed) by lender × enterprise × currency."""
    totals: dict[tuple[str, str, str], list[int]] = {}
    for financing in state.records("financing"):
        if financing.status not in ("APPROVED", "DISBURSED"):
            continue
        row = totals.setdefault(
            (financing.lender, financing.applicant, financing.currency), [0, 0, 0]
        )
        row[0] += 1
        row[1] += financing.amount_minor
        row[2] += financing.disbursed_minor - financing.repaid_minor
    return _table(
        ["lender", "enterprise", "currency", "financings", "approved_minor", "outstanding_minor"],
        [[*key, *values] for key, values in totals.items()],
    )


@_report(ReportDeclarationsFinanced, readers=(Role.FX_ADMIN, Role.CUSTOMS))
def declarations_financed(state: LedgerState, audit: AuditTrail, reader: Participant) -> View:
    """Declarations with financing resting on them, and what remains financeable."""
    rows = []
    for decl in state.records("decl"):
        if reader.role == Role.CUSTOMS and decl.customs != reader.participant_id:
            continue
        financed = encumbered_minor(state, decl.decl_id)
        if financed == 0:
            continue
        declared = declared_minor(decl)
        rows.append(
            [
                decl.decl_id, decl.exporter, decl.currency, declared, financed,
                max(0, declared - financed), financed > declared,
                len(holding_lenders(state, decl.decl_id)),
            ]
        )  # fmt: skip
    return _table(
        [
            "decl_id", "exporter", "currency", "declared_minor", "financed_minor",
            "remaining_minor", "over_financed", "lenders",
        ],
        rows,
    )  # fmt: skip


#: Refusals of a financing that say the receivable (or its goods) was presented to a lender
#: again: the regulator looks for the enterprise behind them, not only the refused bank.
DOUBLE_FINANCING_CODES = frozenset(
    {
        str(ErrorCode.ALREADY_ENCUMBERED),
        str(ErrorCode.RECEIVABLE_SETTLED),
        str(ErrorCode.EXCEEDS_FINANCEABLE_BALANCE),
    }
)


def _borrower(state: LedgerState, event: AuditEvent) -> str | None:
    """The enterprise that asked for the financing a refused `fin.approve` names, if the
    refusal is one of DOUBLE_FINANCING_CODES."""
    if event.command != "fin.approve" or event.outcome not in DOUBLE_FINANCING_CODES:
        return None
    for ref in event.objects:
        kind, _, record_id = ref.partition(":")
        if kind == "financing":
            financing = state.get("financing", record_id)
            if financing is not None:
                return financing.applicant
    return None


@_report(ReportRejections)
def rejections(state: LedgerState, audit: AuditTrail, reader: Participant) -> View:
    """Refused attempts by error code × enterprise, from the audit trail. A refusal counts for
    its signer (participant id, "" if the key is unknown); a double-financing refusal
    (DOUBLE_FINANCING_CODES) counts also for the enterprise whose receivable it was, so one such
    refusal appears in two rows, the refused bank's and the borrower's."""
    counts: dict[tuple[str, str], int] = {}
    for event in audit.events:
        if event.outcome == OUTCOME_OK:
            continue
        credited = [event.actor or ""]
        borrower = _borrower(state, event)
        if borrower is not None and borrower not in credited:
            credited.append(borrower)
        for enterprise in credited:
            key = (event.outcome, enterprise)
            counts[key] = counts.get(key, 0) + 1
    return _table(["code", "enterprise", "count"], [[*key, n] for key, n in counts.items()])


@_report(ReportLcTotals)
def lc_totals(state: LedgerState, audit: AuditTrail, reader: Participant) -> View:
    """Per issuing bank × currency: LCs issued (count, current amount), presentations honoured
    (count, amount) and refused at least once (count)."""
    totals: dict[tuple[str, str], list[int]] = {}
    for lc in state.records("lc"):
        if lc.terms_version < 1:
            continue  # never issued
        row = totals.setdefault((lc.issuing_bank, lc.currency), [0, 0, 0, 0, 0])
        row[0] += 1
        row[1] += lc.terms["amount_minor"]
        for pres_id in lc.presentations:
            presentation = state.get("presentation", pres_id)
            if presentation.honoured:
                row[2] += 1
                row[3] += presentation.amount_minor
            if presentation.discrepancies:
                row[4] += 1
    return _table(
        [
            "issuing_bank", "currency", "issued", "issued_minor", "honoured", "honoured_minor",
            "refused",
        ],
        [[*key, *values] for key, values in totals.items()],
    )  # fmt: skip


@_report(ReportTaxUsage, readers=(Role.FX_ADMIN, Role.TAX))
def tax_usage(state: LedgerState, audit: AuditTrail, reader: Participant) -> View:
    """Every tax record: recorded, used, remaining, and through how many payments and banks."""
    rows = [
        [
            record.record_id, record.payer, record.currency, record.amount_minor,
            record.used_minor, record.amount_minor - record.used_minor, len(record.payments),
            len(record.paying_banks),
        ]
        for record in state.records("tax_record")
    ]  # fmt: skip
    return _table(
        [
            "record_id", "payer", "currency", "recorded_minor", "used_minor", "remaining_minor",
            "payments", "banks",
        ],
        rows,
    )  # fmt: skip


@_report(ReportDecisionTimes)
def decision_times(state: LedgerState, audit: AuditTrail, reader: Participant) -> View:
    """Per lender: financing decisions (approvals and rejections), total and longest time from
    request to decision in consensus milliseconds."""
    totals: dict[str, list[int]] = {}
    for financing in state.records("financing"):
        if financing.decided_ms is None:
            continue
        elapsed = financing.decided_ms - financing.requested_ms
        row = totals.setdefault(financing.lender, [0, 0, 0])
        row[0] += 1
        row[1] += elapsed
        row[2] = max(row[2], elapsed)
    return _table(
        ["lender", "decisions", "total_ms", "max_ms"],
        [[lender, *values] for lender, values in totals.items()],
    )
