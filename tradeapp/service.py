"""The ledger as a replica process loads it: `pbft replica --app tradeapp.service:ledger`.

`pbft replica` calls a zero-argument factory, so the founding FX_ADMINs (the only participants
not admitted by a command, see README.md "Bootstrap") come from a file every replica reads:
`founders.json` in the directory of the replica's `--config` file, a JSON object
`{"FX-ADMIN": "<64 hex digits of the Ed25519 public key>", ...}`. `write_founders` writes it;
`tradeapp.cli_demo` and the cluster tests put it next to `cluster.toml`.

The factory returns a `LedgerService`: the `TradeLedger` plus one read-only operation the
ledger itself does not define, `DIGEST_OPERATION`, answered by every replica with its own state
digest (`["ok", {"digest": hex, "domain_digest": hex, "audit_events": n}]`), so that a client
can compare the replicas' states one by one. Everything else is the ledger's.

Runs once per replica process at start-up, before any execution; reading a file here is
configuration, not state-machine input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pbft.app import ExecutionContext

from .commands import encode_accepted
from .machine import TradeLedger
from .model import pack_canonical

__all__ = ["DIGEST_OPERATION", "FOUNDERS_NAME", "LedgerService", "ledger", "read_founders",
           "write_founders"]  # fmt: skip

FOUNDERS_NAME = "founders.json"
#: The read-only operation answered with the replica's own state digest.
DIGEST_OPERATION = pack_canonical(["service.digest", {}, None])


class LedgerService:
    """A `TradeLedger` that also answers `DIGEST_OPERATION` on the read-only path."""

    def __init__(self, founders: Mapping[str, bytes]) -> None:
        self.ledger = TradeLedger(founders)

    def execute(self, operation: bytes, context: ExecutionContext) -> bytes:
        return self.ledger.execute(operation, context)

    def admits(self, client: bytes) -> bool:
        """The ledger's participants only (`TradeLedger.admits`)."""
        return self.ledger.admits(client)

    def query(self, operation: bytes, client: bytes) -> bytes:
        if operation == DIGEST_OPERATION:
            return encode_accepted(
                {
                    "digest": self.ledger.digest().hex(),
                    "domain_digest": self.ledger.domain_digest().hex(),
                    "audit_events": len(self.ledger.audit_events),
                }
            )
        return self.ledger.query(operation, client)

    def snapshot(self) -> bytes:
        return self.ledger.snapshot()

    def restore(self, snapshot: bytes) -> None:
        self.ledger.restore(snapshot)

    def digest(self) -> bytes:
        return self.ledger.digest()


def write_founders(path: str | Path, founders: Mapping[str, bytes]) -> Path:
    """Write `founders` (id -> 32-byte public key) as JSON to `path` (a file, or a directory
    that gets `founders.json`). Returns the file written."""
    path = Path(path)
    if path.is_dir():
        path = path.joinpath(FOUNDERS_NAME)
    path.write_text(json.dumps({k: founders[k].hex() for k in sorted(founders)}, indent=1) + "\n")
    return path


def read_founders(path: str | Path) -> dict[str, bytes]:
    """The founders in the JSON file at `path`. Raises OSError if it cannot be read and
    ValueError, naming the file, if it is not JSON or not an object of id -> 64 hex digits."""
    try:
        decoded = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(decoded, dict) or not decoded:
        raise ValueError(f"{path}: expected a non-empty JSON object of id -> public key hex")
    founders = {}
    for participant_id, key_hex in decoded.items():
        try:
            founders[participant_id] = bytes.fromhex(key_hex)
        except (TypeError, ValueError):
            founders[participant_id] = b""
        if len(founders[participant_id]) != 32:
            raise ValueError(f"{path}: {participant_id!r}: expected 64 hex digits")
    return founders


def _config_argument(argv: Sequence[str]) -> str | None:
    for index, argument in enumerate(argv):
        if argument == "--config" and index + 1 < len(argv):
            return argv[index + 1]
        if argument.startswith("--config="):
            return argument.partition("=")[2]
    return None


def ledger() -> LedgerService:
    """The app factory of `pbft replica --app tradeapp.service:ledger`: founders from
    `founders.json` next to the `--config` file of this process's command line. Raises
    ValueError (the replica exits with code 2) if there is no `--config` or no valid file."""
    config_path = _config_argument(sys.argv)
    if config_path is None:
        raise ValueError("tradeapp.service:ledger needs the replica's --config on its command line")
    founders_path = Path(config_path).resolve().parent.joinpath(FOUNDERS_NAME)
    try:
        founders = read_founders(founders_path)
    except OSError as e:
        raise ValueError(
            f"tradeapp.service:ledger: cannot read {founders_path} ({e.strerror or e}): write it "
            f"with `python -m tradeapp.cli --config {config_path} founders --founder FX-ADMIN`"
        ) from None
    return LedgerService(founders)
