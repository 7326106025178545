"""State transfer that one Byzantine replica can neither stall nor abuse (S1 and its extensions
S1', S1''): verifiable chunks, a bounded multi-source fetch, and rate-limited serving.

S1' (pbft.core.state_transfer): the CHECKPOINT digest commits to the snapshot's size and to a
Merkle root over its chunks; every STATE-CHUNK carries the size and the chunk's proof, so each
chunk is verified as it arrives and kept whoever sent it. A fetch asks several sources at once,
paced to what their rate limits accept, demotes slow sources and drops lying ones, and ends
within (⌈C / (g·q)⌉ + (S − g) + 3) · T. Every request type that makes a replica work for a peer
is rate-limited per peer (S1''), the NEW-VIEW resent to a replica still asking for its view too.

Method: the pure pieces (digest, proofs, `StateFetch`) with hand-made chunks and a small
event loop of virtual time; single cores for the rate limits; the two catalogue scenarios
(`byz_slow_state_source`, `byz_fetch_state_flood`) for the bounds on a whole cluster.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import replace

import pytest

from pbft.app import KeyValueStore
from pbft.codec import ContainerTooLarge, Limits, ValueOutOfRange, decode, encode
from pbft.config import ClusterConfig, ConfigError
from pbft.core import Replica
from pbft.core import replica as replica_module
from pbft.core import sizes
from pbft.core.state_transfer import (
    ChunkedSnapshot,
    FetchPacer,
    StateFetch,
    chunk_count,
    proof_entries_max,
    snapshot_digest,
    verify_chunk,
)
from pbft.messages import (
    Checkpoint,
    FetchLog,
    FetchState,
    LoggedBatch,
    NewView,
    StateChunk,
)
from simulations.byzantine import FetchStateFlooder, SlowStateSource
from simulations.scenarios import CATALOGUE, run_scenario
from simulations.scenarios_byzantine import cut_off_and_fetch

from .corekit import (
    SIGNERS,
    CountingVerifier,
    commit_batch,
    drain,
    make_config,
    make_replica,
    pre_prepare,
    request,
    sent,
    sign,
)
from .test_view_change import _new_view_for, _view_change

T_MS = 500


def _chunk(prepared: ChunkedSnapshot, index: int, source: int, sequence: int = 1) -> StateChunk:
    """Chunk `index` of `prepared` as `source` would serve it (unsigned: `StateFetch` takes
    chunks whose signature the replica checked)."""
    return StateChunk(sequence, index, len(prepared.snapshot), prepared.chunk(index),
                      prepared.proof(index), source, b"")


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:] if data else b"\x01"


# ------------------------------------------------------------------ S1': verifiable chunks


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 48, 49, 5 * 16 + 3, 16 * 16, 16 * 16 + 1])
def test_s1_prime_every_chunk_proves_itself_against_the_digest(size):
    """S1': for any size (one chunk, an exact multiple, an odd count...), each chunk with its
    proof verifies against the snapshot's digest, and the chunk count is the size's."""
    snapshot = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    prepared = ChunkedSnapshot(snapshot, 16)
    assert prepared.digest == snapshot_digest(snapshot, 16)
    assert prepared.chunks == chunk_count(size, 16) == max(1, math.ceil(size / 16))
    assert b"".join(prepared.chunk(i) for i in range(prepared.chunks)) == snapshot
    for index in range(prepared.chunks):
        chunk = _chunk(prepared, index, 0)
        assert len(chunk.proof) <= proof_entries_max(max(size, 1), 16)
        assert verify_chunk(prepared.digest, 16, chunk)


def test_s1_prime_the_digest_commits_to_the_size_the_chunking_and_every_byte():
    """S1': a flipped byte, another index, another claimed size, a proof one hash short or long,
    or another sibling: none verifies. Snapshots that differ in any byte, or chunked otherwise,
    have different digests."""
    snapshot = bytes(range(200))
    prepared = ChunkedSnapshot(snapshot, 16)
    good = _chunk(prepared, 5, 0)
    assert verify_chunk(prepared.digest, 16, good)
    forged = [
        replace(good, data=_flip(good.data)),
        replace(good, chunk=4),
        replace(good, chunk=prepared.chunks),
        replace(good, snapshot_bytes=201),
        replace(good, snapshot_bytes=199),
        replace(good, proof=good.proof[:-1]),
        replace(good, proof=(*good.proof, good.proof[0])),
        replace(good, proof=(_flip(good.proof[0]), *good.proof[1:])),
        replace(good, data=good.data[:-1]),
    ]
    for chunk in forged:
        assert not verify_chunk(prepared.digest, 16, chunk), chunk
    assert snapshot_digest(snapshot, 16) != snapshot_digest(snapshot, 32)
    assert snapshot_digest(snapshot, 16) != snapshot_digest(_flip(snapshot), 16)
    assert snapshot_digest(snapshot, 16) != snapshot_digest(snapshot + b"\x00", 16)


def test_c1_s1_prime_the_checkpoint_digest_is_the_chunked_digest_of_the_snapshot():
    """C1, S1': the CHECKPOINT a replica sends carries the chunked digest of its snapshot, and
    `state_digest()` is the digest such a CHECKPOINT of the current state would carry."""
    backup = make_replica(1, checkpoint_interval=2, log_window=4, state_chunk_bytes=16)
    for s in (1, 2):
        commit_batch(backup, pre_prepare(s, requests=(request(s),)))
    ((_, checkpoint),) = sent(drain(backup), Checkpoint)
    assert checkpoint.digest == backup.state_digest()
    assert checkpoint.digest == snapshot_digest(backup._snapshot(), 16)  # noqa: SLF001


def test_s1_prime_state_chunks_round_trip_and_the_codec_bounds_their_proofs():
    """S1': a STATE-CHUNK with its proof round-trips; the decoder refuses a proof longer than a
    snapshot of snapshot_bytes_max can need, or a proof hash of the wrong length."""
    config = make_config(state_chunk_bytes=1024, snapshot_bytes_max=1024 * 1024)
    limits = Limits.from_config(config)
    assert limits.state_proof_entries_max == proof_entries_max(1024 * 1024, 1024) == 10
    prepared = ChunkedSnapshot(bytes(5000), 1024)
    chunk = sign(_chunk(prepared, 4, 0))
    assert decode(encode(chunk), limits) == chunk
    with pytest.raises(ContainerTooLarge, match="StateChunk.proof"):
        decode(encode(replace(chunk, proof=(bytes(32),) * 11)), limits)
    with pytest.raises(ValueOutOfRange, match=r"StateChunk.proof\[1\]"):
        decode(encode(replace(chunk, proof=(bytes(32), bytes(31)))), limits)


def test_s1_prime_config_refuses_a_chunk_size_whose_state_chunk_cannot_fit_a_frame():
    """S1': a correct replica must be able to send every chunk with its proof in one frame."""
    frame = 4 * 1024 * 1024
    fits = frame - sizes.state_chunk_bytes_max(make_config(state_chunk_bytes=1)) + 1
    config = make_config(state_chunk_bytes=fits - 1024)
    assert sizes.state_chunk_bytes_max(config) <= frame
    with pytest.raises(ConfigError, match="state_chunk_bytes"):
        make_config(state_chunk_bytes=frame)


# ------------------------------------------------------------------ S1': one fetch


def _fetch(prepared: ChunkedSnapshot, sources=(0, 1, 2), *, window: int = 12,
           snapshot_bytes_max: int = 1 << 20, now_ms: int = 0,
           pacer: FetchPacer | None = None) -> StateFetch:
    q = -(-window // len(sources))
    pacer = pacer if pacer is not None else FetchPacer(q, T_MS)
    return StateFetch(1, prepared.digest, list(sources), pacer,
                      chunk_bytes=prepared.chunk_bytes, snapshot_bytes_max=snapshot_bytes_max,
                      window=window, timeout_ms=T_MS, now_ms=now_ms)


def test_s1_prime_a_tampered_chunk_is_refused_its_sender_dropped_and_another_source_used():
    """S1': chunk 0 is asked of every source; a tampered copy is refused at once
    (`bad_state_chunk`) and its signer is asked nothing more; the correct copy from a second
    source is kept, and the rest of the snapshot comes from the sources still trusted."""
    prepared = ChunkedSnapshot(bytes(range(250)) * 4, 64)  # 16 chunks
    fetch = _fetch(prepared)
    assert sorted(fetch.requests(0)) == [(0, 0), (1, 0), (2, 0)]
    liar = replace(_chunk(prepared, 0, 0), data=_flip(prepared.chunk(0)))
    assert fetch.on_chunk(liar, 5) == "bad_state_chunk"
    assert fetch.banned(0) and fetch.size is None and fetch.bytes_held == 0
    assert fetch.on_chunk(_chunk(prepared, 0, 1), 6) is None
    assert fetch.size == 1000 and fetch.has_chunk(0)
    asked = fetch.requests(6)
    assert {source for source, _ in asked} == {1, 2}
    for source, index in asked:
        assert fetch.on_chunk(_chunk(prepared, index, source), 7) is None
    now = T_MS
    while not fetch.complete:
        now += T_MS
        for source, index in fetch.requests(now):
            assert source != 0
            fetch.on_chunk(_chunk(prepared, index, source), now + 1)
    assert fetch.snapshot() == prepared.snapshot


def test_s1_prime_a_liar_found_mid_fetch_has_what_it_was_asked_asked_of_others_at_once():
    """S1': when a source's chunk does not verify, the other chunks it was asked go back to the
    front of the queue, to be asked of the others without waiting for a timeout."""
    prepared = ChunkedSnapshot(bytes(range(256)) * 4, 64)  # 16 chunks
    fetch = _fetch(prepared)
    fetch.requests(0)
    fetch.on_chunk(_chunk(prepared, 0, 1), 1)
    asked = fetch.requests(1)
    held_by_liar = sorted(i for s, i in asked if s == 0)
    assert held_by_liar
    bad = replace(_chunk(prepared, held_by_liar[0], 0), data=_flip(prepared.chunk(held_by_liar[0])))
    assert fetch.on_chunk(bad, 2) == "bad_state_chunk"
    for source, index in [a for a in asked if a[0] != 0]:
        fetch.on_chunk(_chunk(prepared, index, source), 3)
    again = fetch.requests(T_MS + 1)
    assert held_by_liar == sorted(i for _, i in again)[: len(held_by_liar)]
    assert all(source != 0 for source, _ in again)


def test_s1_prime_no_source_announces_a_size_and_a_proven_size_above_the_bound_is_refused():
    """S1': a chunk claiming a huge snapshot with a forged proof is a lie (`bad_state_chunk`),
    and nothing is held; a snapshot proven larger than snapshot_bytes_max is refused
    (`snapshot_too_large`) without keeping any of it."""
    prepared = ChunkedSnapshot(bytes(1000), 64)
    fetch = _fetch(prepared)
    fetch.requests(0)
    entries = proof_entries_max(1 << 40, 64)
    huge = replace(_chunk(prepared, 0, 2), snapshot_bytes=1 << 40, proof=(bytes(32),) * entries)
    assert fetch.on_chunk(huge, 1) == "bad_state_chunk"
    assert fetch.size is None and fetch.chunks is None and fetch.bytes_held == 0
    small = _fetch(prepared, snapshot_bytes_max=999)
    small.requests(0)
    assert small.on_chunk(_chunk(prepared, 0, 1), 1) == "snapshot_too_large"
    assert small.size is None and small.bytes_held == 0 and not small.banned(1)


def test_s1_prime_requests_spread_over_the_sources_paced_to_q_per_timeout():
    """S1': after the size, chunks are asked of every source at once, at most
    q = ⌈window / sources⌉ of each per state_transfer_timeout_ms, and more once the period
    has passed."""
    prepared = ChunkedSnapshot(bytes(64 * 40), 64)  # 40 chunks
    fetch = _fetch(prepared, window=12)  # q = 4
    fetch.requests(0)
    fetch.on_chunk(_chunk(prepared, 0, 0), 2)
    first = fetch.requests(2)
    per_source = {s: sum(1 for x, _ in first if x == s) for s in (0, 1, 2)}
    assert per_source == {0: 3, 1: 3, 2: 3}  # 4 each per period, chunk 0 included
    for source, index in first:
        fetch.on_chunk(_chunk(prepared, index, source), 5)
    assert fetch.requests(T_MS - 1) == []
    assert len(fetch.requests(T_MS + 5)) == 12


def test_s1_prime_a_source_that_times_out_or_answers_slowly_is_asked_less():
    """S1': a timed-out request is asked of another source (`expire`), and its source, like one
    that answered after T/2, is asked fewer chunks per period and last."""
    prepared = ChunkedSnapshot(bytes(64 * 100), 64)  # 100 chunks
    fetch = _fetch(prepared, window=24)  # q = 8
    fetch.requests(0)
    fetch.on_chunk(_chunk(prepared, 0, 0), 2)
    asked = fetch.requests(2)
    for source, index in asked:
        if source == 1:
            fetch.on_chunk(_chunk(prepared, index, source), T_MS - 10)  # slow: kept
        elif source == 0:
            fetch.on_chunk(_chunk(prepared, index, source), 10)
    silent = [index for source, index in asked if source == 2]
    assert fetch.expire(T_MS + 2) == len(silent)
    assert fetch.strikes(1) >= 1 and fetch.strikes(2) >= 1 and fetch.strikes(0) == 0
    again = fetch.requests(T_MS + 20)
    count = {s: sum(1 for x, _ in again if x == s) for s in (0, 1, 2)}
    assert count[0] == 8 and count[1] < 8 and count[2] < 8
    assert all(source != 2 for source, index in again if index in silent)
    assert {index for _, index in again} >= set(silent)


def test_s1_prime_a_timed_out_chunk_is_asked_of_another_source_even_a_less_trusted_one():
    """S1': a chunk that timed out at a source goes to another one, even when that source is
    otherwise the most trusted: a silent source cannot hold the same chunk back twice."""
    prepared = ChunkedSnapshot(bytes(64 * 40), 64)
    fetch = _fetch(prepared, window=12)  # q = 4
    fetch.requests(0)
    fetch.on_chunk(_chunk(prepared, 0, 0), 1)
    asked = fetch.requests(1)
    mine = [i for s, i in asked if s == 2]
    held_back = mine[-1]
    for index in mine[:-1]:
        fetch.on_chunk(_chunk(prepared, index, 2), 5)  # timely: no strikes
    for source, index in asked:
        if source != 2:
            fetch.on_chunk(_chunk(prepared, index, source), T_MS - 10)  # slow: a strike each
    assert fetch.expire(T_MS + 1) == 1
    assert fetch.strikes(2) == 1 < fetch.strikes(0) == fetch.strikes(1)
    again = fetch.requests(T_MS + 2)
    assert again[0][0] == 2, "the least struck source is asked first"
    assert held_back not in [i for s, i in again if s == 2]
    assert held_back in [i for s, i in again if s != 2]


def test_s1_prime_a_chunk_every_source_failed_is_asked_again():
    """S1', liveness: when every source still trusted timed out on a chunk (the network was
    down), it is asked of them again rather than never."""
    prepared = ChunkedSnapshot(bytes(64 * 8), 64)
    fetch = _fetch(prepared, sources=(0, 1), window=2)  # q = 1
    assert len(fetch.requests(0)) == 2
    assert fetch.expire(T_MS) == 2
    assert sorted(fetch.requests(T_MS + 1)) == [(0, 0), (1, 0)]
    fetch.on_chunk(_chunk(prepared, 0, 0), T_MS + 2)
    fetch.expire(2 * T_MS + 1)  # 1's chunk-0 request was answered by 0: no timeout
    ((first, index),) = fetch.requests(2 * T_MS + 2)[:1]
    fetch.expire(3 * T_MS + 2)
    fetch.requests(3 * T_MS + 3)
    fetch.expire(4 * T_MS + 3)
    assert fetch.strikes(0) and fetch.strikes(1)
    retried = fetch.requests(4 * T_MS + 4)
    assert index in [i for _, i in retried], (index, retried)


def test_s1_prime_a_source_that_answers_in_time_again_is_trusted_again():
    """S1': strikes clear when a source answers within T/2, so a correct source that timed out
    while the network was unstable is soon asked its full share again."""
    prepared = ChunkedSnapshot(bytes(64 * 100), 64)
    fetch = _fetch(prepared, window=24)  # q = 8
    fetch.requests(0)
    fetch.on_chunk(_chunk(prepared, 0, 0), 2)
    fetch.requests(2)
    fetch.expire(T_MS + 2)
    assert fetch.strikes(1) == 7  # each of its requests timed out
    (index,) = [i for s, i in fetch.requests(T_MS + 3) if s == 1]  # one, while struck
    assert fetch.on_chunk(_chunk(prepared, index, 1), T_MS + 10) is None
    assert fetch.strikes(1) == 0
    assert sum(1 for s, _ in fetch.requests(2 * T_MS + 20) if s == 1) == 8


# ------------------------------------------------------------------ S1': the time bound


def _bound_ms(chunks: int, correct: int, sources: int, window: int) -> int:
    """The S1' bound: (⌈C / (g·q)⌉ + (S − g) + 3) · T."""
    q = -(-window // sources)
    return (math.ceil(chunks / (correct * q)) + (sources - correct) + 3) * T_MS


def _run_fetch(byzantine: dict[int, str], sources=(0, 1, 2), *, chunks: int = 300,
               window: int = 12, latency_ms: int = 7,
               replacing: bool = False) -> tuple[int, StateFetch]:
    """Virtual time until a fetch of `chunks` chunks completes: correct sources answer each
    request after `latency_ms`; a Byzantine one is "silent", "trickle" (valid chunks just under
    the timeout), "liar" (tampered chunks) or "fickle" (one timely answer, then silence). With
    `replacing`, the fetch starts just after one it replaces used every source's quota."""
    prepared = ChunkedSnapshot(bytes(range(251)) * (chunks * 16 // 251 + 1), 16)
    prepared = ChunkedSnapshot(prepared.snapshot[: chunks * 16 - 3], 16)
    q = -(-window // len(sources))
    pacer = FetchPacer(q, T_MS)
    if replacing:
        for source in sources:
            for _ in range(q):
                pacer.note(source, 0)
    fetch = _fetch(prepared, sources, window=window, pacer=pacer, now_ms=1 if replacing else 0)
    answers: list[tuple[int, int, StateChunk]] = []
    counter = 0
    answered: dict[int, int] = {}
    now = fetch.started_ms
    while not fetch.complete:
        assert now < 200 * T_MS, "the fetch does not end"
        for source, index in fetch.requests(now):
            chunk = _chunk(prepared, index, source)
            kind = byzantine.get(source)
            answered[source] = answered.get(source, 0) + 1
            if kind in ("silent",) or (kind == "fickle" and answered[source] > 1):
                continue
            delay = T_MS - 10 if kind == "trickle" else latency_ms
            if kind == "liar":
                chunk = replace(chunk, data=_flip(chunk.data))
            counter += 1
            heapq.heappush(answers, (now + delay, counter, chunk))
        now = min(now + 10, answers[0][0]) if answers else now + 10
        while answers and answers[0][0] <= now:
            _, _, chunk = heapq.heappop(answers)
            fetch.on_chunk(chunk, now)
        fetch.expire(now)
    return now - fetch.started_ms, fetch


@pytest.mark.parametrize("kind", ["silent", "trickle", "liar", "fickle"])
def test_s1_prime_one_byzantine_source_adds_at_most_a_few_timeouts(kind):
    """S1': with 3 sources, 2 correct and one silent, slow, lying or fickle, a fetch of 300
    chunks ends within the stated bound, and within 3 timeouts of what the 2 correct sources
    alone take."""
    took_ms, _ = _run_fetch({2: kind})
    alone_ms, _ = _run_fetch({}, sources=(0, 1), window=8)  # the same q = 4 per source
    assert took_ms <= _bound_ms(300, correct=2, sources=3, window=12)
    assert took_ms <= alone_ms + 3 * T_MS, (took_ms, alone_ms)


@pytest.mark.parametrize("kind", ["silent", "trickle"])
def test_s1_prime_the_bound_holds_for_a_fetch_that_replaced_another(kind):
    """S1': a fetch that starts when the one it replaced has just used every source's quota
    (a newer checkpoint became stable) waits up to T for it, and still ends within the bound."""
    took_ms, _ = _run_fetch({2: kind}, replacing=True)
    assert took_ms <= _bound_ms(300, correct=2, sources=3, window=12)
    took_ms, _ = _run_fetch({2: kind}, chunks=5, replacing=True)
    assert T_MS <= took_ms <= _bound_ms(5, correct=2, sources=3, window=12)


def test_s1_prime_the_bound_holds_with_f_byzantine_sources_among_more_replicas():
    """S1': n = 7 (6 sources), two Byzantine (silent and slow) and one correct replica without
    the snapshot (it never answers): the fetch still ends within the bound for g = 3."""
    took_ms, fetch = _run_fetch({3: "silent", 4: "trickle", 5: "silent"},
                                sources=(0, 1, 2, 3, 4, 5), window=24)
    assert took_ms <= _bound_ms(300, correct=3, sources=6, window=24)
    assert fetch.requests_sent[3] < fetch.requests_sent[0]


def _lagging_fetcher(server):
    """Replica 3 with an empty state, shown the 2f + 1 CHECKPOINTs of the server's checkpoint
    at 2: once the batches in flight have had their chance, it fetches (S1)."""
    verifier = CountingVerifier()
    fetcher = Replica(server.config, 3, SIGNERS[3], verifier, KeyValueStore())
    digest = server.state_digest()
    for r in (0, 1, 2):
        fetcher.receive(sign(Checkpoint(2, digest, r, b"")))
    fetcher.tick(server.config.state_transfer_timeout_ms)
    asked = sent(drain(fetcher), FetchState)
    assert sorted((to, m.chunk) for to, m in asked) == [((0,), 0), ((1,), 0), ((2,), 0)]
    return fetcher, verifier


def _served(server, chunk: int, as_replica: int) -> StateChunk:
    """The server's chunk, as if replica `as_replica` had served it (signed with its key)."""
    server.receive(_ask(chunk, requester=3))
    ((_, served),) = sent(drain(server), StateChunk)
    return sign(replace(served, replica=as_replica))


def test_s1_prime_a_fetching_replica_checks_the_signature_before_blaming_a_source():
    """S1': a chunk that does not verify bans its signer, so the signature is checked first: a
    tampered chunk forged in replica 0's name is `bad_signature` and 0 stays a source; a
    duplicate costs no signature check; the genuine chunks complete the state."""
    server = _server(state_fetch_window=3 * 1000)
    fetcher, verifier = _lagging_fetcher(server)
    genuine = _served(server, 0, 0)
    forged = replace(genuine, data=_flip(genuine.data))  # signature no longer matches
    fetcher.receive(forged)
    assert fetcher.dropped["bad_signature"] == 1 and fetcher.dropped["bad_state_chunk"] == 0
    fetcher.receive(genuine)
    calls = verifier.calls
    fetcher.receive(genuine)
    assert fetcher.dropped["duplicate_state_chunk"] == 1 and verifier.calls == calls
    asked = sent(drain(fetcher), FetchState)
    assert {to for to, _ in asked} == {(0,), (1,), (2,)}
    lie = sign(replace(_served(server, 1, 2), data=_flip(_served(server, 1, 2).data)))
    fetcher.receive(lie)
    assert fetcher.dropped["bad_state_chunk"] == 1
    while fetcher.fetching_state:
        for to, message in sent(drain(fetcher), FetchState):
            fetcher.receive(_served(server, message.chunk, to[0]))
        fetcher.tick(fetcher.now_ms + fetcher.config.state_transfer_timeout_ms)
    assert fetcher.state_digest() == server.state_digest()
    assert fetcher.last_state_transfer is not None
    assert fetcher.last_state_transfer.chunks == ChunkedSnapshot(
        server._snapshot(), 16).chunks  # noqa: SLF001


# ------------------------------------------------------------------ serving: prepared once


def _server(**overrides):
    """Replica 1 after executing two batches: its checkpoint at 2 is in 16-byte chunks."""
    config = {"checkpoint_interval": 2, "log_window": 4, "state_chunk_bytes": 16,
              "state_fetch_window": 6, **overrides}  # q = 2: 4 at once, 2 per period
    server = make_replica(1, **config)
    for s in (1, 2):
        commit_batch(server, pre_prepare(s, requests=(request(s),)))
    drain(server)
    return server


def _ask(chunk: int, requester: int = 2, sequence: int = 2) -> FetchState:
    return sign(FetchState(sequence, chunk, requester, b""))


def test_s1_second_chunks_and_proofs_are_prepared_once_per_checkpoint(monkeypatch):
    """S1'', issue item 7: the snapshot is chunked and its tree built when the checkpoint is
    taken; serving any number of FETCH-STATEs builds nothing more, and serves those bytes."""
    builds = []

    class Counting(ChunkedSnapshot):
        def __init__(self, snapshot: bytes, chunk_bytes: int) -> None:
            builds.append(len(snapshot))
            super().__init__(snapshot, chunk_bytes)

    monkeypatch.setattr(replica_module, "ChunkedSnapshot", Counting)
    server = _server(state_fetch_window=3 * 1000)
    assert len(builds) == 2  # the initial state, and the checkpoint at 2
    prepared = ChunkedSnapshot(server._snapshot(), 16)  # noqa: SLF001 - what it holds
    served = []
    for round_ in range(3):
        for index in range(prepared.chunks):
            server.receive(_ask(index, requester=2 + round_ % 2))
        served.extend(m for _, m in sent(drain(server), StateChunk))
    assert len(builds) == 2
    assert len(served) == 3 * prepared.chunks
    for chunk in served:
        assert chunk.data == prepared.chunk(chunk.chunk)
        assert chunk.proof == prepared.proof(chunk.chunk)
        assert verify_chunk(prepared.digest, 16, chunk)


# ------------------------------------------------------------------ serving: rate limits


def test_s1_second_fetch_state_is_rate_limited_per_requester():
    """S1'': each requester is served 2q chunks at once and q per state_transfer_timeout_ms
    (`fetch_state_rate_limited` beyond); another requester has its own allowance."""
    server = _server()  # q = 2
    for _ in range(7):
        server.receive(_ask(0, requester=2))
    assert len(sent(drain(server), StateChunk)) == 4
    assert server.dropped["fetch_state_rate_limited"] == 3
    server.receive(_ask(1, requester=3))
    assert len(sent(drain(server), StateChunk)) == 1
    server.tick(server.config.state_transfer_timeout_ms)
    for _ in range(5):
        server.receive(_ask(0, requester=2))
    assert len(sent(drain(server), StateChunk)) == 2


def test_s1_second_a_forged_fetch_state_does_not_spend_the_named_requesters_allowance():
    """S1'': the signature is checked before the rate limit, so a replica cannot exhaust
    another's allowance by sending requests in its name."""
    server = _server()
    for _ in range(10):
        server.receive(sign(FetchState(2, 0, 2, b""), signer=SIGNERS[3]))
    assert server.dropped["bad_signature"] == 10
    for _ in range(4):
        server.receive(_ask(0, requester=2))
    assert len(sent(drain(server), StateChunk)) == 4


def test_s1_second_fetch_log_by_digest_is_rate_limited_per_requester():
    """S1'': a FETCH-LOG by digest is answered at most log_window times per requester per
    state_transfer_timeout_ms (`fetch_batch_rate_limited`), as much as one catch-up answer."""
    backup = make_replica(1, checkpoint_interval=4, log_window=8)
    pp = pre_prepare(1, requests=(request(1),))
    commit_batch(backup, pp)
    drain(backup)
    ask = sign(FetchLog(1, pp.digest, 2, b""))
    for _ in range(11):
        backup.receive(ask)
    assert len(sent(drain(backup), LoggedBatch)) == 8
    assert backup.dropped["fetch_batch_rate_limited"] == 3
    backup.tick(backup.config.state_transfer_timeout_ms // 2)
    for _ in range(5):
        backup.receive(ask)
    assert len(sent(drain(backup), LoggedBatch)) == 4
    backup.receive(sign(FetchLog(1, pp.digest, 3, b"")))
    assert len(sent(drain(backup), LoggedBatch)) == 1


def test_s1_second_the_new_view_resent_to_one_still_asking_is_rate_limited_per_replica():
    """V3, S1'': any old VIEW-CHANGE naming a replica (even replayed, unverified) asks for our
    NEW-VIEW: it is resent to that replica at most once per VIEW-CHANGE retransmission
    interval (`new_view_resend_too_soon`); the replica's own retransmissions keep asking."""
    backup = make_replica(2)
    nv = _new_view_for(pre_prepare(1))
    backup.receive(nv)
    drain(backup)
    old = _view_change(3, new_view=1)
    unverified = replace(old, signature=bytes(64))
    for message in (old, old, unverified, old):
        backup.receive(message)
    assert [m for _, m in sent(drain(backup), NewView)] == [nv]
    assert backup.dropped["new_view_resend_too_soon"] == 3
    backup.receive(_view_change(0, new_view=1))
    assert [to for to, _ in sent(drain(backup), NewView)] == [(0,)]
    backup.tick(backup.config.view_change_timeout_ms // 4)
    backup.receive(old)
    assert [to for to, _ in sent(drain(backup), NewView)] == [(3,)]


# ------------------------------------------------------------------ the two scenarios


def _served_by_each(sim, behaviour: FetchStateFlooder, kind: str) -> dict[int, int]:
    return {r: behaviour.answers[(r, kind)] for r in sim.correct_replicas()}


def _fetch_bound_ms(config: ClusterConfig, chunks: int, correct: int) -> int:
    sources = config.n - 1
    q = -(-config.state_fetch_window // sources)
    t = config.state_transfer_timeout_ms
    return (math.ceil(chunks / (correct * q)) + (sources - correct) + 3) * t


def _run_scenario(name: str, seed: int):
    entry = CATALOGUE[name]
    sim = entry.build(seed)
    result = run_scenario(entry, seed, sim)
    assert result.violations == [] and result.liveness, [v.as_dict() for v in result.violations]
    return sim


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_s1_prime_a_slow_state_source_cannot_delay_catch_up_beyond_the_bound(seed):
    """S1', `byz_slow_state_source`: replica 3 serves every chunk just under the fetch timeout;
    replica 2, cut off while the others passed many checkpoints, restores the state by a fetch
    that ends within (⌈C / (g·q)⌉ + (S − g) + 3) · T of its start (g = 2 correct sources),
    computed from the configuration, and then executes what the others did. (On 4b9cd76 it
    fetched from 3 alone, one chunk per timeout, and had not caught up 27 s later.)"""
    sim = _run_scenario("byz_slow_state_source", seed)
    victim, slow = sim.replicas[2], sim.behaviours[3]
    assert slow.trickled > 0, "the slow source was asked and answered slowly"
    record = victim.last_state_transfer
    assert record is not None and victim.state_transfers_completed >= 1
    assert record.chunks == chunk_count(record.snapshot_bytes, sim.config.state_chunk_bytes) > 30
    assert record.duration_ms <= _fetch_bound_ms(sim.config, record.chunks, correct=2)
    assert victim.last_executed == sim.replicas[0].last_executed


def test_s1_prime_the_slow_source_is_asked_less_than_the_correct_ones():
    """S1': `byz_slow_state_source` with state_fetch_window = 12 (4 chunks per source per
    period, so that the fetch takes several periods): in the fetch that restored the state,
    replica 2 asked the slow source fewer chunks than each correct one (its first, late
    answers earned it strikes)."""
    sim = cut_off_and_fetch(1, SlowStateSource(), state_fetch_window=12)
    asked: dict[int, Counter] = {}
    send = sim.send

    def counting(source, destinations, message):
        if source == 2 and isinstance(message, FetchState):
            asked.setdefault(message.sequence, Counter()).update(destinations)
        send(source, destinations, message)

    sim.send = counting
    result = run_scenario(CATALOGUE["byz_slow_state_source"], 1, sim)
    assert result.liveness and not result.violations
    restored = asked[sim.replicas[2].last_state_transfer.sequence]
    assert restored[3] < min(restored[0], restored[1]), restored


def test_s1_second_a_fetch_state_flood_costs_each_replica_a_bounded_amount_of_work():
    """S1', S1'', `byz_fetch_state_flood`: replica 3 sends every other replica 10 FETCH-STATEs
    and 20 FETCH-LOGs a tick for the whole run. Each correct replica serves it at most 2q chunks at
    once and q per state_transfer_timeout_ms, and at most one catch-up answer and a log
    window of batches by digest per period; replica 2 still fetches the state within the
    bound. (On 4b9cd76 each victim served it ~32,000 chunks and ~18,600 batches in 32 s.)"""
    sim = CATALOGUE["byz_fetch_state_flood"].build(1)
    result = run_scenario(CATALOGUE["byz_fetch_state_flood"], 1, sim)
    assert result.liveness and not result.violations
    flooder, config = sim.behaviours[3], sim.config
    periods = math.ceil(sim.now_us / 1000 / config.state_transfer_timeout_ms)
    q = -(-config.state_fetch_window // (config.n - 1))
    window = config.log_window
    assert flooder.sent >= 10 * (sim.now_us // 1000 // 10) - 10
    chunks = _served_by_each(sim, flooder, "StateChunk")
    batches = _served_by_each(sim, flooder, "LoggedBatch")
    for replica in sim.correct_replicas():
        assert 0 < chunks[replica] <= 2 * q + q * periods, chunks
        catch_up = (1 + periods) * (window + 1)
        assert batches[replica] <= window * (1 + periods) + catch_up, batches
        assert sim.replicas[replica].dropped["fetch_state_rate_limited"] > 0
    victim = sim.replicas[2]
    record = victim.last_state_transfer
    assert record is not None
    assert record.duration_ms <= _fetch_bound_ms(config, record.chunks, correct=2)
    assert victim.last_executed == sim.replicas[0].last_executed


def test_s1_prime_the_slow_source_lying_about_the_size_is_dropped_at_once():
    """S1': the slow source, also announcing snapshot_bytes_max with a forged proof on some
    chunks, is refused (`bad_state_chunk`) and asked no more; the fetch still ends in time."""
    entry = CATALOGUE["byz_slow_state_source"]
    sim = entry.build(1)
    liar = SlowStateSource(lie_every=2)
    sim.add_behaviour(3, liar)
    result = run_scenario(entry, 1, sim)
    assert result.liveness and not result.violations
    victim = sim.replicas[2]
    assert liar.lies > 0 and victim.dropped["bad_state_chunk"] > 0
    record = victim.last_state_transfer
    assert record is not None
    assert record.duration_ms <= _fetch_bound_ms(sim.config, record.chunks, correct=2)


def test_s1_a_restore_forgets_the_proposed_requests_its_snapshot_covers():
    """S1, V1'': a request the fetcher saw proposed before it fell behind executed within
    the snapshot it restores: it is not kept as proposed (bounded memory, and a retransmission
    of it is answered from the reply cache, not taken for a duplicate in flight)."""
    server = _server(state_fetch_window=3 * 1000)  # (serves everything asked at once)
    verifier = CountingVerifier()
    fetcher = Replica(server.config, 3, SIGNERS[3], verifier, KeyValueStore())
    fetcher.receive(pre_prepare(1, requests=(request(1),)))
    assert fetcher.memory_footprint()["proposed"] == 1
    digest = server.state_digest()
    for r in (0, 1, 2):
        fetcher.receive(sign(Checkpoint(2, digest, r, b"")))
    fetcher.tick(server.config.state_transfer_timeout_ms)
    while fetcher.fetching_state:
        for to, message in sent(drain(fetcher), FetchState):
            fetcher.receive(_served(server, message.chunk, to[0]))
        fetcher.tick(fetcher.now_ms + fetcher.config.state_transfer_timeout_ms)
    assert fetcher.last_executed == 2
    assert fetcher.memory_footprint()["proposed"] == 0
