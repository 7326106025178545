"""Keys for simulated replicas and clients: real Ed25519 keys derived from labels, and an
insecure stand-in (hash "signatures") that keeps long sweeps fast."""

from __future__ import annotations

import hashlib

from pbft.crypto import sha256
from pbft.ed25519 import Ed25519Signer


def ed25519_signer(label: str) -> Ed25519Signer:
    """A real Ed25519 key derived from `label`: equal labels, equal keys, so runs are
    reproducible."""
    return Ed25519Signer(sha256(b"pbft-sim-key:" + label.encode()))


#: The latest signatures InsecureSigner made, by (public key, payload): a verifier checking one
#: of them compares with it instead of hashing again (it would get the same bytes). Bounded:
#: cleared when full.
_issued: dict[tuple[bytes, bytes], bytes] = {}
_ISSUED_MAX = 4096


class InsecureSigner:
    """A stand-in for Ed25519 that makes long sweeps fast: the "signature" is SHA-512 over key
    and payload, which anyone can compute. It keeps every protocol check meaningful against
    replicas that do not forge on purpose; behaviours that forge use wrong keys, which it
    still rejects. Never use it outside simulation."""

    __slots__ = ("public_key",)

    def __init__(self, label: str) -> None:
        self.public_key = hashlib.sha256(b"pbft-sim-insecure:" + label.encode()).digest()

    def sign(self, payload: bytes) -> bytes:
        signature = hashlib.sha512(self.public_key + payload).digest()
        if len(_issued) >= _ISSUED_MAX:
            _issued.clear()
        _issued[(self.public_key, payload)] = signature
        return signature


class InsecureVerifier:
    """Accepts exactly SHA-512(public key + payload): a signature made with another key, or
    over other bytes, or altered, is refused."""

    __slots__ = ()

    def verify(self, public_key: bytes, payload: bytes, signature: bytes) -> bool:
        expected = _issued.get((public_key, payload))
        if expected is None:
            expected = hashlib.sha512(public_key + payload).digest()
        return expected == signature
