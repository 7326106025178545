"""Determinism (docs/TRADE-DOMAIN.md, Execution rules): the same ordered log on 4 fresh
instances gives equal digests, results and byte-identical reports after every sequence number;
snapshots restore to the same digest and the same future; junk snapshots are refused."""

from __future__ import annotations

import ast
from itertools import groupby
from pathlib import Path

import msgpack
import pytest

from tradeapp import TradeLedger
from tradeapp.commands import OPERATIONS, REPORTS, GetAudit
from tradeapp.scenario import FX_ADMIN, LedgerDriver, at, cast_driver, cast_ledger, placeholder_key

from .test_trade_scenarios import scenario_1
from .test_trade_stateful import random_log

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def logs() -> dict[str, LedgerDriver]:
    scenario = cast_driver(at("2024-03-01"))
    scenario_1(scenario)
    return {"scenario-1": scenario, "random-seed-11": random_log(11, 120)}


def _readings(ledger: TradeLedger) -> list[bytes]:
    """Every report for its readers, and the audit trail as FX_ADMIN and as a bank."""
    answers = []
    for reader in (FX_ADMIN, "CUSTOMS-QD", "TAX-QD"):
        for name in REPORTS:
            answers.append(ledger.query(OPERATIONS[name]().encode(), placeholder_key(reader)))
    for reader in (FX_ADMIN, "BANK-A"):
        answers.append(ledger.query(GetAudit(start=0, limit=256).encode(), placeholder_key(reader)))
    return answers


@pytest.mark.parametrize("name", ["scenario-1", "random-seed-11"])
def test_four_instances_agree_after_every_sequence_number(logs, name):
    driver = logs[name]
    replicas = [cast_ledger() for _ in range(4)]
    for _sequence, batch in groupby(driver.log, key=lambda entry: entry.context.sequence):
        for entry in batch:
            results = {replica.execute(entry.operation, entry.context) for replica in replicas}
            assert len(results) == 1
        assert len({replica.digest() for replica in replicas}) == 1
        readings = [_readings(replica) for replica in replicas]
        assert all(reading == readings[0] for reading in readings[1:])
    assert replicas[0].digest() == driver.ledger.digest()


@pytest.mark.parametrize("name", ["scenario-1", "random-seed-11"])
def test_a_snapshot_restores_the_same_digest_and_the_same_future(logs, name):
    """A restored instance (whose tables were rebuilt in sorted order) answers the rest of the
    log byte for byte like the original."""
    log = logs[name].log
    original = cast_ledger()
    for position, entry in enumerate(log):
        original.execute(entry.operation, entry.context)
        if position % 25 != 0:
            continue
        restored = cast_ledger()
        restored.restore(original.snapshot())
        assert restored.digest() == original.digest()
        assert restored.snapshot() == original.snapshot()
        twin = cast_ledger()
        twin.restore(original.snapshot())
        for later in log[position + 1 : position + 40]:
            assert restored.execute(later.operation, later.context) == twin.execute(
                later.operation, later.context
            )
        assert restored.digest() == twin.digest()
    replay = cast_ledger()
    replay.restore(original.snapshot())
    assert _readings(replay) == _readings(original)


def _tampered_snapshots(snapshot: bytes) -> list[bytes]:
    tag, tables, audit = msgpack.unpackb(snapshot, raw=False)
    genesis, events = audit
    variants = [
        b"",
        b"\xc1",
        msgpack.packb(["tradeapp/snapshot/0", tables, audit]),
        msgpack.packb([tag, tables]),
        msgpack.packb([tag, {**tables, "extra": {}}, audit]),
        msgpack.packb([tag, tables, [genesis, events[:-1] + [events[-1][:-1] + [b"x" * 32]]]]),
        msgpack.packb([tag, tables, [genesis, events[1:]]]),
        msgpack.packb([tag, tables, [b"\x00" * 32, events]]),
    ]
    participants = dict(tables["participant"])
    first = sorted(participants)[0]
    variants.append(
        msgpack.packb(
            [
                tag,
                {
                    **tables,
                    "participant": {**participants, first: {**participants[first], "role": 7}},
                },
                audit,
            ]
        )
    )
    variants.append(
        msgpack.packb(
            [tag, {**tables, "participant": {**participants, "OTHER": participants[first]}}, audit]
        )
    )
    variants.append(msgpack.packb([tag, {**tables, b"bin-key": {}}, audit], use_bin_type=True))
    wire_participant = {**participants[first], b"bin": 1}
    variants.append(
        msgpack.packb(
            [tag, {**tables, "participant": {**participants, first: wire_participant}}, audit],
            use_bin_type=True,
        )
    )
    # Same content, keys in a non-canonical order: refused, since equal states need equal bytes.
    reordered = {kind: tables[kind] for kind in reversed(sorted(tables))}
    variants.append(msgpack.packb([tag, reordered, audit]))
    return variants


def test_junk_snapshots_are_refused_and_change_nothing(logs):
    source = logs["scenario-1"].ledger
    snapshot = source.snapshot()
    target = cast_ledger()
    before = target.snapshot()
    for junk in _tampered_snapshots(snapshot):
        with pytest.raises(ValueError):
            target.restore(junk)
        assert target.snapshot() == before
    target.restore(snapshot)
    assert target.digest() == source.digest()


def test_the_founders_are_part_of_the_state():
    """Bootstrap: replicas built with different founding FX_ADMINs disagree from the start."""
    one = TradeLedger({FX_ADMIN: placeholder_key(FX_ADMIN)})
    other = TradeLedger({FX_ADMIN: placeholder_key("someone else")})
    assert one.genesis_hash != other.genesis_hash and one.digest() != other.digest()
    two = TradeLedger({"FX-2": b"\x02" * 32, "FX-1": b"\x01" * 32})
    same = TradeLedger({"FX-1": b"\x01" * 32, "FX-2": b"\x02" * 32})
    assert two.digest() == same.digest() and two.snapshot() == same.snapshot()
    for bad in (
        {},
        {"FX": b"short"},
        {"has space": b"\x01" * 32},
        {"A": b"\x01" * 32, "B": b"\x01" * 32},
    ):
        with pytest.raises(ValueError):
            TradeLedger(bad)


_STATE_MACHINE_MODULES = sorted(
    path for path in (ROOT / "tradeapp").glob("*.py") if not path.name.startswith(("client", "cli"))
)


@pytest.mark.parametrize("path", _STATE_MACHINE_MODULES, ids=lambda p: p.name)
def test_the_state_machine_uses_no_float_and_no_hash(path):
    """Execution rules: no floats, no hash() (salted per process), no id()."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            assert not isinstance(node.value, float), f"{path.name}:{node.lineno} float literal"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in ("hash", "float", "id"), f"{path.name}:{node.lineno}"
        if isinstance(node, ast.BinOp):
            assert not isinstance(node.op, ast.Div), f"{path.name}:{node.lineno} true division"
