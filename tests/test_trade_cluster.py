"""Scenarios 1 and 7 of docs/TRADE-DOMAIN.md on a real local cluster, black-box through
`TradeClient`: 4 `pbft replica --app tradeapp.service:ledger` processes on 127.0.0.1 (TLS,
SQLite storage), one client per participant signing with its own key; a replica killed with
SIGKILL and restarted. Also `make demo`'s program end to end. Every wait is bounded."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from pbft.crypto import sha256
from pbft.ed25519 import Ed25519Signer
from pbft.runtime.cluster import LocalCluster, generate_cluster
from tradeapp import ErrorCode
from tradeapp.banking_calendar import MS_PER_DAY, format_date
from tradeapp.cli_demo import DEMO_BOUNDS, admission_phase, replica_digests, verified_audit_chain
from tradeapp.client import TradeClient
from tradeapp.commands import Accepted, Rejected
from tradeapp.scenario import CALENDARS, CAST, FX_ADMIN
from tradeapp.service import write_founders

ROOT = Path(__file__).resolve().parent.parent
USD_100K = 10_000_000


async def _admit(clients: dict[str, TradeClient], keys: dict[str, bytes]) -> None:
    for step in admission_phase(keys).steps:
        result = await clients[step.actor].run(step.op)
        assert isinstance(result, Accepted), (step, result)


def ok(result) -> dict:
    assert isinstance(result, Accepted), result
    return result.value


async def scenario_1(c: dict[str, TradeClient], midway: Callable[[], Awaitable[None]]) -> None:
    """Scenario 1 through the typed methods; `midway` runs between the two halves."""
    today = time.time_ns() // 1_000_000 // MS_PER_DAY
    shipped = format_date(today - 1)
    ok(await c["IMP-NL"].lc_apply(
        lc_id="LC-1", issuing_bank="BANK-I", advising_bank="BANK-A", beneficiary="EXP-QD",
        currency="USD", amount_minor=USD_100K, expiry_date=format_date(today + 60),
        latest_shipment_date=format_date(today + 30), presentation_period_days=21,
        goods_description="LED lamps, 20,000 pcs"))  # fmt: skip
    ok(await c["BANK-I"].lc_issue(lc_id="LC-1"))
    ok(await c["BANK-A"].lc_advise(lc_id="LC-1"))
    ok(await c["EXP-QD"].decl_lodge(
        decl_id="D-1", customs="CUSTOMS-QD", buyer="IMP-NL", goods_description="LED lamps",
        hs_code="9405.42", currency="USD", declared_value_minor=USD_100K))  # fmt: skip
    ok(await c["CUSTOMS-QD"].decl_accept(decl_id="D-1"))
    ok(await c["CUSTOMS-QD"].decl_release(decl_id="D-1"))
    ebl_id = ok(await c["CARRIER-1"].ebl_issue(
        bl_no="BL-1", shipper="EXP-QD", consignee="IMP-NL", holder="EXP-QD",
        goods_description="LED lamps", port_of_loading="Qingdao", port_of_discharge="Rotterdam",
        shipped_on_board_date=shipped))["ebl_id"]  # fmt: skip
    ok(await c["EXP-QD"].inv_register(
        invoice_id="INV-1", buyer="IMP-NL", invoice_no="INV-0001", currency="USD",
        amount_minor=USD_100K, issue_date=shipped))  # fmt: skip
    await midway()
    exporter = c["EXP-QD"]
    ok(await exporter.pres_open(pres_id="P-1", lc_id="LC-1"))
    ok(await exporter.pres_attach(pres_id="P-1", doc_type="ebl", ref=ebl_id, content_digest=None))
    ok(await exporter.pres_attach(pres_id="P-1", doc_type="invoice", ref="INV-1",
                                  content_digest=None))  # fmt: skip
    ok(await exporter.pres_attach(pres_id="P-1", doc_type="packing_list", ref="PL-1",
                                  content_digest=sha256(b"packing list")))  # fmt: skip
    ok(await exporter.pres_complete(pres_id="P-1", amount_minor=USD_100K))
    issuing = c["BANK-I"]
    ok(await issuing.pres_mark_complying(pres_id="P-1"))
    ok(await issuing.pres_honour(pres_id="P-1"))
    ok(await issuing.pres_reimburse(pres_id="P-1"))
    ok(await issuing.pres_release_docs(pres_id="P-1"))
    ok(await c["IMP-NL"].ebl_surrender_request(ebl_id=ebl_id))
    ok(await c["CARRIER-1"].ebl_surrender_accept(ebl_id=ebl_id))
    ok(await issuing.lc_close(lc_id="LC-1"))


async def check_scenario_1_outcome(
    c: dict[str, TradeClient], cluster: LocalCluster, founders: dict[str, bytes]
) -> None:
    lc = ok(await c[FX_ADMIN].get_lc(lc_id="LC-1"))  # FX_ADMIN can read the LC
    assert lc["status"] == "CLOSED" and lc["drawn_minor"] == USD_100K
    ebl = ok(await c["IMP-NL"].get_ebl(ebl_id="CARRIER-1/BL-1"))
    assert ebl["status"] == "SURRENDERED" and ebl["holder"] == "IMP-NL"
    refused = await c["BANK-B"].get_lc(lc_id="LC-1")  # BANK-B cannot
    assert isinstance(refused, Rejected) and refused.code is ErrorCode.FORBIDDEN
    events, broken_at = await verified_audit_chain(c[FX_ADMIN], founders)
    setup = len(CAST) + len(CALENDARS)  # admissions and calendars
    assert broken_at is None and events == setup + 20  # then scenario 1's 20 commands
    rows = await replica_digests(cluster)  # every replica asked on its own
    assert len({row[4] for row in rows}) == 1, rows
    assert {row[5] for row in rows} == {events}


async def run_on_cluster(
    tmp_path: Path, body: Callable[[dict[str, TradeClient], LocalCluster], Awaitable[None]]
) -> None:
    files = generate_cluster(tmp_path, clients=0, bounds=DEMO_BOUNDS)
    signers = {pid: Ed25519Signer.generate() for pid in [FX_ADMIN, *(m.participant_id for m in CAST)]}
    keys = {pid: s.public_key for pid, s in signers.items()}
    write_founders(tmp_path, {FX_ADMIN: keys[FX_ADMIN]})
    with LocalCluster(files, replica_args=["--app", "tradeapp.service:ledger"]) as cluster:
        cluster.start_all()
        await cluster.wait_all_ready()
        async with AsyncExitStack() as stack:
            clients = {
                pid: await stack.enter_async_context(
                    TradeClient.connect(files.config, signer, actor=pid, timeout_s=20))
                for pid, signer in signers.items()
            }  # fmt: skip
            await _admit(clients, keys)
            await body(clients, cluster)


@pytest.mark.trio
async def test_scenario_1_on_a_real_cluster(tmp_path):
    """Scenario 1: the LC runs to its close; BANK-B cannot read it, FX_ADMIN can; the audit
    chain verifies; the four replicas' own state digests are equal."""
    founders: dict[str, bytes] = {}

    async def body(clients, cluster):
        async def nothing() -> None:
            pass

        await scenario_1(clients, nothing)
        founders[FX_ADMIN] = clients[FX_ADMIN].client.public_keys[0]
        await check_scenario_1_outcome(clients, cluster, founders)

    with trio.fail_after(60):
        await run_on_cluster(tmp_path, body)


@pytest.mark.trio
async def test_scenario_7_a_replica_crashes_mid_scenario_1_and_recovers(tmp_path):
    """Scenario 7: replica 2 gets SIGKILL halfway through scenario 1; the scenario completes
    on the other three; restarted from its storage, it catches up and ends with their digest."""
    crashed = 2

    async def body(clients, cluster):
        killed_at: list[int] = []

        async def crash() -> None:
            killed_at.append((await cluster.status(crashed))["last_executed"])
            cluster.kill(crashed, signal.SIGKILL)

        await scenario_1(clients, crash)
        assert not cluster.running(crashed)
        progressed = (await cluster.status(0))["last_executed"]
        assert progressed > killed_at[0]  # the scenario went on without it
        cluster.start(crashed)
        restarted = await cluster.wait_ready(crashed)
        assert restarted["last_executed"] < progressed
        founders = {FX_ADMIN: clients[FX_ADMIN].client.public_keys[0]}
        await check_scenario_1_outcome(clients, cluster, founders)

    with trio.fail_after(60):
        await run_on_cluster(tmp_path, body)


def test_make_demo_program_runs_and_exits_0():
    """`make demo` (tradeapp.cli_demo): scenarios 1, 4, 5, the double financing refused, a
    replica killed and restarted, equal digests; exit 0 with every process stopped."""
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "tradeapp.cli_demo"], cwd=ROOT, capture_output=True, text=True,
        timeout=110,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    out = completed.stdout
    assert "ALREADY_ENCUMBERED" in out and "RECEIVABLE_SETTLED" in out
    assert "EXCEEDS_RECORD" in out and "PAYEE_MISMATCH" in out
    assert "killed with SIGKILL" in out and "hash chain verifies" in out
    assert time.monotonic() - started < 110
