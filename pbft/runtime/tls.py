"""TLS 1.3 contexts with mutual authentication, each identity's Ed25519 seed serving as its TLS key.

Authentication is by pinning, not by a certificate authority: after the handshake the caller
reads the peer certificate's raw Ed25519 public key (`peer_public_key`) and compares it with
the key it expects (the cluster configuration for a replica, any key for a client). TLS 1.3
itself proves that the peer holds the private key of that certificate (the peer signs the
handshake transcript in its CertificateVerify message), so a pinned key is an authenticated
identity.

Why the certificates are signed by a *public* issuer rather than self-signed: OpenSSL, as used
by the stdlib `ssl` module, refuses a self-signed client certificate that is not itself in the
server's trust store ("certificate verify failed: self-signed certificate", with CERT_REQUIRED
and with CERT_OPTIONAL alike), and Python (3.11) offers no verify callback to turn that check
off. Trusting the exact expected certificates would work for replica links only if every
replica knew every other's certificate, and never for clients, whose keys are not known in
advance. So every identity certificate is issued by one fixed issuer whose private key is
derived from a published constant (`_ISSUER_SEED`): anyone can mint a certificate that passes
the TLS-layer check, by design. The chain check therefore vouches for nothing; the pin does all
of the authentication, and the caller must always pin (`peer_public_key`) before trusting a
connection. This is the same argument as libp2p's TLS handshake, which accepts any
certificate at the TLS layer and authenticates the key inside it.

The stdlib loads a certificate and key only from files, so `server_context`/`client_context`
write them into a fresh private temporary directory (mode 0700, files 0600) and delete it as
soon as OpenSSL has read them.
"""

from __future__ import annotations

import datetime
import errno
import functools
import hashlib
import os
import socket
import ssl
import tempfile
from pathlib import Path

import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "PeerCertificateError",
    "TlsSocketStream",
    "client_context",
    "identity_certificate",
    "peer_public_key",
    "server_context",
]

SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32

#: Public on purpose: see the module docstring. Changing it breaks interoperability between
#: versions (an old peer would refuse the new issuer at the TLS layer), never security.
_ISSUER_SEED = hashlib.sha256(
    b"pbft.runtime.tls: public issuer of identity certificates; vouches for nothing"
).digest()
_ISSUER_NAME = x509.Name(
    [x509.NameAttribute(NameOID.COMMON_NAME, "pbft public issuer (identities are pinned)")]
)
# Fixed validity: authentication never depends on a clock, and certificates are deterministic.
_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)


class PeerCertificateError(ValueError):
    """The peer presented no certificate, or one whose key is not Ed25519."""


@functools.lru_cache(maxsize=1)
def _issuer() -> tuple[Ed25519PrivateKey, x509.Certificate]:
    key = Ed25519PrivateKey.from_private_bytes(_ISSUER_SEED)
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_ISSUER_NAME)
        .issuer_name(_ISSUER_NAME)
        .public_key(public_key)
        .serial_number(1)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, algorithm=None)
    )
    return key, certificate


def identity_certificate(seed: bytes) -> tuple[bytes, bytes]:
    """The (certificate PEM, private key PEM) pair for the identity with this Ed25519 seed.

    The same seed as the identity's PyNaCl signing key, so the certificate's public key is the
    identity's public key. Deterministic: the same seed gives the same bytes. Raises ValueError
    for a seed that is not 32 bytes.
    """
    if type(seed) is not bytes or len(seed) != SEED_BYTES:
        raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes")
    issuer_key, issuer_certificate = _issuer()
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public_key = key.public_key()
    raw_public_key = public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    # For people reading certificates only (a common name holds at most 64 characters); the
    # key itself is what gets pinned.
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"pbft identity {raw_public_key.hex()[:32]}")]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_certificate.subject)
        .public_key(public_key)
        # Positive and below 2**159, as RFC 5280 requires; unique per key.
        .serial_number(int.from_bytes(hashlib.sha256(raw_public_key).digest()[:19], "big") | 1)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, algorithm=None)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(seed: bytes) -> ssl.SSLContext:
    """A TLS 1.3-only server context for the identity `seed` that requires a client certificate.

    The caller owns the context (it holds no file or socket). Any certificate from the public
    issuer passes the handshake: the caller must pin `peer_public_key` afterwards.
    """
    context = _context(ssl.PROTOCOL_TLS_SERVER, seed)
    # Resumption would let a later connection skip the certificate exchange we pin on.
    context.num_tickets = 0
    return context


def client_context(seed: bytes) -> ssl.SSLContext:
    """A TLS 1.3-only client context for the identity `seed`; it sends its certificate and
    requires the server's. No host name check: the caller pins `peer_public_key` instead."""
    return _context(ssl.PROTOCOL_TLS_CLIENT, seed)


def _context(protocol: int, seed: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    # The only trust anchor: no system CA can vouch for a peer (not that any vouching counts).
    context.load_verify_locations(
        cadata=_issuer()[1].public_bytes(serialization.Encoding.DER)
    )
    certificate_pem, key_pem = identity_certificate(seed)
    with tempfile.TemporaryDirectory(prefix="pbft-tls-") as directory:
        certificate_path = Path(directory) / "certificate.pem"
        key_path = Path(directory) / "key.pem"
        _write_private(certificate_path, certificate_pem)
        _write_private(key_path, key_pem)
        context.load_cert_chain(certificate_path, key_path)
    return context


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def peer_public_key(certificate_der: bytes | None) -> bytes:
    """The raw 32-byte Ed25519 public key of a peer certificate, as returned by
    `getpeercert(binary_form=True)` after a completed handshake.

    Raises PeerCertificateError if there is no certificate, it does not parse, or its key is not
    Ed25519. The key is what the caller pins; nothing else in the certificate is trusted.
    """
    if not certificate_der:
        raise PeerCertificateError("the peer presented no certificate")
    try:
        certificate = x509.load_der_x509_certificate(certificate_der)
        public_key = certificate.public_key()
    except ValueError as e:
        raise PeerCertificateError(f"unreadable peer certificate: {e}") from None
    if not isinstance(public_key, Ed25519PublicKey):
        raise PeerCertificateError(
            f"peer certificate key is {type(public_key).__name__}, not Ed25519"
        )
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class TlsSocketStream(trio.abc.Stream):
    """A TLS stream over a non-blocking stdlib `ssl.SSLSocket`, for trio.

    Why not `trio.SSLStream`: it runs OpenSSL over memory BIOs and moves every record through
    Python (locks, buffers, a retry loop), which costs about 50 µs of CPU per small message
    sent and received; here OpenSSL reads and writes the socket itself and Python only waits
    for readiness, about 12 µs (measured on the 2-core development machine). Same semantics
    where the transport relies on them: `do_handshake`, `version`, `getpeercert`,
    `receive_some` (b"" at a clean end: the peer's close_notify), `send_all`; failures raise
    `trio.BrokenResourceError` with the ssl or socket error as `__cause__`, use after `aclose`
    raises `trio.ClosedResourceError`. One task may receive while another sends.

    Build with `wrap(tcp_stream, context, server_side=...)`, which takes over the socket of
    the trio `SocketStream` (that stream must not be used afterwards). The caller owns the
    returned stream and closes it (`aclose`; no close_notify is sent: the framing layer
    detects truncation itself).
    """

    def __init__(self, ssl_socket: ssl.SSLSocket) -> None:
        self._socket = ssl_socket
        self._closed = False

    @classmethod
    def wrap(
        cls, tcp_stream: trio.SocketStream, context: ssl.SSLContext, *, server_side: bool
    ) -> TlsSocketStream:
        raw = socket.socket(fileno=tcp_stream.socket.detach())
        raw.setblocking(False)
        try:
            wrapped = context.wrap_socket(
                raw, server_side=server_side, do_handshake_on_connect=False,
                suppress_ragged_eofs=False,
            )  # fmt: skip
        except BaseException:
            raw.close()
            raise
        return cls(wrapped)

    # ------------------------------------------------------------------ TLS

    async def do_handshake(self) -> None:
        """Run the handshake; raises trio.BrokenResourceError if it fails (the cause says
        why: a certificate refused, the peer gone, not TLS at all)."""
        await self._retry(self._socket.do_handshake)

    def version(self) -> str | None:
        return self._socket.version()

    def getpeercert(self, binary_form: bool = False):
        return self._socket.getpeercert(binary_form)

    # ------------------------------------------------------------------ the stream

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Everything readable now, up to `max_bytes` (at least one byte: waits for it), or
        b"" once the peer has closed cleanly."""
        limit = 65536 if max_bytes is None else max_bytes
        sock = self._socket
        waited = False
        while True:
            self._check_open()
            chunks: list[bytes] = []
            size = 0
            try:
                while size < limit:
                    data = sock.recv(limit - size)
                    if not data:
                        break
                    chunks.append(data)
                    size += len(data)
            except ssl.SSLWantReadError:
                if not chunks:
                    await self._wait_readable()
                    waited = True
                    continue
            except ssl.SSLWantWriteError:
                if not chunks:
                    await trio.sleep(0.001)  # rare in TLS 1.3; the sender owns writability
                    waited = True
                    continue
            except (OSError, ValueError) as e:
                self._raise_broken(e)
            if not waited:
                # Every call is a checkpoint; one that waited has already yielded (a second
                # trip through the scheduler would only delay the message).
                await trio.lowlevel.checkpoint()
            return b"".join(chunks)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self._socket
        waited = False
        with memoryview(data) as view:
            while view:
                self._check_open()
                try:
                    # Without partial writes, OpenSSL returns only once all of `view` went
                    # out; after a "want write" it must be offered the same bytes again.
                    sent = sock.send(view)
                except ssl.SSLWantWriteError:
                    await self._wait_writable()
                    waited = True
                    continue
                except ssl.SSLWantReadError:
                    await trio.sleep(0.001)  # rare in TLS 1.3; the receiver owns readability
                    waited = True
                    continue
                except (OSError, ValueError) as e:
                    self._raise_broken(e)
                view = view[sent:]
        if not waited:
            await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await self._wait_writable()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self._socket)
            self._socket.close()
        await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------------ helpers

    async def _retry(self, operation) -> None:
        while True:
            self._check_open()
            try:
                operation()
                return
            except ssl.SSLWantReadError:
                await self._wait_readable()
            except ssl.SSLWantWriteError:
                await self._wait_writable()
            except (OSError, ValueError) as e:
                self._raise_broken(e)

    async def _wait_readable(self) -> None:
        try:
            await trio.lowlevel.wait_readable(self._socket)
        except trio.ClosedResourceError:
            raise trio.ClosedResourceError("the stream was closed") from None

    async def _wait_writable(self) -> None:
        try:
            await trio.lowlevel.wait_writable(self._socket)
        except trio.ClosedResourceError:
            raise trio.ClosedResourceError("the stream was closed") from None

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream was closed")

    def _raise_broken(self, error: BaseException) -> None:
        if self._closed or (isinstance(error, OSError) and error.errno == errno.EBADF):
            raise trio.ClosedResourceError("the stream was closed") from error
        raise trio.BrokenResourceError(str(error) or type(error).__name__) from error
