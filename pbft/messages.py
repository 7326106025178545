"""The PBFT wire vocabulary: one frozen, slotted dataclass per message type.

Field conventions (Castro & Liskov, OSDI 1999 §4; rules in docs/PBFT-RULES.md):

- `view`, `sequence`, `timestamp`, `timestamp_ms` are non-negative integers; the codec
  refuses negative ones.
- `replica` is the sender's replica id (0 .. n-1); `client` is the client's Ed25519 public key
  (32 bytes): a client *is* its key, and the application sees that key as the actor.
- `digest` is a SHA-256 digest (32 bytes), see `pbft.crypto`.
- `signature` is an Ed25519 signature (64 bytes) over `pbft.codec.signing_payload(message)`:
  the message's tag and every field but `signature` itself (and, for a PRE-PREPARE, but its
  `requests`, which the signed `digest` already covers). Signed messages are transferable
  proofs: certificates built from them can be checked offline by anyone holding the
  configuration.
- REPLY and READ-ONLY replies are not signed: they travel on channels authenticated with the
  replica's pinned identity (TLS in the runtime, the link's true source in the simulator), and
  the driver drops a REPLY whose `replica` is not the authenticated peer. Signing every reply
  would cost n signatures per request for no gain in transferable evidence.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import TypeVar

_T = TypeVar("_T")


def slot_init(cls: type[_T]) -> type[_T]:
    """Give a frozen, slotted dataclass an `__init__` that fills its slots through the slot
    descriptors: the same instances and signature, about 1.7x faster than the generated one
    (which pays one `object.__setattr__` per field). Messages and the core's step results are
    built on the path of every delivery. Raises TypeError for a class it would get wrong: not a
    frozen slotted dataclass, or one with a `__post_init__`, an `InitVar`, or a field with a
    default, `init=False` or `kw_only`."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"slot_init: {cls.__name__} is not a frozen, slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"slot_init: {cls.__name__} has a __post_init__")
    declared = cls.__dataclass_fields__  # type: ignore[attr-defined]
    plain = fields(cls)  # type: ignore[arg-type]
    if len(plain) != len(declared):
        raise TypeError(f"slot_init: {cls.__name__} has an InitVar or a ClassVar")
    for f in plain:
        if (f.default is not MISSING or f.default_factory is not MISSING or not f.init
                or f.kw_only):
            raise TypeError(f"slot_init: {cls.__name__}.{f.name} has a default, init=False "
                            "or kw_only")
    names = [f.name for f in plain]
    namespace = {f"_set_{name}": getattr(cls, name).__set__ for name in names}
    source = (f"def __init__(self, {', '.join(names)}):\n"
              + "".join(f"    _set_{name}(self, {name})\n" for name in names))
    exec(source, namespace)  # noqa: S102 - the source is built from the class's field names
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[misc]
    return cls


DIGEST_BYTES = 32
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32


@slot_init
@dataclass(frozen=True, slots=True)
class Request:
    """N1: ⟨REQUEST, operation, timestamp, client⟩ signed by the client.

    `timestamp` increases strictly per client (N8); `read_only` asks for R1's unordered path.
    """

    operation: bytes
    timestamp: int
    client: bytes
    read_only: bool
    signature: bytes


@slot_init
@dataclass(frozen=True, slots=True)
class PrePrepare:
    """N2: ⟨PRE-PREPARE, v, n, d⟩ signed by the primary of view v, carrying its batch.

    `digest` is `pbft.codec.batch_digest(timestamp_ms, requests)`; D1's agreed batch timestamp is
    `timestamp_ms`. Inside a NEW-VIEW (V2) `requests` is empty: the digest names the batch,
    which replicas already hold or fetch. A null request has `digest == NULL_DIGEST`.
    """

    view: int
    sequence: int
    digest: bytes
    timestamp_ms: int
    requests: tuple[Request, ...]
    replica: int
    signature: bytes


@slot_init
@dataclass(frozen=True, slots=True)
class Prepare:
    """N4: ⟨PREPARE, v, n, d, i⟩ signed by backup i."""

    view: int
    sequence: int
    digest: bytes
    replica: int
    signature: bytes


@slot_init
@dataclass(frozen=True, slots=True)
class Commit:
    """N5: ⟨COMMIT, v, n, d, i⟩ signed by replica i."""

    view: int
    sequence: int
    digest: bytes
    replica: int
    signature: bytes


@slot_init
@dataclass(frozen=True, slots=True)
class Reply:
    """N7: ⟨REPLY, v, t, c, i, r⟩ from replica i to client c (channel-authenticated)."""

    view: int
    timestamp: int
    client: bytes
    replica: int
    result: bytes
    read_only: bool


@slot_init
@dataclass(frozen=True, slots=True)
class Checkpoint:
    """C1: ⟨CHECKPOINT, n, d, i⟩, d the application digest after executing n."""

    sequence: int
    digest: bytes
    replica: int
    signature: bytes


@slot_init
@dataclass(frozen=True, slots=True)
class PreparedCertificate:
    """V1's P entry: a PRE-PREPARE (without its batch) and 2f matching PREPAREs."""

    pre_prepare: PrePrepare
    prepares: tuple[Prepare, ...]


@slot_init
@dataclass(frozen=True, slots=True)
class ViewChange:
    """V1: ⟨VIEW-CHANGE, v+1, n, C, P, i⟩ signed by replica i.

    `stable_sequence` and `checkpoint_proof` are its last stable checkpoint and 2f + 1 CHECKPOINTs;
    `prepared` holds a certificate for every sequence above it that prepared at i.
    """

    new_view: int
    stable_sequence: int
    checkpoint_proof: tuple[Checkpoint, ...]
    prepared: tuple[PreparedCertificate, ...]
    replica: int
    signature: bytes


@slot_init
@dataclass(frozen=True, slots=True)
class NewView:
    """V2: ⟨NEW-VIEW, v+1, V, O⟩ signed by the new primary."""

    view: int
    view_changes: tuple[ViewChange, ...]
    pre_prepares: tuple[PrePrepare, ...]
    replica: int
    signature: bytes


@slot_init
@dataclass(frozen=True, slots=True)
class FetchState:
    """S1: ask a replica for chunk `chunk` of its snapshot at stable checkpoint `sequence`."""

    sequence: int
    chunk: int
    replica: int
    signature: bytes


@slot_init
@dataclass(frozen=True, slots=True)
class StateChunk:
    """S1, S1': chunk `chunk` of the snapshot at `sequence`, which is `snapshot_bytes` long, with
    its Merkle `proof` (sibling hashes, lowest first). The checkpoint digest commits to the size
    and every chunk (`pbft.core.state_transfer`), so the fetcher checks each chunk against the
    2f + 1 CHECKPOINT proof as it arrives; the signature names the replica to blame if one
    does not verify."""

    sequence: int
    chunk: int
    snapshot_bytes: int
    data: bytes
    proof: tuple[bytes, ...]
    replica: int
    signature: bytes


@slot_init
@dataclass(frozen=True, slots=True)
class FetchLog:
    """S1, V3: ask for logged batches. With `digest` = NULL_DIGEST: every committed batch from
    `sequence` on (catching up); otherwise the batch with that digest at `sequence` (a NEW-VIEW
    named a batch this replica never received)."""

    sequence: int
    digest: bytes
    replica: int
    signature: bytes


@slot_init
@dataclass(frozen=True, slots=True)
class LoggedBatch:
    """An answer to FETCH-LOG: a PRE-PREPARE with its batch, and the COMMITs the sender holds
    for it. The batch is checked against the digest; 2f + 1 valid matching COMMITs make it a
    commit certificate that lets the receiver execute it without having voted."""

    pre_prepare: PrePrepare
    commits: tuple[Commit, ...]


@slot_init
@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """Not sent on the network: a durable record of the replica's own state snapshot at
    checkpoint `sequence` (C1), written before the CHECKPOINT that vouches for it. Recovery
    restores the latest one and catches up from there (S1)."""

    sequence: int
    snapshot: bytes


@slot_init
@dataclass(frozen=True, slots=True)
class VoteHorizon:
    """Not sent on the network: a durable bound on this replica's votes in `view`.

    The replica may send its PRE-PREPAREs (as primary) and PREPAREs (as backup) of `view` for
    sequence numbers up to `sequence` before they are durable (`Ready.durable_first` is False);
    it persists a new horizon, durably and before the vote, whenever it would vote beyond the
    last one. A replica recovering in `view` therefore knows it may have voted, and forgotten,
    anything up to `sequence`, and sends no PRE-PREPARE or PREPARE of `view` there (it still
    commits on the others' PREPAREs): it cannot vote twice for one (view, sequence) (N10)."""

    view: int
    sequence: int


Message = (
    Request
    | PrePrepare
    | Prepare
    | Commit
    | Reply
    | Checkpoint
    | PreparedCertificate
    | ViewChange
    | NewView
    | FetchState
    | StateChunk
    | FetchLog
    | LoggedBatch
    | SnapshotRecord
    | VoteHorizon
)

#: Messages that carry a replica's signature and may appear in certificates.
SignedByReplica = (
    PrePrepare | Prepare | Commit | Checkpoint | ViewChange | NewView | FetchState | StateChunk
    | FetchLog
)

NULL_DIGEST = bytes(DIGEST_BYTES)
