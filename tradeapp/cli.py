"""The `tradeapp` command line: submit ledger commands, read objects, print reports as tables.

    python -m tradeapp.cli --config DIR/cluster.toml founders --founder FX-ADMIN[=KEY]
                                                         write DIR/founders.json (see below)
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
Ed25519 key file (the signer is the actor; a replica's key is refused); `--as` names the
participant in the payload. `--json` prints a result as one JSON object instead of a table.
`--connect-timeout` (5 s): fail, naming the addresses tried, when no replica can be reached.

Founders. The ledger's first participants (the founding FX-ADMINs, who admit everyone else
with `party.admit`) are not admitted by a command: every replica reads them at start-up from
`founders.json` beside its `--config` file, a JSON object of participant id -> the 64 hex
digits of its Ed25519 public key, e.g. `{"FX-ADMIN": "3b6a27bc…"}`. `founders` writes it:
`--founder ID=KEYFILE` (e.g. a client key `pbft keygen` wrote), `--founder ID=HEX`, or a bare
`--founder ID`, which writes a new key file `keys/ID.key` beside the configuration (or uses the
one there). The configuration must admit clients openly (`pbft keygen --open-admission`): the
ledger admits its participants itself. Then:

    pbft keygen --replicas 4 --clients 0 --open-admission --out ledger
    python -m tradeapp.cli --config ledger/cluster.toml founders --founder FX-ADMIN
    pbft cluster --dir ledger --app tradeapp.service:ledger
    python -m tradeapp.cli --config ledger/cluster.toml --key ledger/keys/FX-ADMIN.key \
        --as FX-ADMIN report rejections

Exit codes: 0 accepted, 1 refused by the ledger (the code is printed) or no quorum in time,
2 bad usage (a missing or invalid file is named in one line).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import trio

from pbft.config import ConfigError
from pbft.ed25519 import Ed25519Signer, KeyFileError, read_key_file, write_key_file
from pbft.runtime.cli_common import (
    CommandError,
    add_call_timeouts,
    check_client_key,
    load_client_key,
    load_config,
    load_key,
    make_table,
    render_table,
    run_command,
)
from pbft.runtime.client import ClientError

from .commands import COMMANDS, QUERIES, REPORTS, Accepted, Operation, Rejected, Result
from .model import Role

__all__ = ["build_parser", "format_table", "main", "parse_field", "print_result",
           "write_founders_file"]  # fmt: skip

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
    """A table drawn by rich as plain text: the title, a header, a rule, one line per row
    (numbers right-aligned), "(none)" for no rows."""
    cells = [[_cell(v) if isinstance(v, (bytes, bool, list, dict)) or v is None else v
              for v in row] for row in rows]  # fmt: skip
    return render_table(make_table(columns, cells, title=title))


def result_text(result: Result, *, title: str = "") -> str:
    """A result as people read it: a refusal's code, a report as its table, else field: value."""
    if isinstance(result, Rejected):
        return f"REFUSED {result.code}: {result.message}"
    value = result.value
    if "columns" in value and "rows" in value:
        return format_table(value["columns"], value["rows"], title=title or value.get("report", ""))
    return format_table(["field", "value"], [[k, value[k]] for k in sorted(value)], title=title)


def result_json(result: Result) -> str:
    """`result` as one JSON object: {"ok": true, "value": ...} or {"ok": false, "code": ...,
    "message": ...}; bytes as hex."""
    if isinstance(result, Rejected):
        document: dict[str, Any] = {"ok": False, "code": str(result.code),
                                    "message": result.message}  # fmt: skip
    else:
        document = {"ok": True, "value": result.value}
    return json.dumps(document, default=lambda b: b.hex() if isinstance(b, bytes) else str(b))


def print_result(result: Result, *, title: str = "", as_json: bool = False) -> int:
    """Print `result` (a table, or with `as_json` one JSON object); returns the exit code (0
    accepted, 1 refused)."""
    print(result_json(result) if as_json else result_text(result, title=title), flush=True)
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
    from .idempotency import IDEMPOTENT

    for name, cls in operations.items():
        request_id = IDEMPOTENT[name].id_field if name in IDEMPOTENT else None
        doc = (cls.__doc__ or "").strip().split("\n")[0]
        if doc.startswith(cls.__name__ + "("):
            doc = ""
        parser = subparsers.add_parser(name, help=doc or None, description=doc or None)
        parser.set_defaults(operation_class=cls)
        for f in fields(cls):
            if str(f.type) == "Role":
                # The allowed values, listed by argparse when another is given.
                parser.add_argument(_option(f.name), dest=f"field_{f.name}", required=True,
                                    choices=[role.value for role in Role])  # fmt: skip
                continue
            if f.name == request_id:
                parser.add_argument(
                    _option(f.name), dest=f"field_{f.name}", default=None, metavar=str(f.type),
                    help="the command's id: sending it again with the same id never applies "
                         "it twice (default: a fresh id, printed on stderr)",
                )  # fmt: skip
                continue
            # A field with a default (a later addition to the wire shape) may be left out.
            optional = f.default is not MISSING
            parser.add_argument(
                _option(f.name), dest=f"field_{f.name}", required=not optional,
                default=None, metavar=str(f.type),
            )


def operation_from_args(args: argparse.Namespace) -> Operation:
    """The operation an argparse namespace of `submit`/`read`/`report` names. Raises
    ValueError (naming the option) for a value that does not parse or fit its wire type."""
    from .client import fill_request_id

    cls: type[Operation] = args.operation_class
    values = {}
    for f in fields(cls):
        text = getattr(args, f"field_{f.name}")
        if text is None:  # left out: its default, or a request id generated below
            continue
        try:
            values[f.name] = parse_field(str(f.type), text)
        except (ValueError, OSError) as e:
            raise ValueError(f"{_option(f.name)} {text!r}: {e}") from None
    filled = fill_request_id(cls.NAME, values)
    for name in filled.keys() - values.keys():
        # Said, so that the same command can be sent again with the same id (answered from
        # the first, never applied twice) when its outcome is unknown.
        print(f"{cls.NAME}: {_option(name)} {filled[name]} (generated; give it to resubmit "
              "this command)", file=sys.stderr)  # fmt: skip
    op = cls(**filled)
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
    add_call_timeouts(parser, timeout_s=15.0)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    commands = parser.add_subparsers(dest="command", required=True)

    founders = commands.add_parser(
        "founders", help="write founders.json beside --config (the founding FX-ADMINs)",
        description="Write founders.json beside the --config file: the founding FX-ADMINs "
                    "every replica of tradeapp.service:ledger reads at start-up.",
    )  # fmt: skip
    founders.add_argument("--founder", action="append", required=True, metavar="ID[=KEY]",
                          help="a founding FX-ADMIN: ID=KEYFILE, ID=64 hex digits, or ID alone "
                               "(its key file keys/ID.key beside --config is written, or used "
                               "if it exists); repeatable")
    founders.add_argument("--force", action="store_true",
                          help="replace an existing founders.json (the ledger's genesis: "
                               "replicas that ran with the old one will disagree)")

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
    from pbft.runtime.client import connect

    from .client import TradeClient

    config = load_config(args.config)
    signer = load_client_key(args.key, config)
    async with connect(config, signer, timeout_s=args.timeout,
                       wait_connected_s=args.timeout,
                       unreachable_timeout_s=args.connect_timeout) as client:  # fmt: skip
        trade = TradeClient(client, args.actor)
        if query:
            return await trade.read(op, ordered=getattr(args, "ordered", False))
        return await trade.run(op)


async def _digests(args: argparse.Namespace) -> int:
    from .client import read_each_replica
    from .service import DIGEST_OPERATION

    config = load_config(args.config)
    answers = await read_each_replica(config, DIGEST_OPERATION, timeout_s=args.timeout)
    if args.json:
        print(json.dumps({str(replica_id): None if answer is None else json.loads(
            result_json(answer)) for replica_id, answer in sorted(answers.items())}))  # fmt: skip
        return 0 if all(isinstance(a, Accepted) for a in answers.values()) else 1
    rows = []
    for replica_id, answer in sorted(answers.items()):
        if isinstance(answer, Accepted):
            rows.append([replica_id, answer.value["digest"], answer.value["audit_events"]])
        else:
            rows.append([replica_id, "no answer" if answer is None else str(answer), ""])
    print(format_table(["replica", "state digest", "audit events"], rows))
    return 0 if all(isinstance(a, Accepted) for a in answers.values()) else 1


def write_founders_file(config_path: str, specs: Sequence[str], *, force: bool = False) -> Path:
    """`founders`: write founders.json beside `config_path` from `specs` ("ID", "ID=KEYFILE"
    or "ID=HEX"; a bare ID gets the key file keys/ID.key beside the configuration, written if
    missing). Returns the file written. Raises CommandError for an id that is not a
    participant id, a key that cannot be read or is a replica's, an id given twice, a
    configuration that lists its clients (the ledger admits its own: open admission is
    needed), or an existing founders.json without `force`."""
    from .commands import is_id
    from .service import FOUNDERS_NAME, write_founders

    config = load_config(config_path)
    directory = Path(config_path).resolve().parent
    if config.clients:
        raise CommandError(
            f"--config {config_path} admits only the {len(config.clients)} clients it lists, so "
            "the ledger's participants (admitted by party.admit) would never be served: "
            "generate it with `pbft keygen --open-admission`"
        )
    target = directory / FOUNDERS_NAME
    if target.exists() and not force:
        raise CommandError(f"{target} exists (the ledger's genesis); --force replaces it")
    founders: dict[str, bytes] = {}
    notes = []
    for spec in specs:
        participant_id, sep, key_text = spec.partition("=")
        if not is_id(participant_id):
            raise CommandError(f"--founder {spec!r}: {participant_id!r} is not a participant "
                               "id (1 to 64 of A-Z a-z 0-9 . _ / -)")  # fmt: skip
        if participant_id in founders:
            raise CommandError(f"--founder {participant_id} is given twice")
        if not sep:
            path = directory / "keys" / f"{participant_id}.key"
            if path.exists():
                signer = load_key(path, f"--founder {spec}:")
                notes.append(f"  {participant_id}: key file {path} (existing)")
            else:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                signer = Ed25519Signer.generate()
                write_key_file(path, signer)
                notes.append(f"  {participant_id}: key file {path} (new)")
            public_key = signer.public_key
        elif len(key_text) == 64 and all(c in "0123456789abcdefABCDEF" for c in key_text):
            public_key = bytes.fromhex(key_text)
            notes.append(f"  {participant_id}: public key {key_text.lower()}")
        else:
            public_key = load_key(key_text, f"--founder {spec}:").public_key
            notes.append(f"  {participant_id}: key file {key_text}")
        check_client_key(public_key, config, f"--founder {spec}")
        founders[participant_id] = public_key
    written = write_founders(directory, founders)
    print(f"wrote {written} ({len(founders)} founding FX-ADMIN{'s' * (len(founders) > 1)})")
    for note in notes:
        print(note)
    print(f"start the ledger: pbft cluster --dir {directory} --app tradeapp.service:ledger")
    return written


def _needs_cluster(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if not args.config:
        parser.error(f"{args.command} needs --config")
    if args.command not in ("digests", "founders") and not args.key:
        parser.error(f"{args.command} needs --key")


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "operations":
        for name, cls in {**COMMANDS, **QUERIES}.items():
            print(f"{name:28} " + " ".join(f"{_option(f.name)} {f.type}" for f in fields(cls)))
        return 0
    if args.command == "demo":
        from .cli_demo import run_demo

        return run_demo(keep=args.keep)
    _needs_cluster(args, parser)
    if args.command == "founders":
        write_founders_file(args.config, args.founder, force=args.force)
        return 0
    try:
        if args.command == "digests":
            return trio.run(_digests, args)
        if args.command == "report":
            op = QUERIES[f"report.{args.report}"]()
            return print_result(trio.run(lambda: _call(args, op, query=True)), as_json=args.json)
        op = operation_from_args(args)
        result = trio.run(lambda: _call(args, op, query=args.command == "read"))
        return print_result(result, title=f"{op.NAME}", as_json=args.json)
    except ClientError as e:
        raise CommandError(str(e), code=1) from None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns its exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(f"tradeapp {args.command}", lambda: _run(args, parser),
                       (ConfigError, KeyFileError, ValueError, TypeError, OSError))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
