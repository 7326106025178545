"""pbft: Byzantine fault tolerant state machine replication (PBFT) for Python.

This package exports the pure part: the application interface (`StateMachine`, the reference
`KeyValueStore` and its operations), the configuration, Ed25519 identities and key files, the
codec, and the deterministic core (`Replica`, `ClientSession`). The trio runtime — replicas on
real networks, the async client, local clusters — is `pbft.runtime` (`serve_replica`,
`connect`, `embedded_cluster`); importing `pbft` does not import it, nor trio
(docs/ARCHITECTURE.md). The application contract is docs/APPLICATION.md.
"""

from .app import (
    Admission,
    ExecutionContext,
    KeyValueStore,
    StateMachine,
    application_error_result,
    decode_application_error,
    kv_append,
    kv_cas,
    kv_decode_result,
    kv_delete,
    kv_get,
    kv_put,
)
from .codec import DecodeError, decode, encode
from .config import ClusterConfig, ConfigError, ReplicaInfo
from .core import ClientResult, ClientSession, Ready, Replica
from .crypto import Signer, Verifier, sha256
from .ed25519 import Ed25519Signer, Ed25519Verifier, KeyFileError, read_key_file, write_key_file

__version__ = "0.1.0"

__all__ = [
    "Admission",
    "ClientResult",
    "ClientSession",
    "ClusterConfig",
    "ConfigError",
    "DecodeError",
    "Ed25519Signer",
    "Ed25519Verifier",
    "ExecutionContext",
    "KeyFileError",
    "KeyValueStore",
    "Ready",
    "Replica",
    "ReplicaInfo",
    "Signer",
    "StateMachine",
    "Verifier",
    "application_error_result",
    "decode",
    "decode_application_error",
    "encode",
    "kv_append",
    "kv_cas",
    "kv_decode_result",
    "kv_delete",
    "kv_get",
    "kv_put",
    "read_key_file",
    "sha256",
    "write_key_file",
]
