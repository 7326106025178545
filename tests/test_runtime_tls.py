"""TLS 1.3 with pinned Ed25519 identities (issue 5, item 1; docs/ARCHITECTURE.md "Cryptography"):
handshakes over in-memory streams between contexts built from identity seeds, checking the
protocol version, the keys each side sees, and what the TLS layer itself refuses."""

from __future__ import annotations

import datetime
import hashlib
import ssl
import tempfile
from pathlib import Path

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from pbft.ed25519 import Ed25519Signer
from pbft.runtime.tls import (
    PeerCertificateError,
    client_context,
    identity_certificate,
    peer_public_key,
    server_context,
)

SERVER = Ed25519Signer(hashlib.sha256(b"tls test server").digest())
CLIENT = Ed25519Signer(hashlib.sha256(b"tls test client").digest())


def self_signed_client_context(seed: bytes) -> ssl.SSLContext:
    """A client presenting a genuinely self-signed Ed25519 certificate (not our issuer's)."""
    key = Ed25519PrivateKey.from_private_bytes(seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(datetime.datetime(2000, 1, 1))
        .not_valid_after(datetime.datetime(9999, 1, 1))
        .sign(key, None)
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with tempfile.TemporaryDirectory() as directory:
        certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
        (Path(directory) / "c.pem").write_bytes(certificate_pem)
        (Path(directory) / "k.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context.load_cert_chain(Path(directory) / "c.pem", Path(directory) / "k.pem")
    return context


async def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext):
    """Handshake both sides over a memory stream pair; return (server, client, errors)."""
    left, right = trio.testing.memory_stream_pair()
    server = trio.SSLStream(left, server_ctx, server_side=True)
    client = trio.SSLStream(right, client_ctx, server_side=False)
    errors: dict[str, BaseException] = {}

    async def run(name, stream, first):
        try:
            await stream.do_handshake()
            # TLS 1.3: the client finishes before the server has checked the client's
            # certificate, so exchange one message to see the server's verdict.
            if first:
                await stream.send_all(b"ping")
            else:
                assert await stream.receive_some(10) == b"ping"
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            errors[name] = e
            await trio.aclose_forcefully(stream)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "server", server, False)
            nursery.start_soon(run, "client", client, True)
    return server, client, errors


def test_the_certificate_carries_the_pynacl_identity_key():
    certificate_pem, _ = identity_certificate(CLIENT.seed)
    der = ssl.PEM_cert_to_DER_cert(certificate_pem.decode())
    assert peer_public_key(der) == CLIENT.public_key
    assert identity_certificate(CLIENT.seed) == identity_certificate(CLIENT.seed)


def test_a_missing_or_foreign_certificate_has_no_key():
    with pytest.raises(PeerCertificateError):
        peer_public_key(None)
    with pytest.raises(PeerCertificateError):
        peer_public_key(b"not a certificate")


@pytest.mark.trio
async def test_mutual_handshake_is_tls13_and_each_side_sees_the_others_identity():
    server, client, errors = await handshake(
        server_context(SERVER.seed), client_context(CLIENT.seed)
    )
    assert errors == {}
    assert server.version() == client.version() == "TLSv1.3"
    assert peer_public_key(server.getpeercert(binary_form=True)) == CLIENT.public_key
    assert peer_public_key(client.getpeercert(binary_form=True)) == SERVER.public_key


@pytest.mark.trio
async def test_a_client_without_a_certificate_is_refused():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, _, errors = await handshake(server_context(SERVER.seed), context)
    assert "server" in errors
    assert "certificate" in str(errors["server"].__cause__).lower()


@pytest.mark.trio
async def test_a_self_signed_certificate_is_refused_at_the_tls_layer():
    _, _, errors = await handshake(
        server_context(SERVER.seed), self_signed_client_context(CLIENT.seed)
    )
    assert "self-signed" in str(errors["server"].__cause__)


@pytest.mark.trio
async def test_tls_1_2_is_refused():
    context = client_context(CLIENT.seed)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    _, _, errors = await handshake(server_context(SERVER.seed), context)
    assert "server" in errors and "client" in errors


# --- TlsSocketStream: stdlib ssl sockets driven by trio (what the transport runs on) ---------


async def socket_stream_pair(client_ctx=None):
    """A connected (server, client) pair of TlsSocketStreams over loopback TCP, handshaken."""
    from pbft.runtime.tls import TlsSocketStream

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    accepted: list = []

    async def accept():
        tcp = await listeners[0].accept()
        accepted.append(TlsSocketStream.wrap(tcp, server_context(SERVER.seed), server_side=True))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        client = TlsSocketStream.wrap(tcp, client_ctx or client_context(CLIENT.seed),
                                      server_side=False)  # fmt: skip
    await listeners[0].aclose()
    server = accepted[0]
    errors: dict[str, BaseException] = {}

    async def shake(name, stream):
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as e:
            errors[name] = e
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(shake, "server", server)
        nursery.start_soon(shake, "client", client)
    return server, client, errors


@pytest.mark.trio
async def test_socket_stream_carries_large_writes_to_a_slow_reader_intact():
    """Non-blocking SSL writes that fill the socket must be retried with the same bytes."""
    data = hashlib.sha256(b"seed").digest() * (8 * 1024 * 1024 // 32)  # 8 MiB
    with trio.fail_after(30):
        server, client, errors = await socket_stream_pair()
        assert errors == {}
        assert server.version() == client.version() == "TLSv1.3"
        assert peer_public_key(server.getpeercert(binary_form=True)) == CLIENT.public_key
        received = bytearray()

        async def read_slowly():
            while len(received) < len(data):
                chunk = await server.receive_some(5000)
                assert chunk
                received.extend(chunk)
                if len(received) % 7 == 0:
                    await trio.sleep(0.001)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_slowly)
            for start in range(0, len(data), 1_000_003):
                await client.send_all(data[start : start + 1_000_003])
        assert bytes(received) == data
        await client.aclose()
        # The peer closed without close_notify: a broken stream, not a clean end.
        with pytest.raises(trio.BrokenResourceError):
            await server.receive_some(100)
        await server.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await server.receive_some(100)
        with pytest.raises(trio.ClosedResourceError):
            await client.send_all(b"x")


@pytest.mark.trio
async def test_socket_stream_reports_why_a_handshake_failed():
    with trio.fail_after(10):
        _, _, errors = await socket_stream_pair(self_signed_client_context(CLIENT.seed))
    assert "self-signed" in str(errors["server"].__cause__)
