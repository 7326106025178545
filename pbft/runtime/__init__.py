"""The trio runtime: the only part of pbft that does I/O (networking now; storage, the replica
node, the async client and the CLI as they land). Nothing else in pbft imports it."""

from .framing import (
    FrameReader,
    FrameTooLargeError,
    FrameWriter,
    FramingError,
    TruncatedFrameError,
)
from .tls import PeerCertificateError, client_context, peer_public_key, server_context
from .transport import Peer, Transport, TransportSettings, TransportStatistics, peer_acceptor

__all__ = [
    "FrameReader",
    "FrameTooLargeError",
    "FrameWriter",
    "FramingError",
    "Peer",
    "PeerCertificateError",
    "Transport",
    "TransportSettings",
    "TransportStatistics",
    "TruncatedFrameError",
    "client_context",
    "peer_acceptor",
    "peer_public_key",
    "server_context",
]
