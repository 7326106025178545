"""Client admission (N8, and its extension N8'): exactly-once must not depend on how many keys an
attacker can generate. Method: the configuration's client list and its validation by example;
single cores with the other replicas played by hand (real Ed25519 signatures, a counting
verifier to show what is refused before any signature is checked); an application whose guest
list is itself replicated state; the trade ledger's participants; the Sybil-flood-and-replay
scenarios run in the simulator; `pbft keygen`.

N8' (extends N8): a replica serves only admitted clients: those the configuration lists (if
it lists any) and, for ordered requests, those the application admits (`admits`), decided
again at execution in sequence order. The reply cache never evicts: it holds the listed
clients, or under open admission the first `client_table_max`; when it is full a new client's
request is refused at execution, so a request can never execute twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import msgpack
import pytest

from pbft.app import ExecutionContext, KeyValueStore, kv_decode_result, kv_get, kv_put
from pbft.codec import packb_canonical, signing_payload, unpackb_canonical
from pbft.config import BOUND_NAMES, ClusterConfig, ConfigError, ReplicaInfo, dumps, load, loads
from pbft.core import Replica
from pbft.core.client_table import ClientTable
from pbft.crypto import sha256
from pbft.messages import PrePrepare, Prepare, Reply, Request
from pbft.runtime.cli import main
from simulations.engine import Simulation
from simulations.keys import ed25519_signer
from simulations.scenarios import CATALOGUE, run_scenario

from .corekit import (
    CLIENT,
    OTHER_CLIENT,
    SIGNERS,
    CountingVerifier,
    commit_batch,
    drain,
    make_config,
    pre_prepare,
    request,
    sent,
)

THIRD_CLIENT = ed25519_signer("client-c")
HOST = ed25519_signer("client-host")


def keys(n: int, start: int = 100) -> list[bytes]:
    return [bytes([start + i]) * 32 for i in range(n)]


def replicas(n: int = 4) -> list[ReplicaInfo]:
    return [ReplicaInfo(i, bytes([i + 1]) * 32) for i in range(n)]


def signed(operation: bytes, timestamp: int, client, read_only: bool = False) -> Request:
    unsigned = Request(operation, timestamp, client.public_key, read_only, b"")
    return replace(unsigned, signature=client.sign(signing_payload(unsigned)))


def core(replica_id: int = 1, app=None, verifier=None, **overrides) -> Replica:
    return Replica(make_config(**overrides), replica_id, SIGNERS[replica_id],
                   verifier or CountingVerifier(),
                   KeyValueStore() if app is None else app)  # fmt: skip


def replies(ready) -> list[tuple[bytes, int]]:
    return [(reply.client, reply.timestamp) for reply in ready.replies]


def executed(ready) -> list[tuple[bytes, int]]:
    return [(e.request.client, e.request.timestamp) for b in ready.executed for e in b.requests]


# ------------------------------------------------------------------------ the configuration


def test_the_admitted_clients_are_listed_in_the_configuration():
    """N8': `clients` is not a bound; listed, it sets the reply cache's capacity."""
    listed = keys(3)
    config = ClusterConfig.create(replicas(), clients=iter(listed), client_table_max=5)
    assert config.clients == tuple(listed)
    assert config.client_capacity == 3
    assert ClusterConfig.create(replicas(), client_table_max=5).client_capacity == 5
    assert "clients" not in BOUND_NAMES
    hash(ClusterConfig(tuple(replicas()), clients=listed))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("clients", "message"),
    [
        ("ab" * 32, r"clients must be a sequence of public keys, got str"),
        (7, r"clients must be a sequence of public keys, got int"),
        (["ab" * 16], r"clients\[0\] must be bytes, got str"),
        ([bytes(32), b"\x01" * 31], r"clients\[1\] must be 32 bytes \(Ed25519\), got 31"),
        ([b"\x05" * 32, bytes(32), b"\x05" * 32], r"duplicate client key: clients\[0\] and clients\[2\]"),
        ([bytes(32), bytes([3]) * 32], r"clients\[1\] is the public key of replica 2"),
    ],
)  # fmt: skip
def test_the_client_list_is_validated(clients, message):
    """N8': 32-byte keys, no duplicates, no replica's key; the error names the entry."""
    with pytest.raises(ConfigError, match=message):
        ClusterConfig.create(replicas(), clients=clients) if isinstance(clients, list) else (
            ClusterConfig(tuple(replicas()), clients=clients)  # type: ignore[arg-type]
        )


def test_the_reply_cache_must_hold_every_listed_client():
    """N8': client_table_max below the number of listed clients is refused (by construction
    and by `replace`)."""
    with pytest.raises(ConfigError, match=r"client_table_max = 2 is below the 3 admitted clients"):
        ClusterConfig.create(replicas(), clients=keys(3), client_table_max=2)
    config = ClusterConfig.create(replicas(), clients=keys(3), client_table_max=3)
    with pytest.raises(ConfigError, match="client_table_max"):
        dataclasses.replace(config, client_table_max=2)


def test_the_client_list_round_trips_through_toml(tmp_path):
    """N8': `clients = ["<64 hex>", ...]` is dumped and loaded; no list is open admission."""
    config = ClusterConfig.create(replicas(), clients=keys(2), stash_max=9)
    text = dumps(config)
    assert f'"{keys(2)[1].hex()}"' in text
    assert loads(text) == config and dumps(loads(text)) == text
    open_config = ClusterConfig.create(replicas())
    assert loads(dumps(open_config)) == open_config and open_config.clients == ()
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    assert load(path).clients == tuple(keys(2))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('clients = "00"', r"clients must be an array of hex strings, got str"),
        ("clients = [7]", r"clients\[0\] must be a hex string, got int"),
        (f'clients = ["{"11" * 32}", "zz"]', r"clients\[1\] is not valid hex: 'zz'"),
        (f'clients = ["{"11" * 31}"]', r"clients\[0\] must be 32 bytes"),
        (f'clients = ["{"01" * 32}"]', r"clients\[0\] is the public key of replica 0"),
    ],
)
def test_toml_client_list_errors_name_the_entry(line, message):
    text = dumps(ClusterConfig.create(replicas())).replace("clients = []", line)
    with pytest.raises(ConfigError, match=message):
        loads(text)


# ------------------------------------------------------------------------ at arrival


@pytest.mark.parametrize("replica_id", [0, 1])
def test_a_client_not_listed_is_dropped_before_its_signature_is_checked(replica_id):
    """N8': with a client list, a request from any other key is dropped, by the primary and by
    a backup, before its signature is verified: it is neither proposed, relayed nor waited
    for. A listed client is served as before (N1)."""
    verifier = CountingVerifier()
    replica = core(replica_id, verifier=verifier, clients=(CLIENT.public_key,))
    replica.receive(request(1, client=OTHER_CLIENT))
    replica.receive(signed(kv_get("k"), 2, OTHER_CLIENT, read_only=True))
    assert replica.dropped["client_not_admitted"] == 2 and verifier.calls == 0
    ready = drain(replica)
    assert ready.messages == () and ready.replies == ()
    assert replica.waiting_requests() == {}
    replica.receive(request(1, client=CLIENT))
    assert verifier.calls == 1
    if replica_id == 0:
        assert len(sent(drain(replica), PrePrepare)) == 1
    else:  # N1': a backup waits on it (and relays it only if its proposal is late)
        assert CLIENT.public_key in replica.waiting_requests()


def test_a_pre_prepare_carrying_a_client_not_listed_is_refused():
    """N3, N8': only a faulty primary proposes a request of a client not listed; a backup
    refuses the whole PRE-PREPARE, without checking that request's signature, and does not
    vote for it."""
    verifier = CountingVerifier()
    backup = core(1, verifier=verifier, clients=(CLIENT.public_key,))
    pp = pre_prepare(1, requests=(request(1, client=CLIENT), request(1, client=OTHER_CLIENT)))
    backup.receive(pp)
    assert backup.dropped["batch_client_not_admitted"] == 1
    assert verifier.calls == 2, "the PRE-PREPARE's and the listed client's signature only"
    assert sent(drain(backup), Prepare) == []
    backup.receive(pre_prepare(1, requests=(request(1, client=CLIENT),)))
    assert len(sent(drain(backup), Prepare)) == 1


# ------------------------------------------------------------------------ the application's say


class GuestList(KeyValueStore):
    """A key-value store serving only the keys on its guest list, which is replicated state:
    the host's ["admit", key] and ["revoke", key] change it (`pbft.app.Admission`)."""

    def __init__(self, host: bytes, guests: tuple[bytes, ...] = ()) -> None:
        super().__init__()
        self.host = host
        self.guests = {host, *guests}

    def admits(self, client: bytes) -> bool:
        return client in self.guests

    def execute(self, operation: bytes, context: ExecutionContext) -> bytes:
        match msgpack.unpackb(operation):
            case ["admit" | "revoke" as verb, bytes() as key] if context.client == self.host:
                (self.guests.add if verb == "admit" else self.guests.discard)(key)
                return packb_canonical(["ok", None])
        return super().execute(operation, context)

    def snapshot(self) -> bytes:
        return packb_canonical([super().snapshot(), sorted(self.guests)])

    def restore(self, snapshot: bytes) -> None:
        inner, guests = unpackb_canonical(snapshot)
        super().restore(inner)
        self.guests = set(guests)

    def digest(self) -> bytes:
        return sha256(self.snapshot())


def guest_op(verb: str, client) -> bytes:
    return packb_canonical([verb, client.public_key])


def test_the_application_refuses_a_client_on_arrival_before_its_signature_is_checked():
    """N8': for an ordered request, the application's `admits` is asked on arrival, before the
    signature; a refused client's request is not proposed. A read-only request is left to the
    application's `query` (R1): it is answered."""
    verifier = CountingVerifier()
    primary = core(0, GuestList(HOST.public_key, (CLIENT.public_key,)), verifier)
    primary.receive(request(1, client=OTHER_CLIENT))
    assert primary.dropped["client_not_admitted"] == 1 and verifier.calls == 0
    assert sent(drain(primary), PrePrepare) == []
    primary.receive(signed(kv_get("k"), 2, OTHER_CLIENT, read_only=True))
    assert replies(drain(primary)) == [(OTHER_CLIENT.public_key, 2)]
    primary.receive(request(1, client=CLIENT))
    assert len(sent(drain(primary), PrePrepare)) == 1


def test_the_application_decides_at_execution_and_every_replica_decides_the_same():
    """N8': admission is decided again at execution, in sequence order, from the replicated
    state: the host revokes a guest in the batch that also holds the guest's request (admitted
    when it arrived), and every replica refuses that request the same way (not executed, no
    reply, no record) and reaches the same state. The guest's earlier record is kept: after
    re-admission its executed request is answered from the cache (N8), not run again."""
    first = request(1, client=CLIENT)
    late = request(2, "late", client=CLIENT)
    batches = [
        pre_prepare(1, requests=(first,)),
        pre_prepare(2, requests=(signed(guest_op("revoke", CLIENT), 1, HOST), late)),
        pre_prepare(3, requests=(signed(guest_op("admit", CLIENT), 2, HOST), first)),
    ]
    outcomes = []
    for replica_id in (1, 2, 3):
        backup = core(replica_id, GuestList(HOST.public_key, (CLIENT.public_key,)))
        backup.receive(late)  # admitted on arrival: relayed, and waited for
        assert CLIENT.public_key in backup.waiting_requests()
        drain(backup)
        for pp in batches:
            commit_batch(backup, pp)
        ready = drain(backup)
        assert executed(ready) == [(CLIENT.public_key, 1), (HOST.public_key, 1),
                                   (HOST.public_key, 2)]  # fmt: skip
        assert (CLIENT.public_key, 2) not in replies(ready)
        assert backup.dropped["client_not_admitted_at_execution"] == 1
        assert backup.client_table.last_timestamp(CLIENT.public_key) == 1
        assert backup.waiting_requests() == {}, "V1: a refused request is not waited for"
        backup.receive(first)
        ready = drain(backup)
        assert replies(ready) == [(CLIENT.public_key, 1)] and ready.executed == ()
        outcomes.append((backup.state_digest(), backup.client_table.snapshot()))
    assert len(set(outcomes)) == 1


# ------------------------------------------------------------------------ a full table


def test_a_full_table_refuses_new_clients_and_never_evicts():
    """N8, N8': under open admission the reply cache holds the first `client_table_max`
    clients; a new client's request is then refused at execution (no record, no reply), the
    clients in the table keep being served, and nobody is evicted: an old request of theirs
    stays refused whatever the number of new keys."""
    backup = core(1, client_table_max=2)
    commit_batch(backup, pre_prepare(1, requests=(
        request(1, client=CLIENT), request(1, client=OTHER_CLIENT), request(1, client=THIRD_CLIENT),
    )))  # fmt: skip
    ready = drain(backup)
    assert executed(ready) == [(CLIENT.public_key, 1), (OTHER_CLIENT.public_key, 1)]
    assert backup.dropped["client_table_full_at_execution"] == 1
    assert backup.client_table.get(THIRD_CLIENT.public_key) is None
    for sequence in range(2, 6):
        sybil = ed25519_signer(f"sybil-{sequence}")
        commit_batch(backup, pre_prepare(sequence, requests=(
            request(1, client=sybil), request(sequence, client=OTHER_CLIENT),
        )))  # fmt: skip
    assert executed(drain(backup)) == [(OTHER_CLIENT.public_key, s) for s in range(2, 6)]
    assert backup.dropped["client_table_full_at_execution"] == 5
    assert len(backup.client_table) == 2
    commit_batch(backup, pre_prepare(6, requests=(request(1, client=CLIENT),)))
    assert executed(drain(backup)) == [], "N8: the old request did not run again"
    assert backup.client_table.last_timestamp(CLIENT.public_key) == 1


def test_a_full_table_refuses_a_new_client_on_arrival_before_its_signature_is_checked():
    """N8': a backup whose reply cache is full drops a new client's request on arrival (it will
    never execute), before its signature; a client in the table is served."""
    verifier = CountingVerifier()
    backup = core(1, verifier=verifier, client_table_max=1)
    commit_batch(backup, pre_prepare(1, requests=(request(1, client=CLIENT),)))
    drain(backup)
    calls = verifier.calls
    backup.receive(request(2, client=OTHER_CLIENT))
    assert backup.dropped["client_table_full"] == 1 and verifier.calls == calls
    assert drain(backup).messages == ()
    backup.receive(request(2, client=CLIENT))
    assert CLIENT.public_key in backup.waiting_requests()


def test_a_replica_whose_table_fills_stops_waiting_for_new_clients():
    """V1 with N8': a backup that accepted a new client's request while its cache had room
    stops waiting for it once the cache is full (no primary will ever order it to execution:
    a primary whose cache filled first refuses it on arrival), instead of blaming the
    primary. Its own clients' requests are still waited for."""
    backup = core(1, client_table_max=2)
    backup.receive(request(5, client=THIRD_CLIENT))
    backup.receive(request(5, client=CLIENT))
    drain(backup)
    assert set(backup.waiting_requests()) == {THIRD_CLIENT.public_key, CLIENT.public_key}
    commit_batch(backup, pre_prepare(1, requests=(
        request(1, client=CLIENT), request(1, client=OTHER_CLIENT),
    )))  # fmt: skip
    assert set(backup.waiting_requests()) == {CLIENT.public_key}


def test_the_client_table_refuses_to_record_a_new_client_when_full():
    """N8': the table itself never evicts; entries keep the order of first execution, so its
    snapshot (covered by the checkpoint digest) depends only on the executed history."""
    table = ClientTable(2)
    table.record(b"a" * 32, 1, b"r", 1)
    table.record(b"b" * 32, 1, b"r", 2)
    table.record(b"a" * 32, 2, b"s", 3)
    assert table.full and table.has_room_for(b"a" * 32) and not table.has_room_for(b"c" * 32)
    with pytest.raises(ValueError, match="full"):
        table.record(b"c" * 32, 1, b"r", 4)
    assert [entry[0] for entry in unpackb_canonical(table.snapshot())] == [b"a" * 32, b"b" * 32]
    copy = ClientTable(2)
    copy.restore(table.snapshot())
    assert copy.snapshot() == table.snapshot() and copy.digest() == table.digest()
    assert copy.get(b"a" * 32) == (2, b"s", 3)


# ------------------------------------------------------------------------ the trade ledger


def test_the_trade_ledger_admits_its_participants():
    """N8': the ledger serves founders and admitted participants (suspended ones too: they get
    their refusal), never a key it does not know; `LedgerService` (what `pbft replica` runs)
    asks the ledger."""
    from tradeapp.commands import PartySuspend
    from tradeapp.scenario import FX_ADMIN, cast_driver, placeholder_key
    from tradeapp.service import LedgerService

    driver = cast_driver(0)
    ledger = driver.ledger
    assert ledger.admits(driver.key(FX_ADMIN)) and ledger.admits(driver.key("BANK-A"))
    assert not ledger.admits(placeholder_key("STRANGER"))
    driver.ok(FX_ADMIN, PartySuspend(participant_id="BANK-A"))
    assert ledger.admits(driver.key("BANK-A"))
    service = LedgerService({FX_ADMIN: driver.key(FX_ADMIN)})
    assert service.admits(driver.key(FX_ADMIN)) and not service.admits(driver.key("BANK-A"))


def test_a_stranger_gets_nothing_executed_by_the_replicated_ledger():
    """N8': in the simulated ledger cluster a key that is no participant has no command
    executed (and leaves no audit event), while the founder is served."""
    from simulations.trade import FX_ADMIN, ledger_of, trade_simulation
    from tradeapp.commands import GetParticipant

    sim = trade_simulation(seed=1)
    operation = GetParticipant(participant_id=FX_ADMIN).encode()
    stranger = sim.add_client("stranger", 3, 20.0, lambda c, i: operation, correct=False)
    founder = sim.add_client(FX_ADMIN, 2, 20.0, lambda c, i: operation)
    sim.at(2_000, lambda s: None, fault=False)
    assert sim.run(until_ms=5_000)
    assert [op[2] is not None for op in founder.record.operations] == [True, True]
    assert stranger.record.operations[0][2] is None
    assert sum(sim.replicas[r].dropped["client_not_admitted"] for r in range(4)) > 0
    for replica in range(4):
        signers = {event.signer for event in ledger_of(sim, replica).audit_events}
        assert signers == {sim.make_signer(FX_ADMIN).public_key}


# ------------------------------------------------------------------------ the simulator


def test_a_simulation_can_list_its_clients_in_the_configuration():
    """N8': `admit_clients` lists the simulation's clients' keys, and named extra ones."""
    sim = Simulation(seed=1, clients=2, admit_clients=("extra",))
    assert sim.config.clients == tuple(
        sim.make_signer(name).public_key for name in ("client-0", "client-1", "extra")
    )
    assert Simulation(seed=1, clients=2).config.clients == ()


def _run(name: str, seed: int = 1) -> Simulation:
    sim = CATALOGUE[name].build(seed)
    result = run_scenario(CATALOGUE[name], seed, sim)
    assert result.violations == [], [v.as_dict() for v in result.violations][:5]
    assert result.liveness
    return sim


def _dropped(sim: Simulation, reason: str) -> int:
    return sum(sim.replicas[r].dropped[reason] for r in sim.correct_replicas())


def test_a_sybil_flood_then_a_replay_executes_nothing_twice_under_open_admission():
    """N8, N8' (byz_client_key_flood_replay; before N8' the flood made the cache evict the
    correct clients and their replayed first requests executed again): the flood takes the
    cache's free places, then is refused on arrival and at execution; the correct clients,
    already in the cache, are served to the end, and every replay of their first requests is
    refused."""
    sim = _run("byz_client_key_flood_replay")
    replay = next(iter(sim.behaviours.values()))
    flood = sim.clients[-1].session.behaviour
    assert replay.replayed > 0 and flood.sent > 300
    assert _dropped(sim, "client_table_full") > 0
    assert _dropped(sim, "client_table_full_at_execution") > 0
    assert _dropped(sim, "old_request") > 0
    for r in sim.correct_replicas():
        assert len(sim.replicas[r].client_table) == 8
        assert sim.replicas[r].view_changes_started == 0


def test_a_sybil_flood_is_refused_on_arrival_when_the_clients_are_listed():
    """N8' (byz_client_key_flood_replay_admitted): with the correct clients listed, every
    request of the flood is dropped on arrival and the cache holds the listed clients only."""
    sim = _run("byz_client_key_flood_replay_admitted")
    flood = sim.clients[-1].session.behaviour
    assert _dropped(sim, "client_not_admitted") >= flood.sent > 300
    assert _dropped(sim, "client_table_full_at_execution") == 0
    for r in sim.correct_replicas():
        assert len(sim.replicas[r].client_table) == 4


# ------------------------------------------------------------------------ pbft keygen


def test_keygen_lists_its_clients_unless_asked_for_open_admission(tmp_path, capsys):
    """N8': `pbft keygen --clients N` admits exactly the N clients it writes keys for;
    `--open-admission` lists none."""
    from pbft.runtime.cluster import open_cluster_files

    assert main(["keygen", "--clients", "3", "--out", str(tmp_path / "a")]) == 0
    files = open_cluster_files(tmp_path / "a")
    assert files.config.clients == tuple(s.public_key for s in files.client_signers())
    assert "the only 3 admitted" in capsys.readouterr().out
    assert main(["keygen", "--clients", "2", "--out", str(tmp_path / "b"),
                 "--open-admission"]) == 0  # fmt: skip
    assert open_cluster_files(tmp_path / "b").config.clients == ()
    assert main(["keygen", "--clients", "3", "--out", str(tmp_path / "c"),
                 "--set", "client_table_max=2"]) == 2  # fmt: skip
    assert "client_table_max" in capsys.readouterr().err
