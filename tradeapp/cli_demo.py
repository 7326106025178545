"""`make demo`: the trade-finance ledger on a real local 4-replica PBFT cluster.

    python -m tradeapp.cli_demo [--keep]        (also: python -m tradeapp.cli demo)

On 127.0.0.1, free ports, a temporary work directory: generates the replicas' and the
participants' Ed25519 keys, writes `founders.json` (the founding FX-ADMIN, read by
`tradeapp.service:ledger`), starts 4 `pbft replica` processes, and through `TradeClient` (one
per participant, each signing with its own key) admits the cast of docs/TRADE-DOMAIN.md and runs
scenario 1 (sight LC), scenario 4 (export receivable financing) with a second bank trying to
finance the already financed receivable, and scenario 5 (service-trade payments). Halfway
through scenario 1 one replica gets SIGKILL; it is restarted after scenario 4 and catches up.
Then it prints who did what, the refusals with their codes, the regulator's reports, the audit
chain check, and every replica's own state digest.

Business dates are relative to today (the ledger's time is the batch timestamp agreed through
consensus, i.e. the primary's clock), so the demo runs on any day.

Exit code 0 if every step had the expected outcome and the four digests are equal; 1 otherwise.
Every process it started is stopped on the way out (errors and Ctrl-C included).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import trio

from pbft.crypto import sha256
from pbft.ed25519 import Ed25519Signer, write_key_file
from pbft.runtime.cluster import LocalCluster, generate_cluster

from .audit import AuditEvent, genesis_hash, verify_chain
from .banking_calendar import MS_PER_DAY, format_date
from .cli import format_table, result_text
from .client import TradeClient, read_each_replica
from .commands import (
    Accepted,
    CalDefine,
    DeclAccept,
    DeclLodge,
    DeclRelease,
    EblIssue,
    EblSurrenderAccept,
    EblSurrenderRequest,
    FinApprove,
    FinClose,
    FinDisburse,
    FinRepay,
    FinRequest,
    GetAudit,
    GetLc,
    InvRegister,
    LcAdvise,
    LcApply,
    LcClose,
    LcIssue,
    Operation,
    PartyAdmit,
    PayServiceOutward,
    PresAttach,
    PresComplete,
    PresHonour,
    PresMarkComplying,
    PresOpen,
    PresReimburse,
    PresReleaseDocs,
    RcvRecordCollection,
    Rejected,
    ReportDeclarationsFinanced,
    ReportLcTotals,
    ReportOutstandingFinancing,
    ReportRejections,
    ReportTaxUsage,
    Result,
    TaxRegisterRecord,
)
from .errors import ErrorCode
from .scenario import CALENDARS, CAST, FX_ADMIN
from .service import DIGEST_OPERATION, LedgerService, write_founders

__all__ = ["DEMO_BOUNDS", "Phase", "Step", "demo_phases", "main", "run_demo"]

#: Short protocol timers so that a crash and a catch-up take seconds.
DEMO_BOUNDS = {
    "checkpoint_interval": 16,
    "log_window": 64,
    "request_timeout_ms": 1_000,
    "view_change_timeout_ms": 2_000,
    "client_retry_timeout_ms": 300,
    "state_transfer_timeout_ms": 500,
}
#: The replica that is killed mid-scenario-1 and restarted after scenario 4 (a backup).
CRASHED_REPLICA = 3
USD_100K = 10_000_000
PAYEE = "ACME Consulting GmbH"


@dataclass(frozen=True, slots=True)
class Step:
    """One ordered operation of the demo, by `actor`, with the outcome it must have
    (None: accepted; an ErrorCode: refused with it). `read`: on the read-only path."""

    actor: str
    op: Operation
    expect: ErrorCode | None = None
    read: bool = False


@dataclass(frozen=True, slots=True)
class Phase:
    title: str
    steps: tuple[Step, ...]


def demo_phases(today: int) -> list[Phase]:
    """The demo's script for business day `today` (days since 1970-01-01, UTC); keys are
    supplied when the cast is admitted (`admission_phase`)."""
    shipped, latest, expiry = format_date(today - 1), format_date(today + 30), format_date(today + 60)
    ebl_id = "CARRIER-1/BL-1"
    scenario_1a = (
        Step("IMP-NL", LcApply(
            lc_id="LC-1", issuing_bank="BANK-I", advising_bank="BANK-A", beneficiary="EXP-QD",
            currency="USD", amount_minor=USD_100K, expiry_date=expiry, latest_shipment_date=latest,
            presentation_period_days=21, goods_description="LED lamps, 20,000 pcs")),
        Step("BANK-I", LcIssue(lc_id="LC-1")),
        Step("BANK-A", LcAdvise(lc_id="LC-1")),
        Step("BANK-B", GetLc(lc_id="LC-1"), ErrorCode.FORBIDDEN, read=True),
        Step(FX_ADMIN, GetLc(lc_id="LC-1"), read=True),
        Step("EXP-QD", DeclLodge(
            decl_id="D-1", customs="CUSTOMS-QD", buyer="IMP-NL", goods_description="LED lamps",
            hs_code="9405.42", currency="USD", declared_value_minor=USD_100K)),
        Step("CUSTOMS-QD", DeclAccept(decl_id="D-1")),
        Step("CUSTOMS-QD", DeclRelease(decl_id="D-1")),
        Step("CARRIER-1", EblIssue(
            bl_no="BL-1", shipper="EXP-QD", consignee="IMP-NL", holder="EXP-QD",
            goods_description="LED lamps", port_of_loading="Qingdao",
            port_of_discharge="Rotterdam", shipped_on_board_date=shipped)),
        Step("EXP-QD", InvRegister(
            invoice_id="INV-1", buyer="IMP-NL", invoice_no="INV-0001", currency="USD",
            amount_minor=USD_100K, issue_date=shipped)),
    )  # fmt: skip
    scenario_1b = (
        Step("EXP-QD", PresOpen(pres_id="P-1", lc_id="LC-1")),
        Step("EXP-QD", PresAttach(pres_id="P-1", doc_type="ebl", ref=ebl_id, content_digest=None)),
        Step("EXP-QD", PresAttach(pres_id="P-1", doc_type="invoice", ref="INV-1",
                                  content_digest=None)),
        Step("EXP-QD", PresAttach(pres_id="P-1", doc_type="packing_list", ref="PL-1",
                                  content_digest=sha256(b"packing list"))),
        Step("EXP-QD", PresComplete(pres_id="P-1", amount_minor=USD_100K)),
        Step("BANK-I", PresMarkComplying(pres_id="P-1")),
        Step("BANK-I", PresHonour(pres_id="P-1")),
        Step("BANK-I", PresHonour(pres_id="P-1"), ErrorCode.ALREADY_HONOURED),
        Step("BANK-I", PresReimburse(pres_id="P-1")),
        Step("BANK-I", PresReleaseDocs(pres_id="P-1")),
        Step("IMP-NL", EblSurrenderRequest(ebl_id=ebl_id)),
        Step("CARRIER-1", EblSurrenderAccept(ebl_id=ebl_id)),
        Step("BANK-I", LcClose(lc_id="LC-1")),
    )  # fmt: skip
    scenario_4 = (
        Step("EXP-QD", DeclLodge(
            decl_id="D-4", customs="CUSTOMS-QD", buyer="IMP-NL", goods_description="LED lamps",
            hs_code="9405.42", currency="USD", declared_value_minor=USD_100K)),
        Step("CUSTOMS-QD", DeclAccept(decl_id="D-4")),
        Step("CUSTOMS-QD", DeclRelease(decl_id="D-4")),
        Step("EXP-QD", InvRegister(
            invoice_id="INV-4", buyer="IMP-NL", invoice_no="2024/0042", currency="USD",
            amount_minor=USD_100K, issue_date=shipped)),
        Step("EXP-QD", InvRegister(
            invoice_id="INV-4-COPY", buyer="IMP-NL", invoice_no="2024-42", currency="USD",
            amount_minor=USD_100K, issue_date=shipped), ErrorCode.DUPLICATE_INVOICE),
        Step("EXP-QD", FinRequest(
            fin_id="F-4", lender="BANK-A", invoice_id="INV-4", decl_ids=["D-4"], currency="USD",
            amount_minor=8_000_000)),
        Step("BANK-A", FinApprove(fin_id="F-4", rate_bp=450)),
        Step("BANK-A", FinDisburse(fin_id="F-4")),
        # The classic fraud: the same receivable offered to a second bank.
        Step("EXP-QD", FinRequest(
            fin_id="F-4X", lender="BANK-B", invoice_id="INV-4", decl_ids=["D-4"], currency="USD",
            amount_minor=1_000_000)),
        Step("BANK-B", FinApprove(fin_id="F-4X", rate_bp=400), ErrorCode.ALREADY_ENCUMBERED),
        Step(FX_ADMIN, ReportOutstandingFinancing(), read=True),
        Step(FX_ADMIN, FinRepay(fin_id="F-4", amount_minor=1, repayment_id="RP-X"),
             ErrorCode.UNAUTHORIZED),
        Step("BANK-A", RcvRecordCollection(
            invoice_id="INV-4", amount_minor=USD_100K, collection_id="COL-4")),
        Step("BANK-A", FinRepay(fin_id="F-4", amount_minor=8_000_000, repayment_id="RP-4")),
        Step("BANK-A", FinClose(fin_id="F-4")),
        Step("EXP-QD", FinRequest(
            fin_id="F-4B", lender="BANK-B", invoice_id="INV-4", decl_ids=["D-4"], currency="USD",
            amount_minor=1_000_000)),
        Step("BANK-B", FinApprove(fin_id="F-4B", rate_bp=400), ErrorCode.RECEIVABLE_SETTLED),
    )  # fmt: skip

    def payment(payment_id: str, amount: int, payee: str = PAYEE) -> PayServiceOutward:
        return PayServiceOutward(
            payment_id=payment_id, record_id="TR-5", payer="SVC-CN", payee=payee,
            currency="EUR", amount_minor=amount,
        )  # fmt: skip

    scenario_5 = (
        Step("TAX-QD", TaxRegisterRecord(
            record_id="TR-5", payer="SVC-CN", payee=PAYEE, currency="EUR",
            amount_minor=5_000_000, contract_ref="SVC-2024-7")),
        Step("BANK-B", payment("PAY-1", 3_000_000)),
        Step("BANK-A", payment("PAY-2", 2_000_000)),
        Step("BANK-B", payment("PAY-3", 1), ErrorCode.EXCEEDS_RECORD),
        Step("BANK-B", payment("PAY-4", 1, "Someone Else Ltd"), ErrorCode.PAYEE_MISMATCH),
    )  # fmt: skip
    return [
        Phase("scenario 1, first half: LC issued and advised, goods released, eBL, invoice",
              scenario_1a),
        Phase("scenario 1, second half: complying presentation, honour, eBL surrendered, LC closed",
              scenario_1b),
        Phase("scenario 4: export receivable financing (and a second bank tries the same "
              "receivable)", scenario_4),
        Phase("scenario 5: service-trade payments against a tax record", scenario_5),
    ]  # fmt: skip


def admission_phase(keys: dict[str, bytes]) -> Phase:
    """docs/TRADE-DOMAIN.md "Common setup" with the participants' real public keys."""
    steps = [
        Step(member.admitted_by, PartyAdmit(
            participant_id=member.participant_id, role=member.role,
            legal_name=f"{member.participant_id} Ltd", country=member.country,
            tax_id=member.tax_id, public_key=keys[member.participant_id], place=member.place))
        for member in CAST
    ]  # fmt: skip
    for place in sorted(CALENDARS):
        weekend, offset = CALENDARS[place]
        steps.append(Step(FX_ADMIN, CalDefine(place=place, weekend=weekend, holidays=[],
                                              utc_offset_minutes=offset)))  # fmt: skip
    return Phase("common setup: FX-ADMIN admits banks, carrier, authorities; banks onboard "
                 "their traders", tuple(steps))  # fmt: skip


# ---------------------------------------------------------------------------- running


class DemoFailure(Exception):
    """A step had an outcome the script did not expect, or the replicas disagree."""


@dataclass
class Journal:
    """What happened: one row per step."""

    rows: list[list[object]] = field(default_factory=list)
    refusals: list[list[object]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    #: Reports read during the scenarios: (title, result).
    reports: list[tuple[str, Result]] = field(default_factory=list)

    def record(self, phase: int, step: Step, result: Result) -> None:
        op = step.op
        target = "" if op.TARGET is None else str(getattr(op, op.TARGET))
        if op.NAME == "ebl.issue":
            target = f"{step.actor}/{op.bl_no}"  # type: ignore[attr-defined]
        if op.NAME.startswith("report.") and isinstance(result, Accepted):
            self.reports.append((f"{op.NAME} (at step {len(self.rows) + 1})", result))
        outcome = "ok" if isinstance(result, Accepted) else str(result.code)
        path = "read" if step.read else "ordered"
        self.rows.append([len(self.rows) + 1, phase, step.actor, step.op.NAME, target, path,
                          outcome])  # fmt: skip
        if isinstance(result, Rejected):
            self.refusals.append([step.actor, step.op.NAME, target, str(result.code),
                                  result.message])  # fmt: skip
        got = None if isinstance(result, Accepted) else result.code
        if got != step.expect:
            self.unexpected.append(
                f"{step.actor} {step.op.NAME} {target}: expected {step.expect or 'ok'}, got "
                f"{result_text(result)}"
            )


def _say(text: str = "") -> None:
    print(text, flush=True)


def _participant_keys(directory: Path) -> dict[str, Ed25519Signer]:
    keys = directory / "keys" / "participants"
    keys.mkdir(parents=True, exist_ok=True)
    signers = {}
    for participant_id in [FX_ADMIN, *(m.participant_id for m in CAST)]:
        signer = Ed25519Signer.generate()
        write_key_file(keys / f"{participant_id}.key", signer)
        signers[participant_id] = signer
    return signers


async def _run_phase(
    number: int, phase: Phase, clients: dict[str, TradeClient], journal: Journal
) -> None:
    _say(f"  phase {number}: {phase.title} ({len(phase.steps)} steps)")
    for step in phase.steps:
        client = clients[step.actor]
        result = await (client.read(step.op) if step.read else client.run(step.op))
        journal.record(number, step, result)


async def wait_caught_up(cluster: LocalCluster, timeout_s: float = 30.0) -> list[dict]:
    """Wait until every replica reports the same last executed sequence number, twice in a
    row; returns their /status objects. Raises DemoFailure if that takes over `timeout_s`."""
    statuses: list[dict | None] = []
    previous: int | None = None
    deadline = trio.current_time() + timeout_s
    while trio.current_time() < deadline:
        statuses = [await cluster.status(i) for i in range(cluster.config.n)]
        executed = {s["last_executed"] if s else None for s in statuses}
        if len(executed) == 1 and None not in executed:
            if executed == {previous}:
                return statuses  # type: ignore[return-value]
            previous = executed.pop()
        await trio.sleep(0.2)
    raise DemoFailure(f"the replicas did not converge within {timeout_s} s: {statuses}")


async def replica_digests(cluster: LocalCluster) -> list[list[object]]:
    """One row per replica: id, pid, view, last executed, its own state digest, audit events."""
    statuses = await wait_caught_up(cluster)
    answers = await read_each_replica(cluster.config, DIGEST_OPERATION)
    rows = []
    for replica_id, status in enumerate(statuses):
        answer = answers.get(replica_id)
        digest, events = ("no answer", "") if not isinstance(answer, Accepted) else (
            answer.value["digest"], answer.value["audit_events"])  # fmt: skip
        rows.append([replica_id, status["pid"], status["view"], status["last_executed"], digest,
                     events])  # fmt: skip
    return rows


async def verified_audit_chain(admin: TradeClient, founders: dict[str, bytes]) -> tuple[int, int | None]:
    """Read the whole audit trail as FX-ADMIN and verify its hash chain: (events, first bad
    index or None)."""
    events: list[AuditEvent] = []
    while True:
        result = await admin.read(GetAudit(start=len(events), limit=256))
        if not isinstance(result, Accepted):
            raise DemoFailure(f"FX-ADMIN cannot read the audit trail: {result_text(result)}")
        page = result.value["events"]
        events += [AuditEvent(
            e["index"], e["sequence"], e["timestamp_ms"], e["signer"], e["actor"], e["command"],
            tuple(e["objects"]), e["outcome"], e["operation_digest"], e["prev_hash"], e["hash"])
            for e in page]  # fmt: skip
        if not page:
            break
    return len(events), verify_chain(events, genesis_hash(founders))


async def _demo(directory: Path, report: Callable[[str], None] = _say) -> int:
    started = time.monotonic()
    files = generate_cluster(directory, replicas=4, clients=0, bounds=DEMO_BOUNDS)
    signers = _participant_keys(directory)
    founders = {FX_ADMIN: signers[FX_ADMIN].public_key}
    write_founders(directory, founders)
    keys = {pid: s.public_key for pid, s in signers.items()}
    today = time.time_ns() // 1_000_000 // MS_PER_DAY
    phases = [admission_phase(keys), *demo_phases(today)]
    journal = Journal()
    report(f"work directory: {directory}")
    with LocalCluster(files, replica_args=["--app", "tradeapp.service:ledger"]) as cluster:
        try:
            cluster.start_all()
            await cluster.wait_all_ready()
            report("4 replicas running on 127.0.0.1: " + ", ".join(
                f"#{i} port {info.port} pid {cluster.processes[i].pid}"
                for i, info in enumerate(files.config.replicas)))  # fmt: skip
            async with AsyncExitStack() as stack:
                clients = {
                    pid: await stack.enter_async_context(
                        TradeClient.connect(files.config, signer, actor=pid, timeout_s=20)
                    )
                    for pid, signer in signers.items()
                }
                for number, phase in enumerate(phases):
                    if number == 2:
                        before = await cluster.status(CRASHED_REPLICA) or {}
                        cluster.kill(CRASHED_REPLICA, signal.SIGKILL)
                        report(f"  *** replica {CRASHED_REPLICA} killed with SIGKILL (mid "
                               f"scenario 1, at sequence {before.get('last_executed')}) ***")
                    if number == 4:
                        cluster.start(CRASHED_REPLICA)
                        status = await cluster.wait_ready(CRASHED_REPLICA)
                        report(f"  *** replica {CRASHED_REPLICA} restarted from its storage at "
                               f"sequence {status['last_executed']} ***")  # fmt: skip
                    await _run_phase(number, phase, clients, journal)
                reports = [await clients[FX_ADMIN].read(op) for op in (
                    ReportOutstandingFinancing(), ReportDeclarationsFinanced(),
                    ReportLcTotals(), ReportTaxUsage(), ReportRejections())]  # fmt: skip
                audit_length, broken_at = await verified_audit_chain(clients[FX_ADMIN], founders)
            digests = await replica_digests(cluster)
        finally:
            cluster.stop_all(signal.SIGTERM)
    _say()
    _say(format_table(["#", "phase", "actor", "command", "object", "path", "outcome"],
                      journal.rows, title="Who did what"))  # fmt: skip
    _say()
    _say(format_table(["actor", "command", "object", "code", "message"], journal.refusals,
                      title="Refusals (stable error codes)"))  # fmt: skip
    _say()
    _say("The regulator's reports (FX-ADMIN)")
    for title, result in journal.reports:
        _say()
        _say(result_text(result, title=f"{title}, before the buyer paid"))
    for result in reports:
        _say()
        _say(result_text(result, title=f"{result.value.get('report', '')} (at the end)"
                         if isinstance(result, Accepted) else ""))
    _say()
    chain = "verifies" if broken_at is None else f"BROKEN at event {broken_at}"
    _say(f"Audit trail: {audit_length} events, hash chain {chain}")
    _say()
    _say(format_table(["replica", "pid", "view", "last executed", "state digest", "audit events"],
                      digests, title="State digest of every replica (each asked on its own)"))
    distinct = {row[4] for row in digests}
    problems = list(journal.unexpected)
    if len(distinct) != 1:
        problems.append(f"replicas disagree: {len(distinct)} distinct digests")
    if broken_at is not None:
        problems.append(f"the audit chain breaks at event {broken_at}")
    if any(isinstance(r, Rejected) for r in reports):
        problems.append("FX-ADMIN was refused a report")
    _say()
    if problems:
        _say("DEMO FAILED:\n  " + "\n  ".join(problems))
        return 1
    _say(f"All {len(journal.rows)} steps had the expected outcome; the 4 replicas (one of them "
         f"killed and restarted) hold the same state digest. Every replica stopped. "
         f"({time.monotonic() - started:.1f} s)")  # fmt: skip
    return 0


def run_demo(*, keep: bool = False, directory: Path | None = None) -> int:
    """Run the demo in `directory` (default: a fresh temporary one, removed afterwards unless
    `keep`). Returns the exit code. Every replica process is stopped before returning,
    whatever happens (exceptions, Ctrl-C)."""
    work = directory or Path(tempfile.mkdtemp(prefix="tradeapp-demo-"))
    try:
        return trio.run(_demo, work)
    except DemoFailure as e:
        print(f"DEMO FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        if directory is None and not keep:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tradeapp.cli_demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    try:
        return run_demo(keep=args.keep)
    except KeyboardInterrupt:
        print("interrupted; every replica stopped", file=sys.stderr)
        return 130


# `LedgerService` is what the replicas run; imported here so that the demo fails fast (before
# starting processes) if the service module is broken.
assert LedgerService is not None

if __name__ == "__main__":
    sys.exit(main())
