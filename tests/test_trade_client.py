"""TradeClient, the tradeapp CLI and the replica-side service without processes: the methods
generated from `tradeapp.commands`, argument parsing, tables, the founders file, the digest
read, and the demo's script played in process (LedgerDriver) with the outcomes it expects."""

from __future__ import annotations

import inspect
import time
from dataclasses import fields

import pytest
import trio

from pbft.app import ExecutionContext
from pbft.ed25519 import Ed25519Signer, write_key_file
from tradeapp import ErrorCode
from tradeapp.banking_calendar import MS_PER_DAY
from tradeapp.cli import build_parser, format_table, main, operation_from_args, parse_field
from tradeapp.cli_demo import admission_phase, demo_phases
from tradeapp.client import TradeClient, method_name
from tradeapp.commands import (
    COMMANDS,
    OPERATIONS,
    QUERIES,
    Accepted,
    FinApprove,
    FinRequest,
    GetLc,
    Rejected,
    decode_result,
    encode_accepted,
    encode_rejected,
)
from tradeapp.scenario import CAST, FX_ADMIN, LedgerDriver
from tradeapp.service import (
    DIGEST_OPERATION,
    LedgerService,
    _config_argument,
    ledger,
    read_founders,
    write_founders,
)


class FakeRuntimeClient:
    """Stands in for `pbft.runtime.Client`: records what is sent, answers with canned bytes."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.sent: list[tuple[str, bytes]] = []

    async def submit(self, operation: bytes) -> bytes:
        self.sent.append(("submit", operation))
        return self.answer

    async def query(self, operation: bytes) -> bytes:
        self.sent.append(("query", operation))
        return self.answer


def test_every_operation_has_a_method_with_exactly_its_fields():
    for name, cls in OPERATIONS.items():
        method = getattr(TradeClient, method_name(name))
        parameters = list(inspect.signature(method).parameters.values())[1:]
        assert [p.name for p in parameters] == [f.name for f in fields(cls)], name
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)


def test_commands_are_ordered_queries_read_only_and_results_are_values():
    async def run() -> None:
        fake = FakeRuntimeClient(encode_rejected(ErrorCode.ALREADY_ENCUMBERED, "financed"))
        client = TradeClient(fake, actor="BANK-B")  # type: ignore[arg-type]
        result = await client.fin_approve(fin_id="F-4", rate_bp=400)
        assert result == Rejected(ErrorCode.ALREADY_ENCUMBERED, "financed")
        assert fake.sent == [("submit", FinApprove(fin_id="F-4", rate_bp=400).encode("BANK-B"))]
        fake.answer = encode_accepted({"lc_id": "LC-1"})
        assert await client.get_lc(lc_id="LC-1") == Accepted({"lc_id": "LC-1"})
        assert fake.sent[-1] == ("query", GetLc(lc_id="LC-1").encode("BANK-B"))
        await client.read(GetLc(lc_id="LC-1"), ordered=True)
        assert fake.sent[-1][0] == "submit"

    trio.run(run)


def test_bad_arguments_fail_before_anything_is_sent():
    async def run() -> None:
        fake = FakeRuntimeClient(encode_accepted({}))
        client = TradeClient(fake)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await client.lc_issue(lc_id="LC-1", extra=1)
        with pytest.raises(TypeError):
            await client.lc_issue()
        with pytest.raises(ValueError):
            await client.lc_issue(lc_id="not an id!")
        with pytest.raises(ValueError):
            await client.fin_approve(fin_id="F-1", rate_bp="450")
        assert fake.sent == []

    trio.run(run)


def test_a_reply_that_is_not_a_ledger_result_is_a_value_error():
    async def run() -> None:
        client = TradeClient(FakeRuntimeClient(b"\x93junk"))  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await client.lc_issue(lc_id="LC-1")

    trio.run(run)


def test_cli_builds_typed_operations_from_options(tmp_path):
    parser = build_parser()
    args = parser.parse_args([
        "--config", "c.toml", "--key", "k", "submit", "fin.request", "--fin-id", "F-1",
        "--lender", "BANK-A", "--invoice-id", "INV-1", "--decl-ids", "D-1,D-2",
        "--currency", "USD", "--amount-minor", "8_000_000",
    ])  # fmt: skip
    assert operation_from_args(args) == FinRequest(
        fin_id="F-1", lender="BANK-A", invoice_id="INV-1", decl_ids=["D-1", "D-2"],
        currency="USD", amount_minor=8_000_000,
    )  # fmt: skip
    args = parser.parse_args(["submit", "fin.approve", "--fin-id", "F-1", "--rate-bp", "x"])
    with pytest.raises(ValueError, match="--rate-bp"):
        operation_from_args(args)
    with pytest.raises(SystemExit):  # a missing field is a usage error
        parser.parse_args(["submit", "fin.approve", "--fin-id", "F-1"])
    with pytest.raises(SystemExit):  # a command is not a read
        parser.parse_args(["read", "fin.approve", "--fin-id", "F-1"])
    signer = Ed25519Signer.generate()
    write_key_file(tmp_path / "bank.key", signer)
    assert parse_field("Key", str(tmp_path / "bank.key")) == signer.public_key
    assert parse_field("Key", signer.public_key.hex()) == signer.public_key
    assert parse_field("bool", "true") is True and parse_field("Weekdays", "6,7") == [6, 7]
    assert parse_field("Changes", '{"amount_minor": 5}') == {"amount_minor": 5}
    assert parse_field("bytes | None", "none") is None


def test_cli_lists_every_operation_and_needs_a_cluster_for_calls(capsys):
    assert main(["operations"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in {**COMMANDS, **QUERIES})
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "lc_totals"])
    assert exit_info.value.code == 2


def test_tables_align_numbers_right_and_say_none_when_empty():
    table = format_table(["bank", "amount"], [["BANK-A", 5], ["BANK-BB", 10_000]])
    assert table.splitlines() == [
        "bank      amount", "────────────────", "BANK-A         5", "BANK-BB    10000",
    ]  # fmt: skip
    assert format_table(["x"], [], title="t").splitlines()[-1] == "(none)"


def test_the_service_reads_founders_next_to_the_config_and_answers_its_digest(tmp_path, monkeypatch):
    key = Ed25519Signer.generate().public_key
    write_founders(tmp_path, {FX_ADMIN: key})
    assert read_founders(tmp_path / "founders.json") == {FX_ADMIN: key}
    config = tmp_path / "cluster.toml"
    monkeypatch.setattr("sys.argv", ["cli", "replica", "--config", str(config), "--id", "0"])
    service = ledger()
    assert _config_argument(["x", f"--config={config}"]) == str(config)
    answer = decode_result(service.query(DIGEST_OPERATION, key))
    assert answer == Accepted({
        "digest": service.digest().hex(), "domain_digest": service.ledger.domain_digest().hex(),
        "audit_events": 0,
    })  # fmt: skip
    service.execute(GetLc(lc_id="LC-1").encode(), ExecutionContext(1, key, 0))
    assert decode_result(service.query(DIGEST_OPERATION, key)).value["audit_events"] == 1
    monkeypatch.setattr("sys.argv", ["cli", "replica"])
    with pytest.raises(ValueError, match="--config"):
        ledger()


def test_the_demo_script_has_the_outcomes_it_expects_in_process():
    """The demo's steps (setup, scenarios 1, 4, 5, the double financing) against one ledger
    in process: every step's outcome is the expected one (the demo checks it again on the
    cluster)."""
    signers = {pid: Ed25519Signer.generate().public_key
               for pid in [FX_ADMIN, *(m.participant_id for m in CAST)]}  # fmt: skip
    now_ms = time.time_ns() // 1_000_000
    driver = LedgerDriver(LedgerService({FX_ADMIN: signers[FX_ADMIN]}), signers, now_ms)
    codes = []
    for phase in [admission_phase(signers), *demo_phases(now_ms // MS_PER_DAY)]:
        for step in phase.steps:
            result = (driver.read if step.read else driver.run)(step.actor, step.op)
            got = None if isinstance(result, Accepted) else result.code
            assert got == step.expect, (step, result)
            codes.append(got)
    assert ErrorCode.ALREADY_ENCUMBERED in codes and ErrorCode.RECEIVABLE_SETTLED in codes
