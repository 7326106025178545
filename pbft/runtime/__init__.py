"""The trio runtime: the only part of pbft that does I/O. Replicas on real networks
(`serve_replica`), their durable storage (`ReplicaStorage`), the async client (`connect`), the
authenticated transport under both, local clusters of replica processes (`LocalCluster`, also
behind the `pbft` command) and whole clusters inside one trio program (`embedded_cluster`).
Nothing else in pbft imports it."""

from .client import (
    Client,
    ClientError,
    ClientStatistics,
    NoQuorumError,
    RequestRejectedError,
    connect,
)
from .cluster import ClusterFiles, LocalCluster, generate_cluster
from .embedded import EmbeddedCluster, embedded_cluster
from .framing import (
    FrameReader,
    FrameTooLargeError,
    FrameWriter,
    FramingError,
    TruncatedFrameError,
)
from .node import NodeSettings, NodeStatistics, ReplicaNode, serve_replica
from .storage import (
    ReplicaStorage,
    StorageCorruptError,
    StorageError,
    StorageMismatchError,
    StorageStatistics,
)
from .tls import PeerCertificateError, client_context, peer_public_key, server_context
from .transport import (
    Peer,
    Transport,
    TransportSettings,
    TransportStatistics,
    peer_acceptor,
)

__all__ = [
    "Client",
    "ClientError",
    "ClientStatistics",
    "ClusterFiles",
    "EmbeddedCluster",
    "FrameReader",
    "FrameTooLargeError",
    "FrameWriter",
    "FramingError",
    "LocalCluster",
    "NoQuorumError",
    "NodeSettings",
    "NodeStatistics",
    "Peer",
    "PeerCertificateError",
    "ReplicaNode",
    "ReplicaStorage",
    "RequestRejectedError",
    "StorageCorruptError",
    "StorageError",
    "StorageMismatchError",
    "StorageStatistics",
    "Transport",
    "TransportSettings",
    "TransportStatistics",
    "TruncatedFrameError",
    "client_context",
    "connect",
    "embedded_cluster",
    "generate_cluster",
    "peer_acceptor",
    "peer_public_key",
    "serve_replica",
    "server_context",
]
