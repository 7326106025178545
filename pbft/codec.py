"""The wire codec: canonical msgpack for every message in `pbft.messages`, strict decoding.

A message is the msgpack array `[tag, field1, field2, ...]`, fields in dataclass order; a nested
message (the requests of a PRE-PREPARE, the certificates of a VIEW-CHANGE) is such an array too,
with its own tag. Encoding is deterministic: equal messages give equal bytes, so digests and
signatures are computed over `encode` / `signing_payload` output.

Decoding is the gate between the network and the core. `decode` accepts exactly the shapes
`encode` produces and raises a `DecodeError` subclass for anything else, naming the type and
field at fault. Every length is bounded before anything is allocated for it: the frame length
is checked first, msgpack's own `max_*_len` limits bound every array, bin and str header, maps
and ext types are refused by msgpack outright (they never occur in our frames), and per-field
bounds (`operation_bytes_max`, `batch_size_max`, ...) are checked before nested elements are
decoded. The decoder recurses only as deep as the message schema, never as deep as the input.

Both directions are table-driven: `TAGS` gives each type its tag and `_FIELD_RULES` gives
each field name its check. At import these tables are turned into one straight-line encoder
and decoder per type (see "per-type code" below), so that the hot path is one
`msgpack.unpackb`, one inline `type(v) is ...` test per field and one constructor call per
message; error messages are composed only on the error path.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from pbft.messages import (
    DIGEST_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Checkpoint,
    Commit,
    Message,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCertificate,
    Reply,
    Request,
    ViewChange,
    FetchState,
    StateChunk,
    FetchLog,
    LoggedBatch,
    SnapshotRecord,
    VoteHorizon,
)

__all__ = [
    "DEFAULT_LIMITS",
    "TAGS",
    "ContainerTooLarge",
    "DecodeError",
    "FieldCountError",
    "FrameTooLarge",
    "Limits",
    "MalformedFrame",
    "UnknownTag",
    "ValueOutOfRange",
    "WrongType",
    "batch_digest",
    "decode",
    "encode",
    "packb_canonical",
    "request_digest",
    "signing_payload",
    "unpackb_canonical",
]

#: One msgpack tag per message type. Never renumber: tags are part of every signature.
TAGS: dict[type, int] = {
    Request: 1,
    PrePrepare: 2,
    Prepare: 3,
    Commit: 4,
    Reply: 5,
    Checkpoint: 6,
    PreparedCertificate: 7,
    ViewChange: 8,
    NewView: 9,
    FetchState: 10,
    StateChunk: 11,
    FetchLog: 12,
    LoggedBatch: 13,
    SnapshotRecord: 14,
    VoteHorizon: 15,
}

#: Integers are sent as msgpack int64/uint64; we keep them within int64 so that every
#: implementation (and the on-disk log) can hold them in a signed 64-bit field.
INT_MAX = 2**63 - 1

_FIELD_COUNT_MAX = 1 + max(len(dataclasses.fields(cls)) for cls in TAGS)


# --------------------------------------------------------------------------- errors


class DecodeError(ValueError):
    """A frame is not a well-formed message. The message says what was wrong, and where."""


class FrameTooLarge(DecodeError):
    """The frame is longer than `Limits.frame_bytes_max`; nothing of it was read."""


class MalformedFrame(DecodeError):
    """Not one valid msgpack object: bad bytes, truncated, trailing bytes, nested too deep."""


class UnknownTag(DecodeError):
    """The top-level tag names no message type."""


class FieldCountError(DecodeError):
    """A message array has fields missing or extra fields."""


class WrongType(DecodeError):
    """A field holds the wrong msgpack type (bool for int, str for bytes, map for array, a
    message of the wrong type where a specific one is expected)."""


class ValueOutOfRange(DecodeError):
    """A field has the right type but an impossible value: a negative sequence number, an
    integer above int64, a digest, key or signature of the wrong length."""


class ContainerTooLarge(DecodeError):
    """A bytes field or a tuple of messages exceeds its configured bound."""


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True, slots=True)
class Limits:
    """Decoding bounds. Every length read from the network is checked against one of these."""

    frame_bytes_max: int = 4 * 1024 * 1024
    operation_bytes_max: int = 1024 * 1024
    result_bytes_max: int = 1024 * 1024
    #: Requests in one PRE-PREPARE.
    batch_size_max: int = 1000
    #: Entries in each tuple of a VIEW-CHANGE, NEW-VIEW or prepared certificate.
    certificate_entries_max: int = 10_000
    #: Bytes of snapshot in one STATE-CHUNK.
    state_chunk_bytes_max: int = 1024 * 1024
    #: Hashes in a STATE-CHUNK's Merkle proof: ⌈log2 chunks⌉ of the largest snapshot (S1').
    state_proof_entries_max: int = 64
    #: Bytes of a whole snapshot in a durable SnapshotRecord (storage decodes with this).
    snapshot_bytes_max: int = 1024 * 1024 * 1024

    @classmethod
    def from_config(cls, config: Any) -> Limits:
        """The limits a replica of `config` (a `pbft.config.ClusterConfig`) decodes with.

        `certificate_entries_max` is deliberately generous: a correct tuple holds at most
        max(log_window, n) entries (one prepared certificate or pre-prepare per sequence in the
        window; at most n checkpoints, prepares or view changes), but a bound that is too tight
        would make a correct replica's view change undeliverable — a liveness failure — while
        this bound only has to stop a few header bytes from allocating an unbounded list.
        log_window * n + 64 covers every legitimate tuple for any sane cluster, and the frame
        bound still caps the total size.
        """
        return cls(
            frame_bytes_max=config.frame_bytes_max,
            operation_bytes_max=config.operation_bytes_max,
            result_bytes_max=config.result_bytes_max,
            batch_size_max=config.batch_size_max,
            certificate_entries_max=config.log_window * config.n + 64,
            state_chunk_bytes_max=config.state_chunk_bytes,
            state_proof_entries_max=_proof_entries_max(config),
            snapshot_bytes_max=config.snapshot_bytes_max,
        )


def _proof_entries_max(config: Any) -> int:
    """⌈log2 chunks⌉ for a snapshot of `snapshot_bytes_max` in chunks of `state_chunk_bytes`
    (`pbft.core.state_transfer.proof_entries_max`; the codec does not import the core)."""
    chunks = max(1, -(-config.snapshot_bytes_max // config.state_chunk_bytes))
    return (chunks - 1).bit_length()


DEFAULT_LIMITS = Limits()


@functools.lru_cache(maxsize=32)
def _unpack_options(limits: Limits) -> dict[str, Any]:
    """msgpack's own limits for `limits`: no header can make it allocate beyond these."""
    bytes_max = max(
        limits.operation_bytes_max, limits.result_bytes_max, limits.state_chunk_bytes_max,
        limits.snapshot_bytes_max, SIGNATURE_BYTES,
    )
    return {
        "use_list": False,  # arrays as tuples: our tuple fields need no conversion
        "raw": False,  # str stays str, so that it can be refused where bytes are expected
        "strict_map_key": True,
        "max_bin_len": bytes_max,
        # A str is never valid, but one that would fit as bytes is reported as WrongType.
        "max_str_len": bytes_max,
        "max_array_len": max(
            limits.batch_size_max, limits.certificate_entries_max, limits.state_proof_entries_max,
            _FIELD_COUNT_MAX,
        ),
        "max_map_len": 0,
        "max_ext_len": 0,
    }


# --------------------------------------------------------------------------- per-type code
#
# Encoding and decoding are driven by two tables: `TAGS` and `_FIELD_RULES` (one rule per field
# name). From them we generate, once at import, one small straight-line function per message
# type and direction — the technique `dataclasses` and `namedtuple` use for `__init__` — because
# a generic loop over fields costs several times more per message, and a PRE-PREPARE carries a
# whole batch. The generated source is kept on each `_MessageSpec` (`.source`) for reading.

_FIELD_NAMES: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in TAGS
}

_MSGPACK_NAMES = {tuple: "array", dict: "map", type(None): "nil", str: "str", bytes: "bytes"}


def _type_name(value: Any) -> str:
    return _MSGPACK_NAMES.get(type(value), type(value).__name__)


#: A precise field check: returns the field's value or raises a DecodeError whose message
#: starts with "Type.field". Used as is for nested messages, and on the error path for the
#: rest, whose hot path is the rule's inline `fast_test`.
_Check = Callable[[Any, Limits], Any]


def _uint_check(where: str) -> _Check:
    def check(value: Any, limits: Limits) -> int:
        if type(value) is int and 0 <= value <= INT_MAX:
            return value
        if type(value) is not int:  # bool included: type(True) is bool, not int
            raise WrongType(f"{where}: expected int, got {_type_name(value)}")
        raise ValueOutOfRange(f"{where}: {value} is outside 0 .. 2**63-1")

    return check


def _bool_check(where: str) -> _Check:
    def check(value: Any, limits: Limits) -> bool:
        if type(value) is bool:
            return value
        raise WrongType(f"{where}: expected bool, got {_type_name(value)}")

    return check


def _fixed_bytes_check(size: int) -> Callable[[str], _Check]:
    def make(where: str) -> _Check:
        def check(value: Any, limits: Limits) -> bytes:
            if type(value) is bytes and len(value) == size:
                return value
            if type(value) is not bytes:
                raise WrongType(f"{where}: expected bytes, got {_type_name(value)}")
            raise ValueOutOfRange(f"{where}: expected {size} bytes, got {len(value)}")

        return check

    return make


def _bounded_bytes_check(limit_name: str) -> Callable[[str], _Check]:
    def make(where: str) -> _Check:
        def check(value: Any, limits: Limits) -> bytes:
            limit = getattr(limits, limit_name)
            if type(value) is bytes and len(value) <= limit:
                return value
            if type(value) is not bytes:
                raise WrongType(f"{where}: expected bytes, got {_type_name(value)}")
            raise ContainerTooLarge(f"{where}: {len(value)} bytes exceeds {limit_name}={limit}")

        return check

    return make


def _digests_check(limit_name: str) -> Callable[[str], _Check]:
    def make(where: str) -> _Check:
        def check(value: Any, limits: Limits) -> tuple:
            if type(value) is not tuple:
                raise WrongType(f"{where}: expected array of digests, got {_type_name(value)}")
            limit = getattr(limits, limit_name)
            if len(value) > limit:
                raise ContainerTooLarge(
                    f"{where}: {len(value)} entries exceeds {limit_name}={limit}"
                )
            for index, item in enumerate(value):
                if type(item) is not bytes:
                    raise WrongType(f"{where}[{index}]: expected bytes, got {_type_name(item)}")
                if len(item) != DIGEST_BYTES:
                    raise ValueOutOfRange(
                        f"{where}[{index}]: expected {DIGEST_BYTES} bytes, got {len(item)}"
                    )
            return value

        return check

    return make


def _message_check(cls: type) -> Callable[[str], _Check]:
    def make(where: str) -> _Check:
        def check(value: Any, limits: Limits) -> Any:
            try:
                return _SPECS[cls].decode_nested(value, limits)
            except DecodeError as e:
                raise type(e)(f"{where}: {e}") from None

        return check

    return make


def _sequence_check(cls: type, limit_name: str) -> Callable[[str], _Check]:
    def make(where: str) -> _Check:
        def check(value: Any, limits: Limits) -> tuple:
            if type(value) is not tuple:
                raise WrongType(
                    f"{where}: expected array of {cls.__name__}, got {_type_name(value)}"
                )
            limit = getattr(limits, limit_name)
            if len(value) > limit:
                raise ContainerTooLarge(
                    f"{where}: {len(value)} entries exceeds {limit_name}={limit}"
                )
            decode_element = _SPECS[cls].decode_nested
            try:
                return tuple([decode_element(item, limits) for item in value])
            except DecodeError:
                # Error path only: decode again, one by one, to name the failing element.
                for index, item in enumerate(value):
                    try:
                        decode_element(item, limits)
                    except DecodeError as e:
                        raise type(e)(f"{where}[{index}]: {e}") from None
                raise

        return check

    return make


@dataclass(frozen=True, slots=True)
class _Rule:
    """How one field is checked and encoded.

    `make_check(where)` builds the precise check. `fast_test` is an inline Python expression
    over `{v}` that is true iff the precise check would accept the value unchanged; None means
    the field holds messages and is decoded by calling the check. `nested` names the message
    type a field holds (one, or a tuple of them when `many`), for encoding.
    """

    make_check: Callable[[str], _Check]
    fast_test: str | None = None
    nested: type | None = None
    many: bool = False


_UINT = _Rule(_uint_check, "type({v}) is int and 0 <= {v} <= INT_MAX")
_BOOL = _Rule(_bool_check, "type({v}) is bool")


def _fixed_bytes(size: int) -> _Rule:
    return _Rule(_fixed_bytes_check(size), f"type({{v}}) is bytes and len({{v}}) == {size}")


def _bounded_bytes(limit_name: str) -> _Rule:
    return _Rule(
        _bounded_bytes_check(limit_name),
        f"type({{v}}) is bytes and len({{v}}) <= limits.{limit_name}",
    )


def _digests(limit_name: str) -> _Rule:
    return _Rule(
        _digests_check(limit_name),
        f"type({{v}}) is tuple and len({{v}}) <= limits.{limit_name} and all("
        f"type(x) is bytes and len(x) == {DIGEST_BYTES} for x in {{v}})",
    )


def _one(cls: type) -> _Rule:
    return _Rule(_message_check(cls), nested=cls)


def _many(cls: type, limit_name: str) -> _Rule:
    return _Rule(_sequence_check(cls, limit_name), nested=cls, many=True)


#: Every field of every message, by name. A field added to `pbft.messages` without a rule
#: here fails at import.
_FIELD_RULES: dict[str, _Rule] = {
    "view": _UINT,
    "new_view": _UINT,
    "sequence": _UINT,
    "stable_sequence": _UINT,
    "timestamp": _UINT,
    "timestamp_ms": _UINT,
    "replica": _UINT,
    "read_only": _BOOL,
    "digest": _fixed_bytes(DIGEST_BYTES),
    "signature": _fixed_bytes(SIGNATURE_BYTES),
    "client": _fixed_bytes(PUBLIC_KEY_BYTES),
    "operation": _bounded_bytes("operation_bytes_max"),
    "result": _bounded_bytes("result_bytes_max"),
    "pre_prepare": _one(PrePrepare),
    "requests": _many(Request, "batch_size_max"),
    "prepares": _many(Prepare, "certificate_entries_max"),
    "checkpoint_proof": _many(Checkpoint, "certificate_entries_max"),
    "prepared": _many(PreparedCertificate, "certificate_entries_max"),
    "view_changes": _many(ViewChange, "certificate_entries_max"),
    "pre_prepares": _many(PrePrepare, "certificate_entries_max"),
    "chunk": _UINT,
    "snapshot_bytes": _UINT,
    "data": _bounded_bytes("state_chunk_bytes_max"),
    "proof": _digests("state_proof_entries_max"),
    "commits": _many(Commit, "certificate_entries_max"),
    "snapshot": _bounded_bytes("snapshot_bytes_max"),
}

#: Fields a signature does not cover: the signature itself, and a PRE-PREPARE's batch, which
#: its signed digest covers (so that NEW-VIEW can carry PRE-PREPAREs without their batches).
_UNSIGNED_FIELDS: dict[type, frozenset[str]] = {
    cls: frozenset({"signature", "requests"} if cls is PrePrepare else {"signature"})
    for cls, names in _FIELD_NAMES.items()
    if "signature" in names
}


def _encoder_source(cls: type, names: tuple[str, ...], function_name: str) -> str:
    """`def function_name(m): return [tag, m.field, ...]`, nested messages as arrays."""
    items = [str(TAGS[cls])]
    for name in names:
        rule = _FIELD_RULES[name]
        if rule.nested is None:
            items.append(f"m.{name}")
        elif rule.many:
            items.append(f"[to_array_{rule.nested.__name__}(x) for x in m.{name}]")
        else:
            items.append(f"to_array_{rule.nested.__name__}(m.{name})")
    return f"def {function_name}(m):\n    return [{', '.join(items)}]\n"


def _decoder_source(cls: type) -> str:
    """`decode_body(array, limits)` and `decode_nested(value, limits)` for `cls`."""
    names = _FIELD_NAMES[cls]
    variables = [f"f_{name}" for name in names]
    fast_tests = [
        "(" + _FIELD_RULES[name].fast_test.format(v=var) + ")"
        for name, var in zip(names, variables)
        if _FIELD_RULES[name].fast_test is not None
    ]
    nested_calls = [
        f"    {var} = check_{name}({var}, limits)\n"
        for name, var in zip(names, variables)
        if _FIELD_RULES[name].fast_test is None
    ]
    arity = 1 + len(names)
    source = (
        "def decode_body(array, limits):\n"
        f"    if len(array) != {arity}:\n"
        "        raise field_count_error(array)\n"
        f"    _, {', '.join(variables)}, = array\n"
    )
    if fast_tests:
        source += (
            f"    if not ({' and '.join(fast_tests)}):\n"
            "        raise precise_error(array, limits)\n"
        )
    source += "".join(nested_calls)
    source += f"    return cls({', '.join(variables)})\n"
    source += (
        "\n"
        "def decode_nested(value, limits):\n"
        "    if (type(value) is tuple and value and type(value[0]) is int\n"
        f"            and value[0] == {TAGS[cls]}):\n"
        "        return decode_body(value, limits)\n"
        "    raise wrong_message_error(value)\n"
    )
    return source


class _MessageSpec:
    """How one message type is encoded and decoded; functions generated from the tables."""

    __slots__ = (
        "cls",
        "tag",
        "name",
        "field_names",
        "checks",
        "source",
        "decode_body",
        "decode_nested",
        "to_array",
        "to_signed_array",
    )

    def __init__(self, cls: type, namespace: dict[str, Any]) -> None:
        self.cls = cls
        self.tag = TAGS[cls]
        self.name = cls.__name__
        self.field_names = _FIELD_NAMES[cls]
        for field_name in self.field_names:
            assert field_name in _FIELD_RULES, f"no codec rule for {self.name}.{field_name}"
        self.checks = tuple(
            (name, _FIELD_RULES[name].make_check(f"{self.name}.{name}"))
            for name in self.field_names
        )
        self.source = (
            _decoder_source(cls) + "\n" + _encoder_source(cls, self.field_names, "to_array")
        )
        unsigned = _UNSIGNED_FIELDS.get(cls)
        if unsigned is not None:
            signed_names = tuple(name for name in self.field_names if name not in unsigned)
            self.source += "\n" + _encoder_source(cls, signed_names, "to_signed_array")
        local_namespace = dict(
            namespace,
            cls=cls,
            field_count_error=self._field_count_error,
            precise_error=self._precise_error,
            wrong_message_error=self._wrong_message_error,
            **{f"check_{name}": check for name, check in self.checks},
        )
        exec(compile(self.source, f"<pbft.codec {self.name}>", "exec"), local_namespace)
        self.decode_body = local_namespace["decode_body"]
        self.decode_nested = local_namespace["decode_nested"]
        self.to_array = local_namespace["to_array"]
        self.to_signed_array = local_namespace.get("to_signed_array")
        namespace[f"to_array_{self.name}"] = self.to_array

    def _field_count_error(self, array: tuple) -> FieldCountError:
        got = len(array) - 1
        expected = len(self.field_names)
        if got < expected:
            detail = "missing " + ", ".join(self.field_names[got:])
        else:
            detail = f"{got - expected} extra"
        return FieldCountError(f"{self.name}: expected {expected} fields, got {got} ({detail})")

    def _precise_error(self, array: tuple, limits: Limits) -> DecodeError:
        """The error for the first bad field, in field order (the fast test failed)."""
        for (_, check), value in zip(self.checks, array[1:]):
            try:
                check(value, limits)
            except DecodeError as e:
                return e
        raise AssertionError(f"{self.name}: fast test and precise checks disagree")

    def _wrong_message_error(self, value: Any) -> DecodeError:
        if type(value) is not tuple:
            return WrongType(f"expected {self.name} array, got {_type_name(value)}")
        if not value:
            return WrongType(f"expected {self.name} (tag {self.tag}), got an empty array")
        tag = value[0]
        if type(tag) is int and tag in _SPECS_BY_TAG:
            got = f"{_SPECS_BY_TAG[tag].name} (tag {tag})"
        else:
            got = f"tag {tag!r}"
        return WrongType(f"expected {self.name} (tag {self.tag}), got {got}")


def _build_specs() -> dict[type, _MessageSpec]:
    # Nested types first, so that each encoder finds the encoders of what it contains.
    order = (Request, Prepare, Commit, Reply, Checkpoint, PrePrepare, PreparedCertificate,
             ViewChange, NewView, FetchState, StateChunk, FetchLog, LoggedBatch, SnapshotRecord,
             VoteHorizon)
    assert set(order) == set(TAGS)
    namespace: dict[str, Any] = {"INT_MAX": INT_MAX}
    return {cls: _MessageSpec(cls, namespace) for cls in order}


_SPECS: dict[type, _MessageSpec] = _build_specs()
_SPECS_BY_TAG: dict[int, _MessageSpec] = {spec.tag: spec for spec in _SPECS.values()}


# --------------------------------------------------------------------------- encoding


#: One msgpack Packer per thread, reused: `msgpack.packb` builds a Packer, and with it a
#: 256 KiB buffer, at every call, which costs more than packing a vote. (A Packer resets itself
#: after each `pack`, also when packing fails; it is not thread-safe, hence one per thread.)
_packers = threading.local()
#: A Packer keeps the largest buffer it ever grew to: after packing more than this (a state
#: snapshot), it is let go, and with it the buffer.
_PACKER_KEPT_BYTES_MAX = 1 << 20


def _pack(array: Any) -> bytes:
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    data = packer.pack(array)
    if len(data) > _PACKER_KEPT_BYTES_MAX:
        _packers.packer = None
    return data


def encode(message: Message) -> bytes:
    """The canonical bytes of `message`. Raises TypeError if it is not a pbft message.

    Encoding trusts its input's field types (messages we build are well-typed); `decode` is
    the gate that checks them.
    """
    spec = _SPECS.get(type(message))
    if spec is None:
        raise TypeError(f"cannot encode {type(message).__name__}: not a pbft message")
    return _pack(spec.to_array(message))


#: Recently computed signing payloads and request digests, by the identity of the message
#: object. A message is signed once and verified by every receiver; a driver that hands the same
#: (immutable) object to several replicas, as the simulator does, pays for the encoding once.
#: Each entry holds its message, so the id cannot be reused while the entry lives; the caches
#: are cleared when full, so they hold at most `_MEMO_ENTRIES_MAX` messages each. This relies on
#: messages being immutable: the only in-place write anywhere is the core filling in the
#: `signature` of a message it has just built (`Replica._sign`, `ClientSession`), which no
#: signing payload covers and which happens before anything takes a request digest of it.
_MEMO_ENTRIES_MAX = 256


class _IdentityMemo:
    """Bytes computed from an immutable object (and an int `key`), by the object's identity."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Any, int, bytes]] = {}

    def get(self, obj: Any, key: int = 0) -> bytes | None:
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0] is obj and entry[1] == key:
            return entry[2]
        return None

    def put(self, obj: Any, value: bytes, key: int = 0) -> None:
        if len(self._entries) >= _MEMO_ENTRIES_MAX:
            self._entries.clear()
        self._entries[id(obj)] = (obj, key, value)


_signing_payloads = _IdentityMemo()
_request_digests = _IdentityMemo()
_batch_digests = _IdentityMemo()


def signing_payload(message: Message) -> bytes:
    """The bytes signed for `message`: `[tag, fields...]` without `signature` and, for a
    PRE-PREPARE, without `requests` (its signed `digest` covers them).

    Nested messages (the checkpoints and certificates of a VIEW-CHANGE, ...) are included in
    full, signatures and all: they are the evidence being vouched for. Raises TypeError for
    messages that are never signed (Reply, PreparedCertificate) and for non-messages.
    """
    payload = _signing_payloads.get(message)
    if payload is not None:
        return payload
    spec = _SPECS.get(type(message))
    if spec is None or spec.to_signed_array is None:
        raise TypeError(f"{type(message).__name__} is not a signed message")
    payload = _pack(spec.to_signed_array(message))
    _signing_payloads.put(message, payload)
    return payload


def request_digest(request: Request) -> bytes:
    """SHA-256 of the request's canonical encoding (signature included)."""
    digest = _request_digests.get(request)
    if digest is None:
        digest = hashlib.sha256(_pack(_SPECS[Request].to_array(request))).digest()
        _request_digests.put(request, digest)
    return digest


def batch_digest(timestamp_ms: int, requests: tuple[Request, ...]) -> bytes:
    """The digest a PRE-PREPARE signs for its batch: SHA-256 over
    msgpack `[timestamp_ms, [request_digest(r) for r in requests]]` (D1: the agreed timestamp
    is part of what is agreed)."""
    digest = _batch_digests.get(requests, timestamp_ms)
    if digest is None:
        digest = hashlib.sha256(
            _pack([timestamp_ms, [request_digest(r) for r in requests]])
        ).digest()
        if type(requests) is tuple:  # immutable, so the memo stays true
            _batch_digests.put(requests, digest, timestamp_ms)
    return digest


def packb_canonical(value: Any) -> bytes:
    """Deterministic msgpack of plain data (lists, tuples, ints, bytes, str, bools, None), for
    replicated state that is digested, such as the core's client table snapshot — the core
    itself never imports msgpack.

    Maps are packed in insertion order, which is not canonical: callers pass lists. Raises
    TypeError for values msgpack cannot pack.
    """
    return _pack(value)


def unpackb_canonical(data: bytes) -> Any:
    """The value `packb_canonical` packed (arrays come back as lists).

    Raises `MalformedFrame` (a `DecodeError`) if `data` is not exactly one msgpack value.
    Allocation is bounded by `len(data)` (msgpack's defaults); the caller bounds `data`.
    """
    try:
        return msgpack.unpackb(data, raw=False, use_list=True)
    except Exception as e:  # noqa: BLE001 - as in decode: any refusal is the data's fault
        raise _unpack_error(e) from None


# --------------------------------------------------------------------------- decoding


def _unpack_error(error: Exception) -> DecodeError:
    """Classify what msgpack refused. Its limit errors read "N exceeds max_X_len(M)"."""
    text = str(error)
    if "exceeds max_map_len" in text:
        return WrongType(
            f"frame: a map where an array was expected; maps never occur in frames ({text})"
        )
    if "exceeds max_ext_len" in text:
        return WrongType(f"frame: an ext type; ext types never occur in frames ({text})")
    if "exceeds max_" in text:
        return ContainerTooLarge(f"frame: container too large: {text}")
    if isinstance(error, msgpack.ExtraData):
        return MalformedFrame("frame: trailing bytes after the message")
    if isinstance(error, msgpack.StackError):
        return MalformedFrame("frame: nested too deep")
    return MalformedFrame(f"frame: not valid msgpack: {text or type(error).__name__}")


def decode(frame: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode one message of any type from `frame` (bytes, bytearray or memoryview).

    Raises a `DecodeError` subclass for any bad frame, never anything else; the message names
    the type and field at fault. A frame longer than `limits.frame_bytes_max` is refused before
    it is parsed. Raises TypeError only if `frame` is not a bytes-like object (a caller bug).
    """
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode expects bytes, got {type(frame).__name__}")
    if len(frame) > limits.frame_bytes_max:
        raise FrameTooLarge(
            f"frame: {len(frame)} bytes exceeds frame_bytes_max={limits.frame_bytes_max}"
        )
    try:
        array = msgpack.unpackb(frame, **_unpack_options(limits))
    # msgpack parses only the frame's bytes, so anything it raises is the frame's fault.
    except Exception as e:  # noqa: BLE001
        raise _unpack_error(e) from None
    if type(array) is not tuple:
        raise WrongType(f"frame: expected an array [tag, fields...], got {_type_name(array)}")
    if not array:
        raise FieldCountError("frame: expected an array [tag, fields...], got an empty array")
    tag = array[0]
    if type(tag) is not int:
        raise WrongType(f"frame: tag: expected int, got {_type_name(tag)}")
    spec = _SPECS_BY_TAG.get(tag)
    if spec is None:
        raise UnknownTag(f"frame: unknown message tag {tag} (known: {sorted(_SPECS_BY_TAG)})")
    return spec.decode_body(array, limits)
