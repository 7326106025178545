"""The application interface: what a replicated service implements.

The core calls the state machine synchronously, at execution, in sequence order (N6), on every
replica. An implementation must be deterministic: the same operations with the same contexts
give the same results and the same digest on every replica. It never reads a clock (the agreed
batch timestamp arrives in the context, D1) and never draws a random number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """What consensus agreed about one request, given to `StateMachine.execute`.

    - `sequence`: the consensus sequence number of the batch holding the request.
    - `client`: the Ed25519 public key that signed the request: the actor. The application
      never trusts an actor named inside the operation.
    - `timestamp_ms`: the batch timestamp agreed through consensus (D1); never decreases.
    """

    sequence: int
    client: bytes
    timestamp_ms: int


class StateMachine(Protocol):
    """A deterministic replicated service.

    Operations and results are opaque bytes to the core. Bad operations (malformed, unauthorised)
    must produce an error *result*, deterministically; an exception raised by `execute` is a bug
    in the application and stops the replica.
    """

    def execute(self, operation: bytes, context: ExecutionContext) -> bytes:
        """Apply one ordered operation and return its result."""
        ...

    def query(self, operation: bytes, client: bytes) -> bytes:
        """Answer a read-only operation (R1) from the current state without changing it."""
        ...

    def snapshot(self) -> bytes:
        """The whole state as canonical bytes (equal states give equal bytes)."""
        ...

    def restore(self, snapshot: bytes) -> None:
        """Replace the state with one produced by `snapshot()`; raises ValueError on bad bytes."""
        ...

    def digest(self) -> bytes:
        """A 32-byte digest of the current state; equal on replicas in equal states."""
        ...
