"""KeyValueStore: each operation's results by example; determinism and totality under hypothesis."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbft.app import (
    ExecutionContext,
    KeyValueStore,
    StateMachine,
    kv_append,
    kv_cas,
    kv_decode_result,
    kv_delete,
    kv_get,
    kv_put,
)
from pbft.crypto import sha256

ALICE = b"\xaa" * 32


def context(sequence: int = 1) -> ExecutionContext:
    return ExecutionContext(sequence=sequence, client=ALICE, timestamp_ms=1_000 * sequence)


def run(store: KeyValueStore, operation: bytes) -> tuple:
    return kv_decode_result(store.execute(operation, context()))


def error_code(result: tuple) -> str:
    assert result[0] == "error", result
    assert isinstance(result[2], str) and result[2]
    return result[1]


def test_it_is_a_state_machine():
    store: StateMachine = KeyValueStore()
    assert len(store.digest()) == 32


# --- Each operation --------------------------------------------------------------------------


def test_put_then_get():
    store = KeyValueStore()
    assert run(store, kv_get("k")) == ("ok", None)
    assert run(store, kv_put("k", b"v1")) == ("ok", None)
    assert run(store, kv_get("k")) == ("ok", b"v1")
    assert run(store, kv_put("k", b"")) == ("ok", None)
    assert run(store, kv_get("k")) == ("ok", b"")


def test_delete_returns_the_removed_value():
    store = KeyValueStore()
    run(store, kv_put("k", b"v"))
    assert run(store, kv_delete("k")) == ("ok", b"v")
    assert run(store, kv_delete("k")) == ("ok", None)
    assert run(store, kv_get("k")) == ("ok", None)


def test_cas():
    store = KeyValueStore()
    assert error_code(run(store, kv_cas("k", b"x", b"y"))) == "cas_mismatch"
    assert run(store, kv_cas("k", None, b"a")) == ("ok", None)
    assert error_code(run(store, kv_cas("k", None, b"b"))) == "cas_mismatch"
    assert error_code(run(store, kv_cas("k", b"z", b"b"))) == "cas_mismatch"
    assert run(store, kv_get("k")) == ("ok", b"a")
    assert run(store, kv_cas("k", b"a", b"b")) == ("ok", None)
    assert run(store, kv_get("k")) == ("ok", b"b")


def test_append_returns_the_whole_value():
    store = KeyValueStore()
    assert run(store, kv_append("log", b"a")) == ("ok", b"a")
    assert run(store, kv_append("log", b"bc")) == ("ok", b"abc")
    assert run(store, kv_get("log")) == ("ok", b"abc")


def test_keys_max():
    store = KeyValueStore(keys_max=2)
    run(store, kv_put("a", b""))
    run(store, kv_put("b", b""))
    before = store.digest()
    for operation in (kv_put("c", b""), kv_cas("c", None, b""), kv_append("c", b"x")):
        assert error_code(run(store, operation)) == "keys_max"
    assert store.digest() == before
    # Overwriting an existing key, or freeing one first, stays within the bound.
    assert run(store, kv_put("a", b"1")) == ("ok", None)
    run(store, kv_delete("a"))
    assert run(store, kv_put("c", b"")) == ("ok", None)


def test_value_bytes_max():
    store = KeyValueStore(value_bytes_max=4)
    assert run(store, kv_put("k", b"1234")) == ("ok", None)
    before = store.digest()
    assert error_code(run(store, kv_put("k", b"12345"))) == "value_too_large"
    assert error_code(run(store, kv_append("k", b"5"))) == "value_too_large"
    assert error_code(run(store, kv_cas("k", b"1234", b"12345"))) == "value_too_large"
    assert store.digest() == before


def test_key_bytes_max():
    store = KeyValueStore(key_bytes_max=3)
    assert run(store, kv_put("abc", b"")) == ("ok", None)
    assert error_code(run(store, kv_put("abcd", b""))) == "key_too_large"
    assert error_code(run(store, kv_get("é" * 2))) == "key_too_large"  # 4 UTF-8 bytes
    # The bound is on UTF-8 bytes, not characters, at both edges.
    assert run(store, kv_put("é", b"")) == ("ok", None)  # 2 bytes
    assert error_code(run(store, kv_put("\U0001F600", b""))) == "key_too_large"  # 4 bytes
    assert run(KeyValueStore(key_bytes_max=4), kv_put("\U0001F600", b"")) == ("ok", None)
    assert run(KeyValueStore(key_bytes_max=1024), kv_put("k" * 1024, b"")) == ("ok", None)
    assert error_code(run(KeyValueStore(key_bytes_max=1024), kv_put("k" * 1025, b""))) == (
        "key_too_large")


@pytest.mark.parametrize("bound", ["keys_max", "value_bytes_max", "key_bytes_max"])
@pytest.mark.parametrize("value", [0, -1, True, 1.0])
def test_bounds_must_be_positive_ints(bound, value):
    with pytest.raises(ValueError, match=bound):
        KeyValueStore(**{bound: value})


# --- Malformed operations are data, not exceptions --------------------------------------------


def pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


@pytest.mark.parametrize(
    ("operation", "code"),
    [
        (b"", "malformed"),
        (b"\xc1", "malformed"),  # never-used msgpack byte
        (pack(["get", "k"]) + b"\x00", "malformed"),  # trailing data
        (pack("get"), "malformed"),
        (pack([]), "malformed"),
        (pack([1, "k"]), "malformed"),
        (pack({"get": "k"}), "malformed"),
        (pack(["get"]), "malformed"),
        (pack(["get", "k", "extra"]), "malformed"),
        (pack(["get", b"k"]), "malformed"),  # key must be str
        (pack(["put", "k", "v"]), "malformed"),  # value must be bytes
        (pack(["put", "k", None]), "malformed"),
        (pack(["cas", "k", 1, b"v"]), "malformed"),
        (pack(["cas", "k", None, None]), "malformed"),
        (pack(["append", "k"]), "malformed"),
        (b"\x92\xa3get\xa2\xff\xfe", "malformed"),  # invalid UTF-8 in the key
        (b"\x92\xa3get\xd4\x01\x00", "malformed"),  # an ext type as the key
        (b"\xd4\xff\x00", "malformed"),  # a timestamp ext of impossible length
        (b"\x81\x01\x02", "malformed"),  # a map with an integer key
        (b"\x91" * 100_000, "malformed"),  # nesting deeper than the decoder's stack
        (b"\xdd\xff\xff\xff\xff", "malformed"),  # claims 4 billion elements, has none
        (pack(["drop_table", "k"]), "unknown_verb"),
        (pack(["GET", "k"]), "unknown_verb"),
    ],
)
def test_malformed_operation_gives_an_error_result(operation, code):
    store = KeyValueStore()
    before = store.snapshot()
    first = store.execute(operation, context())
    assert error_code(kv_decode_result(first)) == code
    assert store.execute(operation, context()) == first  # deterministic
    assert error_code(kv_decode_result(store.query(operation, ALICE))) == code
    assert store.snapshot() == before


def test_helpers_refuse_wrong_types():
    with pytest.raises(TypeError):
        kv_put("k", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        kv_get(b"k")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        kv_cas("k", "x", b"y")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "result",
    [b"", b"\xc1", pack(["ok"]), pack(["ok", "str"]), pack(["error", "c"]), pack(["maybe", None])],
)
def test_decode_result_refuses_junk(result):
    with pytest.raises(ValueError):
        kv_decode_result(result)


# --- Read-only queries (R1) ------------------------------------------------------------------


def test_query_answers_get_and_changes_nothing():
    store = KeyValueStore()
    run(store, kv_put("k", b"v"))
    before = store.snapshot()
    assert kv_decode_result(store.query(kv_get("k"), ALICE)) == ("ok", b"v")
    assert kv_decode_result(store.query(kv_get("missing"), ALICE)) == ("ok", None)
    writes = (kv_put("k", b"w"), kv_delete("k"), kv_cas("k", b"v", b"w"), kv_append("k", b"!"))
    for operation in writes:
        assert error_code(kv_decode_result(store.query(operation, ALICE))) == "not_read_only"
    assert store.snapshot() == before


# --- Snapshots and digests --------------------------------------------------------------------


def test_digest_is_sha256_of_the_canonical_snapshot():
    a, b = KeyValueStore(), KeyValueStore()
    for key in "xyz":
        run(a, kv_put(key, key.encode()))
    for key in reversed("xyz"):
        run(b, kv_put(key, key.encode()))
    assert a.snapshot() == b.snapshot()
    assert a.digest() == b.digest() == sha256(a.snapshot())
    run(b, kv_put("x", b"changed"))
    assert a.digest() != b.digest()


def test_snapshot_restore_round_trip():
    source = KeyValueStore()
    for i in range(50):
        run(source, kv_put(f"key-{i}", bytes([i]) * i))
    run(source, kv_delete("key-7"))
    target = KeyValueStore()
    run(target, kv_put("stale", b"old"))
    target.restore(source.snapshot())
    assert target.digest() == source.digest()
    assert run(target, kv_get("stale")) == ("ok", None)
    assert run(target, kv_get("key-9")) == ("ok", b"\x09" * 9)


@pytest.mark.parametrize(
    "snapshot",
    [
        b"",
        b"garbage",
        pack(["kv/2", []]),
        pack(["kv/1"]),
        pack(["kv/1", [["a", "not bytes"]]]),
        pack(["kv/1", [[b"a", b"v"]]]),
        pack(["kv/1", [["b", b""], ["a", b""]]]),  # not sorted
        pack(["kv/1", [["a", b""], ["a", b""]]]),  # duplicate key
        pack(["kv/1", [["a", b"x" * 10]]]),  # beyond value_bytes_max
        pack(["kv/1", [[str(i), b""] for i in range(4)]]),  # beyond keys_max
        pack(["kv/1", []]) + b"\x00",
    ],
)
def test_restore_refuses_bad_bytes_and_keeps_the_state(snapshot):
    store = KeyValueStore(keys_max=3, value_bytes_max=5)
    run(store, kv_put("kept", b"1"))
    before = store.snapshot()
    with pytest.raises(ValueError):
        store.restore(snapshot)
    assert store.snapshot() == before


# --- Determinism and totality under hypothesis --------------------------------------------------

keys = st.sampled_from(["a", "b", "c", "ü", ""])
values = st.binary(max_size=8)
operations = st.one_of(
    st.builds(kv_put, keys, values),
    st.builds(kv_get, keys),
    st.builds(kv_delete, keys),
    st.builds(kv_cas, keys, st.none() | values, values),
    st.builds(kv_append, keys, values),
    st.binary(max_size=16),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(operations, max_size=40))
def test_two_stores_fed_the_same_operations_agree(ops):
    a = KeyValueStore(keys_max=3, value_bytes_max=12)
    b = KeyValueStore(keys_max=3, value_bytes_max=12)
    for sequence, operation in enumerate(ops, start=1):
        assert a.execute(operation, context(sequence)) == b.execute(operation, context(sequence))
        assert a.digest() == b.digest()
    restored = KeyValueStore(keys_max=3, value_bytes_max=12)
    restored.restore(a.snapshot())
    assert restored.digest() == a.digest()
    assert restored.snapshot() == a.snapshot()


def _nested():
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats()
        | st.text(max_size=5)
        | st.binary(max_size=5)
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=8,
    )


verbs = st.sampled_from(["put", "get", "delete", "cas", "append", "nope"])
random_operations = st.one_of(
    st.binary(max_size=64),
    _nested().map(pack),
    st.tuples(verbs, st.lists(_nested(), max_size=4)).map(lambda t: pack([t[0], *t[1]])),
)


@settings(max_examples=300, deadline=None)
@given(random_operations)
def test_random_operations_never_raise(operation):
    store = KeyValueStore(keys_max=4, value_bytes_max=16)
    result = kv_decode_result(store.execute(operation, context()))
    assert result[0] in ("ok", "error")
    before = store.snapshot()
    kv_decode_result(store.query(operation, ALICE))
    assert store.snapshot() == before
