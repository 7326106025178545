"""The cluster configuration: who the replicas are, and every bound the core enforces.

n replicas tolerate f = (n - 1) // 3 Byzantine faults; a quorum is 2f + 1; the primary of view v
is replica v mod n. Every queue, log, stash and cache in the core is bounded by a field here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    """One replica: its id (0 .. n-1), Ed25519 public key, and listening address."""

    id: int
    public_key: bytes
    host: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """A validated cluster configuration. Build with `ClusterConfig.create(...)` or `load()`."""

    replicas: tuple[ReplicaInfo, ...]
    #: A batch closes at this many requests (or when the primary has no batch in flight).
    batch_size_max: int = 100
    #: L: the high watermark is H = h + L, h the last stable checkpoint.
    log_window: int = 256
    #: K: a checkpoint every K sequence numbers (C1). log_window must be a multiple ≥ 2.
    checkpoint_interval: int = 64
    #: A backup starts a view change when a known request waits longer than this (V1).
    request_timeout_ms: int = 2_000
    #: T of V4: how long a view change may take before moving on (doubles while failing).
    view_change_timeout_ms: int = 4_000
    #: D1: a backup refuses a batch timestamp further than this from its own clock.
    timestamp_skew_max_ms: int = 30_000
    #: A client multicasts its request when no result arrived within this (N9).
    client_retry_timeout_ms: int = 1_000
    #: Largest frame the codec decodes; checked before reading the body.
    frame_bytes_max: int = 4 * 1024 * 1024
    #: Largest operation (request payload) and result accepted.
    operation_bytes_max: int = 1024 * 1024
    result_bytes_max: int = 1024 * 1024
    #: Requests the primary holds waiting for a batch; beyond this new requests are dropped.
    pending_requests_max: int = 10_000
    #: Clients remembered in the reply cache (N8).
    client_table_max: int = 100_000
    #: Messages for future views or above the high watermark kept for later.
    stash_max: int = 10_000

    @property
    def n(self) -> int:
        return len(self.replicas)

    @property
    def f(self) -> int:
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """2f + 1: the size of a prepare/commit/checkpoint/view-change quorum."""
        return 2 * self.f + 1

    def primary(self, view: int) -> int:
        return view % self.n

    def public_key(self, replica_id: int) -> bytes:
        return self.replicas[replica_id].public_key
