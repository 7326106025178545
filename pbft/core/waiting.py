"""The requests a replica waits on (N1, V1, V1''): bookkeeping only.

The replica decides what to wait on, what to do when a request executes and what a fired
timer means; this module keeps the requests, their bounds and their order.
"""

from __future__ import annotations

from ..messages import Request
from . import sizes
from .timeout import Timeout


class WaitingRequests:
    """Per client, the newest request a replica waits on, oldest first (the order they began
    to wait), with since when; at most `count_max` requests and `bytes_max` encoded bytes.

    Of those, the unproposed ones (V1'', backups): no PRE-PREPARE of this view has carried them
    yet. Each has the time it began to wait for one, oldest first, and whether it was relayed
    to the primary already. `proposal_timer` fires `proposal_delay_ms` after the oldest of them
    began to wait, or after the proposal clocks were last restarted if that is later; it runs
    exactly while one is unproposed. Clients that needed a relay are relayed on arrival for
    the rest of the view (`relay_at_once`).

    `requests` (client → request) is for reading only: everything that changes the set goes
    through the methods, which keep the bytes, the unproposed requests and the timer right.
    Removing a client that does not wait raises KeyError (the caller's bug).
    """

    __slots__ = (
        "requests",
        "bytes",
        "proposal_timer",
        "_since",
        "_unproposed",
        "_relayed",
        "_relay_at_once",
        "_clocks_from_ms",
        "_count_max",
        "_bytes_max",
        "proposal_delay_ms",
    )

    def __init__(self, count_max: int, bytes_max: int, propose_timeout_ms: int) -> None:
        self.requests: dict[bytes, Request] = {}
        #: The encoded bytes of `requests` (`sizes.request_bytes`).
        self.bytes = 0
        self.proposal_timer = Timeout()
        self._since: dict[bytes, int] = {}
        self._unproposed: dict[bytes, int] = {}
        self._relayed: set[bytes] = set()
        self._relay_at_once: set[bytes] = set()
        self._clocks_from_ms = 0
        self._count_max = count_max
        self._bytes_max = bytes_max
        #: How long a request may wait for a PRE-PREPARE (the replica adapts it, V1'').
        self.proposal_delay_ms = propose_timeout_ms

    def __len__(self) -> int:
        return len(self.requests)

    def oldest(self) -> bytes | None:
        """The client whose request has waited longest, if any."""
        return next(iter(self.requests), None)

    def since(self, client: bytes) -> int:
        """When `client`'s request began to wait (KeyError if it does not)."""
        return self._since[client]

    def by_client(self) -> dict[bytes, tuple[int, int]]:
        """Per client, the timestamp of the request it waits on and since when (ms)."""
        since = self._since
        return {c: (r.timestamp, since[c]) for c, r in self.requests.items()}

    def fits(self, request: Request) -> bool:
        """Whether waiting on `request`, instead of what its client waits on now, keeps within
        the bounds."""
        waiting = self.requests.get(request.client)
        if waiting is None and len(self.requests) >= self._count_max:
            return False
        freed = 0 if waiting is None else sizes.request_bytes(waiting)
        return self.bytes - freed + sizes.request_bytes(request) <= self._bytes_max

    def add(self, request: Request, now_ms: int, *, unproposed: bool) -> None:
        """Wait on `request` from `now_ms` (its client waits on nothing else: remove first),
        `unproposed` if no PRE-PREPARE of this view has carried it. The caller checked `fits`."""
        client = request.client
        assert client not in self.requests, "remove the client's older request first"
        self.requests[client] = request
        self._since[client] = now_ms
        self.bytes += sizes.request_bytes(request)
        if unproposed:
            self.await_proposal(client, now_ms)

    def remove(self, client: bytes) -> Request:
        """Stop waiting on `client`'s request (it executed, or was superseded); returns it."""
        request = self.requests.pop(client)
        del self._since[client]
        self.bytes -= sizes.request_bytes(request)
        self._relayed.discard(client)
        if self._unproposed.pop(client, None) is not None:
            self._arm_proposal_timer()
        return request

    # ------------------------------------------------------------------ proposals (V1'')

    def await_proposal(self, client: bytes, now_ms: int) -> None:
        """`client`'s waiting request is (again) expected in a PRE-PREPARE, from `now_ms` (a
        client already expected keeps its place in the order)."""
        assert client in self.requests
        self._unproposed[client] = now_ms
        self._arm_proposal_timer()

    def proposed(self, requests: tuple[Request, ...]) -> None:
        """An accepted PRE-PREPARE carried `requests`: a client whose waiting request is no
        newer than the one carried no longer waits for a proposal."""
        unproposed = self._unproposed
        if not unproposed:
            return
        waiting = self.requests
        changed = False
        for request in requests:
            client = request.client
            if client in unproposed and waiting[client].timestamp <= request.timestamp:
                del unproposed[client]
                self._relayed.discard(client)
                changed = True
        if changed:
            self._arm_proposal_timer()

    def forget_proposals(self) -> None:
        """A new view: no request is expected in a PRE-PREPARE (nor was relayed) any more."""
        self._unproposed = {}
        self._relayed = set()
        self._relay_at_once = set()
        self.proposal_timer.stop()

    def set_proposal_delay(self, delay_ms: int) -> None:
        """From now on a request may wait `delay_ms` for a PRE-PREPARE."""
        if delay_ms != self.proposal_delay_ms:
            self.proposal_delay_ms = delay_ms
            self._arm_proposal_timer()

    def restart_proposal_clocks(self, now_ms: int) -> None:
        """Count every unproposed request's wait from `now_ms` at the earliest (the primary may
        not have been able to propose before: it had a batch in flight, or we were behind)."""
        self._clocks_from_ms = now_ms
        if self._unproposed:
            self._arm_proposal_timer()

    def awaits_proposal(self, client: bytes) -> bool:
        return client in self._unproposed

    def relay_at_once(self, client: bytes) -> bool:
        """Whether `client`'s requests go to the primary on arrival (one needed a relay)."""
        return client in self._relay_at_once

    def oldest_unproposed(self) -> bytes:
        """The client whose request has waited longest for a PRE-PREPARE (one must)."""
        return next(iter(self._unproposed))

    def relayed(self, client: bytes) -> bool:
        return client in self._relayed

    def note_relayed(self, client: bytes, now_ms: int) -> None:
        """`client`'s unproposed request was relayed to the primary at `now_ms`: it waits for
        a PRE-PREPARE again from then, behind the others."""
        self._relayed.add(client)
        if len(self._relay_at_once) >= self._count_max:
            self._relay_at_once.clear()  # bounded like the requests themselves
        self._relay_at_once.add(client)
        del self._unproposed[client]
        self.await_proposal(client, now_ms)

    def unproposed_count(self) -> int:
        return len(self._unproposed)

    def _arm_proposal_timer(self) -> None:
        unproposed = self._unproposed
        if unproposed:
            since = max(next(iter(unproposed.values())), self._clocks_from_ms)
            self.proposal_timer.start(since, self.proposal_delay_ms)
        else:
            self.proposal_timer.stop()

    def check(self) -> None:
        """Assert that the bookkeeping agrees with itself (for `_check_invariants`)."""
        # (Sizes only: it runs after every message.)
        assert len(self._since) == len(self.requests)
        assert len(self._relayed) <= len(self._unproposed) <= len(self.requests)
        assert self.proposal_timer.running == bool(self._unproposed)
