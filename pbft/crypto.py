"""The cryptographic interfaces the core is given: a `Signer` for its own identity and a
`Verifier` for everyone else's, plus the project's one digest function.

The core only sees these protocols; `pbft.ed25519` provides the PyNaCl implementation. Keeping
them apart lets the core stay free of I/O (key files) and lets tests inject counting or faulty
implementations.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

DIGEST_BYTES = 32


def sha256(data: bytes) -> bytes:
    """The project's digest: SHA-256 over canonical bytes (see `pbft.codec`)."""
    return hashlib.sha256(data).digest()


class Signer(Protocol):
    """Signs on behalf of one identity. Owned by one core (or one client session)."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, payload: bytes) -> bytes:
        """Return the 64-byte signature of `payload`."""
        ...


class Verifier(Protocol):
    """Checks signatures of any identity; stateless from the caller's point of view."""

    def verify(self, public_key: bytes, payload: bytes, signature: bytes) -> bool:
        """True iff `signature` is `public_key`'s valid signature of `payload`.

        Bad input (a key or signature of the wrong length, garbage bytes) returns False;
        it never raises.
        """
        ...
