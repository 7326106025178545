"""Builders for core unit tests: a 4-replica configuration with known keys, and correctly (or
deliberately wrongly) signed protocol messages, so a test can play the other replicas by hand."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from pbft.app import KeyValueStore, kv_put
from pbft.codec import batch_digest, signing_payload
from pbft.config import ClusterConfig, ReplicaInfo
from pbft.core import Replica
from pbft.ed25519 import Ed25519Verifier
from pbft.messages import Commit, Prepare, PrePrepare, Request
from simulations.engine import random_order_cluster  # noqa: F401 - the tests import it from here
from simulations.keys import ed25519_signer
from simulations.network import NetworkProfile

SIGNERS = [ed25519_signer(f"replica-{i}") for i in range(4)]
CLIENT = ed25519_signer("client-a")
OTHER_CLIENT = ed25519_signer("client-b")

#: Any message in flight may be delivered next, drawn by the seed: orders a latency model
#: rarely produces.
RANDOM_ORDER = NetworkProfile(random_order=True)


def make_config(**overrides) -> ClusterConfig:
    replicas = tuple(ReplicaInfo(i, s.public_key) for i, s in enumerate(SIGNERS))
    return ClusterConfig(replicas=replicas, **overrides)


class CountingVerifier(Ed25519Verifier):
    """A real verifier that also counts calls, to show cheap checks run before signatures."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def verify(self, public_key: bytes, payload: bytes, signature: bytes) -> bool:
        self.calls += 1
        return super().verify(public_key, payload, signature)


def make_replica(replica_id: int = 1, **overrides) -> Replica:
    config = make_config(**overrides)
    return Replica(config, replica_id, SIGNERS[replica_id], Ed25519Verifier(), KeyValueStore())


def sign(message, signer=None):
    """`message` signed by `signer` (by default the key of the replica it names)."""
    if signer is None:
        signer = SIGNERS[message.replica]
    return replace(message, signature=signer.sign(signing_payload(message)))


def request(timestamp: int = 1, key: str = "k", value: bytes = b"v", client=CLIENT) -> Request:
    unsigned = Request(kv_put(key, value), timestamp, client.public_key, False, b"")
    return replace(unsigned, signature=client.sign(signing_payload(unsigned)))


def pre_prepare(
    sequence: int = 1,
    requests: tuple[Request, ...] | None = None,
    view: int = 0,
    timestamp_ms: int = 0,
    replica: int = 0,
    signer=None,
) -> PrePrepare:
    if requests is None:
        requests = (request(sequence),)
    digest = batch_digest(timestamp_ms, requests)
    return sign(PrePrepare(view, sequence, digest, timestamp_ms, requests, replica, b""), signer)


def prepare(pp: PrePrepare, replica: int, digest: bytes | None = None, signer=None) -> Prepare:
    return sign(Prepare(pp.view, pp.sequence, digest or pp.digest, replica, b""), signer)


def commit(pp: PrePrepare, replica: int, digest: bytes | None = None, signer=None) -> Commit:
    return sign(Commit(pp.view, pp.sequence, digest or pp.digest, replica, b""), signer)


def drain(replica: Replica):
    """Collect all the replica's outputs so far (and advance it)."""
    ready = replica.ready()
    replica.advance()
    return ready


def sent(ready, kind) -> list:
    """The messages of type `kind` in a Ready, with their destinations."""
    return [(o.to, o.message) for o in ready.messages if isinstance(o.message, kind)]


def drops(replica: Replica) -> Counter:
    return Counter(replica.dropped)


def commit_batch(replica: Replica, pp: PrePrepare) -> None:
    """Feed a backup everything it needs to execute `pp`: the PRE-PREPARE, PREPAREs and COMMITs
    from the other replicas (as if they were all correct)."""
    replica.receive(pp)
    backups = [r for r in range(4) if r != pp.replica]
    for r in backups:
        if r != replica.id:
            replica.receive(prepare(pp, r))
    for r in range(4):
        if r != replica.id:
            replica.receive(commit(pp, r))
