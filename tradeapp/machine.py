"""`TradeLedger`: the replicated trade-finance ledger as a `pbft.app.StateMachine`.

Execution of one operation, in order:
1. decode (MALFORMED, UNKNOWN_COMMAND);
2. the actor is the participant whose key signed (`context.client`): unknown key
   UNKNOWN_PARTICIPANT (replicated by PBFT, such a command never gets here: `admits`); a
   payload naming another actor ACTOR_MISMATCH; suspended PARTICIPANT_SUSPENDED;
3. a read (get.*, report.*) is answered, filtered by the reader;
4. a command is authorised from the transition tables (role, record, party, status) and handed
   to its handler, which checks the business rules before it mutates anything; between role and
   record, a money-moving command resubmitted with a recorded id is answered from the first
   (`tradeapp.idempotency`);
5. whatever happened, exactly one event is chained onto the audit trail.

Bootstrap: the ledger is constructed with the founding FX_ADMINs (participant id -> public
key). They are the only participants not admitted by a command; they exist from the genesis
state on every replica, and the genesis hash (the first event's previous hash) is a digest of
exactly them, so replicas built with different founders disagree from their first digest on.
Further FX_ADMINs are admitted by an FX_ADMIN with `party.admit`.

Digests: `domain_digest()` is the SHA-256 of the canonical domain state without the audit
trail; `digest()` combines it with the trail's head hash and length. A refused command changes
`digest()` (its audit event) but never `domain_digest()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pbft.app import ExecutionContext
from pbft.crypto import sha256

from . import (
    declarations,
    ebls,
    financing,
    governance,
    letters_of_credit,
    presentations,
    service_trade,
)
from .audit import OUTCOME_OK, AuditEvent, AuditTrail, genesis_hash
from .commands import (
    ID_CHARS_MAX,
    QUERIES,
    EblIssue,
    Envelope,
    Operation,
    PartyAdmit,
    decode_operation,
    encode_accepted,
    encode_rejected,
    is_id,
)
from .errors import ErrorCode
from .idempotency import resubmission
from .invariants import violations
from .model import LedgerState, Participant, Role, pack_canonical, unpack_strict
from .queries import QUERY_HANDLERS
from .reports import REPORT_HANDLERS
from .step import Done, Handler, Outcome, Refusal, Step
from .transitions import (
    ANSWER_ONCE,
    COMMAND_KIND,
    COMMAND_PARTY,
    TRANSITIONS,
    admission_refusal,
    role_refusal,
    status_refusal,
)

_SNAPSHOT_TAG = "tradeapp/snapshot/1"
_DIGEST_TAG = "tradeapp/digest/1"

HANDLERS: dict[str, Handler] = {
    **governance.HANDLERS,
    **declarations.HANDLERS,
    **ebls.HANDLERS,
    **financing.HANDLERS,
    **letters_of_credit.HANDLERS,
    **presentations.HANDLERS,
    **service_trade.HANDLERS,
}
READ_HANDLERS = {**QUERY_HANDLERS, **REPORT_HANDLERS}
assert sorted(HANDLERS) == sorted(COMMAND_KIND), "every command has a handler and a table row"
assert sorted(READ_HANDLERS) == sorted(QUERIES), "every query has a handler"

_UNKNOWN_RECORD_CODES = {
    "participant": ErrorCode.UNKNOWN_PARTICIPANT,
    "calendar": ErrorCode.UNKNOWN_CALENDAR,
}


class TradeLedger:
    """The trade-finance ledger state machine. Deterministic: no clock, no randomness; business
    time is `context.timestamp_ms`. Not thread-safe; owned by one replica (or one test)."""

    def __init__(self, fx_admins: Mapping[str, bytes], *, check_invariants: bool = False) -> None:
        """A ledger whose only participants are the founding FX_ADMINs (id -> 32-byte public
        key). Raises ValueError for no founder, a bad id, a bad key, or a shared key.
        `check_invariants`: assert every invariant after each execution (tests)."""
        if not fx_admins:
            raise ValueError("a ledger needs at least one founding FX_ADMIN")
        keys = [fx_admins[admin_id] for admin_id in sorted(fx_admins)]
        for admin_id in sorted(fx_admins):
            key = fx_admins[admin_id]
            if not is_id(admin_id):
                raise ValueError(f"founding FX_ADMIN id {admin_id!r} is not a valid id")
            if not isinstance(key, bytes) or len(key) != 32:
                raise ValueError(f"founding FX_ADMIN {admin_id!r} needs a 32-byte public key")
        if len(set(keys)) != len(keys):
            raise ValueError("founding FX_ADMINs must have distinct keys")
        self._check_invariants = check_invariants
        self._state = LedgerState()
        for admin_id in sorted(fx_admins):
            self._state.add(
                Participant(
                    participant_id=admin_id,
                    status="ACTIVE",
                    role=str(Role.FX_ADMIN),
                    legal_name=admin_id,
                    country="",
                    tax_id="",
                    public_key=fx_admins[admin_id],
                    place="",
                    sponsor=None,
                    admitted_by=None,
                )
            )
        self._audit = AuditTrail(genesis_hash(dict(fx_admins)))
        self._domain_digest: bytes | None = None

    # --- StateMachine ------------------------------------------------------------------------

    def execute(self, operation: bytes, context: ExecutionContext) -> bytes:
        """Apply one ordered operation; returns `["ok", value]` or `["error", code, message]`.
        Never raises on bad input; appends exactly one audit event either way."""
        envelope = decode_operation(operation)
        actor_id = self._state.participant_by_key.get(context.client)
        index = len(self._audit)
        objects: list[str] = []
        if envelope.operation is not None:
            objects = envelope.operation.references()
        outcome, target = self._run(envelope, actor_id, context, index)
        if target is not None:
            objects.append(target)
        if isinstance(outcome, Done):
            objects.extend(outcome.objects)
            result = encode_accepted(outcome.value)
            code = OUTCOME_OK
        else:
            result = encode_rejected(outcome.code, outcome.message)
            code = str(outcome.code)
        self._audit.append(
            sequence=context.sequence,
            timestamp_ms=context.timestamp_ms,
            signer=bytes(context.client),
            actor=actor_id,
            command=envelope.name,
            objects=objects,
            outcome=code,
            operation_digest=_operation_digest(operation),
        )
        if self._check_invariants:
            problems = violations(self._state, self._audit)
            assert not problems, problems
        return result

    def admits(self, client: bytes) -> bool:
        """The PBFT admission hook (`pbft.app.Admission`): the ledger serves the keys of its
        participants, founders and participants admitted by `party.admit` alike, suspended
        ones too (they get PARTICIPANT_SUSPENDED, and stay in the reply cache for when they are
        reinstated). A command signed by any other key is not executed under PBFT: no reply,
        no audit event (its reads still get UNKNOWN_PARTICIPANT from `query`). Participants
        are never removed, so the replicas' reply caches hold only participants' records."""
        return client in self._state.participant_by_key

    def query(self, operation: bytes, client: bytes) -> bytes:
        """Answer a read (get.*, report.*) for the participant whose key is `client`, from the
        current state, changing nothing (and so not audited). A command gets NOT_READ_ONLY."""
        envelope = decode_operation(operation)
        if envelope.error is not None:
            return encode_rejected(envelope.error, envelope.message)
        if envelope.name not in QUERIES:
            return encode_rejected(ErrorCode.NOT_READ_ONLY, f"{envelope.name} must be ordered")
        reader_id = self._state.participant_by_key.get(client)
        outcome = self._identify(envelope, reader_id)
        if outcome is None:
            outcome = self._read(envelope, self._state.get("participant", reader_id))
        if isinstance(outcome, Done):
            return encode_accepted(outcome.value)
        return encode_rejected(outcome.code, outcome.message)

    def snapshot(self) -> bytes:
        """Canonical bytes of the whole state: domain tables and the audit trail."""
        return pack_canonical([_SNAPSHOT_TAG, self._state.to_wire(), self._audit.to_wire()])

    def restore(self, snapshot: bytes) -> None:
        """Replace the whole state with `snapshot`'s. Raises ValueError, changing nothing,
        unless `snapshot` is exactly what `snapshot()` produces for some valid state whose
        audit chain verifies."""
        decoded = unpack_strict(snapshot)
        if not (isinstance(decoded, list) and len(decoded) == 3 and decoded[0] == _SNAPSHOT_TAG):
            raise ValueError("not a trade ledger snapshot")
        state = LedgerState.from_wire(decoded[1])
        audit = AuditTrail.from_wire(decoded[2])
        if pack_canonical([_SNAPSHOT_TAG, state.to_wire(), audit.to_wire()]) != bytes(snapshot):
            raise ValueError("snapshot is not in canonical form")
        self._state, self._audit, self._domain_digest = state, audit, None

    def digest(self) -> bytes:
        """SHA-256 over the domain digest, the audit head hash and the audit length."""
        return sha256(
            pack_canonical([_DIGEST_TAG, self.domain_digest(), self._audit.head, len(self._audit)])
        )

    # --- Inspection (tests, regulators' tools) -----------------------------------------------

    def domain_digest(self) -> bytes:
        """SHA-256 of the canonical domain state, audit trail excluded (cached between
        accepted commands)."""
        if self._domain_digest is None:
            self._domain_digest = self._state.digest()
        return self._domain_digest

    @property
    def audit_events(self) -> tuple[AuditEvent, ...]:
        """The audit trail, oldest first."""
        return tuple(self._audit.events)

    @property
    def genesis_hash(self) -> bytes:
        return self._audit.genesis

    @property
    def state(self) -> LedgerState:
        """The domain state, for invariant checks and tests: never mutate it."""
        return self._state

    @property
    def audit(self) -> AuditTrail:
        """The audit trail, for invariant checks and tests: never mutate it."""
        return self._audit

    # --- Execution ---------------------------------------------------------------------------

    def _identify(self, envelope: Envelope, actor_id: str | None) -> Refusal | None:
        """Steps 1-2: the operation parses and its signer is an active participant."""
        if envelope.error is not None:
            return Refusal(envelope.error, envelope.message)
        if actor_id is None:
            return Refusal(ErrorCode.UNKNOWN_PARTICIPANT, "the signing key is not admitted")
        if envelope.claimed_actor is not None and envelope.claimed_actor != actor_id:
            return Refusal(
                ErrorCode.ACTOR_MISMATCH,
                f"signed by {actor_id}, payload names {envelope.claimed_actor}",
            )
        actor = self._state.get("participant", actor_id)
        if actor.status != "ACTIVE":
            return Refusal(ErrorCode.PARTICIPANT_SUSPENDED, f"{actor_id} is {actor.status}")
        return None

    def _read(self, envelope: Envelope, reader: Participant) -> Outcome:
        assert envelope.name is not None and envelope.operation is not None
        view = READ_HANDLERS[envelope.name](self._state, self._audit, reader, envelope.operation)
        return view if isinstance(view, Refusal) else Done(view)

    def _run(
        self, envelope: Envelope, actor_id: str | None, context: ExecutionContext, index: int
    ) -> tuple[Outcome, str | None]:
        """The outcome, and the "kind:id" of the record acted on once it is known."""
        if (refusal := self._identify(envelope, actor_id)) is not None:
            return refusal, None
        op = envelope.operation
        name = envelope.name
        assert op is not None and name is not None and actor_id is not None
        actor: Participant = self._state.get("participant", actor_id)
        if name in QUERIES:
            return self._read(envelope, actor), None
        role = Role(actor.role)
        code = role_refusal(name, role)
        if code is None and isinstance(op, PartyAdmit):
            code = admission_refusal(role, Role(op.role))
        if code is not None:
            return Refusal(code, f"a {role} may not {name}"), None
        if (answer := resubmission(self._state, name, op, actor_id)) is not None:
            return answer, None
        kind = COMMAND_KIND[name]
        target = _target_id(op, actor_id)
        if target is None:
            refusal = Refusal(ErrorCode.MALFORMED, f"the id would exceed {ID_CHARS_MAX} chars")
            return refusal, None
        reference = f"{kind}:{target}"
        record: Any = self._state.get(kind, target)
        transition = self._authorise(name, kind, target, record, actor_id)
        if isinstance(transition, Refusal):
            return transition, reference
        step = Step(self._state, actor, context, index, record, transition)
        outcome = HANDLERS[name](step, op)
        if isinstance(outcome, Refusal):
            return outcome, reference
        if record is None:
            created = self._state.get(kind, target)
            assert created is not None and created.status in transition.to, (name, target)
        else:
            new_status = outcome.status or transition.to[0]
            assert new_status in transition.to, (name, new_status)
            record.status = new_status
        self._domain_digest = None
        return outcome, reference

    def _authorise(self, name: str, kind: str, target: str, record: Any, actor_id: str) -> Any:
        """Steps 2-4 of transitions.py: the Transition allowing `name`, or the Refusal."""
        if record is None:
            creation = TRANSITIONS.get((kind, None, name))
            if creation is None:
                code = _UNKNOWN_RECORD_CODES.get(kind, ErrorCode.UNKNOWN_DOCUMENT)
                return Refusal(code, f"no {kind} {target}")
            return creation
        party, party_code = COMMAND_PARTY[name]
        if party is not None and getattr(record, party) != actor_id:
            return Refusal(party_code, f"only the {kind}'s {party} may {name}")
        transition = TRANSITIONS.get((kind, record.status, name))
        if transition is not None:
            return transition
        if (kind, None, name) in TRANSITIONS:
            return Refusal(ErrorCode.DUPLICATE_ID, f"{kind} {target} already exists")
        flag = ANSWER_ONCE.get(name)
        answered = flag is not None and bool(getattr(record, flag[0], False))
        code = status_refusal(kind, record.status, name, answered)
        return Refusal(code, f"{kind} {target} is {record.status}: cannot {name}")


def _operation_digest(operation: object) -> bytes:
    """SHA-256 of the operation bytes (of nothing, if the core handed us something else)."""
    if isinstance(operation, (bytes, bytearray, memoryview)):
        return sha256(bytes(operation))
    return sha256(b"")


def _target_id(op: Operation, actor_id: str) -> str | None:
    """The id of the record `op` creates or acts on; None if a derived id is too long."""
    if isinstance(op, EblIssue):
        return ebls.ebl_id_of(actor_id, op.bl_no)
    assert op.TARGET is not None, op.NAME
    return getattr(op, op.TARGET)
