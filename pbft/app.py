"""The application interface: what a replicated service implements.

The core calls the state machine synchronously, at execution, in sequence order (N6), on every
replica. An implementation must be deterministic: the same operations with the same contexts
give the same results and the same digest on every replica. It never reads a clock (the agreed
batch timestamp arrives in the context, D1) and never draws a random number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from pbft.codec import packb_canonical
from pbft.crypto import sha256
from pbft.messages import slot_init


@slot_init
@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """What consensus agreed about one request, given to `StateMachine.execute`.

    - `sequence`: the consensus sequence number of the batch holding the request.
    - `client`: the Ed25519 public key that signed the request: the actor. The application
      never trusts an actor named inside the operation.
    - `timestamp_ms`: the batch timestamp agreed through consensus (D1); never decreases.
    """

    sequence: int
    client: bytes
    timestamp_ms: int


class StateMachine(Protocol):
    """A deterministic replicated service.

    Operations and results are opaque bytes to the core. Bad operations (malformed, unauthorised)
    should produce an error *result* of the application's own, deterministically. An exception
    raised by `execute` (or `query`) is a bug in the application, but one request must not stop
    the service: the core catches it (any `Exception`) and gives the request the result
    `application_error_result(error)`, which names only the exception's type, so that every
    correct replica gives the same bytes (`decode_application_error` reads it back). The core
    does not undo what `execute` changed before raising: an `execute` that raises must have
    changed the state deterministically, or not at all (check first, then change). A
    `snapshot`, `restore` or `digest` that raises still stops the replica: its state is lost.

    Optional: `admits(client: bytes) -> bool` (see `Admission`), the application's say in who
    is a client (N8'). Without it the application has no opinion: the configuration's
    `clients` list, or open admission, decides alone.
    """

    def execute(self, operation: bytes, context: ExecutionContext) -> bytes:
        """Apply one ordered operation and return its result."""
        ...

    def query(self, operation: bytes, client: bytes) -> bytes:
        """Answer a read-only operation (R1) from the current state without changing it."""
        ...

    def snapshot(self) -> bytes:
        """The whole state as canonical bytes (equal states give equal bytes)."""
        ...

    def restore(self, snapshot: bytes) -> None:
        """Replace the state with one produced by `snapshot()`; raises ValueError on bad bytes."""
        ...

    def digest(self) -> bytes:
        """A 32-byte digest of the current state; equal on replicas in equal states."""
        ...


#: The first element of `application_error_result`'s msgpack array.
APPLICATION_ERROR_TAG = "pbft/application_error"


def application_error_result(error: Exception) -> bytes:
    """The result of a request whose `execute` or `query` raised `error`: a msgpack array
    [APPLICATION_ERROR_TAG, the exception's class name]. The message is left out: it may hold
    what differs between replicas (object addresses, paths)."""
    return packb_canonical([APPLICATION_ERROR_TAG, type(error).__name__])


def decode_application_error(result: bytes) -> str | None:
    """The exception's class name if `result` is an `application_error_result`, else None."""
    if not result.startswith(_APPLICATION_ERROR_PREFIX):
        return None
    try:
        decoded = msgpack.unpackb(result, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    match decoded:
        case [str() as tag, str() as name] if tag == APPLICATION_ERROR_TAG:
            return name
    return None


_APPLICATION_ERROR_PREFIX = packb_canonical([APPLICATION_ERROR_TAG, ""])[:-1]


class Admission(Protocol):
    """The optional admission hook of a `StateMachine` (N8'): whom the service serves, for
    dynamic membership decided through the ordered log (e.g. a ledger's participants, admitted
    by a command).

    The core asks twice for every ordered request (a read-only one is answered by `query`,
    which decides for itself, and leaves no record). When a request arrives, as a cheap pre-check against the replica's
    current state (a lagging replica may refuse a client admitted by a batch it has not
    executed yet; the client's retransmission reaches the others). And at execution, in
    sequence order, decisively: a request of a client not admitted then is not executed, gets
    no reply and leaves no record in the reply cache (a record the client already has is kept,
    so that its old requests stay refused if it is admitted again). So `admits` must be a pure
    function of the replicated state, like `execute`: never a clock, a file or a random number,
    or correct replicas would execute different requests. It must be cheap (it runs for every
    request that arrives, before its signature is checked) and must not raise.
    """

    def admits(self, client: bytes) -> bool:
        """Whether requests signed by `client` (an Ed25519 public key) are served."""
        ...


# --- The reference state machine: a bounded key-value store -------------------------------------
#
# Operations are msgpack arrays, results are msgpack arrays:
#   ["put", key, value]            -> ["ok", None]
#   ["get", key]                   -> ["ok", value or None]
#   ["delete", key]                -> ["ok", removed value or None]
#   ["cas", key, expected, new]    -> ["ok", None], or ["error", "cas_mismatch", ...]
#                                     (expected None means "the key is absent")
#   ["append", key, suffix]        -> ["ok", value after the append] (a missing key counts as b"")
# Keys are str, values bytes. Any other input gives ["error", code, message], never an exception.

#: Error codes of `KeyValueStore` results.
KV_MALFORMED = "malformed"
KV_UNKNOWN_VERB = "unknown_verb"
KV_NOT_READ_ONLY = "not_read_only"
KV_CAS_MISMATCH = "cas_mismatch"
KV_KEYS_MAX = "keys_max"
KV_KEY_TOO_LARGE = "key_too_large"
KV_VALUE_TOO_LARGE = "value_too_large"

#: Verb -> the types of its arguments after the verb (None: the value may also be nil).
_KV_SIGNATURES: dict[str, tuple[tuple[type, ...], ...]] = {
    "put": ((str,), (bytes,)),
    "get": ((str,),),
    "delete": ((str,),),
    "cas": ((str,), (bytes, type(None)), (bytes,)),
    "append": ((str,), (bytes,)),
}
_KV_SNAPSHOT_TAG = "kv/1"

#: A decoded result: ("ok", value or None) or ("error", code, message).
KvResult = tuple[str, bytes | None] | tuple[str, str, str]


#: The codec's reused Packer: `msgpack.packb` builds a new one, with a 256 KiB buffer, at every
#: call, which costs more than packing an operation or a result.
_pack = packb_canonical


def _unpack(data: bytes) -> object:
    """Strictly decode one msgpack value; raises ValueError for anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"expected bytes, got {type(data).__name__}")
    try:
        # raw=False: str stays str, bin stays bytes, invalid UTF-8 is an error. unpackb bounds
        # every container by the input length, so junk cannot make it allocate much.
        return msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise ValueError(f"not a msgpack value: {error}") from None


def _ok(value: bytes | None) -> bytes:
    return _OK_NONE if value is None else _pack(["ok", value])


_OK_NONE = _pack(["ok", None])  # the result of every put: packed once


def _error(code: str, message: str) -> bytes:
    return _pack(["error", code, message])


def _check_arg(name: str, value: object, expected: tuple[type, ...]) -> None:
    if not isinstance(value, expected):
        raise TypeError(f"{name} must be {' or '.join(t.__name__ for t in expected)}")


def kv_put(key: str, value: bytes) -> bytes:
    """The operation that sets `key` to `value`. Raises TypeError on wrong argument types."""
    _check_arg("key", key, (str,))
    _check_arg("value", value, (bytes,))
    return _pack(["put", key, value])


def kv_get(key: str) -> bytes:
    """The (read-only) operation that reads `key`. Raises TypeError if `key` is not a str."""
    _check_arg("key", key, (str,))
    return _pack(["get", key])


def kv_delete(key: str) -> bytes:
    """The operation that removes `key`. Raises TypeError if `key` is not a str."""
    _check_arg("key", key, (str,))
    return _pack(["delete", key])


def kv_cas(key: str, expected: bytes | None, new: bytes) -> bytes:
    """The operation that sets `key` to `new` iff it holds `expected` (None: iff it is absent).

    Raises TypeError on wrong argument types.
    """
    _check_arg("key", key, (str,))
    _check_arg("expected", expected, (bytes, type(None)))
    _check_arg("new", new, (bytes,))
    return _pack(["cas", key, expected, new])


def kv_append(key: str, suffix: bytes) -> bytes:
    """The operation that appends `suffix` to `key`'s value, creating the key if absent.

    Raises TypeError on wrong argument types.
    """
    _check_arg("key", key, (str,))
    _check_arg("suffix", suffix, (bytes,))
    return _pack(["append", key, suffix])


def kv_decode_result(result: bytes) -> KvResult:
    """Decode a `KeyValueStore` result into ("ok", value) or ("error", code, message).

    Raises ValueError if `result` is not a well-formed result (e.g. sent by a faulty replica).
    """
    decoded = _unpack(result)
    match decoded:
        case ["ok", bytes() | None as value]:
            return ("ok", value)
        case ["error", str() as code, str() as message]:
            return ("error", code, message)
    raise ValueError(f"not a key-value store result: {decoded!r:.200}")


class KeyValueStore:
    """The reference `StateMachine`: a deterministic, bounded map from str keys to bytes values.

    Used by tests, simulations and documentation. Every operation, well-formed or not, yields a
    result (see the module's operation table); `execute` never raises. Bounds: at most
    `keys_max` keys, keys of at most `key_bytes_max` UTF-8 bytes, values of at most
    `value_bytes_max` bytes; an operation that would exceed one gets an error result and
    changes nothing. The store ignores the execution context: it records nothing about clients.
    """

    def __init__(
        self,
        *,
        keys_max: int = 100_000,
        value_bytes_max: int = 64 * 1024,
        key_bytes_max: int = 1024,
    ) -> None:
        """An empty store; raises ValueError unless every bound is a positive int."""
        for name, bound in (
            ("keys_max", keys_max),
            ("value_bytes_max", value_bytes_max),
            ("key_bytes_max", key_bytes_max),
        ):
            if not isinstance(bound, int) or isinstance(bound, bool) or bound <= 0:
                raise ValueError(f"{name} must be a positive integer, got {bound!r}")
        self.keys_max = keys_max
        self.value_bytes_max = value_bytes_max
        self.key_bytes_max = key_bytes_max
        self._values: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._values)

    def execute(self, operation: bytes, context: ExecutionContext) -> bytes:
        """Apply one operation; bad operations give an error result and change nothing."""
        parsed = self._parse(operation)
        if isinstance(parsed, bytes):
            return parsed
        verb, args = parsed
        if verb == "get":
            return _ok(self._values.get(args[0]))
        if verb == "put":
            key, value = args
            return self._store(key, value) or _ok(None)
        if verb == "delete":
            return _ok(self._values.pop(args[0], None))
        if verb == "cas":
            key, expected, new = args
            if self._values.get(key) != expected:
                state = "absent" if key not in self._values else "holds a different value"
                return _error(KV_CAS_MISMATCH, f"key {key!r} {state}")
            return self._store(key, new) or _ok(None)
        assert verb == "append", verb
        key, suffix = args
        value = self._values.get(key, b"") + suffix
        return self._store(key, value) or _ok(value)

    def query(self, operation: bytes, client: bytes) -> bytes:
        """Answer a "get" from the current state; any other verb gets "not_read_only"."""
        parsed = self._parse(operation)
        if isinstance(parsed, bytes):
            return parsed
        verb, args = parsed
        if verb != "get":
            return _error(KV_NOT_READ_ONLY, f"{verb!r} changes state; send it for ordering")
        return _ok(self._values.get(args[0]))

    def snapshot(self) -> bytes:
        """Canonical bytes of the whole state: msgpack ["kv/1", [[key, value], ...]] by key."""
        return _pack([_KV_SNAPSHOT_TAG, [[key, self._values[key]] for key in sorted(self._values)]])

    def restore(self, snapshot: bytes) -> None:
        """Replace the state with `snapshot`'s.

        Raises ValueError, leaving the state unchanged, unless `snapshot` is exactly what
        `snapshot()` produces for some state within this store's bounds.
        """
        decoded = _unpack(snapshot)
        match decoded:
            case [str() as tag, list() as entries] if tag == _KV_SNAPSHOT_TAG:
                pass
            case _:
                raise ValueError("not a key-value store snapshot")
        if len(entries) > self.keys_max:
            raise ValueError(f"snapshot holds {len(entries)} keys, more than keys_max")
        values: dict[str, bytes] = {}
        for entry in entries:
            match entry:
                case [str() as key, bytes() as value]:
                    pass
                case _:
                    raise ValueError("snapshot entry is not a [str, bytes] pair")
            if len(key.encode("utf-8")) > self.key_bytes_max:
                raise ValueError(f"snapshot key longer than key_bytes_max = {self.key_bytes_max}")
            if len(value) > self.value_bytes_max:
                raise ValueError(
                    f"snapshot value longer than value_bytes_max = {self.value_bytes_max}"
                )
            values[key] = value
        # Canonical form (sorted, no duplicates, minimal encoding) is what makes equal states
        # have equal digests, so a snapshot must re-encode to itself.
        candidate = _pack([_KV_SNAPSHOT_TAG, [[key, values[key]] for key in sorted(values)]])
        if candidate != bytes(snapshot):
            raise ValueError("snapshot is not in canonical form")
        self._values = values

    def digest(self) -> bytes:
        """SHA-256 of `snapshot()`; computed on demand (the core asks at checkpoints)."""
        return sha256(self.snapshot())

    def _parse(self, operation: bytes) -> tuple[str, list[Any]] | bytes:
        """(verb, args) of a well-formed operation, or the error result for a malformed one."""
        try:
            decoded = _unpack(operation)
        except ValueError:
            return _error(KV_MALFORMED, "operation is not msgpack")
        if not isinstance(decoded, list) or not decoded or not isinstance(decoded[0], str):
            return _error(KV_MALFORMED, "operation must be an array starting with a verb")
        verb, args = decoded[0], decoded[1:]
        signature = _KV_SIGNATURES.get(verb)
        if signature is None:
            return _error(KV_UNKNOWN_VERB, f"unknown verb {verb!r:.40}")
        if len(args) != len(signature):
            return _error(
                KV_MALFORMED, f"{verb} takes {len(signature)} argument(s), got {len(args)}"
            )
        position = 0
        for arg in args:
            if not isinstance(arg, signature[position]):
                return _error(KV_MALFORMED, f"{verb}: argument {position + 1} has the wrong type")
            position += 1
        key = args[0]
        # A str of n characters encodes to at most 4n UTF-8 bytes: encode only long keys.
        if 4 * len(key) > self.key_bytes_max and len(key.encode("utf-8")) > self.key_bytes_max:
            return _error(KV_KEY_TOO_LARGE, f"key longer than {self.key_bytes_max} bytes")
        return verb, args

    def _store(self, key: str, value: bytes) -> bytes | None:
        """Set `key`, or return the error result of a bound it would exceed (changing nothing)."""
        if len(value) > self.value_bytes_max:
            return _error(
                KV_VALUE_TOO_LARGE, f"value of {len(value)} bytes exceeds {self.value_bytes_max}"
            )
        if key not in self._values and len(self._values) >= self.keys_max:
            return _error(KV_KEYS_MAX, f"store already holds keys_max = {self.keys_max} keys")
        self._values[key] = value
        return None
