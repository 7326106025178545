"""A bank, Jepsen's bank workload: a fixed set of accounts, transfers between them (ordered)
and a read of every balance (read-only, R1). Money is neither made nor lost, so every read and
every replica's state must hold the same total; a transfer carries an id, and the state counts
how often each id was applied, so a transfer applied twice shows in the state as well as in
the executed histories.

Operations and results are msgpack arrays:

    ["transfer", id, source, destination, amount]
        -> ["ok", source balance after, destination balance after]
        -> ["refused", "insufficient_funds", source balance]   (nothing changes)
    ["balances"]  -> ["ok", [balance of account 0, 1, ...]]     (ordered or read-only)

Any other input gives ["error", code, message], never an exception: an id that is not a str
of 1 to 64 characters, accounts that do not exist or are equal, an amount that is not an int
in 1..amount_max; a transfer sent read-only gets "not_read_only".

`bank_workload` makes the operations of the simulator's clients; `check_bank` is the checker
of runs that use it (a `Scenario.linearizability` hook).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import msgpack

from pbft.app import ExecutionContext
from pbft.codec import packb_canonical
from pbft.crypto import sha256

from .engine import Simulation
from .results import Violation

BANK_SNAPSHOT_TAG = "bank/1"
BANK_MALFORMED = "malformed"
BANK_NOT_READ_ONLY = "not_read_only"
BANK_INSUFFICIENT_FUNDS = "insufficient_funds"
TRANSFER_ID_CHARS_MAX = 64

_BALANCES = packb_canonical(["balances"])


def transfer(transfer_id: str, source: int, destination: int, amount: int) -> bytes:
    """The operation that moves `amount` from account `source` to `destination`."""
    return packb_canonical(["transfer", transfer_id, source, destination, amount])


def balances() -> bytes:
    """The operation that reads every balance."""
    return _BALANCES


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None


def decode_balances(result: bytes) -> list[int] | None:
    """The balances in a result of `balances()`, or None if it is not a well-formed one."""
    match _unpack(result):
        case ["ok", list() as values] if all(type(v) is int for v in values):
            return values
    return None


def decode_transfer(operation: bytes) -> tuple[str, int, int, int] | None:
    """(id, source, destination, amount) of a transfer operation, or None."""
    match _unpack(operation):
        case ["transfer", str() as transfer_id, int() as source, int() as destination,
              int() as amount]:
            return transfer_id, source, destination, amount
    return None


def _error(code: str, message: str) -> bytes:
    return packb_canonical(["error", code, message])


class Bank:
    """The bank `StateMachine`: `accounts` accounts of `initial` each. Transfers of more than
    the source holds are refused with a result; bad operations get an error result; `execute`
    and `query` never raise. `restore` raises ValueError on anything but what `snapshot` makes
    for a bank of this size (and leaves the state unchanged)."""

    def __init__(self, accounts: int = 5, initial: int = 100, amount_max: int = 1_000) -> None:
        """Raises ValueError unless accounts >= 2, initial >= 0 and amount_max >= 1 (ints)."""
        for name, value, least in (("accounts", accounts, 2), ("initial", initial, 0),
                                   ("amount_max", amount_max, 1)):
            if type(value) is not int or value < least:
                raise ValueError(f"{name} must be an int of at least {least}, got {value!r}")
        self.amount_max = amount_max
        self.balances = [initial] * accounts
        #: How many times each transfer id was applied (refused transfers are not counted).
        self.applied: dict[str, int] = {}

    @property
    def total(self) -> int:
        return sum(self.balances)

    def execute(self, operation: bytes, context: ExecutionContext) -> bytes:
        """Apply a transfer, or answer `balances`; anything else gets an error result."""
        if operation == _BALANCES:
            return self._balances()
        parsed = decode_transfer(operation)
        if parsed is None:
            return _error(BANK_MALFORMED, "not a transfer or a balances read")
        transfer_id, source, destination, amount = parsed
        accounts = len(self.balances)
        if not 0 < len(transfer_id) <= TRANSFER_ID_CHARS_MAX:
            return _error(BANK_MALFORMED, "a transfer id has 1 to 64 characters")
        if not (0 <= source < accounts and 0 <= destination < accounts) or source == destination:
            return _error(BANK_MALFORMED, "two distinct existing accounts are needed")
        if not 0 < amount <= self.amount_max:
            return _error(BANK_MALFORMED, f"the amount must be in 1..{self.amount_max}")
        if self.balances[source] < amount:
            return packb_canonical(["refused", BANK_INSUFFICIENT_FUNDS, self.balances[source]])
        self.balances[source] -= amount
        self.balances[destination] += amount
        self.applied[transfer_id] = self.applied.get(transfer_id, 0) + 1
        return packb_canonical(["ok", self.balances[source], self.balances[destination]])

    def query(self, operation: bytes, client: bytes) -> bytes:
        """Answer `balances`; a transfer gets "not_read_only", anything else "malformed"."""
        if operation == _BALANCES:
            return self._balances()
        if decode_transfer(operation) is not None:
            return _error(BANK_NOT_READ_ONLY, "a transfer changes state; send it for ordering")
        return _error(BANK_MALFORMED, "not a transfer or a balances read")

    def _balances(self) -> bytes:
        return packb_canonical(["ok", self.balances])

    def snapshot(self) -> bytes:
        return packb_canonical([BANK_SNAPSHOT_TAG, self.balances,
                                [[key, self.applied[key]] for key in sorted(self.applied)]])

    def restore(self, snapshot: bytes) -> None:
        match _unpack(snapshot):
            case [str() as tag, list() as values, list() as applied] if (
                    tag == BANK_SNAPSHOT_TAG and len(values) == len(self.balances)
                    and all(type(v) is int for v in values)
                    and all(isinstance(a, list) and len(a) == 2 and type(a[0]) is str
                            and type(a[1]) is int for a in applied)):
                pass
            case _:
                raise ValueError("not a bank snapshot of this size")
        candidate = packb_canonical([BANK_SNAPSHOT_TAG, values,
                                     sorted([key, count] for key, count in applied)])
        if candidate != bytes(snapshot) or len({key for key, _ in applied}) != len(applied):
            raise ValueError("bank snapshot is not in canonical form")
        self.balances = values
        self.applied = dict((key, count) for key, count in applied)

    def digest(self) -> bytes:
        return sha256(self.snapshot())


def bank_workload(accounts: int = 5, read_fraction: float = 0.3,
                  amount_max: int = 60) -> Callable[[int, int, random.Random], tuple[bytes, bool]]:
    """`make_operation` for the simulator: a balances read, read-only, with probability
    `read_fraction`, else a transfer of 1..`amount_max` between two accounts drawn from the
    client's generator (some overdraw, and are refused), with id "client.index"."""

    def make_operation(client: int, index: int, rng: random.Random) -> tuple[bytes, bool]:
        if rng.random() < read_fraction:
            return balances(), True
        source, destination = rng.sample(range(accounts), 2)
        return transfer(f"{client}.{index}", source, destination,
                        rng.randint(1, amount_max)), False

    return make_operation


def check_bank(sim: Simulation) -> list[Violation]:
    """The bank's own properties, on a finished run whose `app_factory` makes `Bank`s:

    - conservation: every balances result a correct client accepted (read-only or ordered)
      holds one balance per account, none negative, summing to the opening total; so does
      the state of every correct replica (up or down at the end);
    - no transfer applied twice: no correct replica's state counts an id more than once, and
      no correct replica's executed history holds two applied ("ok") transfers with one id.
    """
    opening = sim.app_factory()
    assert isinstance(opening, Bank), type(opening)
    total, accounts = opening.total, len(opening.balances)
    violations = []
    bad_reads = []
    for client in sim.clients:
        if not client.record.correct:
            continue
        for index, (operation, _, completed_us, result) in enumerate(client.record.operations):
            if completed_us is None or operation != _BALANCES:
                continue
            values = decode_balances(result)
            if values is None or len(values) != accounts or sum(values) != total or min(values) < 0:
                bad_reads.append(f"{client.record.name}'s operation {index} read {values}")
    if bad_reads:
        violations.append(Violation(
            "bank", f"{len(bad_reads)} balance reads do not hold {total} in {accounts} "
                    f"non-negative accounts; the first: {bad_reads[0]}"))
    for replica in sim.correct_replicas():
        app = sim.apps[replica]
        if sum(app.balances) != total or min(app.balances) < 0:
            violations.append(Violation(
                "bank", f"replica {replica} holds {app.balances}, not {total} in non-negative "
                        f"accounts", replicas=(replica,)))
        twice = sorted(key for key, count in app.applied.items() if count > 1)
        if twice:
            violations.append(Violation(
                "bank", f"replica {replica}'s state applied transfers {twice[:5]} more than "
                        f"once", replicas=(replica,)))
        applied: dict[str, int] = {}
        for batch in sim.executed[replica]:
            for executed in batch.requests:
                parsed = decode_transfer(executed.request.operation)
                if parsed is None or not _applied(executed.result):
                    continue
                if parsed[0] in applied:
                    violations.append(Violation(
                        "bank", f"replica {replica} applied transfer {parsed[0]!r} at sequences "
                                f"{applied[parsed[0]]} and {batch.sequence}", batch.sequence,
                        (replica,)))
                applied[parsed[0]] = batch.sequence
    return violations


def _applied(result: bytes) -> bool:
    """Whether `result` is that of an applied transfer."""
    match _unpack(result):
        case ["ok", int(), int()]:
            return True
    return False
