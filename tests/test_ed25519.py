"""Ed25519 identities: signatures verify only for the right key and bytes, verification never raises, and key files are private (0600), never overwritten, and checked on load."""

from __future__ import annotations

import os
import stat

import pytest

from pbft.ed25519 import (
    SEED_BYTES,
    Ed25519Signer,
    Ed25519Verifier,
    KeyFileError,
    read_key_file,
    write_key_file,
)

SEED = bytes(range(32))
PAYLOAD = b"[3, 1, 2, digest, 3]"


@pytest.fixture
def signer() -> Ed25519Signer:
    return Ed25519Signer(SEED)


@pytest.fixture
def verifier() -> Ed25519Verifier:
    return Ed25519Verifier()


# --- signing and verification ---------------------------------------------------------------------


def test_sign_verify_round_trip(signer, verifier):
    signature = signer.sign(PAYLOAD)
    assert type(signature) is bytes and len(signature) == 64
    assert len(signer.public_key) == 32
    assert verifier.verify(signer.public_key, PAYLOAD, signature) is True


def test_signing_is_deterministic_per_seed(signer):
    assert Ed25519Signer(SEED).sign(PAYLOAD) == signer.sign(PAYLOAD)
    assert Ed25519Signer(SEED).public_key == signer.public_key


def test_generated_identities_differ():
    assert Ed25519Signer.generate().public_key != Ed25519Signer.generate().public_key


def test_a_seed_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        Ed25519Signer(b"short")


def test_the_wrong_key_fails(signer, verifier):
    other = Ed25519Signer(bytes(32))
    assert verifier.verify(other.public_key, PAYLOAD, signer.sign(PAYLOAD)) is False


def test_a_tampered_payload_fails(signer, verifier):
    signature = signer.sign(PAYLOAD)
    assert verifier.verify(signer.public_key, PAYLOAD + b"x", signature) is False
    assert verifier.verify(signer.public_key, PAYLOAD[:-1], signature) is False
    assert verifier.verify(signer.public_key, b"", signature) is False


@pytest.mark.parametrize("position", [0, 31, 32, 63])
def test_a_tampered_signature_fails(signer, verifier, position):
    signature = bytearray(signer.sign(PAYLOAD))
    signature[position] ^= 0x01
    assert verifier.verify(signer.public_key, PAYLOAD, bytes(signature)) is False


def test_a_tampered_public_key_fails(signer, verifier):
    key = bytearray(signer.public_key)
    key[0] ^= 0x01
    assert verifier.verify(bytes(key), PAYLOAD, signer.sign(PAYLOAD)) is False


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [
        (b"k" * 31, None),
        (b"k" * 33, None),
        (b"", None),
        (None, b"s" * 63),
        (None, b"s" * 65),
        (None, b""),
        (b"\xff" * 32, b"\xff" * 64),  # right lengths, not a curve point nor a signature
        (bytes(32), bytes(64)),
    ],
)
def test_wrong_length_or_garbage_keys_and_signatures_fail(signer, verifier, public_key, signature):
    public_key = signer.public_key if public_key is None else public_key
    signature = signer.sign(PAYLOAD) if signature is None else signature
    assert verifier.verify(public_key, PAYLOAD, signature) is False


NOT_BYTES = ["a str", 12345, None, [1, 2], 1.5]


@pytest.mark.parametrize("junk", NOT_BYTES)
@pytest.mark.parametrize("position", ["public_key", "payload", "signature"])
def test_non_bytes_inputs_fail_without_raising(signer, verifier, position, junk):
    args = {"public_key": signer.public_key, "payload": PAYLOAD, "signature": signer.sign(PAYLOAD)}
    args[position] = junk
    assert verifier.verify(**args) is False


def test_bytearray_key_or_signature_is_refused(signer, verifier):
    # Only exact bytes: the codec hands the core bytes, anything else is a bug upstream.
    signature = signer.sign(PAYLOAD)
    assert verifier.verify(bytearray(signer.public_key), PAYLOAD, signature) is False
    assert verifier.verify(signer.public_key, PAYLOAD, bytearray(signature)) is False


# --- key files ------------------------------------------------------------------------------------


def test_write_key_file_creates_a_private_file(tmp_path, signer):
    path = tmp_path / "replica-0.key"
    write_key_file(path, signer)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text() == SEED.hex() + "\n"


def test_write_key_file_refuses_to_overwrite(tmp_path, signer):
    path = tmp_path / "replica-0.key"
    path.write_text("precious")
    with pytest.raises(FileExistsError):
        write_key_file(path, signer)
    assert path.read_text() == "precious"


def test_read_key_file_round_trips(tmp_path, signer):
    path = tmp_path / "replica-0.key"
    write_key_file(str(path), signer)
    loaded = read_key_file(str(path))
    assert loaded.public_key == signer.public_key
    assert loaded.seed == SEED
    assert Ed25519Verifier().verify(signer.public_key, PAYLOAD, loaded.sign(PAYLOAD))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_read_key_file_refuses_a_readable_file(tmp_path, signer, mode):
    path = tmp_path / "replica-0.key"
    write_key_file(path, signer)
    os.chmod(path, mode)
    with pytest.raises(KeyFileError, match="chmod 600") as caught:
        read_key_file(path)
    assert f"{mode:o}" in str(caught.value)


def test_read_key_file_accepts_owner_read_only(tmp_path, signer):
    path = tmp_path / "replica-0.key"
    write_key_file(path, signer)
    os.chmod(path, 0o400)
    assert read_key_file(path).public_key == signer.public_key


def _private_file(tmp_path, text: str):
    path = tmp_path / "bad.key"
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not hex at all\n", "not a hex-encoded seed"),
        ("zz" * SEED_BYTES + "\n", "not a hex-encoded seed"),
        ("ab" * 16 + "\n", "seed is 16 bytes, expected 32"),
        ("ab" * 33 + "\n", "seed is 33 bytes, expected 32"),
        ("", "seed is 0 bytes"),
        (SEED.hex() + "\n" + SEED.hex() + "\n", "seed is 64 bytes"),  # two seeds
    ],
)
def test_read_key_file_refuses_garbage_and_short_seeds(tmp_path, text, fragment):
    with pytest.raises(KeyFileError, match=fragment):
        read_key_file(_private_file(tmp_path, text))


def test_read_key_file_reports_a_missing_file(tmp_path):
    with pytest.raises(KeyFileError, match="cannot read key file"):
        read_key_file(tmp_path / "absent.key")
