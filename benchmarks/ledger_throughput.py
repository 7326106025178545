"""Ledger commands per second through a 4-replica local cluster, beside the plain key-value
figure from the same harness, so that the application's cost is visible (issue 6).

Harness: a fresh cluster of 4 `pbft replica` processes on 127.0.0.1 (TLS, SQLite storage,
default bounds), `--workers` closed-loop workers for `--duration` seconds, each with at most one
request outstanding.

- ledger (`--app tradeapp.service:ledger`): each worker owns a cast of its own (issuing bank,
  advising/lending bank, customs, carrier, exporter, importer: 6 participants, 6 keys, one
  `TradeClient` each, admitted before the clock starts) and loops over one trade: export
  declaration lodged/accepted/released, invoice registered, financing requested, approved,
  disbursed, a second bank trying to finance the same receivable (ALREADY_ENCUMBERED),
  collection recorded, repaid, closed; an LC applied, issued, advised, an eBL issued, a
  presentation opened, eBL attached, completed, marked complying, honoured, reimbursed.
  24 ordered commands per trade; every outcome is checked.
- kv (`--app kv`): the same number of workers, one key each, `kv_put` of a 64-byte value.

    python benchmarks/ledger_throughput.py [--duration 10] [--workers 8] [--dir DIR] [--progress]

Output: a header line, a table (one row per application) and, as the last line, one JSON object
with `ledger_commands_per_s`, `kv_requests_per_s` and more, all on stdout. Progress (admissions,
then each measurement) goes to stderr, only when it is a terminal unless `--progress`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pbft.app import kv_decode_result, kv_put
from pbft.crypto import sha256
from pbft.ed25519 import Ed25519Signer
from pbft.runtime.bench import cpu_seconds
from pbft.runtime.cli_common import Progress, make_table, print_table
from pbft.runtime.client import connect
from pbft.runtime.cluster import LocalCluster, generate_cluster
from tradeapp import ErrorCode, Role
from tradeapp.banking_calendar import MS_PER_DAY, format_date
from tradeapp.client import TradeClient
from tradeapp.commands import Accepted, CalDefine, Operation, PartyAdmit
from tradeapp.scenario import FX_ADMIN
from tradeapp.service import write_founders

USD = "USD"
#: Each worker's cast: suffix -> (role, admitted by FX-ADMIN (None) or by the worker's bank).
CAST_ROLES = {
    "BI": (Role.BANK, None), "BA": (Role.BANK, None), "CU": (Role.CUSTOMS, None),
    "CA": (Role.CARRIER, None), "EX": (Role.TRADER, "BA"), "IM": (Role.TRADER, "BI"),
}  # fmt: skip


class Tally:
    def __init__(self) -> None:
        self.commands = 0
        self.unexpected: list[str] = []
        self.latencies_s: list[float] = []


def trade_steps(w: int, i: int, today: int) -> list[tuple[str, Operation, ErrorCode | None]]:
    """One trade of worker `w`, iteration `i`: (cast suffix, command, expected refusal)."""
    from tradeapp.commands import (
        DeclAccept, DeclLodge, DeclRelease, EblIssue, FinApprove, FinClose, FinDisburse,
        FinRepay, FinRequest, InvRegister, LcAdvise, LcApply, LcIssue, PresAttach, PresComplete,
        PresHonour, PresMarkComplying, PresOpen, PresReimburse, RcvRecordCollection,
    )  # fmt: skip

    p = f"W{w}"
    t = f"{w}-{i}"
    amount = 1_000_000 + i
    shipped = format_date(today - 1)
    return [
        ("EX", DeclLodge(decl_id=f"D-{t}", customs=f"{p}-CU", buyer=f"{p}-IM",
                         goods_description="lamps", hs_code="9405.42", currency=USD,
                         declared_value_minor=amount), None),
        ("CU", DeclAccept(decl_id=f"D-{t}"), None),
        ("CU", DeclRelease(decl_id=f"D-{t}"), None),
        ("EX", InvRegister(invoice_id=f"I-{t}", buyer=f"{p}-IM", invoice_no=f"INV-{t}",
                           currency=USD, amount_minor=amount, issue_date=shipped), None),
        ("EX", FinRequest(fin_id=f"F-{t}", lender=f"{p}-BA", invoice_id=f"I-{t}",
                          decl_ids=[f"D-{t}"], currency=USD, amount_minor=amount * 8 // 10), None),
        ("BA", FinApprove(fin_id=f"F-{t}", rate_bp=450), None),
        ("BA", FinDisburse(fin_id=f"F-{t}"), None),
        ("EX", FinRequest(fin_id=f"G-{t}", lender=f"{p}-BI", invoice_id=f"I-{t}",
                          decl_ids=[f"D-{t}"], currency=USD, amount_minor=1000), None),
        ("BI", FinApprove(fin_id=f"G-{t}", rate_bp=400), ErrorCode.ALREADY_ENCUMBERED),
        ("BA", RcvRecordCollection(invoice_id=f"I-{t}", amount_minor=amount,
                                   collection_id=f"COL-{t}"), None),
        ("BA", FinRepay(fin_id=f"F-{t}", amount_minor=amount * 8 // 10,
                        repayment_id=f"RP-{t}"), None),
        ("BA", FinClose(fin_id=f"F-{t}"), None),
        ("IM", LcApply(lc_id=f"L-{t}", issuing_bank=f"{p}-BI", advising_bank=f"{p}-BA",
                       beneficiary=f"{p}-EX", currency=USD, amount_minor=amount,
                       expiry_date=format_date(today + 60),
                       latest_shipment_date=format_date(today + 30),
                       presentation_period_days=21, goods_description="lamps"), None),
        ("BI", LcIssue(lc_id=f"L-{t}"), None),
        ("BA", LcAdvise(lc_id=f"L-{t}"), None),
        ("CA", EblIssue(bl_no=f"B-{t}", shipper=f"{p}-EX", consignee=f"{p}-IM",
                        holder=f"{p}-EX", goods_description="lamps", port_of_loading="Qingdao",
                        port_of_discharge="Rotterdam", shipped_on_board_date=shipped), None),
        ("EX", PresOpen(pres_id=f"P-{t}", lc_id=f"L-{t}"), None),
        ("EX", PresAttach(pres_id=f"P-{t}", doc_type="ebl", ref=f"{p}-CA/B-{t}",
                          content_digest=None), None),
        ("EX", PresAttach(pres_id=f"P-{t}", doc_type="packing_list", ref="PL",
                          content_digest=sha256(t.encode())), None),
        ("EX", PresComplete(pres_id=f"P-{t}", amount_minor=amount), None),
        ("BI", PresMarkComplying(pres_id=f"P-{t}"), None),
        ("BI", PresHonour(pres_id=f"P-{t}"), None),
        ("BI", PresReimburse(pres_id=f"P-{t}"), None),
        ("BI", PresHonour(pres_id=f"P-{t}"), ErrorCode.ALREADY_HONOURED),
    ]  # fmt: skip


async def _replica_cpu(cluster: LocalCluster) -> float:
    return sum(cpu_seconds(p.pid) for p in cluster.processes.values())


async def _show_elapsed(task, duration_s: float) -> None:
    """Move `task` (total `duration_s`) with the time since it started, until cancelled."""
    began = trio.current_time()
    while True:
        task.update(round(min(trio.current_time() - began, duration_s), 1))
        await trio.sleep(0.2)


async def _run_workers(worker, workers: int, clock, duration_s: float) -> None:
    """Run `worker(0)` … `worker(workers - 1)` until each returns, the progress `clock` showing
    the time elapsed of `duration_s` meanwhile."""
    async with trio.open_nursery() as nursery:
        async with trio.open_nursery() as workers_nursery:
            nursery.start_soon(_show_elapsed, clock, duration_s)
            for w in range(workers):
                workers_nursery.start_soon(worker, w)
        nursery.cancel_scope.cancel()


async def measure_ledger(directory: Path, workers: int, duration_s: float,
                         progress: Progress = Progress(False)) -> dict:  # fmt: skip
    files = generate_cluster(directory, clients=0)
    admin = Ed25519Signer.generate()
    write_founders(directory, {FX_ADMIN: admin.public_key})
    signers = {f"W{w}-{s}": Ed25519Signer.generate() for w in range(workers) for s in CAST_ROLES}
    today = time.time_ns() // 1_000_000 // MS_PER_DAY
    tally = Tally()
    with LocalCluster(files, replica_args=["--app", "tradeapp.service:ledger"],
                      log_level="WARNING") as cluster:  # fmt: skip
        cluster.start_all()
        await cluster.wait_all_ready()
        async with AsyncExitStack() as stack:
            async def open_client(pid: str, signer: Ed25519Signer) -> TradeClient:
                return await stack.enter_async_context(
                    TradeClient.connect(files.config, signer, actor=pid, timeout_s=60)
                )

            fx = await open_client(FX_ADMIN, admin)
            clients = {pid: await open_client(pid, s) for pid, s in signers.items()}
            await fx.run(CalDefine(place="CN-QD", weekend=[6, 7], holidays=[],
                                   utc_offset_minutes=480))  # fmt: skip
            admitted = progress.task("ledger: admitting participants", workers * len(CAST_ROLES))
            for w in range(workers):  # admissions: before the clock starts
                for suffix, (role, sponsor) in CAST_ROLES.items():
                    pid = f"W{w}-{suffix}"
                    by = fx if sponsor is None else clients[f"W{w}-{sponsor}"]
                    result = await by.run(PartyAdmit(
                        participant_id=pid, role=role, legal_name=pid, country="CN",
                        tax_id=f"TAX-{pid}", public_key=signers[pid].public_key, place="CN-QD"))  # fmt: skip
                    assert isinstance(result, Accepted), (pid, result)
                    admitted.advance()
            cpu_before = await _replica_cpu(cluster)
            started = trio.current_time()
            deadline = started + duration_s

            async def worker(w: int) -> None:
                i = 0
                while trio.current_time() < deadline:
                    for suffix, op, expected in trade_steps(w, i, today):
                        sent = trio.current_time()
                        result = await clients[f"W{w}-{suffix}"].run(op)
                        tally.latencies_s.append(trio.current_time() - sent)
                        tally.commands += 1
                        got = None if isinstance(result, Accepted) else result.code
                        if got != expected:
                            tally.unexpected.append(f"W{w} {op.NAME}: {result}")
                    i += 1

            await _run_workers(worker, workers, progress.task("ledger: trades (s)", duration_s),
                               duration_s)  # fmt: skip
            elapsed = trio.current_time() - started  # the last trades run past the deadline
            cpu_s = await _replica_cpu(cluster) - cpu_before
        cluster.stop_all(signal.SIGTERM)
    return {
        "commands": tally.commands, "seconds": elapsed, "per_s": tally.commands / elapsed,
        "latency_ms_p50": _quantile(tally.latencies_s, 0.5) * 1000,
        "latency_ms_p99": _quantile(tally.latencies_s, 0.99) * 1000,
        "replica_cpu_ms_per_op": cpu_s / max(tally.commands, 1) * 1000,
        "unexpected": tally.unexpected,
    }  # fmt: skip


async def measure_kv(directory: Path, workers: int, duration_s: float,
                     progress: Progress = Progress(False)) -> dict:  # fmt: skip
    files = generate_cluster(directory, clients=0)
    signers = [Ed25519Signer.generate() for _ in range(workers)]
    latencies: list[float] = []
    count = 0
    failures = 0
    with LocalCluster(files, replica_args=["--app", "kv"], log_level="WARNING") as cluster:
        cluster.start_all()
        await cluster.wait_all_ready()
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(
                connect(files.config, s, timeout_s=60, wait_connected_s=10)) for s in signers]  # fmt: skip
            cpu_before = await _replica_cpu(cluster)
            started = trio.current_time()
            deadline = started + duration_s

            async def worker(w: int) -> None:
                nonlocal count, failures
                i = 0
                while trio.current_time() < deadline:
                    sent = trio.current_time()
                    result = await clients[w].submit(kv_put(f"k{w}", b"%063d" % i))
                    latencies.append(trio.current_time() - sent)
                    count += 1
                    failures += kv_decode_result(result)[0] != "ok"
                    i += 1

            await _run_workers(worker, workers, progress.task("kv: puts (s)", duration_s),
                               duration_s)  # fmt: skip
            elapsed = trio.current_time() - started
            cpu_s = await _replica_cpu(cluster) - cpu_before
        cluster.stop_all(signal.SIGTERM)
    return {
        "commands": count, "seconds": elapsed, "per_s": count / elapsed,
        "latency_ms_p50": _quantile(latencies, 0.5) * 1000,
        "latency_ms_p99": _quantile(latencies, 0.99) * 1000,
        "replica_cpu_ms_per_op": cpu_s / max(count, 1) * 1000,
        "unexpected": ["kv put failed"] * failures,
    }  # fmt: skip


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=8, help="closed-loop workers")
    parser.add_argument("--dir", default=None, help="work directory (default: a temp dir, removed at the end)")
    parser.add_argument("--progress", action="store_true",
                        help="report progress on stderr even when it is not a terminal")
    args = parser.parse_args(argv)
    directory = Path(args.dir or tempfile.mkdtemp(prefix="ledger-bench-"))
    print(f"4 replicas on 127.0.0.1, {args.workers} closed-loop workers, {args.duration:.0f} s "
          f"per row; work directory {directory}", flush=True)  # fmt: skip
    try:
        with Progress(True if args.progress else None) as progress:
            ledger = trio.run(measure_ledger, directory / "ledger", args.workers, args.duration,
                              progress)  # fmt: skip
            kv = trio.run(measure_kv, directory / "kv", args.workers, args.duration, progress)
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    rows = [[name, row["commands"], f"{row['per_s']:.1f}", f"{row['latency_ms_p50']:.2f}",
             f"{row['latency_ms_p99']:.2f}", f"{row['replica_cpu_ms_per_op']:.3f}"]
            for name, row in (("ledger", ledger), ("kv", kv))]  # fmt: skip
    print_table(make_table(["app", "ops", "ops/s", "p50 ms", "p99 ms", "replica CPU ms/op"],
                           rows, numeric=[False] + [True] * 5))  # fmt: skip
    unexpected = ledger["unexpected"] + kv["unexpected"]
    for line in unexpected[:10]:
        print("UNEXPECTED:", line)
    summary = {
        "ledger_commands_per_s": round(ledger["per_s"], 1),
        "kv_requests_per_s": round(kv["per_s"], 1),
        "ledger_to_kv_ratio": round(ledger["per_s"] / kv["per_s"], 3) if kv["per_s"] else None,
        "ledger_latency_ms_p50": round(ledger["latency_ms_p50"], 2),
        "kv_latency_ms_p50": round(kv["latency_ms_p50"], 2),
        "ledger_replica_cpu_ms_per_command": round(ledger["replica_cpu_ms_per_op"], 3),
        "kv_replica_cpu_ms_per_request": round(kv["replica_cpu_ms_per_op"], 3),
        "workers": args.workers,
        "ledger_identities": args.workers * len(CAST_ROLES),
        "duration_s": args.duration,
        "unexpected_outcomes": len(unexpected),
    }
    print(json.dumps(summary))
    return 0 if not unexpected else 1


if __name__ == "__main__":
    sys.exit(main())
