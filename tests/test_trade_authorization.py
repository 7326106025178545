"""Authorisation generated from the transition tables: every role × command pair, every
admitter × admitted role, every non-party, every status without a transition and every taken
id is refused with the code docs/TRADE-DOMAIN.md gives (expectations restated here, not derived)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradeapp import ErrorCode, Rejected
from tradeapp.commands import COMMANDS, EblIssue, PartyAdmit, example_operation
from tradeapp.model import Role
from tradeapp.scenario import FX_ADMIN
from tradeapp.transitions import (
    COMMAND_KIND,
    COMMAND_PARTY,
    COMMAND_ROLES,
    TRANSITIONS,
    lifecycle_document,
    lifecycle_markdown,
    statuses,
)

from .test_trade_world import World

ROOT = Path(__file__).resolve().parent.parent
#: One participant of each role in the common cast.
ACTOR_OF_ROLE = {
    Role.FX_ADMIN: FX_ADMIN,
    Role.CUSTOMS: "CUSTOMS-QD",
    Role.TAX: "TAX-QD",
    Role.BANK: "BANK-A",
    Role.CARRIER: "CARRIER-1",
    Role.TRADER: "EXP-QD",
}
REGULATORS = {Role.FX_ADMIN, Role.CUSTOMS, Role.TAX}
COMMERCIAL = {Role.BANK, Role.CARRIER, Role.TRADER}


def expected_role_refusal(command: str, role: Role) -> ErrorCode | None:
    """docs/TRADE-DOMAIN.md, Roles: regulators never change commercial facts (UNAUTHORIZED);
    anything else done by the wrong role is UNAUTHORIZED_ISSUER."""
    allowed = COMMAND_ROLES[command]
    if role in allowed:
        return None
    if role in REGULATORS and allowed <= COMMERCIAL:
        return ErrorCode.UNAUTHORIZED
    return ErrorCode.UNAUTHORIZED_ISSUER


ROLE_PAIRS = [(command, role) for command in sorted(COMMANDS) for role in Role]


@pytest.fixture(scope="module")
def shared_world() -> World:
    """One world for the read-only matrix: refused commands change nothing but the audit."""
    return World(check_invariants=False)


@pytest.mark.parametrize(("command", "role"), ROLE_PAIRS)
def test_role_command_matrix(shared_world, command, role):
    """Roles table: each command by each role; refused pairs get the right code and change no
    domain state, allowed pairs are never refused for their role."""
    driver = shared_world.driver
    op = example_operation(COMMANDS[command])
    if isinstance(op, PartyAdmit):
        op = example_operation(PartyAdmit, role="TRADER" if role is Role.BANK else "BANK")
    before = driver.ledger.domain_digest()
    result = driver.run(ACTOR_OF_ROLE[role], op)
    expected = expected_role_refusal(command, role)
    if expected is not None:
        assert isinstance(result, Rejected) and result.code == expected, result
        assert driver.ledger.domain_digest() == before
    else:
        assert not (
            isinstance(result, Rejected)
            and result.code in (ErrorCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED_ISSUER)
        ), result


ADMISSIONS = {
    Role.FX_ADMIN: Role.FX_ADMIN,
    Role.CUSTOMS: Role.FX_ADMIN,
    Role.TAX: Role.FX_ADMIN,
    Role.BANK: Role.FX_ADMIN,
    Role.CARRIER: Role.FX_ADMIN,
    Role.TRADER: Role.BANK,
}


@pytest.mark.parametrize("admitted", list(Role))
@pytest.mark.parametrize("admitter", list(Role))
def test_admission_matrix(admitter, admitted):
    """Participant: FX_ADMIN admits banks, carriers, authorities; a sponsoring bank traders."""
    world = World(check_invariants=False)
    participant_id = world.fresh("NEW")
    op = example_operation(PartyAdmit, participant_id=participant_id, role=str(admitted))
    result = world.driver.run(ACTOR_OF_ROLE[admitter], op)
    if ADMISSIONS[admitted] == admitter:
        assert result.ok, result
        admitted_record = world.record("participant", participant_id)
        assert admitted_record.role == admitted
        expected_sponsor = ACTOR_OF_ROLE[admitter] if admitted is Role.TRADER else None
        assert admitted_record.sponsor == expected_sponsor
    else:
        assert isinstance(result, Rejected) and result.code == ErrorCode.UNAUTHORIZED_ISSUER


def _party_commands() -> list[tuple[str, str, str]]:
    """(command, kind, a status it can run from) for every command restricted to a party."""
    found: dict[str, tuple[str, str, str]] = {}
    for (kind, status, command), transition in TRANSITIONS.items():
        if transition.party is not None and status is not None:
            found.setdefault(command, (command, kind, status))
    return sorted(found.values())


@pytest.mark.parametrize(("command", "kind", "status"), _party_commands())
def test_only_the_instruments_party_may_act(command, kind, status):
    """Instrument roles are fields on the instrument, checked against the actor: a participant
    of the right role who is not that party is refused (NOT_HOLDER for an eBL's holder)."""
    world = World(check_invariants=False)
    record_id = world.make(kind, status)
    if command == "ebl.release_pledge":
        from tradeapp.commands import EblPledge

        world.ok("EXP-QD", EblPledge(ebl_id=record_id, bank="BANK-A"))
    party_field, _ = COMMAND_PARTY[command]
    party = getattr(world.record(kind, record_id), party_field)
    outsiders = {
        role: world.participant(role=role) for role in (Role.BANK, Role.CARRIER, Role.CUSTOMS)
    }
    outsiders[Role.TRADER] = world.participant(role=Role.TRADER, sponsor="BANK-A")
    role = sorted(COMMAND_ROLES[command])[0]
    outsider = outsiders[role]
    assert outsider != party
    cls = COMMANDS[command]
    op = example_operation(cls, **{cls.TARGET: record_id})
    before = world.driver.ledger.domain_digest()
    result = world.driver.run(outsider, op)
    expected = ErrorCode.NOT_HOLDER if party_field == "holder" else ErrorCode.UNAUTHORIZED
    assert isinstance(result, Rejected) and result.code == expected, result
    assert world.driver.ledger.domain_digest() == before


#: After an examination, a second answer is ALREADY_ANSWERED; after honour, ALREADY_HONOURED.
_EXAMINED = {
    "COMPLYING",
    "REFUSED",
    "WAIVED",
    "HONOURED",
    "REIMBURSED",
    "DOCS_RELEASED",
    "RETURNED",
}
_HONOURED = {"HONOURED", "REIMBURSED", "DOCS_RELEASED"}


def expected_status_refusal(kind: str, status: str, command: str) -> ErrorCode:
    """docs/TRADE-DOMAIN.md, per document: the specific codes, else INVALID_STATE."""
    if kind == "ebl" and command in ("ebl.surrender_accept", "ebl.surrender_reject"):
        if status == "SURRENDERED":
            return ErrorCode.ALREADY_ANSWERED  # "issuing carrier, once"
    if kind == "ebl" and status in ("SURRENDERED", "VOID"):
        return ErrorCode.DOC_CLOSED  # "nothing after SURRENDERED or VOID"
    if kind == "presentation" and command in ("pres.refuse", "pres.mark_complying"):
        if status in _EXAMINED:
            return ErrorCode.ALREADY_ANSWERED  # "pres.refuse (once ...)"
    if kind == "presentation" and command == "pres.honour" and status in _HONOURED:
        return ErrorCode.ALREADY_HONOURED  # "pres.honour (once: ALREADY_HONOURED)"
    if kind == "invoice" and status == "SETTLED":
        return ErrorCode.RECEIVABLE_SETTLED
    return ErrorCode.INVALID_STATE


def _status_cases() -> list[tuple[str, str, str]]:
    cases = []
    for command in sorted(COMMANDS):
        kind = COMMAND_KIND[command]
        for status in statuses(kind):
            if (kind, None, command) in TRANSITIONS and (kind, status, command) not in TRANSITIONS:
                continue  # a creation on a taken id: DUPLICATE_ID, tested below
            if (kind, status, command) not in TRANSITIONS:
                cases.append((command, kind, status))
    return cases


#: The actor for commands with no party field, by command.
_ACTOR_WITHOUT_PARTY = {"rcv.record_collection": "BANK-A"}


@pytest.mark.parametrize(("command", "kind", "status"), _status_cases())
def test_a_command_from_a_status_without_a_transition_is_refused(command, kind, status):
    """Lifecycles: every (status, command) pair missing from the tables is refused, by the
    record's party, with INVALID_STATE or the document's specific code."""
    world = World(check_invariants=False)
    record_id = world.make(kind, status)
    party_field, party_code = COMMAND_PARTY[command]
    default_actor = ACTOR_OF_ROLE[sorted(COMMAND_ROLES[command])[0]]
    actor = _ACTOR_WITHOUT_PARTY.get(command, default_actor)
    expected = expected_status_refusal(kind, status, command)
    if party_field is not None:
        party = getattr(world.record(kind, record_id), party_field)
        if party is None:  # nobody holds that part (an unpledged eBL has no custodian)
            expected = ErrorCode.UNAUTHORIZED
        else:
            actor = party
    cls = COMMANDS[command]
    op = example_operation(cls, **{cls.TARGET: record_id})
    before = world.driver.ledger.domain_digest()
    result = world.driver.run(actor, op)
    assert isinstance(result, Rejected), result
    assert result.code == expected, result
    assert world.driver.ledger.domain_digest() == before


def _creations() -> list[tuple[str, str, str]]:
    return sorted(
        (command, kind, transition.to[0])
        for (kind, status, command), transition in TRANSITIONS.items()
        if status is None and (kind, transition.to[0], command) not in TRANSITIONS
    )


@pytest.mark.parametrize(("command", "kind", "status"), _creations())
def test_creating_a_record_with_a_taken_id_is_duplicate_id(command, kind, status):
    world = World(check_invariants=False)
    record_id = world.make(kind, status)
    cls = COMMANDS[command]
    if cls is EblIssue:
        op = example_operation(EblIssue, bl_no=record_id.partition("/")[2])
    else:
        op = example_operation(cls, **{cls.TARGET: record_id})
    actor = ACTOR_OF_ROLE[sorted(COMMAND_ROLES[command])[0]]
    if cls is PartyAdmit:  # FX_ADMIN admitting a bank under a taken id
        op = example_operation(PartyAdmit, participant_id=record_id, role="BANK")
        actor = FX_ADMIN
    result = world.driver.run(actor, op)
    assert isinstance(result, Rejected) and result.code == ErrorCode.DUPLICATE_ID, result


def test_every_command_has_a_role_and_the_tables_are_consistent():
    assert sorted(COMMAND_ROLES) == sorted(COMMANDS)
    for (kind, status, command), transition in TRANSITIONS.items():
        assert transition.to and transition.roles, command
        assert COMMAND_KIND[command] == kind
        assert status is None or status in statuses(kind)


def test_the_lifecycle_document_is_generated_from_the_tables():
    """STYLE 9: tradeapp/LIFECYCLES.md is `lifecycle_document()`; after changing a table run
    python -c 'from tradeapp.transitions import *; print(lifecycle_document(), end="")' \
        > tradeapp/LIFECYCLES.md"""
    document = (ROOT / "tradeapp" / "LIFECYCLES.md").read_text(encoding="utf-8")
    assert document == lifecycle_document()
    assert lifecycle_markdown() in document
