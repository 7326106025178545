"""`pbft submit` and `pbft query`: the shell client.

    pbft submit --config FILE --key FILE put KEY VALUE        KeyValueStore operations (--app kv)
    pbft submit ... get KEY | delete KEY | append KEY SUFFIX
    pbft submit ... cas KEY EXPECTED NEW | cas KEY NEW --if-absent
    pbft query  ... get KEY                                  read-only path (R1)
    pbft submit ... raw HEX | raw --text TEXT | raw --file F  any application's operation bytes
    pbft query  ... raw ...

`submit` orders the operation (N7: f + 1 matching replies); `query` takes the read-only path
(2f + 1 matching replies, else ordered). Values are UTF-8 text, or hex with `--hex`. The result
is printed decoded: a key-value result as its value (text if it is UTF-8, else hex) or its error;
a raw result as the application error it names (`pbft.app.application_error_result`), else as
msgpack data if it is one msgpack value, else as text or hex. `--json` prints one JSON object.

Exit codes: 0 the operation succeeded, 1 the application refused it (a key-value error, an
application error) or no quorum answered in time, 2 bad usage (a missing or invalid file, a
replica's key as `--key`). `--timeout` bounds the call; `--connect-timeout` (5 s) makes it fail
sooner, naming the addresses tried, when no replica can be reached at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgpack
import trio

from pbft.app import (
    decode_application_error,
    kv_append,
    kv_cas,
    kv_decode_result,
    kv_delete,
    kv_get,
    kv_put,
)

from .cli_common import CommandError, add_call_timeouts, load_client_key, load_config

__all__ = ["add_client_commands", "decode_for_display"]

#: Default bound on a whole `submit` or `query` call.
CALL_TIMEOUT_S = 10.0

KV_VERBS = ("put", "get", "delete", "cas", "append")


def _value(text: str, as_hex: bool, what: str) -> bytes:
    if not as_hex:
        return text.encode()
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise CommandError(f"{what} {text!r}: not hex (drop --hex to send text)") from None


def operation_of(args: argparse.Namespace) -> tuple[bytes, str]:
    """(operation bytes, kind: "kv" or "raw") from a submit/query namespace. Raises
    CommandError for a value that cannot be encoded."""
    verb = args.verb
    if verb == "raw":
        sources = [s for s in (args.hex_operation, args.text, args.file) if s is not None]
        if len(sources) != 1:
            raise CommandError("raw: give the operation once: HEX, --text TEXT or --file FILE "
                               "('-' reads stdin)")  # fmt: skip
        if args.hex_operation is not None:
            return _value(args.hex_operation, True, "raw"), "raw"
        if args.text is not None:
            return args.text.encode(), "raw"
        if args.file == "-":
            return sys.stdin.buffer.read(), "raw"
        try:
            return Path(args.file).read_bytes(), "raw"
        except OSError as e:
            raise CommandError(f"raw --file {args.file}: {e.strerror or e}") from None
    as_hex = getattr(args, "hex", False)
    if verb == "put":
        return kv_put(args.kv_key, _value(args.value, as_hex, "VALUE")), "kv"
    if verb == "get":
        return kv_get(args.kv_key), "kv"
    if verb == "delete":
        return kv_delete(args.kv_key), "kv"
    if verb == "append":
        return kv_append(args.kv_key, _value(args.suffix, as_hex, "SUFFIX")), "kv"
    values = args.values
    if args.if_absent:
        if len(values) != 1:
            raise CommandError("cas KEY NEW --if-absent: give exactly one value, NEW")
        return kv_cas(args.kv_key, None, _value(values[0], as_hex, "NEW")), "kv"
    if len(values) != 2:
        raise CommandError("cas KEY EXPECTED NEW: give two values (or NEW with --if-absent)")
    expected, new = (_value(v, as_hex, name) for v, name in zip(values, ("EXPECTED", "NEW")))
    return kv_cas(args.kv_key, expected, new), "kv"


def _bytes_for_display(value: bytes) -> dict[str, str]:
    try:
        return {"text": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"hex": value.hex()}


def _plain(value: Any) -> Any:
    """Decoded msgpack as JSON-able data (bytes as {"hex": ...} or {"text": ...})."""
    if isinstance(value, bytes):
        return _bytes_for_display(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def decode_for_display(result: bytes, kind: str) -> tuple[bool, dict[str, Any]]:
    """(success, a JSON-able description) of a result: see the module docstring."""
    described: dict[str, Any] = {"result_hex": result.hex()}
    error = decode_application_error(result)
    if error is not None:
        described["application_error"] = error
        return False, described
    if kind == "kv":
        try:
            decoded = kv_decode_result(result)
        except ValueError as e:
            described["undecodable"] = str(e)
            return False, described
        if decoded[0] == "ok":
            value = decoded[1]
            described["ok"] = True
            described["value"] = None if value is None else _bytes_for_display(value)
            return True, described
        described["ok"] = False
        described["error"] = {"code": decoded[1], "message": decoded[2]}
        return False, described
    try:
        described["msgpack"] = _plain(msgpack.unpackb(result, raw=False, strict_map_key=False))
    except (ValueError, TypeError, msgpack.UnpackException):
        described.update(_bytes_for_display(result))
    return True, described


def _text(described: dict[str, Any]) -> str:
    if "application_error" in described:
        return f"application error: {described['application_error']}"
    if "error" in described:
        return f"error {described['error']['code']}: {described['error']['message']}"
    if "undecodable" in described:
        return f"not a key-value result ({described['undecodable']}): {described['result_hex']}"
    if described.get("ok"):
        value = described["value"]
        if value is None:
            return "ok (no value)"
        return value.get("text", value.get("hex"))
    if "msgpack" in described:
        return json.dumps(described["msgpack"])
    if "text" in described:
        return described["text"]
    return described.get("hex", described["result_hex"])


def cmd_call(args: argparse.Namespace) -> int:
    from .client import NoQuorumError, RequestRejectedError, connect

    read_only = args.command == "query"
    config = load_config(args.config)
    signer = load_client_key(args.key, config)
    operation, kind = operation_of(args)

    async def call() -> bytes:
        async with connect(config, signer, timeout_s=args.timeout,
                           unreachable_timeout_s=args.connect_timeout) as client:  # fmt: skip
            if read_only:
                return await client.query(operation)
            return await client.submit(operation)

    try:
        result = trio.run(call)
    except (NoQuorumError, RequestRejectedError) as e:
        raise CommandError(str(e), code=1) from None
    ok, described = decode_for_display(result, kind)
    if args.json:
        print(json.dumps(described))
    else:
        print(_text(described))
    return 0 if ok else 1


def add_client_commands(commands: Any) -> None:
    """Add `submit` and `query` to the `pbft` argument parser's sub-commands."""
    commands_help = {
        "submit": "order an operation and print its decoded result",
        "query": "a read-only operation (R1) and its decoded result",
    }
    for name, help_text in commands_help.items():
        parser = commands.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--config", required=True, help="the cluster's cluster.toml")
        parser.add_argument("--key", required=True,
                            help="a client key file (pbft keygen writes keys/client-N.key)")
        add_call_timeouts(parser, timeout_s=CALL_TIMEOUT_S)
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.set_defaults(handler=cmd_call)
        verbs = parser.add_subparsers(dest="verb", required=True, metavar="OPERATION")
        allowed = ("get",) if name == "query" else KV_VERBS
        for verb in allowed:
            sub = verbs.add_parser(verb, help=f"the key-value store's {verb} (--app kv)")
            sub.add_argument("kv_key", metavar="KEY")
            if verb == "put":
                sub.add_argument("value", metavar="VALUE")
            elif verb == "append":
                sub.add_argument("suffix", metavar="SUFFIX")
            elif verb == "cas":
                sub.add_argument("values", nargs="+", metavar="EXPECTED NEW")
                sub.add_argument("--if-absent", action="store_true",
                                 help="succeed only if KEY is absent (then give only NEW)")
            if verb in ("put", "append", "cas"):
                sub.add_argument("--hex", action="store_true", help="values are hex")
        raw = verbs.add_parser("raw", help="any application's operation, as bytes")
        raw.add_argument("hex_operation", nargs="?", metavar="HEX", default=None)
        raw.add_argument("--text", default=None, help="the operation is this text (UTF-8)")
        raw.add_argument("--file", default=None, help="the operation is this file ('-': stdin)")
