"""Wire codec: every message type round-trips under hypothesis, every rejection has a named error, and no input — random or mutated — escapes as anything but DecodeError."""

from __future__ import annotations

import dataclasses
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbft.codec import (
    DEFAULT_LIMITS,
    INT_MAX,
    TAGS,
    ContainerTooLarge,
    DecodeError,
    FieldCountError,
    FrameTooLarge,
    Limits,
    MalformedFrame,
    UnknownTag,
    ValueOutOfRange,
    WrongType,
    batch_digest,
    decode,
    encode,
    packb_canonical,
    request_digest,
    signing_payload,
    unpackb_canonical,
)
from pbft.config import ClusterConfig, ReplicaInfo
from pbft.messages import (
    FetchLog,
    FetchState,
    LoggedBatch,
    SnapshotRecord,
    VoteHorizon,
    StateChunk,
    Checkpoint,
    Commit,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCertificate,
    Reply,
    Request,
    ViewChange,
    slot_init,
)

# --- strategies: valid instances of every message type -----------------------------------------

uints = st.integers(min_value=0, max_value=INT_MAX)
small_uints = st.integers(min_value=0, max_value=1000)
digests = st.binary(min_size=32, max_size=32)
signatures = st.binary(min_size=64, max_size=64)
client_keys = st.binary(min_size=32, max_size=32)


def tuples_of(strategy, max_size: int = 3):
    return st.lists(strategy, max_size=max_size).map(tuple)


requests = st.builds(
    Request,
    operation=st.binary(max_size=64),
    timestamp=uints,
    client=client_keys,
    read_only=st.booleans(),
    signature=signatures,
)
pre_prepares = st.builds(
    PrePrepare,
    view=uints,
    sequence=uints,
    digest=digests,
    timestamp_ms=uints,
    requests=tuples_of(requests),
    replica=small_uints,
    signature=signatures,
)
prepares = st.builds(
    Prepare, view=uints, sequence=uints, digest=digests, replica=small_uints, signature=signatures
)
commits = st.builds(
    Commit, view=uints, sequence=uints, digest=digests, replica=small_uints, signature=signatures
)
replies = st.builds(
    Reply,
    view=uints,
    timestamp=uints,
    client=client_keys,
    replica=small_uints,
    result=st.binary(max_size=64),
    read_only=st.booleans(),
)
checkpoints = st.builds(
    Checkpoint, sequence=uints, digest=digests, replica=small_uints, signature=signatures
)
prepared_certificates = st.builds(
    PreparedCertificate,
    # V1: a certificate's PRE-PREPARE travels without its batch, but the codec allows either.
    pre_prepare=pre_prepares,
    prepares=tuples_of(prepares),
)
view_changes = st.builds(
    ViewChange,
    new_view=uints,
    stable_sequence=uints,
    checkpoint_proof=tuples_of(checkpoints),
    prepared=tuples_of(prepared_certificates, max_size=2),
    replica=small_uints,
    signature=signatures,
)
new_views = st.builds(
    NewView,
    view=uints,
    view_changes=tuples_of(view_changes, max_size=2),
    pre_prepares=tuples_of(pre_prepares, max_size=2),
    replica=small_uints,
    signature=signatures,
)
fetch_states = st.builds(
    FetchState, sequence=uints, chunk=uints, replica=small_uints, signature=signatures
)
state_chunks = st.builds(
    StateChunk,
    sequence=uints,
    chunk=uints,
    chunks_total=uints,
    data=st.binary(max_size=64),
    replica=small_uints,
    signature=signatures,
)
fetch_logs = st.builds(
    FetchLog, sequence=uints, digest=digests, replica=small_uints, signature=signatures
)
logged_batches = st.builds(LoggedBatch, pre_prepare=pre_prepares, commits=tuples_of(commits))
snapshot_records = st.builds(SnapshotRecord, sequence=uints, snapshot=st.binary(max_size=64))
vote_horizons = st.builds(VoteHorizon, view=uints, sequence=uints)
STRATEGIES = {
    Request: requests,
    PrePrepare: pre_prepares,
    Prepare: prepares,
    Commit: commits,
    Reply: replies,
    Checkpoint: checkpoints,
    PreparedCertificate: prepared_certificates,
    ViewChange: view_changes,
    NewView: new_views,
    FetchState: fetch_states,
    StateChunk: state_chunks,
    FetchLog: fetch_logs,
    LoggedBatch: logged_batches,
    SnapshotRecord: snapshot_records,
    VoteHorizon: vote_horizons,
}
messages = st.one_of(*STRATEGIES.values())
signed_messages = st.one_of(
    requests, pre_prepares, prepares, commits, checkpoints, view_changes, new_views,
    fetch_states, state_chunks, fetch_logs,
)

# --- fixed examples ----------------------------------------------------------------------------

CLIENT = bytes(range(32))
SIG = b"s" * 64
DIGEST = b"d" * 32


def make_request(operation: bytes = b"put k v", timestamp: int = 1) -> Request:
    return Request(operation, timestamp, CLIENT, False, SIG)


def make_pre_prepare(requests: tuple[Request, ...] = (), **changes) -> PrePrepare:
    message = PrePrepare(
        view=0,
        sequence=1,
        digest=batch_digest(5, requests),
        timestamp_ms=5,
        requests=requests,
        replica=0,
        signature=SIG,
    )
    return dataclasses.replace(message, **changes)


def frame(*items) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


def prepare_frame(view=1, sequence=2, digest=DIGEST, replica=3, signature=SIG) -> bytes:
    return frame(TAGS[Prepare], view, sequence, digest, replica, signature)


def request_array(operation=b"op", timestamp=1, client=CLIENT, read_only=False, signature=SIG):
    return [TAGS[Request], operation, timestamp, client, read_only, signature]


# --- round trips -------------------------------------------------------------------------------


def test_every_message_type_has_a_distinct_tag_and_a_strategy():
    assert sorted(TAGS.values()) == list(range(1, 16))
    assert set(STRATEGIES) == set(TAGS)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_every_message_round_trips(message):
    """STYLE 8: every type round-trips; re-encoding the decoded message gives the same bytes."""
    encoded = encode(message)
    decoded = decode(encoded)
    assert decoded == message
    assert type(decoded) is type(message)
    assert encode(decoded) == encoded


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_encoding_is_deterministic(message):
    copy = decode(encode(message))  # an equal message built from fresh objects
    assert encode(copy) == encode(message)
    assert encode(message) == encode(message)


@given(st.sampled_from(sorted(TAGS, key=TAGS.get)).flatmap(lambda cls: STRATEGIES[cls]))
@settings(max_examples=100)
def test_a_message_is_an_array_of_its_tag_and_fields_in_order(message):
    array = msgpack.unpackb(encode(message), raw=False)
    assert array[0] == TAGS[type(message)]
    assert len(array) == 1 + len(dataclasses.fields(message))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_messages_built_through_their_slots_behave_as_dataclasses(message):
    """`slot_init`: the __init__ of every message fills its slots directly, and the instances
    are the dataclass's own: positional and keyword construction, equality, hashing,
    `dataclasses.replace`, frozen fields, a missing field refused."""
    cls = type(message)
    assert cls.__init__.__qualname__ == f"{cls.__name__}.__init__"
    values = [getattr(message, f.name) for f in dataclasses.fields(cls)]
    names = [f.name for f in dataclasses.fields(cls)]
    assert cls(*values) == message == cls(**dict(zip(names, values)))
    assert hash(cls(*values)) == hash(message)
    assert dataclasses.replace(message) == message
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(message, names[0], values[0])
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        cls(*values[:-1])


def _with_default():
    @dataclasses.dataclass(frozen=True, slots=True)
    class C:
        a: int
        b: int = 0
    return C


def _with_factory():
    @dataclasses.dataclass(frozen=True, slots=True)
    class C:
        a: tuple = dataclasses.field(default_factory=tuple)
    return C


def _not_in_init():
    @dataclasses.dataclass(frozen=True, slots=True)
    class C:
        a: int
        b: int = dataclasses.field(init=False, default=0)
    return C


def _kw_only():
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class C:
        a: int
    return C


def _init_var():
    @dataclasses.dataclass(frozen=True, slots=True)
    class C:
        a: int
        b: dataclasses.InitVar[int]
    return C


def _post_init():
    @dataclasses.dataclass(frozen=True, slots=True)
    class C:
        a: int

        def __post_init__(self):
            pass
    return C


def _not_frozen():
    @dataclasses.dataclass(slots=True)
    class C:
        a: int
    return C


def _no_slots():
    @dataclasses.dataclass(frozen=True)
    class C:
        a: int
    return C


@pytest.mark.parametrize(("make", "reason"), [
    (_with_default, "has a default"), (_with_factory, "has a default"),
    (_not_in_init, "init=False"), (_kw_only, "kw_only"), (_init_var, "InitVar"),
    (_post_init, "__post_init__"), (_not_frozen, "not a frozen, slotted dataclass"),
    (_no_slots, "not a frozen, slotted dataclass"), (lambda: tuple, "not a frozen"),
])
def test_slot_init_refuses_a_class_it_would_build_wrongly(make, reason):
    with pytest.raises(TypeError, match=reason):
        slot_init(make())


def test_nested_messages_carry_their_own_tags():
    request = make_request()
    pre_prepare = make_pre_prepare((request,))
    array = msgpack.unpackb(encode(pre_prepare), raw=False)
    assert array[5] == [request_array(b"put k v")]


def test_encode_refuses_non_messages():
    with pytest.raises(TypeError, match="not a pbft message"):
        encode([1, 2, 3])


def test_decode_accepts_bytearray_and_memoryview():
    encoded = encode(make_request())
    assert decode(bytearray(encoded)) == make_request()
    assert decode(memoryview(encoded)) == make_request()


def test_decode_refuses_a_non_bytes_argument_as_a_caller_bug():
    with pytest.raises(TypeError):
        decode("not bytes")  # type: ignore[arg-type]


# --- each rejection, with its error class and message --------------------------------------------


def test_unknown_tag():
    with pytest.raises(UnknownTag, match="unknown message tag 42"):
        decode(frame(42, 1, 2))


def test_tag_that_is_not_an_int():
    with pytest.raises(WrongType, match="tag: expected int, got str"):
        decode(frame("prepare", 1, 2, DIGEST, 3, SIG))
    with pytest.raises(WrongType, match="tag: expected int, got bool"):
        decode(frame(True, b"op", 1, CLIENT, False, SIG))  # True == 1 == Request's tag


def test_empty_array():
    with pytest.raises(FieldCountError, match="empty array"):
        decode(frame())


@pytest.mark.parametrize(
    ("bad_frame", "fragment"),
    [
        (prepare_frame(view="1"), "Prepare.view: expected int, got str"),
        (prepare_frame(view=True), "Prepare.view: expected int, got bool"),
        (prepare_frame(sequence=1.5), "Prepare.sequence: expected int, got float"),
        (prepare_frame(replica=None), "Prepare.replica: expected int, got nil"),
        (prepare_frame(digest="d" * 32), "Prepare.digest: expected bytes, got str"),
        (prepare_frame(signature=[1, 2]), "Prepare.signature: expected bytes, got array"),
        (frame(*request_array(read_only=1)), "Request.read_only: expected bool, got int"),
        (frame(*request_array(operation="op")), "Request.operation: expected bytes, got str"),
    ],
)
def test_wrong_type(bad_frame, fragment):
    with pytest.raises(WrongType) as caught:
        decode(bad_frame)
    assert fragment in str(caught.value)


def test_missing_field():
    expected = r"Prepare: expected 5 fields, got 4 \(missing signature\)"
    with pytest.raises(FieldCountError, match=expected):
        decode(frame(TAGS[Prepare], 1, 2, DIGEST, 3))


def test_extra_field():
    with pytest.raises(FieldCountError, match=r"Prepare: expected 5 fields, got 6 \(1 extra\)"):
        decode(frame(TAGS[Prepare], 1, 2, DIGEST, 3, SIG, b"more"))


@pytest.mark.parametrize(
    ("bad_frame", "fragment"),
    [
        (prepare_frame(sequence=-1), "Prepare.sequence: -1 is outside 0 .. 2**63-1"),
        (prepare_frame(view=-5), "Prepare.view: -5 is outside"),
        (prepare_frame(replica=2**63), "Prepare.replica: 9223372036854775808 is outside"),
        (prepare_frame(digest=b"d" * 31), "Prepare.digest: expected 32 bytes, got 31"),
        (prepare_frame(signature=b"s" * 65), "Prepare.signature: expected 64 bytes, got 65"),
        (frame(*request_array(client=b"c" * 33)), "Request.client: expected 32 bytes, got 33"),
    ],
)
def test_value_out_of_range(bad_frame, fragment):
    with pytest.raises(ValueOutOfRange) as caught:
        decode(bad_frame)
    assert fragment in str(caught.value)


def test_largest_int64_is_accepted():
    assert decode(prepare_frame(sequence=INT_MAX)).sequence == INT_MAX


def test_operation_over_its_limit():
    limits = Limits(operation_bytes_max=10)
    assert decode(encode(make_request(b"x" * 10)), limits).operation == b"x" * 10
    expected = "Request.operation: 11 bytes exceeds operation_bytes_max=10"
    with pytest.raises(ContainerTooLarge, match=expected):
        decode(encode(make_request(b"x" * 11)), limits)


def test_result_over_its_limit():
    reply = Reply(0, 1, CLIENT, 2, b"r" * 11, False)
    expected = "Reply.result: 11 bytes exceeds result_bytes_max=10"
    with pytest.raises(ContainerTooLarge, match=expected):
        decode(encode(reply), Limits(result_bytes_max=10))


def test_batch_over_batch_size_max():
    limits = Limits(batch_size_max=3)
    batch = tuple(make_request(timestamp=t) for t in range(4))
    assert decode(encode(make_pre_prepare(batch[:3])), limits).requests == batch[:3]
    expected = "PrePrepare.requests: 4 entries exceeds batch_size_max=3"
    with pytest.raises(ContainerTooLarge, match=expected):
        decode(encode(make_pre_prepare(batch)), limits)


def test_certificate_tuple_over_certificate_entries_max():
    checkpoint = Checkpoint(64, DIGEST, 1, SIG)
    view_change = ViewChange(1, 64, (checkpoint,) * 4, (), 1, SIG)
    expected = "ViewChange.checkpoint_proof: 4 entries exceeds certificate_entries_max=3"
    with pytest.raises(ContainerTooLarge, match=expected):
        decode(encode(view_change), Limits(certificate_entries_max=3))


def test_array_beyond_every_limit_is_refused_by_msgpack_itself():
    # A header claiming more entries than any field may hold never reaches our checks.
    limits = Limits(batch_size_max=3, certificate_entries_max=3)
    with pytest.raises(ContainerTooLarge, match="max_array_len"):
        decode(frame(TAGS[PrePrepare], 0, 1, DIGEST, 5, [0] * 20, 0, SIG), limits)
    # A bare array32 header announcing 2**32-1 entries, with nothing behind it.
    with pytest.raises(ContainerTooLarge):
        decode(b"\xdd\xff\xff\xff\xff")


def test_bin_beyond_every_limit_is_refused_by_msgpack_itself():
    limits = Limits(operation_bytes_max=100, result_bytes_max=100, state_chunk_bytes_max=100,
                    snapshot_bytes_max=100)
    with pytest.raises(ContainerTooLarge, match="max_bin_len"):
        decode(encode(make_request(b"x" * 101)), limits)
    # A bin32 header announcing 4 GiB, with nothing behind it: refused, nothing allocated.
    with pytest.raises(DecodeError):
        decode(b"\x96\x01\xc6\xff\xff\xff\xff")


def test_frame_over_frame_bytes_max():
    encoded = encode(make_request(b"x" * 100))
    limits = Limits(frame_bytes_max=len(encoded) - 1)
    with pytest.raises(FrameTooLarge, match=f"{len(encoded)} bytes exceeds frame_bytes_max"):
        decode(encoded, limits)
    # Checked before parsing: even garbage of that size gets FrameTooLarge, not MalformedFrame.
    with pytest.raises(FrameTooLarge):
        decode(b"\xc1" * 200, Limits(frame_bytes_max=100))


def test_trailing_bytes():
    with pytest.raises(MalformedFrame, match="trailing bytes"):
        decode(prepare_frame() + b"\x00")


def test_truncated_frame():
    with pytest.raises(MalformedFrame, match="not valid msgpack"):
        decode(prepare_frame()[:-1])


def test_empty_frame():
    with pytest.raises(MalformedFrame):
        decode(b"")


def test_nesting_too_deep():
    with pytest.raises(MalformedFrame):
        decode(b"\x91" * 5000 + b"\x01")


@pytest.mark.parametrize("bad_frame", [msgpack.packb({1: 2}), msgpack.packb({"view": 1})])
def test_a_map_instead_of_an_array(bad_frame):
    with pytest.raises(WrongType, match="map"):
        decode(bad_frame)


def test_an_empty_map_instead_of_an_array():
    with pytest.raises(WrongType, match="expected an array .*, got map"):
        decode(msgpack.packb({}))


def test_a_map_inside_a_message():
    with pytest.raises(WrongType, match="map"):
        decode(frame(TAGS[Prepare], 1, 2, {b"d": 1}, 3, SIG))


def test_ext_types_are_refused():
    with pytest.raises(WrongType, match="ext"):
        decode(frame(TAGS[Prepare], 1, 2, msgpack.ExtType(1, DIGEST), 3, SIG))
    with pytest.raises(WrongType, match="ext"):
        decode(msgpack.packb(msgpack.Timestamp(1, 0)))


def test_a_message_that_is_not_an_array_at_top_level():
    with pytest.raises(WrongType, match="expected an array"):
        decode(msgpack.packb(7))


def test_nested_message_of_the_wrong_type():
    prepare = [TAGS[Prepare], 1, 2, DIGEST, 3, SIG]
    bad = frame(TAGS[PrePrepare], 0, 1, DIGEST, 5, [prepare], 0, SIG)
    expected = r"PrePrepare.requests\[0\]: expected Request \(tag 1\), got Prepare \(tag 3\)"
    with pytest.raises(WrongType, match=expected):
        decode(bad)


def test_nested_message_with_an_unknown_tag_is_the_wrong_type():
    bad = frame(TAGS[PreparedCertificate], [77, 1], [])
    expected = "PreparedCertificate.pre_prepare: expected PrePrepare .*tag 77"
    with pytest.raises(WrongType, match=expected):
        decode(bad)


def test_nested_error_names_the_path():
    good = [TAGS[Prepare], 1, 2, DIGEST, 3, SIG]
    bad = [TAGS[Prepare], 1, 2, DIGEST, True, SIG]
    pre_prepare = [TAGS[PrePrepare], 0, 1, DIGEST, 5, [], 0, SIG]
    certificate = [TAGS[PreparedCertificate], pre_prepare, [good, bad]]
    view_change = [TAGS[ViewChange], 1, 0, [], [certificate], 2, SIG]
    with pytest.raises(WrongType) as caught:
        decode(frame(TAGS[NewView], 1, [view_change], [], 1, SIG))
    assert str(caught.value) == (
        "NewView.view_changes[0]: ViewChange.prepared[0]: PreparedCertificate.prepares[1]: "
        "Prepare.replica: expected int, got bool"
    )


def test_nested_field_count_error():
    short_request = [TAGS[Request], b"op", 1, CLIENT, False]
    with pytest.raises(FieldCountError, match=r"requests\[0\]: Request: expected 5 fields, got 4"):
        decode(frame(TAGS[PrePrepare], 0, 1, DIGEST, 5, [short_request], 0, SIG))


def test_the_first_bad_field_in_order_is_reported():
    with pytest.raises(WrongType, match="Prepare.view"):
        decode(prepare_frame(view="x", digest=b"short", replica=-1))


# --- hostile input: nothing but DecodeError escapes ---------------------------------------------


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_decode_errors(data):
    try:
        decode(data, Limits(frame_bytes_max=200, batch_size_max=5, certificate_entries_max=5))
    except DecodeError:
        pass


@st.composite
def mutated_frames(draw):
    """A valid encoding with a few bytes flipped, inserted, deleted, or the tail cut off."""
    data = bytearray(encode(draw(messages)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[position : position + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[position:]
    return bytes(data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_frames())
def test_mutated_frames_raise_only_decode_errors(data):
    try:
        message = decode(data)
    except DecodeError:
        return
    # If a mutation still decodes, it decoded to a valid message that encodes canonically.
    assert type(message) in TAGS
    assert decode(encode(message)) == message


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.sampled_from([-1, 0, 1, 2, 3, 7, 9, 10, INT_MAX, INT_MAX + 1])
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=70),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.integers(0, 9), children, max_size=2)
    ),
    max_leaves=8,
)


def _paths(node, path=()):
    yield path
    if isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, (*path, index))


@st.composite
def structurally_mutated_frames(draw):
    """Valid msgpack that is almost a message: one node of a valid message's array tree is
    replaced, removed, or has a value inserted before it."""
    tree = msgpack.unpackb(encode(draw(messages)), raw=False)
    path = draw(st.sampled_from(list(_paths(tree))[1:]))
    parent = tree
    for index in path[:-1]:
        parent = parent[index]
    action = draw(st.sampled_from(["replace", "delete", "insert"]))
    if action == "replace":
        parent[path[-1]] = draw(msgpack_values)
    elif action == "delete":
        del parent[path[-1]]
    else:
        parent.insert(path[-1], draw(msgpack_values))
    return msgpack.packb(tree, use_bin_type=True)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(structurally_mutated_frames())
def test_structurally_mutated_frames_raise_only_decode_errors(data):
    """Exercises the field checks rather than msgpack's parser: right shape, wrong contents."""
    try:
        message = decode(data, Limits(batch_size_max=3, certificate_entries_max=3))
    except DecodeError:
        return
    assert decode(encode(message)) == message


# --- signing payloads and digests -----------------------------------------------------------------


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(signed_messages, signatures)
def test_signing_payload_excludes_the_signature(message, other_signature):
    resigned = dataclasses.replace(message, signature=other_signature)
    assert signing_payload(resigned) == signing_payload(message)
    array = msgpack.unpackb(signing_payload(message), raw=False)
    assert array[0] == TAGS[type(message)]
    unsigned = 2 if type(message) is PrePrepare else 1  # signature, and a batch's requests
    assert len(array) == 1 + len(dataclasses.fields(message)) - unsigned


@settings(max_examples=100)
@given(signed_messages)
def test_signing_payloads_of_different_types_differ(message):
    # The tag is signed: a signature on one message type can never pass for another.
    assert msgpack.unpackb(signing_payload(message))[0] == TAGS[type(message)]


def test_pre_prepare_signing_payload_covers_the_digest_but_not_the_batch():
    batch = (make_request(),)
    pre_prepare = make_pre_prepare(batch)
    without_batch = dataclasses.replace(pre_prepare, requests=())
    assert signing_payload(without_batch) == signing_payload(pre_prepare)
    other_digest = dataclasses.replace(pre_prepare, digest=b"x" * 32)
    assert signing_payload(other_digest) != signing_payload(pre_prepare)
    assert pre_prepare.digest in msgpack.unpackb(signing_payload(pre_prepare))


@pytest.mark.parametrize(
    ("field", "value"),
    [("view", 9), ("sequence", 9), ("timestamp_ms", 9), ("replica", 2)],
)
def test_pre_prepare_signing_payload_covers_every_other_field(field, value):
    pre_prepare = make_pre_prepare()
    changed = dataclasses.replace(pre_prepare, **{field: value})
    assert signing_payload(changed) != signing_payload(pre_prepare)


def test_view_change_signing_payload_covers_its_nested_proofs():
    checkpoint = Checkpoint(64, DIGEST, 1, SIG)
    view_change = ViewChange(1, 64, (checkpoint,), (), 1, SIG)
    other_proof = (dataclasses.replace(checkpoint, signature=b"t" * 64),)
    forged = dataclasses.replace(view_change, checkpoint_proof=other_proof)
    assert signing_payload(forged) != signing_payload(view_change)


def test_unsigned_messages_have_no_signing_payload():
    with pytest.raises(TypeError):
        signing_payload(Reply(0, 1, CLIENT, 2, b"", False))
    with pytest.raises(TypeError):
        signing_payload(PreparedCertificate(make_pre_prepare(), ()))
    with pytest.raises(TypeError):
        signing_payload("not a message")  # type: ignore[arg-type]


def test_request_digest_is_sha256_of_the_encoding():
    import hashlib

    request = make_request()
    assert request_digest(request) == hashlib.sha256(encode(request)).digest()
    assert len(request_digest(request)) == 32


def test_batch_digest_changes_with_every_request_and_the_timestamp():
    batch = (make_request(b"a", 1), make_request(b"b", 2), make_request(b"c", 3))
    reference = batch_digest(5, batch)
    assert len(reference) == 32
    assert batch_digest(5, batch) == reference
    assert batch_digest(6, batch) != reference
    for index in range(len(batch)):
        changed = list(batch)
        changed[index] = dataclasses.replace(batch[index], operation=b"z")
        assert batch_digest(5, tuple(changed)) != reference
        resigned = list(batch)
        resigned[index] = dataclasses.replace(batch[index], signature=b"t" * 64)
        assert batch_digest(5, tuple(resigned)) != reference
    assert batch_digest(5, batch[::-1]) != reference  # order is agreed too
    assert batch_digest(5, batch[:2]) != reference
    assert batch_digest(5, ()) != batch_digest(6, ())


@settings(max_examples=100)
@given(small_uints, tuples_of(requests, max_size=4), small_uints, tuples_of(requests, max_size=4))
def test_batch_digests_differ_when_batches_differ(t1, batch1, t2, batch2):
    if (t1, batch1) != (t2, batch2):
        assert batch_digest(t1, batch1) != batch_digest(t2, batch2)


# --- plain canonical data (the core's replicated tables) -----------------------------------------


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(client_keys, uints, st.binary(max_size=16), uints).map(list), max_size=5
    )
)
def test_canonical_plain_data_round_trips(entries):
    packed = packb_canonical(entries)
    assert unpackb_canonical(packed) == entries
    assert packb_canonical(unpackb_canonical(packed)) == packed


@pytest.mark.parametrize("data", [b"", b"\xc1", packb_canonical([1, 2]) + b"\x00"])
def test_canonical_plain_data_refuses_bad_bytes(data):
    with pytest.raises(MalformedFrame):
        unpackb_canonical(data)


# --- limits ---------------------------------------------------------------------------------------


def test_limits_from_config():
    replicas = tuple(ReplicaInfo(i, bytes([i + 1]) * 32) for i in range(4))
    config = ClusterConfig(
        replicas=replicas,
        batch_size_max=50,
        log_window=128,
        frame_bytes_max=2_000_000,
        batch_bytes_max=1_000_000,
        operation_bytes_max=1000,
        result_bytes_max=2000,
    )
    limits = Limits.from_config(config)
    assert limits == Limits(
        frame_bytes_max=2_000_000,
        operation_bytes_max=1000,
        result_bytes_max=2000,
        batch_size_max=50,
        certificate_entries_max=128 * 4 + 64,
        state_chunk_bytes_max=config.state_chunk_bytes,
        snapshot_bytes_max=config.snapshot_bytes_max,
    )
    # A full-window NEW-VIEW fits: one pre-prepare per sequence in the window.
    assert limits.certificate_entries_max >= config.log_window
    assert limits.certificate_entries_max >= config.n


def test_default_limits():
    assert DEFAULT_LIMITS == Limits()
    assert DEFAULT_LIMITS.frame_bytes_max == 4 * 1024 * 1024
    assert DEFAULT_LIMITS.batch_size_max == 1000


# --- speed ----------------------------------------------------------------------------------------


def test_decoding_a_full_batch_is_fast():
    """The core's benchmark decodes every PRE-PREPARE; 100 requests decode in well under 1 ms
    (about 0.1 ms measured on the development machine; the bound is loose for slow CI)."""
    batch = tuple(
        Request(bytes([i]) * 16, i, bytes([i]) * 32, False, bytes([i]) * 64) for i in range(100)
    )
    encoded = encode(make_pre_prepare(batch))
    rounds = 50
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            decode(encoded)
        best = min(best, (time.perf_counter() - start) / rounds)
    assert best < 1e-3, f"decoding a 100-request PRE-PREPARE took {best * 1e6:.0f} µs"


def test_the_reused_packer_is_let_go_after_a_large_value():
    """A msgpack Packer keeps the largest buffer it grew to: after packing a state snapshot of
    more than 1 MiB, the codec drops it (and its buffer) and packs with a fresh one."""
    from pbft import codec

    small = codec.packb_canonical([1, b"x"])
    assert codec._packers.packer is not None
    large = codec.packb_canonical([b"x" * (2 << 20)])
    assert msgpack.unpackb(large) == [b"x" * (2 << 20)]
    assert getattr(codec._packers, "packer", None) is None
    assert codec.packb_canonical([1, b"x"]) == small
