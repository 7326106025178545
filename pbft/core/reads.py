"""Read-only requests a replica holds back until its state is fresh enough (R1'): bookkeeping.

The replica decides how far it must have executed before it answers a read (`Replica._read`);
this module keeps the reads, their bounds, and hands back those that are due.
"""

from __future__ import annotations

from ..messages import Request
from . import sizes


class DeferredReads:
    """Per client, its newest read-only request and the sequence number the replica must have
    executed before answering it; at most `count_max` reads and `bytes_max` encoded bytes.

    A client's newer read replaces its older one (the client awaits one result at a time). A
    read beyond the bounds is refused (`add` returns False): its client falls back to an ordered
    request when its retry timer fires (R1), so nothing is lost but speed.
    """

    __slots__ = ("_reads", "bytes", "_count_max", "_bytes_max", "_lowest")

    def __init__(self, count_max: int, bytes_max: int) -> None:
        self._reads: dict[bytes, tuple[int, Request]] = {}
        #: The encoded bytes of the reads held (`sizes.request_bytes`).
        self.bytes = 0
        self._count_max = count_max
        self._bytes_max = bytes_max
        #: No read held needs less than this executed (a lower bound, tightened by `due`).
        self._lowest = 0

    def __len__(self) -> int:
        return len(self._reads)

    def add(self, request: Request, needs: int) -> bool:
        """Hold `request` until `needs` has executed; False (and nothing held) if the bounds
        refuse it."""
        client = request.client
        size = sizes.request_bytes(request)
        earlier = self._reads.get(client)
        freed = sizes.request_bytes(earlier[1]) if earlier is not None else 0
        if earlier is None and len(self._reads) >= self._count_max:
            return False
        if self.bytes - freed + size > self._bytes_max:
            return False
        if earlier is not None:
            del self._reads[client]
        self._reads[client] = (needs, request)
        self.bytes += size - freed
        self._lowest = needs if len(self._reads) == 1 else min(self._lowest, needs)
        return True

    def due(self, executed: int) -> list[Request]:
        """The reads that need at most `executed`, in the order they were held, released."""
        if not self._reads or self._lowest > executed:
            return []
        due = [request for needs, request in self._reads.values() if needs <= executed]
        for request in due:
            del self._reads[request.client]
            self.bytes -= sizes.request_bytes(request)
        self._lowest = min((needs for needs, _ in self._reads.values()), default=0)
        return due
