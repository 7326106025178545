"""The `tradeapp` command line: submit ledger commands, read objects, print reports as tables.

    python -m tradeapp.cli --config DIR/cluster.toml --key KEY [--as ID] submit lc.issue --lc-id LC-1
    python -m tradeapp.cli --config ... --key ... read get.lc --lc-id LC-1 [--ordered]
    python -m tradeapp.cli --config ... --key ... report outstanding_financing
    python -m tradeapp.cli --config ... digests          each replica's own state digest
    python -m tradeapp.cli demo                          the local-cluster demo (make demo)
    python -m tradeapp.cli operations                    every command and query with its fields

`submit` and `read` have one sub-command per operation of `tradeapp.commands`, with one option
per dataclass field (`decl_ids` -> `--decl-ids`). Values: lists comma-separated (`--decl-ids
D-1,D-2`), `Changes` as a JSON object, keys and digests as hex (`--public-key` also accepts a
key file written by `pbft keygen`), booleans `true`/`false`.

The cluster's replicas must run `--app tradeapp.service:ledger`. `--key` is the participant's
Ed25519 key file (the signer is the actor); `--as` names the participant in the payload.

Exit codes: 0 accepted, 1 refused by the ledger (the code is printed) or no quorum in time,
2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import MISSING, fields
from typing import Any

import trio

from pbft import config as config_module
from pbft.ed25519 import read_key_file
from pbft.runtime.client import ClientError

from .commands import COMMANDS, QUERIES, REPORTS, Accepted, Operation, Rejected, Result

__all__ = ["build_parser", "format_table", "main", "parse_field", "print_result"]


# ---------------------------------------------------------------------------- tables


def _cell(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()[:16] + ("…" if len(value) > 8 else "")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=lambda b: b.hex() if isinstance(b, bytes) else str(b))
    return "" if value is None else str(value)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str = "") -> str:
    """A plain-text table: a header, a rule, one line per row; numbers right-aligned."""
    text = [[_cell(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in text:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [
        bool(rows) and all(isinstance(row[i], int) and not isinstance(row[i], bool) for row in rows)
        for i in range(len(columns))
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    out = [title] if title else []
    out += [line(list(columns)), line(["-" * w for w in widths])]
    out += [line(row) for row in text] or ["(none)"]
    return "\n".join(out)


def result_text(result: Result, *, title: str = "") -> str:
    """A result as people read it: a refusal's code, a report as its table, else field: value."""
    if isinstance(result, Rejected):
        return f"REFUSED {result.code}: {result.message}"
    value = result.value
    if "columns" in value and "rows" in value:
        return format_table(value["columns"], value["rows"], title=title or value.get("report", ""))
    return format_table(["field", "value"], [[k, value[k]] for k in sorted(value)], title=title)


def print_result(result: Result, *, title: str = "") -> int:
    """Print `result`; returns the exit code (0 accepted, 1 refused)."""
    print(result_text(result, title=title))
    return 0 if isinstance(result, Accepted) else 1


# ---------------------------------------------------------------------------- arguments


def parse_field(wire_type: str, text: str) -> Any:
    """The value of a field of wire type `wire_type` (see tradeapp.commands) given as `text`.
    Raises ValueError for text that is not one."""
    if wire_type in ("Amount", "int"):
        return int(text.replace("_", ""))
    if wire_type == "bool":
        if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
            raise ValueError(f"{text!r} is not true or false")
        return text.lower() in ("true", "yes", "1")
    if wire_type in ("Ids", "Codes", "Dates"):
        return [item.strip() for item in text.split(",") if item.strip()]
    if wire_type == "Weekdays":
        return [int(item) for item in text.split(",") if item.strip()]
    if wire_type == "Changes":
        changes = json.loads(text)
        if not isinstance(changes, dict):
            raise ValueError("expected a JSON object")
        return changes
    if wire_type in ("Key", "bytes | None"):
        if wire_type == "bytes | None" and text.lower() in ("", "none", "null"):
            return None
        try:
            return bytes.fromhex(text)
        except ValueError:
            return read_key_file(text).public_key  # a key file: its public key
    if wire_type == "Id | None":
        return None if text.lower() in ("", "none", "null") else text
    return text  # Id, Text, Date, Currency, Role


def _option(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _add_operations(subparsers: Any, operations: dict[str, type[Operation]]) -> None:
    for name, cls in operations.items():
        doc = (cls.__doc__ or "").strip().split("\n")[0]
        if doc.startswith(cls.__name__ + "("):
            doc = ""
        parser = subparsers.add_parser(name, help=doc or None, description=doc or None)
        parser.set_defaults(operation_class=cls)
        for f in fields(cls):
            # A field with a default (a later addition to the wire shape) may be left out.
            optional = f.default is not MISSING
            parser.add_argument(
                _option(f.name), dest=f"field_{f.name}", required=not optional,
                default=None, metavar=str(f.type),
            )


def operation_from_args(args: argparse.Namespace) -> Operation:
    """The operation an argparse namespace of `submit`/`read`/`report` names. Raises
    ValueError (naming the option) for a value that does not parse or fit its wire type."""
    cls: type[Operation] = args.operation_class
    values = {}
    for f in fields(cls):
        text = getattr(args, f"field_{f.name}")
        if text is None:
            continue  # an optional field left out: its default
        try:
            values[f.name] = parse_field(str(f.type), text)
        except (ValueError, OSError) as e:
            raise ValueError(f"{_option(f.name)} {text!r}: {e}") from None
    op = cls(**values)
    op.encode()  # checks every field's wire type (ValueError)
    return op


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tradeapp.cli", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--config", help="the cluster's cluster.toml")
    parser.add_argument("--key", help="the participant's Ed25519 key file (the signer)")
    parser.add_argument("--as", dest="actor", default=None, help="participant id to claim")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per call")
    commands = parser.add_subparsers(dest="command", required=True)

    submit = commands.add_parser("submit", help="order a command")
    _add_operations(submit.add_subparsers(dest="name", required=True, metavar="COMMAND"), COMMANDS)

    read = commands.add_parser("read", help="read an object (get.*)")
    read.add_argument("--ordered", action="store_true", help="order and audit the read")
    gets = {name: cls for name, cls in QUERIES.items() if name not in REPORTS}
    _add_operations(read.add_subparsers(dest="name", required=True, metavar="QUERY"), gets)

    report = commands.add_parser("report", help="print a regulator's report as a table")
    report.add_argument("report", choices=[name.partition(".")[2] for name in REPORTS])

    commands.add_parser("digests", help="each replica's own state digest")
    demo = commands.add_parser("demo", help="run the local 4-replica demo")
    demo.add_argument("--keep", action="store_true", help="keep the work directory")
    commands.add_parser("operations", help="list every command and query with its fields")
    return parser


# ---------------------------------------------------------------------------- commands


async def _call(args: argparse.Namespace, op: Operation, *, query: bool) -> Result:
    from .client import TradeClient

    config = config_module.load(args.config)
    signer = read_key_file(args.key)
    async with TradeClient.connect(
        config, signer, actor=args.actor, timeout_s=args.timeout, wait_connected_s=args.timeout
    ) as client:
        if query:
            return await client.read(op, ordered=getattr(args, "ordered", False))
        return await client.run(op)


async def _digests(args: argparse.Namespace) -> int:
    from .client import read_each_replica
    from .service import DIGEST_OPERATION

    config = config_module.load(args.config)
    answers = await read_each_replica(config, DIGEST_OPERATION, timeout_s=args.timeout)
    rows = []
    for replica_id, answer in sorted(answers.items()):
        if isinstance(answer, Accepted):
            rows.append([replica_id, answer.value["digest"], answer.value["audit_events"]])
        else:
            rows.append([replica_id, "no answer" if answer is None else str(answer), ""])
    print(format_table(["replica", "state digest", "audit events"], rows))
    return 0 if all(isinstance(a, Accepted) for a in answers.values()) else 1


def _needs_cluster(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if not args.config:
        parser.error(f"{args.command} needs --config")
    if args.command != "digests" and not args.key:
        parser.error(f"{args.command} needs --key")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "operations":
        for name, cls in {**COMMANDS, **QUERIES}.items():
            print(f"{name:28} " + " ".join(f"{_option(f.name)} {f.type}" for f in fields(cls)))
        return 0
    if args.command == "demo":
        from .cli_demo import run_demo

        return run_demo(keep=args.keep)
    _needs_cluster(args, parser)
    try:
        if args.command == "digests":
            return trio.run(_digests, args)
        if args.command == "report":
            op = QUERIES[f"report.{args.report}"]()
            return print_result(trio.run(lambda: _call(args, op, query=True)))
        op = operation_from_args(args)
        result = trio.run(lambda: _call(args, op, query=args.command == "read"))
        return print_result(result, title=f"{op.NAME}")
    except ClientError as e:
        print(f"tradeapp: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError) as e:
        print(f"tradeapp {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
