"""The simulator's clients: closed-loop sessions, their workloads and what they did."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pbft.core import ClientResult, ClientSession

#: What a workload's `make_operation(client_index, i, rng)` returns: the operation, or the
#: operation and whether to submit it read-only (R1).
Operation = bytes | tuple[bytes, bool]
#: `make_operation`: (client index, operation index, the client's own seeded `random.Random`)
#: -> `Operation`. A callable of two parameters, (client index, operation index), is called
#: without the generator.
MakeOperation = Callable[..., Operation]


@dataclass
class RequestMarks:
    """How one operation of a client went to the replicas: whether it was submitted read-only
    (R1), the timestamp of every request sent for it (a read-only request that falls back to
    ordering is sent again under a new timestamp), and, once a result is accepted, the
    timestamp of the request it answers and whether it came by the read-only path."""

    read_only: bool
    timestamps: list[int]
    result_timestamp: int | None = None
    answered_read_only: bool | None = None


@dataclass
class ClientRecord:
    """What one client did: each operation with its invocation and completion (virtual µs),
    and by operation index the `RequestMarks` the engine saw (for every operation whose
    requests went through the engine; records made by hand may have none)."""

    name: str
    correct: bool = True
    operations: list[tuple[bytes, int, int | None, bytes | None]] = field(default_factory=list)
    marks: dict[int, RequestMarks] = field(default_factory=dict)


class SessionProxy:
    """Base of what a test swaps into `SimClient.session` in place of its `ClientSession`:
    the engine keeps talking to "the session"; attributes the proxy does not define are the
    wrapped session's, and `now_ms` is the session's own (the engine sets it)."""

    def __init__(self, session: ClientSession) -> None:
        self._session = session
        self.client = session.client

    @property
    def now_ms(self) -> int:
        return self._session.now_ms

    @now_ms.setter
    def now_ms(self, value: int) -> None:
        self._session.now_ms = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class SimClient:
    """A closed-loop client: submits its next operation after a think time drawn from the
    simulation's generator, until it has submitted `requests` operations. `rng` is its own
    generator for `make_operation`, seeded from the simulation's seed and the client's name
    (so a workload's draws neither depend on nor disturb the network's). `results` holds every
    result its session accepted, in order; `done` says it has nothing left to submit and no
    request outstanding."""

    __slots__ = ("session", "record", "remaining", "think_ms", "make_operation", "index",
                 "invoked_us", "done", "rng", "results", "_takes_rng")

    def __init__(self, session: ClientSession, record: ClientRecord, index: int, requests: int,
                 think_ms: float, make_operation: MakeOperation,
                 rng: random.Random | None = None) -> None:
        self.session = session
        self.record = record
        self.index = index
        self.remaining = requests
        self.think_ms = think_ms
        self.make_operation = make_operation
        self.invoked_us = 0
        self.done = requests == 0
        self.rng = rng if rng is not None else random.Random(record.name)
        self.results: list[ClientResult] = []
        self._takes_rng = _takes_rng(make_operation)

    @property
    def client(self) -> bytes:
        """The client's key (its id to the replicas)."""
        return self.session.client

    def add_work(self, requests: int, make_operation: MakeOperation | None = None) -> None:
        """Submit `requests` more operations, without think time between them (a closed loop
        at full speed), made by `make_operation` if given (else by the current one)."""
        if make_operation is not None:
            self.make_operation = make_operation
            self._takes_rng = _takes_rng(make_operation)
        self.remaining += requests
        self.think_ms = 0.0
        if requests:
            self.done = False

    def next_operation(self, i: int) -> tuple[bytes, bool]:
        """Operation `i` of this client and whether it is read-only."""
        if self._takes_rng:
            made = self.make_operation(self.index, i, self.rng)
        else:
            made = self.make_operation(self.index, i)
        if type(made) is tuple:
            operation, read_only = made
            return operation, bool(read_only)
        return made, False


def _takes_rng(make_operation: Callable) -> bool:
    """Whether `make_operation` takes a third positional argument (the generator)."""
    try:
        parameters = inspect.signature(make_operation).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the two-argument form
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind is p.VAR_POSITIONAL for p in parameters)
