"""Ed25519 identities with PyNaCl: signing keys, verification, and key files.

A key file holds the 32-byte seed, hex-encoded on one line, and is created with mode 0600 so
that no other local user can read it. The same seed can later serve as the replica's TLS key.
"""

from __future__ import annotations

import os
from pathlib import Path

import nacl.bindings
import nacl.signing
from nacl._sodium import ffi as _ffi, lib as _lib


SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class KeyFileError(Exception):
    """A key file is missing, unreadable, too permissive or not a 32-byte hex seed."""


class Ed25519Signer:
    """A `pbft.crypto.Signer` over one Ed25519 signing key."""

    __slots__ = ("_key", "_public_key", "_secret")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
        self._key = nacl.signing.SigningKey(seed)
        self._public_key = bytes(self._key.verify_key)
        self._secret = self._key._signing_key  # seed ‖ public key, as libsodium wants it

    @classmethod
    def generate(cls) -> "Ed25519Signer":
        """A fresh identity from the operating system's random source."""
        return cls(os.urandom(SEED_BYTES))

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    def sign(self, payload: bytes) -> bytes:
        # The binding directly: SigningKey.sign wraps the same call in a SignedMessage.
        return nacl.bindings.crypto_sign(payload, self._secret)[:SIGNATURE_BYTES]

    def __repr__(self) -> str:
        return f"Ed25519Signer(public_key={self._public_key.hex()[:16]}…)"


class Ed25519Verifier:
    """A `pbft.crypto.Verifier` for Ed25519; never raises on bad input.

    Calls libsodium through PyNaCl's bindings with one reusable output buffer (the binding
    allocates one per call), so an instance must not be shared between threads.
    """

    __slots__ = ("_buffer", "_buffer_bytes", "_out_len")

    def __init__(self) -> None:
        self._buffer_bytes = 4096
        self._buffer = _ffi.new("unsigned char[]", self._buffer_bytes)
        self._out_len = _ffi.new("unsigned long long *")

    def verify(self, public_key: bytes, payload: bytes, signature: bytes) -> bool:
        if (
            type(public_key) is not bytes
            or type(signature) is not bytes
            or type(payload) is not bytes
            or len(public_key) != PUBLIC_KEY_BYTES
            or len(signature) != SIGNATURE_BYTES
        ):
            return False
        signed = signature + payload
        if len(signed) > self._buffer_bytes:
            self._buffer_bytes = 2 * len(signed)
            self._buffer = _ffi.new("unsigned char[]", self._buffer_bytes)
        return _lib.crypto_sign_open(self._buffer, self._out_len, signed, len(signed), public_key) == 0


def write_key_file(path: Path | str, signer: Ed25519Signer) -> None:
    """Write `signer`'s seed to `path` with mode 0600. Refuses to overwrite an existing file."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(signer.seed.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_key_file(path: Path | str) -> Ed25519Signer:
    """Load an identity written by `write_key_file`.

    Raises `KeyFileError` if the file is readable by group or others, or is not one line holding
    a 32-byte hex seed.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text().strip()
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file: {e.strerror}") from e
    if mode & 0o077:
        raise KeyFileError(f"{path}: key file mode is {mode:o}; it must be 600 (chmod 600 {path})")
    try:
        seed = bytes.fromhex(text)
    except ValueError as e:
        raise KeyFileError(f"{path}: not a hex-encoded seed") from e
    if len(seed) != SEED_BYTES:
        raise KeyFileError(f"{path}: seed is {len(seed)} bytes, expected {SEED_BYTES}")
    return Ed25519Signer(seed)
