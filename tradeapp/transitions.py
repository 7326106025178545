"""Lifecycles as data: who may move which record from which status to which, by which command.

`TRANSITIONS[(kind, from_status, command)]` is a `Transition`; `from_status` None marks the
command that creates the record. The ledger authorises every command from these tables alone
(role, then the instrument's party, then the status), and the documentation
(`lifecycle_markdown`) and the authorisation tests are generated from the same data.

Refusal codes, in the order the ledger checks:
1. the actor's role is not among the command's roles: UNAUTHORIZED if the actor is a regulator
   and the command is commercial (regulators never change commercial facts), otherwise
   UNAUTHORIZED_ISSUER;
2. the record does not exist: UNKNOWN_DOCUMENT (UNKNOWN_PARTICIPANT, UNKNOWN_CALENDAR);
   a creation whose id is taken: DUPLICATE_ID;
3. the actor is not the instrument's party for this command: the transition's `party_code`;
4. no transition from the record's status: `ANSWER_ONCE` codes, then `CLOSED_STATUSES`, then
   `STATUS_REFUSALS`, else INVALID_STATE.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from .errors import ErrorCode
from .model import COMMERCIAL_ROLES, REGULATOR_ROLES, Role


@dataclass(frozen=True, slots=True)
class Transition:
    """One allowed move. `to`: the possible new statuses (the handler picks; first is usual).
    `party`: the record field naming the only participant who may act (None: any actor of the
    role, or a check the handler makes); `party_code`: the refusal for anyone else."""

    to: tuple[str, ...]
    roles: frozenset[Role]
    party: str | None = None
    party_code: ErrorCode = ErrorCode.UNAUTHORIZED


def _t(
    to: str | tuple[str, ...],
    roles: Role | frozenset[Role],
    party: str | None = None,
    party_code: ErrorCode = ErrorCode.UNAUTHORIZED,
) -> Transition:
    return Transition(
        to=(to,) if isinstance(to, str) else to,
        roles=frozenset({roles}) if isinstance(roles, Role) else roles,
        party=party,
        party_code=party_code,
    )


_FX, _CUSTOMS, _TAX = Role.FX_ADMIN, Role.CUSTOMS, Role.TAX
_BANK, _CARRIER, _TRADER = Role.BANK, Role.CARRIER, Role.TRADER
#: An eBL can be held by a trader, a bank or a carrier.
_HOLDERS = COMMERCIAL_ROLES
_NOT_HOLDER = ErrorCode.NOT_HOLDER

_TABLE: dict[tuple[str, str | None, str], Transition] = {
    # Participants: FX_ADMIN governs; who admits whom is `ADMITTERS`.
    ("participant", None, "party.admit"): _t("ACTIVE", frozenset({_FX, _BANK})),
    ("participant", "ACTIVE", "party.suspend"): _t("SUSPENDED", _FX),
    ("participant", "SUSPENDED", "party.reinstate"): _t("ACTIVE", _FX),
    ("participant", "ACTIVE", "reg.flag"): _t("ACTIVE", _FX),
    ("participant", "SUSPENDED", "reg.flag"): _t("SUSPENDED", _FX),
    # Calendars.
    ("calendar", None, "cal.define"): _t("DEFINED", _FX),
    ("calendar", "DEFINED", "cal.define"): _t("DEFINED", _FX),
    ("calendar", "DEFINED", "cal.add_holiday"): _t("DEFINED", _FX),
    # Export goods declarations: lodged by the exporter, decided by its customs office.
    ("decl", None, "decl.lodge"): _t("LODGED", _TRADER),
    ("decl", "LODGED", "decl.accept"): _t("ACCEPTED", _CUSTOMS, "customs"),
    ("decl", "LODGED", "decl.reject"): _t("REJECTED", _CUSTOMS, "customs"),
    ("decl", "ACCEPTED", "decl.release"): _t("RELEASED", _CUSTOMS, "customs"),
    ("decl", "RELEASED", "decl.confirm_exit"): _t("CLEARED", _CUSTOMS, "customs"),
    ("decl", "ACCEPTED", "decl.approve_amendment"): _t("ACCEPTED", _CUSTOMS, "customs"),
    ("decl", "RELEASED", "decl.approve_amendment"): _t("RELEASED", _CUSTOMS, "customs"),
    ("decl", "CLEARED", "decl.approve_amendment"): _t("CLEARED", _CUSTOMS, "customs"),
    ("decl", "LODGED", "decl.cancel"): _t("CANCELLED", _CUSTOMS, "customs"),
    ("decl", "ACCEPTED", "decl.cancel"): _t("CANCELLED", _CUSTOMS, "customs"),
    ("decl", "RELEASED", "decl.cancel"): _t("CANCELLED", _CUSTOMS, "customs"),
    # Electronic bills of lading: one holder at a time.
    ("ebl", None, "ebl.issue"): _t("ISSUED", _CARRIER),
    ("ebl", "ISSUED", "ebl.transfer"): _t("ISSUED", _HOLDERS, "holder", _NOT_HOLDER),
    ("ebl", "ISSUED", "ebl.endorse"): _t("ISSUED", _HOLDERS, "holder", _NOT_HOLDER),
    ("ebl", "ISSUED", "ebl.pledge"): _t("ISSUED", _HOLDERS, "holder", _NOT_HOLDER),
    ("ebl", "ISSUED", "ebl.release_pledge"): _t("ISSUED", _BANK, "custodian"),
    ("ebl", "ISSUED", "ebl.surrender_request"): _t(
        "SURRENDER_REQUESTED", _HOLDERS, "holder", _NOT_HOLDER
    ),
    ("ebl", "SURRENDER_REQUESTED", "ebl.surrender_accept"): _t("SURRENDERED", _CARRIER, "carrier"),
    ("ebl", "SURRENDER_REQUESTED", "ebl.surrender_reject"): _t("ISSUED", _CARRIER, "carrier"),
    ("ebl", "ISSUED", "ebl.void"): _t("VOID", _CARRIER, "carrier"),
    # Receivables.
    ("invoice", None, "inv.register"): _t("REGISTERED", _TRADER),
    ("invoice", "REGISTERED", "rcv.record_collection"): _t(("REGISTERED", "SETTLED"), _BANK),
    # Financing: everything after the request is the named lender's.
    ("financing", None, "fin.request"): _t("REQUESTED", _TRADER),
    ("financing", "REQUESTED", "fin.approve"): _t("APPROVED", _BANK, "lender"),
    ("financing", "REQUESTED", "fin.reject"): _t("REJECTED", _BANK, "lender"),
    ("financing", "APPROVED", "fin.disburse"): _t("DISBURSED", _BANK, "lender"),
    ("financing", "DISBURSED", "fin.repay"): _t(("DISBURSED", "REPAID"), _BANK, "lender"),
    ("financing", "APPROVED", "fin.close"): _t("CLOSED", _BANK, "lender"),
    ("financing", "REPAID", "fin.close"): _t("CLOSED", _BANK, "lender"),
    # Letters of credit.
    ("lc", None, "lc.apply"): _t("SUBMITTED", _TRADER),
    ("lc", "SUBMITTED", "lc.decline"): _t("DECLINED", _BANK, "issuing_bank"),
    ("lc", "SUBMITTED", "lc.issue"): _t("ISSUED", _BANK, "issuing_bank"),
    ("lc", "ISSUED", "lc.advise"): _t("ADVISED", _BANK, "advising_bank"),
    ("lc", "ISSUED", "lc.consent_cancel"): _t("ISSUED", _TRADER, "beneficiary"),
    ("lc", "ADVISED", "lc.consent_cancel"): _t("ADVISED", _TRADER, "beneficiary"),
    ("lc", "ISSUED", "lc.cancel"): _t("CANCELLED", _BANK, "issuing_bank"),
    ("lc", "ADVISED", "lc.cancel"): _t("CANCELLED", _BANK, "issuing_bank"),
    ("lc", "ISSUED", "lc.expire"): _t("EXPIRED", _BANK, "issuing_bank"),
    ("lc", "ADVISED", "lc.expire"): _t("EXPIRED", _BANK, "issuing_bank"),
    ("lc", "ISSUED", "lc.close"): _t("CLOSED", _BANK, "issuing_bank"),
    ("lc", "ADVISED", "lc.close"): _t("CLOSED", _BANK, "issuing_bank"),
    ("lc", "EXPIRED", "lc.close"): _t("CLOSED", _BANK, "issuing_bank"),
    # Amendments: requested by the applicant, effective on the beneficiary's full acceptance.
    ("amendment", None, "amend.request"): _t("REQUESTED", _TRADER),
    ("amendment", "REQUESTED", "amend.issue"): _t("ISSUED", _BANK, "issuing_bank"),
    ("amendment", "ISSUED", "amend.advise"): _t("ADVISED", _BANK, "advising_bank"),
    ("amendment", "ADVISED", "amend.accept"): _t("ACCEPTED", _TRADER, "beneficiary"),
    ("amendment", "ADVISED", "amend.reject"): _t("REJECTED", _TRADER, "beneficiary"),
    # Presentations: the beneficiary presents, the issuing bank examines.
    ("presentation", None, "pres.open"): _t("OPEN", _TRADER),
    ("presentation", "OPEN", "pres.attach"): _t("OPEN", _TRADER, "presenter"),
    ("presentation", "OPEN", "pres.complete"): _t("PRESENTED", _TRADER, "presenter"),
    ("presentation", "PRESENTED", "pres.mark_complying"): _t("COMPLYING", _BANK, "examining_bank"),
    ("presentation", "PRESENTED", "pres.refuse"): _t("REFUSED", _BANK, "examining_bank"),
    ("presentation", "REFUSED", "pres.waive"): _t("WAIVED", _TRADER, "applicant"),
    ("presentation", "COMPLYING", "pres.honour"): _t("HONOURED", _BANK, "examining_bank"),
    ("presentation", "WAIVED", "pres.honour"): _t("HONOURED", _BANK, "examining_bank"),
    ("presentation", "HONOURED", "pres.reimburse"): _t("REIMBURSED", _BANK, "examining_bank"),
    ("presentation", "REIMBURSED", "pres.release_docs"): _t(
        "DOCS_RELEASED", _BANK, "examining_bank"
    ),
    ("presentation", "REFUSED", "pres.return_docs"): _t("RETURNED", _BANK, "examining_bank"),
    # Service trade.
    ("tax_record", None, "tax.register_record"): _t("ACTIVE", _TAX),
    ("payment", None, "pay.service_outward"): _t("RECORDED", _BANK),
}

TRANSITIONS: MappingProxyType[tuple[str, str | None, str], Transition] = MappingProxyType(_TABLE)

#: Role admitted -> the only role that may admit it (party.admit).
ADMITTERS: MappingProxyType[Role, Role] = MappingProxyType(
    {
        Role.FX_ADMIN: Role.FX_ADMIN,
        Role.CUSTOMS: Role.FX_ADMIN,
        Role.TAX: Role.FX_ADMIN,
        Role.BANK: Role.FX_ADMIN,
        Role.CARRIER: Role.FX_ADMIN,
        Role.TRADER: Role.BANK,
    }
)

#: Commands that answer once: command -> (record flag set by the first answer, code for a
#: second answer). Checked before the closed-status codes.
ANSWER_ONCE: MappingProxyType[str, tuple[str, ErrorCode]] = MappingProxyType(
    {
        "ebl.surrender_accept": ("surrender_answered", ErrorCode.ALREADY_ANSWERED),
        "ebl.surrender_reject": ("surrender_answered", ErrorCode.ALREADY_ANSWERED),
        "pres.mark_complying": ("examined", ErrorCode.ALREADY_ANSWERED),
        "pres.refuse": ("examined", ErrorCode.ALREADY_ANSWERED),
        "pres.honour": ("honoured", ErrorCode.ALREADY_HONOURED),
    }
)

#: (kind, status) after which nothing may happen, with the code every command then gets.
CLOSED_STATUSES: MappingProxyType[tuple[str, str], ErrorCode] = MappingProxyType(
    {
        ("ebl", "SURRENDERED"): ErrorCode.DOC_CLOSED,
        ("ebl", "VOID"): ErrorCode.DOC_CLOSED,
    }
)

#: Specific codes for a command in a status it cannot leave that way.
STATUS_REFUSALS: MappingProxyType[tuple[str, str, str], ErrorCode] = MappingProxyType(
    {
        ("invoice", "SETTLED", "rcv.record_collection"): ErrorCode.RECEIVABLE_SETTLED,
    }
)


def _derive() -> tuple[dict[str, str], dict[str, frozenset[Role]], dict[str, Transition]]:
    kinds: dict[str, str] = {}
    roles: dict[str, frozenset[Role]] = {}
    first: dict[str, Transition] = {}
    for (kind, _status, command), transition in _TABLE.items():
        assert kinds.setdefault(command, kind) == kind, f"{command} acts on two kinds"
        assert roles.setdefault(command, transition.roles) == transition.roles, command
        seen = first.setdefault(command, transition)
        assert (seen.party, seen.party_code) == (transition.party, transition.party_code), command
    return kinds, roles, first


_KINDS, _ROLES, _FIRST = _derive()
#: command -> the kind of record it creates or acts on.
COMMAND_KIND: MappingProxyType[str, str] = MappingProxyType(_KINDS)
#: command -> the roles that may issue it.
COMMAND_ROLES: MappingProxyType[str, frozenset[Role]] = MappingProxyType(_ROLES)
#: command -> (party field, code for a non-party), the same in every status.
COMMAND_PARTY: MappingProxyType[str, tuple[str | None, ErrorCode]] = MappingProxyType(
    {command: (t.party, t.party_code) for command, t in _FIRST.items()}
)
#: Commands that may create their record (from_status None).
CREATING_COMMANDS = frozenset(command for (_, status, command) in _TABLE if status is None)


def is_commercial(command: str) -> bool:
    """True iff only commercial roles (bank, carrier, trader) may issue `command`."""
    return COMMAND_ROLES[command] <= COMMERCIAL_ROLES


def role_refusal(command: str, role: Role) -> ErrorCode | None:
    """The code refusing `role` the `command` (step 1 above), or None if the role may."""
    if role in COMMAND_ROLES[command]:
        return None
    if role in REGULATOR_ROLES and is_commercial(command):
        return ErrorCode.UNAUTHORIZED
    return ErrorCode.UNAUTHORIZED_ISSUER


def admission_refusal(admitter: Role, admitted: Role) -> ErrorCode | None:
    """The code refusing `admitter` the admission of a participant of role `admitted`."""
    if ADMITTERS[admitted] == admitter:
        return None
    return ErrorCode.UNAUTHORIZED_ISSUER


def status_refusal(kind: str, status: str, command: str, answered: bool) -> ErrorCode:
    """Why `command` cannot run on a `kind` record in `status` (step 4 above). `answered`:
    the record's ANSWER_ONCE flag for this command (False if it has none)."""
    if command in ANSWER_ONCE and answered:
        return ANSWER_ONCE[command][1]
    if (kind, status) in CLOSED_STATUSES:
        return CLOSED_STATUSES[(kind, status)]
    return STATUS_REFUSALS.get((kind, status, command), ErrorCode.INVALID_STATE)


def statuses(kind: str) -> list[str]:
    """Every status a `kind` record can have, sorted."""
    found: set[str] = set()
    for (k, status, _), transition in _TABLE.items():
        if k == kind:
            found.update(transition.to)
            if status is not None:
                found.add(status)
    return sorted(found)


def lifecycle_markdown() -> str:
    """The transition tables as Markdown, one table per kind (the documentation's source)."""
    lines: list[str] = []
    kinds = list(dict.fromkeys(kind for (kind, _, _) in _TABLE))
    for kind in kinds:
        lines += [
            f"### {kind}",
            "",
            "| from | command | to | roles | party |",
            "|---|---|---|---|---|",
        ]
        for (k, status, command), t in _TABLE.items():
            if k != kind:
                continue
            roles = ", ".join(sorted(str(role) for role in t.roles))
            party = "—" if t.party is None else f"`{t.party}` (else {t.party_code})"
            lines.append(
                f"| {status or '(new)'} | `{command}` | {' or '.join(t.to)} | {roles} | {party} |"
            )
        lines.append("")
    return "\n".join(lines)


def lifecycle_document() -> str:
    """The whole LIFECYCLES.md: a header and `lifecycle_markdown()`."""
    header = [
        "# Lifecycles of the trade ledger's records",
        "",
        "Generated from `tradeapp/transitions.py` (`lifecycle_document()`); do not edit.",
        "`(new)` marks the command that creates the record. A command refused for the actor's",
        "role gets UNAUTHORIZED (a regulator on a commercial command) or UNAUTHORIZED_ISSUER;",
        "by someone other than the named party, the code in the party column; from a status not",
        "listed, INVALID_STATE or the specific code of `ANSWER_ONCE`, `CLOSED_STATUSES`,",
        "`STATUS_REFUSALS`.",
        "",
        "Who admits whom (`party.admit`): "
        + ", ".join(f"{admitted} by {ADMITTERS[admitted]}" for admitted in ADMITTERS)
        + ".",
        "",
    ]
    return "\n".join(header) + "\n" + lifecycle_markdown()
