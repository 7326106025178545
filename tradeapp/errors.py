"""The ledger's stable error codes: what a refused command or read returns (tests assert these).

Codes named in docs/TRADE-DOMAIN.md keep their names; the others cover what the spec leaves implicit
(a malformed operation, an unknown signer, a named counterparty that cannot play its part).
Messages that go with a code are for people and may change; codes may not.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why the ledger refused an operation. The value is what travels on the wire."""

    # The operation itself.
    MALFORMED = "MALFORMED"  # not msgpack, wrong shape, wrong type, out of bounds, bad date
    UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
    NOT_READ_ONLY = "NOT_READ_ONLY"  # a command sent to the read-only `query` path
    # Who is asking.
    UNKNOWN_PARTICIPANT = "UNKNOWN_PARTICIPANT"  # the signer (or a named participant) is unknown
    ACTOR_MISMATCH = "ACTOR_MISMATCH"  # the payload names an actor other than the signer
    PARTICIPANT_SUSPENDED = "PARTICIPANT_SUSPENDED"
    UNAUTHORIZED_ISSUER = "UNAUTHORIZED_ISSUER"  # the actor's role may not do this
    UNAUTHORIZED = "UNAUTHORIZED"  # a regulator on a commercial fact; not this instrument's party
    FORBIDDEN = "FORBIDDEN"  # a read the visibility table refuses
    INVALID_PARTY = "INVALID_PARTY"  # a named counterparty is inactive or has the wrong role
    # Identity of objects.
    DUPLICATE_ID = "DUPLICATE_ID"
    DUPLICATE_KEY = "DUPLICATE_KEY"  # a public key already bound to another participant
    DUPLICATE_ENTERPRISE = "DUPLICATE_ENTERPRISE"  # tax id + country already a participant
    UNKNOWN_DOCUMENT = "UNKNOWN_DOCUMENT"
    UNKNOWN_CALENDAR = "UNKNOWN_CALENDAR"
    # Lifecycles.
    INVALID_STATE = "INVALID_STATE"
    DOC_CLOSED = "DOC_CLOSED"
    DOC_IN_USE = "DOC_IN_USE"
    NOT_HOLDER = "NOT_HOLDER"
    NOT_DOCUMENT_OWNER = "NOT_DOCUMENT_OWNER"
    ALREADY_ANSWERED = "ALREADY_ANSWERED"
    ALREADY_HONOURED = "ALREADY_HONOURED"
    DOC_NOT_RELEASED = "DOC_NOT_RELEASED"
    # Money.
    UNKNOWN_CURRENCY = "UNKNOWN_CURRENCY"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    INVALID_AMOUNT = "INVALID_AMOUNT"  # not positive, above the bound, or below what is drawn
    # Receivables and financing.
    DUPLICATE_INVOICE = "DUPLICATE_INVOICE"
    ALREADY_ENCUMBERED = "ALREADY_ENCUMBERED"
    RECEIVABLE_SETTLED = "RECEIVABLE_SETTLED"
    EXCEEDS_FINANCEABLE_BALANCE = "EXCEEDS_FINANCEABLE_BALANCE"
    EXCEEDS_INVOICE = "EXCEEDS_INVOICE"
    EXCEEDS_OUTSTANDING = "EXCEEDS_OUTSTANDING"
    BUYER_MISMATCH = "BUYER_MISMATCH"  # invoice buyer is not the declaration's consignee
    # Letters of credit.
    PARTIAL_ACCEPTANCE = "PARTIAL_ACCEPTANCE"
    CONSENT_REQUIRED = "CONSENT_REQUIRED"
    NOT_EXPIRED = "NOT_EXPIRED"  # lc.expire before expiry; lc.close of a live, undrawn LC
    PRESENTATION_PENDING = "PRESENTATION_PENDING"
    DOCUMENTS_MISSING = "DOCUMENTS_MISSING"  # pres.complete without a transport document
    LATE_PRESENTATION = "LATE_PRESENTATION"
    EXCEEDS_AVAILABLE = "EXCEEDS_AVAILABLE"
    PRECLUDED = "PRECLUDED"
    # Service trade.
    PAYEE_MISMATCH = "PAYEE_MISMATCH"
    EXCEEDS_RECORD = "EXCEEDS_RECORD"
