"""`TradeClient`: the ledger's typed async API over the `pbft.runtime` client.

    async with TradeClient.connect(config, signer, actor="BANK-A") as bank:
        result = await bank.fin_approve(fin_id="F-4", rate_bp=450)   # Accepted | Rejected
        if isinstance(result, Rejected) and result.code is ErrorCode.ALREADY_ENCUMBERED: ...
        lc = await bank.get_lc(lc_id="LC-1")

One method per command and per query of `tradeapp.commands`, generated from its dataclasses:
the wire name with dots as underscores (`lc.issue` -> `lc_issue`, `get.lc` -> `get_lc`,
`report.lc_totals` -> `report_lc_totals`), keyword-only arguments exactly the dataclass fields
(a missing or unknown field is a TypeError, an ill-typed one a ValueError, raised before
anything is sent). `run(op)` and `read(op)` take the dataclass instances themselves.

Results are values: `Accepted(value)` or `Rejected(code, message)` with `code` an `ErrorCode`.
Commands are ordered (`submit`); queries take the read-only path (`query`: 2f + 1 matching
replies, else ordered), or are ordered and audited with `read(op, ordered=True)`. Transport
failures are exceptions of `pbft.runtime` (`NoQuorumError`: no quorum in time, outcome unknown;
`RequestRejectedError`), and a reply that is not a ledger result is ValueError.

The actor is the signing key; `actor=` only makes the payload name it, so that a client
configured with the wrong key gets ACTOR_MISMATCH instead of acting as someone else.

Money-moving commands that record one amount among many (`fin.repay`, `rcv.record_collection`,
`pay.service_outward`) carry an id of the sender's choosing (`tradeapp.idempotency`). Their
methods take it as an optional argument: left out, a fresh random id is generated
(`new_request_id`). If no quorum answers in time, the method resubmits the same command with the
same id (`resubmissions` times, default 1), which the ledger recognises instead of recording it
twice (`"replayed": True` in the result); if it still fails, the NoQuorumError carries a note
with the id, to resubmit with later.

`read_each_replica` asks every replica separately (no quorum) — for comparing their state
digests (`tradeapp.service.DIGEST_OPERATION`).
"""

from __future__ import annotations

import inspect
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import MISSING, fields
from typing import Any

import trio

from pbft.codec import signing_payload
from pbft.config import ClusterConfig
from pbft.ed25519 import Ed25519Signer
from pbft.messages import Reply, Request
from pbft.runtime.client import Client, NoQuorumError, connect
from pbft.runtime.transport import Transport

from .commands import COMMANDS, OPERATIONS, QUERIES, Operation, Result, decode_result
from .idempotency import IDEMPOTENT

__all__ = [
    "TradeClient", "fill_request_id", "method_name", "new_request_id", "read_each_replica",
]  # fmt: skip

#: Id prefixes of the generated ids, by command.
_ID_PREFIXES = {"fin.repay": "RP", "rcv.record_collection": "COL", "pay.service_outward": "PAY"}
assert sorted(_ID_PREFIXES) == sorted(IDEMPOTENT)


def new_request_id(prefix: str) -> str:
    """A fresh id for a money-moving command: `prefix`, a dash and 24 random hex digits (96
    bits: two clients never pick the same by chance)."""
    return f"{prefix}-{secrets.token_hex(12)}"


def fill_request_id(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """`arguments` of the operation `name`, with a fresh id (`new_request_id`) in its id field
    if it is a money-moving command (`tradeapp.idempotency.IDEMPOTENT`) and the id is missing
    or None; other operations' arguments unchanged. For front ends (the CLI): generate the id
    once, show it, and resubmit with it."""
    recorded = IDEMPOTENT.get(name)
    if recorded is None or arguments.get(recorded.id_field) is not None:
        return arguments
    return {**arguments, recorded.id_field: new_request_id(_ID_PREFIXES[name])}


def method_name(operation_name: str) -> str:
    """The TradeClient method of a wire name: "lc.issue" -> "lc_issue"."""
    return operation_name.replace(".", "_")


class TradeClient:
    """One participant's connection to the ledger cluster. Built by `TradeClient.connect`
    (which owns the connections) or around an open `pbft.runtime.Client`."""

    def __init__(self, client: Client, actor: str | None = None, *, resubmissions: int = 1) -> None:
        """`resubmissions`: how often a money-moving command with an id is sent again after
        a NoQuorumError (0: never). Raises ValueError if negative."""
        if resubmissions < 0:
            raise ValueError("resubmissions must be >= 0")
        self.client = client
        self.actor = actor
        self.resubmissions = resubmissions

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        config: ClusterConfig,
        signer: Ed25519Signer,
        *,
        actor: str | None = None,
        timeout_s: float = 30.0,
        wait_connected_s: float | None = 10.0,
    ) -> AsyncIterator[TradeClient]:
        """Connect as `signer` (the participant's key); `actor` is the participant id the
        payloads claim (None: none). Raises NoQuorumError if a quorum of replicas is not
        connected within `wait_connected_s`. Leaving closes every connection."""
        async with connect(
            config, signer, timeout_s=timeout_s, wait_connected_s=wait_connected_s
        ) as client:
            yield cls(client, actor)

    async def run(self, op: Operation) -> Result:
        """Order `op` (a command, or a query to be audited) and return its result."""
        return decode_result(await self.client.submit(op.encode(self.actor)))

    async def read(self, op: Operation, *, ordered: bool = False) -> Result:
        """Answer the query `op` on the read-only path (not audited), or ordered and audited."""
        if ordered:
            return await self.run(op)
        return decode_result(await self.client.query(op.encode(self.actor)))

    # One method per operation is attached below by `_attach_operation_methods`.


def _operation_method(cls: type[Operation], *, query: bool) -> Callable[..., Any]:
    recorded = IDEMPOTENT.get(cls.NAME)

    async def method(self: TradeClient, **arguments: Any) -> Result:
        if recorded is None:
            op = cls(**arguments)
            return await (self.read(op) if query else self.run(op))
        op = cls(**fill_request_id(cls.NAME, arguments))
        return await _run_resubmitting(self, op, recorded.id_field)

    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for f in fields(cls):
        default = inspect.Parameter.empty if f.default is MISSING else f.default
        if recorded is not None and f.name == recorded.id_field:
            default = None
        parameters.append(
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                              annotation=str(f.type))  # fmt: skip
        )
    method.__signature__ = inspect.Signature(parameters, return_annotation="Result")  # type: ignore[attr-defined]
    method.__name__ = method_name(cls.NAME)
    method.__qualname__ = f"TradeClient.{method.__name__}"
    kind = "Read (read-only path)" if query else "Order the command"
    method.__doc__ = f"{kind} `{cls.NAME}` ({cls.__name__}).\n\n{inspect.getdoc(cls) or ''}"
    return method


async def _run_resubmitting(client: TradeClient, op: Operation, id_field: str) -> Result:
    """Order `op`; after a NoQuorumError send it again, same id, up to `client.resubmissions`
    times. The last NoQuorumError is raised with a note naming the id."""
    attempts = client.resubmissions + 1
    for attempt in range(attempts):
        try:
            return await client.run(op)
        except NoQuorumError as error:
            if attempt + 1 == attempts:
                error.add_note(
                    f"{op.NAME} {id_field}={getattr(op, id_field)}: outcome unknown; resubmit "
                    "with this id (the ledger recognises it and never records it twice)"
                )
                raise
    raise AssertionError("unreachable")


def _attach_operation_methods() -> None:
    for name, cls in OPERATIONS.items():
        attribute = method_name(name)
        assert not hasattr(TradeClient, attribute), attribute
        setattr(TradeClient, attribute, _operation_method(cls, query=name in QUERIES))


_attach_operation_methods()
assert all(hasattr(TradeClient, method_name(name)) for name in COMMANDS)


async def read_each_replica(
    config: ClusterConfig,
    operation: bytes,
    *,
    signer: Ed25519Signer | None = None,
    timeout_s: float = 5.0,
) -> dict[int, Result | None]:
    """Send the read-only `operation` to every replica separately and return each one's own
    answer (None: no answer within `timeout_s`). No quorum is formed: this is for comparing
    replicas, not for trusting one. `signer` defaults to a fresh throwaway key (a key used by
    another open client would steal its reply routes). Raises nothing for unreachable
    replicas; ValueError if a reply is not a ledger result."""
    signer = signer or Ed25519Signer.generate()
    transport = Transport.for_client(config, signer, rng=random.Random())
    timestamp = time.time_ns() // 1000
    unsigned = Request(operation, timestamp, signer.public_key, True, b"")
    request = Request(operation, timestamp, signer.public_key, True,
                      signer.sign(signing_payload(unsigned)))  # fmt: skip
    answers: dict[int, Result | None] = {info.id: None for info in config.replicas}

    async def ask(nursery: trio.Nursery, replica_id: int) -> None:
        await transport.wait_connected(replica_id)
        transport.send(replica_id, request)

    with trio.move_on_after(timeout_s):
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.serve, None)
            for info in config.replicas:
                nursery.start_soon(ask, nursery, info.id)
            pending = set(answers)
            while pending:
                peer, message = await transport.wait_message()
                if (
                    type(message) is Reply
                    and message.replica == peer.replica_id
                    and message.timestamp == timestamp
                    and message.replica in pending
                ):
                    answers[message.replica] = decode_result(message.result)
                    pending.discard(message.replica)
            nursery.cancel_scope.cancel()
    return answers
