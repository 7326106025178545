"""A replicated counter: the smallest complete `pbft.app.StateMachine`.

Operations and results are ASCII bytes. `b"add N"` (N an integer, sign allowed) adds N and
returns the new total, `b"get"` returns the total (ordered, or read-only through `query`). The
total stays a 64-bit signed integer: an add that would leave that range is refused.
Anything else gets the result `b"error: ..."`, the same on every replica: bad input is a result,
never an exception. Run it with `pbft cluster --app examples.counter:Counter`: the factory is
the class itself, called with no arguments once per replica.
"""

from pbft.app import ExecutionContext
from pbft.crypto import sha256


class Counter:
    def __init__(self) -> None:
        self.total = 0

    def execute(self, operation: bytes, context: ExecutionContext) -> bytes:
        verb, _, argument = operation.partition(b" ")
        if verb == b"add":
            try:
                total = self.total + int(argument)
            except ValueError:
                return b"error: add takes an integer"
            if not -(2**63) <= total < 2**63:
                return b"error: the total would leave the 64-bit range"
            self.total = total  # checked first, then changed: nothing half done
            return b"%d" % self.total
        return self.query(operation, context.client)

    def query(self, operation: bytes, client: bytes) -> bytes:
        if operation == b"get":
            return b"%d" % self.total
        return b"error: unknown operation (expected add N or get)"

    def snapshot(self) -> bytes:
        return b"%d" % self.total

    def restore(self, snapshot: bytes) -> None:
        self.total = int(snapshot)  # ValueError on bad bytes, as the contract asks

    def digest(self) -> bytes:
        return sha256(self.snapshot())
